//! TikTok Shop request signature: HMAC-SHA256 over `secret + path + sorted(key+value) + body + secret`.
//!
//! The string to sign is never built: its pieces are fed to the MAC in order, so signing costs
//! no allocation beyond the returned hex string (and none at all with [`sign_raw`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Query keys that never take part in the signature.
const UNSIGNED_KEYS: [&str; 2] = ["sign", "access_token"];

/// Up to this many parameters are ordered on the stack; more fall back to a heap buffer.
const STACK_PARAMS: usize = 32;

/// The signature as lowercase hex, the form TikTok accepts (uppercase is rejected).
///
/// `params` are the query parameters with **decoded** values; `sign` and `access_token` are
/// ignored if present. Keys are expected to be unique (the query module refuses repeats); equal
/// keys would keep their given order. `body` is the exact bytes sent, or `None` for a multipart
/// upload, whose body TikTok leaves out of the signature.
pub fn sign(app_secret: &[u8], path: &str, params: &[(&str, &str)], body: Option<&[u8]>) -> String {
    hex::encode(sign_raw(app_secret, path, params, body))
}

/// The raw 32-byte signature (see [`sign`]).
pub fn sign_raw(
    app_secret: &[u8],
    path: &str,
    params: &[(&str, &str)],
    body: Option<&[u8]>,
) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the type total.
    let mut mac = match HmacSha256::new_from_slice(app_secret) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(app_secret);
    mac.update(path.as_bytes());
    for_each_sorted(params, |key, value| {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    });
    if let Some(body) = body {
        mac.update(body);
    }
    mac.update(app_secret);
    mac.finalize().into_bytes().into()
}

/// Calls `f` for each signed parameter in byte-wise key order.
fn for_each_sorted(params: &[(&str, &str)], mut f: impl FnMut(&str, &str)) {
    let signed = |(key, _): &&(&str, &str)| !UNSIGNED_KEYS.contains(key);
    if params.len() <= STACK_PARAMS {
        let mut order: [&(&str, &str); STACK_PARAMS] = [&("", ""); STACK_PARAMS];
        let mut len = 0;
        for param in params.iter().filter(|p| signed(p)) {
            order[len] = param;
            len += 1;
        }
        let order = &mut order[..len];
        // Stable, so equal keys keep their order; `str` ordering is byte-wise.
        order.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in order.iter() {
            f(key, value);
        }
    } else {
        let mut order: Vec<&(&str, &str)> = params.iter().filter(|p| signed(p)).collect();
        order.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in order {
            f(key, value);
        }
    }
}

