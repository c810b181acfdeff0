//! Runtime settings for inspection, their secure defaults, and the one-call head check.
//!
//! These are plain runtime structs; the config layer maps `gateway.yaml` onto them. Nothing
//! here allocates per request: lists are built once, checks borrow the request.

use std::time::Duration;

use http::request::Parts;

use super::body::{BodyRate, check_declared_length};
use super::content_type::ContentTypeAllowList;
use super::error::InspectError;
use super::framing::{BodyFraming, check_framing};
use super::headers::check_header_limits;
use super::json::SERDE_JSON_MAX_DEPTH;
use super::method::MethodAllowList;
use super::uri::check_uri_limits;

/// A setting that cannot be turned into a runtime value; raised at config load, never per
/// request. Carries the offending config text (no secrets live in these settings).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("method {0:?} cannot be allowed (use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)")]
    UnsupportedMethod(String),
    #[error("a method allow-list cannot be empty")]
    NoMethods,
    #[error("invalid media type {0:?} (expected type/subtype without parameters or wildcards)")]
    InvalidMediaType(String),
    #[error("a content-type allow-list cannot be empty")]
    NoMediaTypes,
    #[error("invalid host {0:?} (expected name, name:port, IPv4 or [IPv6], optional port)")]
    InvalidHost(String),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("max_json_depth must be at most {SERDE_JSON_MAX_DEPTH}")]
    JsonDepthTooLarge,
}

/// Numeric ceilings for one route (or the listener default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Header field lines (431 above). Default 100.
    pub max_header_count: usize,
    /// Header section size, counted as `name: value\r\n` bytes (431 above). Default 32 KiB.
    pub max_header_bytes: usize,
    /// Request-target length, path plus query (414 above). Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Query parameters (400 above). Default 100.
    pub max_query_params: usize,
    /// Request body bytes (413 above); always enforced. Default 1 MiB.
    pub max_body_bytes: u64,
    /// Array/object nesting in JSON bodies (400 above). Default 32, at most 127.
    pub max_json_depth: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_header_count: 100,
            max_header_bytes: 32 * 1024,
            max_uri_bytes: 8 * 1024,
            max_query_params: 100,
            max_body_bytes: 1024 * 1024,
            max_json_depth: 32,
        }
    }
}

impl RequestLimits {
    /// Reject settings that would disable a limit by accident.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (value, name) in [
            (self.max_header_count as u64, "max_header_count"),
            (self.max_header_bytes as u64, "max_header_bytes"),
            (self.max_uri_bytes as u64, "max_uri_bytes"),
            (u64::from(self.max_json_depth), "max_json_depth"),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero(name));
            }
        }
        if self.max_json_depth > SERDE_JSON_MAX_DEPTH {
            return Err(SettingsError::JsonDepthTooLarge);
        }
        Ok(())
    }
}

/// Everything the inspect stage needs for one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectionSettings {
    pub limits: RequestLimits,
    /// Methods the route accepts (405 with `Allow` otherwise).
    pub methods: MethodAllowList,
    /// Media types accepted for request bodies (415 otherwise).
    pub content_types: ContentTypeAllowList,
    /// Whether bodies are checked as JSON (well-formed, depth, UTF-8) before forwarding.
    pub json_body: bool,
}

impl Default for InspectionSettings {
    /// A JSON API route: default limits, `GET HEAD POST PUT PATCH DELETE`, `application/json`.
    fn default() -> Self {
        Self {
            limits: RequestLimits::default(),
            methods: MethodAllowList::default(),
            content_types: ContentTypeAllowList::json(),
            json_body: true,
        }
    }
}

/// What the head check learnt, for the body stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadVerdict {
    pub framing: BodyFraming,
    /// Whether a body may follow; if so and `json_body` is set, buffer it for [`check_json`].
    ///
    /// [`check_json`]: super::json::check_json
    pub expects_body: bool,
}

impl InspectionSettings {
    /// The body ceiling in bytes.
    pub fn max_body(&self) -> usize {
        usize::try_from(self.limits.max_body_bytes).unwrap_or(usize::MAX)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.limits.validate()
    }

    /// All per-request checks on a parsed head, in order: framing (400), header limits (431),
    /// target limits (414/400), method (405), content type when a body may follow (415), and
    /// a declared length over the body ceiling (413). Pass `session.req_header()` (it derefs to
    /// `Parts`). Path normalisation, the raw-head scan and the host check are separate calls
    /// because they run before routing.
    pub fn check_head(&self, head: &Parts) -> Result<HeadVerdict, InspectError> {
        self.check_head_with(head, false)
    }

