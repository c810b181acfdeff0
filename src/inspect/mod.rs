//! Request inspection: path normalisation, header/framing checks, body and JSON limits (policy §3, §8).
//!
//! Pure, allocation-free checks the pipeline calls in this order:
//! 1. before routing: [`check_raw_head`] (HTTP/1 only), [`normalize_path`],
//!    [`HostAllowList::check`];
//! 2. after routing: [`InspectionSettings::check_head`], then per body chunk
//!    [`BodyWatch::on_chunk`] and on the complete body [`check_json`] for JSON routes;
//! 3. on the upstream request: [`strip_hop_by_hop`].
//!
//! Every refusal is an [`InspectError`] carrying its HTTP status and a stable code.
//! Connection caps live in [`ConnectionLimiter`] and the [`ConnectionCapped`] app wrapper, which
//! also puts a deadline on each request head ([`HeadTimedStream`]).

pub mod body;
pub mod capped_app;
pub mod connection_limit;
pub mod content_type;
pub mod error;
pub mod framing;
pub mod head_deadline;
pub mod headers;
pub mod hop_by_hop;
pub mod host;
pub mod json;
pub mod limits;
pub mod method;
pub mod path;
pub mod timed_serve;
pub mod uri;

pub use body::{BodyRate, BodyWatch, check_declared_length};
pub use capped_app::ConnectionCapped;
pub use connection_limit::{
    ConnectionGuard, ConnectionLimiter, ConnectionLimits, ConnectionRefused,
};
pub use content_type::{ContentTypeAllowList, ContentTypeError};
pub use error::InspectError;
pub use framing::{BodyFraming, FramingError, check_framing, check_raw_head};
pub use head_deadline::HeadTimedStream;
pub use headers::check_header_limits;
pub use hop_by_hop::{check_connection_header, strip_hop_by_hop};
pub use host::{HostAllowList, HostError};
pub use json::{JsonError, check_json};
pub use limits::{
    HeadVerdict, InspectionSettings, RequestLimits, SettingsError, SlowClientSettings,
};
pub use method::MethodAllowList;
pub use path::{PathError, PathRules, normalize_path, normalize_path_with};
pub use timed_serve::TimedServe;
pub use uri::check_uri_limits;
