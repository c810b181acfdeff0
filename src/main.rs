//! tiktok-gateway binary.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tiktok_gateway::cli::{Cli, Command};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::load_file;
use tiktok_gateway::server::{build, dev_certs, state::Gateway, tls};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        config: "gateway.yaml".into(),
    }) {
        Command::Validate { config } => match load_file(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} listeners, {} routes, hash {})",
                    config.display(),
                    c.listeners.len(),
                    c.routes.len(),
                    &c.hash[..12]
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Certs { out } => match dev_certs::generate(&out) {
            Ok(c) => {
                println!(
                    "wrote {} {} {} {} {} into {}",
                    c.ca_cert.display(),
                    c.server_cert.display(),
                    c.server_key.display(),
                    c.client_cert.display(),
                    c.client_key.display(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let loaded = match load_file(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::FAILURE;
                }
            };
            let level = loaded.logging.level.clone();
            let gateway = match Gateway::new(loaded, Arc::new(SystemClock)) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            // Every log line, Pingora's included, passes through the redaction engine.
            if let Err(e) = tiktok_gateway::telemetry::install_logging(&level, &gateway) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            let access_log = gateway.access_log.clone();
            match build::build_server(gateway, Some(config)) {
                Ok(server) => {
                    build::run_with_signals(server);
                    // The access log is written by its own thread: write out the last lines.
                    access_log.flush(std::time::Duration::from_secs(5));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { port } => tiktok_gateway::demo::run(port),
    }
}
