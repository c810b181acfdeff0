//! Responses the gateway writes itself on a proxy listener: replies (webhook acknowledgements,
//! TikTok answers) and refusals, whose head and body come from `GatewayError` like every
//! listener's.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::stages::Reply;
use crate::error::GatewayError;
use crate::limit::{RATELIMIT, RATELIMIT_POLICY, RateLimitHeaders};
use crate::telemetry::request_id::{HEADER_NAME, RequestId};

/// Writes a complete reply. Errors mean the client went away; the access log still records it.
pub async fn write_reply(
    session: &mut Session,
    reply: &Reply,
    request_id: &RequestId,
    rate: Option<&RateLimitHeaders>,
) -> pingora::Result<()> {
    let mut head = ResponseHeader::build(reply.status, Some(reply.headers.len() + 4))?;
    for (name, value) in &reply.headers {
        head.append_header(*name, value.as_str())?;
    }
    head.insert_header_name(&HEADER_NAME, request_id.header())?;
    if let Some(h) = rate {
        head.insert_header(RATELIMIT_POLICY, h.policy.clone())?;
        if let Some(v) = &h.rate_limit {
            head.insert_header(RATELIMIT, v.clone())?;
        }
    }
    head.insert_header(http::header::CONTENT_LENGTH, reply.body.len().to_string())?;
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(reply.body.clone()), true)
        .await
}

/// Writes a refusal.
pub async fn write_error(
    session: &mut Session,
    err: &GatewayError,
    request_id: &str,
) -> pingora::Result<()> {
    let (head, body) = err.to_response(request_id)?;
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}
