//! One JSON line per request. It carries only fields built for it (never raw headers, query
//! values or bodies), so secrets and personal data have no way in: the query is logged as its keys.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::LogTarget;

/// What is known about a finished request.
#[derive(Debug, Default, Serialize)]
pub struct AccessRecord<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub listener: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    /// Path only; never the query string.
    pub path: &'a str,
    /// Query parameter names, redacted (values are never logged).
    pub query_keys: Vec<String>,
    pub status: u16,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub latency_ms: f64,
    pub upstream: Option<&'a str>,
    /// The address the request (or the gateway's own TikTok call) was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_addr: Option<&'a str>,
    /// From the first upstream attempt to the response head (proxied) or whole answer (egress).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_latency_ms: Option<f64>,
    /// `forwarded`, `refused`, `answered` (by the gateway itself) or `error`.
    pub decision: &'a str,
    /// Stable refusal code (`no_route`, `invalid_token`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// `jwt:<issuer>`, `api_key:<name>`, `mtls`, `tiktok_webhook:<app>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shop: Option<&'a str>,
}

/// Where access-log lines go. Cloning shares the sink.
#[derive(Clone)]
pub struct AccessLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl AccessLog {
    pub fn open(target: &LogTarget) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
            LogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        Ok(Self {
            sink: Arc::new(Mutex::new(sink)),
        })
    }

    pub fn write(&self, mut record: AccessRecord<'_>) {
        record.time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let Ok(mut line) = serde_json::to_vec(&record) else {
            return;
        };
        line.push(b'\n');
        let mut sink = self.sink.lock();
        // A full disk must not take the proxy down; the metrics still count the request.
        let _ = sink.write_all(&line);
        let _ = sink.flush();
    }
}
