//! Log redaction: free text (detectors + `key: value` pairs with personal keys), headers (only
//! allow-listed names show their values), query strings (keys kept, values only for allow-listed
//! keys) and JSON bodies (allow-list walk: only known non-personal fields keep their values).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::catalogue::{Ctx, Treatment};
use super::detectors::{Finding, SECRET_KEYS, is_gtin, is_plain_name, resolve_overlaps};
use super::engine::{PrivacyEngine, lower_set};
use super::error::{MaskError, PrivacyError};
use super::json_walk::{self, Scalar, ScalarKind, Visitor, push_json_string};
use super::keyed::key_of;
use super::kind::PiiKind;

/// What replaces a value that is not shown in a log.
pub const REDACTED: &str = "[redacted]";

/// Characters a decoded path is re-encoded with in a log line: controls, quotes, backslash,
/// space, `%` itself and the URL delimiters a decoded path may now contain.
const LOG_PATH_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'\'')
    .add(b'\\')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'#');

/// Header names whose values may be logged (values still pass the free-text detectors).
const SAFE_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-encoding",
    "content-length",
    "content-type",
    "date",
    "etag",
    "host",
    "user-agent",
    "via",
    "vary",
    "server",
    "x-request-id",
    "x-correlation-id",
    "traceparent",
    "tracestate",
    "x-forwarded-proto",
    "x-forwarded-host",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "www-authenticate",
    "transfer-encoding",
    "connection",
    "x-tiktok-shop-id",
    "x-tt-logid",
];

/// Headers that carry credentials: never logged, and configuration cannot allow them.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-tts-access-token",
    "x-api-key",
    "tiktok-signature",
    "x-gateway-mfa-token",
];

/// Query keys whose values may be logged.
const SAFE_QUERY_KEYS: &[&str] = &[
    "app_key",
    "timestamp",
    "shop_id",
    "page_size",
    "page_token",
    "sort_field",
    "sort_order",
    "version",
    "ids",
    "order_ids",
    "package_ids",
    "product_ids",
    "category_id",
    "locale",
    "language",
    "document_type",
    "document_size",
    "grant_type",
    "status",
];

/// Query keys that carry credentials: never logged, and configuration cannot allow them.
const CREDENTIAL_QUERY_KEYS: &[&str] = &["code", "shop_cipher", "cipher"];

#[derive(Debug, Clone)]
pub struct HeaderAllowList(HashSet<Box<str>>);

#[derive(Debug, Clone)]
pub struct QueryAllowList(HashSet<Box<str>>);

pub(crate) fn header_allow_list(extra: &[String]) -> Result<HeaderAllowList, PrivacyError> {
    for name in extra {
        let n = name.trim().to_ascii_lowercase();
        if CREDENTIAL_HEADERS.contains(&n.as_str()) || SECRET_KEYS.contains(&n.as_str()) {
            return Err(PrivacyError::SecretHeaderNotLoggable(n));
        }
    }
    Ok(HeaderAllowList(lower_set(
        SAFE_HEADERS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str)),
    )))
}

pub(crate) fn query_allow_list(extra: &[String]) -> Result<QueryAllowList, PrivacyError> {
    for key in extra {
        let k = key.trim().to_ascii_lowercase();
        if CREDENTIAL_QUERY_KEYS.contains(&k.as_str()) || SECRET_KEYS.contains(&k.as_str()) {
            return Err(PrivacyError::SecretQueryKeyNotLoggable(k));
        }
    }
    Ok(QueryAllowList(lower_set(
        SAFE_QUERY_KEYS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str)),
    )))
}

