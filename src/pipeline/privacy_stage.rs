//! Stage 8: responses (and webhook forwards) against the privacy policy. On a route cleared for
//! PII (`privacy.pii_scope`), callers without that scope get TikTok's personal fields masked and
//! callers with it get the original bytes. On a route not cleared for PII, bodies are scanned:
//! a hit is counted and logged as a security event (redacted), and `on_leak: block` answers 502
//! instead of passing the data on.

use bytes::Bytes;
use http::StatusCode;

use crate::auth::Identity;
use crate::config::OnLeak;
use crate::error::GatewayError;
use crate::gateway::route::CompiledRoute;
use crate::privacy::{PrivacyEngine, mask_tiktok_response, scan_for_leaks};
use crate::telemetry::metrics::metrics;

/// The error code of a response refused for carrying personal data (`on_leak: block`).
pub const PII_BLOCKED: &str = "pii_blocked";

pub fn outgoing(
    engine: &PrivacyEngine,
    route: &CompiledRoute,
    identity: &Identity,
    request_id: &str,
    body: Bytes,
) -> Result<Bytes, GatewayError> {
    let privacy = route.config.privacy.as_ref();
    if let Some(scope) = privacy.and_then(|p| p.pii_scope.as_deref()) {
        if identity.has_scope(scope) {
            return Ok(body);
        }
        // A body that cannot be masked is refused, never passed through unmasked.
        return mask_tiktok_response(&body, engine)
            .map(Bytes::from)
            .map_err(|_| {
                GatewayError::bad_gateway(
                    "unmaskable_response",
                    "the response could not be masked for this caller",
                )
            });
    }
    let block = privacy.is_some_and(|p| p.on_leak == OnLeak::Block);
    if leaked(engine, route, request_id, &body) && block {
        return Err(GatewayError::new(
            StatusCode::BAD_GATEWAY,
            PII_BLOCKED,
            "the response carried personal data this route is not cleared for",
        ));
    }
    Ok(body)
}

/// Scans a body on a route not cleared for PII; counts and logs what it finds.
pub fn leaked(
    engine: &PrivacyEngine,
    route: &CompiledRoute,
    request_id: &str,
    body: &[u8],
) -> bool {
    let kinds = scan_for_leaks(body, engine);
    if kinds.is_empty() {
        return false;
    }
    for kind in &kinds {
        metrics()
            .pii_leaks
            .with_label_values(&[&*route.name, kind.as_str()])
            .inc();
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    tracing::warn!(target: "security", event = "pii_leak", route = %route.name, request_id, kinds = ?names,
        "personal data on a route not cleared for it");
    true
}

/// Whether a route is cleared for PII (has a `privacy.pii_scope`).
pub fn cleared(route: &CompiledRoute) -> bool {
    route
        .config
        .privacy
        .as_ref()
        .is_some_and(|p| p.pii_scope.is_some())
}
