//! Pattern detectors over free text: e-mail, phone, payment card (Luhn + issuer ranges), CPF
//! (check digits), IPv4/IPv6, bearer tokens, JWTs, TikTok tokens and values after secret-bearing
//! keys. Candidates come from regexes; each is then validated (Luhn, CPF digits, address parse,
//! digit counts) so that TikTok ids and unix timestamps are not mistaken for cards or phones.

use std::net::{Ipv4Addr, Ipv6Addr};

use regex::{Regex, RegexSet};

use super::catalogue::Treatment;
use super::keyed::KeyedValueMatcher;
use super::kind::PiiKind;

/// One detected span `[start, end)` of the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: PiiKind,
    /// How a log line replaces it: identifiers worth correlating get a pseudonym.
    pub treatment: Treatment,
    pub start: usize,
    pub end: usize,
}

/// Detected kinds that investigators may need to correlate across lines get pseudonyms; the
/// rest (cards, CPFs, tokens) are blanked.
pub const fn default_treatment(kind: PiiKind) -> Treatment {
    match kind {
        PiiKind::Email | PiiKind::Phone | PiiKind::IpAddress | PiiKind::UserId => {
            Treatment::Pseudonymise
        }
        _ => Treatment::Hide,
    }
}

/// Keys whose value is a credential in any notation (`key=v`, `key: v`, `"key":"v"`).
pub const SECRET_KEYS: &[&str] = &[
    "access_token",
    "access-token",
    "accesstoken",
    "refresh_token",
    "refresh-token",
    "refreshtoken",
    "auth_code",
    "app_secret",
    "client_secret",
    "x-tts-access-token",
    "secret",
    "token",
    "sign",
    "signature",
    "password",
    "passwd",
    "pwd",
    "api_key",
    "apikey",
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "session_id",
    "sessionid",
    "private_key",
    "doc_url",
    "label_url",
];

/// An extension after a phone number, part of the finding so it is replaced too: `ext. 23`,
/// `extension 23`, `x23`, `#23`, RFC 3966 `;ext=23`, with optional `,`/`;` before the word.
macro_rules! phone_extension {
    () => {
        r"(?:(?i:[ ]*[,;]?[ ]*(?:extension|extn|ext|x|\#)[ .:=]*)\d{1,6})"
    };
}

/// The compiled detectors. Build once (at engine construction) and share.
#[derive(Debug)]
pub struct Detectors {
    /// One pass over the text tells which patterns can match at all; only those run again to
    /// find positions. Most log lines hit none or one.
    any: RegexSet,
    email: Regex,
    jwt: Regex,
    bearer: Regex,
    tiktok_token: Regex,
    ipv4: Regex,
    ipv6: Regex,
    cpf_formatted: Regex,
    eleven_digits: Regex,
    card: Regex,
    phone_international: Regex,
    phone_national: Regex,
    phone_trunk: Regex,
    secrets: KeyedValueMatcher,
    /// Paths and URLs in free text (not a finding by itself: the redactor reads them as URLs).
    url_like: Regex,
}

