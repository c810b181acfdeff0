//! TikTok Shop: request signing, credentials, tokens, pacing, webhooks.
