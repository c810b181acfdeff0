//! W3C trace context in and out of HTTP heads.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub const TRACESTATE: &str = "tracestate";

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // A repeated header is not a valid trace context: ignored (a new trace starts).
        let mut values = self.0.get_all(key).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        first.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's trace context as a remote parent (an empty context when there is none or it
/// is malformed).
pub(super) fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// The context a stored `traceparent` names (an empty context when it is malformed): the
/// parent of work done later for the same request, such as a webhook's deliveries.
pub fn from_traceparent(value: &str) -> Context {
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(value) {
        headers.insert(crate::telemetry::trace_context::TRACEPARENT, v);
    }
    extract(&headers)
}

/// `traceparent` for the span of `cx`, when it has a valid one.
pub fn traceparent(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8() & 0x01
        )
    })
}

/// `tracestate` for the span of `cx` (the trusted caller's, carried along), if not empty.
pub fn tracestate(cx: &Context) -> Option<String> {
    let span = cx.span();
    let state = span.span_context().trace_state().header();
    (!state.is_empty()).then_some(state)
}
