//! One JSON line per request, and one per webhook delivery attempt. A line carries only fields
//! built for it (never raw headers, query values or bodies), so secrets and personal data have no
//! way in: the query is logged as its keys, the subject and user agent pass the redactor first.
//! Every line starts with `log_type` (`access`, `delivery`; application logs say `application`)
//! and `timestamp` (RFC 3339 UTC, microseconds: the application log's key and format).
//!
//! The worker that finished the request only encodes the line (into a buffer it reuses, with
//! `json_line`, not serde: a line per request made serde the largest cost of a bare request);
//! writing is done by a background thread in batches (`batched_writer`), so a request costs no
//! write syscall and no lock shared with other workers. Lines reach the sink within about 100 ms;
//! lines lost to a full queue or a failing sink are counted in `access_log_dropped_total`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::batched_writer::{BatchSettings, BatchedWriter, DropCounters};
use super::json_line::JsonObject;
use super::metrics::metrics;
use crate::config::LogTarget;

/// The `log_type` of access-log lines.
pub const ACCESS: &str = "access";
/// The `log_type` of webhook delivery lines.
pub const DELIVERY: &str = "delivery";

/// What is known about a finished request. The line starts with `log_type` (`access`) and
/// `timestamp`, written by [`AccessLog::write`]; the fields follow in this order, an absent
/// `route` or `upstream` as `null`, the other absent fields left out.
#[derive(Debug, Default)]
pub struct AccessRecord<'a> {
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
    pub upstream_addr: Option<&'a str>,
    /// From the first upstream attempt to the response head (proxied) or whole answer (egress).
    pub upstream_latency_ms: Option<f64>,
    /// Upstream attempts (more than one after a connect failure or a token refresh).
    pub attempts: Option<usize>,
    /// `forwarded`, `refused`, `answered` (by the gateway itself) or `error`.
    pub decision: &'a str,
    /// Stable refusal code (`no_route`, `invalid_token`, ...).
    pub reason: Option<&'a str>,
    /// `jwt:<issuer>`, `api_key:<name>`, `mtls`, `tiktok_webhook:<app>`.
    pub auth: Option<&'a str>,
    /// Who the caller proved to be (what `identity.blocked_subjects` takes), redacted.
    pub subject: Option<std::borrow::Cow<'a, str>>,
    pub client_ip: Option<String>,
    pub shop: Option<&'a str>,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: Option<&'static str>,
    /// The `Host` (or `:authority`) the request named.
    pub host: Option<&'a str>,
    /// The `User-Agent`, truncated and redacted.
    pub user_agent: Option<std::borrow::Cow<'a, str>>,
    /// With tracing on, the request's own trace id; otherwise that of the caller's
    /// `traceparent`, when it sent a valid one.
    pub trace_id: Option<&'a str>,
}

/// One webhook delivery attempt to the order service: a line that starts with `log_type`
/// (`delivery`) and `timestamp`, absent fields left out.
#[derive(Debug, Default)]
pub struct DeliveryRecord<'a> {
    /// The request id of the webhook as it arrived (its access-log line has the caller).
    pub request_id: &'a str,
    /// `x-gateway-event-id`.
    pub event_id: &'a str,
    pub route: &'a str,
    pub method: &'static str,
    pub path: &'a str,
    /// `host:port` of the delivery URL.
    pub upstream_addr: Option<&'a str>,
    pub upstream_latency_ms: f64,
    /// This attempt's number (1 for the first).
    pub attempts: u32,
    /// The order service's answer; 0 when there was none.
    pub status: u16,
    /// `delivered` or `retry`.
    pub decision: &'static str,
    /// Why there was no answer (`timeout`, `connect`, `other`), or `ack_failed`.
    pub reason: Option<&'static str>,
    /// The trace id of the delivery attempt's span, when tracing is on.
    pub trace_id: Option<&'a str>,
}

impl AccessRecord<'_> {
    fn encode(&self, line: &mut JsonObject<'_>) {
        line.str("request_id", self.request_id)
            .str("listener", self.listener)
            .str_or_null("route", self.route)
            .str("method", self.method)
            .str("path", self.path)
            .str_list("query_keys", &self.query_keys)
            .uint("status", u64::from(self.status))
            .uint("bytes_in", self.bytes_in as u64)
            .uint("bytes_out", self.bytes_out as u64)
            .float("latency_ms", self.latency_ms)
            .str_or_null("upstream", self.upstream)
            .str_if_some("upstream_addr", self.upstream_addr)
            .float_if_some("upstream_latency_ms", self.upstream_latency_ms)
            .uint_if_some("attempts", self.attempts.map(|a| a as u64))
            .str("decision", self.decision)
            .str_if_some("reason", self.reason)
            .str_if_some("auth", self.auth)
            .str_if_some("subject", self.subject.as_deref())
            .str_if_some("client_ip", self.client_ip.as_deref())
            .str_if_some("shop", self.shop)
            .str_if_some("protocol", self.protocol)
            .str_if_some("host", self.host)
            .str_if_some("user_agent", self.user_agent.as_deref())
            .str_if_some("trace_id", self.trace_id);
    }
}

