//! The key store of one issuer: the current key set behind an `ArcSwap` (lock-free reads on the
//! request path) and, for a JWKS URL, the rules for fetching it again.
//!
//! Fetches happen (a) periodically, from [`super::JwksRefresher`], and (b) from requests: when a
//! token names an unknown `kid` or the keys have gone stale. Request-triggered fetches are
//! single-flight and at most one per `unknown_kid_cooldown`, so a flood of tokens with random
//! `kid`s costs the IdP one request per cooldown. When fetches fail, the last good keys stay in
//! use until `stale_if_error` has passed since the last success; after that every token is
//! refused until a fetch succeeds again (fail closed).
//!
//! Times come from the injected [`Clock`](crate::clock::Clock) in whole seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;

use super::fetcher::{FetchError, HttpJwksFetcher, JwksFetcher};
use super::keys::{JwksError, KeySet, VerifyingKey, parse_jwks};
use super::settings::{JwksLimits, JwksUrlSettings, JwtConfigError, KeySource};
use crate::auth::error::AuthError;
use crate::clock::SharedClock;

const NEVER: i64 = i64::MIN;

/// Why a fetch did not produce new keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Document(#[from] JwksError),
    #[error("this key source is not fetched")]
    NotRemote,
}

struct Remote {
    fetcher: Arc<dyn JwksFetcher>,
    limits: JwksLimits,
    allowed: Vec<Algorithm>,
    refresh: Duration,
    cooldown_secs: i64,
    stale_secs: i64,
    timeout: Duration,
    last_success: AtomicI64,
    last_request_fetch: AtomicI64,
    /// Serialises fetches: one in flight per issuer.
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    failures: AtomicU64,
}

pub struct JwksStore {
    name: Arc<str>,
    keys: ArcSwap<KeySet>,
    remote: Option<Remote>,
    clock: SharedClock,
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore")
            .field("name", &self.name)
            .field("keys", &self.keys.load().len())
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

fn secs_ceil(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

impl JwksStore {
    /// A store for any key source. A JWKS file is read and parsed now (an unreadable or unusable
    /// file is a config error); a URL store starts empty and fills on its first fetch.
    pub fn from_source(
        name: &str,
        source: &KeySource,
        limits: JwksLimits,
        allowed: &[Algorithm],
        clock: SharedClock,
    ) -> Result<Arc<Self>, JwtConfigError> {
        let keys_err = |why: String| JwtConfigError::Keys {
            name: name.to_owned(),
            why,
        };
        match source {
            KeySource::JwksFile(path) => {
                let bytes = read_bounded(path, limits.max_bytes).map_err(keys_err)?;
                let set = parse_jwks(&bytes, &limits, allowed)
                    .map_err(|e| keys_err(format!("{}: {e}", path.display())))?;
                Ok(Self::fixed(name, set, clock))
            }
            KeySource::HmacSecret(secret) => {
                let set = KeySet::hmac(secret).map_err(|e| keys_err(e.to_string()))?;
                Ok(Self::fixed(name, set, clock))
            }
            KeySource::JwksUrl(u) => {
                let fetcher = HttpJwksFetcher::new(u).map_err(|e| keys_err(e.to_string()))?;
                Ok(Self::remote(
                    name,
                    u,
                    limits,
                    allowed,
                    Arc::new(fetcher),
                    clock,
                ))
            }
        }
    }

    /// A store whose keys never change (file or HMAC secret).
    pub fn fixed(name: &str, keys: KeySet, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            name: Arc::from(name),
            keys: ArcSwap::from_pointee(keys),
            remote: None,
            clock,
        })
    }

