//! Application logs: JSON lines through the privacy engine's redacting writer, so no log path
//! (Pingora's `log` records and panics included) can print a token or personal data.

use crate::gateway::state::Gateway;
use crate::privacy::{LogFormat, LogSettings, PrivacyError, install_global_subscriber};

/// Installs the process-wide subscriber. Call once, after the gateway is built.
pub fn install_logging(level: &str, gateway: &Gateway) -> Result<(), PrivacyError> {
    install_global_subscriber(
        &LogSettings {
            filter: level.to_string(),
            format: LogFormat::Json,
        },
        gateway.privacy.clone(),
    )
}
