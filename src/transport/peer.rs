//! What a connection's TLS session says about the peer: the verified client certificate kept by
//! the listener's handshake callback, read by the mTLS authenticator and the admin gate.

/// The client certificate a connection presented (leaf, DER), verified by the listener's CA.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub der: Vec<u8>,
    pub tls_version: Option<&'static str>,
}

/// The verified client certificate of this connection, if it presented one.
pub fn peer_certificate(
    session: &pingora::protocols::http::ServerSession,
) -> Option<&PeerCertificate> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<PeerCertificate>()
}
