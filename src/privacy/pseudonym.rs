//! Keyed pseudonyms: a personal value becomes `pii:` + the first 12 hex digits of
//! HMAC-SHA256(key, normalised value). Stable across lines, processes and restarts while the key
//! stays the same, so investigators can correlate one buyer across log lines; useless without the
//! key (no dictionary attack on phone numbers or e-mails).

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::PrivacyError;
use super::kind::PiiKind;
use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The prefix every pseudonym starts with, so readers know the value was replaced.
pub const PSEUDONYM_PREFIX: &str = "pii:";
/// Hex digits kept from the digest: 48 bits, collision-free enough for correlation at the scale
/// of one shop's buyers while keeping log lines short.
pub const PSEUDONYM_HEX_LEN: usize = 12;
/// Length of a whole pseudonym (`pii:` + hex).
pub const PSEUDONYM_LEN: usize = PSEUDONYM_PREFIX.len() + PSEUDONYM_HEX_LEN;
/// Minimum key length: a short key could be brute-forced together with the low-entropy values.
pub const MIN_KEY_BYTES: usize = 16;

/// Computes pseudonyms. Holds the HMAC state already keyed so each call only hashes the value.
#[derive(Clone)]
pub struct Pseudonymizer {
    keyed: HmacSha256,
    /// Tells this key's cached pseudonyms from another's (a reload may change the key).
    id: u64,
}

/// Client addresses remembered per thread by [`Pseudonymizer::ip_pseudonym`].
const IP_CACHE_SLOTS: usize = 64;

type IpCacheSlot = Option<(u64, IpAddr, Box<str>)>;

thread_local! {
    static IP_CACHE: RefCell<[IpCacheSlot; IP_CACHE_SLOTS]> =
        const { RefCell::new([const { None }; IP_CACHE_SLOTS]) };
}

fn ip_slot(ip: IpAddr) -> usize {
    let folded = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits as u64) ^ ((bits >> 64) as u64)
        }
    };
    // Multiplicative hashing: the top bits of the product pick the slot.
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % IP_CACHE_SLOTS
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer([redacted])")
    }
}

