//! Response masking for callers without a route's PII scope: personal fields in TikTok responses
//! are replaced wherever they appear (orders, line items, packages, addresses, conversations,
//! warehouses...), everything else is left byte-for-byte as TikTok sent it.
//!
//! Replacement policy, the same for every field: a personal string or number becomes a JSON
//! string, either the mask `"***"` or, for identifiers callers may need to group by (buyer
//! `user_id`, e-mail, phone, tracking numbers), a keyed pseudonym `"pii:..."`. Empty strings,
//! booleans and nulls stay as they are (they carry no personal value). Strings under fields the
//! catalogue does not know are scanned by the detectors and findings replaced inside them.

use super::catalogue::{Ctx, Treatment};
use super::detectors::{Finding, is_gtin, is_plain_name};
use super::engine::PrivacyEngine;
use super::error::MaskError;
use super::json_walk::{self, Scalar, ScalarKind, Visitor, push_json_string};
use super::kind::PiiKind;

/// What replaces a hidden personal value in a masked response.
pub const MASK: &str = "***";

/// Masks `body` (a TikTok JSON response). The result is valid JSON with the same structure; a body
/// that is not valid JSON is an error, never passed through.
pub fn mask_tiktok_response(body: &[u8], engine: &PrivacyEngine) -> Result<Vec<u8>, MaskError> {
    engine.mask_response(body)
}

impl PrivacyEngine {
    /// See [`mask_tiktok_response`].
    pub fn mask_response(&self, body: &[u8]) -> Result<Vec<u8>, MaskError> {
        let mut v = ResponseVisitor { engine: self };
        Ok(json_walk::walk(body, &self.catalogue, &mut v, true)?.unwrap_or_default())
    }
}

struct ResponseVisitor<'e> {
    engine: &'e PrivacyEngine,
}

impl Visitor for ResponseVisitor<'_> {
    fn key(&mut self, _: Ctx, key: &Scalar<'_>, r: &mut String) -> bool {
        if is_plain_name(key.raw) {
            return false;
        }
        let text = key.text();
        let found = self.engine.detectors.find_all(&text);
        self.replace_findings(&text, &found, r)
    }

    fn scalar(&mut self, ctx: Ctx, s: &Scalar<'_>, r: &mut String) -> bool {
        if matches!(s.kind, ScalarKind::Bool | ScalarKind::Null) || s.is_empty_string() {
            return false;
        }
        let (kind, treatment) = match ctx {
            Ctx::Keep | Ctx::SafeTree => return false,
            Ctx::Personal { kind, treatment } => (kind, treatment),
            Ctx::Sealed => (PiiKind::PersonalField, Treatment::Hide),
            Ctx::Unknown => return self.scan_unknown(s, r),
            Ctx::ProductCode if is_gtin(&s.text()) => return false,
            Ctx::ProductCode => return self.scan_unknown(s, r),
            Ctx::FreeText => return self.scan_free_text(s, r),
        };
        r.push('"');
        if treatment == Treatment::Pseudonymise && !kind.is_secret() {
            self.engine
                .pseudonymizer
                .write_pseudonym(kind, &s.text(), r);
        } else {
            r.push_str(MASK);
        }
        r.push('"');
        true
    }
}