impl PrivacyEngine {
    /// Redacts free text: detector findings and values of personal keys become a pseudonym
    /// (`pii:...`) or a marker (`[redacted:kind]`). Borrowed when nothing was found.
    ///
    /// Paths and URLs in the text (a dependency's `POST /orders?email=...` error line) are read
    /// as such: percent-decoded before the detectors look at them (`maria%40example.com`), and
    /// their query strings logged like [`Self::redact_query`] does (values only for allow-listed
    /// keys, names only when they are identifiers).
    pub fn redact_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let bytes = text.as_bytes();
        if (bytes.contains(&b'?') || bytes.contains(&b'%'))
            && let Some(out) = self.redact_with_urls(text)
        {
            return Cow::Owned(out);
        }
        self.redact_plain(text)
    }

    /// `text` with its URL-like tokens (those with a query or a percent escape) rewritten by
    /// [`Self::redact_url`] and the rest by [`Self::redact_plain`]; `None` if it has none.
    fn redact_with_urls(&self, text: &str) -> Option<String> {
        let mut spans = self
            .detectors
            .url_like()
            .find_iter(text)
            .filter(|m| m.as_str().contains(['?', '%']))
            .peekable();
        spans.peek()?;
        let mut out = String::with_capacity(text.len() + 32);
        let mut at = 0;
        for m in spans {
            out.push_str(&self.redact_plain(&text[at..m.start()]));
            self.redact_url(m.as_str(), &mut out);
            at = m.end();
        }
        out.push_str(&self.redact_plain(&text[at..]));
        Some(out)
    }

    /// A path or URL for a log line: the path decoded, redacted and re-encoded (so a decoded
    /// `"` or line break cannot break the line), the query redacted as a query.
    fn redact_url(&self, url: &str, out: &mut String) {
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (url, None),
        };
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        out.extend(percent_encoding::utf8_percent_encode(
            &self.redact_plain(&decoded),
            LOG_PATH_ESCAPES,
        ));
        if let Some(query) = query {
            out.push('?');
            out.push_str(&self.redact_query(query));
        }
    }

    /// Free text without URL handling: detector findings and personal `key: value` pairs.
    fn redact_plain<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let found = self.text_findings(text);
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 16 * found.len());
        let mut at = 0;
        for f in &found {
            out.push_str(&text[at..f.start]);
            self.write_replacement(f.kind, f.treatment, &text[f.start..f.end], &mut out);
            at = f.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Everything personal in free text: detector findings and the values of personal keys
    /// (`name: ...`, `"buyer_email":"..."`), sorted and non-overlapping.
    pub(crate) fn text_findings(&self, text: &str) -> Vec<Finding> {
        let mut found = self.detectors.find_all(text);
        self.personal_keys.for_each(text, |prefix, start, end| {
            if let Some((kind, treatment)) = self.catalogue.text_rule(key_of(prefix)) {
                found.push(Finding {
                    kind,
                    treatment,
                    start,
                    end,
                });
            }
        });
        resolve_overlaps(&mut found);
        found
    }

    /// The text that replaces a personal value in a log line.
    fn write_replacement(
        &self,
        kind: PiiKind,
        treatment: Treatment,
        value: &str,
        out: &mut String,
    ) {
        if treatment == Treatment::Pseudonymise && !kind.is_secret() {
            self.pseudonymizer.write_pseudonym(kind, value, out);
        } else {
            out.push_str("[redacted:");
            out.push_str(kind.as_str());
            out.push(']');
        }
    }

    /// A loggable view of `headers`: allow-listed names with redacted values, every other name
    /// with `[redacted]`. Formats lazily (`Display`, or `Serialize` as a JSON object).
    pub fn redact_headers<'a>(&'a self, headers: &'a http::HeaderMap) -> RedactedHeaders<'a> {
        RedactedHeaders {
            engine: self,
            headers,
        }
    }

    fn header_value<'a>(
        &self,
        name: &http::HeaderName,
        value: &'a http::HeaderValue,
    ) -> Cow<'a, str> {
        if !self.safe_headers.0.contains(name.as_str()) {
            return Cow::Borrowed(REDACTED);
        }
        match value.to_str() {
            Ok(v) => self.redact_text(v),
            Err(_) => Cow::Borrowed("[non-text]"),
        }
    }

    /// The names of a query's parameters for the access log: decoded, then redacted if they
    /// look personal (`?maria@example.com`, `?eyJhbGci…`); values are never kept.
    pub fn query_keys_for_log(&self, query: &str) -> Vec<String> {
        form_urlencoded::parse(query.as_bytes())
            .map(|(key, _)| self.query_key_for_log(&key).into_owned())
            .collect()
    }

    /// A query parameter *name* for logs. Parameter names are identifiers (`page_size`,
    /// `filter[status]`); anything else (an e-mail, a phone with its extension, a name with a
    /// space, a bare number) is data a client put in the wrong place, and is not shown. An
    /// identifier-shaped name still goes through the detectors (`?TTP_…`).
    pub fn query_key_for_log<'a>(&self, key: &'a str) -> Cow<'a, str> {
        let identifier = (1..=64).contains(&key.len())
            && key.bytes().any(|b| b.is_ascii_alphabetic())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b));
        if identifier {
            self.redact_text(key)
        } else {
            Cow::Borrowed(REDACTED)
        }
    }

    /// A request path for the access log: percent-decoded first (`/customers/maria%40x.com`
    /// hides an e-mail from the detectors otherwise), then redacted.
    /// Borrowed when there is nothing to decode or redact (most paths): no copy per request.
    pub fn path_for_log<'a>(&self, path: &'a str) -> Cow<'a, str> {
        match percent_encoding::percent_decode_str(path).decode_utf8_lossy() {
            Cow::Borrowed(plain) => self.redact_text(plain),
            Cow::Owned(decoded) => Cow::Owned(self.redact_text(&decoded).into_owned()),
        }
    }

    /// A query string for logs: every key kept (itself redacted if it looks personal), values
    /// only for allow-listed keys. Input is the raw query (without `?`); output is for humans.
    pub fn redact_query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        if query.is_empty() {
            return Cow::Borrowed(query);
        }
        let mut out = String::with_capacity(query.len());
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if !out.is_empty() {
                out.push('&');
            }
            out.extend(form_urlencoded::byte_serialize(
                self.query_key_for_log(&key).as_bytes(),
            ));
            out.push('=');
            if self
                .safe_query_keys
                .0
                .contains(key.to_ascii_lowercase().as_str())
            {
                out.extend(form_urlencoded::byte_serialize(
                    self.redact_text(&value).as_bytes(),
                ));
            } else if !value.is_empty() {
                out.push_str(REDACTED);
            }
        }
        Cow::Owned(out)
    }

    /// A JSON body (request, response or webhook) for logs: allow-listed fields keep their
    /// values, personal identifiers become pseudonyms, everything else `"[redacted]"`.
    pub fn redact_json_for_log(&self, body: &[u8]) -> Result<String, MaskError> {
        let mut v = LogVisitor { engine: self };
        let out = json_walk::walk(body, &self.catalogue, &mut v, true)?.unwrap_or_default();
        // The walker only emits valid UTF-8 (validated input plus ASCII/UTF-8 replacements).
        String::from_utf8(out).map_err(|e| MaskError::NotUtf8 {
            at: e.utf8_error().valid_up_to(),
        })
    }

    /// Any body for logs: JSON goes through [`Self::redact_json_for_log`]; anything else is
    /// reduced to its size, since the allow-list cannot be applied to it.
    pub fn redact_body_for_log(&self, body: &[u8]) -> String {
        match self.redact_json_for_log(body) {
            Ok(s) => s,
            Err(_) => format!("[body not logged: {} bytes, not JSON]", body.len()),
        }
    }
}

