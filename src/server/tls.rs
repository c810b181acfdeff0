//! Listener TLS: certificates loaded and checked by us (Pingora's own loader panics on a bad
//! file), TLS 1.2 minimum with 1.3 enforceable, HTTP/2 by ALPN, the client certificate kept on
//! the connection for mTLS identities, and certificate, key and client-CA rotation without a
//! restart ([`TlsFiles`]).

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{TlsAccept, TlsAcceptCallbacks};
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::{ClientAuthMode, ClientVerifierError, RotatingClientVerifier};
use crate::config::{ListenerTls, TlsVersion};
use crate::transport::{PeerCertificate, install_crypto_provider};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Serves the listener's current certificate, refusing clients that cannot speak the configured
/// minimum version. The certificate can be replaced while the listener runs.
#[derive(Debug)]
struct CertResolver {
    key: ArcSwap<CertifiedKey>,
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
        Some(self.key.load_full())
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

/// A TLS listener's certificate, key and client-CA bundle, as files that can change while it
/// runs (cert-manager, a rotated secret mount): [`TlsFiles::reload`] re-reads them, checks them
/// and puts them in place for new handshakes; connections already open keep theirs. A new file
/// that does not parse, a key that does not match, a certificate that is expired or not yet
/// valid, or a CA bundle that makes no verifier is refused, and the old material stays.
pub struct TlsFiles {
    pub listener: String,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    mode: ClientAuthMode,
    resolver: Arc<CertResolver>,
    verifier: Option<Arc<RotatingClientVerifier>>,
    /// SHA-256 of the files' contents as last read (loaded or refused alike).
    seen: Mutex<[u8; 32]>,
}

/// What a [`TlsFiles::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The files are the ones in use.
    Unchanged,
    /// New material is in place.
    Applied,
}

impl TlsFiles {
    /// Whether the files' contents differ from what was last read.
    pub fn changed(&self) -> bool {
        self.digest() != *self.seen.lock()
    }

    /// Re-reads the files; with `force`, even when their contents look unchanged.
    pub fn reload(&self, force: bool) -> Result<Reloaded, TlsSetupError> {
        let digest = self.digest();
        {
            let mut seen = self.seen.lock();
            if !force && digest == *seen {
                return Ok(Reloaded::Unchanged);
            }
            // A refused file is not retried until it changes again.
            *seen = digest;
        }
        let key = load_certified_key(&self.cert, &self.key)?;
        check_validity(&self.cert, &key, unix_now())?;
        let ca = match (&self.verifier, &self.client_ca) {
            (Some(_), Some(path)) => {
                Some(std::fs::read(path).map_err(|e| TlsSetupError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?)
            }
            _ => None,
        };
        // Both checked before either is swapped: a half-applied rotation is never served.
        if let (Some(verifier), Some(pem), Some(path)) = (&self.verifier, &ca, &self.client_ca) {
            verifier
                .replace(self.mode, pem)
                .map_err(|e| TlsSetupError::Invalid {
                    path: path.display().to_string(),
                    reason: ca_reason(e),
                })?;
        }
        self.resolver.key.store(Arc::new(key));
        Ok(Reloaded::Applied)
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for path in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            // An unreadable file hashes as empty: the reload that follows names the error.
            h.update(std::fs::read(path).unwrap_or_default());
            h.update([0u8]);
        }
        h.finalize().into()
    }
}

/// What is wrong with a client-CA bundle (the caller names the file).
fn ca_reason(e: ClientVerifierError) -> String {
    match e {
        ClientVerifierError::BadCa { why, .. } => format!("client CA bundle: {why}"),
        other => other.to_string(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Refuses a leaf certificate that is not valid at `now`.
fn check_validity(path: &Path, key: &CertifiedKey, now: i64) -> Result<(), TlsSetupError> {
    let invalid = |reason: String| TlsSetupError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let leaf = key
        .cert
        .first()
        .ok_or_else(|| invalid("no certificate found".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid(format!("unreadable certificate: {e}")))?;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(invalid("the certificate is not valid yet".into()));
    }
    if now > validity.not_after.timestamp() {
        return Err(invalid("the certificate has expired".into()));
    }
    Ok(())
}

/// Builds Pingora's TLS settings for a listener, and the handle that rotates its material.
pub fn listener_settings(
    listener: &str,
    tls: &ListenerTls,
    mode: ClientAuthMode,
) -> Result<(TlsSettings, Arc<TlsFiles>), TlsSetupError> {
    install_crypto_provider();
    let seen = Mutex::new([0u8; 32]);
    let verifier = match (mode, &tls.client_ca) {
        (ClientAuthMode::None, _) => None,
        (_, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| TlsSetupError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            RotatingClientVerifier::from_pem(mode, &pem).map_err(|e| TlsSetupError::Invalid {
                path: path.display().to_string(),
                reason: ca_reason(e),
            })?
        }
        (_, None) => {
            return Err(TlsSetupError::Invalid {
                path: tls.cert.display().to_string(),
                reason: ClientVerifierError::MissingCa(mode).to_string(),
            });
        }
    };
    let key = load_certified_key(&tls.cert, &tls.key)?;
    let callbacks: TlsAcceptCallbacks = Box::new(KeepPeerCertificate);
    let mut settings =
        TlsSettings::with_callbacks(callbacks).map_err(|e| TlsSetupError::Invalid {
            path: tls.cert.display().to_string(),
            reason: e.to_string(),
        })?;
    let resolver = Arc::new(CertResolver {
        key: ArcSwap::from_pointee(key),
        tls13_only: tls.min_version == TlsVersion::V1_3,
    });
    settings.set_cert_resolver(resolver.clone());
    if let Some(verifier) = &verifier {
        settings.set_client_cert_verifier(verifier.clone());
    }
    if tls.http2 {
        settings.enable_h2();
    }
    let files = TlsFiles {
        listener: listener.to_owned(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        client_ca: tls.client_ca.clone(),
        mode,
        resolver,
        verifier,
        seen,
    };
    *files.seen.lock() = files.digest();
    Ok((settings, Arc::new(files)))
}
