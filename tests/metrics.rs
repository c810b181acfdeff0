//! What `/metrics` exports, scraped from a running gateway: every gateway metric under the
//! `tiktok_gateway_` namespace, build info and process metrics, upstream and TikTok latency
//! histograms by upstream / endpoint and outcome, seconds until each shop's tokens expire,
//! seconds since each JWKS refresh, and `route="(none)"` for requests no route matched.
//!
//! One test only: the registry is process-wide, and the scrape-time gauges belong to the first
//! gateway a test binary starts.

#![cfg(feature = "demo")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    ApiKey, Auth, Config, JwtIssuer, Listener, Route, TestGateway, TikTok, Upstream, Webhooks,
    free_port, http_client, metrics_text,
};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::DevIdp;
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig};

const KEY: &str = "metrics-test-key-0001";

/// The value of the first sample line starting with `series` (name and labels, as exported).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_carries_every_operational_metric_under_the_namespace() {
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let sb = SandboxConfig::example(3);
    let tiktok = sandbox::spawn(sb.clone()).await.unwrap();
    let shop = sb.shops[0].clone();
    let (port, metrics) = (free_port(), free_port());
    let qdir = tempfile::tempdir().unwrap();
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("plain", port))
            .listener(Listener::plain("metrics", metrics))
            .jwt(JwtIssuer::url("idp", &idp))
            .api_key(ApiKey::new("caller", KEY, &["tiktok:shop:*"]))
            .upstream(Upstream::new("orders", orders.addr()))
            .upstream(Upstream::tiktok("tiktok_api", &tiktok.base_url()))
            .tiktok(TikTok::sandbox("main", &sb, &tiktok.base_url()))
            .webhooks(Webhooks::new("forward-secret").queue(&qdir.path().join("q.redb")))
            .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"))
            .route(
                Route::prefix("tiktok", "plain", "/order/")
                    .auth(Auth::api_key())
                    .tiktok("main", None)
                    .upstream("tiktok_api"),
            ),
    );
    let client = http_client();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        client
            .get(format!("{base}/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/nowhere"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let order = tiktok.state().order_ids(&shop.id)[0].clone();
    let res = client
        .get(format!("{base}/order/202309/orders?ids={order}"))
        .header("x-api-key", KEY)
        .header("x-tiktok-shop-id", &shop.id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // The access log and the JWKS fetch are asynchronous: wait for what the scrape must show.
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics_text(metrics).await;
        if sample(&text, "tiktok_gateway_ready ") == Some(1.0)
            && text.contains("tiktok_gateway_jwks_refresh_age_seconds{issuer=\"idp\"} ")
            && !text.contains("issuer=\"idp\"} +Inf")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.starts_with("tiktok_gateway_") || line.starts_with("process_"),
            "outside the namespace: {line}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!("tiktok_gateway_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0)
    );
    assert!(
        sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "process metrics"
    );
    assert!(sample(&text, "process_cpu_seconds_total").is_some());

    assert_eq!(
        sample(
            &text,
            "tiktok_gateway_requests_total{route=\"(none)\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert!(!text.contains("route=\"\""), "no empty route label");

    assert_eq!(
        sample(
            &text,
            "tiktok_gateway_upstream_duration_seconds_count{outcome=\"2xx\",upstream=\"orders\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tiktok_gateway_upstream_duration_seconds_count{outcome=\"2xx\",upstream=\"tiktok_api\"}"
        ),
        Some(1.0),
        "the TikTok call went through its upstream"
    );
    assert_eq!(
        sample(
            &text,
            "tiktok_gateway_tiktok_request_duration_seconds_count{endpoint=\"tiktok\",outcome=\"ok\"}"
        ),
        Some(1.0)
    );

    let now = sb.clock.unix_seconds();
    for (token, at) in [
        ("access", shop.access_token_expires_at),
        ("refresh", shop.refresh_token_expires_at),
    ] {
        let series = format!(
            "tiktok_gateway_tiktok_token_expires_in_seconds{{shop=\"{}\",token=\"{token}\"}}",
            shop.id
        );
        let left = sample(&text, &series).unwrap_or_else(|| panic!("{series}: {text}"));
        let expected = (at - now) as f64;
        assert!(
            (left - expected).abs() <= 30.0,
            "{series} = {left}, expected about {expected}"
        );
    }
    let age = sample(
        &text,
        "tiktok_gateway_jwks_refresh_age_seconds{issuer=\"idp\"}",
    )
    .expect("JWKS age");
    assert!((0.0..60.0).contains(&age), "fetched at start: {age}");
    let readyz = client
        .get(format!("http://127.0.0.1:{metrics}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&text, "tiktok_gateway_ready "),
        Some(1.0),
        "{readyz}"
    );
    assert!(sample(&text, "tiktok_gateway_webhook_queue_depth").is_some());
}
