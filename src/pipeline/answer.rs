//! Responses the gateway writes itself (webhook acknowledgements, TikTok egress answers).

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Writes a complete response. Errors mean the client went away; the access log still records it.
pub async fn write(
    session: &mut Session,
    status: StatusCode,
    headers: &[(&str, &str)],
    body: Bytes,
) -> pingora::Result<()> {
    let mut head = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        head.append_header(name.to_string(), *value)?;
    }
    head.insert_header("content-length", body.len().to_string())?;
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}