impl Detectors {
    pub fn new() -> Result<Self, regex::Error> {
        // `(?-u)`: ASCII `\b`, `\d` and `\s`. Unicode word boundaries make the regex engine
        // leave its DFA on any non-ASCII haystack (a Japanese name in a body), which is 100x slower.
        const PATTERNS: [&str; 12] = [
            r"(?-u)[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
            r"(?-u)\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*",
            r"(?-u)(?i)\b(?:bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*",
            r"(?-u)\b(?:ROW|TTP|TTS)_[A-Za-z0-9_\-+/=.]{16,}",
            r"(?-u)\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b",
            r"(?-u)[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}",
            r"(?-u)\b\d{3}\.\d{3}\.\d{3}-\d{2}\b",
            r"(?-u)\b\d{11}\b",
            r"(?-u)\b\d(?:[ \-]?\d){12,18}\b",
            // Phones: international (`+`, `(+..)` or `00`), national with separators, and
            // trunk-prefixed (`0...`); each may end in an extension (`PHONE_EXTENSION`).
            concat!(
                r"(?-u)(?:\+\d{1,3}|\(\+\d{1,3}\)|\b00\d{1,3})(?:[ .\-/]?\(?\d{1,5}\)?){2,6}",
                phone_extension!(),
                "?"
            ),
            concat!(
                r"(?-u)(?:\(\d{2,4}\)|\b\d{2,5})[ .\-]?\d{3,5}[ .\-]\d{3,5}",
                phone_extension!(),
                r"?\b"
            ),
            concat!(
                r"(?-u)\b0\d{2,4}[ .\-]?\d{3,4}[ .\-]?\d{3,4}",
                phone_extension!(),
                r"?\b"
            ),
        ];
        let re = |i: usize| Regex::new(PATTERNS[i]);
        Ok(Self {
            any: RegexSet::new(PATTERNS)?,
            email: re(0)?,
            jwt: re(1)?,
            bearer: re(2)?,
            tiktok_token: re(3)?,
            ipv4: re(4)?,
            ipv6: re(5)?,
            cpf_formatted: re(6)?,
            eleven_digits: re(7)?,
            card: re(8)?,
            phone_international: re(9)?,
            phone_national: re(10)?,
            phone_trunk: re(11)?,
            secrets: KeyedValueMatcher::new(SECRET_KEYS.iter().copied(), false)?,
            // An optional scheme and authority, then a path and an optional query, up to
            // whitespace, a quote, a backslash (JSON escapes) or an angle bracket.
            url_like: Regex::new(
                r#"(?:\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>\\/?]*)?/[^\s"'<>\\?]*(?:\?[^\s"'<>\\#]*)?"#,
            )?,
        })
    }

    /// See the `url_like` field.
    pub(crate) fn url_like(&self) -> &Regex {
        &self.url_like
    }

    /// All findings in `text`, sorted by position and non-overlapping (where candidates overlap,
    /// the earlier then the longer one wins). Empty result: no allocation.
    pub fn find_all(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        self.candidates(text, &mut found);
        resolve_overlaps(&mut found);
        found
    }

    /// Every validated candidate, overlapping ones included (leak scanning wants all kinds).
    pub fn candidates_in(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        self.candidates(text, &mut found);
        found
    }

    fn candidates(&self, text: &str, out: &mut Vec<Finding>) {
        let push = |out: &mut Vec<Finding>, kind, m: regex::Match<'_>| {
            out.push(Finding {
                kind,
                treatment: default_treatment(kind),
                start: m.start(),
                end: m.end(),
            })
        };
        let bytes = text.as_bytes();
        if bytes.contains(&b'=') || bytes.contains(&b':') {
            self.secrets.for_each(text, |_, start, end| {
                out.push(Finding {
                    kind: PiiKind::Secret,
                    treatment: Treatment::Hide,
                    start,
                    end,
                })
            });
        }
        let hits = self.any.matches(text);
        if !hits.matched_any() {
            return;
        }
        let plain: [(usize, &Regex, PiiKind); 5] = [
            (0, &self.email, PiiKind::Email),
            (1, &self.jwt, PiiKind::Jwt),
            (2, &self.bearer, PiiKind::BearerToken),
            (3, &self.tiktok_token, PiiKind::TiktokToken),
            // The dotted shape alone is distinctive; a mistyped CPF is still personal data.
            (6, &self.cpf_formatted, PiiKind::Cpf),
        ];
        for (i, re, kind) in plain {
            if hits.matched(i) {
                for m in re.find_iter(text) {
                    push(out, kind, m);
                }
            }
        }
        type Check = fn(&str) -> bool;
        let validated: [(usize, &Regex, PiiKind, Check); 7] = [
            (4, &self.ipv4, PiiKind::IpAddress, |s| {
                s.parse::<Ipv4Addr>().is_ok()
            }),
            (5, &self.ipv6, PiiKind::IpAddress, plausible_ipv6),
            (7, &self.eleven_digits, PiiKind::Cpf, cpf_check_digits_ok),
            (8, &self.card, PiiKind::PaymentCard, is_payment_card),
            (
                9,
                &self.phone_international,
                PiiKind::Phone,
                plausible_phone,
            ),
            (10, &self.phone_national, PiiKind::Phone, plausible_phone),
            (11, &self.phone_trunk, PiiKind::Phone, plausible_phone),
        ];
        for (i, re, kind, ok) in validated {
            if hits.matched(i) {
                for m in re.find_iter(text) {
                    if ok(m.as_str()) {
                        push(out, kind, m);
                    }
                }
            }
        }
    }
}

