//! `GET /admin/policy`: the policy report of the running config, as JSON. The admin app has
//! already required the client certificate, the MFA token and the admin scope.

use sha2::{Digest, Sha256};

use super::{evaluate, render};
use crate::config::GatewayConfig;

/// The report of `config`; lines are given when the file on disk is still the one it was
/// loaded from (same hash), paths always.
pub fn report_json(config: &GatewayConfig) -> serde_json::Value {
    let mut report = evaluate(config);
    if let Ok(text) = std::fs::read_to_string(&config.source)
        && hex::encode(Sha256::digest(text.as_bytes())) == config.hash
    {
        report.locate(&text);
    }
    render::json(&report)
}
