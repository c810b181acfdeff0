//! Identities from TLS client certificates.
//!
//! The TLS listener has already verified the chain against the client CA (see
//! [`super::client_verifier`]); here the leaf's names become an identity: subject CN and SANs
//! (DNS, URI, email). Scopes are granted by configured rules matching one of those names
//! exactly (DNS names case-insensitively). By default a certificate no rule matches is refused:
//! being signed by the CA is not, alone, a grant.

use std::sync::Arc;

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

use super::error::AuthError;
use super::identity::{AuthMethod, Identity};
use super::scopes::{ScopeError, ScopeSet};

/// Identities remembered per certificate (a connection presents the same one on every request).
const CACHE_CAPACITY: usize = 1024;

/// Which certificate name a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    CommonName(String),
    Dns(String),
    Uri(String),
    Email(String),
}

#[derive(Debug, Clone)]
pub struct MtlsRule {
    pub matches: SubjectMatch,
    /// Scopes granted when the rule matches (rules that match add up).
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MtlsSettings {
    pub rules: Vec<MtlsRule>,
    /// Refuse certificates that match no rule (default true).
    pub require_rule_match: bool,
}

impl Default for MtlsSettings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            require_rule_match: true,
        }
    }
}

/// The names found in a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
}

impl CertNames {
    /// Parses a DER certificate's subject CN and SANs.
    pub fn from_der(der: &[u8]) -> Result<Self, AuthError> {
        let (rest, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| AuthError::BadClientCert)?;
        if !rest.is_empty() {
            return Err(AuthError::BadClientCert);
        }
        let mut names = CertNames {
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ..CertNames::default()
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|_| AuthError::BadClientCert)?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.dns.push((*d).to_owned()),
                    GeneralName::URI(u) => names.uris.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => names.emails.push((*e).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(names)
    }

    /// The name used as subject: URI SAN (e.g. SPIFFE id), else DNS SAN, else CN, else email.
    pub fn primary(&self) -> Option<&str> {
        self.uris
            .first()
            .or(self.dns.first())
            .or(self.common_name.as_ref())
            .or(self.emails.first())
            .map(String::as_str)
    }

    fn matches(&self, m: &SubjectMatch) -> bool {
        match m {
            SubjectMatch::CommonName(cn) => self.common_name.as_deref() == Some(cn.as_str()),
            SubjectMatch::Dns(d) => self.dns.iter().any(|x| x.eq_ignore_ascii_case(d)),
            SubjectMatch::Uri(u) => self.uris.iter().any(|x| x == u),
            SubjectMatch::Email(e) => self.emails.iter().any(|x| x == e),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtlsConfigError {
    #[error("mtls rule #{rule}: invalid scope #{index}")]
    BadScope { rule: usize, index: usize },
    #[error("mtls rule #{rule}: empty name")]
    EmptyName { rule: usize },
}

pub struct MtlsAuthenticator {
    rules: Box<[(SubjectMatch, ScopeSet)]>,
    require_rule_match: bool,
    cache: DashMap<[u8; 32], Arc<Identity>>,
}

impl std::fmt::Debug for MtlsAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsAuthenticator")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl MtlsAuthenticator {
    pub fn new(settings: &MtlsSettings) -> Result<Self, MtlsConfigError> {
        let mut rules = Vec::with_capacity(settings.rules.len());
        for (i, r) in settings.rules.iter().enumerate() {
            let name = match &r.matches {
                SubjectMatch::CommonName(n)
                | SubjectMatch::Dns(n)
                | SubjectMatch::Uri(n)
                | SubjectMatch::Email(n) => n,
            };
            if name.is_empty() {
                return Err(MtlsConfigError::EmptyName { rule: i });
            }
            let scopes = ScopeSet::from_config(&r.scopes).map_err(|e| match e {
                ScopeError::Invalid { index } => MtlsConfigError::BadScope { rule: i, index },
            })?;
            rules.push((r.matches.clone(), scopes));
        }
        Ok(Self {
            rules: rules.into_boxed_slice(),
            require_rule_match: settings.require_rule_match,
            cache: DashMap::new(),
        })
    }

    /// The identity for a verified leaf certificate (DER).
    pub fn identify(&self, der: &[u8]) -> Result<Arc<Identity>, AuthError> {
        let key: [u8; 32] = Sha256::digest(der).into();
        if let Some(id) = self.cache.get(&key) {
            return Ok(Arc::clone(&id));
        }
        let names = CertNames::from_der(der)?;
        let mut scopes = ScopeSet::default();
        let mut matched = false;
        for (m, s) in self.rules.iter() {
            if names.matches(m) {
                matched = true;
                scopes = scopes.union(s);
            }
        }
        if self.require_rule_match && !matched {
            return Err(AuthError::BadClientCert);
        }
        let subject = names.primary().ok_or(AuthError::BadClientCert)?;
        let identity = Arc::new(
            Identity::new(subject, AuthMethod::Mtls, scopes, Vec::new())
                .map_err(|_| AuthError::BadClientCert)?,
        );
        if self.cache.len() >= CACHE_CAPACITY {
            self.cache.clear();
        }
        self.cache.insert(key, Arc::clone(&identity));
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(cn: &str, sans: Vec<SanType>) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn auth() -> MtlsAuthenticator {
        MtlsAuthenticator::new(&MtlsSettings {
            rules: vec![
                MtlsRule {
                    matches: SubjectMatch::Dns("orders.internal".into()),
                    scopes: vec!["orders:read".into()],
                },
                MtlsRule {
                    matches: SubjectMatch::Uri("spiffe://corp/ops".into()),
                    scopes: vec!["admin".into()],
                },
                MtlsRule {
                    matches: SubjectMatch::CommonName("ops-laptop".into()),
                    scopes: vec!["orders:read".into()],
                },
            ],
            require_rule_match: true,
        })
        .unwrap()
    }

    #[test]
    fn names_and_scopes_from_sans_and_cn() {
        let der = cert(
            "ops-laptop",
            vec![
                SanType::DnsName("Orders.Internal".try_into().unwrap()),
                SanType::URI("spiffe://corp/ops".try_into().unwrap()),
                SanType::Rfc822Name("ops@corp.example".try_into().unwrap()),
            ],
        );
        let names = CertNames::from_der(&der).unwrap();
        assert_eq!(names.common_name.as_deref(), Some("ops-laptop"));
        assert_eq!(names.emails, ["ops@corp.example"]);
        let id = auth().identify(&der).unwrap();
        assert_eq!(id.subject(), "spiffe://corp/ops");
        assert_eq!(id.scopes().joined().as_ref(), "admin orders:read");
        assert_eq!(id.method_header(), "mtls");
    }

    #[test]
    fn unknown_certificate_and_garbage_are_refused() {
        let a = auth();
        let der = cert(
            "stranger",
            vec![SanType::DnsName("x.example".try_into().unwrap())],
        );
        assert_eq!(a.identify(&der).err(), Some(AuthError::BadClientCert));
        assert_eq!(
            a.identify(b"not a cert").err(),
            Some(AuthError::BadClientCert)
        );
        // Lenient mode gives an identity without scopes.
        let lenient = MtlsAuthenticator::new(&MtlsSettings {
            rules: vec![],
            require_rule_match: false,
        })
        .unwrap();
        let id = lenient.identify(&der).unwrap();
        assert_eq!(id.subject(), "x.example");
        assert!(id.scopes().is_empty());
    }
}