    /// As [`Self::check_head`], when the server already knows no body follows (an HTTP/2
    /// request whose headers ended the stream declares neither length nor chunking).
    pub fn check_head_with(
        &self,
        head: &Parts,
        body_known_empty: bool,
    ) -> Result<HeadVerdict, InspectError> {
        let framing = check_framing(head.version, &head.headers)?;
        check_header_limits(
            &head.headers,
            self.limits.max_header_count,
            self.limits.max_header_bytes,
        )?;
        check_uri_limits(
            &head.uri,
            self.limits.max_uri_bytes,
            self.limits.max_query_params,
        )?;
        if !self.methods.allows(&head.method) {
            return Err(InspectError::MethodNotAllowed);
        }
        let expects_body = !body_known_empty && framing.may_have_body(head.version);
        if expects_body {
            self.content_types.check(&head.headers)?;
        }
        check_declared_length(framing, self.limits.max_body_bytes)?;
        Ok(HeadVerdict {
            framing,
            expects_body,
        })
    }
}

/// Slow-client timeouts for a listener. Apply with [`SlowClientSettings::apply`] at the start
/// of every request (`early_request_filter`), and run a [`BodyWatch`] per request.
///
/// [`BodyWatch`]: super::body::BodyWatch
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowClientSettings {
    /// How long an idle keep-alive connection may wait for the next request, and the longest
    /// gap between two reads of that request's head. Pingora applies no timeout at all to the
    /// second and later heads on a keep-alive connection unless this is set. Default 15 s.
    pub idle_timeout: Duration,
    /// Longest gap between two reads of a request body. Default 10 s.
    pub body_read_timeout: Duration,
    /// Minimum average body upload rate, enforced by `BodyWatch`.
    pub body_rate: BodyRate,
    /// Longest gap between two writes to the client. Default 10 s.
    pub write_timeout: Duration,
    /// Minimum download rate to the client in bytes/s (Pingora turns it into a per-write
    /// timeout; 0 disables). Default 1 KiB/s.
    pub min_send_rate: usize,
}

impl Default for SlowClientSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(10),
            body_rate: BodyRate::default(),
            write_timeout: Duration::from_secs(10),
            min_send_rate: 1024,
        }
    }
}

