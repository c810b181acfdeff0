//! tiktok-gateway binary.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tiktok_gateway::cli::{Cli, Command};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::load_file;
use tiktok_gateway::gateway::state::Gateway;
use tiktok_gateway::server::{build, dev_certs};

// `system-allocator` (profiling only) leaves this out so heap profilers see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tiktok_gateway::transport::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        config: "gateway.yaml".into(),
    }) {
        // The same load and compile as `run`, short of binding listeners and opening state.
        Command::Validate { config } => match load_file(&config).and_then(build::validate) {
            Ok(s) => {
                let c = &s.config;
                println!(
                    "{}: ok ({} listeners, {} routes, hash {})",
                    config.display(),
                    c.listeners.len(),
                    c.routes.len(),
                    &c.hash[..12]
                );
                // `validate` accepted the filter, so it parses; say what the cap makes moot.
                if let Some(note) = tiktok_gateway::privacy::LogFilter::parse(&c.logging.level)
                    .ok()
                    .and_then(|f| f.capped_note())
                {
                    println!("note: {note}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Certs { out, force } => {
            let overwrite = if force {
                dev_certs::Overwrite::Replace
            } else {
                dev_certs::Overwrite::Refuse
            };
            match dev_certs::generate_into(&out, overwrite) {
                Ok(c) => {
                    let files = c.files();
                    println!("wrote {} files into {}:", files.len(), out.display());
                    for f in files {
                        println!("  {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Schema => {
            print!("{}", tiktok_gateway::ops::schema::config_schema_json());
            ExitCode::SUCCESS
        }
        Command::Health { url, timeout } => {
            match tiktok_gateway::ops::health_probe::probe(&url, timeout) {
                Ok(status) => {
                    println!("{url}: {status}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{url}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        #[cfg(feature = "demo")]
        Command::Demo { port } => tiktok_gateway::demo::run(port),
    }
}
