//! TikTok for Developers webhook verification (not TikTok Shop; kept apart on purpose):
//! `TikTok-Signature: t=<unix>,s=<hex>`, HMAC-SHA256(client_secret, t + "." + raw body), with a
//! freshness window on `t` against an injected clock.

use std::time::Duration;

use hmac::Mac;

use super::webhook::{decode_lower_hex_32, keyed_mac};
use crate::clock::SharedClock;
use crate::config::Secret;

/// The header TikTok for Developers signs with.
pub const SIGNATURE_HEADER: &str = "tiktok-signature";

/// Runtime settings for one TikTok for Developers client.
#[derive(Debug, Clone)]
pub struct DeveloperWebhookSettings {
    /// The client secret, the HMAC key.
    pub client_secret: Secret,
    /// How far `t` may be from the gateway's clock, either way (e.g. 5 minutes).
    pub tolerance: Duration,
}

/// Why a delivery was refused. None carries header or body content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeveloperWebhookError {
    #[error("TikTok-Signature header is missing")]
    Missing,
    #[error("TikTok-Signature header is malformed")]
    Malformed,
    #[error("TikTok-Signature timestamp is outside the freshness window")]
    Stale,
    #[error("TikTok-Signature does not match")]
    Mismatch,
}

/// Verifies TikTok for Developers webhooks for one client.
#[derive(Clone)]
pub struct DeveloperWebhookVerifier {
    keyed: hmac::Hmac<sha2::Sha256>,
    tolerance_secs: i64,
    clock: SharedClock,
}

impl std::fmt::Debug for DeveloperWebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeveloperWebhookVerifier")
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

impl DeveloperWebhookVerifier {
    pub fn new(settings: &DeveloperWebhookSettings, clock: SharedClock) -> Self {
        Self {
            keyed: keyed_mac(settings.client_secret.expose().as_bytes()),
            tolerance_secs: i64::try_from(settings.tolerance.as_secs()).unwrap_or(i64::MAX),
            clock,
        }
    }

    /// Checks the `TikTok-Signature` header value against the raw body bytes as received.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        raw_body: &[u8],
    ) -> Result<(), DeveloperWebhookError> {
        let header = header.ok_or(DeveloperWebhookError::Missing)?;
        let (t_text, signature) = parse_header(header).ok_or(DeveloperWebhookError::Malformed)?;
        let t = parse_unix(t_text).ok_or(DeveloperWebhookError::Malformed)?;
        // Freshness first: it is cheap and refuses replays of old deliveries outright.
        let now = self.clock.unix_seconds();
        if now.abs_diff(t) > self.tolerance_secs.unsigned_abs() {
            return Err(DeveloperWebhookError::Stale);
        }
        let mut mac = self.keyed.clone();
        mac.update(t_text);
        mac.update(b".");
        mac.update(raw_body);
        mac.verify_slice(&signature)
            .map_err(|_| DeveloperWebhookError::Mismatch)
    }
}

/// Splits `t=..,s=..` (either order). Each of `t` and `s` exactly once; other keys are ignored
/// so a new field does not break delivery; `s` must be 64 lowercase hex characters.
fn parse_header(header: &[u8]) -> Option<(&[u8], [u8; 32])> {
    let mut t = None;
    let mut s = None;
    for item in header.split(|b| *b == b',') {
        let eq = item.iter().position(|b| *b == b'=')?;
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        match key {
            b"t" if t.is_none() => t = Some(value),
            b"s" if s.is_none() => s = Some(decode_lower_hex_32(value)?),
            b"t" | b"s" => return None,
            _ => {}
        }
    }
    Some((t?, s?))
}

