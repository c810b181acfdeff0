//! Development certificates: a CA, a server certificate for localhost / 127.0.0.1, and a client
//! certificate for mTLS. For the demo and tests only; production certificates are mounted.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
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

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
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
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(sans)?;
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

/// Writes a dev CA, server and client certificates into `dir`.
pub fn generate(dir: &Path) -> Result<DevCerts, DevCertError> {
    std::fs::create_dir_all(dir).map_err(|e| DevCertError::Write {
        path: dir.display().to_string(),
        source: e,
    })?;
    let ca = new_ca("tiktok-gateway dev CA")?;
    let (server_cert, server_key) = leaf(
        &ca,
        "localhost",
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) = leaf(
        &ca,
        "order-service",
        vec!["order-service.internal".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let other = new_ca("unrelated CA")?;
    let (other_cert, other_key) = leaf(
        &other,
        "intruder",
        vec!["order-service.internal".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let out = DevCerts {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("gateway.crt"),
        server_key: dir.join("gateway.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        other_client_cert: dir.join("other-client.crt"),
        other_client_key: dir.join("other-client.key"),
    };
    let files = [
        (&out.ca_cert, ca.pem()),
        (&out.server_cert, server_cert),
        (&out.server_key, server_key),
        (&out.client_cert, client_cert),
        (&out.client_key, client_key),
        (&out.other_client_cert, other_cert),
        (&out.other_client_key, other_key),
    ];
    for (path, pem) in files {
        write_private(path, pem.as_bytes()).map_err(|e| DevCertError::Write {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    Ok(out)
}

/// Keys are written 0600; certificates too, harmlessly.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
