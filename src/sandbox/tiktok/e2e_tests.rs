//! End to end over 127.0.0.1: requests built by the gateway's signer and query module
//! (`crate::tiktok`) against the sandbox's independent checks, then tampered ones refused with
//! TikTok's codes.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::tiktok::query::{EgressRequest, ShopCredentials, SignedRequest, sign_request};

const NOW: i64 = 1_750_000_000;

struct World {
    sandbox: TikTokSandbox,
    clock: ManualClock,
    client: reqwest::Client,
    app_key: String,
    app_secret: String,
    shop_id: String,
    cipher: String,
    token: String,
    refresh_token: String,
}

async fn world() -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = ManualClock::new(NOW);
    let config = SandboxConfig::example_with_clock(7, Arc::new(clock.clone()));
    let shop = config.shops[0].clone();
    let sandbox = spawn(config.clone()).await.unwrap();
    World {
        sandbox,
        clock,
        client: reqwest::Client::builder().build().unwrap(),
        app_key: config.app_key.clone(),
        app_secret: config.app_secret.expose().to_owned(),
        shop_id: shop.id.clone(),
        cipher: shop.cipher.clone(),
        token: shop.access_token.expose().to_owned(),
        refresh_token: shop.refresh_token.expose().to_owned(),
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<String>,
}

impl Answer {
    fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or(-1)
    }
}

impl World {
    fn creds(&self) -> ShopCredentials<'_> {
        ShopCredentials {
            app_key: &self.app_key,
            app_secret: self.app_secret.as_bytes(),
            access_token: &self.token,
            shop_cipher: Some(&self.cipher),
        }
    }

    fn signed(
        &self,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        ct: Option<&str>,
    ) -> SignedRequest {
        let request = EgressRequest {
            path,
            raw_query: query,
            body,
            content_type: ct,
        };
        sign_request(&request, &self.creds(), self.clock.unix_seconds()).unwrap()
    }

    /// Sends exactly what it is given.
    async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let url = format!("{}{}", self.sandbox.base_url(), path_and_query);
        let mut request = self.client.request(method, url).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json::<Value>().await.unwrap();
        Answer {
            status,
            body,
            retry_after,
        }
    }

    /// Signs with the gateway's code, then sends.
    async fn call(&self, method: Method, path: &str, query: Option<&str>, body: &[u8]) -> Answer {
        let signed = self.signed(path, query, body, None);
        self.send(method, &signed, body.to_vec()).await
    }

    async fn send(&self, method: Method, signed: &SignedRequest, body: Vec<u8>) -> Answer {
        let [(n1, v1), (n2, v2)] = signed.headers();
        let headers = [
            (n1.as_str(), v1.to_str().unwrap()),
            (n2.as_str(), v2.to_str().unwrap()),
        ];
        self.raw(method, &signed.path_and_query, &headers, body)
            .await
    }
}

#[tokio::test]
async fn get_orders_by_ids() {
    let w = world().await;
    let ids = w.sandbox.state().order_ids(&w.shop_id);
    let query = format!("ids={},{}", ids[0], ids[3]);
    let a = w
        .call(Method::GET, "/order/202309/orders", Some(&query), b"")
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::OK, 0), "{}", a.body);
    let orders = a.body["data"]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0]["id"], json!(ids[0]));
    assert!(orders[1]["id"].is_string(), "IDs are strings");
    assert!(orders[0]["recipient_address"]["phone_number"].is_string());
    assert!(a.body["request_id"].is_string());
    assert_eq!(a.body["message"], "Success");

    // What TikTok saw: the gateway's own credentials.
    let seen = w.sandbox.state().records().pop().unwrap();
    assert_eq!(
        seen.query_param("app_key").as_deref(),
        Some(w.app_key.as_str())
    );
    assert_eq!(
        seen.query_param("shop_cipher").as_deref(),
        Some(w.cipher.as_str())
    );
    assert_eq!(seen.header("x-tts-access-token"), Some(w.token.as_str()));
    assert_eq!(seen.header("content-type"), Some("application/json"));

    let too_many: Vec<String> = (0..51).map(|i| format!("57{i:016}")).collect();
    let query = format!("ids={}", too_many.join(","));
    let a = w
        .call(Method::GET, "/order/202309/orders", Some(&query), b"")
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, INVALID_REQUEST)
    );
}

