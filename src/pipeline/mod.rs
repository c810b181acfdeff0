//! The request pipeline: one ordered stage list (`stages.rs`) that every route kind runs, the
//! stages themselves, the kind handlers that end a request (`kinds/`), and the Pingora `ProxyHttp`
//! glue (`proxy.rs`). Stages read only the compiled snapshot (`crate::gateway`): no name is looked
//! up per request.

pub mod answer;
pub mod auth_stage;
pub mod body;
pub mod ctx;
pub mod inspect_stage;
pub mod kinds;
pub mod limit_stage;
pub mod linger;
pub mod log_fields;
pub mod privacy_stage;
pub mod proxy;
pub mod stages;
