//! `tiktok-gateway audit verify` and `audit public-key`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::audit::checkpoint::{Signer, parse_key_bytes};
use crate::audit::verify::{VerifyError, verify};
use crate::cli::AuditCommand;
use crate::clock::SystemClock;
use crate::config::{GatewayConfig, load_file};

fn load(path: &std::path::Path) -> Result<GatewayConfig, String> {
    load_file(path).map_err(|e| {
        let first = e
            .issues
            .first()
            .map(|i| format!("{}: {}", i.path, i.message))
            .unwrap_or_default();
        format!(
            "{}: invalid config ({first}); run `validate` for every problem",
            path.display()
        )
    })
}

fn signer(config: &GatewayConfig) -> Result<Option<Signer>, String> {
    config
        .audit
        .signing_key
        .as_ref()
        .map(Signer::from_secret)
        .transpose()
        .map_err(|e| format!("audit.signing_key: {e}"))
}

pub fn run(command: AuditCommand) -> ExitCode {
    let result = match command {
        AuditCommand::PublicKey { config } => load(&config).and_then(|c| match signer(&c)? {
            Some(s) => {
                println!("{}", hex::encode(s.public_key()));
                Ok(true)
            }
            None => Err("audit.signing_key is not set: checkpoints are not signed".into()),
        }),
        AuditCommand::Verify { config, public_key } => verify_command(&config, public_key),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(true)`: intact; `Ok(false)`: tampered (printed); `Err`: could not check.
fn verify_command(path: &std::path::Path, public_key: Option<String>) -> Result<bool, String> {
    let config = load(path)?;
    let public = match public_key {
        Some(hex) => Some(parse_key_bytes(&hex).map_err(|e| format!("--public-key: {e}"))?),
        None => signer(&config)?.map(|s| s.public_key()),
    };
    let store = crate::state::open(&config.state, Arc::new(SystemClock))
        .map_err(|e| format!("state: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    match runtime.block_on(verify(store.as_ref(), public)) {
        Ok(summary) => {
            println!("{summary}");
            Ok(true)
        }
        Err(VerifyError::Tampered(t)) => {
            eprintln!("audit log tampered with: {t}");
            Ok(false)
        }
        Err(VerifyError::Store(e)) => {
            // A record that cannot even be decoded was changed; the message names it.
            eprintln!("audit log damaged: {e}");
            Ok(false)
        }
    }
}