/// A member name of lowercase letters and `_` only (`buyer_email`, `create_time`): no detector
/// can match it, so the per-key scan is skipped (most names in TikTok bodies are like this).
pub fn is_plain_name(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Sorts by start (longer, then more specific, first on ties) and drops candidates overlapping an accepted one.
pub(crate) fn resolve_overlaps(found: &mut Vec<Finding>) {
    if found.len() < 2 {
        return;
    }
    // On equal spans the more specific kind (earlier in `PiiKind`) wins, e.g. `jwt` over `secret`.
    found.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.kind.cmp(&b.kind))
    });
    let mut kept_end = 0;
    let mut first = true;
    found.retain(|f| {
        if first || f.start >= kept_end {
            first = false;
            kept_end = f.end;
            true
        } else {
            false
        }
    });
}

fn digits(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0')
}

/// Luhn checksum over the digits of `s` (separators ignored).
pub fn luhn_ok(s: &str) -> bool {
    let ds: Vec<u8> = digits(s).collect();
    if ds.is_empty() {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A payment card: 13-19 digits, Luhn-valid, and an issuer prefix that allows that length.
/// Bare 17-19 digit runs are where TikTok's order/sku/shop ids live, so those lengths only count
/// for issuers that really issue them (Visa 19, UnionPay, Discover, JCB).
pub fn is_payment_card(s: &str) -> bool {
    let ds: Vec<u8> = digits(s).collect();
    let len = ds.len();
    if !(13..=19).contains(&len) || !luhn_ok(s) {
        return false;
    }
    let prefix = |n: usize| ds[..n].iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d));
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = len == 16 && ((51..=55).contains(&p2) || (2221..=2720).contains(&p4));
    let amex = len == 15 && (p2 == 34 || p2 == 37);
    let discover =
        (16..=19).contains(&len) && (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3));
    let jcb = (16..=19).contains(&len) && (3528..=3589).contains(&p4);
    let diners =
        (14..=19).contains(&len) && ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39);
    let unionpay = (16..=19).contains(&len) && p2 == 62;
    let maestro = (13..=16).contains(&len) && (p2 == 50 || (56..=69).contains(&p2));
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

/// Brazilian CPF check digits over exactly 11 digits; all-same-digit numbers are invalid.
pub fn cpf_check_digits_ok(s: &str) -> bool {
    let ds: Vec<u32> = digits(s).map(u32::from).collect();
    if ds.len() != 11 || ds.iter().all(|&d| d == ds[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = ds[..n]
            .iter()
            .enumerate()
            .map(|(i, &d)| d * (n as u32 + 1 - i as u32))
            .sum();
        let r = (sum * 10) % 11;
        if r == 10 { 0 } else { r }
    };
    check(9) == ds[9] && check(10) == ds[10]
}

/// A phone candidate is kept when the number itself (the extension aside) has a plausible
/// number of digits (7-15, E.164's maximum).
fn plausible_phone(s: &str) -> bool {
    let number = s
        .find(|c: char| c.is_ascii_alphabetic() || c == '#' || c == ';' || c == ',')
        .map_or(s, |end| &s[..end]);
    let n = digits(number).count();
    let n = if number.starts_with("00") {
        n.saturating_sub(2)
    } else {
        n
    };
    (7..=15).contains(&n)
}

/// A GTIN-8, -12 (UPC-A), -13 (EAN/ISBN-13) or -14: only digits, one of those lengths, and a
/// valid check digit (weights 3 and 1 alternating from the right, the check digit excluded).
pub fn is_gtin(s: &str) -> bool {
    let s = s.trim();
    if !matches!(s.len(), 8 | 12 | 13 | 14) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let ds: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
    let (body, check) = ds.split_at(ds.len() - 1);
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 0 { d * 3 } else { d })
        .sum();
    (10 - sum % 10) % 10 == check[0]
}

