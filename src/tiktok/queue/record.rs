//! The on-disk form of one queued webhook: a versioned, length-prefixed binary record.
//!
//! Hand-written rather than JSON so the raw body is stored byte for byte (it is what the order
//! service will receive and what the gateway's proof signs) without base64 or escaping, and so a
//! damaged record is detected (truncation, trailing bytes, bad UTF-8) instead of half-read.

use bytes::Bytes;

/// Bumped if the layout changes; older records are then refused with a typed error.
const VERSION: u8 = 1;

/// Everything the gateway keeps about an accepted webhook until the order service acknowledges it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub attempts: u32,
    pub received_at: i64,
    pub next_attempt_at: i64,
    pub route: String,
    pub target: String,
    pub dedup_key: String,
    pub request_id: String,
    pub body: Bytes,
}

/// A record that cannot be decoded. Says nothing about its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let strings = [&self.route, &self.target, &self.dedup_key, &self.request_id];
        let len = 1 + 4 + 8 + 8 + strings.iter().map(|s| 4 + s.len()).sum::<usize>() + 4;
        let mut out = Vec::with_capacity(len + self.body.len());
        out.push(VERSION);
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.extend_from_slice(&self.received_at.to_le_bytes());
        out.extend_from_slice(&self.next_attempt_at.to_le_bytes());
        for s in strings {
            put_bytes(&mut out, s.as_bytes());
        }
        put_bytes(&mut out, &self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader(bytes);
        if r.take(1)? != [VERSION] {
            return Err(Malformed);
        }
        let attempts = u32::from_le_bytes(r.array()?);
        let received_at = i64::from_le_bytes(r.array()?);
        let next_attempt_at = i64::from_le_bytes(r.array()?);
        let route = r.string()?;
        let target = r.string()?;
        let dedup_key = r.string()?;
        let request_id = r.string()?;
        let body = Bytes::copy_from_slice(r.prefixed()?);
        if !r.0.is_empty() {
            return Err(Malformed);
        }
        Ok(Self {
            attempts,
            received_at,
            next_attempt_at,
            route,
            target,
            dedup_key,
            request_id,
            body,
        })
    }

    /// Rewrites the retry bookkeeping in an encoded record without decoding the rest.
    pub fn patch_retry(
        bytes: &mut [u8],
        attempts: u32,
        next_attempt_at: i64,
    ) -> Result<(), Malformed> {
        if bytes.len() < 21 || bytes[0] != VERSION {
            return Err(Malformed);
        }
        bytes[1..5].copy_from_slice(&attempts.to_le_bytes());
        bytes[13..21].copy_from_slice(&next_attempt_at.to_le_bytes());
        Ok(())
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Bodies are bounded far below 4 GiB by the route's body limit; the queue checks it too.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        self.take(N)?.try_into().map_err(|_| Malformed)
    }

    fn prefixed(&mut self) -> Result<&'a [u8], Malformed> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let bytes = self.prefixed()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            attempts: 3,
            received_at: 1_718_305_585,
            next_attempt_at: 1_718_305_600,
            route: "tiktok-webhooks".into(),
            target: "http://127.0.0.1:9001/internal/tiktok/events".into(),
            dedup_key: "7380066284010030890".into(),
            request_id: "req-1".into(),
            body: Bytes::from_static(b"{\"type\":1}\r\n \x00\xff"),
        }
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let r = sample();
        assert!(Record::decode(&r.encode()) == Ok(r));
    }

    #[test]
    fn patches_retry_fields_in_place() {
        let mut bytes = sample().encode();
        Record::patch_retry(&mut bytes, 4, 42).unwrap();
        let r = Record::decode(&bytes).unwrap();
        assert_eq!((r.attempts, r.next_attempt_at), (4, 42));
        assert_eq!(r.body, sample().body);
    }

    #[test]
    fn refuses_damaged_records() {
        let bytes = sample().encode();
        for cut in [0, 1, 10, 21, 30, bytes.len() - 1] {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Record::decode(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(Record::decode(&version).is_err());
        assert!(Record::patch_retry(&mut version, 1, 1).is_err());
        let mut utf8 = sample();
        utf8.route = "r".into();
        let mut enc = utf8.encode();
        enc[25] = 0xff; // the single byte of `route`
        assert!(Record::decode(&enc).is_err());
    }
}
