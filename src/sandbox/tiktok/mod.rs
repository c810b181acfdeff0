//! A local TikTok Shop for the demo and the tests. It serves the Open API endpoints the gateway
//! uses and the token host's endpoints, answers in TikTok's envelope with realistic generated
//! orders, and checks every call the way TikTok does (app_key, timestamp window, signature over
//! the raw body, access token and expiry, shop_cipher rules, per-shop throttling), with its own
//! code rather than the gateway's signer, so each one tests the other.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tiktok_gateway::sandbox::tiktok::{SandboxConfig, spawn};
//! let sandbox = spawn(SandboxConfig::example(42)).await?;
//! println!("TikTok Shop sandbox on {}", sandbox.base_url());
//! let seen = sandbox.state().counters();
//! # let _ = seen; Ok(()) }
//! ```

mod api;
mod authorize;
mod check;
mod config;
mod data;
mod multipart;
mod pagination;
mod pii;
mod record;
mod reply;
mod server;
mod state;
mod throttle;
mod tokens;

#[cfg(test)]
mod e2e_tests;

pub use config::{
    ACCESS_TOKEN_LIFETIME_SECS, ONBOARDING_SHOP, REFRESH_TOKEN_LIFETIME_SECS, SandboxConfig,
    SandboxRate, SandboxShop,
};
pub use record::{Counters, RecordedRequest, RejectReason};
pub use reply::{
    ALREADY_SHIPPED, AUTH_CODE_INVALID, BAD_SIGN, INVALID_REQUEST, NOT_OWNED, RATE_LIMITED,
    SHOP_CIPHER_MISSING, TOKEN_EXPIRED, UNKNOWN_PATH, WRONG_METHOD,
};
pub use server::{TikTokSandbox, spawn, spawn_on};
pub use state::SandboxState;
