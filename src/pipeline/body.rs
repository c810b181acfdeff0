//! The request-body ceiling and buffering. A body the pipeline must see whole (to sign it, inspect
//! it, or because its length is not declared) is read completely before the upstream is contacted,
//! so an oversized body is refused with 413 and the upstream never sees any of it.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::error::GatewayError;
use crate::inspect::{BodyRate, BodyWatch, InspectError};

/// Pingora replays a pre-read body to the upstream from its retry buffer, which holds 64 KiB.
/// Bodies that must be read whole first are therefore limited to this size.
pub const MAX_BUFFERED_BODY: usize = 64 * 1024;

/// What the request head says about its body.
pub enum DeclaredBody {
    None,
    Length(usize),
    /// Chunked or otherwise undeclared.
    Unknown,
}

pub fn declared_body(session: &mut Session) -> Result<DeclaredBody, GatewayError> {
    if session.as_mut().is_body_empty() {
        return Ok(DeclaredBody::None);
    }
    let headers = &session.req_header().headers;
    if let Some(cl) = headers.get(http::header::CONTENT_LENGTH) {
        let n = cl
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .ok_or_else(|| {
                GatewayError::bad_request("bad_content_length", "invalid Content-Length")
            })?;
        return Ok(if n == 0 {
            DeclaredBody::None
        } else {
            DeclaredBody::Length(n)
        });
    }
    // Chunked, or HTTP/2 data frames without a declared length.
    Ok(DeclaredBody::Unknown)
}

/// Reads the whole body, refusing it as soon as it passes `limit` (413) or its average rate
/// falls below the listener's floor (408).
pub async fn read_whole(
    session: &mut Session,
    limit: usize,
    rate: BodyRate,
) -> Result<Bytes, GatewayError> {
    session.enable_retry_buffering();
    let mut watch = BodyWatch::new(limit as u64, rate, std::time::Instant::now());
    let mut buf = BytesMut::new();
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|e| match e.etype() {
                // The gap between two reads passed the listener's body timeout: a slow client.
                pingora::ErrorType::ReadTimedout => GatewayError::from(InspectError::BodyTooSlow),
                _ => {
                    GatewayError::bad_request("body_read_failed", "could not read the request body")
                }
            })?;
        let Some(chunk) = chunk else { break };
        match watch.on_chunk(chunk.len(), std::time::Instant::now()) {
            Ok(()) => {}
            Err(InspectError::BodyTooLarge) => return Err(GatewayError::body_too_large(limit)),
            Err(e) => return Err(GatewayError::from(e)),
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
