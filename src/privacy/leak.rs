//! Leak detection for responses on routes not cleared for PII (and webhook forwards): which kinds
//! of personal data a body carries, so the pipeline can count `pii_leak_detected_total{route,kind}`,
//! log a security event and optionally block. Cheap when there is nothing to find: one validating
//! pass over the JSON plus the detectors' literal prefilters.

use super::catalogue::Ctx;
use super::detectors::resolve_overlaps;
use super::engine::PrivacyEngine;
use super::json_walk::{self, Scalar, ScalarKind, Visitor};
use super::kind::PiiKind;

/// The kinds of personal data found in `body`, sorted and deduplicated: personal fields with a
/// non-empty value (JSON bodies) and detector hits anywhere in the text (any body).
pub fn scan_for_leaks(body: &[u8], engine: &PrivacyEngine) -> Vec<PiiKind> {
    let mut v = LeakVisitor { kinds: Vec::new() };
    // A body that is not JSON still gets the detector scan below.
    let _ = json_walk::walk(body, &engine.catalogue, &mut v, false);
    let mut kinds = v.kinds;
    let text = String::from_utf8_lossy(body);
    // Overlapping candidates are resolved as redaction would, but a span claimed by two kinds
    // (a TikTok token that is also an `access_token` value) reports both.
    let all = engine.detectors.candidates_in(&text);
    let mut kept = all.clone();
    resolve_overlaps(&mut kept);
    for f in &all {
        if kept.iter().any(|k| k.start == f.start && k.end == f.end) {
            kinds.push(f.kind);
        }
    }
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

impl PrivacyEngine {
    /// See [`scan_for_leaks`].
    pub fn scan_for_leaks(&self, body: &[u8]) -> Vec<PiiKind> {
        scan_for_leaks(body, self)
    }
}

struct LeakVisitor {
    kinds: Vec<PiiKind>,
}

impl Visitor for LeakVisitor {
    fn scalar(&mut self, ctx: Ctx, s: &Scalar<'_>, _: &mut String) -> bool {
        let has_value = matches!(s.kind, ScalarKind::Str | ScalarKind::Num) && !s.is_empty_string();
        let kind = match ctx {
            Ctx::Personal { kind, .. } => Some(kind),
            Ctx::Sealed => Some(PiiKind::PersonalField),
            Ctx::Keep | Ctx::Unknown => None,
        };
        if let (true, Some(kind)) = (has_value, kind)
            && !self.kinds.contains(&kind)
        {
            self.kinds.push(kind);
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
