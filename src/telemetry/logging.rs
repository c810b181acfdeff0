//! Application logs: JSON lines through the privacy engine's redacting writer, so no log path
//! (Pingora's `log` records and panics included) can print a token or personal data. The filter
//! is `logging.level` as [`LogFilter::parse`] reads it (the parse `validate` runs too); targets
//! outside the gateway are capped at `info` whatever it says.

use crate::gateway::state::Gateway;
use crate::privacy::{LogFilter, LogFormat, LogSettings, PrivacyError, install_global_subscriber};

/// Installs the process-wide subscriber. Call once, after the gateway is built. Directives the
/// cap makes ineffective are named in one `warn` line, so an operator is not left guessing.
pub fn install_logging(level: &str, gateway: &Gateway) -> Result<(), PrivacyError> {
    let filter = LogFilter::parse(level)?;
    install_global_subscriber(
        &LogSettings {
            filter: filter.spec().to_owned(),
            format: LogFormat::Json,
        },
        gateway.privacy.clone(),
    )?;
    if let Some(note) = filter.capped_note() {
        tracing::warn!("{note}");
    }
    Ok(())
}
