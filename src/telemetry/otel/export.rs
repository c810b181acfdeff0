//! What stands between the spans and the wire: a bounded queue whose overflow is counted, and the
//! log redaction applied to every attribute value and span name before export.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

use crate::privacy::SharedPrivacyEngine;
use crate::telemetry::metrics::metrics;

/// Attribute keys whose values are URL paths: redacted as the access log redacts paths.
const PATH_KEYS: &[&str] = &["url.path"];

/// Counts the spans handed to the batch processor and not yet exported; past `cap` a span is
/// dropped here (and counted) instead of inside the processor, where drops are not visible.
#[derive(Debug)]
pub(super) struct Bounded {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    cap: usize,
}

impl Bounded {
    pub(super) fn new(inner: BatchSpanProcessor, queued: Arc<AtomicUsize>, cap: usize) -> Self {
        Self { inner, queued, cap }
    }
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            metrics()
                .trace_spans_dropped
                .with_label_values(&["queue_full"])
                .inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Redacts, then exports with `inner`; failed exports are counted as dropped spans.
pub(super) struct Redacting<E> {
    inner: E,
    privacy: SharedPrivacyEngine,
    queued: Arc<AtomicUsize>,
}

impl<E> Redacting<E> {
    pub(super) fn new(inner: E, privacy: SharedPrivacyEngine, queued: Arc<AtomicUsize>) -> Self {
        Self {
            inner,
            privacy,
            queued,
        }
    }
}

impl<E: std::fmt::Debug> std::fmt::Debug for Redacting<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redacting")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<E: SpanExporter> SpanExporter for Redacting<E> {
    fn export(
        &self,
        mut batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let count = batch.len();
        self.queued.fetch_sub(count, Ordering::AcqRel);
        let privacy = self.privacy.load();
        for span in &mut batch {
            redact_span(&privacy, span);
        }
        let sent = self.inner.export(batch);
        async move {
            let result = sent.await;
            if result.is_err() {
                metrics()
                    .trace_spans_dropped
                    .with_label_values(&["export_failed"])
                    .inc_by(count as u64);
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn redact_span(privacy: &crate::privacy::PrivacyEngine, span: &mut SpanData) {
    if let std::borrow::Cow::Owned(name) = privacy.redact_text(&span.name) {
        span.name = name.into();
    }
    for kv in &mut span.attributes {
        redact_attribute(privacy, kv);
    }
}

fn redact_attribute(privacy: &crate::privacy::PrivacyEngine, kv: &mut KeyValue) {
    let Value::String(text) = &kv.value else {
        return;
    };
    let redacted = if PATH_KEYS.contains(&kv.key.as_str()) {
        privacy.path_for_log(text.as_str()).into_owned()
    } else {
        privacy.redact_text(text.as_str()).into_owned()
    };
    if redacted != text.as_str() {
        kv.value = Value::String(StringValue::from(redacted));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_pass_the_log_redaction() {
        let privacy = crate::privacy::PrivacyEngine::new(
            &crate::privacy::PrivacySettings::with_key(crate::config::Secret::new("k".repeat(32))),
        )
        .unwrap();
        let mut path = KeyValue::new("url.path", "/customers/maria@example.com/orders");
        redact_attribute(&privacy, &mut path);
        assert!(!path.value.as_str().contains("maria"), "{}", path.value);
        let mut ua = KeyValue::new("user_agent.original", "curl maria@example.com");
        redact_attribute(&privacy, &mut ua);
        assert!(!ua.value.as_str().contains("maria"), "{}", ua.value);
        let mut status = KeyValue::new("http.response.status_code", 200i64);
        redact_attribute(&privacy, &mut status);
        assert_eq!(status.value, Value::I64(200));
    }
}
