//! The command line: `run` (default), `validate`, `certs`, and `demo` when built with the `demo`
//! feature (development builds only).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tiktok-gateway",
    version,
    about = "Security gateway between order services and TikTok Shop"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with a config file (the default command).
    Run {
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
    },
    /// Check a config file: prints every error with its YAML path and line; exit 1 if any.
    Validate {
        #[arg(long, short, default_value = "gateway.yaml")]
        config: PathBuf,
    },
    /// Write a development CA, a server certificate and client certificates into a folder.
    Certs {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
    /// Run the gateway with local TikTok Shop, order-service and identity-provider sandboxes.
    #[cfg(feature = "demo")]
    Demo {
        /// Port for the demo's egress (TikTok) listener; the others follow it.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}
