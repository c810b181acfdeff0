//! Distributed tracing (`telemetry.tracing`): spans the gateway makes explicitly, each with the
//! attributes chosen here, exported over OTLP/HTTP (protobuf) by a batch processor on its own
//! thread. Off by default; a disabled [`Tracing`] makes no span and costs a branch.
//!
//! - A request gets a server span. Its parent is the caller's `traceparent`/`tracestate` only
//!   when the peer is in `trusted_callers`; anyone else starts a new trace, so an outside caller
//!   can neither pick trace ids nor force sampling.
//! - Upstream attempts, TikTok calls, token refreshes and webhook deliveries are client spans;
//!   their own `traceparent` is what the upstream receives.
//! - Export never blocks or fails a request: spans beyond `max_queue_size` are dropped and
//!   counted (`trace_spans_dropped_total`), and every attribute passes the log redaction before
//!   it leaves the process (`export.rs`).

mod export;
mod propagation;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

pub use opentelemetry::Context as TraceCx;
pub use opentelemetry::context::FutureExt as WithTraceCx;
pub use propagation::{TRACESTATE, from_traceparent, traceparent, tracestate};

use crate::config::TracingConfig;
use crate::limit::TrustedProxies;
use crate::privacy::SharedPrivacyEngine;

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("telemetry.tracing: cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The process's tracing handle: cheap to clone, disabled by default.
#[derive(Clone, Default)]
pub struct Tracing(Option<Arc<Enabled>>);

struct Enabled {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    trusted: TrustedProxies,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("enabled", &self.0.is_some())
            .finish()
    }
}

impl Tracing {
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Builds the exporter and the batch processor (its thread starts here).
    pub fn start(
        config: &TracingConfig,
        privacy: SharedPrivacyEngine,
    ) -> Result<Self, TracingError> {
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.timeout)
            .with_headers(headers)
            .build()
            // The error names what failed, never the headers.
            .map_err(|e| TracingError::Exporter(e.to_string()))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let exporter = export::Redacting::new(otlp, privacy, queued.clone());
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(config.max_queue_size)
                    .with_max_export_batch_size(config.max_queue_size.min(512))
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let processor = export::Bounded::new(batch, queued, config.max_queue_size);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("tiktok-gateway");
        Ok(Self(Some(Arc::new(Enabled {
            provider,
            tracer,
            trusted: config.trusted_callers.clone(),
        }))))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The server span of an incoming request, started at `start`. The caller's trace context
    /// is its parent only when `peer` is a trusted caller.
    pub fn server_span(
        &self,
        name: String,
        headers: &http::HeaderMap,
        peer: Option<IpAddr>,
        start: SystemTime,
    ) -> Option<Context> {
        let enabled = self.0.as_ref()?;
        let parent = match peer {
            Some(ip) if enabled.trusted.is_trusted(ip) => propagation::extract(headers),
            _ => Context::new(),
        };
        let span = enabled
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .start_with_context(&enabled.tracer, &parent);
        Some(parent.with_span(span))
    }

    /// A client span: a child of `parent`, or of the current context (a root span when there
    /// is none, as in background work). `name` is called only with tracing on, so a request
    /// does not format a span name nobody will see.
    pub fn client_span(
        &self,
        name: impl FnOnce() -> String,
        parent: Option<&Context>,
    ) -> Option<Context> {
        let enabled = self.0.as_ref()?;
        let current;
        let parent = match parent {
            Some(p) => p,
            None => {
                current = Context::current();
                &current
            }
        };
        let span = enabled
            .tracer
            .span_builder(name())
            .with_kind(SpanKind::Client)
            .start_with_context(&enabled.tracer, parent);
        Some(parent.with_span(span))
    }

    /// Exports what is queued and stops the processor (bounded by the export timeout).
    pub fn shutdown(&self) {
        if let Some(enabled) = &self.0 {
            let _ = enabled.provider.shutdown();
        }
    }
}

/// Sets attributes on the span of `cx` (values are redacted again at export).
pub fn set(cx: &Context, attributes: impl IntoIterator<Item = KeyValue>) {
    let span = cx.span();
    for kv in attributes {
        span.set_attribute(kv);
    }
}

/// Marks the span of `cx` failed; `kind` is a fixed word (`timeout`, `connect`, ...), never text
/// from a request or an error message.
pub fn fail(cx: &Context, kind: &'static str) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("error.type", kind));
    span.set_status(Status::error(""));
}

/// Ends the span of `cx` now.
pub fn end(cx: &Context) {
    cx.span().end();
}

/// The trace id of `cx`'s span as 32 hex digits.
pub fn trace_id(cx: &Context) -> String {
    cx.span().span_context().trace_id().to_string()
}

/// Renames the span of `cx` (once the route is known).
pub fn rename(cx: &Context, name: String) {
    cx.span().update_name(name);
}
