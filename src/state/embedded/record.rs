//! The on-disk form of one queued webhook: a versioned, length-prefixed binary record.
//!
//! Hand-written rather than JSON so the raw body is stored byte for byte (it is what the order
//! service will receive and what the gateway's proof signs) without base64 or escaping, and so a
//! damaged record is detected (truncation, trailing bytes, bad UTF-8) instead of half-read.
//!
//! Version 2 added the claim's lease token, the dead-letter time and millisecond due times;
//! version 3 (this one) adds the ingress request's `traceparent` after the body. Version 2
//! records are read as they are (no trace context). Version 1 records (the queue file before the
//! state layer) are still read, once, by the migration that moves them into the state file's
//! tables.

use bytes::Bytes;

const VERSION: u8 = 3;
const VERSION_2: u8 = 2;
const VERSION_1: u8 = 1;

/// Everything the gateway keeps about an accepted webhook until the order service acknowledges it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub attempts: u32,
    /// Unix seconds.
    pub received_at: i64,
    /// Unix milliseconds: when it is due (or, while claimed, when the claim's lease ends). The
    /// due index holds exactly this value for live events.
    pub next_attempt_at: i64,
    /// The current claim's lease token; 0 when unclaimed.
    pub lease: u64,
    /// Unix milliseconds at which it was dead-lettered; 0 while live.
    pub dead_at: i64,
    pub route: String,
    pub target: String,
    pub dedup_key: String,
    pub request_id: String,
    pub body: Bytes,
    /// The ingress request's `traceparent`; empty when none was recorded.
    pub traceparent: String,
}

/// A record that cannot be decoded. Says nothing about its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let strings = [&self.route, &self.target, &self.dedup_key, &self.request_id];
        let len = 1
            + 4
            + 8
            + 8
            + 8
            + 8
            + strings.iter().map(|s| 4 + s.len()).sum::<usize>()
            + 4
            + 4
            + self.traceparent.len();
        let mut out = Vec::with_capacity(len + self.body.len());
        out.push(VERSION);
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.extend_from_slice(&self.received_at.to_le_bytes());
        out.extend_from_slice(&self.next_attempt_at.to_le_bytes());
        out.extend_from_slice(&self.lease.to_le_bytes());
        out.extend_from_slice(&self.dead_at.to_le_bytes());
        for s in strings {
            put_bytes(&mut out, s.as_bytes());
        }
        put_bytes(&mut out, &self.body);
        put_bytes(&mut out, self.traceparent.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader(bytes);
        let version = r.take(1)?;
        let traced = match version {
            [VERSION] => true,
            [VERSION_2] => false,
            _ => return Err(Malformed),
        };
        let attempts = u32::from_le_bytes(r.array()?);
        let received_at = i64::from_le_bytes(r.array()?);
        let next_attempt_at = i64::from_le_bytes(r.array()?);
        let lease = u64::from_le_bytes(r.array()?);
        let dead_at = i64::from_le_bytes(r.array()?);
        r.rest(
            Self {
                attempts,
                received_at,
                next_attempt_at,
                lease,
                dead_at,
                route: String::new(),
                target: String::new(),
                dedup_key: String::new(),
                request_id: String::new(),
                body: Bytes::new(),
                traceparent: String::new(),
            },
            traced,
        )
    }

    /// A version 1 record (the queue file's): retry time in seconds, no lease, never dead.
    pub fn decode_v1(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader(bytes);
        if r.take(1)? != [VERSION_1] {
            return Err(Malformed);
        }
        let attempts = u32::from_le_bytes(r.array()?);
        let received_at = i64::from_le_bytes(r.array()?);
        let next_attempt_at = i64::from_le_bytes(r.array()?).saturating_mul(1000);
        r.rest(
            Self {
                attempts,
                received_at,
                next_attempt_at,
                lease: 0,
                dead_at: 0,
                route: String::new(),
                target: String::new(),
                dedup_key: String::new(),
                request_id: String::new(),
                body: Bytes::new(),
                traceparent: String::new(),
            },
            false,
        )
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Bodies are bounded far below 4 GiB by the route's body limit; the store checks it too.
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

    /// The strings and the body, which every version has, then (version 3) the traceparent, and
    /// nothing after them.
    fn rest(mut self, mut record: Record, traced: bool) -> Result<Record, Malformed> {
        record.route = self.string()?;
        record.target = self.string()?;
        record.dedup_key = self.string()?;
        record.request_id = self.string()?;
        record.body = Bytes::copy_from_slice(self.prefixed()?);
        if traced {
            record.traceparent = self.string()?;
        }
        if !self.0.is_empty() {
            return Err(Malformed);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            attempts: 3,
            received_at: 1_718_305_585,
            next_attempt_at: 1_718_305_600_123,
            lease: 77,
            dead_at: 0,
            route: "tiktok-webhooks".into(),
            target: "http://127.0.0.1:9001/internal/tiktok/events".into(),
            dedup_key: "7380066284010030890".into(),
            request_id: "req-1".into(),
            body: Bytes::from_static(b"{\"type\":1}\r\n \x00\xff"),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        }
    }

    #[test]
    fn a_version_2_record_reads_without_trace_context() {
        let r = Record {
            traceparent: String::new(),
            ..sample()
        };
        let mut v2 = r.encode();
        // Version 2 is version 3 without the trailing traceparent.
        v2[0] = VERSION_2;
        v2.truncate(v2.len() - 4);
        assert!(Record::decode(&v2) == Ok(r));
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let r = sample();
        assert!(Record::decode(&r.encode()) == Ok(r));
    }

    #[test]
    fn reads_version_1_records() {
        // attempts 2, received 10, next attempt 20 s, then the four strings and the body.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&10i64.to_le_bytes());
        v1.extend_from_slice(&20i64.to_le_bytes());
        for s in ["r", "http://x/e", "k", "q", "{}"] {
            put_bytes(&mut v1, s.as_bytes());
        }
        let r = Record::decode_v1(&v1).unwrap();
        assert_eq!(
            (r.attempts, r.received_at, r.next_attempt_at),
            (2, 10, 20_000)
        );
        assert_eq!((r.lease, r.dead_at), (0, 0));
        assert_eq!(&r.body[..], b"{}");
        assert!(Record::decode(&v1).is_err());
    }

    #[test]
    fn refuses_damaged_records() {
        let bytes = sample().encode();
        for cut in [0, 1, 10, 21, 30, 40, bytes.len() - 1] {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Record::decode(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(Record::decode(&version).is_err());
        let mut utf8 = sample();
        utf8.route = "r".into();
        let mut enc = utf8.encode();
        enc[41] = 0xff; // the single byte of `route`
        assert!(Record::decode(&enc).is_err());
    }
}
