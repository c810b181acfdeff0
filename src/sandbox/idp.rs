//! A development identity provider for the demo and the tests: serves a JWKS at
//! `/.well-known/jwks.json` on 127.0.0.1 and mints tokens (ES256 and RS256, with keys generated
//! when the signer is created or rotated: no key is compiled into any binary).
//!
//! Tests steer it directly: mint any claims and headers (including deliberately bad ones),
//! rotate to a new key, drop a key, go down (503) and come back, and count JWKS fetches.
//! `POST /mint` offers minting over HTTP for the demo. Never use it outside local development:
//! it signs whatever it is asked to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::clock::SharedClock;

/// Default audience of minted tokens.
pub const DEV_AUDIENCE: &str = "tiktok-gateway";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DevAlg {
    #[default]
    ES256,
    RS256,
}

impl DevAlg {
    fn algorithm(self) -> Algorithm {
        match self {
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("key generation failed: {0}")]
    KeyGen(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("no current key for {0:?}")]
    NoKey(DevAlg),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What to put in a minted token. Unset fields get working defaults (subject `dev-user`, this
/// IdP's issuer, audience [`DEV_AUDIENCE`], five minutes of validity, ES256, current key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MintRequest {
    pub sub: Option<String>,
    /// Space-separated scopes (`scope` claim).
    pub scope: Option<String>,
    pub amr: Option<Vec<String>>,
    /// A string or an array; default [`DEV_AUDIENCE`].
    pub aud: Option<Value>,
    pub iss: Option<String>,
    /// Absolute `exp`; default now + `ttl_seconds` (default 300).
    pub exp: Option<i64>,
    pub ttl_seconds: Option<i64>,
    /// Leave `exp` out entirely.
    pub omit_exp: bool,
    pub nbf: Option<i64>,
    pub alg: DevAlg,
    /// Header `kid`: the named key signs if it exists; an unknown one is still written (and the
    /// current key signs), to produce tokens naming keys the IdP does not publish.
    pub kid: Option<String>,
    pub extra_claims: Map<String, Value>,
    pub extra_header: Map<String, Value>,
}

struct DevKey {
    kid: String,
    alg: DevAlg,
    encoding: EncodingKey,
    jwk: Value,
    /// SubjectPublicKeyInfo DER (RSA keys only), for tests that play an attacker holding it.
    public_der: Option<Vec<u8>>,
}

/// Keys and minting, without the HTTP server (benches and unit tests use it directly).
pub struct DevSigner {
    issuer: String,
    clock: SharedClock,
    keys: RwLock<Vec<DevKey>>,
    /// Kid of the newest key per algorithm (index 0: ES256, 1: RS256).
    current: RwLock<[Option<String>; 2]>,
    serial: AtomicU64,
}

fn slot(alg: DevAlg) -> usize {
    match alg {
        DevAlg::ES256 => 0,
        DevAlg::RS256 => 1,
    }
}

impl DevSigner {
    /// A signer with one ES256 and one RS256 key.
    pub fn new(issuer: impl Into<String>, clock: SharedClock) -> Result<Self, IdpError> {
        let s = Self {
            issuer: issuer.into(),
            clock,
            keys: RwLock::new(Vec::new()),
            current: RwLock::new([None, None]),
            serial: AtomicU64::new(0),
        };
        s.rotate(DevAlg::ES256)?;
        s.rotate(DevAlg::RS256)?;
        Ok(s)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Publishes a new key for `alg` and makes it the one that signs; returns its kid.
    /// Older keys stay published until dropped.
    pub fn rotate(&self, alg: DevAlg) -> Result<String, IdpError> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let (kid, encoding, mut jwk, public_der) = match alg {
            DevAlg::ES256 => {
                let pair =
                    rcgen::KeyPair::generate().map_err(|e| IdpError::KeyGen(e.to_string()))?;
                let point = pair.public_key_raw();
                if point.len() != 65 {
                    return Err(IdpError::KeyGen("unexpected EC point".into()));
                }
                let jwk = json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                });
                let key = EncodingKey::from_ec_der(&pair.serialize_der());
                (format!("es-{n}"), key, jwk, None)
            }
            DevAlg::RS256 => {
                let (key, public_der) = generate_rsa()?;
                let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)
                    .map_err(|e| IdpError::KeyGen(e.to_string()))?;
                let jwk = serde_json::to_value(jwk).map_err(|e| IdpError::KeyGen(e.to_string()))?;
                (format!("rsa-{n}"), key, jwk, Some(public_der))
            }
        };
        if let Value::Object(m) = &mut jwk {
            m.insert("kid".into(), Value::String(kid.clone()));
            m.insert("use".into(), Value::String("sig".into()));
            m.insert(
                "alg".into(),
                Value::String(format!("{:?}", alg.algorithm())),
            );
        }
        self.keys.write().push(DevKey {
            kid: kid.clone(),
            alg,
            encoding,
            jwk,
            public_der,
        });
        self.current.write()[slot(alg)] = Some(kid.clone());
        Ok(kid)
    }

    /// Stops publishing a key (tokens it signed stop verifying once the gateway refetches).
    /// If it was the current key for its algorithm, the newest remaining one takes over.
    pub fn drop_key(&self, kid: &str) -> bool {
        let mut keys = self.keys.write();
        let Some(pos) = keys.iter().position(|k| k.kid == kid) else {
            return false;
        };
        let removed = keys.remove(pos);
        let mut current = self.current.write();
        if current[slot(removed.alg)].as_deref() == Some(kid) {
            current[slot(removed.alg)] = keys
                .iter()
                .rev()
                .find(|k| k.alg == removed.alg)
                .map(|k| k.kid.clone());
        }
        true
    }

    /// Kid of the key currently signing for `alg`.
    pub fn current_kid(&self, alg: DevAlg) -> Option<String> {
        self.current.read()[slot(alg)].clone()
    }

    /// The public key of RSA key `kid` as a PEM `PUBLIC KEY` block: the form an attacker would
    /// try as an HMAC secret in an algorithm-confusion attack.
    pub fn rsa_public_key_pem(&self, kid: &str) -> Option<String> {
        let keys = self.keys.read();
        let der = keys.iter().find(|k| k.kid == kid)?.public_der.as_ref()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Some(pem)
    }

    /// The published JWKS document.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys.read().iter().map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys })
    }

    /// Mints a token as asked.
    pub fn mint(&self, req: &MintRequest) -> Result<String, IdpError> {
        let now = self.clock.unix_seconds();
        let mut claims = Map::new();
        claims.insert(
            "iss".into(),
            json!(req.iss.as_deref().unwrap_or(&self.issuer)),
        );
        claims.insert(
            "sub".into(),
            json!(req.sub.as_deref().unwrap_or("dev-user")),
        );
        claims.insert(
            "aud".into(),
            req.aud.clone().unwrap_or_else(|| json!(DEV_AUDIENCE)),
        );
        claims.insert("iat".into(), json!(now));
        if !req.omit_exp {
            let exp = req.exp.unwrap_or(now + req.ttl_seconds.unwrap_or(300));
            claims.insert("exp".into(), json!(exp));
        }
        if let Some(nbf) = req.nbf {
            claims.insert("nbf".into(), json!(nbf));
        }
        if let Some(scope) = &req.scope {
            claims.insert("scope".into(), json!(scope));
        }
        if let Some(amr) = &req.amr {
            claims.insert("amr".into(), json!(amr));
        }
        for (k, v) in &req.extra_claims {
            claims.insert(k.clone(), v.clone());
        }

        let keys = self.keys.read();
        let named = req
            .kid
            .as_deref()
            .and_then(|kid| keys.iter().find(|k| k.kid == kid && k.alg == req.alg));
        let key = match named {
            Some(k) => k,
            None => {
                let current = self.current_kid(req.alg).ok_or(IdpError::NoKey(req.alg))?;
                keys.iter()
                    .find(|k| k.kid == current)
                    .ok_or(IdpError::NoKey(req.alg))?
            }
        };
        let mut header = Map::new();
        header.insert("alg".into(), json!(format!("{:?}", req.alg.algorithm())));
        header.insert("typ".into(), json!("JWT"));
        header.insert("kid".into(), json!(req.kid.as_deref().unwrap_or(&key.kid)));
        for (k, v) in &req.extra_header {
            header.insert(k.clone(), v.clone());
        }
        sign_parts(
            &Value::Object(header),
            &Value::Object(claims),
            &key.encoding,
            req.alg.algorithm(),
        )
    }
}

