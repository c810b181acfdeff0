//! Webhook replay cache: TikTok retries a webhook it got no timely 200 for (2 min, 30 min, 3 h,
//! 12 h later), so the gateway dedupes on `tts_notification_id` (fallback: SHA-256 of the body)
//! for at least 48 h; the default is 72 h.
//!
//! Order of operations in the pipeline, so that a crash can never drop an event that was marked
//! seen:
//!
//! 1. verify TikTok's signature;
//! 2. `queue.enqueue_held(event)`: the event is on disk, not yet visible to the delivery worker;
//! 3. `cache.first_seen(key, ttl)`:
//!    - `Ok(true)`: `held.release()` and answer 200;
//!    - `Ok(false)` (a duplicate): `held.discard()` and answer 200;
//!    - `Err(_)` (Redis down): the pipeline decides; releasing and answering 200 delivers a
//!      possible duplicate (receivers dedupe), which is better than losing an event.
//!
//! Marking before the event is durable would open a window where a crash leaves the key marked
//! and the event nowhere: TikTok's retry would then be acknowledged as a duplicate and the event
//! lost for good. With this order the worst a crash does is deliver an event twice, and the
//! receiver dedupes on `x-gateway-event-id` / `tts_notification_id`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use thiserror::Error;
use tokio::time::Instant;

/// How long a webhook key is remembered unless configured otherwise (TikTok retries for ~15.5 h).
pub const DEFAULT_TTL: Duration = Duration::from_secs(72 * 3600);
/// Entries kept by the in-memory cache unless configured otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;
/// Longest key accepted; notification ids and hex digests are far shorter.
pub const MAX_KEY_LEN: usize = 256;

/// The cache could not answer. The pipeline decides what to do; the cache never guesses "new".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReplayError {
    #[error("replay cache: key is empty or longer than {MAX_KEY_LEN} bytes")]
    BadKey,
    #[error("replay cache: redis unavailable ({0})")]
    Backend(String),
    #[error("replay cache: redis did not answer in time")]
    Timeout,
}

/// Remembers which webhook keys were already accepted.
#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// Atomically records `key` for `ttl`; `Ok(true)` if it was not already recorded.
    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, ReplayError>;
}

fn check_key(key: &str) -> Result<(), ReplayError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ReplayError::BadKey);
    }
    Ok(())
}

/// In-process cache: bounded and expiring. When full of unexpired keys it forgets the oldest
/// insertion first (with one TTL for all keys that is also the one closest to expiry), so memory
/// stays bounded under a flood; size `max_entries` above the expected webhooks per TTL.
pub struct MemoryReplayCache {
    max_entries: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    expiry: HashMap<Box<str>, Instant>,
    /// Insertion order, for expiry and eviction. May hold stale pairs for keys re-inserted after
    /// expiring; those are skipped by comparing with `expiry`.
    order: VecDeque<(Instant, Box<str>)>,
}

impl MemoryReplayCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, key: &str, ttl: Duration, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        if let Some(expires) = inner.expiry.get(key)
            && *expires > now
        {
            return false;
        }
        // Drop expired entries from the front, then evict while still full.
        while let Some((expires, _)) = inner.order.front() {
            let expired = *expires <= now;
            if !expired && inner.expiry.len() < self.max_entries {
                break;
            }
            if let Some((expires, old)) = inner.order.pop_front()
                && inner.expiry.get(&old) == Some(&expires)
            {
                inner.expiry.remove(&old);
            }
        }
        let expires = now + ttl;
        let key: Box<str> = key.into();
        inner.expiry.insert(key.clone(), expires);
        inner.order.push_back((expires, key));
        true
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, ReplayError> {
        check_key(key)?;
        Ok(self.record(key, ttl, Instant::now()))
    }
}

/// Settings for the Redis cache, shared by a fleet of gateways.
#[derive(Clone)]
pub struct RedisReplaySettings {
    /// `redis://` or `rediss://` URL (may hold a password: never printed).
    pub url: crate::config::Secret,
    /// Prepended to every key, e.g. `tiktok-gateway:webhook-seen:`.
    pub namespace: String,
    /// Bound on each command, so a stuck Redis cannot hold TikTok past its 3 s deadline.
    pub command_timeout: Duration,
}

impl RedisReplaySettings {
    pub fn new(url: crate::config::Secret) -> Self {
        Self {
            url,
            namespace: "tiktok-gateway:webhook-seen:".into(),
            command_timeout: Duration::from_millis(500),
        }
    }
}

/// `SET <namespace><key> 1 NX PX <ttl>`: atomic across gateways.
pub struct RedisReplayCache {
    conn: redis::aio::ConnectionManager,
    namespace: String,
    command_timeout: Duration,
}

