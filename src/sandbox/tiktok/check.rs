//! The sandbox's own checks on every API call, written apart from the gateway's signer on
//! purpose (a different decoder, the string to sign built whole) so a bug in one shows up
//! against the other. Order: content type, parameters, app_key, timestamp window, sign,
//! access token, shop_cipher rule.

use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::record::RejectReason;
use super::reply::{self, Reply};
use super::state::{Inner, SandboxState};

/// TikTok accepts timestamps from 5 minutes before its clock to 30 seconds after.
const MAX_AGE_SECS: i64 = 300;
const MAX_AHEAD_SECS: i64 = 30;

/// Decoded query parameters of one call, keys unique.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes a raw query; a repeated key is refused.
    pub(crate) fn from_raw(raw: Option<&str>) -> Result<Self, Reply> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(Reply::error(
                    RejectReason::RepeatedParam,
                    StatusCode::BAD_REQUEST,
                    reply::INVALID_REQUEST,
                    "Duplicate query parameter.",
                ));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(pairs))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[cfg(test)]
    pub(crate) fn parse_for_test(raw: &str) -> Self {
        Self::from_raw(Some(raw)).unwrap_or_default()
    }
}

/// Whether an API wants `shop_cipher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CipherRule {
    /// Shop-scoped: missing is `106013`.
    Required,
    /// `/authorization`, `/seller`, uploads: present is refused.
    Refused,
}

/// A call that passed every check.
#[derive(Debug)]
pub(crate) struct Caller {
    pub shop_id: String,
    pub params: Params,
}

/// Runs TikTok's checks on one call.
pub(crate) fn verify(
    state: &SandboxState,
    inner: &Inner,
    rule: CipherRule,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Caller, Reply> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            Reply::error(
                RejectReason::MissingContentType,
                StatusCode::BAD_REQUEST,
                reply::INVALID_REQUEST,
                "Invalid request: content-type is required.",
            )
        })?;
    let params = Params::from_raw(uri.query())?;
    let unauthorized = |reason, code, message| {
        Err(Reply::error(
            reason,
            StatusCode::UNAUTHORIZED,
            code,
            message,
        ))
    };

    if params.get("app_key") != Some(state.app_key.as_str()) {
        return unauthorized(
            RejectReason::BadAppKey,
            reply::INVALID_REQUEST,
            "Invalid credentials: app_key is missing or unknown.",
        );
    }

    let now = state.now();
    let timestamp = params
        .get("timestamp")
        .filter(|t| t.len() == 10 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<i64>().ok());
    match timestamp {
        Some(t) if t >= now - MAX_AGE_SECS && t <= now + MAX_AHEAD_SECS => {}
        _ => {
            return unauthorized(
                RejectReason::BadTimestamp,
                reply::INVALID_REQUEST,
                "Invalid timestamp: missing, malformed or outside the accepted window.",
            );
        }
    }

    let Some(given) = params.get("sign") else {
        return unauthorized(
            RejectReason::MissingSign,
            reply::INVALID_REQUEST,
            "Invalid credentials: sign is required.",
        );
    };
    let signed_body = (!is_multipart_form(content_type)).then_some(body);
    let expected = expected_sign(state.app_secret.expose(), uri.path(), &params, signed_body);
    // Uppercase hex is refused by TikTok, so the comparison is on the exact text.
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return unauthorized(
            RejectReason::BadSign,
            reply::BAD_SIGN,
            "Invalid credentials: the sign is incorrect.",
        );
    }

    let Some(token) = headers
        .get("x-tts-access-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    else {
        return unauthorized(
            RejectReason::MissingToken,
            reply::INVALID_REQUEST,
            "Invalid credentials: x-tts-access-token is required.",
        );
    };
    let Some(grant) = inner.access_tokens.get(token) else {
        return unauthorized(
            RejectReason::InvalidToken,
            reply::INVALID_REQUEST,
            "Invalid credentials: the access token is invalid.",
        );
    };
    if grant.expires_at < now {
        return unauthorized(
            RejectReason::ExpiredToken,
            reply::TOKEN_EXPIRED,
            "Access token is expired, please refresh it.",
        );
    }
    let shop_cipher = inner
        .shop(&grant.shop_id)
        .map(|s| s.cipher.as_str())
        .unwrap_or_default();

    match (rule, params.get("shop_cipher")) {
        (CipherRule::Required, None) => {
            return Err(Reply::error(
                RejectReason::MissingShopCipher,
                StatusCode::BAD_REQUEST,
                reply::SHOP_CIPHER_MISSING,
                "shop_cipher is required for this API.",
            ));
        }
        (CipherRule::Required, Some(cipher)) if cipher != shop_cipher => {
            return Err(Reply::error(
                RejectReason::WrongShopCipher,
                StatusCode::BAD_REQUEST,
                reply::INVALID_REQUEST,
                "Invalid shop_cipher: it does not belong to the authorized shop.",
            ));
        }
        (CipherRule::Refused, Some(_)) => {
            return Err(Reply::error(
                RejectReason::UnexpectedShopCipher,
                StatusCode::BAD_REQUEST,
                reply::INVALID_REQUEST,
                "shop_cipher is not allowed for this API.",
            ));
        }
        _ => {}
    }

    Ok(Caller {
        shop_id: grant.shop_id.clone(),
        params,
    })
}

