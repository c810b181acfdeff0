//! Config: the `gateway.yaml` file model, secret references, validation into an immutable runtime
//! model. `load_file` is the one way in; the result has been fully checked.
//!
//! Loading runs in stages, each reporting every problem it finds: `yaml_tree` (syntax, explained
//! by `syntax`), `shape` (keys and types against the JSON Schema), then deserialization and
//! `validate` (values, references, `shadowing` and `no_effect` warnings). `report` renders the
//! issues with their positions.

mod diagnostics;
pub mod file;
mod load;
mod no_effect;
pub mod report;
pub mod runtime;
mod secret;
mod secret_ref;
mod shadowing;
mod shape;
mod syntax;
pub mod units;
mod validate;
mod yaml_tree;

pub use diagnostics::{ConfigError, ConfigIssue, Issues, Severity};
pub use load::{load_file, load_str, read_text};
pub use runtime::*;
pub use secret::Secret;
pub use secret_ref::resolve_secret;
pub use validate::{is_loopback_http, parse_target};
