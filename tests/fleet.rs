//! Fleet mode, black box: several gateways on one PostgreSQL schema act as one. A gateway killed
//! with SIGKILL loses no acknowledged webhook; replays are recognised by every replica, after
//! restarts too; a block entry written through one replica refuses the caller on all of them
//! within a second; one token refresh per shop for the whole fleet; an unreachable database
//! turns webhook ingress into 503 and `/readyz` red, and both recover by themselves.
//!
//! Each test uses a schema of its own (dropped at the end), so the tests run in parallel.

#![cfg(feature = "demo")]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    ApiKey, Auth, ChildGateway, Config, Listener, Relay, Route, State, TestGateway, TikTok,
    Upstream, Webhooks, database_url, free_port, http_client,
};
use futures::StreamExt;
use tiktok_gateway::sandbox::orders::{Behaviour, OrderService};
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig};
use tiktok_gateway::state::{BlockKind, NewBlock};
use tiktok_gateway::tiktok::proof;

const APP_KEY: &str = "fleet-app-key";
const APP_SECRET: &str = "fleet-app-secret";
const FORWARD_SECRET: &str = "order-service-shared-secret";

fn schema_name() -> String {
    format!("tgw_fleet_{:016x}", rand::random::<u64>())
}

/// Drops the test's schema (best effort: a leftover schema only costs space).
async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        let driver = tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
        drop(client);
        let _ = driver.await;
    }
}