impl SlowClientSettings {
    /// Set the downstream timeouts on a Pingora session. HTTP/2 sessions ignore the per-read
    /// and keep-alive settings (Pingora treats them as no-ops); use `h2_idle_timeout` in
    /// `HttpServerOptions` for those.
    pub fn apply(&self, session: &mut pingora::protocols::http::ServerSession) {
        // Pingora measures keep-alive in whole seconds and treats 0 as "forever". Only the idle
        // time is set here: a connection Pingora will not keep (the client asked to close, a
        // stop is under way) stays that way.
        if session.get_keepalive().is_some() {
            let idle = self.idle_timeout.as_secs().max(1);
            session.set_keepalive(Some(idle));
        }
        session.set_read_timeout(Some(self.body_read_timeout));
        session.set_write_timeout(Some(self.write_timeout));
        session.set_total_drain_timeout(Some(self.body_read_timeout));
        session.set_min_send_rate((self.min_send_rate > 0).then_some(self.min_send_rate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::content_type::ContentTypeError;
    use crate::inspect::framing::FramingError;
    use http::{Method, Request, Version};
    use pingora::protocols::http::ServerSession;

    fn parts(method: Method, uri: &str, headers: &[(&'static str, &'static str)]) -> Parts {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .version(Version::HTTP_11);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("test request").into_parts().0
    }

    /// A parsed HTTP/1 session for `head`, kept alive or not as Pingora decided.
    async fn session(head: &'static [u8], keepalive: Option<u64>) -> ServerSession {
        let (server, mut client) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, head)
            .await
            .expect("write");
        let mut session = ServerSession::new_http1(Box::new(server));
        assert!(session.read_request().await.expect("parsed"));
        if keepalive.is_none() {
            session.set_keepalive(None);
        }
        session
    }

    #[tokio::test]
    async fn slow_client_settings_set_the_idle_time_but_never_revive_a_closing_connection() {
        let settings = SlowClientSettings {
            idle_timeout: Duration::from_secs(7),
            ..SlowClientSettings::default()
        };
        let mut kept = session(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Some(0)).await;
        settings.apply(&mut kept);
        assert_eq!(kept.get_keepalive(), Some(7));

        let mut asked_to_close = session(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Some(0),
        )
        .await;
        settings.apply(&mut asked_to_close);
        assert_eq!(asked_to_close.get_keepalive(), None);

        let mut http10 = session(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", Some(0)).await;
        settings.apply(&mut http10);
        assert_eq!(http10.get_keepalive(), None);

        // E.g. a stop under way: Pingora turned keep-alive off before the pipeline ran.
        let mut stopping = session(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None).await;
        settings.apply(&mut stopping);
        assert_eq!(stopping.get_keepalive(), None);
    }

    #[test]
    fn defaults_are_the_documented_secure_values() {
        let s = InspectionSettings::default();
        assert_eq!(s.limits.max_header_count, 100);
        assert_eq!(s.limits.max_header_bytes, 32 * 1024);
        assert_eq!(s.limits.max_uri_bytes, 8 * 1024);
        assert_eq!(s.limits.max_query_params, 100);
        assert_eq!(s.limits.max_body_bytes, 1 << 20);
        assert_eq!(s.limits.max_json_depth, 32);
        assert!(s.json_body);
        assert!(s.content_types.is_json_only());
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn invalid_limits_are_config_errors() {
        let mut l = RequestLimits {
            max_header_count: 0,
            ..RequestLimits::default()
        };
        assert_eq!(l.validate(), Err(SettingsError::Zero("max_header_count")));
        l.max_header_count = 1;
        l.max_json_depth = 128;
        assert_eq!(l.validate(), Err(SettingsError::JsonDepthTooLarge));
    }

    #[test]
    fn ordinary_json_post_passes() {
        let s = InspectionSettings::default();
        let head = parts(
            Method::POST,
            "/order/202309/orders/search?page_size=10",
            &[
                ("host", "gw"),
                ("content-type", "application/json"),
                ("content-length", "2"),
            ],
        );
        assert_eq!(
            s.check_head(&head),
            Ok(HeadVerdict {
                framing: BodyFraming::Length(2),
                expects_body: true
            })
        );
        let get = parts(Method::GET, "/order/202309/orders?ids=1", &[("host", "gw")]);
        assert_eq!(
            s.check_head(&get),
            Ok(HeadVerdict {
                framing: BodyFraming::None,
                expects_body: false
            })
        );
    }

    #[test]
    fn each_rule_refuses_in_order() {
        let s = InspectionSettings {
            methods: MethodAllowList::new(&["POST"]).expect("valid"),
            ..InspectionSettings::default()
        };
        let cl_te = parts(
            Method::POST,
            "/a",
            &[("content-length", "1"), ("transfer-encoding", "chunked")],
        );
        assert_eq!(
            s.check_head(&cl_te),
            Err(InspectError::Framing(
                FramingError::ContentLengthWithTransferEncoding
            ))
        );
        assert_eq!(
            s.check_head(&parts(Method::GET, "/a", &[])),
            Err(InspectError::MethodNotAllowed)
        );
        let no_ct = parts(Method::POST, "/a", &[("content-length", "5")]);
        assert_eq!(
            s.check_head(&no_ct),
            Err(InspectError::ContentType(ContentTypeError::Missing))
        );
        let chunked_text = parts(
            Method::POST,
            "/a",
            &[
                ("transfer-encoding", "chunked"),
                ("content-type", "text/plain"),
            ],
        );
        assert_eq!(
            s.check_head(&chunked_text),
            Err(InspectError::ContentType(ContentTypeError::NotAllowed))
        );
        let big = parts(
            Method::POST,
            "/a",
            &[
                ("content-length", "1048577"),
                ("content-type", "application/json"),
            ],
        );
        assert_eq!(s.check_head(&big), Err(InspectError::BodyTooLarge));
        let at_limit = parts(
            Method::POST,
            "/a",
            &[
                ("content-length", "1048576"),
                ("content-type", "application/json"),
            ],
        );
        assert!(s.check_head(&at_limit).is_ok());
        // an empty POST needs no content type
        let empty = parts(Method::POST, "/a", &[("content-length", "0")]);
        assert!(s.check_head(&empty).is_ok());
    }

    #[test]
    fn head_and_target_limits_apply() {
        let s = InspectionSettings {
            limits: RequestLimits {
                max_header_count: 2,
                max_uri_bytes: 10,
                max_query_params: 1,
                ..RequestLimits::default()
            },
            ..InspectionSettings::default()
        };
        let many = parts(Method::GET, "/a", &[("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(s.check_head(&many), Err(InspectError::TooManyHeaders));
        let long = parts(Method::GET, "/abcdefghij", &[]);
        assert_eq!(s.check_head(&long), Err(InspectError::UriTooLong));
        let params = parts(Method::GET, "/a?b=1&c=2", &[]);
        assert_eq!(s.check_head(&params), Err(InspectError::TooManyQueryParams));
    }
}
