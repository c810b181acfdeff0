//! The fleet backend: GCRA on Redis, one atomic Lua script (`gcra.lua`) per decision, so every
//! gateway replica shares each limit and there is no read-then-write race between them.
//!
//! A small pool of `ConnectionManager`s (multiplexed connections that reconnect by themselves),
//! used in turn, so one broken or slow connection does not hold up every decision; every
//! decision is bounded by a short timeout so a slow or absent Redis costs a request at most
//! that long, and the facade then falls back (see `fallback.rs`).
//!
//! Keys are `<prefix>:<route>:<limit>:<hash>`, where `<hash>` is 128 bits of HMAC-SHA256 of the
//! key value under `key_secret`, shared by the fleet. Without that secret it is a plain SHA-256,
//! which hides nothing from someone who can read the Redis: the 2^32 IPv4 addresses are quickly
//! tried. The gateway says so at start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};
use sha2::{Digest, Sha256};

use super::decision::Verdict;
use crate::config::Secret;

/// How the fleet backend is reached and how it may fail.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS); a secret because it
    /// may carry a password.
    pub url: Secret,
    /// Prefix of every key this gateway writes, to share one Redis with other uses.
    pub key_prefix: String,
    /// Upper bound on one decision, connection included (default 100 ms).
    pub timeout: Duration,
    /// Upper bound on establishing a connection (default 250 ms).
    pub connect_timeout: Duration,
    /// After a failure, how long to decide without Redis before trying it again (default 1 s).
    pub retry_interval: Duration,
    /// Connections to Redis, used in turn (default 4; each one pipelines many decisions).
    pub pool_size: usize,
    /// What to do while Redis is failing (default: the local limiter).
    pub on_backend_error: super::fallback::OnBackendError,
    /// Key of the HMAC that names each bucket; the same on every gateway of the fleet.
    pub key_secret: Option<Secret>,
}

impl RedisSettings {
    /// The defaults above for one URL.
    pub fn new(url: Secret) -> Self {
        Self {
            url,
            key_prefix: "tgw:rl".to_owned(),
            timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(250),
            retry_interval: Duration::from_secs(1),
            pool_size: 4,
            on_backend_error: super::fallback::OnBackendError::Local,
            key_secret: None,
        }
    }
}

/// Why one Redis decision failed. Carries no URL, key or reply text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisLimitError {
    #[error("rate-limit backend timed out")]
    Timeout,
    #[error("rate-limit backend unreachable or failing ({0})")]
    Backend(&'static str),
    #[error("rate-limit script returned an unexpected reply")]
    BadReply,
}

impl From<redis::RedisError> for RedisLimitError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            RedisLimitError::Timeout
        } else if e.is_connection_refusal() {
            RedisLimitError::Backend("connection refused")
        } else if e.is_connection_dropped() {
            RedisLimitError::Backend("connection dropped")
        } else if e.is_io_error() {
            RedisLimitError::Backend("i/o error")
        } else {
            RedisLimitError::Backend("server error")
        }
    }
}

/// The script and the connection; cheap to share.
pub(crate) struct RedisBackend {
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    script: Script,
    timeout: Duration,
    /// Keyed once; cloned per decision.
    key_mac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the Redis backend could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisSetupError {
    #[error("rate_limits.url is not a valid redis:// or rediss:// URL")]
    BadUrl,
    #[error("the Redis rate-limit backend must be built inside a tokio runtime")]
    NoRuntime,
    #[error("rate_limits.key_secret cannot key an HMAC")]
    BadKeySecret,
}

impl RedisBackend {
    /// Builds the client without connecting: the first decision connects, and a Redis that is
    /// down at start-up only means the fallback applies until it is up.
    pub(crate) fn new(settings: &RedisSettings) -> Result<Self, RedisSetupError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisSetupError::NoRuntime);
        }
        // The error would echo the URL (and its password): report only that it is invalid.
        let client = Client::open(settings.url.expose()).map_err(|_| RedisSetupError::BadUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let pool = (0..settings.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| RedisSetupError::BadUrl)?;
        let key_mac = match &settings.key_secret {
            Some(secret) => Some(
                Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                    .map_err(|_| RedisSetupError::BadKeySecret)?,
            ),
            None => {
                tracing::warn!(
                    "rate_limits.key_secret is not set: Redis bucket names are unkeyed hashes, from \
                     which callers' addresses and ids can be recovered by anyone who reads that Redis"
                );
                None
            }
        };
        Ok(Self {
            key_mac,
            pool,
            next: AtomicUsize::new(0),
            script: Script::new(include_str!("gcra.lua")),
            timeout: settings.timeout,
        })
    }

    /// One GCRA decision for `key` (already namespaced by [`redis_key`]).
    pub(crate) async fn check(
        &self,
        key: &str,
        emission_us: u64,
        burst: u32,
    ) -> Result<Verdict, RedisLimitError> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut conn = self.pool[turn].clone();
        let mut invocation = self.script.key(key);
        invocation.arg(emission_us).arg(burst);
        let attempt = async {
            match invocation.invoke_async::<Value>(&mut conn).await {
                // A connection broken while Redis was away fails once more after Redis is back;
                // the manager has started reconnecting on that error, so one more try (within
                // the same timeout) uses the new connection instead of waiting for the next probe.
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    invocation.invoke_async::<Value>(&mut conn).await
                }
                other => other,
            }
        };
        let reply: Value = tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| RedisLimitError::Timeout)??;
        parse_reply(&reply)
    }
}

