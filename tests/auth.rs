//! Authentication and authorization end to end, through the real gateway: JWTs from the dev
//! identity provider (and forged ones), JWKS rotation, API keys and client certificates. Every
//! refusal is checked for its status, its `WWW-Authenticate` challenge and that the order
//! service never received the request.

#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use common::{
    ApiKey, Auth, Config, JwtIssuer, Listener, Route, TestGateway, Upstream, free_port,
    https_client, https_client_with_cert,
};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::{DEV_AUDIENCE, DevAlg, DevIdp, MintRequest, sign_parts};
use tiktok_gateway::sandbox::orders::OrderService;

const BATCH_KEY: &str = "tgw-test-batch-key-7f3a9c21d4e8b605";
const REPORTING_KEY: &str = "tgw-test-reporting-key-0b1c2d3e4f5a6978";

/// `issuer` shapes the IdP's entry (`identity.jwt[0]`).
fn config(
    port: u16,
    idp: &DevIdp,
    orders: SocketAddr,
    issuer: impl FnOnce(JwtIssuer) -> JwtIssuer,
) -> Config {
    Config::new()
        .version("auth-t1")
        .listener(Listener::tls("public", port).client_auth("optional"))
        .jwt(issuer(JwtIssuer::url("dev", idp)))
        .api_key(ApiKey::new("batch", BATCH_KEY, &["orders:read"]))
        .api_key(ApiKey::new("reporting", REPORTING_KEY, &["orders:read"]))
        .mtls("dns:order-service.internal", &["orders:read"])
        .upstream(Upstream::new("orders", orders).timeouts("500ms", "2s"))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .methods(&["GET", "POST"])
                .auth(Auth::jwt("dev").scopes(&["orders:read"]))
                .upstream("orders"),
        )
        .route(
            Route::prefix("keyed", "public", "/keyed/")
                .methods(&["GET"])
                .auth(Auth::api_keys(&["batch"]))
                .upstream("orders"),
        )
        .route(
            Route::prefix("mtls", "public", "/mtls/")
                .methods(&["GET"])
                .auth(Auth::mtls())
                .upstream("orders"),
        )
}

struct Setup {
    gw: TestGateway,
    /// What the gateway was started with, for reloads.
    config: Config,
    orders: OrderService,
    idp: DevIdp,
    port: u16,
}

async fn setup() -> Setup {
    setup_with(|issuer| issuer).await
}

/// As [`setup`], with the IdP's issuer entry passed through `issuer` first.
async fn setup_with(issuer: impl FnOnce(JwtIssuer) -> JwtIssuer) -> Setup {
    let orders = OrderService::spawn(None).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let port = free_port();
    let config = config(port, &idp, orders.addr(), issuer);
    let gw = TestGateway::with(&config);
    Setup {
        gw,
        config,
        orders,
        idp,
        port,
    }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn token(&self, req: MintRequest) -> String {
        self.idp.mint(&req).unwrap()
    }

    fn reader(&self) -> String {
        self.token(MintRequest {
            sub: Some("order-app".into()),
            scope: Some("orders:read".into()),
            ..MintRequest::default()
        })
    }

    /// Sends `GET /orders/1` with `authorization` (if any) and checks it was refused with 401,
    /// a challenge containing `challenge`, and never reached the order service.
    async fn refused(&self, case: &str, authorization: Option<&str>, challenge: &str) {
        let before = self.orders.received_count();
        let mut req = https_client(&self.gw.certs).get(self.url("/orders/1"));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{case}: status");
        let www = res
            .headers()
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(www.starts_with("Bearer"), "{case}: challenge {www}");
        assert!(www.contains(challenge), "{case}: challenge {www}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_credentials", "{case}");
        assert_eq!(
            self.orders.received_count(),
            before,
            "{case}: the upstream received a refused request"
        );
    }
}

const INVALID_TOKEN: &str = "error=\"invalid_token\"";

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn valid_claims(idp: &DevIdp, sub: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({
        "iss": idp.issuer(),
        "sub": sub,
        "aud": DEV_AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "scope": "orders:read",
    })
}

