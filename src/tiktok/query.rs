//! The caller's query string in, the signed TikTok query string out.
//!
//! A caller's raw query is decoded (`+` is a space, `%XX` a byte, the result must be UTF-8),
//! repeated keys are refused, and the keys the gateway owns are dropped. The query that goes on
//! the wire is then re-encoded from the same decoded values that were signed, so a value such as
//! a `page_token` holding `+`, `/` or `=` is signed as itself and sent percent-encoded: what is
//! sent is exactly what was signed.

use std::borrow::Cow;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::sign::{is_multipart, sign};

/// Query keys only the gateway may set; a caller's copies are dropped (compared ignoring case).
pub const GATEWAY_OWNED_KEYS: [&str; 5] = [
    "app_key",
    "sign",
    "timestamp",
    "access_token",
    "shop_cipher",
];

/// The header that carries the shop's access token (never signed).
pub const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-tts-access-token");

/// More parameters than this are refused: no TikTok endpoint takes that many, and it bounds the
/// repeated-key check.
pub const MAX_PARAMS: usize = 64;

/// Everything but RFC 3986 unreserved characters is percent-encoded, `+` included, so the
/// receiver cannot read a `+` as a space.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a caller's query was refused. Never carries a parameter value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The key is kept for the caller's code, never shown: it is request data.
    #[error("a query parameter is repeated")]
    RepeatedKey(String),
    #[error("query has a parameter with an empty name")]
    EmptyKey,
    #[error("query has a malformed percent escape")]
    BadEscape,
    #[error("query is not UTF-8 once decoded")]
    NotUtf8,
    #[error("query has more than {MAX_PARAMS} parameters")]
    TooManyParams,
}

/// A caller's query, decoded, with the gateway-owned keys removed, in the caller's order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallerQuery<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// Keys only: values are the caller's data (ids, e-mails, tokens).
impl std::fmt::Debug for CallerQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl<'a> CallerQuery<'a> {
    /// Parses a raw query string (without the leading `?`). Empty segments (`a=1&&b=2`) are
    /// skipped; a key without `=` has the empty value, which is kept and signed as such.
    pub fn parse(raw: &'a str) -> Result<Self, QueryError> {
        let mut all: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
        for segment in raw.split('&').filter(|s| !s.is_empty()) {
            if all.len() == MAX_PARAMS {
                return Err(QueryError::TooManyParams);
            }
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            let key = decode(key)?;
            if key.is_empty() {
                return Err(QueryError::EmptyKey);
            }
            if all.iter().any(|(k, _)| *k == key) {
                return Err(QueryError::RepeatedKey(key.into_owned()));
            }
            all.push((key, decode(value)?));
        }
        all.retain(|(k, _)| !is_gateway_owned(k));
        Ok(Self { pairs: all })
    }

    /// The kept parameters, decoded.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// The decoded value of `key`, if the caller sent it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

fn is_gateway_owned(key: &str) -> bool {
    GATEWAY_OWNED_KEYS
        .iter()
        .any(|owned| owned.eq_ignore_ascii_case(key))
}

/// Form-style decoding that refuses what it cannot read exactly instead of guessing.
fn decode(raw: &str) -> Result<Cow<'_, str>, QueryError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_digit(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_digit(*b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(QueryError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| QueryError::NotUtf8)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether TikTok refuses `shop_cipher` on this path: `/authorization/*`, `/seller/*`, and
/// product image/file uploads (`/product/{version}/images/upload`, `.../files/upload`). A
/// multipart upload anywhere under `/product/` counts as an upload too.
pub fn omits_shop_cipher(path: &str, is_multipart_upload: bool) -> bool {
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
    match segments.next() {
        Some("authorization" | "seller") => true,
        Some("product") => {
            let _version = segments.next();
            let upload = matches!(
                (segments.next(), segments.next(), segments.next()),
                (Some("images" | "files"), Some("upload"), None)
            );
            upload || is_multipart_upload
        }
        _ => false,
    }
}

/// The plain request an internal caller sent, as the pipeline has it.
#[derive(Clone, Copy)]
pub struct EgressRequest<'a> {
    /// The path to send to TikTok (already normalised and rewritten by routing), e.g.
    /// `/order/202309/orders/search`.
    pub path: &'a str,
    /// The caller's raw query string without `?`, if any.
    pub raw_query: Option<&'a str>,
    /// The exact body bytes that will be forwarded.
    pub body: &'a [u8],
    /// The caller's `content-type`, if any.
    pub content_type: Option<&'a str>,
}

