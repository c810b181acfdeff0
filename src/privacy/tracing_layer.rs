//! Every `tracing` line goes through the redactor before it reaches stdout or a file: the writer
//! side of the fmt subscriber is wrapped, so whatever a call site formats (`?order`, `%err`, a
//! span field, a `log` record from a dependency) is scanned as free text. Panic messages go
//! through the same redactor via a panic hook.

use std::io::{self, Write};
use std::panic::PanicHookInfo;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::engine::{PrivacyEngine, SharedPrivacyEngine};
use super::error::PrivacyError;
use super::log_filter::{DependencyCap, LogFilter};

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable lines without colours (development).
    Text,
}

/// Runtime logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `EnvFilter` directives, e.g. `info` or `info,tiktok_gateway::auth=debug`. Empty: `info`.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// A boxed subscriber, whichever format was chosen.
pub type BoxedSubscriber = Box<dyn Subscriber + Send + Sync + 'static>;

/// Builds the fmt subscriber writing through the redactor into `writer`. Used by
/// [`install_global_subscriber`] (stdout) and by tests ([`CapturedLogs`]). The filter is
/// `settings.filter` as [`LogFilter::parse`] reads it, behind the [`DependencyCap`]: whatever the
/// directives say, targets outside the gateway never log above `info`.
pub fn build_subscriber<W>(
    settings: &LogSettings,
    engine: SharedPrivacyEngine,
    writer: W,
) -> Result<BoxedSubscriber, PrivacyError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = LogFilter::parse(&settings.filter)?.env_filter()?;
    let writer = RedactingMakeWriter::new(writer, engine);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    Ok(match settings.format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .finish()
                .with(DependencyCap),
        ),
        LogFormat::Text => Box::new(builder.finish().with(DependencyCap)),
    })
}

/// Installs the process-wide subscriber (JSON or text lines to stdout, redacted), routes `log`
/// records from dependencies (Pingora) into it, and installs the redacting panic hook.
pub fn install_global_subscriber(
    settings: &LogSettings,
    engine: SharedPrivacyEngine,
) -> Result<(), PrivacyError> {
    let subscriber = build_subscriber(settings, engine.clone(), io::stdout)?;
    subscriber
        .try_init()
        .map_err(|_| PrivacyError::SubscriberAlreadySet)?;
    install_panic_hook(engine);
    Ok(())
}

/// Replaces the panic hook: the message is redacted and emitted as an `error` event (and on
/// stderr if no subscriber is installed), so a panic carrying request data cannot leak it.
pub fn install_panic_hook(engine: SharedPrivacyEngine) {
    std::panic::set_hook(Box::new(move |info| {
        let line = redacted_panic_message(&engine.load(), info);
        tracing::error!(target: "panic", "{line}");
        if !tracing::dispatcher::has_been_set() {
            eprintln!("{line}");
        }
    }));
}

/// The panic message with its location, redacted.
pub fn redacted_panic_message(engine: &PrivacyEngine, info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-text panic payload)");
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!("panic at {location}: {}", engine.redact_text(text))
}

/// Wraps any `MakeWriter`: each event's formatted bytes are collected, redacted as one piece of
/// free text and only then written to the inner writer.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    engine: SharedPrivacyEngine,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M, engine: SharedPrivacyEngine) -> Self {
        Self { inner, engine }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            engine: &self.engine,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer_for(meta),
            engine: &self.engine,
            buf: Vec::new(),
        }
    }
}

/// Buffers one event; redacts and forwards on `flush` or drop (the fmt layer makes one writer
/// per event, so a whole line is redacted at once and a pattern cannot straddle two writes).
pub struct RedactingWriter<'a, W: Write> {
    inner: W,
    engine: &'a SharedPrivacyEngine,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<'_, W> {
    fn forward(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let engine = self.engine.load();
        let redacted = engine.redact_text(&text);
        let result = self.inner.write_all(redacted.as_bytes());
        self.buf.clear();
        result
    }
}

impl<W: Write> Write for RedactingWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.forward()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<'_, W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write; the line is dropped, never written unredacted.
        let _ = self.forward();
    }
}

/// An in-memory log sink for tests. Use [`CapturedLogs::subscriber`] so that captured output went
/// through exactly the production redacting path.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl CapturedLogs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A subscriber writing redacted lines into this buffer.
    pub fn subscriber(
        &self,
        settings: &LogSettings,
        engine: SharedPrivacyEngine,
    ) -> Result<BoxedSubscriber, PrivacyError> {
        build_subscriber(settings, engine, self.clone())
    }

    /// Everything written so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock()).into_owned()
    }
}

/// Writer handed out by [`CapturedLogs`].
pub struct CapturedWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Write for CapturedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CapturedWriter {
            buf: self.buf.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::engine::test_support::engine;

    #[derive(Debug)]
    #[allow(dead_code)] // Fields are read through Debug only.
    struct Address {
        name: String,
        phone_number: String,
        full_address: String,
    }

