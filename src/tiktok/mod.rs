//! TikTok Shop: request signing, credentials, tokens, pacing, webhooks.

pub mod delivery;
pub mod proof;
pub mod queue;
pub mod replay;
pub mod token_store;
pub mod tokens;
