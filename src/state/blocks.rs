//! The runtime block list (kill switch entries written through the state layer, by subject,
//! API-key name or client address), kept in memory as a compiled view every request consults
//! lock-free, and refreshed from the store whenever it changes: at once on a change notification
//! (a local write, or Postgres `NOTIFY` from another replica), and by polling the list's version
//! every poll interval in case a notification was missed.
//!
//! YAML `identity.blocked_subjects` stays the static list; this one is checked alongside it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::watch;

use super::health::{StateHealth, with_timeout};
use super::{BlockEntry, BlockKind, NewBlock, SharedState, StateError};
use crate::auth::{AuthMethod, Identity};
use crate::clock::SharedClock;

/// Longest value and reason accepted for an entry.
const MAX_VALUE_LEN: usize = 256;
const MAX_REASON_LEN: usize = 1024;

/// The compiled view: what a request is checked against.
#[derive(Debug, Default)]
pub struct BlockList {
    pub version: u64,
    /// Value -> expiry (unix seconds), `None` for no expiry.
    subjects: HashMap<Box<str>, Option<i64>>,
    api_keys: HashMap<Box<str>, Option<i64>>,
    networks: Vec<(IpNet, Option<i64>)>,
}

impl BlockList {
    pub fn from_entries(version: u64, entries: &[BlockEntry]) -> Self {
        let mut list = Self {
            version,
            ..Self::default()
        };
        for e in entries {
            match e.kind {
                BlockKind::Subject => {
                    later(&mut list.subjects, &e.value, e.expires_at);
                }
                BlockKind::ApiKey => {
                    later(&mut list.api_keys, &e.value, e.expires_at);
                }
                BlockKind::ClientIp => {
                    if let Some(net) = parse_network(&e.value) {
                        list.networks.push((net, e.expires_at));
                    }
                }
            }
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty() && self.api_keys.is_empty() && self.networks.is_empty()
    }

    /// Whether the list has client-address entries (only then is the address worked out).
    pub fn has_networks(&self) -> bool {
        !self.networks.is_empty()
    }

    /// Whether `identity` (or `client_ip`, when the list has address entries) is blocked at
    /// `now` (unix seconds).
    pub fn blocks(&self, identity: &Identity, client_ip: Option<IpAddr>, now: i64) -> bool {
        let live = |expiry: &Option<i64>| expiry.is_none_or(|at| at > now);
        if self.subjects.get(identity.subject()).is_some_and(live) {
            return true;
        }
        if let AuthMethod::ApiKey { key } = identity.method()
            && self.api_keys.get(&**key).is_some_and(live)
        {
            return true;
        }
        match client_ip {
            Some(ip) => self
                .networks
                .iter()
                .any(|(net, expiry)| net.contains(&ip) && live(expiry)),
            None => false,
        }
    }
}

/// Keeps the entry that lasts longest when a value is listed twice.
fn later(map: &mut HashMap<Box<str>, Option<i64>>, value: &str, expiry: Option<i64>) {
    let slot = map.entry(value.into()).or_insert(expiry);
    *slot = match (*slot, expiry) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(a.max(b)),
    };
}

/// `203.0.113.7` or `2001:db8::/32`.
fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Checks an entry before it is stored: a bad entry is refused, never stored and skipped later.
pub fn check(block: &NewBlock) -> Result<(), StateError> {
    let visible = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if block.value.is_empty() || block.value.len() > MAX_VALUE_LEN || !visible(&block.value) {
        return Err(StateError::Invalid(
            "block value must be 1-256 visible ASCII characters".into(),
        ));
    }
    if block.reason.len() > MAX_REASON_LEN || block.reason.chars().any(char::is_control) {
        return Err(StateError::Invalid(
            "block reason must be at most 1024 characters, without control characters".into(),
        ));
    }
    if block.kind == BlockKind::ClientIp && parse_network(&block.value).is_none() {
        return Err(StateError::Invalid(
            "a client_ip block needs an IP address or a CIDR network".into(),
        ));
    }
    Ok(())
}

/// The block list of one gateway: the current view, and the internal API that changes the list
/// in the state store (the admin endpoints build on it).
pub struct Blocks {
    store: SharedState,
    health: Arc<StateHealth>,
    clock: SharedClock,
    timeout: Duration,
    current: ArcSwap<BlockList>,
}