    /// A store fed by `fetcher` with the URL settings' timing rules.
    pub fn remote(
        name: &str,
        settings: &JwksUrlSettings,
        limits: JwksLimits,
        allowed: &[Algorithm],
        fetcher: Arc<dyn JwksFetcher>,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: Arc::from(name),
            keys: ArcSwap::from_pointee(KeySet::default()),
            remote: Some(Remote {
                fetcher,
                limits,
                allowed: allowed.to_vec(),
                refresh: settings.refresh,
                cooldown_secs: secs_ceil(settings.unknown_kid_cooldown).max(1),
                stale_secs: secs_ceil(settings.stale_if_error),
                timeout: settings.timeout,
                last_success: AtomicI64::new(NEVER),
                last_request_fetch: AtomicI64::new(NEVER),
                fetch_lock: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
            clock,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Interval of the background refresh, for URL sources.
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.remote.as_ref().map(|r| r.refresh)
    }

    /// The current key set (a cheap, lock-free snapshot).
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Generation of the current key set.
    pub fn generation(&self) -> u64 {
        self.keys.load().generation()
    }

    /// Key ids currently known (for the admin status page).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.load().kids().map(str::to_owned).collect()
    }

    /// Unix seconds of the last successful fetch, for URL keys that were fetched at least once.
    pub fn last_refreshed_at(&self) -> Option<i64> {
        let last = self.remote.as_ref()?.last_success.load(Ordering::Acquire);
        (last != NEVER).then_some(last)
    }

    /// Fetch attempts and failed attempts so far (for metrics and tests).
    pub fn fetch_counts(&self) -> (u64, u64) {
        self.remote.as_ref().map_or((0, 0), |r| {
            (
                r.fetches.load(Ordering::Relaxed),
                r.failures.load(Ordering::Relaxed),
            )
        })
    }

    /// Whether the keys may be used now: always for fixed sources; for a URL, only within
    /// `stale_if_error` of the last successful fetch.
    pub fn is_fresh(&self, now: i64) -> bool {
        match &self.remote {
            None => true,
            Some(r) => {
                let last = r.last_success.load(Ordering::Acquire);
                last != NEVER && now.saturating_sub(last) <= r.stale_secs
            }
        }
    }

    /// The key for a token's `kid`, fetching once (within the cooldown) if it is unknown or the
    /// keys are stale. Returns the key and the generation of the set it came from.
    pub async fn key_for(&self, kid: Option<&str>) -> Result<(Arc<VerifyingKey>, u64), AuthError> {
        if self.remote.is_some() && !self.is_fresh(self.clock.unix_seconds()) {
            self.request_triggered_fetch().await;
            if !self.is_fresh(self.clock.unix_seconds()) {
                return Err(AuthError::KeysUnavailable);
            }
        }
        if let Some(found) = self.lookup(kid) {
            return Ok(found);
        }
        if self.remote.is_none() {
            return Err(AuthError::UnknownKey);
        }
        self.request_triggered_fetch().await;
        self.lookup(kid).ok_or(AuthError::UnknownKey)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<(Arc<VerifyingKey>, u64)> {
        let set = self.keys.load();
        set.find(kid).map(|k| (Arc::clone(k), set.generation()))
    }

    /// A fetch on behalf of a request: skipped inside the cooldown, and callers that arrive
    /// while one is in flight wait for it instead of starting another.
    async fn request_triggered_fetch(&self) {
        let Some(r) = &self.remote else { return };
        let in_cooldown = |now: i64| {
            let last = r.last_request_fetch.load(Ordering::Acquire);
            last != NEVER && now.saturating_sub(last) < r.cooldown_secs
        };
        if in_cooldown(self.clock.unix_seconds()) {
            return;
        }
        let _flight = r.fetch_lock.lock().await;
        let now = self.clock.unix_seconds();
        if in_cooldown(now) {
            return;
        }
        r.last_request_fetch.store(now, Ordering::Release);
        if let Err(e) = self.fetch_locked(r).await {
            tracing::warn!(issuer = %self.name, error = %e, "JWKS fetch after unknown kid failed");
        }
    }

    /// Fetches now, ignoring the cooldown (the background refresher's call).
    pub async fn refresh(&self) -> Result<(), RefreshError> {
        let Some(r) = &self.remote else {
            return Err(RefreshError::NotRemote);
        };
        let _flight = r.fetch_lock.lock().await;
        self.fetch_locked(r).await
    }

    async fn fetch_locked(&self, r: &Remote) -> Result<(), RefreshError> {
        r.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(r.timeout, r.fetcher.fetch(r.limits.max_bytes))
            .await
        {
            Ok(Ok(bytes)) => parse_jwks(&bytes, &r.limits, &r.allowed).map_err(RefreshError::from),
            Ok(Err(e)) => Err(RefreshError::Fetch(e)),
            Err(_) => Err(RefreshError::Fetch(FetchError::Timeout)),
        };
        match result {
            Ok(set) => {
                self.install(set);
                r.last_success
                    .store(self.clock.unix_seconds(), Ordering::Release);
                Ok(())
            }
            Err(e) => {
                r.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Swaps in a new set unless it is identical to the current one, so cached verifications
    /// survive a refresh that changed nothing and are dropped when keys change.
    fn install(&self, mut set: KeySet) {
        let current = self.keys.load();
        if current.digest() == set.digest() && !current.is_empty() {
            return;
        }
        set.generation = current.generation() + 1;
        tracing::info!(issuer = %self.name, keys = set.len(), "JWKS keys updated");
        self.keys.store(Arc::new(set));
    }
}

/// Reads a file, refusing it if larger than `max` bytes.
fn read_bounded(path: &std::path::Path, max: usize) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > max as u64 {
        return Err(format!("{}: larger than {max} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}