/// A fresh RSA key from the operating system's RNG (aws-lc): the signing key and the public
/// key's SubjectPublicKeyInfo DER.
fn generate_rsa() -> Result<(EncodingKey, Vec<u8>), IdpError> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;

    // 2048 bits: the smallest size verifiers must accept, and the quickest to generate (every
    // signer and every rotation makes a fresh one).
    let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| IdpError::KeyGen(e.to_string()))?;
    let pkcs8: Pkcs8V1Der<'_> = key.as_der().map_err(|e| IdpError::KeyGen(e.to_string()))?;
    let public: PublicKeyX509Der<'_> = key
        .public_key()
        .as_der()
        .map_err(|e| IdpError::KeyGen(e.to_string()))?;
    // jsonwebtoken takes an RSA signing key as PKCS#1, which PEM-wrapped PKCS#8 unwraps to.
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let encoding =
        EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| IdpError::KeyGen(e.to_string()))?;
    Ok((encoding, public.as_ref().to_vec()))
}

/// `b64(header).b64(claims).sig` signed with `key`: also used by tests to forge tokens.
pub fn sign_parts(
    header: &Value,
    claims: &Value,
    key: &EncodingKey,
    alg: Algorithm,
) -> Result<String, IdpError> {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg)
        .map_err(|e| IdpError::Signing(e.to_string()))?;
    Ok(format!("{message}.{sig}"))
}

struct IdpState {
    signer: Arc<DevSigner>,
    down: AtomicBool,
    fetches: AtomicU64,
}

/// The dev IdP server on 127.0.0.1. Stops when dropped.
pub struct DevIdp {
    addr: SocketAddr,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl DevIdp {
    /// Binds 127.0.0.1 on a free port and serves until dropped. Needs a Tokio runtime.
    pub async fn start(clock: SharedClock) -> Result<Self, IdpError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let signer = Arc::new(DevSigner::new(format!("http://{addr}"), clock)?);
        let state = Arc::new(IdpState {
            signer,
            down: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/mint", post(mint))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "dev IdP stopped");
            }
        });
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, the `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        self.state.signer.issuer()
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn signer(&self) -> &Arc<DevSigner> {
        &self.state.signer
    }

    pub fn mint(&self, req: &MintRequest) -> Result<String, IdpError> {
        self.state.signer.mint(req)
    }

    pub fn rotate(&self, alg: DevAlg) -> Result<String, IdpError> {
        self.state.signer.rotate(alg)
    }

    pub fn drop_key(&self, kid: &str) -> bool {
        self.state.signer.drop_key(kid)
    }

    /// While down, the JWKS endpoint answers 503 (fetches are still counted).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// JWKS requests received so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(state.signer.jwks()).into_response()
}

async fn mint(State(state): State<Arc<IdpState>>, Json(req): Json<MintRequest>) -> Response {
    match state.signer.mint(&req) {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