fn parse_reply(reply: &Value) -> Result<Verdict, RedisLimitError> {
    let Value::Array(items) = reply else {
        return Err(RedisLimitError::BadReply);
    };
    let int = |i: usize| match items.get(i) {
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as u64),
        _ => Err(RedisLimitError::BadReply),
    };
    let allowed = int(0)? == 1;
    let remaining = u32::try_from(int(1)?).map_err(|_| RedisLimitError::BadReply)?;
    Ok(Verdict {
        allowed,
        remaining,
        reset: Duration::from_micros(int(2)?),
        retry_after: Duration::from_micros(int(3)?),
    })
}

impl RedisBackend {
    /// The bucket for `key` in `namespace`, under this fleet's key secret if it has one.
    pub(crate) fn key(&self, namespace: &str, key: &[u8]) -> String {
        redis_key(self.key_mac.as_ref(), namespace, key)
    }
}

/// `<namespace><hash>`, where the namespace is `<prefix>:<route>:<limit>:`.
fn redis_key(mac: Option<&Hmac<Sha256>>, namespace: &str, key: &[u8]) -> String {
    let mut hash = [0u8; 32];
    match mac {
        Some(mac) => {
            let mut mac = mac.clone();
            mac.update(key);
            hash.copy_from_slice(&mac.finalize().into_bytes());
        }
        None => hash.copy_from_slice(&Sha256::digest(key)),
    }
    let mut out = String::with_capacity(namespace.len() + 32);
    out.push_str(namespace);
    out.push_str(&hex::encode(&hash[..16]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_hide_the_value() {
        let k = redis_key(None, "tgw:rl:orders:caller:", b"alice@example.com");
        assert!(k.starts_with("tgw:rl:orders:caller:"));
        assert_eq!(k.len(), "tgw:rl:orders:caller:".len() + 32);
        assert!(!k.contains("alice"));
        assert_ne!(k, redis_key(None, "tgw:rl:orders:caller:", b"bob"));
        assert_eq!(
            k,
            redis_key(None, "tgw:rl:orders:caller:", b"alice@example.com")
        );
    }

    #[test]
    fn keyed_names_need_the_fleet_secret() {
        let mac = |s: &[u8]| Hmac::<Sha256>::new_from_slice(s).unwrap();
        let (a, b) = (mac(b"fleet-secret"), mac(b"other-secret"));
        let ns = "tgw:rl:orders:ip:";
        let ip = b"198.51.100.23";
        let keyed = redis_key(Some(&a), ns, ip);
        // Stable across gateways sharing the secret, and not the unkeyed hash anyone can compute.
        assert_eq!(keyed, redis_key(Some(&mac(b"fleet-secret")), ns, ip));
        assert_ne!(keyed, redis_key(None, ns, ip));
        assert_ne!(keyed, redis_key(Some(&b), ns, ip));
        assert_eq!(keyed.len(), ns.len() + 32);
    }

    #[test]
    fn parses_script_replies_and_refuses_garbage() {
        let ok = Value::Array(vec![
            Value::Int(1),
            Value::Int(4),
            Value::Int(200_000),
            Value::Int(0),
        ]);
        let v = parse_reply(&ok).unwrap();
        assert!(v.allowed);
        assert_eq!(v.remaining, 4);
        assert_eq!(v.reset, Duration::from_millis(200));
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(-1),
                Value::Int(0),
                Value::Int(0),
            ]),
        ] {
            assert_eq!(parse_reply(&bad), Err(RedisLimitError::BadReply));
        }
    }

    #[test]
    fn setup_needs_a_runtime_and_a_valid_url() {
        let s = RedisSettings::new(Secret::new("redis://127.0.0.1:1"));
        assert_eq!(
            RedisBackend::new(&s).err(),
            Some(RedisSetupError::NoRuntime)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let bad = RedisSettings::new(Secret::new("http://user:hunter2@host"));
            let err = RedisBackend::new(&bad).err().unwrap();
            assert_eq!(err, RedisSetupError::BadUrl);
            assert!(!err.to_string().contains("hunter2"));
            assert!(RedisBackend::new(&s).is_ok());
        });
    }
}
