//! Stages 2-3: authenticate the caller with the route's accepted methods, then check its scopes.
//! Refusals carry `WWW-Authenticate` (RFC 6750) and are counted by reason; the token is never
//! echoed anywhere.

use std::sync::Arc;

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::auth::{AuthError, Identity, RequestCredentials, RouteAuth};
use crate::error::GatewayError;
use crate::telemetry::metrics::metrics;
use crate::transport::peer_certificate;

/// Who the caller is, by the first of the route's methods whose credentials are present.
pub async fn authenticate(
    requirement: &RouteAuth,
    route: &str,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<Arc<Identity>, GatewayError> {
    let credentials = RequestCredentials {
        headers: &session.req_header().headers,
        client_cert_der: peer_certificate(session).map(|c| c.der.as_slice()),
    };
    requirement
        .authenticate(&credentials)
        .await
        .map_err(|e| fail(route, &e, ctx))
}

/// The route's required scopes against the caller's.
pub fn authorize(
    requirement: &RouteAuth,
    route: &str,
    identity: &Identity,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    requirement
        .authorize(identity)
        .map_err(|e| fail(route, &e, ctx))
}

fn fail(route: &str, e: &AuthError, ctx: &mut RequestCtx) -> GatewayError {
    metrics()
        .auth_failures
        .with_label_values(&[route, e.reason()])
        .inc();
    ctx.reason = Some(e.reason());
    refusal(e)
}

/// The answer for a caller on `identity.blocked_subjects`, counted like other auth failures.
pub fn blocked(route: &str) -> GatewayError {
    metrics()
        .auth_failures
        .with_label_values(&[route, "caller_blocked"])
        .inc();
    GatewayError::new(
        http::StatusCode::FORBIDDEN,
        "caller_blocked",
        "this caller is blocked",
    )
}

/// The answer for an auth failure.
pub fn refusal(e: &AuthError) -> GatewayError {
    let (code, message) = if e.status() == http::StatusCode::FORBIDDEN {
        (
            "insufficient_scope",
            "the credentials lack a scope this route requires",
        )
    } else {
        ("invalid_credentials", "missing or invalid credentials")
    };
    GatewayError::new(e.status(), code, message)
        .with_header("www-authenticate", e.www_authenticate())
}
