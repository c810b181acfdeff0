//! Access log, metrics and request ids.

pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod request_id;
