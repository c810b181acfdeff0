//! Local imitations used by `demo` and the tests: TikTok Shop, an order service, a dev identity provider.

pub mod idp;
pub mod orders;
pub mod tiktok;