#[tokio::test]
async fn search_pages_with_awkward_page_tokens() {
    let w = world().await;
    let body = br#"{"create_time_ge":0}"#;
    let first = w
        .call(
            Method::POST,
            "/order/202309/orders/search",
            Some("page_size=25"),
            body,
        )
        .await;
    assert_eq!(first.code(), 0, "{}", first.body);
    assert_eq!(first.body["data"]["total_count"], 60);
    let token = first.body["data"]["next_page_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        token.contains('+') && token.contains('/') && token.contains('='),
        "{token}"
    );

    // The caller sends the token percent-encoded, as any HTTP client would.
    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let query = format!("page_size=25&page_token={encoded}");
    let second = w
        .call(
            Method::POST,
            "/order/202309/orders/search",
            Some(&query),
            body,
        )
        .await;
    assert_eq!(second.code(), 0, "{}", second.body);
    let ids = |a: &Answer| -> Vec<String> {
        a.body["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (one, two) = (ids(&first), ids(&second));
    assert_eq!((one.len(), two.len()), (25, 25));
    assert!(
        one.iter().all(|id| !two.contains(id)),
        "pages do not overlap"
    );
    assert_eq!(
        [one, two].concat(),
        w.sandbox.state().order_ids(&w.shop_id)[..50].to_vec()
    );
    let seen = w.sandbox.state().records().pop().unwrap();
    assert_eq!(
        seen.query_param("page_token").as_deref(),
        Some(token.as_str())
    );
}

#[tokio::test]
async fn paths_that_refuse_shop_cipher() {
    let w = world().await;
    let a = w
        .call(Method::GET, "/authorization/202309/shops", None, b"")
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
    assert_eq!(a.body["data"]["shops"][0]["cipher"], json!(w.cipher));
    assert_eq!(a.body["data"]["shops"][0]["id"], json!(w.shop_id));
    let a = w
        .call(Method::GET, "/seller/202309/permissions", None, b"")
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);

    // A signer that wrongly added the cipher: correctly signed, still refused.
    let s = sign_raw_call(
        &w,
        "/seller/202309/shops",
        &[("shop_cipher", &w.cipher)],
        b"",
    );
    let a = w.raw(Method::GET, &s, &w.default_headers(), vec![]).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, INVALID_REQUEST)
    );
    assert_eq!(
        w.sandbox
            .state()
            .counters()
            .rejected_for(RejectReason::UnexpectedShopCipher),
        1
    );
}

#[tokio::test]
async fn multipart_upload_is_accepted_without_body_in_signature() {
    let w = world().await;
    let ct = "multipart/form-data; boundary=sbxBoundary7";
    let body = b"--sbxBoundary7\r\nContent-Disposition: form-data; name=\"data\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\nfakeimage\r\n--sbxBoundary7\r\nContent-Disposition: form-data; name=\"use_case\"\r\n\r\nMAIN_IMAGE\r\n--sbxBoundary7--\r\n".to_vec();
    let signed = w.signed("/product/202309/images/upload", None, &body, Some(ct));
    assert!(signed.multipart);
    let a = w.send(Method::POST, &signed, body).await;
    assert_eq!(a.code(), 0, "{}", a.body);
    assert_eq!(a.body["data"]["use_case"], "MAIN_IMAGE");
    assert!(a.body["data"]["uri"].as_str().unwrap().starts_with("tos-"));
}

