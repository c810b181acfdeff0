//! Access log, metrics, traces and request ids.

pub mod access_log;
pub mod batched_writer;
mod json_line;
mod logging;

pub use logging::{AppLogSettings, LoggingError, filter_from_env, install_logging};
pub mod metrics;
pub mod otel;
pub mod readiness;
pub mod request_id;
pub mod trace_context;
