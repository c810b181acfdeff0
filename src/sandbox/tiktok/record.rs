//! What the sandbox saw: every request as received, and counters of accepted calls and of
//! refusals by reason, so tests can assert what reached "TikTok" or that nothing did.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Why the sandbox refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    UnknownPath,
    WrongMethod,
    BodyTooLarge,
    MissingContentType,
    RepeatedParam,
    BadAppKey,
    BadTimestamp,
    MissingSign,
    BadSign,
    MissingToken,
    InvalidToken,
    ExpiredToken,
    MissingShopCipher,
    UnexpectedShopCipher,
    WrongShopCipher,
    Throttled,
    /// Signed and authorised, but the parameters or body were not acceptable.
    InvalidParams,
    /// Signed and authorised, but the resource does not exist or is in the wrong state.
    NotFound,
    /// A token endpoint refused the exchange (bad app secret, auth code or refresh token).
    TokenGrant,
}

/// Tallies since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls answered with `code == 0`.
    pub accepted: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl Counters {
    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub(crate) fn count(&mut self, outcome: Option<RejectReason>) {
        match outcome {
            None => self.accepted += 1,
            Some(reason) => *self.rejected.entry(reason).or_default() += 1,
        }
    }
}

/// One request exactly as it arrived, and how the sandbox answered it.
#[derive(Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw path, still percent-encoded as received.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names (lowercase) and values, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub status: u16,
    /// TikTok's `code` in the answer (0 for success).
    pub code: i64,
    pub rejected: Option<RejectReason>,
}

impl RecordedRequest {
    /// The first value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The decoded value of a query parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Debug output leaves out query values, header values and the body: they hold tokens,
/// secrets (the token endpoints take `app_secret` in the query) and personal data.
impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.query_pairs().into_iter().map(|(k, _)| k).collect();
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_keys", &keys)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("status", &self.status)
            .field("code", &self.code)
            .field("rejected", &self.rejected)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_out_values() {
        let r = RecordedRequest {
            method: "GET".into(),
            path: "/api/v2/token/get".into(),
            query: Some("app_key=k&app_secret=very-secret".into()),
            headers: vec![("x-tts-access-token".into(), "tok-123".into())],
            body: Bytes::from_static(b"{\"name\":\"Jane\"}"),
            status: 200,
            code: 0,
            rejected: None,
        };
        let text = format!("{r:?}");
        assert!(!text.contains("very-secret"));
        assert!(!text.contains("tok-123"));
        assert!(!text.contains("Jane"));
        assert!(text.contains("app_secret"));
        assert_eq!(r.query_param("app_secret").as_deref(), Some("very-secret"));
        assert_eq!(r.header("x-tts-access-token"), Some("tok-123"));
    }

    #[test]
    fn counters_tally_by_reason() {
        let mut c = Counters::default();
        c.count(None);
        c.count(Some(RejectReason::BadSign));
        c.count(Some(RejectReason::BadSign));
        c.count(Some(RejectReason::Throttled));
        assert_eq!(c.accepted, 1);
        assert_eq!(c.rejected_for(RejectReason::BadSign), 2);
        assert_eq!(c.rejected_for(RejectReason::ExpiredToken), 0);
        assert_eq!(c.total_rejected(), 3);
    }
}
