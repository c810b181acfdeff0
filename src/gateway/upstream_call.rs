//! One HTTP exchange the gateway makes itself through an upstream (TikTok egress, webhook
//! delivery): a target picked like a proxied request's (round robin over the targets that may
//! take traffic), Pingora's pooled connection with the upstream's TLS and timeouts, another
//! target after a failed connect (nothing was sent, so that is safe) up to `retries`, and every
//! outcome reported to the target's circuit breaker.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::{Error, ErrorType};

use super::upstreams::{Pool, Selected};
use crate::config::Upstream;
use crate::error::GatewayError;

/// What the caller learns about the attempts, for its log line.
#[derive(Debug, Default)]
pub struct CallTrace {
    /// Attempts so far (each one a target).
    pub attempts: usize,
    /// The address of the last attempt.
    pub addr: Option<SocketAddr>,
}

#[derive(Debug)]
pub enum CallError {
    /// No target may take traffic now, or none is resolved: the answer the client should get.
    Unavailable(GatewayError),
    /// Every allowed attempt failed to connect (the last error).
    Connect(Box<Error>),
    /// Connected, then the exchange failed.
    Exchange(Box<Error>),
}

impl CallError {
    pub fn is_timeout(&self) -> bool {
        match self {
            CallError::Unavailable(_) => false,
            CallError::Connect(e) | CallError::Exchange(e) => matches!(
                e.etype(),
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            ),
        }
    }
}

pub struct Answer {
    pub head: ResponseHeader,
    /// `None` when the body (declared or read) exceeded `max_body`; the connection is dropped.
    pub body: Option<Bytes>,
}

pub async fn call(
    connector: &Connector,
    upstream: &Upstream,
    pool: &Pool,
    head: &RequestHeader,
    body: &Bytes,
    max_body: usize,
    trace: &mut CallTrace,
) -> Result<Answer, CallError> {
    let mut previous = None;
    let mut failed: Option<Box<Error>> = None;
    let mut retry = 0;
    loop {
        trace.attempts += 1;
        let Selected { peer, mut attempt } = match pool.select(upstream, previous) {
            Ok(s) => s,
            // A retry with no target left: the caller hears what happened to the attempt made.
            Err(e) => {
                return Err(match failed {
                    Some(connect) => CallError::Connect(connect),
                    None => CallError::Unavailable(e),
                });
            }
        };
        trace.addr = Some(attempt.addr());
        let mut session = match connector.get_http_session(&peer).await {
            Ok((s, _reused)) => s,
            Err(e) => {
                attempt.connect_failed();
                if retry < upstream.retries {
                    // Another target, where there is one.
                    retry += 1;
                    previous = trace.addr;
                    failed = Some(e);
                    continue;
                }
                return Err(CallError::Connect(e));
            }
        };
        attempt.connected();
        return match exchange(&mut session, head, body, max_body).await {
            Ok((answer, body)) => {
                attempt.answered(answer.status.as_u16());
                if body.is_some() {
                    connector
                        .release_http_session(session, &peer, Some(upstream.idle_timeout))
                        .await;
                }
                Ok(Answer { head: answer, body })
            }
            Err(e) => {
                attempt.failed_after_connect();
                Err(CallError::Exchange(e))
            }
        };
    }
}

/// Sends the request and reads the answer, the body only up to `max_body`.
async fn exchange(
    session: &mut HttpSession,
    head: &RequestHeader,
    body: &Bytes,
    max_body: usize,
) -> pingora::Result<(ResponseHeader, Option<Bytes>)> {
    session.write_request_header(Box::new(head.clone())).await?;
    if !body.is_empty() {
        session.write_request_body(body.clone(), true).await?;
    }
    session.finish_request_body().await?;
    session.read_response_header().await?;
    let answer = session
        .response_header()
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response head"))?;
    if answer
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > max_body)
    {
        return Ok((answer, None));
    }
    let mut out = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await? {
        if out.len() + chunk.len() > max_body {
            return Ok((answer, None));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((answer, Some(out.freeze())))
}
