//! TikTok Shop webhook verification: `Authorization` is the lowercase hex
//! HMAC-SHA256(app_secret, app_key + raw body). Checked in constant time before anything parses
//! the body.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The header TikTok Shop puts its signature in.
pub const SIGNATURE_HEADER: &str = "authorization";

/// Runtime settings for one TikTok app's shop webhooks.
#[derive(Debug, Clone)]
pub struct ShopWebhookSettings {
    /// The app's `app_key`, prefixed to the body in the signed message.
    pub app_key: String,
    /// The app's secret, the HMAC key.
    pub app_secret: Secret,
}

/// Why a webhook was refused. All are answered 401; none carries header or body content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook signature header is missing")]
    Missing,
    #[error("webhook signature is not 64 lowercase hex characters")]
    Malformed,
    #[error("webhook signature does not match")]
    Mismatch,
}

/// Verifies shop webhooks for one app. Built once at config load; `verify` allocates nothing.
#[derive(Clone)]
pub struct ShopWebhookVerifier {
    /// The MAC already keyed and fed `app_key`: each request clones it and adds its body.
    keyed: HmacSha256,
}

impl std::fmt::Debug for ShopWebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShopWebhookVerifier([redacted])")
    }
}

impl ShopWebhookVerifier {
    pub fn new(settings: &ShopWebhookSettings) -> Self {
        let mut keyed = keyed_mac(settings.app_secret.expose().as_bytes());
        keyed.update(settings.app_key.as_bytes());
        Self { keyed }
    }

    /// Checks the `Authorization` header value against the raw body bytes as received.
    pub fn verify(
        &self,
        authorization: Option<&[u8]>,
        raw_body: &[u8],
    ) -> Result<(), WebhookError> {
        let header = authorization.ok_or(WebhookError::Missing)?;
        let claimed = decode_lower_hex_32(header).ok_or(WebhookError::Malformed)?;
        let mut mac = self.keyed.clone();
        mac.update(raw_body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&claimed)
            .map_err(|_| WebhookError::Mismatch)
    }
}

/// HMAC accepts any key length; this keeps the constructor infallible without `expect`.
pub(crate) fn keyed_mac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // Unreachable for HMAC; an empty-key MAC would only ever fail to verify real signatures.
        Err(_) => <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()),
    }
}

/// Decodes exactly 64 lowercase hex characters. Uppercase, odd length or anything else: `None`.
pub(crate) fn decode_lower_hex_32(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = lower_hex(pair[0])? << 4 | lower_hex(pair[1])?;
    }
    Some(out)
}