/// Log-mode JSON policy: show only what is known to be safe.
struct LogVisitor<'e> {
    engine: &'e PrivacyEngine,
}

impl LogVisitor<'_> {
    /// Free text keeps its wording; what the redactor finds in it is replaced.
    fn redacted_text(&self, s: &Scalar<'_>, r: &mut String) -> bool {
        let text = s.text();
        match self.engine.redact_text(&text) {
            Cow::Borrowed(_) => false,
            Cow::Owned(redacted) => {
                push_json_string(r, &redacted);
                true
            }
        }
    }
}

impl Visitor for LogVisitor<'_> {
    fn key(&mut self, _: Ctx, key: &Scalar<'_>, r: &mut String) -> bool {
        !is_plain_name(key.raw) && self.redacted_text(key, r)
    }

    fn scalar(&mut self, ctx: Ctx, s: &Scalar<'_>, r: &mut String) -> bool {
        if matches!(s.kind, ScalarKind::Bool | ScalarKind::Null) || s.is_empty_string() {
            return false;
        }
        let (kind, treatment) = match ctx {
            Ctx::Keep | Ctx::SafeTree => return false,
            Ctx::ProductCode if is_gtin(&s.text()) => return false,
            Ctx::FreeText if s.kind == ScalarKind::Str => return self.redacted_text(s, r),
            Ctx::Personal { kind, treatment } => (kind, treatment),
            Ctx::Sealed => (PiiKind::PersonalField, Treatment::Hide),
            Ctx::Unknown | Ctx::ProductCode | Ctx::FreeText => {
                r.push('"');
                r.push_str(REDACTED);
                r.push('"');
                return true;
            }
        };
        r.push('"');
        if treatment == Treatment::Pseudonymise && !kind.is_secret() {
            self.engine
                .pseudonymizer
                .write_pseudonym(kind, &s.text(), r);
        } else {
            r.push_str(REDACTED);
        }
        r.push('"');
        true
    }
}

