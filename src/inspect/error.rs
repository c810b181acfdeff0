//! One error type for every inspection refusal, each with the HTTP status and a stable code.
//!
//! Messages are fixed strings: a refusal never echoes request bytes, so nothing a caller sent
//! (tokens, PII, attack payloads) can reach logs or response bodies through an error.

use http::StatusCode;

use super::content_type::ContentTypeError;
use super::framing::FramingError;
use super::host::HostError;
use super::json::JsonError;
use super::path::PathError;
use super::target::TargetError;

/// Why the inspect stage refused a request. `status()` is the answer the pipeline sends,
/// `code()` the stable machine-readable code for the JSON error body and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("path refused: {}", .0.as_str())]
    Path(#[from] PathError),
    #[error("request framing refused: {}", .0.as_str())]
    Framing(#[from] FramingError),
    #[error("host refused: {}", .0.as_str())]
    Host(#[from] HostError),
    #[error("request target refused: {}", .0.as_str())]
    Target(#[from] TargetError),
    #[error("content type refused: {}", .0.as_str())]
    ContentType(#[from] ContentTypeError),
    #[error("json body refused: {}", .0.as_str())]
    Json(#[from] JsonError),
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("header section too large")]
    HeadersTooLarge,
    #[error("request target too long")]
    UriTooLong,
    #[error("too many query parameters")]
    TooManyQueryParams,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body sent too slowly")]
    BodyTooSlow,
}

impl InspectError {
    /// The HTTP status the pipeline answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Path(_) | Self::Framing(_) | Self::TooManyQueryParams => StatusCode::BAD_REQUEST,
            Self::Host(e) => e.status(),
            Self::Target(e) => e.status(),
            Self::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Json(e) => e.status(),
            Self::TooManyHeaders | Self::HeadersTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Stable code for the error body (`{"error":{"code":...}}`) and the access log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Path(_) => "bad_path",
            Self::Framing(_) => "bad_framing",
            Self::Host(_) => "bad_host",
            Self::Target(_) => "bad_target",
            Self::ContentType(_) => "unsupported_media_type",
            Self::Json(JsonError::TooLarge) => "body_too_large",
            Self::Json(_) => "bad_json",
            Self::TooManyHeaders => "too_many_headers",
            Self::HeadersTooLarge => "headers_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::TooManyQueryParams => "too_many_query_params",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyTooSlow => "body_too_slow",
        }
    }

    /// The precise reason, safe to log (a fixed string, never request data).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Path(e) => e.as_str(),
            Self::Framing(e) => e.as_str(),
            Self::Host(e) => e.as_str(),
            Self::Target(e) => e.as_str(),
            Self::ContentType(e) => e.as_str(),
            Self::Json(e) => e.as_str(),
            other => other.code(),
        }
    }

    /// Whether the connection should be closed after answering: after a framing error the
    /// pipeline cannot know where this request ends, so reusing the connection is unsafe.
    pub fn must_close_connection(&self) -> bool {
        matches!(self, Self::Framing(_) | Self::BodyTooSlow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_status() {
        assert_eq!(InspectError::Path(PathError::DotSegment).status(), 400);
        assert_eq!(
            InspectError::Framing(FramingError::ContentLengthWithTransferEncoding).status(),
            400
        );
        assert_eq!(InspectError::TooManyHeaders.status(), 431);
        assert_eq!(InspectError::HeadersTooLarge.status(), 431);
        assert_eq!(InspectError::UriTooLong.status(), 414);
        assert_eq!(InspectError::TooManyQueryParams.status(), 400);
        assert_eq!(InspectError::MethodNotAllowed.status(), 405);
        assert_eq!(InspectError::BodyTooLarge.status(), 413);
        assert_eq!(InspectError::Json(JsonError::TooLarge).status(), 413);
        assert_eq!(InspectError::Json(JsonError::TooDeep).status(), 400);
        assert_eq!(
            InspectError::ContentType(ContentTypeError::Missing).status(),
            415
        );
        assert_eq!(InspectError::Host(HostError::Missing).status(), 400);
        assert_eq!(InspectError::Host(HostError::NotServed).status(), 421);
        assert_eq!(InspectError::BodyTooSlow.status(), 408);
    }

    #[test]
    fn messages_are_fixed_and_reasons_specific() {
        let e = InspectError::Path(PathError::EncodedSlash);
        assert_eq!(e.code(), "bad_path");
        assert_eq!(e.reason(), "encoded_slash");
        assert_eq!(e.to_string(), "path refused: encoded_slash");
        assert!(
            InspectError::Framing(FramingError::DuplicateContentLength).must_close_connection()
        );
        assert!(!InspectError::MethodNotAllowed.must_close_connection());
    }
}
