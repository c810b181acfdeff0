//! The hash chain: how a stored record is sealed, and how a whole log is checked.
//!
//! A record's hash is SHA-256 over a length-prefixed encoding of every field (its sequence
//! number and the previous record's hash included), so changing, removing, inserting or
//! reordering records breaks the chain where it happened. The encoding is fixed here and never
//! depends on a serializer's choices: the detail is hashed as the exact JSON text stored.

use sha2::{Digest, Sha256};

/// Hash of "no previous record": the first record's `prev_hash`.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// What separates this encoding from any other SHA-256 input.
const DOMAIN: &[u8] = b"tiktok-gateway/audit/v1\0";

/// A record as stored: its place in the chain, its content and its two hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    /// Unix milliseconds.
    pub time: i64,
    pub action: String,
    pub outcome: String,
    pub actor: Option<String>,
    /// A JSON object's text, hashed byte for byte.
    pub detail: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// A record before the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: i64,
    pub action: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub detail: String,
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The hash of `entry` stored at `seq` after a record whose hash is `prev_hash`.
pub fn seal(seq: u64, entry: &AuditEntry, prev_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(entry.time.to_be_bytes());
    put(&mut h, entry.action.as_bytes());
    put(&mut h, entry.outcome.as_bytes());
    match &entry.actor {
        Some(actor) => {
            h.update([1]);
            put(&mut h, actor.as_bytes());
        }
        None => h.update([0]),
    }
    put(&mut h, entry.detail.as_bytes());
    h.update(prev_hash);
    h.finalize().into()
}

/// `entry` sealed as the record after `(head_seq, head_hash)`.
pub fn next_record(head: Option<(u64, [u8; 32])>, entry: AuditEntry) -> AuditRecord {
    let (seq, prev_hash) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS),
    };
    let hash = seal(seq, &entry, &prev_hash);
    AuditRecord {
        seq,
        time: entry.time,
        action: entry.action,
        outcome: entry.outcome,
        actor: entry.actor,
        detail: entry.detail,
        prev_hash,
        hash,
    }
}

impl AuditRecord {
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            time: self.time,
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            actor: self.actor.clone(),
            detail: self.detail.clone(),
        }
    }

    /// Whether the stored hash is the hash of this content at `seq` after `prev_hash`.
    fn sealed_at(&self, seq: u64) -> bool {
        seal(seq, &self.entry(), &self.prev_hash) == self.hash
    }
}

/// The first thing wrong with a log, named by sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// The record's content (or its hashes) is not what was sealed at its place.
    Changed { seq: u64 },
    /// Records `from..=to` are missing.
    Removed { from: u64, to: u64 },
    /// The record at `seq` was not written by the gateway there: it was inserted.
    Inserted { seq: u64 },
    /// The record at `seq` was sealed at `was` (records swapped or moved).
    Reordered { seq: u64, was: u64 },
    /// A checkpoint whose signature or covered hash does not check.
    BadCheckpoint { seq: u64, reason: String },
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Changed { seq } => write!(f, "record {seq} was changed"),
            Self::Removed { from, to } if from == to => write!(f, "record {from} was removed"),
            Self::Removed { from, to } => write!(f, "records {from} to {to} were removed"),
            Self::Inserted { seq } => write!(f, "record {seq} was inserted"),
            Self::Reordered { seq, was } => {
                write!(f, "records were reordered: record {seq} holds record {was}")
            }
            Self::BadCheckpoint { seq, reason } => write!(f, "checkpoint record {seq}: {reason}"),
        }
    }
}

/// The seq a record's hash was sealed at, when it is near `seq` but not `seq` (a moved record).
fn moved_from(record: &AuditRecord, window: u64) -> Option<u64> {
    (1..=window).find_map(|d| {
        [record.seq.checked_sub(d), record.seq.checked_add(d)]
            .into_iter()
            .flatten()
            .find(|&s| s > 0 && record.sealed_at(s))
    })
}

/// How far a moved record is looked for.
const MOVE_WINDOW: u64 = 16;

/// Walks the chain incrementally: feed records in stored order (by seq), then [`Self::finish`]
/// with the recorded head. Stops at the first problem.
#[derive(Debug)]
pub struct ChainCheck {
    expected_seq: u64,
    prev_hash: [u8; 32],
    /// The record before the one being checked was moved here from a later place.
    pending: Option<AuditRecord>,
    pub checked: u64,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS,
            pending: None,
            checked: 0,
        }
    }
}

