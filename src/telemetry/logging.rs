//! Application logs: JSON lines through the privacy engine's redacting writer, so no log path
//! (Pingora's `log` records and panics included) can print a token or personal data. Each line
//! starts with `"log_type":"application"` and `"timestamp"` (the access log's key and format), so
//! the two logs can share a sink and still be told apart. The sink is `logging.application_log`
//! (stdout by default). The filter is `logging.level`, or `RUST_LOG` when set, as
//! [`LogFilter::parse`] reads it (the parse `validate` runs too); targets outside the gateway are
//! capped at `info` whatever it says.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogTarget;
use crate::privacy::{
    LogFilter, LogFormat, LogSettings, PrivacyError, SharedPrivacyEngine, build_subscriber,
};

/// The `log_type` of application-log lines.
pub const APPLICATION: &str = "application";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(transparent)]
    Filter(#[from] PrivacyError),
    #[error("RUST_LOG: {0}")]
    Env(PrivacyError),
    #[error("logging.application_log: cannot open {path}: {source}")]
    Sink {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Where application logs go, and with which filter.
#[derive(Debug, Clone)]
pub struct AppLogSettings {
    /// `logging.level`, or `RUST_LOG` (see [`filter_from_env`]).
    pub level: String,
    pub sink: LogTarget,
}

/// `RUST_LOG` if it is set and not blank: it replaces `logging.level`. A value that does not
/// parse is an error naming the variable.
pub fn filter_from_env(configured: &str) -> Result<String, LoggingError> {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            LogFilter::parse(&v).map_err(LoggingError::Env)?;
            Ok(v)
        }
        _ => Ok(configured.to_owned()),
    }
}

/// Installs the process-wide subscriber. Call once, after the gateway is built. Directives the
/// cap makes ineffective are named in one `warn` line, so an operator is not left guessing.
pub fn install_logging(
    settings: &AppLogSettings,
    privacy: &SharedPrivacyEngine,
) -> Result<(), LoggingError> {
    let filter = LogFilter::parse(&settings.level)?;
    let sink = AppSink::open(&settings.sink).map_err(|source| LoggingError::Sink {
        path: match &settings.sink {
            LogTarget::File(p) => p.display().to_string(),
            other => format!("{other:?}"),
        },
        source,
    })?;
    let subscriber = build_subscriber(
        &LogSettings {
            filter: filter.spec().to_owned(),
            format: LogFormat::Json,
        },
        privacy.clone(),
        Tagged(sink),
    )?;
    RecoveredDependencyEvents
        .with_subscriber(subscriber)
        .try_init()
        .map_err(|_| PrivacyError::SubscriberAlreadySet)?;
    crate::privacy::install_panic_hook(privacy.clone());
    if let Some(note) = filter.capped_note() {
        tracing::warn!("{note}");
    }
    Ok(())
}

/// Dependency events logged as errors that the dependency recovers from itself and that need
/// nothing from an operator: (target, message, the `event` label they are counted under).
const RECOVERED: &[(&str, &str, &str)] = &[
    // Pingora's upstream pool found an idle connection, but the task watching it had not yet
    // let go; Pingora connects anew and the request goes on. Seen under CPU load in the soak.
    (
        "pingora_core::connectors",
        "failed to acquire reusable stream",
        "upstream_pool_reuse_race",
    ),
];

/// Counts the [`RECOVERED`] events in `dependency_recovered_events_total{event}` instead of
/// writing them as `ERROR` lines (which would page someone for nothing). Every other event
/// passes untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoveredDependencyEvents;

impl RecoveredDependencyEvents {
    /// The `event` label if `event` is one of the [`RECOVERED`] ones.
    fn recovered(event: &Event<'_>) -> Option<&'static str> {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR {
            return None;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // A `log` record (Pingora logs through `log`) arrives on the bridge's own callsite,
        // target `log`, with its real target in the `log.target` field.
        let target = match (meta.target(), fields.log_target.as_deref()) {
            ("log", Some(real)) => real,
            (own, _) => own,
        };
        let message = fields.message.as_deref()?;
        RECOVERED
            .iter()
            .find(|(t, text, _)| *t == target && *text == message)
            .map(|(_, _, label)| *label)
    }
}

impl<S: Subscriber> Layer<S> for RecoveredDependencyEvents {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        match Self::recovered(event) {
            Some(label) => {
                crate::telemetry::metrics::metrics()
                    .dependency_recovered_events
                    .with_label_values(&[label])
                    .inc();
                false
            }
            None => true,
        }
    }
}

/// The fields of an error event that say what it is.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    log_target: Option<String>,
}

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            "log.target" => self.log_target = Some(value),
            _ => {}
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }
}