impl DeliveryRecord<'_> {
    fn encode(&self, line: &mut JsonObject<'_>) {
        line.str("request_id", self.request_id)
            .str("event_id", self.event_id)
            .str("route", self.route)
            .str("method", self.method)
            .str("path", self.path)
            .str_if_some("upstream_addr", self.upstream_addr)
            .float("upstream_latency_ms", self.upstream_latency_ms)
            .uint("attempts", u64::from(self.attempts))
            .uint("status", u64::from(self.status))
            .str("decision", self.decision)
            .str_if_some("reason", self.reason)
            .str_if_some("trace_id", self.trace_id);
    }
}

thread_local! {
    /// Each worker encodes into its own buffer, grown once to the size of a line and reused.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Where access-log lines go. Cloning shares the sink and its writer thread; the thread writes
/// out what is queued and stops when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLog {
    writer: Arc<BatchedWriter>,
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
        let dropped = &metrics().access_log_dropped;
        let counters = DropCounters {
            queue_full: dropped.with_label_values(&["queue_full"]),
            write_error: dropped.with_label_values(&["write_error"]),
        };
        Self::with_sink(sink, BatchSettings::default(), counters)
    }

    /// An access log over any sink (tests use this to watch the writes).
    pub fn with_sink(
        sink: Box<dyn Write + Send>,
        settings: BatchSettings,
        dropped: DropCounters,
    ) -> std::io::Result<Self> {
        let writer = BatchedWriter::spawn("access-log", sink, settings, dropped)?;
        Ok(Self {
            writer: Arc::new(writer),
        })
    }

    /// Stamps the record with its type and the current time and queues its line. Never blocks.
    pub fn write(&self, record: AccessRecord<'_>) {
        self.queue_line(ACCESS, |line| record.encode(line));
    }

    /// As [`AccessLog::write`], for a webhook delivery attempt.
    pub fn write_delivery(&self, record: DeliveryRecord<'_>) {
        self.queue_line(DELIVERY, |line| record.encode(line));
    }

    fn queue_line(&self, log_type: &'static str, fields: impl FnOnce(&mut JsonObject<'_>)) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            let mut object = JsonObject::begin(line);
            object
                .str("log_type", log_type)
                .timestamp("timestamp", SystemTime::now());
            fields(&mut object);
            object.finish();
            line.push(b'\n');
            self.writer.push(line.as_slice().to_vec());
        });
    }

    /// Writes out every line queued so far; the shutdown path calls this so the last requests'
    /// lines are not left in memory. Gives up after `timeout` if the sink is stuck.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.writer.flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::IntCounter;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(sink: &Shared, settings: BatchSettings) -> AccessLog {
        let counter = |n: &str| IntCounter::new(n, "test").unwrap();
        let dropped = DropCounters {
            queue_full: counter("queue_full"),
            write_error: counter("write_error"),
        };
        AccessLog::with_sink(Box::new(sink.clone()), settings, dropped).unwrap()
    }

    fn record(request_id: &str) -> AccessRecord<'_> {
        AccessRecord {
            request_id,
            listener: "public",
            route: Some("orders"),
            method: "GET",
            path: "/orders/1",
            query_keys: vec!["page".into()],
            status: 200,
            bytes_in: 0,
            bytes_out: 2,
            latency_ms: 1.5,
            upstream: Some("orders"),
            decision: "forwarded",
            auth: Some("jwt:dev"),
            ..Default::default()
        }
    }

    #[test]
    fn the_line_format_is_unchanged() {
        let sink = Shared::default();
        let log = log(&sink, BatchSettings::default());
        log.write(record("req-1"));
        assert!(log.flush(Duration::from_secs(10)));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1);
        // The type, then the time: RFC 3339 UTC with microseconds, like the application log.
        let time = text
            .strip_prefix(r#"{"log_type":"access","timestamp":""#)
            .and_then(|t| t.split_once('"'))
            .map(|(t, _)| t)
            .unwrap();
        assert_eq!(time.len(), "2026-01-01T00:00:00.000000Z".len(), "{time}");
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
        let after_time = text.split_once(r#"Z","#).map(|(_, rest)| rest).unwrap();
        assert_eq!(
            after_time,
            concat!(
                r#""request_id":"req-1","listener":"public","route":"orders","method":"GET","#,
                r#""path":"/orders/1","query_keys":["page"],"status":200,"bytes_in":0,"#,
                r#""bytes_out":2,"latency_ms":1.5,"upstream":"orders","decision":"forwarded","#,
                r#""auth":"jwt:dev"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn lines_from_many_workers_arrive_whole_and_in_each_workers_order() {
        let sink = Shared::default();
        let log = log(&sink, BatchSettings::default());
        std::thread::scope(|s| {
            for worker in 0..4 {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..200 {
                        log.write(record(&format!("w{worker}-{i}")));
                    }
                });
            }
        });
        drop(log);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["request_id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids.len(), 800, "dropping the last handle wrote everything");
        for worker in 0..4 {
            let mine: Vec<&String> = ids
                .iter()
                .filter(|id| id.starts_with(&format!("w{worker}-")))
                .collect();
            let expected: Vec<String> = (0..200).map(|i| format!("w{worker}-{i}")).collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>());
        }
    }
}
