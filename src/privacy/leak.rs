//! Leak detection for responses on routes not cleared for PII (and webhook forwards): which kinds
//! of personal data a body carries, so the pipeline can count `pii_leak_detected_total{route,kind}`,
//! log a security event and optionally block. Cheap when there is nothing to find: one validating
//! pass over the JSON plus the detectors' literal prefilters.
//!
//! A JSON body is scanned the way masking reads it: personal fields (and sealed objects) count by
//! their name; the free-text detectors run over member names and over values whose field is not
//! known to be safe. Values of safe fields (ids, SKUs, timestamps, amounts, a payment channel's
//! registry number) are not pattern-scanned: a 19-digit return id that passes Luhn is not a card,
//! and a GTIN in a product identifier field with a valid check digit is not a phone. Any other
//! body is scanned as text.

use super::catalogue::Ctx;
use super::detectors::{is_gtin, is_plain_name, resolve_overlaps};
use super::engine::PrivacyEngine;
use super::json_walk::{self, Scalar, ScalarKind, Visitor};
use super::kind::PiiKind;

/// The kinds of personal data found in `body`, sorted and deduplicated.
pub fn scan_for_leaks(body: &[u8], engine: &PrivacyEngine) -> Vec<PiiKind> {
    let mut v = LeakVisitor {
        engine,
        kinds: Vec::new(),
    };
    let mut kinds = if json_walk::walk(body, &engine.catalogue, &mut v, false).is_ok() {
        v.kinds
    } else {
        // Not JSON: the whole text goes through the detectors.
        let mut kinds = Vec::new();
        detector_kinds(engine, &String::from_utf8_lossy(body), &mut kinds);
        kinds
    };
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// Detector kinds in `text`. Overlapping candidates are resolved as redaction would, but a span
/// claimed by two kinds (a TikTok token that is also an `access_token` value) reports both.
fn detector_kinds(engine: &PrivacyEngine, text: &str, out: &mut Vec<PiiKind>) {
    let all = engine.detectors.candidates_in(text);
    if all.is_empty() {
        return;
    }
    let mut kept = all.clone();
    resolve_overlaps(&mut kept);
    for f in &all {
        if kept.iter().any(|k| k.start == f.start && k.end == f.end) {
            out.push(f.kind);
        }
    }
}

impl PrivacyEngine {
    /// See [`scan_for_leaks`].
    pub fn scan_for_leaks(&self, body: &[u8]) -> Vec<PiiKind> {
        scan_for_leaks(body, self)
    }
}

struct LeakVisitor<'e> {
    engine: &'e PrivacyEngine,
    kinds: Vec<PiiKind>,
}

impl Visitor for LeakVisitor<'_> {
    fn key(&mut self, _: Ctx, key: &Scalar<'_>, _: &mut String) -> bool {
        if !is_plain_name(key.raw) {
            detector_kinds(self.engine, &key.text(), &mut self.kinds);
        }
        false
    }

    fn scalar(&mut self, ctx: Ctx, s: &Scalar<'_>, _: &mut String) -> bool {
        let has_value = matches!(s.kind, ScalarKind::Str | ScalarKind::Num) && !s.is_empty_string();
        if !has_value {
            return false;
        }
        let text = s.text();
        match ctx {
            Ctx::Keep | Ctx::SafeTree => {}
            Ctx::ProductCode if is_gtin(&text) => {}
            Ctx::Personal { kind, .. } => {
                self.kinds.push(kind);
                detector_kinds(self.engine, &text, &mut self.kinds);
            }
            Ctx::Sealed => {
                self.kinds.push(PiiKind::PersonalField);
                detector_kinds(self.engine, &text, &mut self.kinds);
            }
            Ctx::Unknown | Ctx::ProductCode => detector_kinds(self.engine, &text, &mut self.kinds),
            Ctx::FreeText => self
                .kinds
                .extend(self.engine.text_findings(&text).iter().map(|f| f.kind)),
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::engine::test_support::engine;

    #[test]
    fn order_responses_leak_many_kinds() {
        let e = engine();
        let kinds = scan_for_leaks(include_bytes!("testdata/order_detail.json"), &e);
        for k in [
            PiiKind::Email,
            PiiKind::UserId,
            PiiKind::Phone,
            PiiKind::Message,
            PiiKind::Name,
            PiiKind::Address,
            PiiKind::Cpf,
            PiiKind::Payment,
            PiiKind::TrackingNumber,
        ] {
            assert!(kinds.contains(&k), "{k:?} not in {kinds:?}");
        }
        let kinds = scan_for_leaks(include_bytes!("testdata/package_detail.json"), &e);
        assert!(
            kinds.contains(&PiiKind::Address) && kinds.contains(&PiiKind::PersonalField),
            "{kinds:?}"
        );
    }

    #[test]
    fn clean_responses_have_no_leaks() {
        let e = engine();
        for body in [
            &include_bytes!("testdata/product_search.json")[..],
            include_bytes!("testdata/finance_statements.json"),
            include_bytes!("testdata/seller_shops.json"),
            br#"{"code":0,"data":{"orders":[{"id":"576461413038785752","status":"UNPAID","user_id":"","buyer_message":null,"create_time":1619611561}]}}"#,
        ] {
            assert_eq!(scan_for_leaks(body, &e), Vec::<PiiKind>::new(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn detector_hits_in_any_body() {
        let e = engine();
        assert_eq!(
            scan_for_leaks(b"plain text to maria@example.com", &e),
            [PiiKind::Email]
        );
        assert_eq!(
            scan_for_leaks(
                br#"{"note":"card 4111 1111 1111 1111","ip":"203.0.113.7"}"#,
                &e
            ),
            [PiiKind::PaymentCard, PiiKind::IpAddress]
        );
        assert_eq!(
            scan_for_leaks(
                br#"{"data":{"access_token":"TTP_abcdefghijklmnopqrstuvwxyz"}}"#,
                &e
            ),
            [PiiKind::TiktokToken, PiiKind::Secret]
        );
    }
}