/// The application-log sink.
#[derive(Debug, Clone)]
enum AppSink {
    Stdout,
    Stderr,
    File(Arc<File>),
}

impl AppSink {
    fn open(target: &LogTarget) -> io::Result<Self> {
        Ok(match target {
            LogTarget::Stdout => Self::Stdout,
            LogTarget::Stderr => Self::Stderr,
            LogTarget::File(path) => Self::File(Arc::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        })
    }
}

/// Writes each event's line with `"log_type":"application"` first.
struct Tagged(AppSink);

impl<'a> MakeWriter<'a> for Tagged {
    type Writer = TaggedWriter<Box<dyn Write + 'a>>;

    fn make_writer(&'a self) -> Self::Writer {
        let inner: Box<dyn Write + 'a> = match &self.0 {
            AppSink::Stdout => Box::new(io::stdout()),
            AppSink::Stderr => Box::new(io::stderr()),
            AppSink::File(f) => Box::new(&**f),
        };
        TaggedWriter {
            inner,
            started: false,
        }
    }
}

/// One event's writer (the redacting writer hands it the whole redacted line).
pub struct TaggedWriter<W: Write> {
    inner: W,
    started: bool,
}

impl<W: Write> Write for TaggedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.started && !data.is_empty() {
            self.started = true;
            if let Some(rest) = data.strip_prefix(b"{") {
                let mut line = Vec::with_capacity(data.len() + 32);
                line.extend_from_slice(b"{\"log_type\":\"");
                line.extend_from_slice(APPLICATION.as_bytes());
                line.extend_from_slice(b"\",");
                line.extend_from_slice(rest);
                self.inner.write_all(&line)?;
                return Ok(data.len());
            }
        }
        self.inner.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{CapturedLogs, LogSettings, PrivacyEngine, PrivacySettings};

    #[test]
    fn a_recovered_dependency_error_is_counted_not_logged() {
        let logs = CapturedLogs::new();
        let engine = PrivacyEngine::new(&PrivacySettings::with_key(crate::config::Secret::new(
            "test-pseudonym-key-0123456789",
        )))
        .expect("engine");
        let sub = logs
            .subscriber(&LogSettings::default(), engine.into_shared())
            .expect("subscriber");
        let counted = || {
            crate::telemetry::metrics::metrics()
                .dependency_recovered_events
                .with_label_values(&["upstream_pool_reuse_race"])
                .get()
        };
        let before = counted();
        // Pingora logs through `log`: its records reach the subscriber through the same bridge
        // as in the gateway (installed globally once; it sends to the thread's default).
        let _ = tracing_log::LogTracer::init();
        tracing::subscriber::with_default(RecoveredDependencyEvents.with_subscriber(sub), || {
            log::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            // Anything else, even from the same place, is still an error line.
            log::error!(target: "pingora_core::connectors", "failed to acquire a socket");
            tracing::error!(target: "tiktok_gateway", "failed to acquire reusable stream");
        });
        let out = logs.contents();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("failed to acquire a socket"), "{out}");
        assert!(out.contains(r#""target":"tiktok_gateway""#), "{out}");
        assert_eq!(counted(), before + 2);
    }

    #[test]
    fn the_type_comes_first_once_per_line() {
        let mut out = Vec::new();
        {
            let mut w = TaggedWriter {
                inner: &mut out,
                started: false,
            };
            w.write_all(br#"{"timestamp":"t","level":"INFO"}"#).unwrap();
            w.write_all(b"\n").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log_type\":\"application\",\"timestamp\":\"t\",\"level\":\"INFO\"}\n"
        );
    }
}