/// `multipart/form-data` by its essence, whatever the parameters or case.
fn is_multipart_form(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("multipart/form-data")
}

/// The whole string TikTok signs, built in one buffer.
fn string_to_sign(secret: &str, path: &str, params: &Params, body: Option<&[u8]>) -> Vec<u8> {
    let mut signed: Vec<&(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| k != "sign" && k != "access_token")
        .collect();
    signed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Vec::new();
    out.extend_from_slice(secret.as_bytes());
    out.extend_from_slice(path.as_bytes());
    for (k, v) in signed {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(body.unwrap_or_default());
    out.extend_from_slice(secret.as_bytes());
    out
}

fn expected_sign(secret: &str, path: &str, params: &Params, body: Option<&[u8]>) -> String {
    let message = string_to_sign(secret, path, params, body);
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(&message);
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        // No key is refused by HMAC; an empty answer can never match a sign.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors_hold_for_the_sandbox_too() {
        let p = Params::parse_for_test("app_key=29a39d&timestamp=1623812664&sign=x");
        assert_eq!(
            string_to_sign("e59af819cc", "/authorization/202309/shops", &p, None),
            b"e59af819cc/authorization/202309/shopsapp_key29a39dtimestamp1623812664e59af819cc"
        );
        assert_eq!(
            expected_sign("e59af819cc", "/authorization/202309/shops", &p, None),
            "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8"
        );
        let p = Params::parse_for_test(
            "timestamp=1696909648&shop_cipher=ROW_xkMbgAAAeVAQra0eZWebFQq5aIK&app_key=68xu9ks5p4i8",
        );
        let body = br#"{"address":"https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}"#;
        assert_eq!(
            expected_sign("e59af819cc", "/event/202309/webhooks", &p, Some(body)),
            "cd0d6268252f4ba293bf7ea4c0a2873bf9beec600d22530638564ab301435f7a"
        );
        let p = Params::parse_for_test("foo=bar");
        assert_eq!(
            expected_sign("app_secret", "/test-api", &p, None),
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
        );
    }

    #[test]
    fn repeated_params_are_refused() {
        assert!(Params::from_raw(Some("a=1&a=2")).is_err());
        assert!(Params::from_raw(Some("a=1&b=2")).is_ok());
    }

    #[test]
    fn multipart_essence() {
        assert!(is_multipart_form("multipart/form-data; boundary=x"));
        assert!(is_multipart_form("MULTIPART/FORM-DATA"));
        assert!(!is_multipart_form("application/json"));
    }
}
