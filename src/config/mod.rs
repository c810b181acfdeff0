//! Config: the `gateway.yaml` file model, secret references, validation into an immutable runtime
//! model. `load_file` is the one way in; the result has been fully checked.

mod diagnostics;
pub mod file;
mod load;
pub mod runtime;
mod secret;
mod secret_ref;
pub mod units;
mod validate;

pub use diagnostics::{ConfigError, ConfigIssue, Issues};
pub use load::{load_file, load_str};
pub use runtime::*;
pub use secret::Secret;
pub use secret_ref::resolve_secret;
pub use validate::{is_loopback_http, parse_target};
