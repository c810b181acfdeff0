//! tiktok-gateway binary.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tiktok_gateway::cli::{Cli, Command, Format};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::{load_str, read_text, report};
use tiktok_gateway::gateway::state::{Gateway, StartError};
use tiktok_gateway::server::{build, dev_certs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tiktok_gateway::transport::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        config: "gateway.yaml".into(),
    }) {
        // The same load and compile as `run`, short of binding listeners and opening state.
        Command::Validate { config, format } => validate(&config, format),
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
            let name = config.display().to_string();
            let text = match read_text(&config) {
                Ok(text) => text,
                Err(e) => {
                    eprint!("{}", report::text(&name, "", &e.issues));
                    return ExitCode::FAILURE;
                }
            };
            let base_dir = config.parent().unwrap_or(Path::new("."));
            let loaded = match load_str(&text, base_dir, &config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{}", report::text(&name, &text, &e.issues));
                    return ExitCode::FAILURE;
                }
            };
            if !loaded.warnings.is_empty() {
                eprint!("{}", report::text(&name, &text, &loaded.warnings));
            }
            // An address in use stops start-up here, before any state is opened.
            if let Err(e) = tiktok_gateway::server::lifecycle::check_listeners_bind(&loaded) {
                eprintln!("{}: {e}", config.display());
                return ExitCode::FAILURE;
            }
            let level = loaded.logging.level.clone();
            let gateway = match Gateway::new(loaded, Arc::new(SystemClock)) {
                Ok(g) => g,
                Err(StartError::Config(e)) => {
                    let mut issues = e.issues;
                    report::locate(&text, &mut issues);
                    eprint!("{}", report::text(&name, &text, &issues));
                    return ExitCode::FAILURE;
                }
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

/// `validate`: every problem of the config, as text on stderr or as JSON on stdout; exit 1 on
/// any error. Warnings are printed and do not fail it.
fn validate(path: &Path, format: Format) -> ExitCode {
    let name = path.display().to_string();
    let (text, checked) = match read_text(path) {
        Ok(text) => {
            let checked = build::validate_text(&text, path);
            (text, checked)
        }
        Err(e) => (
            String::new(),
            build::Validated {
                snapshot: None,
                issues: e.issues,
            },
        ),
    };
    if format == Format::Json {
        println!("{}", report::json(&name, &checked.issues));
    } else if !checked.issues.is_empty() {
        eprint!("{}", report::text(&name, &text, &checked.issues));
    }
    let Some(snapshot) = checked.snapshot else {
        return ExitCode::FAILURE;
    };
    if format == Format::Text {
        let c = &snapshot.config;
        println!(
            "{name}: ok ({} listeners, {} routes, hash {})",
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
    }
    ExitCode::SUCCESS
}