/// The query and body are the caller's data: only their sizes are printed.
impl std::fmt::Debug for EgressRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressRequest")
            .field("path", &self.path)
            .field("query_len", &self.raw_query.map(str::len))
            .field("body_len", &self.body.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// What the gateway injects for one shop. Borrowed from the runtime config for one request.
#[derive(Clone, Copy)]
pub struct ShopCredentials<'a> {
    pub app_key: &'a str,
    pub app_secret: &'a [u8],
    pub access_token: &'a str,
    /// The shop's cipher; required unless [`omits_shop_cipher`] says the path refuses it.
    pub shop_cipher: Option<&'a str>,
}

impl std::fmt::Debug for ShopCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopCredentials")
            .field("app_key", &self.app_key)
            .field("app_secret", &"[redacted]")
            .field("access_token", &"[redacted]")
            .field("shop_cipher", &self.shop_cipher)
            .finish()
    }
}

/// Why a request could not be signed. Never carries a secret or a parameter value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignRequestError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("path must start with `/` and hold no query, fragment, space or control character")]
    BadPath,
    #[error("this TikTok path needs a shop_cipher and the shop has none")]
    ShopCipherMissing,
    #[error("clock does not give a 10-digit unix timestamp")]
    BadTimestamp,
    #[error("content-type is not a valid header value")]
    BadContentType,
    #[error("access token is not a valid header value")]
    BadAccessToken,
}

/// The outgoing request: the signed path and query, and the headers to set (replacing any the
/// caller sent). The body is forwarded unchanged: it is what was signed.
#[derive(Clone)]
pub struct SignedRequest {
    /// `path?query` with `app_key`, `timestamp`, `shop_cipher` (where allowed) and `sign`.
    pub path_and_query: String,
    /// `x-tts-access-token`, marked sensitive so HTTP libraries keep it out of debug output.
    pub access_token: HeaderValue,
    /// `content-type`: the caller's (a multipart boundary must survive) or `application/json`.
    pub content_type: HeaderValue,
    /// Whether the body was left out of the signature as a multipart upload.
    pub multipart: bool,
}

impl SignedRequest {
    /// The headers to set on the upstream request, replacing the caller's.
    pub fn headers(&self) -> [(HeaderName, &HeaderValue); 2] {
        [
            (ACCESS_TOKEN_HEADER, &self.access_token),
            (CONTENT_TYPE, &self.content_type),
        ]
    }
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("path", &self.path_and_query.split('?').next())
            .field("content_type", &self.content_type)
            .field("multipart", &self.multipart)
            .finish_non_exhaustive()
    }
}