/// See [`PrivacyEngine::redact_headers`].
pub struct RedactedHeaders<'a> {
    engine: &'a PrivacyEngine,
    headers: &'a http::HeaderMap,
}

impl fmt::Display for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in self.headers {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(
                f,
                "{}: {}",
                name.as_str(),
                self.engine.header_value(name, value)
            )?;
        }
        Ok(())
    }
}

impl Serialize for RedactedHeaders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.headers.keys_len()))?;
        for name in self.headers.keys() {
            let mut joined = String::new();
            for value in self.headers.get_all(name) {
                if !joined.is_empty() {
                    joined.push_str(", ");
                }
                joined.push_str(&self.engine.header_value(name, value));
            }
            map.serialize_entry(name.as_str(), &joined)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::privacy::engine::PrivacySettings;
    use crate::privacy::engine::test_support::engine;

    #[test]
    fn access_log_query_keys_and_paths_hide_personal_data_even_encoded() {
        let e = engine();
        let keys = e.query_keys_for_log("access_token=SECRET&ids=1,2&maria%40example.com&flag");
        assert_eq!(keys[..2], ["access_token", "ids"]);
        assert!(!keys.join(",").contains("maria"), "{keys:?}");
        assert!(!keys.join(",").contains("SECRET"), "{keys:?}");
        assert_eq!(keys[3], "flag");
        assert!(e.query_keys_for_log("").is_empty());
        // Personal data as parameter names, however it is written, is never shown.
        let q = "%2B1%20415-555-0100%20ext.%2023=1&%28415%29%20555-0142x77&4155550100=&\
                 Marisol+Quintanilha=x&filter[status]=1&page_size=5&TTP_abcdefghijklmnopqrstuv=1";
        let keys = e.query_keys_for_log(q);
        let joined = keys.join(",");
        for leaked in ["415", "0142", "Marisol", "TTP_abc"] {
            assert!(!joined.contains(leaked), "{leaked}: {keys:?}");
        }
        assert_eq!(keys[4..6], ["filter[status]", "page_size"]);
        let redacted = e.redact_query(q);
        for leaked in ["415", "0142", "Marisol", "TTP_abc"] {
            assert!(!redacted.contains(leaked), "{leaked}: {redacted}");
        }
        assert!(redacted.contains("page_size=5"), "{redacted}");
        let path = e.path_for_log("/customers/maria%40example.com/orders");
        assert!(!path.contains("maria"), "{path}");
        assert!(path.starts_with("/customers/"), "{path}");
        // Nothing to decode or redact: the path itself, not a copy.
        assert!(matches!(
            e.path_for_log("/orders/list"),
            Cow::Borrowed("/orders/list")
        ));
    }

    #[test]
    fn free_text_findings_are_replaced() {
        let e = engine();
        let line = "buyer maria@example.com phone +55 (11) 98765-4321 card 4111 1111 1111 1111 \
                    cpf 529.982.247-25 from 203.0.113.9 Authorization: Bearer abcdefghijklmnop";
        let out = e.redact_text(line);
        for secret in [
            "maria@example.com",
            "98765-4321",
            "4111 1111",
            "529.982.247-25",
            "203.0.113.9",
            "abcdefghijklmnop",
        ] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(out.contains("[redacted:payment_card]"), "{out}");
        assert!(out.contains("[redacted:cpf]"), "{out}");
        // Correlatable kinds are pseudonymised, consistently.
        let p = e
            .pseudonymizer
            .pseudonym(PiiKind::Email, "maria@example.com");
        assert!(out.contains(&p), "{out}");
        assert_eq!(
            e.redact_text("again maria@example.com"),
            format!("again {p}")
        );
    }

    #[test]
    fn urls_in_free_text_are_decoded_and_their_queries_redacted() {
        let e = engine();
        let line = "Fail to proxy: POST /dead/orders?marisol.q%40correio.com.br&%2B1%20415-555-0100%20ext.%2023=1&ship_to=4187+Wintergreen+Terrace&ids=576461413038785752, Host: x \
                    then GET https://api.example/customers/maria%40example.com/orders?page_size=5 and /a%22b%0Ainjected ok? yes";
        let out = e.redact_text(line);
        for leaked in [
            "marisol",
            "415-555",
            "Wintergreen",
            "maria",
            "\"b",
            "\ninjected",
        ] {
            assert!(!out.contains(leaked), "{leaked}: {out}");
        }
        for kept in [
            "Fail to proxy: POST /dead/orders?",
            "ids=576461413038785752",
            "ship_to=[redacted]",
            "https://api.example/customers/pii:",
            "?page_size=5",
            "/a%22b%0Ainjected",
            "ok? yes",
        ] {
            assert!(out.contains(kept), "{kept}: {out}");
        }
    }

    #[test]
    fn clean_text_is_borrowed() {
        let e = engine();
        let line = r#"{"level":"INFO","route":"tiktok-orders","status":200,"order_id":"576461413038785752","latency_ms":12}"#;
        assert!(matches!(e.redact_text(line), Cow::Borrowed(_)));
    }

    #[test]
    fn structured_values_in_text_are_caught_by_key() {
        let e = engine();
        let dbg = r#"Order { id: "1", recipient_address: Address { name: "David Kong", full_address: "1199 Coleman Ave San Jose", city: "San Jose" }, user_id: "7021436810468230477" }"#;
        let out = e.redact_text(dbg);
        for leaked in [
            "David Kong",
            "1199 Coleman",
            "San Jose",
            "7021436810468230477",
        ] {
            assert!(!out.contains(leaked), "{leaked}: {out}");
        }
        assert!(out.contains("id: \"1\""), "{out}");
        let json_in_json = r#"{"message":"body {\"buyer_message\":\"ring Ana at the back door\",\"nickname\":\"Albert\"}"}"#;
        let out = e.redact_text(json_in_json);
        assert!(
            !out.contains("back door") && !out.contains("Albert"),
            "{out}"
        );
    }

    #[test]
    fn headers_only_allow_listed_values() {
        let e = engine();
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/json".parse().expect("valid"));
        h.insert(
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
                .parse()
                .expect("valid"),
        );
        h.insert(
            "x-tts-access-token",
            "ROW_abcdefghijklmnopqrstuvwxyz".parse().expect("valid"),
        );
        h.insert(
            "x-custom-buyer",
            "maria@example.com".parse().expect("valid"),
        );
        h.insert(
            "user-agent",
            "client/1.0 (ops maria@example.com)".parse().expect("valid"),
        );
        let shown = e.redact_headers(&h).to_string();
        assert!(shown.contains("content-type: application/json"), "{shown}");
        assert!(shown.contains("authorization: [redacted]"), "{shown}");
        assert!(shown.contains("x-tts-access-token: [redacted]"), "{shown}");
        assert!(shown.contains("x-custom-buyer: [redacted]"), "{shown}");
        assert!(
            !shown.contains("maria@") && !shown.contains("eyJ") && !shown.contains("ROW_"),
            "{shown}"
        );
        let json = serde_json::to_value(e.redact_headers(&h)).expect("serialises");
        assert_eq!(json["authorization"], "[redacted]");
        assert_eq!(json["content-type"], "application/json");
    }

    #[test]
    fn query_keys_kept_values_only_when_allowed() {
        let e = engine();
        let q = "app_key=29a39d&timestamp=1623812664&sign=b596b73e0cc6&access_token=TTP_abc&app_secret=e59af819cc&shop_cipher=ROW_x&%73ign=x&ids=576461413038785752&buyer=maria%40example.com";
        let out = e.redact_query(q);
        assert_eq!(
            out,
            "app_key=29a39d&timestamp=1623812664&sign=[redacted]&access_token=[redacted]&app_secret=[redacted]&shop_cipher=[redacted]&sign=[redacted]&ids=576461413038785752&buyer=[redacted]"
        );
    }

    #[test]
    fn configuration_cannot_allow_credentials() {
        let mut s = PrivacySettings::with_key(Secret::new("test-pseudonym-key-0123456789"));
        s.extra_safe_headers = vec!["Authorization".into()];
        assert_eq!(
            PrivacyEngine::new(&s).err(),
            Some(PrivacyError::SecretHeaderNotLoggable(
                "authorization".into()
            ))
        );
        s.extra_safe_headers = vec!["x-tenant".into()];
        s.extra_safe_query_keys = vec!["SIGN".into()];
        assert_eq!(
            PrivacyEngine::new(&s).err(),
            Some(PrivacyError::SecretQueryKeyNotLoggable("sign".into()))
        );
        s.extra_safe_query_keys = vec!["region".into()];
        let e = PrivacyEngine::new(&s).expect("valid");
        assert_eq!(e.redact_query("region=US"), "region=US");
    }

    #[test]
    fn json_bodies_allow_list_walk() {
        let e = engine();
        let body = br#"{"code":0,"data":{"orders":[{"id":"576461413038785752","status":"UNPAID","user_id":"7021436810468230477","buyer_email":"v2b2V5@chat.seller.tiktok.com","brand_new_field":"Maria Souza","recipient_address":{"name":"David Kong","region_code":"US"},"payment":{"total_amount":"5000","currency":"IDR"},"create_time":1619611561,"mystery_number":5511987654321}]},"message":"Success"}"#;
        let out = e.redact_json_for_log(body).expect("valid");
        let v: serde_json::Value = serde_json::from_str(&out).expect("output is JSON");
        let o = &v["data"]["orders"][0];
        assert_eq!(o["id"], "576461413038785752");
        assert_eq!(o["status"], "UNPAID");
        assert_eq!(o["payment"]["total_amount"], "5000");
        assert_eq!(o["create_time"], 1619611561);
        assert_eq!(o["brand_new_field"], REDACTED);
        assert_eq!(o["mystery_number"], REDACTED);
        assert_eq!(o["recipient_address"]["name"], REDACTED);
        assert_eq!(o["recipient_address"]["region_code"], REDACTED);
        assert_eq!(
            o["user_id"],
            e.pseudonymizer
                .pseudonym(PiiKind::UserId, "7021436810468230477")
                .as_str()
        );
        assert!(!out.contains("v2b2V5"), "{out}");
        assert_eq!(
            e.redact_body_for_log(b"not json maria@example.com"),
            "[body not logged: 26 bytes, not JSON]"
        );
    }

    #[test]
    fn webhook_messages_and_addresses_are_personal() {
        let e = engine();
        let chat = br#"{"type":14,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507","timestamp":1718305585,"data":{"conversation_id":"7494560109732334261","content":"my address is Rua Augusta 1500, call 11 98765-4321","create_time":1718305585}}"#;
        let out = e.redact_json_for_log(chat).expect("valid");
        assert!(!out.contains("Augusta") && !out.contains("98765"), "{out}");
        assert!(
            out.contains(r#""type":14"#) && out.contains("7494560109732334261"),
            "{out}"
        );
        let addr = br#"{"type":3,"data":{"order_id":"576461413038785752","recipient_address":{"full_address":"Rua Augusta 1500"}}}"#;
        let out = e.redact_json_for_log(addr).expect("valid");
        assert!(
            !out.contains("Augusta") && out.contains("576461413038785752"),
            "{out}"
        );
    }
}
