//! Lingering close for refusals sent before the request body was read.
//!
//! A refusal such as 413 for a declared length over the ceiling is written while the client is
//! still sending. Closing the socket with unread bytes in its receive queue makes the kernel
//! send a reset, and a reset usually destroys the answer in the client's receive queue before
//! the client reads it. So, as nginx's lingering close does, the unread body is read and
//! discarded after the answer, bounded in time and bytes, before the connection is closed.
//! The bytes are never parsed as a request: the connection is not reused (keep-alive is off).

use std::time::Duration;

use pingora::proxy::Session;
use tokio::time::Instant;

/// Longest time spent discarding one refused request's body.
pub const LINGER_TIME: Duration = Duration::from_secs(3);
/// Most body bytes discarded for one refused request.
pub const LINGER_BYTES: usize = 8 * 1024 * 1024 + 64 * 1024;

/// Read and discard the rest of an HTTP/1 request body, within [`LINGER_TIME`] and
/// [`LINGER_BYTES`]. HTTP/2 needs none of this: the stream is reset, not the connection.
pub async fn discard_unread_body(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    if downstream.is_http2() || downstream.is_body_done() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, downstream.read_request_body()).await {
            Ok(Ok(Some(chunk))) => {
                discarded = discarded.saturating_add(chunk.len());
                if discarded >= LINGER_BYTES {
                    tracing::debug!(discarded, "refused body over the linger bound");
                    return;
                }
            }
            // The body ended, the client stopped, or the framing broke: nothing left to save.
            Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!(
                    discarded,
                    "refused body still arriving at the linger deadline"
                );
                return;
            }
        }
    }
}
