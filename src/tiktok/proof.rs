//! The gateway's own proof on webhooks it forwards to internal order services.
//!
//! TikTok's `Authorization` header proves the event came from TikTok to the gateway; it is never
//! passed on. Instead the gateway signs what it forwards with a secret it shares with the order
//! services: `x-gateway-signature` = lowercase hex HMAC-SHA256(secret, timestamp + "." + body),
//! with `x-gateway-timestamp` = unix seconds. Receivers call [`ProofKey::verify`] (or the free
//! [`verify`]) over the raw body bytes before parsing anything.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::config::Secret;

/// Unix seconds at which the gateway signed this delivery attempt.
pub const TIMESTAMP_HEADER: &str = "x-gateway-timestamp";
/// Lowercase hex HMAC-SHA256 over `timestamp + "." + body`.
pub const SIGNATURE_HEADER: &str = "x-gateway-signature";
/// Stable id of the queued event, identical on every retry: receivers dedupe on it.
pub const EVENT_ID_HEADER: &str = "x-gateway-event-id";

/// Default freshness window a receiver should accept either side of its clock.
pub const DEFAULT_MAX_SKEW_SECONDS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a proof was refused. Carries no secret and no body bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProofError {
    #[error("gateway proof: timestamp header missing or not unix seconds")]
    BadTimestamp,
    #[error("gateway proof: timestamp outside the accepted window")]
    Stale,
    #[error("gateway proof: signature header missing or not 64 lowercase hex digits")]
    MalformedSignature,
    #[error("gateway proof: signature does not match")]
    Mismatch,
    #[error("gateway proof: the shared secret is empty")]
    EmptySecret,
}

/// The shared secret, keyed once so per-event signing only clones the HMAC state.
#[derive(Clone)]
pub struct ProofKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofKey([redacted])")
    }
}

impl ProofKey {
    /// Keys the HMAC with the shared secret. An empty secret is refused: it would make every
    /// signature forgeable.
    pub fn new(secret: &Secret) -> Result<Self, ProofError> {
        let bytes = secret.expose().as_bytes();
        if bytes.is_empty() {
            return Err(ProofError::EmptySecret);
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| ProofError::EmptySecret)?;
        Ok(Self { mac })
    }

    fn mac_over(&self, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `x-gateway-signature` value for `body` signed at `timestamp` (unix seconds).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        hex::encode(self.mac_over(&ts, body).finalize().into_bytes())
    }

    /// Checks the two header values against the raw `body`, in constant time, and that the
    /// timestamp lies within `max_skew_seconds` of `now` (unix seconds).
    pub fn verify(
        &self,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now: i64,
        max_skew_seconds: i64,
    ) -> Result<(), ProofError> {
        let ts = parse_timestamp(timestamp_header)?;
        if (now - ts).abs() > max_skew_seconds {
            return Err(ProofError::Stale);
        }
        let expected = parse_signature(signature_header)?;
        // `verify_slice` compares in constant time.
        self.mac_over(timestamp_header, body)
            .verify_slice(&expected)
            .map_err(|_| ProofError::Mismatch)
    }
}

/// One-shot verification for receivers that do not keep a [`ProofKey`] around.
pub fn verify(
    secret: &Secret,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    max_skew_seconds: i64,
) -> Result<(), ProofError> {
    ProofKey::new(secret)?.verify(
        timestamp_header,
        signature_header,
        body,
        now,
        max_skew_seconds,
    )
}

/// Digits only (no sign, no spaces), so the signed text is exactly what the header says.
fn parse_timestamp(value: &str) -> Result<i64, ProofError> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProofError::BadTimestamp);
    }
    value.parse().map_err(|_| ProofError::BadTimestamp)
}

/// Exactly 64 lowercase hex digits; anything else is refused rather than normalised.
fn parse_signature(value: &str) -> Result<[u8; 32], ProofError> {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ProofError::MalformedSignature);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|_| ProofError::MalformedSignature)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_718_305_585;

    fn key() -> ProofKey {
        ProofKey::new(&Secret::new("order-service-shared-secret")).unwrap()
    }

    #[test]
    fn matches_an_independent_hmac() {
        let body = br#"{"type":1,"shop_id":"7495540735365777507"}"#;
        let mut mac = HmacSha256::new_from_slice(b"order-service-shared-secret").unwrap();
        mac.update(format!("{NOW}.").as_bytes());
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(key().sign(NOW, body), expected);
    }

    #[test]
    fn verifies_its_own_signature() {
        let body = b"{\"a\": 1}\n";
        let sig = key().sign(NOW, body);
        assert_eq!(
            key().verify(&NOW.to_string(), &sig, body, NOW + 10, 300),
            Ok(())
        );
        let secret = Secret::new("order-service-shared-secret");
        assert_eq!(
            verify(&secret, &NOW.to_string(), &sig, body, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_tampered_body() {
        let sig = key().sign(NOW, b"{\"order_id\":\"1\"}");
        let r = key().verify(&NOW.to_string(), &sig, b"{\"order_id\":\"2\"}", NOW, 300);
        assert_eq!(r, Err(ProofError::Mismatch));
        // Whitespace counts: the exact bytes are signed.
        let r = key().verify(&NOW.to_string(), &sig, b"{\"order_id\":\"1\"} ", NOW, 300);
        assert_eq!(r, Err(ProofError::Mismatch));
    }

    #[test]
    fn refuses_a_changed_timestamp_or_wrong_secret() {
        let body = b"{}";
        let sig = key().sign(NOW, body);
        let r = key().verify(&(NOW + 1).to_string(), &sig, body, NOW, 300);
        assert_eq!(r, Err(ProofError::Mismatch));
        let other = ProofKey::new(&Secret::new("another-secret")).unwrap();
        assert_eq!(
            other.verify(&NOW.to_string(), &sig, body, NOW, 300),
            Err(ProofError::Mismatch)
        );
    }

    #[test]
    fn refuses_stale_and_future_timestamps() {
        let body = b"{}";
        let sig = key().sign(NOW, body);
        let ts = NOW.to_string();
        assert_eq!(
            key().verify(&ts, &sig, body, NOW + 301, 300),
            Err(ProofError::Stale)
        );
        assert_eq!(
            key().verify(&ts, &sig, body, NOW - 301, 300),
            Err(ProofError::Stale)
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        let body = b"{}";
        let sig = key().sign(NOW, body);
        let ts = NOW.to_string();
        for bad_ts in ["", "+1718305585", " 1718305585", "17183055.5", "-1", "abc"] {
            assert_eq!(
                key().verify(bad_ts, &sig, body, NOW, 300),
                Err(ProofError::BadTimestamp),
                "{bad_ts:?}"
            );
        }
        let upper = sig.to_uppercase();
        for bad_sig in ["", &sig[..63], &upper, &format!("{sig}00")] {
            assert_eq!(
                key().verify(&ts, bad_sig, body, NOW, 300),
                Err(ProofError::MalformedSignature)
            );
        }
    }

    #[test]
    fn refuses_an_empty_secret_and_hides_the_key() {
        assert_eq!(
            ProofKey::new(&Secret::new("")).unwrap_err(),
            ProofError::EmptySecret
        );
        assert!(!format!("{:?}", key()).contains("order-service"));
    }
}