fn sign(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(APP_KEY.as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn webhook(i: usize) -> String {
    format!(
        r#"{{"type":1,"tts_notification_id":"fleet-{i}","shop_id":"7494049642642441621","timestamp":1718305585,"data":{{"order_id":"{i}","order_status":"AWAITING_SHIPMENT"}}}}"#
    )
}

/// Posts a signed webhook; the status, or 0 when the gateway could not be reached.
async fn post(client: &reqwest::Client, port: u16, body: &str) -> u16 {
    client
        .post(format!("http://127.0.0.1:{port}/webhooks/tiktok"))
        .header("content-type", "application/json")
        .header("authorization", sign(body))
        .body(body.to_owned())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Posts `bodies` spread round-robin over `ports`, 16 at a time; returns each body's status.
async fn post_all(ports: &[u16], bodies: &[(usize, String)]) -> Vec<(usize, u16)> {
    let client = http_client();
    futures::stream::iter(bodies.iter().enumerate())
        .map(|(k, (i, body))| {
            let client = client.clone();
            let port = ports[k % ports.len()];
            async move {
                // TikTok retries an answer other than 200; so does this sender, a bounded number
                // of times, for a 503 from a state store slowed down past `state.timeout` on a
                // busy machine. The test's assertions are on the final answer.
                let mut status = post(&client, port, body).await;
                for _ in 0..5 {
                    if status != 503 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    status = post(&client, port, body).await;
                }
                (*i, status)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// A webhook gateway on `port` delivering to `orders`, its state in `schema`.
fn webhook_config(port: u16, orders: SocketAddr, url: &str, schema: &str) -> Config {
    Config::new()
        .listener(Listener::plain("public", port))
        .upstream(Upstream::new("orders", orders))
        .tiktok(TikTok::new().app(TikTok::webhook_app("main", APP_KEY, APP_SECRET)))
        .webhooks(Webhooks::new(FORWARD_SECRET))
        .state(
            State::postgres(url, schema)
                .lease("2s")
                .poll_interval("100ms")
                .timeout("1s"),
        )
        .route(
            Route::exact("tiktok-webhooks", "public", "/webhooks/tiktok")
                .methods(&["POST"])
                .auth(Auth::tiktok_webhook("main"))
                .upstream("orders")
                .rewrite("/internal/tiktok/events"),
        )
}

fn header(r: &tiktok_gateway::sandbox::orders::Received, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_lose_no_acknowledged_webhook_when_one_is_killed_and_replays_forward_none() {
    let Some(url) = database_url() else { return };
    let schema = schema_name();
    let orders = OrderService::spawn(None).await.unwrap();
    orders.set_behaviour(Behaviour::Fail);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut gateways: Vec<ChildGateway> = ports
        .iter()
        .map(|&port| {
            let config = webhook_config(port, orders.addr(), &url, &schema);
            ChildGateway::start(|dir| config.render(dir))
        })
        .collect();

    const N: usize = 1000;
    let bodies: Vec<(usize, String)> = (0..N).map(|i| (i, webhook(i))).collect();
    // The first half while the order service is down, spread over all three.
    let first = post_all(&ports, &bodies[..N / 2]).await;
    let mut acknowledged: HashSet<usize> = HashSet::new();
    for (i, status) in first {
        assert_eq!(
            status, 200,
            "webhook {i}: TikTok gets its 200 while orders are down"
        );
        acknowledged.insert(i);
    }
    // Let the gateways claim and fail some, then kill one mid-stream, for good.
    wait_until("failed attempts", Duration::from_secs(20), || {
        orders.received_count() >= 50
    })
    .await;
    gateways[2].kill();
    orders.set_behaviour(Behaviour::Ok);
    let survivors = &ports[..2];
    for (i, status) in post_all(survivors, &bodies[N / 2..]).await {
        assert_eq!(status, 200, "webhook {i}");
        acknowledged.insert(i);
    }
    let delivered = || {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in orders.received().iter().filter(|r| r.status == 200) {
            *counts
                .entry(String::from_utf8_lossy(&r.body).into_owned())
                .or_default() += 1;
        }
        counts
    };
    wait_until(
        "every acknowledged webhook delivered",
        Duration::from_secs(90),
        || delivered().len() >= acknowledged.len(),
    )
    .await;
    let counts = delivered();
    for i in &acknowledged {
        assert!(counts.contains_key(&webhook(*i)), "webhook {i} lost");
    }
    // Twice at most for what the killed gateway had in flight (8 attempts at once per gateway).
    let twice = counts.values().filter(|n| **n > 1).count();
    assert!(twice <= 8, "{twice} webhooks delivered more than once");
    // Every attempt of an event, by whichever replica, carried the same event id; different
    // events never share one.
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for r in orders.received() {
        ids.entry(String::from_utf8_lossy(&r.body).into_owned())
            .or_default()
            .insert(header(&r, proof::EVENT_ID_HEADER));
    }
    assert!(
        ids.values().all(|set| set.len() == 1),
        "an event id changed between attempts"
    );
    let distinct: HashSet<&String> = ids.values().flatten().collect();
    assert_eq!(distinct.len(), ids.len());

    // Restart one gateway (a new process on the same schema) and replay all of them to the
    // fleet: every replay is acknowledged, none forwarded.
    gateways.pop();
    let restarted_port = free_port();
    let config = webhook_config(restarted_port, orders.addr(), &url, &schema);
    gateways.push(ChildGateway::start(|dir| config.render(dir)));
    let before = orders.received_count();
    let fleet = [ports[0], ports[1], restarted_port];
    for (i, status) in post_all(&fleet, &bodies).await {
        assert_eq!(status, 200, "replay of {i} is acknowledged");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        orders.received_count(),
        before,
        "a replay was forwarded again"
    );
    drop(gateways);
    drop_schema(&url, &schema).await;
}

/// A proxy route for API-key callers, through three gateways on one schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_entry_written_through_one_gateway_refuses_the_caller_on_all_three_within_a_second()
{
    let Some(url) = database_url() else { return };
    let schema = schema_name();
    let orders = OrderService::spawn(None).await.unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let gateways: Vec<TestGateway> = ports
        .iter()
        .map(|&port| {
            TestGateway::with(
                &Config::new()
                    .listener(Listener::plain("plain", port))
                    .upstream(Upstream::new("orders", orders.addr()))
                    .api_key(ApiKey::new(
                        "batch-exporter",
                        "batch-key-0001",
                        &["orders:read"],
                    ))
                    .api_key(ApiKey::new(
                        "reporting",
                        "reporting-key-0001",
                        &["orders:read"],
                    ))
                    .state(State::postgres(&url, &schema))
                    .route(
                        Route::prefix("orders", "plain", "/orders/")
                            .auth(Auth::api_key().scopes(&["orders:read"]))
                            .upstream("orders"),
                    ),
            )
        })
        .collect();
    let client = http_client();
    let call = |port: u16, key: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/orders/1"))
                .header("x-api-key", key)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    for &port in &ports {
        assert_eq!(call(port, "batch-key-0001").await, 200);
    }

    // Blocked by API-key name through the first gateway: refused everywhere within 1 s.
    let blocks = &gateways[0].gateway.state.blocks;
    let id = blocks
        .add(NewBlock {
            kind: BlockKind::ApiKey,
            value: "batch-exporter".into(),
            reason: "leaked key, incident 42".into(),
            expires_at: None,
        })
        .await
        .unwrap();
    let written = Instant::now();
    for &port in &ports {
        loop {
            if call(port, "batch-key-0001").await == 403 {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(1),
                "gateway on {port} still admits the blocked key after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(written.elapsed() < Duration::from_secs(1));
    // The refused calls never reached the order service; the other key still passes.
    let seen = orders.received_count();
    for &port in &ports {
        assert_eq!(call(port, "batch-key-0001").await, 403);
        assert_eq!(call(port, "reporting-key-0001").await, 200);
    }
    assert_eq!(orders.received_count(), seen + 3);

    // A client-address entry through the second gateway refuses every caller from there.
    let net = gateways[1]
        .gateway
        .state
        .blocks
        .add(NewBlock {
            kind: BlockKind::ClientIp,
            value: "127.0.0.0/8".into(),
            reason: "test".into(),
            expires_at: None,
        })
        .await
        .unwrap();
    let written = Instant::now();
    for &port in &ports {
        while call(port, "reporting-key-0001").await != 403 {
            assert!(written.elapsed() < Duration::from_secs(1), "port {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Removing the entries (through the third) lets the callers back in everywhere.
    let third = &gateways[2].gateway.state.blocks;
    assert!(third.remove(net).await.unwrap());
    assert!(third.remove(id).await.unwrap());
    let removed = Instant::now();
    for &port in &ports {
        while call(port, "batch-key-0001").await != 200 {
            assert!(removed.elapsed() < Duration::from_secs(1), "port {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(gateways);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_make_one_refresh_call_per_shop_and_all_use_the_new_tokens() {
    let Some(url) = database_url() else { return };
    let schema = schema_name();
    let sb = SandboxConfig::example(11);
    let tiktok = sandbox::spawn(sb.clone()).await.unwrap();
    let base = tiktok.base_url();
    // The gateways believe the tokens expire within the refresh margin: due at once.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut view = TikTok::sandbox("main", &sb, &base);
    for shop in &mut view.shops {
        shop.access_token_expires_at = now + 3600;
    }
    view.token_store = Some((None, "ab".repeat(32)));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let configs: Vec<Config> = ports
        .iter()
        .map(|&port| {
            Config::new()
                .listener(Listener::plain("egress", port))
                .upstream(Upstream::tiktok("tiktok_api", &base))
                .api_key(ApiKey::new(
                    "svc",
                    "svc-key-0001",
                    &["orders:read", "tiktok:shop:*"],
                ))
                .tiktok(view.clone())
                .state(State::postgres(&url, &schema).lease("5s"))
                .route(
                    Route::prefix("tiktok", "egress", "/")
                        .auth(Auth::api_key().scopes(&["orders:read"]))
                        .tiktok("main", Some("x-tiktok-shop-id"))
                        .upstream("tiktok_api"),
                )
        })
        .collect();
    // Started together, so their refreshers meet.
    let gateways: Vec<TestGateway> = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| s.spawn(move || TestGateway::with(c)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shops: Vec<String> = sb.shops.iter().map(|s| s.id.clone()).collect();
    let fresh = |gw: &TestGateway| {
        let tokens = gw.gateway.tiktok.tokens.as_ref().unwrap();
        shops.iter().all(|s| {
            tokens
                .access_expires_at(s)
                .is_some_and(|e| e > now + 6 * 86_400)
        })
    };
    wait_until(
        "every gateway holds refreshed tokens",
        Duration::from_secs(20),
        || gateways.iter().all(fresh),
    )
    .await;
    let refreshes = |shop: &str| {
        tiktok
            .state()
            .records()
            .iter()
            .filter(|r| r.path == "/api/v2/token/refresh")
            .filter(|r| {
                r.query.as_deref().is_some_and(|q| {
                    let presented = sb
                        .shops
                        .iter()
                        .find(|s| s.id == shop)
                        .map(|s| s.refresh_token.expose().to_owned())
                        .unwrap_or_default();
                    q.contains(&format!("refresh_token={presented}"))
                })
            })
            .count()
    };
    for shop in &shops {
        assert_eq!(
            refreshes(shop),
            1,
            "shop {shop}: one refresh call for the fleet"
        );
    }
    let total = tiktok
        .state()
        .records()
        .iter()
        .filter(|r| r.path == "/api/v2/token/refresh")
        .count();
    assert_eq!(total, shops.len());
    // All three hold the same new token and TikTok accepts their calls with it.
    for shop in &shops {
        let held: HashSet<String> = gateways
            .iter()
            .map(|g| {
                g.gateway
                    .tiktok
                    .tokens
                    .as_ref()
                    .unwrap()
                    .access_token(shop)
                    .unwrap()
                    .expose()
                    .to_owned()
            })
            .collect();
        assert_eq!(held.len(), 1, "shop {shop}: the replicas disagree");
    }
    let client = http_client();
    for &port in &ports {
        let status = client
            .get(format!(
                "http://127.0.0.1:{port}/authorization/202309/shops"
            ))
            .header("x-api-key", "svc-key-0001")
            .header("x-tiktok-shop-id", &shops[0])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    drop(gateways);
    drop_schema(&url, &schema).await;
}

/// The sum of `state_errors_total{backend="postgres",...}` a metrics listener serves.
async fn postgres_errors(metrics_port: u16) -> f64 {
    common::metrics_text(metrics_port)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("tiktok_gateway_state_errors_total{")
                && l.contains("backend=\"postgres\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `postgres://user@host:port/db...` with the host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url).ok()?;
    parsed.set_ip_host(addr.ip()).ok()?;
    parsed.set_port(Some(addr.port())).ok()?;
    Some(parsed.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_answers_503_and_fails_readyz_then_recovers_by_itself() {
    let Some(url) = database_url() else { return };
    let target = {
        let parsed = reqwest::Url::parse(&url).unwrap();
        format!(
            "{}:{}",
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port().unwrap_or(5432)
        )
    };
    let relay = Relay::start(target).await;
    let Some(relayed) = via(&url, relay.addr) else {
        common::env::skip("needs a postgres:// DATABASE_URL with a host");
        return;
    };
    let schema = schema_name();
    let orders = OrderService::spawn(None).await.unwrap();
    orders.set_behaviour(Behaviour::Fail);
    let port = free_port();
    let metrics = free_port();
    let gw = TestGateway::with(
        &webhook_config(port, orders.addr(), &relayed, &schema)
            .listener(Listener::plain("metrics", metrics)),
    );
    let client = http_client();
    let readyz = || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{metrics}/readyz"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(readyz().await.0, 200);
    // Accepted while the database answers (the order service is down: they wait in the queue).
    for i in 0..5 {
        assert_eq!(post(&client, port, &webhook(i)).await, 200);
    }

    let errors_before = postgres_errors(metrics).await;
    relay.cut_and_wait().await;
    // TikTok is told to retry: never a 200 for an event that was not stored.
    assert_eq!(post(&client, port, &webhook(100)).await, 503);
    let start = Instant::now();
    loop {
        let (status, body) = readyz().await;
        if status == 503 {
            assert!(body.contains("postgres"), "readyz names the cause: {body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "readyz stayed green"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (Gauges are shared by every gateway of this test process; the error counter only grows.)
    assert!(
        postgres_errors(metrics).await > errors_before,
        "state_errors_total counts the failures"
    );
    orders.set_behaviour(Behaviour::Ok);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The database comes back: ready again and accepting, without a restart.
    relay.restore();
    let start = Instant::now();
    while readyz().await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "readyz did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(post(&client, port, &webhook(100)).await, 200);
    let delivered = || {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in orders.received().iter().filter(|r| r.status == 200) {
            *counts
                .entry(String::from_utf8_lossy(&r.body).into_owned())
                .or_default() += 1;
        }
        counts
    };
    wait_until("all six delivered", Duration::from_secs(20), || {
        delivered().len() == 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = delivered();
    for i in [0, 1, 2, 3, 4, 100] {
        assert_eq!(
            counts.get(&webhook(i)),
            Some(&1),
            "webhook {i}: exactly one delivery"
        );
    }
    drop(gw);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_calls_go_on_with_the_tokens_held_while_the_database_is_unreachable() {
    let Some(url) = database_url() else { return };
    let target = {
        let parsed = reqwest::Url::parse(&url).unwrap();
        format!(
            "{}:{}",
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port().unwrap_or(5432)
        )
    };
    let relay = Relay::start(target).await;
    let Some(relayed) = via(&url, relay.addr) else {
        common::env::skip("needs a postgres:// DATABASE_URL with a host");
        return;
    };
    let schema = schema_name();
    let sb = SandboxConfig::example(12);
    let tiktok = sandbox::spawn(sb.clone()).await.unwrap();
    let base = tiktok.base_url();
    let mut view = TikTok::sandbox("main", &sb, &base);
    view.token_store = Some((None, "cd".repeat(32)));
    let port = free_port();
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("egress", port))
            .upstream(Upstream::tiktok("tiktok_api", &base))
            .api_key(ApiKey::new(
                "svc",
                "svc-key-0001",
                &["orders:read", "tiktok:shop:*"],
            ))
            .tiktok(view)
            .state(State::postgres(&relayed, &schema).timeout("1s"))
            .route(
                Route::prefix("tiktok", "egress", "/")
                    .auth(Auth::api_key().scopes(&["orders:read"]))
                    .tiktok("main", Some("x-tiktok-shop-id"))
                    .upstream("tiktok_api"),
            ),
    );
    let client = http_client();
    let call = || {
        let client = client.clone();
        let shop = sb.shops[0].id.clone();
        async move {
            client
                .get(format!(
                    "http://127.0.0.1:{port}/authorization/202309/shops"
                ))
                .header("x-api-key", "svc-key-0001")
                .header("x-tiktok-shop-id", shop)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(call().await, 200);
    relay.cut_and_wait().await;
    // The store is only needed to refresh: calls with the token held go on.
    for _ in 0..5 {
        assert_eq!(call().await, 200);
    }
    relay.restore();
    drop(gw);
    drop_schema(&url, &schema).await;
}