/// Whether a `content-type` names a multipart form upload, whose body is not signed.
///
/// The media type is parsed, so parameters (`; boundary=..`) and letter case do not matter.
/// A value that does not parse is compared on its essence (the part before `;`) instead.
pub fn is_multipart(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    match value.trim().parse::<mime::Mime>() {
        Ok(m) => m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA,
        Err(_) => value
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn official_get_vector() {
        let params = [("app_key", "29a39d"), ("timestamp", "1623812664")];
        let got = sign(b"e59af819cc", "/authorization/202309/shops", &params, None);
        assert_eq!(
            got,
            "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8"
        );
        // And it is the HMAC of the published string to sign.
        let published =
            "e59af819cc/authorization/202309/shopsapp_key29a39dtimestamp1623812664e59af819cc";
        assert_eq!(got, hmac_hex(b"e59af819cc", published.as_bytes()));
    }

    #[test]
    fn official_body_vector() {
        let body = br#"{"address":"https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}"#;
        // Given out of order on purpose: the signer sorts.
        let params = [
            ("timestamp", "1696909648"),
            ("shop_cipher", "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK"),
            ("app_key", "68xu9ks5p4i8"),
        ];
        let got = sign(b"e59af819cc", "/event/202309/webhooks", &params, Some(body));
        assert_eq!(
            got,
            "cd0d6268252f4ba293bf7ea4c0a2873bf9beec600d22530638564ab301435f7a"
        );
        let published = format!(
            "e59af819cc/event/202309/webhooksapp_key68xu9ks5p4i8shop_cipherROW_xkMbgAAAeVAQra0eZWebFQq5aIKtimestamp1696909648{}e59af819cc",
            std::str::from_utf8(body).unwrap()
        );
        assert_eq!(got, hmac_hex(b"e59af819cc", published.as_bytes()));
    }

    #[test]
    fn open_source_client_vector() {
        let got = sign(b"app_secret", "/test-api", &[("foo", "bar")], None);
        assert_eq!(
            got,
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
        );
    }

    #[test]
    fn output_is_lowercase_hex() {
        let got = sign(b"s", "/p", &[], None);
        assert_eq!(got.len(), 64);
        assert!(
            got.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn sign_and_access_token_are_left_out() {
        let base = sign(b"s", "/p", &[("a", "1")], None);
        let with = sign(
            b"s",
            "/p",
            &[("sign", "forged"), ("a", "1"), ("access_token", "tok")],
            None,
        );
        assert_eq!(base, with);
    }

    #[test]
    fn keys_sort_byte_wise_not_by_locale() {
        // Byte order puts uppercase before lowercase and `_` (0x5f) between them.
        let params = [("b", "1"), ("_x", "2"), ("B", "3"), ("a", "4")];
        let expected = hmac_hex(b"k", b"k/pB3_x2a4b1k");
        assert_eq!(sign(b"k", "/p", &params, None), expected);
    }

    #[test]
    fn values_are_signed_decoded() {
        let params = [("page_token", "ab+/c=="), ("q", "a b")];
        let expected = hmac_hex(b"k", b"k/ppage_tokenab+/c==qa bk");
        assert_eq!(sign(b"k", "/p", &params, None), expected);
    }

    #[test]
    fn empty_body_differs_from_empty_object() {
        let none = sign(b"k", "/p", &[], None);
        let empty = sign(b"k", "/p", &[], Some(b""));
        let object = sign(b"k", "/p", &[], Some(b"{}"));
        assert_eq!(none, empty, "an empty body adds nothing");
        assert_ne!(empty, object, "`{{}}` is two bytes that are signed");
        assert_eq!(object, hmac_hex(b"k", b"k/p{}k"));
    }

    #[test]
    fn many_params_take_the_heap_path_with_the_same_result() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{:02}", 39 - i)).collect();
        let params: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        let mut message = b"s/p".to_vec();
        for i in 0..40 {
            message.extend_from_slice(format!("k{i:02}v").as_bytes());
        }
        message.extend_from_slice(b"s");
        assert_eq!(sign(b"s", "/p", &params, None), hmac_hex(b"s", &message));
    }

    #[test]
    fn a_changed_byte_changes_the_signature() {
        let a = sign(b"k", "/p", &[("a", "1")], Some(b"{\"x\":1}"));
        assert_ne!(a, sign(b"k", "/p", &[("a", "1")], Some(b"{\"x\": 1}")));
        assert_ne!(a, sign(b"k", "/q", &[("a", "1")], Some(b"{\"x\":1}")));
        assert_ne!(a, sign(b"k", "/p", &[("a", "2")], Some(b"{\"x\":1}")));
        assert_ne!(a, sign(b"j", "/p", &[("a", "1")], Some(b"{\"x\":1}")));
    }

    #[test]
    fn multipart_detection_parses_the_media_type() {
        assert!(is_multipart(Some("multipart/form-data")));
        assert!(is_multipart(Some("multipart/form-data; boundary=----abc")));
        assert!(is_multipart(Some("Multipart/Form-Data; boundary=x")));
        assert!(is_multipart(Some("  multipart/form-data;boundary=\"q\"")));
        assert!(!is_multipart(None));
        assert!(!is_multipart(Some("application/json")));
        assert!(!is_multipart(Some("multipart/mixed; boundary=x")));
        assert!(!is_multipart(Some("text/plain; note=multipart/form-data")));
        assert!(!is_multipart(Some("multipart/form-datax")));
        assert!(!is_multipart(Some("")));
    }
}

/// The signature depends on the parameter set, never on the order the caller listed it in.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    type Params = Vec<(String, String)>;

    /// Unique keys (the query module refuses repeats), with `sign` and `access_token` possible.
    fn params() -> impl Strategy<Value = Params> {
        prop::collection::btree_map(
            prop_oneof![4 => "[a-z_]{1,10}", 1 => Just("sign".to_string()),
                        1 => Just("access_token".to_string()), 1 => "\\PC{1,6}"],
            "\\PC{0,12}",
            0..40,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    fn permuted() -> impl Strategy<Value = (Params, Params)> {
        params().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle()))
    }

    fn borrowed(p: &[(String, String)]) -> Vec<(&str, &str)> {
        p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn signature_is_stable_under_parameter_permutation(
            (ordered, shuffled) in permuted(),
            secret in prop::collection::vec(any::<u8>(), 0..48),
            path in "/[a-z0-9/]{0,30}",
            body in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        ) {
            let a = sign(&secret, &path, &borrowed(&ordered), body.as_deref());
            let b = sign(&secret, &path, &borrowed(&shuffled), body.as_deref());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn unsigned_keys_do_not_change_the_signature(
            ordered in params(),
            token in "\\PC{0,12}",
            secret in prop::collection::vec(any::<u8>(), 1..48),
        ) {
            let mut kept: Vec<(String, String)> = ordered
                .into_iter()
                .filter(|(k, _)| !UNSIGNED_KEYS.contains(&k.as_str()))
                .collect();
            let without = sign(&secret, "/p", &borrowed(&kept), None);
            kept.push(("access_token".into(), token.clone()));
            kept.insert(0, ("sign".into(), token));
            prop_assert_eq!(without, sign(&secret, "/p", &borrowed(&kept), None));
        }
    }
}
