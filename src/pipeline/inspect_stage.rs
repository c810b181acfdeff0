//! The inspect stage's glue: runs the `inspect` checks at the right points and turns their
//! refusals into `GatewayError`s. Before routing: raw-head framing, path normalisation, host.
//! After routing: the route's head checks; the body checks run where the body is read.

use std::borrow::Cow;

use pingora::proxy::Session;

use crate::error::GatewayError;
use crate::inspect::{
    FramingError, HeadVerdict, HostAllowList, InspectError, InspectionSettings, TargetForm,
};
use crate::transport::head_deadline;

impl From<InspectError> for GatewayError {
    fn from(e: InspectError) -> Self {
        GatewayError::new(e.status(), e.code(), e.reason())
    }
}

/// Framing of the raw HTTP/1 head (what Pingora's parsed map hides, e.g. CL+TE or `1, 1`), and
/// the `Connection` nominations, which Pingora removes before the upstream request filter runs.
pub fn check_raw_head(session: &Session) -> Result<(), GatewayError> {
    let downstream = session.as_downstream();
    if downstream.is_http2() {
        return Ok(());
    }
    if head_deadline::chunked_body_malformed(downstream.stream()) {
        return Err(InspectError::from(FramingError::MalformedChunkLine).into());
    }
    crate::inspect::check_raw_head(&downstream.to_h1_raw())
        .and_then(|()| crate::inspect::check_connection_header(&session.req_header().headers))
        .map_err(|e| InspectError::from(e).into())
}

/// HTTP/1 absolute-form targets: refused unless they name a host this listener serves, then
/// rewritten to origin form with `Host` set to the target's authority, so neither routing nor
/// the upstream ever sees the absolute form. (HTTP/2 carries the authority in `:authority`.)
pub fn origin_form_target(
    hosts: &HostAllowList,
    session: &mut Session,
) -> Result<(), GatewayError> {
    if session.as_downstream().is_http2() {
        return Ok(());
    }
    let head = session.req_header();
    let authority = match crate::inspect::check_request_target(head.raw_path(), hosts)
        .map_err(InspectError::from)?
    {
        TargetForm::Origin => return Ok(()),
        TargetForm::Absolute { authority } => authority.to_owned(),
    };
    // Pingora keeps only path and query in the parsed URI; setting it back drops the raw
    // absolute target that would otherwise be serialised to the upstream.
    let uri = head.uri.clone();
    let head = session.req_header_mut();
    head.set_uri(uri);
    head.insert_header(http::header::HOST, authority)
        .map_err(|_| InspectError::from(crate::inspect::TargetError::InvalidAuthority).into())
}

/// The normalised path to route on; ambiguous forms are refused, never guessed.
pub fn normalized_path(raw: &str) -> Result<Cow<'_, str>, GatewayError> {
    crate::inspect::normalize_path(raw).map_err(|e| InspectError::from(e).into())
}

pub fn check_host(hosts: &HostAllowList, session: &Session) -> Result<(), GatewayError> {
    let head = session.req_header();
    hosts
        .check(head.version, &head.uri, &head.headers)
        .map_err(|e| InspectError::from(e).into())
}

pub fn check_head(
    settings: &InspectionSettings,
    session: &mut Session,
) -> Result<HeadVerdict, GatewayError> {
    let body_known_empty = session.as_mut().is_body_empty();
    settings
        .check_head_with(session.req_header(), body_known_empty)
        .map_err(GatewayError::from)
}

/// Whether the request declares a JSON body (only those are parsed by the JSON check).
pub fn is_json_body(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| crate::inspect::content_type::parse_media_type(v.as_bytes()).ok())
        .is_some_and(|m| {
            m.type_.eq_ignore_ascii_case("application") && m.subtype.eq_ignore_ascii_case("json")
        })
}

/// `Host` (or `:authority`) without port. Hosts are compared case-insensitively by the router.
pub fn request_host(req: &pingora::http::RequestHeader) -> Option<&str> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    Some(if raw.starts_with('[') {
        raw.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    })
}