/// Turns a caller's plain request into the request TikTok expects, signed over what is sent.
///
/// `now_unix` is the gateway's clock in seconds.
pub fn sign_request(
    request: &EgressRequest<'_>,
    shop: &ShopCredentials<'_>,
    now_unix: i64,
) -> Result<SignedRequest, SignRequestError> {
    let path = request.path;
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b == b'?' || b == b'#' || b == b' ' || b.is_ascii_control())
    {
        return Err(SignRequestError::BadPath);
    }
    if !(1_000_000_000..=9_999_999_999).contains(&now_unix) {
        return Err(SignRequestError::BadTimestamp);
    }
    let multipart = is_multipart(request.content_type);
    let content_type = match request.content_type {
        Some(ct) => HeaderValue::from_str(ct).map_err(|_| SignRequestError::BadContentType)?,
        None => HeaderValue::from_static("application/json"),
    };
    let mut access_token =
        HeaderValue::from_str(shop.access_token).map_err(|_| SignRequestError::BadAccessToken)?;
    access_token.set_sensitive(true);

    let caller = CallerQuery::parse(request.raw_query.unwrap_or(""))?;
    let timestamp = now_unix.to_string();
    let mut params: Vec<(&str, &str)> = Vec::with_capacity(caller.len() + 3);
    params.extend(caller.pairs());
    params.push(("app_key", shop.app_key));
    params.push(("timestamp", &timestamp));
    if !omits_shop_cipher(path, multipart) {
        let cipher = shop
            .shop_cipher
            .ok_or(SignRequestError::ShopCipherMissing)?;
        params.push(("shop_cipher", cipher));
    }
    // Sent in the order signed, which keeps the wire form deterministic.
    params.sort_by(|a, b| a.0.cmp(b.0));

    let body = (!multipart).then_some(request.body);
    let signature = sign(shop.app_secret, path, &params, body);

    let mut out = String::with_capacity(
        path.len()
            + 80
            + params
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
    );
    out.push_str(path);
    out.push('?');
    for (key, value) in &params {
        out.extend(utf8_percent_encode(key, QUERY_VALUE));
        out.push('=');
        out.extend(utf8_percent_encode(value, QUERY_VALUE));
        out.push('&');
    }
    out.push_str("sign=");
    out.push_str(&signature);

    Ok(SignedRequest {
        path_and_query: out,
        access_token,
        content_type,
        multipart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_caller_values() {
        let q = CallerQuery::parse("email=maria%40example.com&ids=1").unwrap();
        let shown = format!("{q:?}");
        assert!(
            shown.contains("email") && !shown.contains("maria"),
            "{shown}"
        );
        let req = EgressRequest {
            path: "/order/202309/orders",
            raw_query: Some("email=maria%40example.com"),
            body: br#"{"buyer_email":"maria@example.com"}"#,
            content_type: Some("application/json"),
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("maria"), "{shown}");
    }

    const NOW: i64 = 1_700_000_000;

    fn shop() -> ShopCredentials<'static> {
        ShopCredentials {
            app_key: "68xu9ks5p4i8",
            app_secret: b"e59af819cc",
            access_token: "TTP_token",
            shop_cipher: Some("ROW_cipher"),
        }
    }

    fn parsed(raw: &str) -> Vec<(String, String)> {
        CallerQuery::parse(raw)
            .unwrap()
            .pairs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Reads a sent query back with a different decoder than ours.
    fn wire_pairs(path_and_query: &str) -> Vec<(String, String)> {
        let query = path_and_query.split_once('?').unwrap().1;
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn decodes_plus_and_percent_escapes() {
        assert_eq!(
            parsed("page_token=ab%2B%2Fc%3D%3D&q=a+b&e=&flag"),
            vec![
                ("page_token".into(), "ab+/c==".into()),
                ("q".into(), "a b".into()),
                ("e".into(), "".into()),
                ("flag".into(), "".into()),
            ]
        );
        assert_eq!(parsed(""), vec![]);
        assert_eq!(parsed("&&a=1&"), vec![("a".into(), "1".into())]);
        assert_eq!(parsed("k=%C3%A9"), vec![("k".into(), "é".into())]);
    }

    #[test]
    fn refuses_repeated_keys() {
        assert_eq!(
            CallerQuery::parse("a=1&b=2&a=3"),
            Err(QueryError::RepeatedKey("a".into()))
        );
        // Decoded names are compared: `%61` is `a`.
        assert_eq!(
            CallerQuery::parse("a=1&%61=2"),
            Err(QueryError::RepeatedKey("a".into()))
        );
        // Repeats of gateway-owned keys are refused too, not silently dropped.
        assert!(matches!(
            CallerQuery::parse("sign=a&sign=b"),
            Err(QueryError::RepeatedKey(_))
        ));
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!(CallerQuery::parse("a=%2"), Err(QueryError::BadEscape));
        assert_eq!(CallerQuery::parse("a=%zz"), Err(QueryError::BadEscape));
        assert_eq!(CallerQuery::parse("a=100%"), Err(QueryError::BadEscape));
        assert_eq!(CallerQuery::parse("a=%FF"), Err(QueryError::NotUtf8));
        assert_eq!(CallerQuery::parse("=1"), Err(QueryError::EmptyKey));
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            CallerQuery::parse(&many.join("&")),
            Err(QueryError::TooManyParams)
        );
    }

    #[test]
    fn drops_gateway_owned_keys_in_any_case() {
        let q = parsed("app_key=x&SIGN=y&timestamp=1&access_token=t&Shop_Cipher=c&ids=1,2");
        assert_eq!(q, vec![("ids".into(), "1,2".into())]);
    }

    #[test]
    fn shop_cipher_paths() {
        assert!(omits_shop_cipher("/authorization/202309/shops", false));
        assert!(omits_shop_cipher("/seller/202309/shops", false));
        assert!(omits_shop_cipher("/seller/202309/permissions", false));
        assert!(omits_shop_cipher("/product/202309/images/upload", false));
        assert!(omits_shop_cipher("/product/202309/files/upload", false));
        assert!(omits_shop_cipher("/product/202309/anything/upload", true));
        assert!(!omits_shop_cipher("/product/202309/products/search", false));
        assert!(!omits_shop_cipher("/product/202309/images/upload/x", false));
        assert!(!omits_shop_cipher("/order/202309/orders", false));
        assert!(!omits_shop_cipher("/order/202309/orders", true));
        assert!(!omits_shop_cipher("/sellers/202309/shops", false));
        assert!(!omits_shop_cipher("/event/202309/webhooks", false));
    }

    #[test]
    fn signs_what_it_sends_with_awkward_page_token() {
        let body = br#"{"order_status":"AWAITING_SHIPMENT"}"#;
        let request = EgressRequest {
            path: "/order/202309/orders/search",
            raw_query: Some(
                "page_size=20&page_token=6AsP%2Bq%2FN5M%3D%3D&sign=forged&app_key=evil",
            ),
            body,
            content_type: None,
        };
        let signed = sign_request(&request, &shop(), NOW).unwrap();
        let sent = wire_pairs(&signed.path_and_query);
        let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "app_key",
                "page_size",
                "page_token",
                "shop_cipher",
                "timestamp",
                "sign"
            ]
        );
        let get = |k: &str| sent.iter().find(|(kk, _)| kk == k).unwrap().1.clone();
        assert_eq!(get("page_token"), "6AsP+q/N5M==");
        assert_eq!(get("app_key"), "68xu9ks5p4i8");
        assert_eq!(get("timestamp"), "1700000000");
        assert!(
            signed
                .path_and_query
                .contains("page_token=6AsP%2Bq%2FN5M%3D%3D")
        );
        // Recompute over what a receiver decodes from the wire: it must match `sign`.
        let received: Vec<(&str, &str)> = sent
            .iter()
            .filter(|(k, _)| k != "sign")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let expected = sign(
            b"e59af819cc",
            "/order/202309/orders/search",
            &received,
            Some(body),
        );
        assert_eq!(get("sign"), expected);
        assert_eq!(signed.content_type, "application/json");
        assert_eq!(signed.access_token, "TTP_token");
        assert!(signed.access_token.is_sensitive());
        assert!(!signed.multipart);
    }

    #[test]
    fn space_goes_out_as_percent_20() {
        let request = EgressRequest {
            path: "/p/1/x",
            raw_query: Some("q=a+b"),
            body: b"",
            content_type: None,
        };
        let signed = sign_request(&request, &shop(), NOW).unwrap();
        assert!(signed.path_and_query.contains("q=a%20b"));
    }

    #[test]
    fn omits_shop_cipher_where_tiktok_refuses_it() {
        let request = EgressRequest {
            path: "/authorization/202309/shops",
            raw_query: Some("shop_cipher=caller"),
            body: b"",
            content_type: Some("application/json"),
        };
        let signed = sign_request(&request, &shop(), NOW).unwrap();
        assert!(!signed.path_and_query.contains("shop_cipher"));
        // And needs none there.
        let no_cipher = ShopCredentials {
            shop_cipher: None,
            ..shop()
        };
        assert!(sign_request(&request, &no_cipher, NOW).is_ok());
    }

    #[test]
    fn refuses_shop_scoped_path_without_cipher() {
        let request = EgressRequest {
            path: "/order/202309/orders",
            raw_query: Some("ids=1"),
            body: b"",
            content_type: None,
        };
        let no_cipher = ShopCredentials {
            shop_cipher: None,
            ..shop()
        };
        assert_eq!(
            sign_request(&request, &no_cipher, NOW).unwrap_err(),
            SignRequestError::ShopCipherMissing
        );
    }

    #[test]
    fn multipart_body_is_not_signed_and_keeps_its_boundary() {
        let ct = "multipart/form-data; boundary=XyZ";
        let make = |body: &'static [u8]| EgressRequest {
            path: "/product/202309/images/upload",
            raw_query: None,
            body,
            content_type: Some(ct),
        };
        let a = sign_request(&make(b"--XyZ\r\none"), &shop(), NOW).unwrap();
        let b = sign_request(&make(b"--XyZ\r\ntwo"), &shop(), NOW).unwrap();
        assert_eq!(a.path_and_query, b.path_and_query);
        assert!(a.multipart);
        assert_eq!(a.content_type, ct);
        assert!(!a.path_and_query.contains("shop_cipher"));
        let expected = sign(
            b"e59af819cc",
            "/product/202309/images/upload",
            &[("app_key", "68xu9ks5p4i8"), ("timestamp", "1700000000")],
            None,
        );
        assert!(a.path_and_query.ends_with(&format!("&sign={expected}")));
    }

    #[test]
    fn refuses_bad_inputs() {
        let ok = EgressRequest {
            path: "/order/202309/orders",
            raw_query: None,
            body: b"",
            content_type: None,
        };
        for path in ["order", "/a?b", "/a#b", "/a b", "/a\nb"] {
            let r = EgressRequest { path, ..ok };
            assert_eq!(
                sign_request(&r, &shop(), NOW).unwrap_err(),
                SignRequestError::BadPath
            );
        }
        assert_eq!(
            sign_request(&ok, &shop(), 123).unwrap_err(),
            SignRequestError::BadTimestamp
        );
        let r = EgressRequest {
            raw_query: Some("a=1&a=2"),
            ..ok
        };
        assert!(matches!(
            sign_request(&r, &shop(), NOW).unwrap_err(),
            SignRequestError::Query(QueryError::RepeatedKey(_))
        ));
        let r = EgressRequest {
            content_type: Some("application/json\r\nx: y"),
            ..ok
        };
        assert_eq!(
            sign_request(&r, &shop(), NOW).unwrap_err(),
            SignRequestError::BadContentType
        );
        let bad_token = ShopCredentials {
            access_token: "tok\nen",
            ..shop()
        };
        assert_eq!(
            sign_request(&ok, &bad_token, NOW).unwrap_err(),
            SignRequestError::BadAccessToken
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let signed = sign_request(
            &EgressRequest {
                path: "/order/202309/orders",
                raw_query: Some("ids=1"),
                body: b"",
                content_type: None,
            },
            &shop(),
            NOW,
        )
        .unwrap();
        let text = format!("{signed:?} {:?}", shop());
        assert!(!text.contains("TTP_token"));
        assert!(!text.contains("e59af819cc"));
        assert!(!text.contains("sign="));
    }
}

