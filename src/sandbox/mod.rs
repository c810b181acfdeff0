//! Local imitations used by `demo` and the tests: TikTok Shop, an order service, a dev identity
//! provider. Development code: built only with the `demo` feature (and for this crate's unit
//! tests), never in a production binary. Every key, token and secret here is generated at start.

pub mod idp;
pub mod orders;
pub mod secret;
pub mod tiktok;