/// IPv6 candidates must parse and have at least three non-empty groups, which keeps Rust paths
/// (`gateway::admin`), times (`12:30:45`) and MAC addresses out.
fn plausible_ipv6(s: &str) -> bool {
    s.split(':').filter(|g| !g.is_empty()).count() >= 3 && s.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, String)> {
        let d = Detectors::new().expect("patterns compile");
        d.find_all(text)
            .into_iter()
            .map(|f| (f.kind, text[f.start..f.end].to_string()))
            .collect()
    }

    fn one(text: &str, kind: PiiKind, value: &str) {
        let got = kinds(text);
        assert!(
            got.iter().any(|(k, v)| *k == kind && v == value),
            "{text:?}: expected {kind:?} {value:?}, got {got:?}"
        );
    }

    fn none(text: &str) {
        let got = kinds(text);
        assert!(got.is_empty(), "{text:?}: unexpected {got:?}");
    }

    #[test]
    fn emails() {
        one(
            "contact maria.silva+x@example.com.br now",
            PiiKind::Email,
            "maria.silva+x@example.com.br",
        );
        one(
            "buyer v2b2V5@chat.seller.tiktok.com",
            PiiKind::Email,
            "v2b2V5@chat.seller.tiktok.com",
        );
        none("an @ sign alone, user@localhost");
    }

    #[test]
    fn phones_in_many_formats() {
        for p in [
            "+1 213 555 0142",
            "+44 20 7946 0958",
            "+55 (11) 98765-4321",
            "(+1)213-555-0142",
            "+12135550142",
            "0044 20 7946 0958",
            "(213) 555-0142",
            "213-555-0142",
            "213.555.0142",
            "020 7946 0958",
            "07700 900123",
            "(11) 98765-4321",
            "+49 30/1234567",
        ] {
            one(&format!("call {p} today"), PiiKind::Phone, p);
        }
    }

    #[test]
    fn phones_with_extensions_are_found_whole() {
        for p in [
            "+1 415-555-0100 ext. 23",
            "+1 415-555-0100 Ext 23",
            "+1 415-555-0100 extension 2301",
            "+1-415-555-0100;ext=23",
            "tel:+1-415-555-0100;ext=23",
            "+14155550100x23",
            "415-555-0100x23",
            "(415) 555-0142 x77",
            "(415) 555-0142, ext. 9",
            "020 7946 0958 #4411",
            "07700 900123 ext 5",
        ] {
            let text = format!("call {p} today");
            let expected = p.trim_start_matches("tel:");
            one(&text, PiiKind::Phone, expected);
        }
        // A long extension does not make the number implausible.
        one(
            "call +1 415-555-0100 ext. 123456",
            PiiKind::Phone,
            "+1 415-555-0100 ext. 123456",
        );
        // Not phones: resolutions, multiplications, versions.
        none("image 1920x1080 at 3 x 4");
    }

    #[test]
    fn gtin_check_digits() {
        for good in [
            "00012345678905",
            "9780596520687",
            "4006381333931",
            "036000291452",
            "96385074",
        ] {
            assert!(is_gtin(good), "{good}");
        }
        for bad in [
            "00012345678906",
            // TikTok's own sample value: its check digit is wrong.
            "10000000000010",
            "9780596520688",
            "036000291453",
            "96385075",
            "1234567",
            "123456789012345",
            "0001234567890a",
            "",
        ] {
            assert!(!is_gtin(bad), "{bad}");
        }
    }

    #[test]
    fn cards_need_luhn_and_issuer() {
        one(
            "card 4111 1111 1111 1111 ok",
            PiiKind::PaymentCard,
            "4111 1111 1111 1111",
        );
        one(
            "card 5500-0000-0000-0004",
            PiiKind::PaymentCard,
            "5500-0000-0000-0004",
        );
        one(
            "amex 378282246310005",
            PiiKind::PaymentCard,
            "378282246310005",
        );
        one(
            "visa19 4111111111111111110",
            PiiKind::PaymentCard,
            "4111111111111111110",
        );
        // Luhn fails: not a card, and a grouped 16-digit number is not a phone either.
        assert!(!is_payment_card("4111 1111 1111 1112"));
        assert!(
            kinds("card 4111 1111 1111 1112")
                .iter()
                .all(|(k, _)| *k != PiiKind::PaymentCard)
        );
    }

    #[test]
    fn the_readme_states_the_card_rule_this_detector_applies() {
        // Luhn alone is not enough here (a Luhn-valid TikTok id is not a card); the README must
        // not promise the looser rule.
        let readme = include_str!("../../README.md").replace('\n', " ");
        assert!(
            !readme.contains("Luhn-valid card"),
            "README still says Luhn alone"
        );
        assert!(readme.contains("pass Luhn *and*"), "README card rule");
        for issuer in [
            "Visa",
            "Mastercard",
            "Amex",
            "Discover",
            "JCB",
            "Diners",
            "UnionPay",
            "Maestro",
        ] {
            assert!(readme.contains(issuer), "README names {issuer}");
        }
        assert!(luhn_ok("4111111111111111") && is_payment_card("4111111111111111"));
        assert!(luhn_ok("9111111111111110") && !is_payment_card("9111111111111110"));
    }

    #[test]
    fn tiktok_ids_and_timestamps_are_not_cards_or_phones() {
        // Real-shaped ids from the API samples, some of which pass Luhn by chance.
        for id in [
            "576461413038785752",
            "577086512123755123",
            "2729382476852921560",
            "1729582718312380123",
            "6617675021119438849",
            "7494049642642441621",
            "7021436810468230477",
            "6955005333819123123",
            "1152321127278713123",
            "3458767051733897992",
            "1619611563",
            "1694685539000",
            "202203070749000101890810281E8C70B7",
        ] {
            none(&format!("{{\"id\":\"{id}\",\"create_time\":1619611561}}"));
            none(&format!("order {id} at 1619611561"));
        }
        // An 18-digit id that passes Luhn is still not a card: no issuer uses that prefix/length.
        let luhn_valid_id = (0..10)
            .map(|d| format!("57646141303878575{d}"))
            .find(|s| luhn_ok(s))
            .expect("one check digit makes it Luhn-valid");
        assert!(!is_payment_card(&luhn_valid_id));
        none(&format!("order_id={luhn_valid_id}"));
    }

    #[test]
    fn cpf_formatted_and_bare_with_check_digits() {
        assert!(cpf_check_digits_ok("529.982.247-25"));
        assert!(!cpf_check_digits_ok("529.982.247-26"));
        assert!(!cpf_check_digits_ok("111.111.111-11"));
        one("cpf 529.982.247-25", PiiKind::Cpf, "529.982.247-25");
        one("cpf 52998224725 ok", PiiKind::Cpf, "52998224725");
        // Bare 11 digits failing the check digits are not a CPF.
        assert!(
            kinds("n 52998224726 x")
                .iter()
                .all(|(k, _)| *k != PiiKind::Cpf)
        );
    }

    #[test]
    fn ip_addresses() {
        one("from 203.0.113.42:443", PiiKind::IpAddress, "203.0.113.42");
        one(
            "from 2001:db8:85a3::8a2e:370:7334 ok",
            PiiKind::IpAddress,
            "2001:db8:85a3::8a2e:370:7334",
        );
        none("target tiktok_gateway::admin::db at 12:30:45 mac 00:1a:2b:3c:4d:5e");
        none("999.1.1.1 is not an address");
    }

    #[test]
    fn tokens() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMifQ.c2lnbmF0dXJlLWJ5dGVz";
        one(&format!("tok {jwt} end"), PiiKind::Jwt, jwt);
        one(
            "Authorization: Bearer abcDEF123456789xyz",
            PiiKind::BearerToken,
            "Bearer abcDEF123456789xyz",
        );
        one(
            "cipher ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY",
            PiiKind::TiktokToken,
            "ROW_RHkDDABBAAB8tKAVoAqsMTjsQZFLyNfY",
        );
        one(
            "tok TTP_aGVsbG8td29ybGQtdG9rZW4",
            PiiKind::TiktokToken,
            "TTP_aGVsbG8td29ybGQtdG9rZW4",
        );
        one(
            "GET /x?app_key=1&sign=b596b73e0cc6de07ac26f036364178ab&x=1",
            PiiKind::Secret,
            "b596b73e0cc6de07ac26f036364178ab",
        );
        one(
            "{\"access_token\":\"opaque-value-1\"}",
            PiiKind::Secret,
            "opaque-value-1",
        );
        one(
            "x-tts-access-token: opaque-value-2",
            PiiKind::Secret,
            "opaque-value-2",
        );
        one(
            "Config { app_secret: \"s3cr3t-value\" }",
            PiiKind::Secret,
            "s3cr3t-value",
        );
        // Pagination tokens are not credentials.
        none("next_page_token=6AsPQsUMvH3Rkch");
    }
}
