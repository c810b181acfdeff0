//! One call to TikTok's token refresh endpoint and the parsing of its answer.
//!
//! `GET {auth_base}/api/v2/token/refresh?app_key=..&app_secret=..&refresh_token=..&grant_type=
//! refresh_token`. The URL carries the app secret and the refresh token, so neither it nor a
//! `reqwest` error (whose text includes the URL) is ever logged or put in an error.

use std::time::Duration;

use serde_json::Value;

use super::TokenError;
use crate::config::Secret;
use crate::tiktok::token_store::TokenSet;

/// Largest token response read; real ones are well under 2 KiB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub(super) fn client(
    timeout: Duration,
    ca: Option<&std::path::Path>,
) -> Result<reqwest::Client, TokenError> {
    // reqwest is built without a default provider; ours is ring. Already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let fail = |reason: String| TokenError::Ca {
            path: ca.display().to_string(),
            reason,
        };
        let pem = std::fs::read(ca).map_err(|e| fail(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|_| TokenError::Client)
}

/// Checks `auth_base` once, at construction, so a refresh never fails on a bad URL.
pub(super) fn valid_base(auth_base: &str) -> bool {
    match reqwest::Url::parse(auth_base) {
        Ok(url) => {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                // A fragment would swallow the query that carries the secret and the token.
                && url.fragment().is_none()
                && url.username().is_empty()
                && url.password().is_none()
        }
        Err(_) => false,
    }
}

pub(super) fn refresh_url(
    auth_base: &str,
    app_key: &str,
    app_secret: &Secret,
    refresh_token: &Secret,
) -> Option<reqwest::Url> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("app_key", app_key)
        .append_pair("app_secret", app_secret.expose())
        .append_pair("refresh_token", refresh_token.expose())
        .append_pair("grant_type", "refresh_token")
        .finish();
    let base = auth_base.trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}/api/v2/token/refresh?{query}")).ok()
}

/// `GET {auth_base}/api/v2/token/get?app_key=..&app_secret=..&auth_code=..&grant_type=
/// authorized_code`: a seller's auth code for the first tokens. Carries the app secret and the
/// code: never logged.
pub(super) fn token_get_url(
    auth_base: &str,
    app_key: &str,
    app_secret: &Secret,
    auth_code: &str,
) -> Option<reqwest::Url> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("app_key", app_key)
        .append_pair("app_secret", app_secret.expose())
        .append_pair("auth_code", auth_code)
        .append_pair("grant_type", "authorized_code")
        .finish();
    let base = auth_base.trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}/api/v2/token/get?{query}")).ok()
}

/// Sends the request and returns the new tokens, or what failed (never the values).
pub(super) async fn call(
    client: &reqwest::Client,
    url: reqwest::Url,
    traceparent: Option<&str>,
    shop: &str,
    now: i64,
) -> Result<TokenSet, TokenError> {
    let transport = |kind: &'static str| TokenError::Transport {
        shop: shop.to_string(),
        kind,
    };
    let mut request = client.get(url);
    if let Some(tp) = traceparent {
        request = request.header(crate::telemetry::trace_context::TRACEPARENT, tp);
    }
    let mut response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            transport("timed out")
        } else if e.is_connect() {
            transport("connection failed")
        } else {
            transport("request failed")
        }
    })?;
    let status = response.status();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(invalid(shop, "response too large"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(transport("timed out")),
            Err(_) => return Err(transport("response body failed")),
        }
    }
    if !status.is_success() {
        return Err(TokenError::HttpStatus {
            shop: shop.to_string(),
            status: status.as_u16(),
        });
    }
    parse(&body, shop, now)
}

fn invalid(shop: &str, what: &'static str) -> TokenError {
    TokenError::InvalidResponse {
        shop: shop.to_string(),
        what,
    }
}