impl RedisReplayCache {
    /// Connects (bounded by the command timeout). Errors never include the URL.
    pub async fn connect(settings: &RedisReplaySettings) -> Result<Self, ReplayError> {
        let client = redis::Client::open(settings.url.expose())
            .map_err(|e| ReplayError::Backend(redis_kind(&e)))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.command_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            settings.command_timeout * 2,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| ReplayError::Timeout)?
        .map_err(|e| ReplayError::Backend(redis_kind(&e)))?;
        Ok(Self {
            conn,
            namespace: settings.namespace.clone(),
            command_timeout: settings.command_timeout,
        })
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, ReplayError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        let ttl_ms = ttl.as_millis().clamp(1, i64::MAX as u128) as i64;
        let mut full_key = String::with_capacity(self.namespace.len() + key.len());
        full_key.push_str(&self.namespace);
        full_key.push_str(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(full_key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        let set = cmd.query_async::<Option<String>>(&mut conn);
        let reply = tokio::time::timeout(self.command_timeout, set)
            .await
            .map_err(|_| ReplayError::Timeout)?
            .map_err(|e| ReplayError::Backend(redis_kind(&e)))?;
        // `OK` when set, nil when the key already existed.
        Ok(reply.is_some())
    }
}

/// A description of a Redis failure without its detail text, which can echo the URL.
fn redis_kind(e: &redis::RedisError) -> String {
    format!("{:?}", e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_cache_remembers_until_the_ttl() {
        let cache = MemoryReplayCache::default();
        let ttl = Duration::from_secs(72 * 3600);
        assert_eq!(cache.first_seen("7380066284010030890", ttl).await, Ok(true));
        assert_eq!(
            cache.first_seen("7380066284010030890", ttl).await,
            Ok(false)
        );
        assert_eq!(cache.first_seen("other", ttl).await, Ok(true));
        // TikTok's last retry comes ~15.5 h later: still a duplicate.
        tokio::time::advance(Duration::from_secs(16 * 3600)).await;
        assert_eq!(
            cache.first_seen("7380066284010030890", ttl).await,
            Ok(false)
        );
        tokio::time::advance(Duration::from_secs(56 * 3600)).await;
        assert_eq!(cache.first_seen("7380066284010030890", ttl).await, Ok(true));
        assert_eq!(
            cache.first_seen("7380066284010030890", ttl).await,
            Ok(false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn memory_cache_stays_bounded_and_drops_expired_entries() {
        let cache = MemoryReplayCache::new(3);
        let ttl = Duration::from_secs(60);
        for k in ["a", "b", "c", "d"] {
            assert_eq!(cache.first_seen(k, ttl).await, Ok(true));
        }
        assert_eq!(cache.len(), 3);
        // The oldest was forgotten, the newer ones are still remembered.
        assert_eq!(cache.first_seen("d", ttl).await, Ok(false));
        assert_eq!(cache.first_seen("c", ttl).await, Ok(false));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.first_seen("e", ttl).await, Ok(true));
        assert_eq!(cache.len(), 1);
        // A key re-inserted after expiry is not removed by its stale queue entry.
        let cache = MemoryReplayCache::new(10);
        assert_eq!(cache.first_seen("k", ttl).await, Ok(true));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.first_seen("k", ttl).await, Ok(true));
        assert_eq!(cache.first_seen("x", ttl).await, Ok(true));
        assert_eq!(cache.first_seen("k", ttl).await, Ok(false));
    }

    #[tokio::test]
    async fn refuses_empty_and_oversized_keys() {
        let cache = MemoryReplayCache::default();
        assert_eq!(
            cache.first_seen("", DEFAULT_TTL).await,
            Err(ReplayError::BadKey)
        );
        let long = "x".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            cache.first_seen(&long, DEFAULT_TTL).await,
            Err(ReplayError::BadKey)
        );
    }

    fn redis_url() -> Option<String> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("skipping: REDIS_URL is not set");
                None
            }
        }
    }

    #[tokio::test]
    async fn redis_cache_is_set_once_with_a_ttl() {
        let Some(url) = redis_url() else { return };
        let mut settings = RedisReplaySettings::new(crate::config::Secret::new(url));
        settings.namespace = format!("ttg-test-{}:", rand::random::<u64>());
        let cache = RedisReplayCache::connect(&settings).await.unwrap();
        let other = RedisReplayCache::connect(&settings).await.unwrap();
        let ttl = Duration::from_millis(300);
        assert_eq!(cache.first_seen("n1", ttl).await, Ok(true));
        // A second gateway sharing the Redis sees it too.
        assert_eq!(other.first_seen("n1", ttl).await, Ok(false));
        assert_eq!(cache.first_seen("n2", ttl).await, Ok(true));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(cache.first_seen("n1", ttl).await, Ok(true));
        // The key lives under the namespace.
        let client = redis::Client::open(settings.url.expose()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("{}n1", settings.namespace))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists);
    }

    #[tokio::test]
    async fn redis_failure_is_an_error_not_a_new_key() {
        // Nothing listens on this port: the cache must say so, not answer "first seen".
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut settings = RedisReplaySettings::new(crate::config::Secret::new(format!(
            "redis://:hunter2@{addr}/0"
        )));
        settings.command_timeout = Duration::from_millis(200);
        let err = match RedisReplayCache::connect(&settings).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(e) => e,
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