    #[test]
    fn debug_dumps_and_fields_are_redacted_in_json_and_text() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let logs = CapturedLogs::new();
            let settings = LogSettings {
                filter: "debug".into(),
                format,
            };
            let sub = logs
                .subscriber(&settings, engine().into_shared())
                .expect("builds");
            tracing::subscriber::with_default(sub, || {
                let addr = Address {
                    name: "Joana Prado".into(),
                    phone_number: "+55 11 91234-5678".into(),
                    full_address: "Rua das Flores 742, Curitiba".into(),
                };
                tracing::debug!(?addr, "address");
                tracing::info!(email = %"joana.prado@example.com", card = "4111-1111-1111-1111", "buyer");
                tracing::warn!(
                    "token {}",
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"
                );
                let span = tracing::info_span!("req", client_ip = "198.51.100.23");
                span.in_scope(|| tracing::info!(order_id = "576461413038785752", "in span"));
            });
            let out = logs.contents();
            for leaked in [
                "Joana",
                "91234",
                "Rua das Flores",
                "joana.prado",
                "4111-1111",
                "eyJhbGci",
                "198.51.100.23",
            ] {
                assert!(!out.contains(leaked), "{format:?}: {leaked} leaked:\n{out}");
            }
            assert!(
                out.contains("576461413038785752"),
                "{format:?}: ids stay readable:\n{out}"
            );
            assert_eq!(out.lines().count(), 4, "{out}");
        }
    }

    #[test]
    fn dependencies_stay_at_info_however_verbose_levels_are_spelled() {
        for filter in [
            "debug",
            "DEBUG",
            "Trace",
            "5",
            "warn,tiktok_gateway=debug",
            "pingora_core=trace",
            "info,pingora_core::protocols=trace",
            "pingora_core::protocols=debug,pingora_core::protocols::http=trace,h2=trace",
            "warn,[req]=trace",
        ] {
            let logs = CapturedLogs::new();
            let settings = LogSettings {
                filter: filter.into(),
                format: LogFormat::Text,
            };
            let sub = logs
                .subscriber(&settings, engine().into_shared())
                .expect("builds");
            tracing::subscriber::with_default(sub, || {
                // Inside a span too, which span-scoped directives (`[req]=trace`) enable.
                let _req = tracing::info_span!(target: "tiktok_gateway", "req").entered();
                tracing::debug!(target: "pingora_core::protocols", "x-custom-credential: s3cr3t");
                tracing::trace!(target: "h2::codec", "x-custom-credential: s3cr3t");
                tracing::warn!(target: "pingora_core::protocols", "listening");
            });
            let out = logs.contents();
            assert!(!out.contains("s3cr3t"), "{filter}: {out}");
            assert!(out.contains("listening"), "{filter}: {out}");
        }
    }

    #[test]
    fn json_lines_stay_valid_json() {
        let logs = CapturedLogs::new();
        let sub = logs
            .subscriber(&LogSettings::default(), engine().into_shared())
            .expect("builds");
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                body = r#"{"buyer_email":"a.b@example.com","id":"1"}"#,
                "x maria@example.com"
            );
        });
        let out = logs.contents();
        let line: serde_json::Value = serde_json::from_str(out.trim()).expect("valid JSON line");
        assert!(!out.contains("example.com"), "{out}");
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn engine_swap_applies_to_the_running_writer() {
        use crate::config::Secret;
        use crate::privacy::{CatalogueSettings, PrivacySettings};
        let shared = engine().into_shared();
        let logs = CapturedLogs::new();
        let sub = logs
            .subscriber(&LogSettings::default(), shared.clone())
            .expect("builds");
        let mut s = PrivacySettings::with_key(Secret::new("test-pseudonym-key-0123456789"));
        s.catalogue = CatalogueSettings {
            extra_pii_fields: vec!["gift_note".into()],
            ..Default::default()
        };
        tracing::subscriber::with_default(sub, || {
            tracing::info!(gift_note = "for Lucia", "before");
            shared.store(Arc::new(PrivacyEngine::new(&s).expect("valid")));
            tracing::info!(gift_note = "for Lucia", "after");
        });
        let out = logs.contents();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("for Lucia"), "{out}");
        assert!(!lines[1].contains("Lucia"), "{out}");
    }

    #[test]
    fn bad_filter_is_an_error() {
        let settings = LogSettings {
            filter: "info,=[".into(),
            format: LogFormat::Json,
        };
        assert!(matches!(
            build_subscriber(&settings, engine().into_shared(), io::sink),
            Err(PrivacyError::BadLogFilter(_))
        ));
    }

    #[test]
    fn panic_messages_are_redacted() {
        let logs = CapturedLogs::new();
        let shared = engine().into_shared();
        let sub = logs
            .subscriber(&LogSettings::default(), shared.clone())
            .expect("builds");
        let previous = std::panic::take_hook();
        install_panic_hook(shared);
        tracing::subscriber::with_default(sub, || {
            let r = std::panic::catch_unwind(|| {
                panic!("failed for buyer lucia.m@example.com card 5500 0000 0000 0004");
            });
            assert!(r.is_err());
        });
        std::panic::set_hook(previous);
        let out = logs.contents();
        assert!(out.contains("panic at"), "{out}");
        assert!(
            !out.contains("lucia.m") && !out.contains("5500 0000"),
            "{out}"
        );
    }
}
