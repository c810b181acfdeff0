//! `Retry-After`, `RateLimit-Policy` and `RateLimit` response headers, in the syntax of the IETF
//! httpapi ratelimit-headers draft (-10): both fields are Structured Field Lists whose members
//! are a quoted policy name with parameters, e.g.
//! `RateLimit-Policy: "orders";q=50;w=1` and `RateLimit: "orders";r=42;t=1`.

use std::fmt::Write;

use http::{HeaderName, HeaderValue};

use super::decision::{Decision, DecisionSource};

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RETRY_AFTER: HeaderName = http::header::RETRY_AFTER;

/// A policy name rendered once as a Structured Field String (`"name"`), so building headers per
/// response is only concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLabel(Box<str>);

impl PolicyLabel {
    /// Quotes `name`; characters a Structured Field String cannot hold become `_`.
    pub fn new(name: &str) -> Self {
        let mut out = String::with_capacity(name.len() + 2);
        out.push('"');
        for c in name.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                ' '..='~' => out.push(c),
                _ => out.push('_'),
            }
        }
        out.push('"');
        PolicyLabel(out.into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The headers for one response of a limited route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub policy: HeaderValue,
    /// `None` when no limit's state is known (Redis down with `fail_open`: nothing is counted,
    /// so no remaining budget can be claimed).
    pub rate_limit: Option<HeaderValue>,
    /// Only when at least one limit refused the request.
    pub retry_after: Option<HeaderValue>,
}

impl RateLimitHeaders {
    /// Renders every checked limit of the request (one list member each). `None` when there
    /// were no decisions.
    pub fn build<'a>(items: &[(&'a PolicyLabel, &'a Decision)]) -> Option<Self> {
        if items.is_empty() {
            return None;
        }
        let mut policy = String::with_capacity(32 * items.len());
        let mut rate_limit = String::with_capacity(32 * items.len());
        for (i, (label, d)) in items.iter().enumerate() {
            if i > 0 {
                policy.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(
                policy,
                "{};q={};w={}",
                label.as_str(),
                d.quota,
                d.window_secs
            );
            if d.source == DecisionSource::FailOpen {
                continue;
            }
            if !rate_limit.is_empty() {
                rate_limit.push_str(", ");
            }
            let _ = write!(
                rate_limit,
                "{};r={};t={}",
                label.as_str(),
                d.remaining,
                d.reset_secs()
            );
        }
        let retry_after = items
            .iter()
            .filter(|(_, d)| !d.allowed)
            .map(|(_, d)| d.retry_after_secs())
            .max()
            .map(HeaderValue::from);
        Some(RateLimitHeaders {
            policy: HeaderValue::try_from(policy).ok()?,
            rate_limit: if rate_limit.is_empty() {
                None
            } else {
                Some(HeaderValue::try_from(rate_limit).ok()?)
            },
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limit::decision::LimitId;

    fn d(allowed: bool, remaining: u32, reset_ms: u64, retry_ms: u64) -> Decision {
        Decision {
            limit: LimitId(0),
            allowed,
            quota: 50,
            window_secs: 1,
            remaining,
            reset: Duration::from_millis(reset_ms),
            retry_after: Duration::from_millis(retry_ms),
            source: DecisionSource::Local,
        }
    }

    #[test]
    fn renders_draft_syntax_for_an_allowed_request() {
        let label = PolicyLabel::new("tiktok-orders");
        let dec = d(true, 42, 160, 0);
        let h = RateLimitHeaders::build(&[(&label, &dec)]).unwrap();
        assert_eq!(h.policy, "\"tiktok-orders\";q=50;w=1");
        assert_eq!(
            h.rate_limit.as_ref().map(|v| v.to_str().unwrap()),
            Some("\"tiktok-orders\";r=42;t=1")
        );
        assert_eq!(h.retry_after, None);
    }

    #[test]
    fn lists_every_limit_and_retry_after_from_the_longest_refusal() {
        let a = PolicyLabel::new("orders.caller");
        let b = PolicyLabel::new("orders.ip");
        let (da, db) = (d(false, 0, 2000, 1200), d(true, 3, 500, 0));
        let h = RateLimitHeaders::build(&[(&a, &da), (&b, &db)]).unwrap();
        assert_eq!(
            h.policy,
            "\"orders.caller\";q=50;w=1, \"orders.ip\";q=50;w=1"
        );
        assert_eq!(
            h.rate_limit.as_ref().map(|v| v.to_str().unwrap()),
            Some("\"orders.caller\";r=0;t=2, \"orders.ip\";r=3;t=1")
        );
        assert_eq!(h.retry_after, Some(HeaderValue::from(2u64)));
    }

    #[test]
    fn fail_open_decisions_claim_no_remaining_budget() {
        let (a, b) = (PolicyLabel::new("a"), PolicyLabel::new("b"));
        let open = Decision {
            source: DecisionSource::FailOpen,
            ..d(true, 50, 0, 0)
        };
        let known = d(true, 3, 500, 0);
        let h = RateLimitHeaders::build(&[(&a, &open), (&b, &known)]).unwrap();
        assert_eq!(h.policy, "\"a\";q=50;w=1, \"b\";q=50;w=1");
        assert_eq!(
            h.rate_limit.as_ref().map(|v| v.to_str().unwrap()),
            Some("\"b\";r=3;t=1")
        );
        let h = RateLimitHeaders::build(&[(&a, &open)]).unwrap();
        assert_eq!(h.rate_limit, None, "nothing is known");
    }

    #[test]
    fn policy_names_cannot_break_the_field() {
        let label = PolicyLabel::new("a\"b\\c\r\nd\u{e9}");
        assert_eq!(label.as_str(), "\"a\\\"b\\\\c__d_\"");
        let dec = d(true, 1, 0, 0);
        assert!(RateLimitHeaders::build(&[(&label, &dec)]).is_some());
        assert!(RateLimitHeaders::build(&[]).is_none());
    }
}
