//! The one rustls crypto provider of the process.

/// Installs the one crypto provider the process uses (ring). Safe to call more than once; every
/// rustls client or server built before Pingora's listeners needs it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