impl ChainCheck {
    /// Checks the next record. `Err` names the first tampered record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), Tamper> {
        if let Some(before) = self.pending.take() {
            // The previous record holds a later one. If this one holds the previous place,
            // two records were swapped; otherwise the records after a removal were renumbered.
            let was = moved_from(&before, MOVE_WINDOW).unwrap_or(before.seq);
            return Err(if moved_from(record, MOVE_WINDOW) == Some(before.seq) {
                Tamper::Reordered {
                    seq: before.seq,
                    was,
                }
            } else {
                Tamper::Removed {
                    from: before.seq,
                    to: was - 1,
                }
            });
        }
        if record.seq > self.expected_seq {
            return Err(Tamper::Removed {
                from: self.expected_seq,
                to: record.seq - 1,
            });
        }
        if record.seq < self.expected_seq {
            return Err(Tamper::Inserted { seq: record.seq });
        }
        if !record.sealed_at(record.seq) {
            match moved_from(record, MOVE_WINDOW) {
                // Sealed at an earlier place: every record from here was pushed down by one
                // inserted before it.
                Some(was) if was < record.seq => {
                    return Err(Tamper::Inserted {
                        seq: record.seq - 1,
                    });
                }
                // Sealed at a later place: decided by the next record (swap or removal).
                Some(_) => {
                    self.pending = Some(record.clone());
                    return Ok(());
                }
                None => return Err(Tamper::Changed { seq: record.seq }),
            }
        }
        if record.prev_hash != self.prev_hash {
            // Well-formed for its place but not written after its predecessor.
            return Err(Tamper::Inserted { seq: record.seq });
        }
        self.expected_seq = record.seq + 1;
        self.prev_hash = record.hash;
        self.checked += 1;
        Ok(())
    }

    /// The end of the log: checks it against the recorded head `(seq, hash)`.
    pub fn finish(&mut self, head: Option<(u64, [u8; 32])>) -> Result<(), Tamper> {
        if let Some(before) = self.pending.take() {
            let was = moved_from(&before, MOVE_WINDOW).unwrap_or(before.seq);
            return Err(Tamper::Reordered {
                seq: before.seq,
                was,
            });
        }
        let last = self.expected_seq - 1;
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS));
        if head_seq > last {
            return Err(Tamper::Removed {
                from: last + 1,
                to: head_seq,
            });
        }
        if head_seq < last {
            return Err(Tamper::Inserted { seq: head_seq + 1 });
        }
        if head_hash != self.prev_hash {
            return Err(Tamper::Changed { seq: last });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let head = out.last().map(|r| (r.seq, r.hash));
            out.push(next_record(
                head,
                AuditEntry {
                    time: 1_000 + i as i64,
                    action: "admin.blocks.add".into(),
                    outcome: "allowed".into(),
                    actor: Some(format!("ops-{i}")),
                    detail: format!("{{\"n\":{i}}}"),
                },
            ));
        }
        out
    }

    fn check(records: &[AuditRecord], head: Option<(u64, [u8; 32])>) -> Result<u64, Tamper> {
        let mut c = ChainCheck::default();
        for r in records {
            c.push(r)?;
        }
        c.finish(head)?;
        Ok(c.checked)
    }

    fn head(records: &[AuditRecord]) -> Option<(u64, [u8; 32])> {
        records.last().map(|r| (r.seq, r.hash))
    }

    #[test]
    fn an_untouched_log_passes() {
        let l = log(10);
        assert_eq!(check(&l, head(&l)), Ok(10));
        assert_eq!(check(&[], None), Ok(0));
    }

    #[test]
    fn names_a_changed_record() {
        let mut l = log(10);
        let h = head(&l);
        l[4].detail = "{\"n\":5}".into();
        assert_eq!(check(&l, h), Err(Tamper::Changed { seq: 5 }));
    }

    #[test]
    fn names_a_removed_record_in_the_middle_and_at_the_end() {
        let l = log(10);
        let h = head(&l);
        let mut gap = l.clone();
        gap.remove(3);
        assert_eq!(check(&gap, h), Err(Tamper::Removed { from: 4, to: 4 }));
        let mut tail = l.clone();
        tail.pop();
        assert_eq!(check(&tail, h), Err(Tamper::Removed { from: 10, to: 10 }));
        // Removed and the rest renumbered to close the gap.
        let mut renumbered = l.clone();
        renumbered.remove(3);
        for r in &mut renumbered[3..] {
            r.seq -= 1;
        }
        assert_eq!(
            check(&renumbered, h),
            Err(Tamper::Removed { from: 4, to: 4 })
        );
    }

    #[test]
    fn names_an_inserted_record() {
        let l = log(10);
        let h = head(&l);
        // A forger who knows the encoding seals a record at 4 and renumbers the rest.
        let forged = next_record(
            Some((l[2].seq, l[2].hash)),
            AuditEntry {
                time: 5,
                action: "admin.blocks.remove".into(),
                outcome: "allowed".into(),
                actor: None,
                detail: "{}".into(),
            },
        );
        let mut ins = l[..3].to_vec();
        ins.push(forged.clone());
        for r in &l[3..] {
            let mut r = r.clone();
            r.seq += 1;
            ins.push(r);
        }
        assert_eq!(check(&ins, h), Err(Tamper::Inserted { seq: 4 }));
        // Appended after the head.
        let mut appended = l.clone();
        appended.push(next_record(head(&l), forged.entry()));
        assert_eq!(check(&appended, h), Err(Tamper::Inserted { seq: 11 }));
    }

    #[test]
    fn names_two_swapped_records() {
        let l = log(10);
        let h = head(&l);
        let mut sw = l.clone();
        sw.swap(5, 6);
        sw[5].seq = 6;
        sw[6].seq = 7;
        assert_eq!(check(&sw, h), Err(Tamper::Reordered { seq: 6, was: 7 }));
    }
}