impl Blocks {
    pub fn new(
        store: SharedState,
        health: Arc<StateHealth>,
        clock: SharedClock,
        timeout: Duration,
        initial: BlockList,
    ) -> Self {
        Self {
            store,
            health,
            clock,
            timeout,
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// The view a request checks; lock-free.
    pub fn current(&self) -> arc_swap::Guard<Arc<BlockList>> {
        self.current.load()
    }

    /// Adds an entry; every replica applies it at its next refresh (this one at once).
    pub async fn add(&self, block: NewBlock) -> Result<u64, StateError> {
        check(&block)?;
        let now = self.clock.unix_millis();
        let result = with_timeout(self.timeout, self.store.add_block(block, now)).await;
        self.health.observe("add_block", &result);
        let id = result?;
        self.refresh().await?;
        Ok(id)
    }

    /// Removes an entry by id; `false` when there was none.
    pub async fn remove(&self, id: u64) -> Result<bool, StateError> {
        let result = with_timeout(self.timeout, self.store.remove_block(id)).await;
        self.health.observe("remove_block", &result);
        let removed = result?;
        self.refresh().await?;
        Ok(removed)
    }

    /// Every stored entry, expired ones included.
    pub async fn list(&self) -> Result<Vec<BlockEntry>, StateError> {
        let result = with_timeout(self.timeout, self.store.blocks()).await;
        self.health.observe("blocks", &result);
        result.map(|(_, entries)| entries)
    }

    /// Reads the list from the store and swaps the view in.
    pub async fn refresh(&self) -> Result<(), StateError> {
        let result = with_timeout(self.timeout, self.store.blocks()).await;
        self.health.observe("blocks", &result);
        let (version, entries) = result?;
        self.current
            .store(Arc::new(BlockList::from_entries(version, &entries)));
        Ok(())
    }

    /// Keeps the view fresh until `shutdown`: on every change notification, and every `poll`
    /// when the version moved. A failed read keeps the last view.
    pub async fn watch(&self, poll: Duration, mut shutdown: watch::Receiver<bool>) {
        let changes = self.store.block_changes();
        loop {
            let notified = changes.notified();
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
                _ = notified => {
                    let _ = self.refresh().await;
                    continue;
                }
                _ = tokio::time::sleep(poll) => {}
            }
            let result = with_timeout(self.timeout, self.store.block_version()).await;
            self.health.observe("block_version", &result);
            if let Ok(version) = result
                && version != self.current.load().version
            {
                let _ = self.refresh().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScopeSet;

    fn entry(id: u64, kind: BlockKind, value: &str, expires_at: Option<i64>) -> BlockEntry {
        BlockEntry {
            id,
            kind,
            value: value.into(),
            reason: "test".into(),
            expires_at,
            created_at: 0,
        }
    }

    fn caller(subject: &str, method: AuthMethod) -> Identity {
        Identity::new(subject, method, ScopeSet::default(), vec![]).unwrap()
    }

    #[test]
    fn matches_subjects_key_names_and_networks_until_expiry() {
        let list = BlockList::from_entries(
            3,
            &[
                entry(1, BlockKind::Subject, "svc-bad", None),
                entry(2, BlockKind::ApiKey, "batch-exporter", Some(100)),
                entry(3, BlockKind::ClientIp, "203.0.113.0/24", None),
                entry(4, BlockKind::ClientIp, "2001:db8::1", Some(50)),
            ],
        );
        let jwt = AuthMethod::Jwt {
            issuer: "idp".into(),
        };
        let key = AuthMethod::ApiKey {
            key: "batch-exporter".into(),
        };
        assert!(list.blocks(&caller("svc-bad", jwt.clone()), None, 10));
        assert!(!list.blocks(&caller("svc-good", jwt.clone()), None, 10));
        // The API-key entry matches the key's name, not a subject that spells it.
        assert!(list.blocks(&caller("batch-exporter", key.clone()), None, 99));
        assert!(!list.blocks(&caller("batch-exporter", key), None, 100));
        assert!(!list.blocks(&caller("batch-exporter", jwt.clone()), None, 10));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let good = caller("svc-good", jwt);
        assert!(list.blocks(&good, ip("203.0.113.9"), 10));
        assert!(!list.blocks(&good, ip("203.0.114.9"), 10));
        assert!(list.blocks(&good, ip("2001:db8::1"), 49));
        assert!(!list.blocks(&good, ip("2001:db8::1"), 50));
        assert!(list.has_networks());
    }

    #[test]
    fn refuses_entries_it_could_not_apply() {
        let block = |kind, value: &str, reason: &str| NewBlock {
            kind,
            value: value.into(),
            reason: reason.into(),
            expires_at: None,
        };
        assert!(check(&block(BlockKind::ClientIp, "10.0.0.0/8", "scan")).is_ok());
        assert!(check(&block(BlockKind::ClientIp, "not-an-ip", "x")).is_err());
        assert!(check(&block(BlockKind::Subject, "", "x")).is_err());
        assert!(check(&block(BlockKind::Subject, "a\r\nb", "x")).is_err());
        assert!(check(&block(BlockKind::Subject, "ok", "line\nbreak")).is_err());
    }
}
