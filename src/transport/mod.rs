//! Connection-level guards, below any request: connection caps (global and per client IP), the
//! deadline on each HTTP/1 request head, strict chunk lines of HTTP/1 request bodies,
//! slow-client timeouts for the non-proxy apps, and what a connection's TLS session says about
//! the peer, the wait on idle HTTP/1 keep-alive connections (outside Pingora, so an idle
//! connection holds no request state), gathering a response's writes into one TLS record, and
//! giving memory back after a spike of connections. `server/` wires them around every
//! listener; `pipeline/` only tells them where a request head and a request end.

pub mod capped_app;
pub mod chunk_watch;
pub mod connection_limit;
pub mod crypto;
pub mod head_deadline;
pub mod keepalive;
pub mod memory_return;
pub mod peer;
pub mod timed_serve;
pub mod write_coalesce;

pub use capped_app::ConnectionCapped;
pub use connection_limit::{
    ConnectionGuard, ConnectionLimiter, ConnectionLimits, ConnectionRefused,
};
pub use crypto::install_crypto_provider;
pub use head_deadline::{HeadDeadline, HeadTimedStream};
pub use memory_return::MemoryReturn;
pub use peer::{PeerCertificate, peer_certificate};
pub use timed_serve::TimedServe;
