//! Request inspection: path normalisation, header/framing checks, body and JSON limits (policy §3, §8).
//!
//! Pure, allocation-free checks the pipeline calls in this order:
//! 1. before routing: [`check_raw_head`] (HTTP/1 only), [`normalize_path`],
//!    [`HostAllowList::check`];
//! 2. after routing: [`InspectionSettings::check_head`], then per body chunk
//!    [`BodyWatch::on_chunk`] and on the complete body [`check_json`] for JSON routes;
//! 3. on the upstream request: [`strip_hop_by_hop`], then [`forwarded::apply`].
//!
//! Every refusal is an [`InspectError`] carrying its HTTP status and a stable code.
//! Connection-level guards (caps, the request-head deadline) live in `crate::transport`.

pub mod body;
pub mod chunk_lines;
pub mod content_type;
pub mod error;
pub mod forwarded;
pub mod framing;
pub mod headers;
pub mod hop_by_hop;
pub mod host;
pub mod json;
pub mod limits;
pub mod method;
pub mod path;
pub mod target;
pub mod uri;

pub use body::{BodyRate, BodyWatch, check_declared_length};
pub use chunk_lines::ChunkLines;
pub use content_type::{ContentTypeAllowList, ContentTypeError};
pub use error::InspectError;
pub use forwarded::{ForwardedStyle, Hop};
pub use framing::{BodyFraming, FramingError, check_framing, check_raw_head};
pub use headers::check_header_limits;
pub use hop_by_hop::{check_connection_header, strip_hop_by_hop};
pub use host::{HostAllowList, HostError};
pub use json::{JsonError, check_json};
pub use limits::{
    HeadVerdict, InspectionSettings, RequestLimits, SettingsError, SlowClientSettings,
};
pub use method::MethodAllowList;
pub use path::{PathError, PathRules, normalize_path, normalize_path_with};
pub use target::{TargetError, TargetForm, check_request_target};
pub use uri::check_uri_limits;
