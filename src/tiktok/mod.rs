//! TikTok Shop: request signing, credentials, tokens, pacing, webhooks.

pub mod developer_webhook;
pub mod query;
pub mod sign;
pub mod webhook;