#[tokio::test]
async fn json_body_round_trips_webhook_registration() {
    let w = world().await;
    let body = br#"{"address":"https://gw.example.com/webhooks/tiktok","event_type":"ORDER_STATUS_CHANGE"}"#;
    let a = w
        .call(Method::PUT, "/event/202309/webhooks", None, body)
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
    let a = w
        .call(Method::GET, "/event/202309/webhooks", None, b"")
        .await;
    assert_eq!(
        a.body["data"]["webhooks"][0]["address"],
        "https://gw.example.com/webhooks/tiktok"
    );
    assert_eq!(
        w.sandbox
            .state()
            .webhook_address(&w.shop_id, "ORDER_STATUS_CHANGE")
            .as_deref(),
        Some("https://gw.example.com/webhooks/tiktok")
    );
    let a = w
        .call(
            Method::DELETE,
            "/event/202309/webhooks",
            None,
            br#"{"event_type":"ORDER_STATUS_CHANGE"}"#,
        )
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
    assert_eq!(
        w.sandbox
            .state()
            .webhook_address(&w.shop_id, "ORDER_STATUS_CHANGE"),
        None
    );
}

#[tokio::test]
async fn fulfillment_finance_and_returns_answer() {
    let w = world().await;
    let a = w
        .call(
            Method::POST,
            "/fulfillment/202309/packages/search",
            Some("page_size=50"),
            br#"{"package_status":"PROCESSING"}"#,
        )
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
    let id = a.body["data"]["packages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ship = format!("/fulfillment/202309/packages/{id}/ship");
    let a = w
        .call(
            Method::POST,
            &ship,
            None,
            br#"{"handover_method":"PICKUP"}"#,
        )
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
    let a = w
        .call(
            Method::POST,
            &ship,
            None,
            br#"{"handover_method":"PICKUP"}"#,
        )
        .await;
    assert_eq!(a.code(), ALREADY_SHIPPED);
    let docs = format!("/fulfillment/202309/packages/{id}/shipping_documents");
    let a = w
        .call(
            Method::GET,
            &docs,
            Some("document_type=SHIPPING_LABEL"),
            b"",
        )
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
    assert!(
        a.body["data"]["doc_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let a = w
        .call(
            Method::GET,
            &format!("/fulfillment/202309/packages/{id}"),
            None,
            b"",
        )
        .await;
    assert_eq!(a.body["data"]["package_status"], "FULFILLING");
    let order_id = a.body["data"]["orders"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = w
        .call(
            Method::GET,
            &format!("/fulfillment/202309/orders/{order_id}/tracking"),
            None,
            b"",
        )
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);

    for (method, path, query) in [
        (
            Method::GET,
            "/finance/202309/statements",
            "page_size=5&sort_field=statement_time",
        ),
        (
            Method::GET,
            "/finance/202309/payments",
            "page_size=5&sort_field=create_time",
        ),
        (
            Method::POST,
            "/return_refund/202309/returns/search",
            "page_size=5",
        ),
        (
            Method::POST,
            "/return_refund/202309/cancellations/search",
            "page_size=5",
        ),
        (
            Method::POST,
            "/product/202309/products/search",
            "page_size=5",
        ),
        (Method::GET, "/seller/202309/shops", ""),
    ] {
        let a = w.call(method, path, Some(query), b"").await;
        assert_eq!(a.code(), 0, "{path}: {}", a.body);
    }
    let a = w
        .call(Method::GET, "/fulfillment/202309/packages/1", None, b"")
        .await;
    assert_eq!(a.code(), NOT_OWNED);
}

/// Signs `params` plus the gateway's usual keys by hand, for requests the gateway would never
/// build (extra or missing keys).
fn sign_raw_call(w: &World, path: &str, extra: &[(&str, &str)], body: &[u8]) -> String {
    let ts = w.clock.unix_seconds().to_string();
    let mut params: Vec<(&str, &str)> = vec![("app_key", &w.app_key), ("timestamp", &ts)];
    params.extend_from_slice(extra);
    let sign = crate::tiktok::sign::sign(w.app_secret.as_bytes(), path, &params, Some(body));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().copied())
        .append_pair("sign", &sign)
        .finish();
    format!("{path}?{query}")
}

impl World {
    fn default_headers(&self) -> Vec<(&str, &str)> {
        vec![
            ("content-type", "application/json"),
            ("x-tts-access-token", self.token.as_str()),
        ]
    }
}

/// Replaces one query parameter's raw value in a signed path and query.
fn with_param(path_and_query: &str, key: &str, value: &str) -> String {
    let (path, query) = path_and_query.split_once('?').unwrap();
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == key => format!("{k}={value}"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

fn without_param(path_and_query: &str, key: &str) -> String {
    let (path, query) = path_and_query.split_once('?').unwrap();
    let parts: Vec<&str> = query
        .split('&')
        .filter(|kv| kv.split('=').next() != Some(key))
        .collect();
    format!("{path}?{}", parts.join("&"))
}

#[tokio::test]
async fn tampered_requests_are_refused_with_tiktoks_codes() {
    let w = world().await;
    let path = "/order/202309/orders/search";
    let body = br#"{"order_status":"AWAITING_SHIPMENT"}"#.to_vec();
    let signed = w.signed(path, Some("page_size=10"), &body, None);
    let pq = signed.path_and_query.clone();
    let headers = w.default_headers();

    // Untouched: accepted.
    let a = w.raw(Method::POST, &pq, &headers, body.clone()).await;
    assert_eq!(a.code(), 0, "{}", a.body);

    // Body changed after signing (re-serialised JSON): bad sign.
    let reserialised = br#"{"order_status": "AWAITING_SHIPMENT"}"#.to_vec();
    let a = w.raw(Method::POST, &pq, &headers, reserialised).await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, BAD_SIGN));

    // Query value changed.
    let a = w
        .raw(
            Method::POST,
            &with_param(&pq, "page_size", "11"),
            &headers,
            body.clone(),
        )
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, BAD_SIGN));

    // Uppercase sign is refused even though the digest is right.
    let sign = signed
        .path_and_query
        .rsplit("sign=")
        .next()
        .unwrap()
        .to_owned();
    let upper = with_param(&pq, "sign", &sign.to_uppercase());
    let a = w.raw(Method::POST, &upper, &headers, body.clone()).await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, BAD_SIGN));

    // Sign missing.
    let a = w
        .raw(
            Method::POST,
            &without_param(&pq, "sign"),
            &headers,
            body.clone(),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, INVALID_REQUEST)
    );

    // Unknown app_key.
    let a = w
        .raw(
            Method::POST,
            &with_param(&pq, "app_key", "nope"),
            &headers,
            body.clone(),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, INVALID_REQUEST)
    );

    // Repeated parameter.
    let repeated = format!("{pq}&page_size=10");
    let a = w.raw(Method::POST, &repeated, &headers, body.clone()).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, INVALID_REQUEST)
    );

    // Content type missing.
    let a = w.raw(Method::POST, &pq, &headers[1..], body.clone()).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, INVALID_REQUEST)
    );

    // Token missing, unknown.
    let a = w.raw(Method::POST, &pq, &headers[..1], body.clone()).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, INVALID_REQUEST)
    );
    let forged = [
        ("content-type", "application/json"),
        ("x-tts-access-token", "TTP_forged"),
    ];
    let a = w.raw(Method::POST, &pq, &forged, body.clone()).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, INVALID_REQUEST)
    );

    // shop_cipher missing on a shop-scoped API (correctly signed without it).
    let no_cipher = sign_raw_call(&w, path, &[("page_size", "10")], &body);
    let a = w
        .raw(Method::POST, &no_cipher, &headers, body.clone())
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, SHOP_CIPHER_MISSING)
    );

    // Another shop's cipher.
    let other = sign_raw_call(
        &w,
        path,
        &[("page_size", "10"), ("shop_cipher", "ROW_other")],
        &body,
    );
    let a = w.raw(Method::POST, &other, &headers, body.clone()).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, INVALID_REQUEST)
    );

    // Unknown path, wrong method.
    let a = w
        .call(Method::GET, "/order/202309/nothing", None, b"")
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, UNKNOWN_PATH));
    let a = w.call(Method::GET, path, Some("page_size=10"), b"").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::METHOD_NOT_ALLOWED, WRONG_METHOD)
    );

    let counters = w.sandbox.state().counters();
    assert_eq!(counters.accepted, 1);
    assert_eq!(counters.rejected_for(RejectReason::BadSign), 3);
    assert_eq!(counters.rejected_for(RejectReason::MissingSign), 1);
    assert_eq!(counters.rejected_for(RejectReason::BadAppKey), 1);
    assert_eq!(counters.rejected_for(RejectReason::RepeatedParam), 1);
    assert_eq!(counters.rejected_for(RejectReason::MissingContentType), 1);
    assert_eq!(counters.rejected_for(RejectReason::MissingToken), 1);
    assert_eq!(counters.rejected_for(RejectReason::InvalidToken), 1);
    assert_eq!(counters.rejected_for(RejectReason::MissingShopCipher), 1);
    assert_eq!(counters.rejected_for(RejectReason::WrongShopCipher), 1);
    assert_eq!(counters.rejected_for(RejectReason::UnknownPath), 1);
    assert_eq!(counters.rejected_for(RejectReason::WrongMethod), 1);
    assert_eq!(w.sandbox.state().request_count(), 14);
}