impl ResponseVisitor<'_> {
    /// A string under an unknown field keeps its value unless the detectors find something in it.
    fn scan_unknown(&self, s: &Scalar<'_>, r: &mut String) -> bool {
        if s.kind != ScalarKind::Str {
            return false;
        }
        let text = s.text();
        let found = self.engine.detectors.find_all(&text);
        self.replace_findings(&text, &found, r)
    }

    /// Free text from TikTok (`message`): an error answer may repeat what it was sent, so the
    /// detectors and personal `key: value` pairs are both applied; `"Success"` stays as it is.
    fn scan_free_text(&self, s: &Scalar<'_>, r: &mut String) -> bool {
        if s.kind != ScalarKind::Str {
            return false;
        }
        let text = s.text();
        let found = self.engine.text_findings(&text);
        self.replace_findings(&text, &found, r)
    }

    /// Writes `text` with every finding masked as a JSON string into `r`; false if none.
    fn replace_findings(&self, text: &str, found: &[Finding], r: &mut String) -> bool {
        if found.is_empty() {
            return false;
        }
        let mut masked = String::with_capacity(text.len());
        let mut at = 0;
        for f in found {
            masked.push_str(&text[at..f.start]);
            if f.treatment == Treatment::Pseudonymise && !f.kind.is_secret() {
                self.engine.pseudonymizer.write_pseudonym(
                    f.kind,
                    &text[f.start..f.end],
                    &mut masked,
                );
            } else {
                masked.push_str(MASK);
            }
            at = f.end;
        }
        masked.push_str(&text[at..]);
        push_json_string(r, &masked);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::engine::test_support::engine;
    use serde_json::Value;

    const ORDER_DETAIL: &str = include_str!("testdata/order_detail.json");
    const ORDER_SEARCH: &str = include_str!("testdata/order_search.json");
    const PACKAGE_DETAIL: &str = include_str!("testdata/package_detail.json");
    const CONVERSATIONS: &str = include_str!("testdata/conversations.json");
    const WAREHOUSES: &str = include_str!("testdata/warehouses.json");
    const SHIPPING_DOCUMENT: &str = include_str!("testdata/shipping_document.json");
    const PRODUCT_SEARCH: &str = include_str!("testdata/product_search.json");
    const FINANCE_STATEMENTS: &str = include_str!("testdata/finance_statements.json");
    const SELLER_SHOPS: &str = include_str!("testdata/seller_shops.json");

    /// Personal fields per TIKTOK.md, restated here independently of the catalogue.
    const EXPECTED_PERSONAL: &[&str] = &[
        "buyer_email",
        "buyer_message",
        "user_id",
        "cpf",
        "cpf_name",
        "payment_auth_code",
        "payment_method_name",
        "tracking_number",
        "last_mile_tracking_number",
        "seller_note",
        "consultation_id",
        "doc_url",
        "nickname",
        "avatar",
        "im_user_id",
        "content",
    ];
    /// Objects whose members are all personal, except the labels in `LABELS`.
    const EXPECTED_SEALED: &[&str] = &[
        "recipient_address",
        "sender_address",
        "address",
        "sender",
        "participants",
    ];
    const LABELS: &[&str] = &[
        "address_level_name",
        "address_level",
        "role",
        "buyer_platform",
    ];

    fn is_masked(v: &Value) -> bool {
        match v {
            Value::String(s) => {
                s == MASK
                    || (s.len() == crate::privacy::pseudonym::PSEUDONYM_LEN
                        && s.starts_with("pii:"))
            }
            _ => false,
        }
    }

    /// Compares field by field: personal values masked, every other value identical.
    fn check(
        orig: &Value,
        masked: &Value,
        personal: bool,
        sealed: bool,
        path: &str,
        n: &mut usize,
    ) {
        match (orig, masked) {
            (Value::Object(a), Value::Object(b)) => {
                assert_eq!(a.len(), b.len(), "{path}: same members");
                for (k, av) in a {
                    let bv = b.get(k).unwrap_or_else(|| panic!("{path}.{k} missing"));
                    let p = personal
                        || EXPECTED_PERSONAL.contains(&k.as_str())
                        || (sealed
                            && !LABELS.contains(&k.as_str())
                            && !EXPECTED_SEALED.contains(&k.as_str())
                            && k != "district_info"
                            && k != "delivery_preferences"
                            && k != "geolocation");
                    let s = sealed || EXPECTED_SEALED.contains(&k.as_str());
                    check(av, bv, p, s, &format!("{path}.{k}"), n);
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                assert_eq!(a.len(), b.len(), "{path}: same length");
                for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                    check(av, bv, personal, sealed, &format!("{path}[{i}]"), n);
                }
            }
            (Value::String(s), _) if personal && !s.is_empty() => {
                assert!(is_masked(masked), "{path}: {masked} should be masked");
                *n += 1;
            }
            (Value::Number(_), _) if personal => {
                assert!(is_masked(masked), "{path}: {masked} should be masked");
                *n += 1;
            }
            _ => assert_eq!(orig, masked, "{path}: non-personal value changed"),
        }
    }

    fn masked_field_count(sample: &str) -> (usize, String) {
        let e = engine();
        let out = mask_tiktok_response(sample.as_bytes(), &e).expect("masks");
        let out = String::from_utf8(out).expect("UTF-8");
        let orig: Value = serde_json::from_str(sample).expect("sample is JSON");
        let masked: Value = serde_json::from_str(&out).expect("output is valid JSON");
        let mut n = 0;
        check(&orig, &masked, false, false, "$", &mut n);
        (n, out)
    }

    #[test]
    fn order_detail_sample_masked_field_by_field() {
        let (n, out) = masked_field_count(ORDER_DETAIL);
        assert_eq!(n, 28, "fields masked");
        for leaked in [
            "David Kong",
            "Coleman",
            "(+1)213",
            "ジョン",
            "ドゥ",
            "95110",
            "Ribbleton",
            "bristol",
            "Suite 100",
            "Olímpia",
            "Juscelino",
            "United Kingdom",
            "Front Door",
            "Unit one",
            "Please ship asap",
            "JX12345",
            "seller note",
            "3213-31231412",
            "AUTH123457",
            "CCDC",
            "v2b2V5",
            "7021436810468230477",
            "John Smith",
            "123241",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked");
        }
        // Labels inside the address stay, as do ids and amounts around it.
        assert!(out.contains(r#""address_level_name":"Country""#));
        assert!(out.contains(r#""id":"576461413038785752""#));
    }

    #[test]
    fn order_search_sample_masked_field_by_field() {
        let (n, out) = masked_field_count(ORDER_SEARCH);
        assert_eq!(n, 27, "fields masked");
        assert!(out.contains(r#""next_page_token":"6AsPQsUMvH3RkchNUPPh22NROHkE0D8pmq/N5M1kHYcZmtRyv9aVrNv65W7Q6tFA+7D1ud64MPNz5OaT""#));
        assert!(out.contains(r#""total_count":22113"#));
        // line_items[].tracking_number is masked too.
        let v: Value = serde_json::from_str(&out).expect("JSON");
        assert!(is_masked(
            &v["data"]["orders"][0]["line_items"][0]["tracking_number"]
        ));
    }

    #[test]
    fn package_detail_sample_masks_recipient_and_sender() {
        let (n, out) = masked_field_count(PACKAGE_DETAIL);
        assert!(n >= 20, "{n}");
        assert!(!out.contains("Zay") && !out.contains("Coleman"));
        let v: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["data"]["sender_address"]["region_code"], MASK);
        assert_eq!(v["data"]["package_status"], "PROCESSING");
    }

    #[test]
    fn conversations_warehouses_and_labels_masked() {
        let (n, out) = masked_field_count(CONVERSATIONS);
        assert!(
            n >= 8 && !out.contains("Albert") && !out.contains("simple text message"),
            "{out}"
        );
        let (n, out) = masked_field_count(WAREHOUSES);
        assert!(
            n >= 15
                && !out.contains("工藤")
                && !out.contains("188****2234")
                && !out.contains("45.41634"),
            "{out}"
        );
        let (n, out) = masked_field_count(SHIPPING_DOCUMENT);
        assert!(
            n == 2 && !out.contains("wsos641232") && !out.contains("752455325694"),
            "{out}"
        );
    }

    #[test]
    fn non_personal_responses_come_back_byte_identical() {
        let e = engine();
        for sample in [PRODUCT_SEARCH, FINANCE_STATEMENTS, SELLER_SHOPS] {
            assert_eq!(
                mask_tiktok_response(sample.as_bytes(), &e).expect("masks"),
                sample.as_bytes()
            );
        }
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let e = engine();
        let body = br#"{"data":{"orders":[{"id":7494049642642441621,"shop_id":18446744073709551615,"big":123456789012345678901234567890,"user_id":7021436810468230477,"payment":{"total_amount":12.50,"tax":1e-7}}]}}"#;
        let out = String::from_utf8(mask_tiktok_response(body, &e).expect("masks")).expect("UTF-8");
        assert!(out.contains(r#""id":7494049642642441621"#), "{out}");
        assert!(out.contains(r#""shop_id":18446744073709551615"#), "{out}");
        assert!(
            out.contains(r#""big":123456789012345678901234567890"#),
            "{out}"
        );
        assert!(out.contains(r#""total_amount":12.50,"tax":1e-7"#), "{out}");
        let expected = e
            .pseudonymizer
            .pseudonym(PiiKind::UserId, "7021436810468230477");
        assert!(out.contains(&format!(r#""user_id":"{expected}""#)), "{out}");
    }

    #[test]
    fn pseudonyms_are_stable_across_responses_and_restarts() {
        let a = String::from_utf8(
            mask_tiktok_response(ORDER_DETAIL.as_bytes(), &engine()).expect("masks"),
        )
        .expect("UTF-8");
        let b = String::from_utf8(
            mask_tiktok_response(ORDER_SEARCH.as_bytes(), &engine()).expect("masks"),
        )
        .expect("UTF-8");
        let va: Value = serde_json::from_str(&a).expect("JSON");
        let vb: Value = serde_json::from_str(&b).expect("JSON");
        // Same buyer in both samples: same pseudonym, from two separately built engines.
        assert_eq!(
            va["data"]["orders"][0]["user_id"],
            vb["data"]["orders"][0]["user_id"]
        );
        assert_eq!(
            va["data"]["orders"][0]["buyer_email"],
            vb["data"]["orders"][0]["buyer_email"]
        );
    }

    #[test]
    fn unknown_fields_are_scanned_and_new_fields_under_addresses_hidden() {
        let e = engine();
        let body = br#"{"data":{"orders":[{"id":"1","gift_card_note":"call me on +44 20 7946 0958 or mail ana@example.org","recipient_address":{"what3words":"filled.count.soap","name":"Ana"}}]}}"#;
        let out = String::from_utf8(mask_tiktok_response(body, &e).expect("masks")).expect("UTF-8");
        assert!(
            !out.contains("7946") && !out.contains("ana@example.org"),
            "{out}"
        );
        assert!(out.contains("call me on pii:"), "{out}");
        assert!(
            !out.contains("filled.count.soap") && !out.contains("\"Ana\""),
            "{out}"
        );
    }

    #[test]
    fn tiktok_error_messages_echoing_buyer_data_are_masked() {
        let e = engine();
        let body = br#"{"code":21011001,"message":"Invalid recipient: buyer_email maria.q@example.com, phone +1 415-555-0100 ext. 23, recipient_name: Marisol Quintanilha, full_address: 4187 Wintergreen Terrace","request_id":"2024061110153001","data":{"errors":[{"code":1,"message":"card 4111 1111 1111 1111 refused"}]}}"#;
        let out = String::from_utf8(mask_tiktok_response(body, &e).expect("masks")).expect("UTF-8");
        for leaked in [
            "maria.q",
            "555-0100",
            "ext. 23",
            "Marisol",
            "Wintergreen",
            "4111 1111",
        ] {
            assert!(!out.contains(leaked), "{leaked}: {out}");
        }
        let v: Value = serde_json::from_str(&out).expect("JSON");
        let message = v["message"].as_str().expect("still a string");
        assert!(message.starts_with("Invalid recipient: "), "{message}");
        assert_eq!(v["code"], 21011001);
        assert_eq!(v["request_id"], "2024061110153001");
        // A success envelope's message is left alone, as is TikTok's own error wording.
        for body in [
            &br#"{"code":0,"message":"Success","request_id":"1","data":{}}"#[..],
            br#"{"code":36009003,"message":"The order ID 576461413038785752 does not exist.","request_id":"1"}"#,
        ] {
            assert_eq!(mask_tiktok_response(body, &e).expect("masks"), body);
        }
    }

    #[test]
    fn invalid_bodies_are_errors_not_passed_through() {
        let e = engine();
        assert!(matches!(
            mask_tiktok_response(b"{\"buyer_email\":\"a@b.co\"", &e),
            Err(MaskError::InvalidJson { .. })
        ));
        assert!(matches!(
            mask_tiktok_response(b"\xff\xfe", &e),
            Err(MaskError::NotUtf8 { .. })
        ));
    }
}

/// Properties over generated documents: masking only ever replaces scalars, so the shape a
/// caller parses is the one TikTok sent, and values with nothing personal stay as they were.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::privacy::engine::test_support::engine;
    use proptest::prelude::*;
    use serde_json::{Map, Value};
    use std::sync::LazyLock;

    /// Built once: compiling the detectors per case would dominate the run time.
    static ENGINE: LazyLock<PrivacyEngine> = LazyLock::new(engine);

    /// Field names the catalogue treats as personal, sealed or free text: a value below one
    /// of them may be masked. Every other generated name is unknown to the catalogue.
    const SENSITIVE_KEYS: &[&str] = &[
        "buyer_email",
        "user_id",
        "tracking_number",
        "recipient_address",
        "address",
        "phone_number",
        "name",
        "message",
        "content",
    ];
    const NEUTRAL_KEYS: &[&str] = &["zz_alpha", "zz_beta", "zz_count", "zz_items", "zz_flag"];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => prop::sample::select(NEUTRAL_KEYS).prop_map(str::to_owned),
            1 => prop::sample::select(SENSITIVE_KEYS).prop_map(str::to_owned),
        ]
    }

    /// Strings with nothing a detector should flag.
    fn plain_string() -> impl Strategy<Value = String> {
        "[a-z]{0,8}"
    }

    fn leaf(plain_only: bool) -> BoxedStrategy<Value> {
        let plain = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1.0e9f64..1.0e9).prop_map(Value::from),
            plain_string().prop_map(Value::String),
        ];
        if plain_only {
            return plain.boxed();
        }
        prop_oneof![
            3 => plain,
            1 => prop::sample::select(vec![
                "jane.doe@example.com",
                "+1 202 555 0143",
                "4111 1111 1111 1111",
                "call me at 13800138000",
                "token=abc123secret",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
            1 => "\\PC{0,16}".prop_map(Value::String),
        ]
        .boxed()
    }

    fn document(plain_only: bool) -> impl Strategy<Value = Value> {
        leaf(plain_only).prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// A masked value: the mask, a pseudonym, or a string with findings replaced inside.
    fn looks_masked(v: &Value) -> bool {
        matches!(v, Value::String(s) if s.contains(MASK) || s.contains("pii:"))
    }

    /// Same keys, same array lengths, same types and values except where a scalar was masked;
    /// outside a sensitive field, a value with nothing personal in it is never touched.
    fn compare(orig: &Value, masked: &Value, tainted: bool, at: &str) -> Result<(), TestCaseError> {
        match (orig, masked) {
            (Value::Object(a), Value::Object(b)) => {
                let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
                prop_assert_eq!(ka, kb, "{}: keys changed", at);
                for (k, av) in a {
                    let t = tainted || SENSITIVE_KEYS.contains(&k.as_str());
                    compare(av, &b[k], t, &format!("{at}.{k}"))?;
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                prop_assert_eq!(a.len(), b.len(), "{}: array length changed", at);
                for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                    compare(av, bv, tainted, &format!("{at}[{i}]"))?;
                }
            }
            (a, b) if a == b => {}
            (a, b) => {
                let maskable =
                    matches!(a, Value::Number(_)) || matches!(a, Value::String(s) if !s.is_empty());
                prop_assert!(
                    maskable && looks_masked(b),
                    "{}: {:?} became {:?}",
                    at,
                    a,
                    b
                );
                let plain = match a {
                    Value::String(s) => s.bytes().all(|c| c.is_ascii_lowercase()),
                    _ => true,
                };
                prop_assert!(
                    tainted || !plain,
                    "{}: non-personal {:?} became {:?}",
                    at,
                    a,
                    b
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn masking_keeps_the_structure(doc in document(false)) {
            let body = serde_json::to_vec(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let masked = ENGINE.mask_response(&body)
                .map_err(|e| TestCaseError::fail(format!("valid JSON refused: {e}")))?;
            let masked: Value = serde_json::from_slice(&masked)
                .map_err(|e| TestCaseError::fail(format!("masked output is not JSON: {e}")))?;
            compare(&doc, &masked, false, "$")?;
        }

        #[test]
        fn nothing_personal_means_nothing_changed(doc in document(true)) {
            // Only unknown field names and plain values: the bytes must come back unchanged.
            let doc = strip_sensitive(doc);
            let body = serde_json::to_vec(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let masked = ENGINE.mask_response(&body)
                .map_err(|e| TestCaseError::fail(format!("valid JSON refused: {e}")))?;
            prop_assert_eq!(String::from_utf8_lossy(&masked), String::from_utf8_lossy(&body));
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = ENGINE.mask_response(&body);
        }
    }

    /// Renames every sensitive member to a neutral one (keeping its value).
    fn strip_sensitive(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let k = if SENSITIVE_KEYS.contains(&k.as_str()) {
                            format!("zz_{k}")
                        } else {
                            k
                        };
                        (k, strip_sensitive(v))
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(strip_sensitive).collect()),
            other => other,
        }
    }
}