/// The signed request a caller gets depends on its query's parameter set, not on its order.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn shop() -> ShopCredentials<'static> {
        ShopCredentials {
            app_key: "29a39d",
            app_secret: b"test-app-secret",
            access_token: "TTP_test_token",
            shop_cipher: Some("GCP_cipher"),
        }
    }

    /// A caller query as unique decoded pairs (gateway-owned keys included: they are dropped).
    fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::btree_map(
            prop_oneof![4 => "[a-z_]{1,10}", 1 => Just("app_key".to_string()),
                        1 => Just("timestamp".to_string()), 1 => "\\PC{1,6}"],
            "\\PC{0,12}",
            0..12,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    fn encode(pairs: &[(String, String)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn signed_request_is_stable_under_query_permutation(
            (ordered, shuffled) in pairs().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let (qa, qb) = (encode(&ordered), encode(&shuffled));
            let request = |q: &'_ str| -> Result<SignedRequest, SignRequestError> {
                let req = EgressRequest {
                    path: "/order/202309/orders/search",
                    raw_query: Some(q),
                    body: &body,
                    content_type: None,
                };
                sign_request(&req, &shop(), 1_700_000_000)
            };
            match (request(&qa), request(&qb)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.path_and_query, b.path_and_query),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "one order signed, the other did not: {:?} / {:?}",
                    a.map(|r| r.multipart), b.map(|r| r.multipart)),
            }
        }

        #[test]
        fn query_parser_never_panics(raw in "\\PC{0,64}|[a-z=&%+0-9A-F]{0,64}") {
            let _ = CallerQuery::parse(&raw);
        }
    }
}