#[tokio::test]
async fn timestamp_window_is_five_minutes_back_thirty_seconds_ahead() {
    let w = world().await;
    let path = "/seller/202309/shops";
    let at = |offset: i64| {
        let request = EgressRequest {
            path,
            raw_query: None,
            body: b"",
            content_type: None,
        };
        sign_request(&request, &w.creds(), NOW + offset).unwrap()
    };
    for (offset, accepted) in [(-300, true), (-301, false), (30, true), (31, false)] {
        let a = w.send(Method::GET, &at(offset), vec![]).await;
        assert_eq!(a.code() == 0, accepted, "offset {offset}: {}", a.body);
        if !accepted {
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::UNAUTHORIZED, INVALID_REQUEST)
            );
        }
    }
    assert_eq!(
        w.sandbox
            .state()
            .counters()
            .rejected_for(RejectReason::BadTimestamp),
        2
    );
}

#[tokio::test]
async fn expired_token_then_refresh_then_success() {
    let mut w = world().await;
    let path = "/order/202309/orders/search";
    assert_eq!(w.sandbox.state().expire_access_tokens(&w.shop_id), 1);
    let a = w.call(Method::POST, path, Some("page_size=1"), b"{}").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, TOKEN_EXPIRED)
    );

    let refresh = format!(
        "/api/v2/token/refresh?app_key={}&app_secret={}&refresh_token={}&grant_type=refresh_token",
        w.app_key, w.app_secret, w.refresh_token
    );
    let r = w.raw(Method::GET, &refresh, &[], vec![]).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    let data = &r.body["data"];
    let new_token = data["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, w.token);
    // Absolute unix times, not durations.
    assert_eq!(
        data["access_token_expire_in"],
        json!(NOW + ACCESS_TOKEN_LIFETIME_SECS)
    );
    assert!(data["refresh_token_expire_in"].as_i64().unwrap() > NOW);
    assert_eq!(data["refresh_token"], json!(w.refresh_token));

    w.token = new_token;
    let a = w.call(Method::POST, path, Some("page_size=1"), b"{}").await;
    assert_eq!(a.code(), 0, "{}", a.body);

    // A week later the new token expires on its own.
    w.clock.advance(ACCESS_TOKEN_LIFETIME_SECS + 1);
    let a = w.call(Method::POST, path, Some("page_size=1"), b"{}").await;
    assert_eq!(a.code(), TOKEN_EXPIRED);

    let bad_secret = refresh.replace(&w.app_secret, "wrong-secret");
    let r = w.raw(Method::GET, &bad_secret, &[], vec![]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, INVALID_REQUEST)
    );
    assert!(r.body.get("data").is_none());
}

