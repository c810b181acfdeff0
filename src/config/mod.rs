//! Config: the `gateway.yaml` file model, secret references, validation into an immutable runtime model.

mod secret;

pub use secret::Secret;
