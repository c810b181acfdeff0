//! Concurrent-connection caps: per listener and per client address, released by RAII guards.
//!
//! A slowloris client wins by holding many connections open cheaply; capping what one client
//! address may hold keeps the rest of the listener available to everyone else. IPv6 clients
//! are grouped by prefix (a /64 by default), since one host usually controls a whole /64.
//! The listener count is one atomic; the per-client count is a sharded map touched once at
//! connect and once at close, never per request. Entries vanish when their count reaches zero,
//! so memory is bounded by the listener cap.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// Caps for one listener. 0 means no cap for that dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open on the listener at once.
    pub max_connections: usize,
    /// Connections one client address (or IPv6 prefix) may hold at once. Set it to 0 on a
    /// loopback listener, where every internal caller shares 127.0.0.1.
    pub max_per_client: usize,
    /// IPv6 clients are counted per prefix of this length (0..=128).
    pub ipv6_prefix_len: u8,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_per_client: 100,
            ipv6_prefix_len: 64,
        }
    }
}

/// Which cap refused a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefused {
    #[error("listener connection cap reached")]
    ListenerFull,
    #[error("per-client connection cap reached")]
    ClientFull,
}

impl ConnectionRefused {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ListenerFull => "listener_full",
            Self::ClientFull => "client_full",
        }
    }
}

#[derive(Debug)]
struct Shared {
    limits: ConnectionLimits,
    total: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
}

/// One per listener; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    shared: Arc<Shared>,
}

/// Holds one connection slot; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is released as soon as the guard is dropped"]
pub struct ConnectionGuard {
    shared: Arc<Shared>,
    client: Option<IpAddr>,
}

impl ConnectionLimiter {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                total: AtomicUsize::new(0),
                per_client: DashMap::new(),
            }),
        }
    }

    /// Take a slot for a connection from `client` (None when the peer address is unknown, e.g.
    /// a Unix socket: only the listener cap applies).
    pub fn try_acquire(
        &self,
        client: Option<IpAddr>,
    ) -> Result<ConnectionGuard, ConnectionRefused> {
        let limits = &self.shared.limits;
        let previous = self.shared.total.fetch_add(1, Ordering::AcqRel);
        if limits.max_connections != 0 && previous >= limits.max_connections {
            self.shared.total.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectionRefused::ListenerFull);
        }
        let key = client.map(|ip| client_key(ip, limits.ipv6_prefix_len));
        if let Some(key) = key {
            let mut count = self.shared.per_client.entry(key).or_insert(0);
            if limits.max_per_client != 0 && *count >= limits.max_per_client {
                drop(count);
                // Drop the entry again if it was created by this refused attempt.
                self.shared.per_client.remove_if(&key, |_, c| *c == 0);
                self.shared.total.fetch_sub(1, Ordering::AcqRel);
                return Err(ConnectionRefused::ClientFull);
            }
            *count += 1;
        }
        Ok(ConnectionGuard {
            shared: Arc::clone(&self.shared),
            client: key,
        })
    }

    /// Connections currently holding a slot.
    pub fn active(&self) -> usize {
        self.shared.total.load(Ordering::Acquire)
    }

    /// Connections currently held by `client`'s address (or IPv6 prefix).
    pub fn active_for(&self, client: IpAddr) -> usize {
        let key = client_key(client, self.shared.limits.ipv6_prefix_len);
        self.shared.per_client.get(&key).map_or(0, |c| *c)
    }

    /// Distinct client keys currently tracked.
    pub fn tracked_clients(&self) -> usize {
        self.shared.per_client.len()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            self.shared.per_client.remove_if_mut(&key, |_, c| {
                *c = c.saturating_sub(1);
                *c == 0
            });
        }
        self.shared.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The counting key: IPv4 (including IPv4-mapped IPv6) as is, IPv6 masked to its prefix.
fn client_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn limiter(total: usize, per_client: usize) -> ConnectionLimiter {
        ConnectionLimiter::new(ConnectionLimits {
            max_connections: total,
            max_per_client: per_client,
            ipv6_prefix_len: 64,
        })
    }

    #[test]
    fn per_client_cap_refuses_one_client_but_not_others() {
        let l = limiter(100, 2);
        let a = ip("192.0.2.1");
        let g1 = l.try_acquire(Some(a)).expect("first");
        let g2 = l.try_acquire(Some(a)).expect("second");
        assert_eq!(
            l.try_acquire(Some(a)).err(),
            Some(ConnectionRefused::ClientFull)
        );
        let other = l.try_acquire(Some(ip("192.0.2.2"))).expect("other client");
        assert_eq!(l.active(), 3);
        assert_eq!(l.active_for(a), 2);
        drop(g1);
        let g3 = l.try_acquire(Some(a)).expect("slot freed by drop");
        drop((g2, g3, other));
        assert_eq!(l.active(), 0);
        assert_eq!(l.tracked_clients(), 0);
    }

    #[test]
    fn listener_cap_refuses_everyone_when_full() {
        let l = limiter(2, 0);
        let g1 = l.try_acquire(Some(ip("192.0.2.1"))).expect("first");
        let _g2 = l.try_acquire(None).expect("second");
        assert_eq!(
            l.try_acquire(Some(ip("192.0.2.3"))).err(),
            Some(ConnectionRefused::ListenerFull)
        );
        assert_eq!(l.active(), 2);
        drop(g1);
        assert!(l.try_acquire(Some(ip("192.0.2.3"))).is_ok());
    }

    #[test]
    fn refused_attempts_leave_no_state_behind() {
        let l = limiter(1, 0);
        let _g = l.try_acquire(Some(ip("192.0.2.1"))).expect("first");
        for i in 0..50 {
            let addr = ip(&format!("198.51.100.{i}"));
            assert!(l.try_acquire(Some(addr)).is_err());
        }
        assert_eq!(l.active(), 1);
        assert_eq!(l.tracked_clients(), 1);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let l = limiter(100, 2);
        let _a = l.try_acquire(Some(ip("2001:db8:1:2::1"))).expect("first");
        let _b = l
            .try_acquire(Some(ip("2001:db8:1:2:ffff::9")))
            .expect("second");
        assert_eq!(
            l.try_acquire(Some(ip("2001:db8:1:2:abcd::1"))).err(),
            Some(ConnectionRefused::ClientFull)
        );
        assert!(l.try_acquire(Some(ip("2001:db8:1:3::1"))).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let l = limiter(100, 1);
        let _a = l.try_acquire(Some(ip("192.0.2.7"))).expect("first");
        assert_eq!(
            l.try_acquire(Some(ip("::ffff:192.0.2.7"))).err(),
            Some(ConnectionRefused::ClientFull)
        );
    }

    #[test]
    fn client_key_masks_correctly_at_the_edges() {
        assert_eq!(client_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(client_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client_key(ip("2001:db8::1"), 200), ip("2001:db8::1"));
        assert_eq!(
            client_key(ip("2001:db8:aaaa:bbbb:1::1"), 48),
            ip("2001:db8:aaaa::")
        );
    }

    #[test]
    fn guards_release_across_threads() {
        let l = limiter(1000, 0);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let g = l.try_acquire(Some(ip(&format!("10.0.{t}.{}", i % 7))));
                        assert!(g.is_ok());
                    }
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().is_ok());
        }
        assert_eq!(l.active(), 0);
        assert_eq!(l.tracked_clients(), 0);
    }
}