#[tokio::test]
async fn auth_code_exchange_is_single_use() {
    let w = world().await;
    let code = w.sandbox.state().issue_auth_code(&w.shop_id).unwrap();
    let get = format!(
        "/api/v2/token/get?app_key={}&app_secret={}&auth_code={}&grant_type=authorized_code",
        w.app_key,
        w.app_secret,
        code.expose()
    );
    let r = w.raw(Method::GET, &get, &[], vec![]).await;
    assert_eq!(r.code(), 0, "{}", r.body);
    assert!(r.body["data"]["access_token"].is_string());
    assert!(r.body["data"]["refresh_token_expire_in"].as_i64().unwrap() > NOW);
    let again = w.raw(Method::GET, &get, &[], vec![]).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::OK, super::AUTH_CODE_INVALID)
    );
    assert_eq!(
        w.sandbox
            .state()
            .counters()
            .rejected_for(RejectReason::TokenGrant),
        1
    );

    // The new access token works for the shop.
    let mut w = w;
    w.token = r.body["data"]["access_token"].as_str().unwrap().to_owned();
    let a = w
        .call(Method::GET, "/authorization/202309/shops", None, b"")
        .await;
    assert_eq!(a.code(), 0, "{}", a.body);
}

#[tokio::test]
async fn throttles_per_shop_with_retry_after() {
    let w = world().await;
    // Slow enough that no refill can happen during the test.
    w.sandbox.state().set_rate(Some(SandboxRate {
        per_second: 0.001,
        burst: 3,
    }));
    for _ in 0..3 {
        let a = w.call(Method::GET, "/seller/202309/shops", None, b"").await;
        assert_eq!(a.code(), 0, "{}", a.body);
    }
    let a = w.call(Method::GET, "/seller/202309/shops", None, b"").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED)
    );
    let retry: u64 = a.retry_after.unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Unsigned calls are refused before they count against the shop.
    let a = w
        .raw(
            Method::GET,
            "/seller/202309/shops?app_key=x",
            &w.default_headers(),
            vec![],
        )
        .await;
    assert_eq!(a.code(), INVALID_REQUEST);
    assert_eq!(
        w.sandbox
            .state()
            .counters()
            .rejected_for(RejectReason::Throttled),
        1
    );
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let w = world().await;
    let addr = w.sandbox.addr();
    w.sandbox.shutdown().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn caller_forged_credentials_are_replaced_and_accepted() {
    let w = world().await;
    let forged = "app_key=evil&sign=deadbeef&timestamp=1&access_token=stolen&shop_cipher=ROW_evil&page_size=3";
    let signed = w.signed(
        "/order/202309/orders/search",
        Some(forged),
        b"{}",
        Some("application/json; charset=utf-8"),
    );
    let a = w.send(Method::POST, &signed, b"{}".to_vec()).await;
    assert_eq!(a.code(), 0, "{}", a.body);
    let seen = w.sandbox.state().records().pop().unwrap();
    let pairs = seen.query_pairs();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["app_key", "page_size", "shop_cipher", "timestamp", "sign"]
    );
    assert_eq!(
        seen.query_param("app_key").as_deref(),
        Some(w.app_key.as_str())
    );
    assert_eq!(
        seen.query_param("shop_cipher").as_deref(),
        Some(w.cipher.as_str())
    );
    assert_eq!(seen.query_param("timestamp"), Some(NOW.to_string()));
    assert_eq!(
        seen.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}
