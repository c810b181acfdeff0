//! What a resource handler gets (the caller, the snapshot, the body and query) and gives back.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::error::GatewayError;
use crate::gateway::snapshot::Snapshot;
use crate::gateway::state::Gateway;

/// Largest admin request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// One authenticated admin request.
pub struct AdminRequest<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub snapshot: &'a Snapshot,
    pub identity: &'a Identity,
    pub request_id: &'a str,
    pub query: Option<&'a str>,
    pub body: Bytes,
}

/// A handled request: the answer, and the facts its audit record carries.
pub struct Done {
    pub status: StatusCode,
    pub body: Value,
    pub detail: Map<String, Value>,
}

impl Done {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            detail: Map::new(),
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

impl AdminRequest<'_> {
    /// The body as `T` (whose type refuses unknown fields); an empty or malformed body is a 400.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GatewayError> {
        if self.body.is_empty() {
            return Err(GatewayError::bad_request(
                "invalid_body",
                "a JSON body is required",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            // serde's message names the field and the expectation, never echoes values.
            GatewayError::bad_request("invalid_body", format!("invalid JSON body: {e}"))
        })
    }

    /// Refuses a body on a request that takes none.
    pub fn no_body(&self) -> Result<(), GatewayError> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::bad_request(
                "invalid_body",
                "this endpoint takes no body",
            ))
        }
    }

    /// A query parameter's value (the admin API's parameters are plain numbers).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// A numeric query parameter, `default` when absent; anything but digits is a 400.
    pub fn number(&self, name: &'static str, default: u64) -> Result<u64, GatewayError> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().map_err(|_| {
                GatewayError::bad_request(
                    "invalid_parameter",
                    format!("`{name}` must be a non-negative integer"),
                )
            }),
        }
    }

    /// Refuses query parameters other than `known`.
    pub fn only_params(&self, known: &[&str]) -> Result<(), GatewayError> {
        for kv in self
            .query
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
        {
            let key = kv.split_once('=').map_or(kv, |(k, _)| k);
            if !known.contains(&key) {
                return Err(GatewayError::bad_request(
                    "invalid_parameter",
                    format!("unknown query parameter (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// An id path segment: digits only.
pub fn id_segment(text: &str) -> Result<u64, GatewayError> {
    text.parse::<u64>()
        .map_err(|_| GatewayError::bad_request("invalid_id", "the id must be a number"))
}

/// A state-store failure as the admin API answers it: 503, no internal detail.
pub fn store_error(e: crate::state::StateError) -> GatewayError {
    match e {
        crate::state::StateError::Invalid(message) => {
            GatewayError::bad_request("invalid_body", message)
        }
        other => GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_unavailable",
            format!("the state store failed ({})", other.kind()),
        ),
    }
}
