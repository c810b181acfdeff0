//! `tiktok-gateway audit verify`: walks the whole chain in the state store, checks every link and
//! every checkpoint signature, and names the first record that was changed, removed, inserted
//! or reordered.

use std::collections::VecDeque;

use super::chain::{ChainCheck, Tamper};
use super::checkpoint::{CHECKPOINT_ACTION, Checkpoint, key_id};
use crate::state::{StateError, StateStore};

/// Records read per round trip.
const PAGE: usize = 1000;
/// Recent hashes kept to check the records checkpoints cover (a checkpoint covers the head of
/// its moment, so the record it covers is always close before it).
const WINDOW: usize = 100_000;

/// What a passing check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub checkpoints: u64,
    /// The last seq covered by a checkpoint whose signature checked.
    pub signed_through: Option<u64>,
    /// Whether signatures were checked (a public key was given).
    pub signatures_checked: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "audit log intact: {} records, {} checkpoints",
            self.records, self.checkpoints
        )?;
        match (self.signatures_checked, self.signed_through) {
            (false, _) => write!(f, " (signatures not checked: no public key)"),
            (true, Some(seq)) => write!(
                f,
                ", signed through record {seq} ({} after it not yet covered by a signature)",
                self.records.saturating_sub(seq)
            ),
            (true, None) => write!(f, ", none signed yet"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("audit log tampered with: {0}")]
    Tampered(Tamper),
    #[error("audit log cannot be read: {0}")]
    Store(#[from] StateError),
}

/// Checks the chain in `store`; with `public`, every checkpoint's signature too.
pub async fn verify(
    store: &dyn StateStore,
    public: Option<[u8; 32]>,
) -> Result<Summary, VerifyError> {
    let mut chain = ChainCheck::default();
    let mut recent: VecDeque<(u64, [u8; 32])> = VecDeque::new();
    let mut summary = Summary {
        records: 0,
        checkpoints: 0,
        signed_through: None,
        signatures_checked: public.is_some(),
    };
    // The head is read first: records appended while the check runs are not held against it.
    let head = store.audit_head().await?;
    let head_seq = head.map_or(0, |h| h.0);
    let mut beyond_head = false;
    let mut after = 0;
    'pages: loop {
        let page = store.audit_range(after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for record in &page {
            if record.seq > head_seq {
                beyond_head = true;
                break 'pages;
            }
            chain.push(record).map_err(VerifyError::Tampered)?;
            summary.records += 1;
            if record.action == CHECKPOINT_ACTION {
                summary.checkpoints += 1;
                if let Some(public) = &public {
                    let bad = |reason: String| {
                        VerifyError::Tampered(Tamper::BadCheckpoint {
                            seq: record.seq,
                            reason,
                        })
                    };
                    let cp = Checkpoint::parse(record).map_err(bad)?;
                    if cp.key_id != key_id(public) {
                        return Err(bad(format!(
                            "signed by key {}, not by the given key {}",
                            cp.key_id,
                            key_id(public)
                        )));
                    }
                    if !cp.verify(public) {
                        return Err(bad("signature does not verify".into()));
                    }
                    match recent.iter().find(|(seq, _)| *seq == cp.covers_seq) {
                        Some((_, hash)) if *hash == cp.covers_hash => {
                            summary.signed_through = Some(cp.covers_seq);
                        }
                        Some(_) => {
                            return Err(VerifyError::Tampered(Tamper::Changed {
                                seq: cp.covers_seq,
                            }));
                        }
                        None => {
                            return Err(bad(format!(
                                "covers record {}, which is not among the records before it",
                                cp.covers_seq
                            )));
                        }
                    }
                }
            }
            recent.push_back((record.seq, record.hash));
            if recent.len() > WINDOW {
                recent.pop_front();
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    chain.finish(head).map_err(VerifyError::Tampered)?;
    // Records past the head read at the start: appended meanwhile (the head moved), or put
    // there without moving the head.
    if beyond_head && store.audit_head().await? == head {
        return Err(VerifyError::Tampered(Tamper::Inserted {
            seq: head_seq + 1,
        }));
    }
    Ok(summary)
}
