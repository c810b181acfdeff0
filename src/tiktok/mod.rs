//! TikTok Shop: request signing, credentials, tokens, pacing, webhooks.

pub mod authorization;
pub mod delivery;
pub mod developer_webhook;
pub mod proof;
pub mod query;
pub mod queue;
pub mod shops;
pub mod sign;
pub mod token_seal;
pub mod token_store;
pub mod tokens;
pub mod webhook;
