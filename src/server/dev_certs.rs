//! Development certificates: a CA, a server certificate for localhost / 127.0.0.1, and a client
//! certificate for mTLS. For the demo and tests only; production certificates are mounted.
//!
//! Validity is short on purpose (CA one year, leaves 90 days, like public CAs issue): a dev
//! certificate copied somewhere it should not be expires by itself. Existing files are never
//! replaced unless the caller asks for it (`certs --force`), so an operator's CA is not lost to a
//! stray command.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long the dev CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(365);
/// How long the server and client certificates are valid.
pub const LEAF_VALIDITY: Duration = Duration::days(90);
/// Certificates start this long before "now", so a peer whose clock is a little behind accepts them.
const BACKDATE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to overwrite existing {}: pass --force to replace them (clients trusting the old CA will stop trusting the new certificates)",
        .0.join(", ")
    )]
    Exists(Vec<String>),
}

/// What to do when a file `generate_into` would write already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Write nothing and report every file that is in the way.
    Refuse,
    /// Replace the files.
    Replace,
}

/// Paths of what `generate` wrote.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A second, unrelated CA and a client certificate it signed (for "wrong CA" tests).
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

impl DevCerts {
    fn in_dir(dir: &Path) -> Self {
        DevCerts {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("gateway.crt"),
            server_key: dir.join("gateway.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_client_cert: dir.join("other-client.crt"),
            other_client_key: dir.join("other-client.key"),
        }
    }

    /// Every file, in the order they are written.
    pub fn files(&self) -> [&Path; 7] {
        [
            &self.ca_cert,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
            &self.other_client_cert,
            &self.other_client_key,
        ]
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

fn new_ca(
    name: &str,
    now: OffsetDateTime,
) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    validity(&mut params, now, CA_VALIDITY);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    now: OffsetDateTime,
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(sans)?;
    validity(&mut params, now, LEAF_VALIDITY);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a dev CA, server and client certificates into `dir`, refusing to replace existing files.
pub fn generate(dir: &Path) -> Result<DevCerts, DevCertError> {
    generate_into(dir, Overwrite::Refuse)
}

/// Writes the seven files of [`DevCerts`] into `dir`. With [`Overwrite::Refuse`], nothing is
/// written when any of them exists.
pub fn generate_into(dir: &Path, overwrite: Overwrite) -> Result<DevCerts, DevCertError> {
    let out = DevCerts::in_dir(dir);
    if overwrite == Overwrite::Refuse {
        let existing: Vec<String> = out
            .files()
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(DevCertError::Exists(existing));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| DevCertError::Write {
        path: dir.display().to_string(),
        source: e,
    })?;
    let now = OffsetDateTime::now_utc();
    let ca = new_ca("tiktok-gateway dev CA", now)?;
    let (server_cert, server_key) = leaf(
        &ca,
        "localhost",
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        now,
    )?;
    let (client_cert, client_key) = leaf(
        &ca,
        "order-service",
        vec!["order-service.internal".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        now,
    )?;
    let other = new_ca("unrelated CA", now)?;
    let (other_cert, other_key) = leaf(
        &other,
        "intruder",
        vec!["order-service.internal".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        now,
    )?;
    let contents = [
        ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        other_cert,
        other_key,
    ];
    for (path, pem) in out.files().into_iter().zip(contents) {
        write_private(path, pem.as_bytes(), overwrite).map_err(|e| DevCertError::Write {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    Ok(out)
}

/// Keys are written 0600; certificates too, harmlessly. Without `Replace`, a file that appeared
/// since the check is not replaced either (`create_new`).
fn write_private(path: &Path, data: &[u8], overwrite: Overwrite) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    match overwrite {
        Overwrite::Refuse => options.create_new(true),
        Overwrite::Replace => options.create(true).truncate(true),
    };
    let mut f = options.open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_a_year_for_the_ca_and_90_days_for_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let days = |path: &Path| {
            let pem = std::fs::read(path).unwrap();
            let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
            let cert = pem.parse_x509().unwrap();
            let v = cert.validity();
            assert!(v.not_before.timestamp() <= now);
            (v.not_after.timestamp() - now) / 86_400
        };
        assert!((364..=365).contains(&days(&certs.ca_cert)));
        assert!((89..=90).contains(&days(&certs.server_cert)));
        assert!((89..=90).contains(&days(&certs.client_cert)));
    }

    #[test]
    fn refuses_to_replace_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path()).unwrap();
        let ca_before = std::fs::read(&first.ca_cert).unwrap();
        std::fs::remove_file(&first.client_key).unwrap();
        match generate(dir.path()) {
            Err(DevCertError::Exists(files)) => assert_eq!(files.len(), 6, "{files:?}"),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(std::fs::read(&first.ca_cert).unwrap(), ca_before);
        assert!(!first.client_key.exists(), "nothing written on refusal");
        let again = generate_into(dir.path(), Overwrite::Replace).unwrap();
        assert_ne!(std::fs::read(&again.ca_cert).unwrap(), ca_before);
        assert!(again.files().iter().all(|p| p.exists()));
    }
}
