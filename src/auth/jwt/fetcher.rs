//! Fetching a JWKS document over HTTP(S), behind a small trait so tests can count fetches and
//! simulate outages. The HTTP fetcher uses rustls with the ring provider and the web PKI roots
//! (plus an optional private CA bundle), follows no redirects, and reads at most `max_bytes`.

use std::sync::Arc;

use async_trait::async_trait;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::settings::JwksUrlSettings;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    #[error("JWKS response larger than allowed")]
    TooLarge,
    #[error("JWKS fetch failed: {0}")]
    Transport(String),
    #[error("JWKS fetch timed out")]
    Timeout,
    #[error("JWKS client setup failed: {0}")]
    Setup(String),
}

/// Something that returns the current JWKS document bytes.
#[async_trait]
pub trait JwksFetcher: Send + Sync + 'static {
    async fn fetch(&self, max_bytes: usize) -> Result<Vec<u8>, FetchError>;
}

/// The real fetcher.
pub struct HttpJwksFetcher {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl std::fmt::Debug for HttpJwksFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpJwksFetcher")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl HttpJwksFetcher {
    pub fn new(settings: &JwksUrlSettings) -> Result<Self, FetchError> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|_| FetchError::Setup("invalid url".into()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &settings.extra_roots_pem {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|_| FetchError::Setup("cannot read extra_roots_pem".into()))?
                .collect::<Result<_, _>>()
                .map_err(|_| FetchError::Setup("bad PEM in extra_roots_pem".into()))?;
            if certs.is_empty() {
                return Err(FetchError::Setup(
                    "extra_roots_pem holds no certificate".into(),
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|_| FetchError::Setup("bad CA in extra_roots_pem".into()))?;
            }
        }
        // Our own provider, so no process-wide rustls default is needed (or disturbed).
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .no_proxy()
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                // Without the URL: it may carry a query string we should not log.
                FetchError::Transport(e.without_url().to_string())
            }
        };
        let mut resp = self
            .client
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        if resp.status() != http::StatusCode::OK {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|l| l > max_bytes as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
