//! Listener TLS: certificates loaded and checked by us (Pingora's own loader panics on a bad
//! file), TLS 1.2 minimum with 1.3 enforceable, HTTP/2 by ALPN, and the client certificate kept on
//! the connection for mTLS identities.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{TlsAccept, TlsAcceptCallbacks};
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ListenerTls, TlsVersion};
use crate::transport::{PeerCertificate, install_crypto_provider};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Serves one certificate, refusing clients that cannot speak the configured minimum version.
#[derive(Debug)]
struct CertResolver {
    key: Arc<CertifiedKey>,
    tls13_only: bool,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.tls13_only {
            // rustls negotiates the highest shared version; a client offering no TLS 1.3 cipher
            // suite cannot reach 1.3, so it gets no certificate and the handshake fails.
            let offers_13 = hello.cipher_suites().iter().any(|s| {
                matches!(
                    s,
                    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                        | rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
                        | rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                )
            });
            if !offers_13 {
                return None;
            }
        }
        Some(self.key.clone())
    }
}

/// Keeps the verified client certificate on the connection's TLS digest.
struct KeepPeerCertificate;

#[async_trait]
impl TlsAccept for KeepPeerCertificate {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        Some(Arc::new(PeerCertificate {
            der: der.to_vec(),
            tls_version: tls.version(),
        }))
    }
}

/// Loads a certificate chain and key into a rustls signing key.
pub fn load_certified_key(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<CertifiedKey, TlsSetupError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| TlsSetupError::Read {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    };
    let invalid = |p: &std::path::Path, reason: String| TlsSetupError::Invalid {
        path: p.display().to_string(),
        reason,
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no certificate found".into()));
    }
    let key_pem = read(key)?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| invalid(key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| invalid(key, format!("key does not match certificate: {e}")))?;
    Ok(certified)
}

/// Builds Pingora's TLS settings for a listener.
pub fn listener_settings(
    tls: &ListenerTls,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<TlsSettings, TlsSetupError> {
    install_crypto_provider();
    let key = load_certified_key(&tls.cert, &tls.key)?;
    let callbacks: TlsAcceptCallbacks = Box::new(KeepPeerCertificate);
    let mut settings =
        TlsSettings::with_callbacks(callbacks).map_err(|e| TlsSetupError::Invalid {
            path: tls.cert.display().to_string(),
            reason: e.to_string(),
        })?;
    settings.set_cert_resolver(Arc::new(CertResolver {
        key: Arc::new(key),
        tls13_only: tls.min_version == TlsVersion::V1_3,
    }));
    if let Some(verifier) = client_verifier {
        settings.set_client_cert_verifier(verifier);
    }
    if tls.http2 {
        settings.enable_h2();
    }
    Ok(settings)
}