/// The JWKS entry of the issuer's RSA key.
fn rsa_jwk(idp: &DevIdp) -> Value {
    idp.signer().jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .cloned()
        .unwrap()
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(big_endian: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = big_endian.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::new();
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(&trimmed);
    der(0x02, &content)
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The issuer's RSA public key in every form an attacker might try as an HMAC secret.
fn rsa_public_key_forms(jwk: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let pkcs1 = der(0x30, &[der_uint(&n), der_uint(&e)].concat());
    let rsa_oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let algorithm = der(0x30, &[der(0x06, &rsa_oid), vec![0x05, 0x00]].concat());
    let bit_string = der(0x03, &[vec![0u8], pkcs1.clone()].concat());
    let spki = der(0x30, &[algorithm, bit_string].concat());
    vec![
        ("SPKI PEM", pem("PUBLIC KEY", &spki).into_bytes()),
        ("PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1).into_bytes()),
        ("SPKI DER", spki),
        ("JWK JSON", jwk.to_string().into_bytes()),
    ]
}

/// A P-256 key pair that the IdP knows nothing about, with its public JWK.
fn attacker_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate().unwrap();
    let point = pair.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
}

/// Serves the attacker's JWKS on 127.0.0.1 and counts how often it is fetched.
async fn attacker_jwks_server(jwks: Value) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        let jwks = jwks.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::Json(jwks)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_is_forwarded_with_identity_headers_and_without_authorization() {
    let s = setup().await;
    let token = s.reader();
    let res = https_client(&s.gw.certs)
        .get(s.url("/orders/1"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-gateway-subject", "spoofed-admin")
        .header("x-gateway-scopes", "gateway:admin orders:write")
        .header("x-gateway-auth", "api_key:root")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = s.orders.received();
    assert_eq!(got.len(), 1);
    let h = &got[0].headers;
    assert_eq!(h.get_all("x-gateway-subject").iter().count(), 1);
    assert_eq!(h["x-gateway-subject"], "order-app");
    assert_eq!(h.get_all("x-gateway-scopes").iter().count(), 1);
    assert_eq!(h["x-gateway-scopes"], "orders:read");
    assert_eq!(h.get_all("x-gateway-auth").iter().count(), 1);
    assert_eq!(h["x-gateway-auth"], "jwt:dev");
    assert!(
        h.get("authorization").is_none(),
        "the token is not forwarded"
    );

    // The RS256 key verifies too (the issuer allows both algorithms).
    let rs = s.token(MintRequest {
        sub: Some("rs-app".into()),
        scope: Some("orders:read".into()),
        alg: DevAlg::RS256,
        ..MintRequest::default()
    });
    let res = https_client(&s.gw.certs)
        .get(s.url("/orders/2"))
        .bearer_auth(rs)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        s.orders.received()[1].headers["x-gateway-subject"],
        "rs-app"
    );

    // The access log names the subject's method but never carries the token.
    let log = s.gw.access_log();
    assert!(!log.contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_and_wrong_scheme_get_a_bare_bearer_challenge() {
    let s = setup().await;
    s.refused("missing token", None, "realm=").await;
    s.refused("Basic scheme", Some("Basic dXNlcjpwYXNz"), "realm=")
        .await;
    // A perfectly valid token under another scheme is still the wrong scheme.
    let token = s.reader();
    s.refused("Token scheme", Some(&format!("Token {token}")), "realm=")
        .await;
    s.refused("empty bearer", Some("Bearer "), "realm=").await;
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_bad_claims_are_refused() {
    let s = setup().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let base = || MintRequest {
        scope: Some("orders:read".into()),
        ..MintRequest::default()
    };
    let cases: Vec<(&str, MintRequest)> = vec![
        (
            "expired",
            MintRequest {
                exp: Some(now - 3600),
                ..base()
            },
        ),
        (
            "nbf in the future",
            MintRequest {
                nbf: Some(now + 3600),
                ..base()
            },
        ),
        (
            "wrong iss",
            MintRequest {
                iss: Some("https://idp.attacker.example".into()),
                ..base()
            },
        ),
        (
            "wrong aud",
            MintRequest {
                aud: Some(json!("some-other-service")),
                ..base()
            },
        ),
        (
            "missing exp",
            MintRequest {
                omit_exp: true,
                ..base()
            },
        ),
        (
            "oversized token",
            MintRequest {
                extra_claims: [("pad".to_string(), json!("x".repeat(9 * 1024)))]
                    .into_iter()
                    .collect(),
                ..base()
            },
        ),
    ];
    for (case, req) in cases {
        let token = s.token(req);
        s.refused(case, Some(&format!("Bearer {token}")), INVALID_TOKEN)
            .await;
    }
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_issued_in_the_future_or_older_than_the_maximum_age_are_refused() {
    let s = setup_with(|issuer| issuer.max_token_age("10m")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let issued_at = |iat: i64| {
        s.token(MintRequest {
            scope: Some("orders:read".into()),
            exp: Some(now + 24 * 3600),
            extra_claims: [("iat".to_string(), json!(iat))].into_iter().collect(),
            ..MintRequest::default()
        })
    };
    // Validly signed by the trusted IdP, unexpired: only `iat` is wrong.
    for (case, iat, reason) in [
        ("iat an hour ahead", now + 3600, "token_issued_in_future"),
        (
            "iat a year ahead",
            now + 365 * 24 * 3600,
            "token_issued_in_future",
        ),
        ("older than max_token_age", now - 3600, "token_too_old"),
    ] {
        s.refused(
            case,
            Some(&format!("Bearer {}", issued_at(iat))),
            INVALID_TOKEN,
        )
        .await;
        // The access log may be written after the answer: give it a moment.
        let needle = format!("\"reason\":\"{reason}\"");
        let mut logged = false;
        for _ in 0..100 {
            logged = s.gw.access_log().contains(&needle);
            if logged {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(logged, "{case}: access log reason {reason}");
    }
    assert_eq!(s.orders.received_count(), 0);
    // Within the age and the leeway: forwarded.
    let res = https_client(&s.gw.certs)
        .get(s.url("/orders/1"))
        .bearer_auth(issued_at(now - 60))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.orders.received_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_tampered_tokens_are_refused() {
    let s = setup().await;
    let claims = valid_claims(&s.idp, "forger");
    let es_kid = s.idp.signer().current_kid(DevAlg::ES256).unwrap();
    let rsa = rsa_jwk(&s.idp);
    let rsa_kid = rsa["kid"].as_str().unwrap().to_owned();

    // alg: none, in the spellings libraries have tripped over.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": es_kid});
        let token = format!("{}.{}.", b64(&header), b64(&claims));
        s.refused(
            &format!("alg {alg}"),
            Some(&format!("Bearer {token}")),
            INVALID_TOKEN,
        )
        .await;
    }

    // HS256 with the issuer's RSA public key as the HMAC secret.
    for (form, secret) in rsa_public_key_forms(&rsa) {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": rsa_kid});
        let token = sign_parts(
            &header,
            &claims,
            &EncodingKey::from_secret(&secret).unwrap(),
            Algorithm::HS256,
        )
        .unwrap();
        s.refused(
            &format!("HS256 keyed with the RSA public key ({form})"),
            Some(&format!("Bearer {token}")),
            INVALID_TOKEN,
        )
        .await;
    }

    // Signature stripped from a valid token.
    let valid = s.reader();
    let (signed_part, _sig) = valid.rsplit_once('.').unwrap();
    s.refused(
        "signature stripped",
        Some(&format!("Bearer {signed_part}.")),
        INVALID_TOKEN,
    )
    .await;
    s.refused(
        "signature segment removed",
        Some(&format!("Bearer {signed_part}")),
        INVALID_TOKEN,
    )
    .await;

    // Payload altered after signing (the original signature kept).
    let mut parts = valid.split('.');
    let (h, _p, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut elevated = valid_claims(&s.idp, "order-app");
    elevated["scope"] = json!("orders:read gateway:admin");
    s.refused(
        "payload altered",
        Some(&format!("Bearer {h}.{}.{sig}", b64(&elevated))),
        INVALID_TOKEN,
    )
    .await;

    // Keys offered by the token itself: an embedded `jwk`, and a `jku` URL to the attacker's
    // JWKS, both under the attacker's kid and under the real one.
    let (attacker, attacker_jwk) = attacker_key("attacker-1");
    let (jwks_addr, jwks_hits) = attacker_jwks_server(json!({"keys": [attacker_jwk]})).await;
    let jku = format!("http://{jwks_addr}/jwks.json");
    for kid in ["attacker-1", es_kid.as_str()] {
        for (case, extra) in [
            ("embedded jwk", json!({"jwk": attacker_jwk})),
            ("jku", json!({"jku": jku})),
            ("x5u", json!({"x5u": jku})),
        ] {
            let mut header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
            header
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let token = sign_parts(&header, &claims, &attacker, Algorithm::ES256).unwrap();
            s.refused(
                &format!("{case} with kid {kid}"),
                Some(&format!("Bearer {token}")),
                INVALID_TOKEN,
            )
            .await;
        }
    }
    assert_eq!(
        jwks_hits.load(Ordering::SeqCst),
        0,
        "the gateway fetched a key URL named by a token"
    );

    // Garbage that is not a JWT at all.
    s.refused("not a JWT", Some("Bearer abc.def"), INVALID_TOKEN)
        .await;
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_is_refused_after_at_most_one_refetch() {
    let s = setup().await;
    // Keys are loaded (a valid request passes) before counting fetches.
    let ok = https_client(&s.gw.certs)
        .get(s.url("/orders/1"))
        .bearer_auth(s.reader())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let before_fetches = s.idp.jwks_fetches();
    let before = s.orders.received_count();
    for i in 0..5 {
        let token = s.token(MintRequest {
            scope: Some("orders:read".into()),
            kid: Some(format!("kid-the-idp-never-had-{i}")),
            ..MintRequest::default()
        });
        s.refused(
            &format!("unknown kid #{i}"),
            Some(&format!("Bearer {token}")),
            INVALID_TOKEN,
        )
        .await;
    }
    let fetches = s.idp.jwks_fetches() - before_fetches;
    assert!(
        fetches <= 1,
        "{fetches} JWKS fetches for unknown kids within one cooldown"
    );
    assert_eq!(s.orders.received_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_key_is_accepted_after_one_refetch() {
    let s = setup().await;
    let client = https_client(&s.gw.certs);
    let res = client
        .get(s.url("/orders/1"))
        .bearer_auth(s.reader())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let before = s.idp.jwks_fetches();

    let new_kid = s.idp.rotate(DevAlg::ES256).unwrap();
    let token = s.token(MintRequest {
        sub: Some("rotated".into()),
        scope: Some("orders:read".into()),
        ..MintRequest::default()
    });
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());

    let res = client
        .get(s.url("/orders/2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.idp.jwks_fetches(), before + 1, "exactly one refetch");
    assert_eq!(
        s.orders.received()[1].headers["x-gateway-subject"],
        "rotated"
    );

    // Another token under the new key needs no further fetch.
    let again = s.token(MintRequest {
        sub: Some("rotated-2".into()),
        scope: Some("orders:read".into()),
        ..MintRequest::default()
    });
    let res = client
        .get(s.url("/orders/3"))
        .bearer_auth(again)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.idp.jwks_fetches(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_without_the_route_scope_is_403_insufficient_scope() {
    let s = setup().await;
    let token = s.token(MintRequest {
        scope: Some("profile orders:write".into()),
        ..MintRequest::default()
    });
    let res = https_client(&s.gw.certs)
        .get(s.url("/orders/1"))
        .bearer_auth(token)
        .header("x-gateway-scopes", "orders:read")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let www = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"orders:read\""), "{www}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert_eq!(s.orders.received_count(), 0);

    // A token with no scope claim at all.
    let token = s.token(MintRequest::default());
    let res = https_client(&s.gw.certs)
        .get(s.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_right_wrong_and_one_byte_off() {
    let s = setup().await;
    let client = https_client(&s.gw.certs);
    let res = client
        .get(s.url("/keyed/1"))
        .header("x-api-key", BATCH_KEY)
        .header("x-gateway-subject", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(s.url("/keyed/2"))
        .header("authorization", format!("ApiKey {BATCH_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = s.orders.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.headers["x-gateway-auth"], "api_key:batch");
        assert_eq!(r.headers.get_all("x-gateway-subject").iter().count(), 1);
        assert_ne!(r.headers["x-gateway-subject"], "spoofed");
        assert!(r.headers.get("x-api-key").is_none() || r.headers["x-api-key"] != BATCH_KEY);
        assert!(r.headers.get("authorization").is_none());
    }

    let mut off = BATCH_KEY.as_bytes().to_vec();
    let last = off.len() - 1;
    off[last] ^= 0x01;
    let one_byte_off = String::from_utf8(off).unwrap();
    let mut first_off = BATCH_KEY.as_bytes().to_vec();
    first_off[0] ^= 0x01;
    let first_byte_off = String::from_utf8(first_off).unwrap();
    let cases = [
        ("wrong key", "definitely-not-a-configured-key".to_string()),
        ("last byte off", one_byte_off),
        ("first byte off", first_byte_off),
        ("truncated", BATCH_KEY[..BATCH_KEY.len() - 1].to_string()),
        ("extended", format!("{BATCH_KEY}0")),
        // A real key that this route does not accept.
        ("key not listed on the route", REPORTING_KEY.to_string()),
    ];
    for (case, key) in &cases {
        for via_authorization in [false, true] {
            let req = client.get(s.url("/keyed/3"));
            let req = if via_authorization {
                req.header("authorization", format!("ApiKey {key}"))
            } else {
                req.header("x-api-key", key.as_str())
            };
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{case}");
            assert!(
                res.headers().contains_key("www-authenticate"),
                "{case}: no challenge"
            );
            assert_eq!(s.orders.received_count(), 2, "{case}: reached upstream");
        }
    }
    let res = client.get(s.url("/keyed/4")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(s.orders.received_count(), 2);
    assert!(!s.gw.access_log().contains(BATCH_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_the_gateway_ca_only() {
    let s = setup().await;
    let certs = &s.gw.certs;
    let good = https_client_with_cert(certs, &certs.client_cert, &certs.client_key);
    let res = good
        .get(s.url("/mtls/1"))
        .header("x-gateway-subject", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = s.orders.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["x-gateway-auth"], "mtls");
    assert_eq!(
        got[0].headers["x-gateway-subject"],
        "order-service.internal"
    );
    assert_eq!(got[0].headers["x-gateway-scopes"], "orders:read");

    // A certificate alone does not satisfy a JWT route.
    let res = good.get(s.url("/orders/1")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(s.orders.received_count(), 1);

    // Same SAN, signed by an unrelated CA: the handshake fails or the request is refused.
    let other = https_client_with_cert(certs, &certs.other_client_cert, &certs.other_client_key);
    match other.get(s.url("/mtls/2")).send().await {
        Err(_) => {}
        Ok(res) => {
            assert_eq!(res.status(), 401, "foreign CA accepted");
            assert!(res.headers().contains_key("www-authenticate"));
        }
    }
    assert_eq!(s.orders.received_count(), 1);

    // No certificate at all.
    let res = https_client(certs)
        .get(s.url("/mtls/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let www = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.starts_with("Bearer"), "{www}");
    assert_eq!(s.orders.received_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_blocks_a_caller_at_runtime_by_reload() {
    let s = setup().await;
    let client = https_client(&s.gw.certs);
    let token = s.reader();
    let get = |path: &'static str, auth: (&'static str, String)| {
        client.get(s.url(path)).header(auth.0, auth.1).send()
    };
    let bearer = ("authorization", format!("Bearer {token}"));
    let key = ("x-api-key", BATCH_KEY.to_string());
    assert_eq!(
        get("/orders/1", bearer.clone()).await.unwrap().status(),
        200
    );
    assert_eq!(get("/keyed/1", key.clone()).await.unwrap().status(), 200);
    let before = s.orders.received_count();

    // Ops block the JWT caller `order-app` and the API key `batch` with a reload; no restart.
    let blocked = s
        .config
        .clone()
        .blocked_subjects(&["order-app", "batch"])
        .render(s.gw.dir.path());
    let config = tiktok_gateway::config::load_str(&blocked, s.gw.dir.path(), &s.gw.config_path)
        .expect("valid config");
    s.gw.gateway
        .apply(config)
        .expect("the kill switch applies by reload");

    for (path, auth) in [("/orders/1", bearer.clone()), ("/keyed/1", key.clone())] {
        let res = get(path, auth).await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "caller_blocked", "{path}");
    }
    assert_eq!(
        s.orders.received_count(),
        before,
        "a blocked caller reached the upstream"
    );
    // Other callers are not affected.
    let other = s.token(MintRequest {
        sub: Some("another-app".into()),
        scope: Some("orders:read".into()),
        ..MintRequest::default()
    });
    let res = get("/orders/2", ("authorization", format!("Bearer {other}")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
