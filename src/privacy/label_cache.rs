//! Redacted short labels, remembered per thread. A caller's subject and its user agent come
//! back request after request, and running the free-text detectors over them was a fixed cost
//! of every access-log line; the redaction of a text depends only on the text and the engine,
//! so each worker thread keeps the last few answers, tagged with the engine that gave them (a
//! reload's new engine never sees an old engine's answer).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use super::engine::PrivacyEngine;

/// Texts remembered per thread (direct-mapped by a hash of the text).
const SLOTS: usize = 32;
/// Longer texts are redacted each time: subjects and logged user agents are at most 256 bytes.
const MAX_CACHED_LEN: usize = 256;

struct Slot {
    engine: u64,
    text: Box<str>,
    /// `None`: the redaction left the text as it was.
    redacted: Option<Arc<str>>,
}

thread_local! {
    static LABELS: RefCell<[Option<Slot>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

fn slot_of(text: &str) -> usize {
    // FNV-1a: short keys, no need for a keyed hash (a collision only costs a recomputation).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 59) as usize % SLOTS
}

impl PrivacyEngine {
    /// [`PrivacyEngine::redact_text`] for a short label that recurs (a subject, a user agent):
    /// the same answer, computed once per thread while the text stays in its slot.
    pub fn redact_label<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.len() > MAX_CACHED_LEN {
            return self.redact_text(text);
        }
        let engine = self.pseudonymizer.id();
        let slot = slot_of(text);
        LABELS.with_borrow_mut(|labels| {
            if let Some(hit) = &labels[slot]
                && hit.engine == engine
                && *hit.text == *text
            {
                return match &hit.redacted {
                    None => Cow::Borrowed(text),
                    Some(r) => Cow::Owned(r.to_string()),
                };
            }
            let redacted = self.redact_text(text);
            labels[slot] = Some(Slot {
                engine,
                text: text.into(),
                redacted: match &redacted {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(r) => Some(Arc::from(r.as_str())),
                },
            });
            redacted
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Secret;
    use crate::privacy::engine::test_support::engine;
    use crate::privacy::engine::{PrivacyEngine, PrivacySettings};

    #[test]
    fn a_label_redacts_as_the_free_text_redactor_does_first_time_and_after() {
        let engine = engine();
        for text in [
            "anonymous",
            "maria.garcia@example.com",
            "curl/8.5.0",
            "svc-orders (contact +1 415 555 0100)",
        ] {
            let expected = engine.redact_text(text).into_owned();
            assert_eq!(engine.redact_label(text), expected, "{text}");
            assert_eq!(engine.redact_label(text), expected, "{text}, remembered");
        }
        assert_ne!(
            engine.redact_label("maria.garcia@example.com"),
            "maria.garcia@example.com"
        );
    }

    #[test]
    fn another_engine_never_reads_an_earlier_engines_answer() {
        let keyed = |key: &str| {
            PrivacyEngine::new(&PrivacySettings::with_key(Secret::new(key))).expect("engine")
        };
        let first = keyed("first-pseudonym-key-0123456789");
        let second = keyed("second-pseudonym-key-0123456789");
        let text = "maria.garcia@example.com";
        // Pseudonyms differ by key, so an answer read from the wrong engine would show.
        assert_ne!(first.redact_text(text), second.redact_text(text));
        let from_first = first.redact_label(text).into_owned();
        assert_eq!(second.redact_label(text), second.redact_text(text));
        assert_eq!(first.redact_label(text), from_first);
    }

    #[test]
    fn a_long_text_is_redacted_each_time() {
        let engine = engine();
        let long = format!("{} maria.garcia@example.com", "a".repeat(300));
        assert_eq!(engine.redact_label(&long), engine.redact_text(&long));
    }
}
