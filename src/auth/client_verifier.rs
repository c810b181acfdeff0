//! The rustls client-certificate verifier for a TLS listener's `client_auth` setting.
//!
//! `none`: no verifier (no certificate requested). `optional`: a certificate is requested and,
//! if sent, must chain to the CA bundle; clients without one still connect (routes decide).
//! `required`: the handshake fails without a certificate from the CA bundle.
//! The ring provider is named explicitly, so no process-wide rustls default is needed.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    #[default]
    None,
    Optional,
    Required,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientVerifierError {
    #[error("client_auth {0:?} needs a client CA bundle")]
    MissingCa(ClientAuthMode),
    #[error("client CA bundle {path}: {why}")]
    BadCa { path: String, why: String },
    #[error("client verifier: {0}")]
    Build(String),
}

/// Builds the verifier for `mode` from a PEM CA bundle file.
pub fn build_client_verifier(
    mode: ClientAuthMode,
    ca_bundle: Option<&Path>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ClientVerifierError> {
    if mode == ClientAuthMode::None {
        return Ok(None);
    }
    let path = ca_bundle.ok_or(ClientVerifierError::MissingCa(mode))?;
    let bad = |why: String| ClientVerifierError::BadCa {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    build_client_verifier_from_pem(mode, &pem).map_err(|e| match e {
        ClientVerifierError::BadCa { why, .. } => bad(why),
        other => other,
    })
}

/// As [`build_client_verifier`], from PEM bytes (dev certificates generated in memory).
pub fn build_client_verifier_from_pem(
    mode: ClientAuthMode,
    ca_pem: &[u8],
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ClientVerifierError> {
    if mode == ClientAuthMode::None {
        return Ok(None);
    }
    let bad = |why: &str| ClientVerifierError::BadCa {
        path: "(inline)".into(),
        why: why.into(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| bad("invalid PEM"))?;
    if certs.is_empty() {
        return Err(bad("no certificate in bundle"));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|_| bad("certificate is not a usable CA"))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    );
    let builder = match mode {
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| ClientVerifierError::Build(e.to_string()))
}

/// A client verifier whose CA bundle can be replaced while the listener runs (certificate
/// rotation): handshakes started after [`RotatingClientVerifier::replace`] check against the new
/// bundle, those under way finish with the old one.
///
/// rustls asks for the CA names to hint to clients by reference, so each bundle's names are kept
/// for the life of the process (a few hundred bytes per rotation).
#[derive(Debug)]
pub struct RotatingClientVerifier {
    current: arc_swap::ArcSwap<Arc<dyn ClientCertVerifier>>,
    hints: arc_swap::ArcSwap<&'static [rustls::DistinguishedName]>,
    mandatory: bool,
}

impl RotatingClientVerifier {
    /// The verifier for `mode` from a PEM bundle; `None` when `mode` asks for no certificate.
    pub fn from_pem(
        mode: ClientAuthMode,
        ca_pem: &[u8],
    ) -> Result<Option<Arc<Self>>, ClientVerifierError> {
        let Some(inner) = build_client_verifier_from_pem(mode, ca_pem)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Self {
            hints: arc_swap::ArcSwap::from_pointee(leak_hints(&*inner)),
            mandatory: inner.client_auth_mandatory(),
            current: arc_swap::ArcSwap::from_pointee(inner),
        })))
    }

    /// Checks `ca_pem` and, if it makes a verifier for the same `mode`, puts it in place.
    pub fn replace(&self, mode: ClientAuthMode, ca_pem: &[u8]) -> Result<(), ClientVerifierError> {
        let Some(inner) = build_client_verifier_from_pem(mode, ca_pem)? else {
            return Err(ClientVerifierError::MissingCa(mode));
        };
        self.hints.store(Arc::new(leak_hints(&*inner)));
        self.current.store(Arc::new(inner));
        Ok(())
    }
}

fn leak_hints(v: &dyn ClientCertVerifier) -> &'static [rustls::DistinguishedName] {
    Box::leak(v.root_hint_subjects().to_vec().into_boxed_slice())
}

impl ClientCertVerifier for RotatingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        **self.hints.load()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::UnixTime;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, dns: &str) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(vec![dns.to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, dns);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    #[test]
    fn accepts_own_ca_and_refuses_another_ca() {
        let ours = ca("clients-ca");
        let theirs = ca("attacker-ca");
        let v = build_client_verifier_from_pem(ClientAuthMode::Required, ours.pem.as_bytes())
            .unwrap()
            .unwrap();
        let now = UnixTime::now();
        assert!(
            v.verify_client_cert(&leaf(&ours, "svc.internal"), &[], now)
                .is_ok()
        );
        assert!(
            v.verify_client_cert(&leaf(&theirs, "svc.internal"), &[], now)
                .is_err()
        );
        assert!(v.client_auth_mandatory());
    }

    #[test]
    fn a_replaced_bundle_applies_to_the_next_check() {
        let first = ca("first-ca");
        let second = ca("second-ca");
        let v = RotatingClientVerifier::from_pem(ClientAuthMode::Required, first.pem.as_bytes())
            .unwrap()
            .unwrap();
        let now = UnixTime::now();
        let names = |v: &RotatingClientVerifier| -> Vec<Vec<u8>> {
            v.root_hint_subjects()
                .iter()
                .map(|d| d.as_ref().to_vec())
                .collect()
        };
        let hints_before = names(&v);
        assert!(v.verify_client_cert(&leaf(&first, "a"), &[], now).is_ok());
        assert!(v.verify_client_cert(&leaf(&second, "a"), &[], now).is_err());
        assert!(v.replace(ClientAuthMode::Required, b"junk").is_err());
        assert!(
            v.verify_client_cert(&leaf(&first, "a"), &[], now).is_ok(),
            "a bad bundle changes nothing"
        );
        v.replace(ClientAuthMode::Required, second.pem.as_bytes())
            .unwrap();
        assert!(v.verify_client_cert(&leaf(&second, "a"), &[], now).is_ok());
        assert!(v.verify_client_cert(&leaf(&first, "a"), &[], now).is_err());
        assert_eq!(names(&v).len(), 1);
        assert_ne!(names(&v), hints_before, "the new CA's name is hinted");
        assert!(v.client_auth_mandatory());
    }

    #[test]
    fn modes() {
        let ours = ca("clients-ca");
        assert!(
            build_client_verifier_from_pem(ClientAuthMode::None, ours.pem.as_bytes())
                .unwrap()
                .is_none()
        );
        let optional =
            build_client_verifier_from_pem(ClientAuthMode::Optional, ours.pem.as_bytes())
                .unwrap()
                .unwrap();
        assert!(!optional.client_auth_mandatory());
        assert!(matches!(
            build_client_verifier(ClientAuthMode::Required, None),
            Err(ClientVerifierError::MissingCa(_))
        ));
        assert!(build_client_verifier_from_pem(ClientAuthMode::Required, b"junk").is_err());
        assert!(
            build_client_verifier(
                ClientAuthMode::Required,
                Some(Path::new("/nonexistent/ca.pem"))
            )
            .is_err()
        );
    }
}
