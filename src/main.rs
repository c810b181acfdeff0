//! tiktok-gateway binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tiktok_gateway::cli::{Cli, Command, Format, PolicyCommand};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::{StateBackendConfig, load_str, read_text, report};
use tiktok_gateway::gateway::state::{Gateway, StartError, privacy_engine};
use tiktok_gateway::server::{build, dev_certs, lifecycle};

// `system-allocator` (profiling only) leaves this out so heap profilers see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tiktok_gateway::allocator::Mimalloc = tiktok_gateway::allocator::Mimalloc;

fn main() -> ExitCode {
    // First, before the heap grows: pages faulted in as huge pages stay huge. A failure is
    // logged when the server is built, which asks again.
    let _ = tiktok_gateway::transport::memory_return::disable_transparent_huge_pages();
    tiktok_gateway::transport::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        config: "gateway.yaml".into(),
        upgrade: false,
    }) {
        // The same load and compile as `run`, short of binding listeners and opening state.
        Command::Validate { config, format } => validate(&config, format),
        Command::Policy {
            command: PolicyCommand::Report { config, format },
        } => policy_report(&config, format),
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
        Command::Run { config, upgrade } => run(config, upgrade),
        Command::Audit(command) => tiktok_gateway::ops::audit_cli::run(command),
        Command::Admin(args) => tiktok_gateway::ops::admin_client::run(args),
        #[cfg(feature = "demo")]
        Command::Demo { port } => tiktok_gateway::demo::run(port),
    }
}

/// The config file's text and what `validate` finds in it (an unreadable file is one issue).
fn checked_text(path: &Path) -> (String, build::Validated) {
    match read_text(path) {
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
    }
}

/// `validate`: every problem of the config, as text on stderr or as JSON on stdout; exit 1 on
/// any error. Warnings are printed and do not fail it.
fn validate(path: &Path, format: Format) -> ExitCode {
    let name = path.display().to_string();
    let (text, checked) = checked_text(path);
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

/// `policy report`: the config loaded as `validate` loads it (exit 2 with its diagnostics when
/// it does not validate), then checked against the security policy; exit 1 on any FAIL.
fn policy_report(path: &Path, format: Format) -> ExitCode {
    let name = path.display().to_string();
    let (text, checked) = checked_text(path);
    let Some(snapshot) = checked.snapshot else {
        if format == Format::Json {
            println!("{}", report::json(&name, &checked.issues));
        } else {
            eprint!("{}", report::text(&name, &text, &checked.issues));
        }
        return ExitCode::from(2);
    };
    if format == Format::Text && !checked.issues.is_empty() {
        eprint!("{}", report::text(&name, &text, &checked.issues));
    }
    let mut policy = tiktok_gateway::policy::evaluate(&snapshot.config);
    policy.file = name;
    policy.locate(&text);
    match format {
        Format::Json => println!("{}", tiktok_gateway::policy::render::json(&policy)),
        Format::Text => print!("{}", tiktok_gateway::policy::render::text(&policy)),
    }
    if policy.status() == tiktok_gateway::policy::Status::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `run`: start-up in the order that lets a failure stop it early and an upgrade hand over.
fn run(config: PathBuf, upgrade: bool) -> ExitCode {
    let name = config.display().to_string();
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("{name}: {e}");
        ExitCode::FAILURE
    };
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
    // An address in use stops start-up here, before any state is opened. An upgrade takes the
    // addresses over from the running gateway instead.
    if !upgrade && let Err(e) = lifecycle::check_listeners_bind(&loaded) {
        return fail(&e);
    }
    if let Err(e) = lifecycle::prepare_state_dir(&loaded.server.state_dir) {
        return fail(&e);
    }
    // `RUST_LOG` replaces `logging.level` (same syntax, same cap on dependencies).
    let logs = match tiktok_gateway::telemetry::filter_from_env(&loaded.logging.level) {
        Ok(level) => tiktok_gateway::telemetry::AppLogSettings {
            level,
            sink: loaded.logging.application_log.clone(),
        },
        Err(e) => return fail(&e),
    };
    let privacy = match privacy_engine(&loaded) {
        Ok(p) => p.into_shared(),
        Err(e) => return fail(&e),
    };
    // Every log line, Pingora's included, passes through the redaction engine.
    if let Err(e) = tiktok_gateway::telemetry::install_logging(&logs, &privacy) {
        return fail(&e);
    }
    tracing::debug!(
        filter = %logs.level,
        "{} listeners, {} routes, config {} (hash {})",
        loaded.listeners.len(),
        loaded.routes.len(),
        loaded.version,
        &loaded.hash[..12]
    );
    let mut server = build::new_server(&loaded, upgrade);
    if upgrade {
        // Takes the listening sockets over (Pingora exits 1 if none arrive within about 5 s),
        // then waits for the old gateway to let go of the embedded state file.
        server.bootstrap();
        tracing::info!("upgrade: listening sockets taken over");
        if let StateBackendConfig::Embedded { path: Some(path) } = &loaded.state.backend {
            let limit = loaded.server.grace_period + Duration::from_secs(30);
            if let Err(e) = lifecycle::wait_for_store(path, limit) {
                return fail(&e);
            }
        }
    }
    let gateway = match Gateway::with_privacy(loaded, Arc::new(SystemClock), privacy) {
        Ok(g) => g,
        Err(StartError::Config(e)) => {
            let mut issues = e.issues;
            report::locate(&text, &mut issues);
            eprint!("{}", report::text(&name, &text, &issues));
            return ExitCode::FAILURE;
        }
        Err(e) => return fail(&e),
    };
    let access_log = gateway.access_log.clone();
    let tracing = gateway.tracing.clone();
    match build::build_server_on(server, gateway, Some(config.clone())) {
        Ok(server) => {
            build::run_with_signals(server);
            // The access log is written by its own thread: write out the last lines.
            access_log.flush(Duration::from_secs(5));
            // So are spans: export what is queued (bounded by the export timeout).
            tracing.shutdown();
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
