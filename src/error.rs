//! Every refusal the gateway makes, and the one place they become HTTP responses, on every
//! listener (proxy, admin, metrics). The body is
//! always `{"error":{"code","message","request_id"}}` with no internal detail.

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;

/// A refusal or failure, with what the client is told. `code` is stable for clients to branch on;
/// `message` is short and never contains secrets, tokens or personal data.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct GatewayError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (`Allow`, `WWW-Authenticate`, `Retry-After`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl GatewayError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no_route",
            "no route matches this request",
        )
    }

    pub fn method_not_allowed(allow: String) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
        .with_header("allow", allow)
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    pub fn bad_gateway(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, code, message)
    }

    pub fn gateway_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "the upstream did not answer in time",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The stable JSON body: `{"error":{"code","message","request_id"}}`.
    fn body(&self, request_id: &str) -> Bytes {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message, "request_id": request_id }
        });
        Bytes::from(body.to_string())
    }

    /// Every header of the answer, in order.
    fn header_list<'a>(
        &'a self,
        request_id: &'a str,
        body_len: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        [
            ("content-type", "application/json"),
            ("content-length", body_len),
            ("cache-control", "no-store"),
            ("x-request-id", request_id),
        ]
        .into_iter()
        .chain(self.headers.iter().map(|(n, v)| (*n, v.as_str())))
    }

    /// The response head and JSON body for this error, for Pingora's proxy sessions.
    pub fn to_response(&self, request_id: &str) -> pingora::Result<(ResponseHeader, Bytes)> {
        let body = self.body(request_id);
        let len = body.len().to_string();
        let mut head = ResponseHeader::build_no_case(self.status, Some(4 + self.headers.len()))?;
        for (name, value) in self.header_list(request_id, &len) {
            head.append_header(name.to_string(), value)?;
        }
        Ok((head, body))
    }

    /// The same answer as an `http::Response`, for the admin and metrics apps.
    pub fn to_http_response(&self, request_id: &str) -> http::Response<Vec<u8>> {
        let body = self.body(request_id).to_vec();
        let len = body.len().to_string();
        let mut builder = http::Response::builder().status(self.status);
        for (name, value) in self.header_list(request_id, &len) {
            builder = builder.header(name, value);
        }
        // Only a header value we built could fail here; never let a refusal become a 200.
        builder.body(body).unwrap_or_else(|_| {
            let mut r = http::Response::new(Vec::new());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_stable_json() {
        let e = GatewayError::method_not_allowed("GET, POST".into());
        let (head, body) = e.to_response("req-1").unwrap();
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(head.headers.get("allow").unwrap(), "GET, POST");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed");
        assert_eq!(v["error"]["request_id"], "req-1");
    }
}
