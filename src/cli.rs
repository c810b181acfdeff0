//! The command line: `run` (default), `validate`, `policy report`, `certs`, `schema`, `health`, and `demo` when
//! built with the `demo` feature (development builds only).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tiktok-gateway",
    version,
    about = "Security gateway between order services and TikTok Shop",
    long_about = "Security gateway between order services and TikTok Shop.\n\n\
        Without a subcommand it runs the gateway with ./gateway.yaml (`run`). \
        `validate` checks a config without starting anything; see `help run` for signals."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with a config file (the default command).
    #[command(long_about = RUN_LONG_ABOUT)]
    Run {
        /// The gateway's YAML config; relative paths inside it are taken from its folder.
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
        /// Take the listening sockets over from the running gateway (send it SIGQUIT right
        /// after starting this one); see `help run`.
        #[arg(long)]
        upgrade: bool,
    },
    /// Check a config file: prints every problem as file:line:col with its YAML path; exit 1 on
    /// any error.
    #[command(
        long_about = "Check a config file exactly as `run` would load it (secret references \
            resolved, certificate and key files read) without opening a socket. Prints every \
            problem as `file:line:col: error: <yaml.path>: message` with the line and a hint, and \
            exits 1 if there is any error, 0 otherwise. Warnings (routes that can never match, \
            settings that have no effect) are printed but do not fail it."
    )]
    Validate {
        /// The gateway's YAML config; relative paths inside it are taken from its folder.
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
        /// `text` for people (on stderr), `json` for CI (one object on stdout: file, ok, errors,
        /// warnings, diagnostics[] with severity, file, line, col, path, message, hint).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check a config against the security policy (POLICY.md): `policy report`.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write a development CA, a server certificate and client certificates into a folder.
    #[command(long_about = CERTS_LONG_ABOUT)]
    Certs {
        /// Folder to write into (created if missing).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Replace files that already exist (by default nothing is written if any exists).
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON Schema of the config file (what gateway.schema.json holds).
    #[command(
        long_about = "Print the JSON Schema of gateway.yaml on stdout. Editors with a YAML \
            language server use it through the `# yaml-language-server: $schema=...` line at the \
            top of a config; CI checks that the checked-in gateway.schema.json equals this output."
    )]
    Schema,
    /// Probe a health endpoint: exit 0 on a 2xx answer, 1 otherwise (container health checks).
    #[command(
        long_about = "Send one HTTP/1.1 GET to a plain-HTTP URL (the metrics listener's /healthz \
            or /readyz) and exit 0 when it answers 2xx within the timeout, 1 otherwise with the \
            reason on stderr. Used by the container image's HEALTHCHECK, so no curl is needed."
    )]
    Health {
        /// URL to probe (http only), e.g. http://127.0.0.1:9090/readyz.
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
        /// Deadline for the whole probe (connect, request, status line), e.g. 2s or 500ms.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Call the admin API over mTLS with an MFA token (prints the JSON answer; exit 1 unless 2xx).
    Admin(AdminArgs),
    /// The audit log: check its hash chain and signatures, or print the checkpoint public key.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the gateway with local TikTok Shop, order-service and identity-provider sandboxes.
    #[cfg(feature = "demo")]
    Demo {
        /// Port for the demo's egress (TikTok) listener; the others follow it.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// PASS / WARN / FAIL with the config evidence for each policy clause the gateway enforces;
    /// exit 1 on any FAIL, 2 if the config does not validate.
    #[command(
        long_about = "Load a config exactly as `validate` and `run` do, then check it against each \
            clause of the security policy (POLICY.md) that the gateway can enforce: PASS, WARN or \
            FAIL, with the YAML path and line of the evidence and a remedy. Organisational clauses \
            are listed as not checked by the gateway. Exits 0 when nothing fails (warnings allowed), \
            1 on any FAIL, 2 when the config does not validate (with `validate`'s diagnostics), so \
            it can gate a deployment pipeline. The running gateway serves the same report at \
            `GET /admin/policy`."
    )]
    Report {
        /// The gateway's YAML config; relative paths inside it are taken from its folder.
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
        /// `text` for people (on stdout), `json` for pipelines (one object on stdout: file,
        /// version, hash, status, counts, clauses[] with checks[] and findings[]).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The admin listener, e.g. https://127.0.0.1:9443.
    #[arg(long)]
    pub url: String,
    /// Client certificate (PEM) the admin listener requires.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    #[arg(long)]
    pub key: PathBuf,
    /// CA bundle (PEM) the gateway's server certificate is checked against.
    #[arg(long)]
    pub ca: PathBuf,
    /// File holding the MFA admin JWT (never passed on the command line, where `ps` shows it).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Deadline for the call, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// GET /admin/status.
    Status,
    /// The runtime block list.
    #[command(subcommand)]
    Blocks(BlocksCommand),
    /// Webhook dead letters.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// POST /admin/reload: reload the config file.
    Reload,
    /// GET /admin/audit: read the audit log.
    Audit {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BlocksCommand {
    List,
    /// Block a subject, an API-key name or a client address / CIDR.
    Add {
        /// subject, api_key or client_ip.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        value: String,
        #[arg(long)]
        reason: String,
        /// Seconds until the entry lapses by itself.
        #[arg(long)]
        expires_in: Option<i64>,
    },
    Remove {
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    Replay {
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log in the configured state store: every record's hash and link, and
    /// every checkpoint's signature. Exit 0 with a summary, 1 naming the first record that was
    /// changed, removed, inserted or reordered.
    #[command(
        long_about = "Check the audit log in the state store `state:` names (the embedded file or \
            PostgreSQL): every record's hash and its link to the one before, the recorded head, \
            and every signed checkpoint. Exits 0 with a summary, or 1 naming the first record \
            that was changed, removed, inserted or reordered (or a checkpoint that does not \
            verify). The embedded file is locked while a gateway runs: check a copy, or stop the \
            gateway. Signatures are checked with --public-key, or with the key from \
            `audit.signing_key`."
    )]
    Verify {
        /// The gateway's YAML config (its `state:` and `audit:` sections are used).
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
        /// The checkpoint public key (64 hex digits, from `audit public-key`); by default it is
        /// derived from `audit.signing_key`.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print the public key that checks the audit log's checkpoints (hex), for auditors.
    PublicKey {
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
    },
}

/// How `validate` prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

const RUN_LONG_ABOUT: &str = "Run the gateway with a config file (the default command).

The config is validated first, with the same checks and messages as `validate`; the gateway does
not start with an invalid one, and prints the warnings of a valid one.

Signals:
  SIGHUP   reload the config (so does saving the file); an invalid new config is rejected and
           the running one kept; changes to listeners apply only on restart
  SIGTERM  graceful stop: stop accepting, let in-flight work finish, exit as soon as it has
           (server.grace_period is the longest it may take)
  SIGINT   fast stop
  SIGQUIT  graceful upgrade: hand the listening sockets to a `run --upgrade` process waiting on
           <server.state_dir>/upgrade.sock, keep serving 5 s, then stop like SIGTERM

Zero-downtime upgrade: start the new binary with `run --upgrade --config <same file>`, then
send SIGQUIT to the running one within 5 s. The new process takes the listening sockets over
(nothing is closed, so no connection is refused), waits until the old one has released the
webhook queue file, and starts serving; connections that arrive meanwhile wait in the sockets'
backlog.";

const CERTS_LONG_ABOUT: &str = "Write development certificates into a folder: ca.crt (the dev CA), \
gateway.crt/gateway.key (server: localhost and 127.0.0.1), client.crt/client.key (client: \
order-service.internal, for mTLS) and other-client.crt/other-client.key (a client certificate from \
an unrelated CA, for tests). The CA is valid for one year, the others for 90 days. Keys are written \
with mode 0600. Existing files are never replaced unless --force is given. For development only: \
mount real certificates in production (see certs/README.md).";
