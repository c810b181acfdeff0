//! TikTok's answer shape `{code, message, request_id, data}` and the error codes the sandbox
//! uses, each with the HTTP status TikTok pairs it with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::record::RejectReason;

/// Success.
pub const OK: i64 = 0;
/// Bad signature.
pub const BAD_SIGN: i64 = 106_001;
/// Access token expired.
pub const TOKEN_EXPIRED: i64 = 105_002;
/// `shop_cipher` missing on a shop-scoped API.
pub const SHOP_CIPHER_MISSING: i64 = 106_013;
/// TikTok's catch-all: missing sign, bad app_key, timestamp, token, unexpected shop_cipher...
pub const INVALID_REQUEST: i64 = 36_009_004;
/// Rate limited (HTTP 429).
pub const RATE_LIMITED: i64 = 36_009_002;
/// Unknown path (HTTP 404).
pub const UNKNOWN_PATH: i64 = 36_009_009;
/// Method not allowed on the path.
pub const WRONG_METHOD: i64 = 36_009_010;
/// Order or package not found for this shop.
pub const NOT_OWNED: i64 = 21_008_111;
/// An auth code that is invalid, expired or already used.
pub const AUTH_CODE_INVALID: i64 = 36_004_004;
/// TikTok's internal error ("try again").
pub const INTERNAL_ERROR: i64 = 36_009_003;
/// Package already shipped.
pub const ALREADY_SHIPPED: i64 = 11_006_021;

/// One answer, before it becomes an HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
    pub retry_after_secs: Option<u64>,
    /// Why the call was refused, for the counters; `None` when `code == 0`.
    pub rejected: Option<RejectReason>,
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Self {
            status: StatusCode::OK,
            code: OK,
            message: "Success".to_owned(),
            data: Some(data),
            retry_after_secs: None,
            rejected: None,
        }
    }

    pub fn error(reason: RejectReason, status: StatusCode, code: i64, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
            data: None,
            retry_after_secs: None,
            rejected: Some(reason),
        }
    }

    /// A refusal for bad parameters or body (HTTP 400, TikTok's catch-all code).
    pub fn invalid(message: &str) -> Self {
        Self::error(
            RejectReason::InvalidParams,
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            message,
        )
    }

    pub fn throttled(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::error(
                RejectReason::Throttled,
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMITED,
                "Too many requests. Please retry later.",
            )
        }
    }

    /// The HTTP response, with `request_id` filled in.
    pub fn into_http(self, request_id: &str) -> Response {
        let mut body = json!({
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        });
        if let (Some(data), Some(map)) = (self.data, body.as_object_mut()) {
            map.insert("data".to_owned(), data);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