impl Pseudonymizer {
    pub fn new(key: &Secret) -> Result<Self, PrivacyError> {
        let bytes = key.expose().as_bytes();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(PrivacyError::WeakPseudonymKey { min: MIN_KEY_BYTES });
        }
        let keyed = HmacSha256::new_from_slice(bytes)
            .map_err(|_| PrivacyError::WeakPseudonymKey { min: MIN_KEY_BYTES })?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Self {
            keyed,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Tells this pseudonymizer (and the engine holding it) from any other built before or after.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The pseudonym of a client address, for the access log. The same addresses come back
    /// request after request (keep-alive, a client's connections), so each thread remembers the
    /// last few it computed: the HMAC is otherwise the dearest part of an access-log line.
    pub fn ip_pseudonym(&self, ip: IpAddr) -> String {
        let slot = ip_slot(ip);
        IP_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((id, cached, pseudonym)) = &cache[slot]
                && *id == self.id
                && *cached == ip
            {
                return pseudonym.to_string();
            }
            let pseudonym = self.pseudonym(PiiKind::IpAddress, &ip.to_string());
            cache[slot] = Some((self.id, ip, pseudonym.as_str().into()));
            pseudonym
        })
    }

    /// The pseudonym of `value`, normalised for `kind` first (e-mails case-folded, phone numbers
    /// reduced to digits) so that the same person written two ways gets one pseudonym.
    pub fn pseudonym(&self, kind: PiiKind, value: &str) -> String {
        let mut out = String::with_capacity(PSEUDONYM_LEN);
        self.write_pseudonym(kind, value, &mut out);
        out
    }

    /// Appends the pseudonym to `out` (no allocation beyond `out` growing).
    pub fn write_pseudonym(&self, kind: PiiKind, value: &str, out: &mut String) {
        let mut mac = self.keyed.clone();
        match kind {
            PiiKind::Email => {
                for b in value.trim().bytes() {
                    mac.update(&[b.to_ascii_lowercase()]);
                }
            }
            PiiKind::Phone => {
                for b in value.bytes().filter(u8::is_ascii_digit) {
                    mac.update(&[b]);
                }
            }
            _ => mac.update(value.trim().as_bytes()),
        }
        let digest = mac.finalize().into_bytes();
        out.push_str(PSEUDONYM_PREFIX);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in &digest[..PSEUDONYM_HEX_LEN / 2] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_ip_pseudonyms_match_computed_ones_and_follow_the_key() {
        let a = p("a-key-of-sixteen-bytes");
        let b = p("another-key-of-16-bytes");
        let ips: Vec<IpAddr> = (0..200u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i * 7919)))
            .chain(["::1".parse().unwrap(), "2001:db8::7".parse().unwrap()])
            .collect();
        for _ in 0..2 {
            for ip in &ips {
                let want = a.pseudonym(PiiKind::IpAddress, &ip.to_string());
                assert_eq!(a.ip_pseudonym(*ip), want);
                assert_eq!(
                    a.clone().ip_pseudonym(*ip),
                    want,
                    "a clone has the same key"
                );
                // Another key never gets the first key's cached answer.
                assert_eq!(
                    b.ip_pseudonym(*ip),
                    b.pseudonym(PiiKind::IpAddress, &ip.to_string())
                );
                assert_ne!(b.ip_pseudonym(*ip), want);
            }
        }
    }

    fn p(key: &str) -> Pseudonymizer {
        Pseudonymizer::new(&Secret::new(key)).expect("key long enough")
    }

    #[test]
    fn stable_and_shaped() {
        let a = p("0123456789abcdef-key");
        let x = a.pseudonym(PiiKind::UserId, "7021436810468230477");
        assert_eq!(x, a.pseudonym(PiiKind::UserId, "7021436810468230477"));
        // A second instance (a restart) with the same key gives the same answer.
        assert_eq!(
            x,
            p("0123456789abcdef-key").pseudonym(PiiKind::UserId, "7021436810468230477")
        );
        assert_eq!(x.len(), PSEUDONYM_LEN);
        assert!(x.starts_with("pii:"));
        assert!(
            x[4..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!x.contains("7021436810468230477"));
    }

    #[test]
    fn known_vectors_pin_the_construction() {
        // Computed independently: HMAC-SHA256(key, value), first 6 bytes, lowercase hex.
        let a = p("0123456789abcdef");
        assert_eq!(a.pseudonym(PiiKind::Name, "hello"), "pii:713ba20d2e5f");
        assert_eq!(
            a.pseudonym(PiiKind::Email, "Maria.Silva@EXAMPLE.com"),
            "pii:565ba2d9ddf1"
        );
    }

    #[test]
    fn different_key_different_pseudonym() {
        let v = "maria.silva@example.com";
        assert_ne!(
            p("key-number-one-0000").pseudonym(PiiKind::Email, v),
            p("key-number-two-0000").pseudonym(PiiKind::Email, v)
        );
    }

    #[test]
    fn normalises_emails_and_phones() {
        let a = p("0123456789abcdef-key");
        assert_eq!(
            a.pseudonym(PiiKind::Email, "Maria.Silva@Example.com"),
            a.pseudonym(PiiKind::Email, "maria.silva@example.com ")
        );
        assert_eq!(
            a.pseudonym(PiiKind::Phone, "+1 (213) 555-0142"),
            a.pseudonym(PiiKind::Phone, "+1.213.555.0142")
        );
        assert_ne!(
            a.pseudonym(PiiKind::Phone, "+1 213 555 0142"),
            a.pseudonym(PiiKind::Phone, "+1 213 555 0143")
        );
    }

    #[test]
    fn refuses_short_keys_and_hides_key_in_debug() {
        assert_eq!(
            Pseudonymizer::new(&Secret::new("short")).err(),
            Some(PrivacyError::WeakPseudonymKey { min: MIN_KEY_BYTES })
        );
        assert_eq!(
            format!("{:?}", p("0123456789abcdef-key")),
            "Pseudonymizer([redacted])"
        );
    }
}