/// `{code, message, data: {access_token, access_token_expire_in, refresh_token,
/// refresh_token_expire_in, ...}}`. The `*_expire_in` values are absolute unix seconds; a value
/// that is not in the future (for example a duration such as 604800) is refused rather than
/// guessed at.
pub(super) fn parse(body: &[u8], shop: &str, now: i64) -> Result<TokenSet, TokenError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid(shop, "not JSON"))?;
    let code = value
        .get("code")
        .and_then(as_i64)
        .ok_or_else(|| invalid(shop, "no code"))?;
    if code != 0 {
        return Err(TokenError::Refused {
            shop: shop.to_string(),
            code,
        });
    }
    let data = value
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| invalid(shop, "no data"))?;
    let token = |name: &str, what: &'static str| {
        data.get(name)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| invalid(shop, what))
    };
    let expiry = |name: &str, what: &'static str| {
        data.get(name)
            .and_then(as_i64)
            .filter(|t| *t > now)
            .ok_or_else(|| invalid(shop, what))
    };
    Ok(TokenSet {
        access_token: token("access_token", "no access_token")?,
        access_expires_at: expiry(
            "access_token_expire_in",
            "access_token_expire_in is not a future unix time",
        )?,
        refresh_token: token("refresh_token", "no refresh_token")?,
        refresh_expires_at: expiry(
            "refresh_token_expire_in",
            "refresh_token_expire_in is not a future unix time",
        )?,
    })
}

/// Integers, or strings of digits (some gateways in front of TikTok stringify numbers).
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_718_305_585;

    fn body(access_exp: &str, refresh_exp: &str) -> Vec<u8> {
        format!(
            r#"{{"code":0,"message":"success","request_id":"r1","data":{{"access_token":"ROW_new_access","access_token_expire_in":{access_exp},"refresh_token":"ROW_new_refresh","refresh_token_expire_in":{refresh_exp},"open_id":"o","seller_name":"s","granted_scopes":["x"]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn expiry_values_are_absolute_timestamps() {
        let set = parse(&body("1718910385", "1750000000"), "shop", NOW).unwrap();
        assert_eq!(set.access_expires_at, 1_718_910_385);
        assert_eq!(set.refresh_expires_at, 1_750_000_000);
        assert_eq!(set.access_token.expose(), "ROW_new_access");
        assert_eq!(set.refresh_token.expose(), "ROW_new_refresh");
        let set = parse(&body("\"1718910385\"", "1750000000"), "shop", NOW).unwrap();
        assert_eq!(set.access_expires_at, 1_718_910_385);
    }

    #[test]
    fn a_duration_or_past_time_is_refused_not_guessed() {
        // 604800 is "7 days" read as a duration: in the past as a timestamp.
        for (a, r) in [
            ("604800", "1750000000"),
            ("1718910385", "31536000"),
            (&NOW.to_string()[..], "1750000000"),
        ] {
            let err = parse(&body(a, r), "7494049642642441621", NOW).unwrap_err();
            assert!(matches!(err, TokenError::InvalidResponse { .. }), "{err}");
        }
    }

    #[test]
    fn refusals_and_malformed_answers_are_typed() {
        let refused =
            br#"{"code":36004004,"message":"refresh token invalid ROW_secret","data":{}}"#;
        let err = parse(refused, "7494", NOW).unwrap_err();
        assert_eq!(
            err,
            TokenError::Refused {
                shop: "7494".into(),
                code: 36004004
            }
        );
        assert!(!err.to_string().contains("ROW_secret"));
        for bad in [
            &b"not json"[..],
            br#"{"message":"x"}"#,
            br#"{"code":0}"#,
            br#"{"code":0,"data":{"access_token":"","access_token_expire_in":1718910385,"refresh_token":"r","refresh_token_expire_in":1750000000}}"#,
            br#"{"code":0,"data":{"access_token":"a","access_token_expire_in":1718910385.5,"refresh_token":"r","refresh_token_expire_in":1750000000}}"#,
        ] {
            assert!(matches!(parse(bad, "s", NOW), Err(TokenError::InvalidResponse { .. })));
        }
    }

    #[test]
    fn builds_an_encoded_url_and_checks_the_base() {
        let url = refresh_url(
            "https://auth.tiktok-shops.com/",
            "29a39d",
            &Secret::new("s e/c+r=t"),
            &Secret::new("ROW_a+b/c=="),
        )
        .unwrap();
        assert_eq!(url.path(), "/api/v2/token/refresh");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("app_key".into(), "29a39d".into()),
                ("app_secret".into(), "s e/c+r=t".into()),
                ("refresh_token".into(), "ROW_a+b/c==".into()),
                ("grant_type".into(), "refresh_token".into()),
            ]
        );
        assert!(valid_base("https://auth.tiktok-shops.com"));
        assert!(valid_base("http://127.0.0.1:8081"));
        for bad in [
            "",
            "auth.tiktok-shops.com",
            "ftp://x",
            "https://u:p@x",
            "https://:p@x",
            "https://x/?a=b",
            "https://x/#frag",
        ] {
            assert!(!valid_base(bad), "{bad}");
        }
    }
}