/// Unix seconds: 1 to 10 ASCII digits, nothing else (no sign, no spaces).
fn parse_unix(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    const NOW: i64 = 1_633_174_587;
    const SECRET: &str = "client-secret";

    fn setup() -> (DeveloperWebhookVerifier, ManualClock) {
        let clock = ManualClock::new(NOW);
        let v = DeveloperWebhookVerifier::new(
            &DeveloperWebhookSettings {
                client_secret: Secret::new(SECRET),
                tolerance: Duration::from_secs(300),
            },
            Arc::new(clock.clone()),
        );
        (v, clock)
    }

    fn signature(t: &str, body: &[u8]) -> String {
        let mut mac = keyed_mac(SECRET.as_bytes());
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn header(t: i64, body: &[u8]) -> String {
        format!("t={t},s={}", signature(&t.to_string(), body))
    }

    #[test]
    fn accepts_a_fresh_valid_signature() {
        let (v, _) = setup();
        let body = br#"{"event":"authorization.removed"}"#;
        assert_eq!(v.verify(Some(header(NOW, body).as_bytes()), body), Ok(()));
        // Order of the two fields does not matter; unknown fields are ignored.
        let s = signature(&NOW.to_string(), body);
        let h = format!("s={s},v=2,t={NOW}");
        assert_eq!(v.verify(Some(h.as_bytes()), body), Ok(()));
    }

    #[test]
    fn matches_an_independently_computed_digest() {
        // HMAC-SHA256("client-secret", "1633174587." + body), computed with Python's hmac module.
        let (v, _) = setup();
        let body = br#"{"event":"authorization.removed"}"#;
        let h = "t=1633174587,s=ad95c4a6fc140b2dfebbbafdc0fba987901bbd07023fe4ab1fba9c2bbf918363";
        assert_eq!(v.verify(Some(h.as_bytes()), body), Ok(()));
        assert_eq!(
            v.verify(Some(h.as_bytes()), b"{}"),
            Err(DeveloperWebhookError::Mismatch)
        );
    }

    #[test]
    fn refuses_stale_and_future_timestamps() {
        let (v, clock) = setup();
        let body = b"{}";
        let old = header(NOW - 301, body);
        assert_eq!(
            v.verify(Some(old.as_bytes()), body),
            Err(DeveloperWebhookError::Stale)
        );
        let future = header(NOW + 301, body);
        assert_eq!(
            v.verify(Some(future.as_bytes()), body),
            Err(DeveloperWebhookError::Stale)
        );
        let edge = header(NOW - 300, body);
        assert_eq!(v.verify(Some(edge.as_bytes()), body), Ok(()));
        // A captured delivery replayed later is refused.
        let fresh = header(NOW, body);
        clock.advance(600);
        assert_eq!(
            v.verify(Some(fresh.as_bytes()), body),
            Err(DeveloperWebhookError::Stale)
        );
    }

    #[test]
    fn refuses_tampering() {
        let (v, _) = setup();
        let body = br#"{"a":1}"#;
        let h = header(NOW, body);
        assert_eq!(
            v.verify(Some(h.as_bytes()), br#"{"a":2}"#),
            Err(DeveloperWebhookError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let s = signature(&NOW.to_string(), body);
        let moved = format!("t={},s={s}", NOW - 1);
        assert_eq!(
            v.verify(Some(moved.as_bytes()), body),
            Err(DeveloperWebhookError::Mismatch)
        );
        // The Shop scheme (app_key + body, no timestamp) is not accepted here.
        let mut mac = keyed_mac(SECRET.as_bytes());
        mac.update(body);
        let shop_style = format!("t={NOW},s={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            v.verify(Some(shop_style.as_bytes()), body),
            Err(DeveloperWebhookError::Mismatch)
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        let (v, _) = setup();
        let body = b"{}";
        let s = signature(&NOW.to_string(), body);
        assert_eq!(v.verify(None, body), Err(DeveloperWebhookError::Missing));
        for h in [
            String::new(),
            format!("t={NOW}"),
            format!("s={s}"),
            format!("t={NOW},s={}", s.to_uppercase()),
            format!("t={NOW},s={}", &s[..63]),
            format!("t=+{NOW},s={s}"),
            format!("t= {NOW},s={s}"),
            format!("t=12345678901,s={s}"),
            format!("t={NOW},t={NOW},s={s}"),
            format!("t={NOW},s={s},s={s}"),
            format!("t={NOW};s={s}"),
            format!("t={NOW},s={s},junk"),
        ] {
            assert_eq!(
                v.verify(Some(h.as_bytes()), body),
                Err(DeveloperWebhookError::Malformed),
                "{h}"
            );
        }
    }
}