fn lower_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The key to deduplicate a delivery on: its `tts_notification_id` (string or number) when the
/// body is a JSON object that has a non-empty one, else the SHA-256 hex of the raw body.
/// Call it only on a body that passed [`ShopWebhookVerifier::verify`].
pub fn dedup_key(raw_body: &[u8]) -> String {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    #[derive(Deserialize)]
    struct Envelope {
        tts_notification_id: Option<Id>,
    }
    let id = match serde_json::from_slice::<Envelope>(raw_body) {
        Ok(Envelope {
            tts_notification_id: Some(Id::Text(id)),
        }) if !id.is_empty() => Some(id),
        Ok(Envelope {
            tts_notification_id: Some(Id::Number(n)),
        }) => Some(n.to_string()),
        _ => None,
    };
    id.unwrap_or_else(|| hex::encode(Sha256::digest(raw_body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICIAL_BODY: &str = r#"{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507","timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178","order_status":"UNPAID","update_time":1718305585}}"#;
    const OFFICIAL_SIG: &str = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05";

    fn verifier() -> ShopWebhookVerifier {
        ShopWebhookVerifier::new(&ShopWebhookSettings {
            app_key: "abcdef".into(),
            app_secret: Secret::new("123"),
        })
    }

    #[test]
    fn official_vector_verifies() {
        let v = verifier();
        assert_eq!(
            v.verify(Some(OFFICIAL_SIG.as_bytes()), OFFICIAL_BODY.as_bytes()),
            Ok(())
        );
        // Reusable: the keyed state is cloned, not consumed.
        assert_eq!(
            v.verify(Some(OFFICIAL_SIG.as_bytes()), OFFICIAL_BODY.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn refuses_missing_header() {
        assert_eq!(
            verifier().verify(None, OFFICIAL_BODY.as_bytes()),
            Err(WebhookError::Missing)
        );
    }

    #[test]
    fn refuses_uppercase_odd_length_and_junk() {
        let v = verifier();
        let body = OFFICIAL_BODY.as_bytes();
        let upper = OFFICIAL_SIG.to_uppercase();
        assert_eq!(
            v.verify(Some(upper.as_bytes()), body),
            Err(WebhookError::Malformed)
        );
        assert_eq!(
            v.verify(Some(&OFFICIAL_SIG.as_bytes()[..63]), body),
            Err(WebhookError::Malformed)
        );
        let longer = format!("{OFFICIAL_SIG}0");
        assert_eq!(
            v.verify(Some(longer.as_bytes()), body),
            Err(WebhookError::Malformed)
        );
        let spaced = format!(" {}", &OFFICIAL_SIG[1..]);
        assert_eq!(
            v.verify(Some(spaced.as_bytes()), body),
            Err(WebhookError::Malformed)
        );
        assert_eq!(v.verify(Some(b""), body), Err(WebhookError::Malformed));
        let prefixed = format!("sha256={OFFICIAL_SIG}");
        assert_eq!(
            v.verify(Some(prefixed.as_bytes()), body),
            Err(WebhookError::Malformed)
        );
    }

    #[test]
    fn refuses_wrong_signature_tampered_body_or_other_app() {
        let v = verifier();
        let mut wrong = OFFICIAL_SIG.as_bytes().to_vec();
        wrong[0] = if wrong[0] == b'5' { b'6' } else { b'5' };
        assert_eq!(
            v.verify(Some(&wrong), OFFICIAL_BODY.as_bytes()),
            Err(WebhookError::Mismatch)
        );
        // One added space in the body: the exact bytes are signed.
        let tampered = OFFICIAL_BODY.replacen(':', ": ", 1);
        assert_eq!(
            v.verify(Some(OFFICIAL_SIG.as_bytes()), tampered.as_bytes()),
            Err(WebhookError::Mismatch)
        );
        let other_key = ShopWebhookVerifier::new(&ShopWebhookSettings {
            app_key: "abcdeg".into(),
            app_secret: Secret::new("123"),
        });
        assert_eq!(
            other_key.verify(Some(OFFICIAL_SIG.as_bytes()), OFFICIAL_BODY.as_bytes()),
            Err(WebhookError::Mismatch)
        );
        let other_secret = ShopWebhookVerifier::new(&ShopWebhookSettings {
            app_key: "abcdef".into(),
            app_secret: Secret::new("124"),
        });
        assert_eq!(
            other_secret.verify(Some(OFFICIAL_SIG.as_bytes()), OFFICIAL_BODY.as_bytes()),
            Err(WebhookError::Mismatch)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", verifier()),
            "ShopWebhookVerifier([redacted])"
        );
        let settings = ShopWebhookSettings {
            app_key: "abcdef".into(),
            app_secret: Secret::new("123"),
        };
        assert!(!format!("{settings:?}").contains("\"123\""));
    }

    #[test]
    fn dedup_on_notification_id_string_or_number() {
        assert_eq!(dedup_key(OFFICIAL_BODY.as_bytes()), "7380066284010030890");
        assert_eq!(
            dedup_key(br#"{"tts_notification_id":7380066284010030890,"type":1}"#),
            "7380066284010030890"
        );
    }

    #[test]
    fn dedup_falls_back_to_body_hash() {
        let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
        for body in [
            &br#"{"type":1}"#[..],
            br#"{"tts_notification_id":""}"#,
            br#"{"tts_notification_id":null}"#,
            br#"{"tts_notification_id":true}"#,
            br#"[{"tts_notification_id":"1"}]"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                dedup_key(body),
                sha(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_ne!(dedup_key(b"a"), dedup_key(b"b"));
    }
}
