//! Access log, metrics and request ids.

pub mod access_log;
mod logging;

pub use logging::install_logging;
pub mod metrics;
pub mod request_id;
