//! Finds `key <sep> value` pairs in free text for a fixed set of key names, whatever the
//! notation: `key=value` (query strings, logfmt), `key: value` (headers, Debug output),
//! `"key":"value"` (JSON) and `\"key\":\"value\"` (JSON embedded in a JSON log line). This is
//! how structured personal data (a `?order` Debug dump, a JSON body in a message) is caught in
//! log text even though a name or street cannot be recognised by its shape.

use regex::Regex;

/// Matcher for one key set. Keys match case-insensitively, on a word boundary.
#[derive(Debug)]
pub struct KeyedValueMatcher {
    re: Regex,
}

impl KeyedValueMatcher {
    /// `spaces_in_bare`: whether an unquoted value may contain spaces (names, addresses) or
    /// ends at the first whitespace (tokens).
    pub fn new<'a>(
        keys: impl Iterator<Item = &'a str>,
        spaces_in_bare: bool,
    ) -> Result<Self, regex::Error> {
        let mut alternation = String::new();
        let mut keys: Vec<&str> = keys.collect();
        // Longest first, so `access_token` wins over `token` at the same position.
        keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
        for k in keys {
            if !alternation.is_empty() {
                alternation.push('|');
            }
            alternation.push_str(&regex::escape(k));
        }
        if alternation.is_empty() {
            // A pattern that never matches keeps the type simple for an empty key set.
            alternation.push_str("[^\\s\\S]");
        }
        let bare = if spaces_in_bare {
            r#"[^\s"'\\&,;(){}\[\]][^"'\\&,;(){}\[\]\r\n]*"#
        } else {
            r#"(?:(?i:bearer|basic)\s+)?[^\s"'\\&,;(){}\[\]]+"#
        };
        let pattern = format!(
            r#"(?i)(?:{alternation})\\?["']?\s*[:=]\s*(?:\\"((?:[^"\\]|\\[^"\\])*)\\"|"((?:[^"\\]|\\.)*)"|'([^'\\\r\n]*)'|({bare}))"#
        );
        Ok(Self {
            re: Regex::new(&pattern)?,
        })
    }

    /// Calls `f(key_and_separator, value_start, value_end)` for every non-empty value found.
    /// The first argument is the matched text before the value (key plus notation), for callers
    /// that need the key itself.
    pub fn for_each(&self, text: &str, mut f: impl FnMut(&str, usize, usize)) {
        // The pattern starts with the key literals (so the engine can search for them quickly);
        // a key glued to a longer identifier (`sku_name`) is skipped here, and the search resumes
        // one byte later so a real key inside the skipped match is still found.
        // Most text (a request path, a user agent) holds no key at all: until a key is found,
        // a plain search, which needs no capture slots; they are made once, for the first key.
        let mut slots = None;
        let mut at = 0;
        while at <= text.len() {
            if slots.is_none() && self.re.find_at(text, at).is_none() {
                break;
            }
            let slots = slots.get_or_insert_with(|| self.re.capture_locations());
            let Some(whole) = self.re.captures_read_at(slots, text, at) else {
                break;
            };
            let glued = text[..whole.start()]
                .bytes()
                .next_back()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if glued {
                // Keys are ASCII, so `start + 1` is a character boundary.
                at = whole.start() + 1;
                continue;
            }
            if let Some((start, end)) = (1..=4).find_map(|i| slots.get(i)) {
                let trimmed_end = start + text[start..end].trim_end().len();
                if trimmed_end > start {
                    f(&text[whole.start()..start], start, trimmed_end);
                }
            }
            at = whole.end().max(whole.start() + 1);
        }
    }
}

/// Extracts the key name from the `key_and_separator` text given to [`KeyedValueMatcher::for_each`].
pub fn key_of(prefix: &str) -> &str {
    let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let start = prefix.find(is_key).unwrap_or(prefix.len());
    let rest = &prefix[start..];
    let end = rest.find(|c: char| !is_key(c)).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(m: &KeyedValueMatcher, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        m.for_each(text, |k, s, e| {
            out.push((key_of(k).to_string(), text[s..e].to_string()))
        });
        out
    }

    #[test]
    fn all_notations() {
        let m = KeyedValueMatcher::new(["name", "phone_number", "first_name"].into_iter(), true)
            .expect("compiles");
        let v = |t: &str| values(&m, t);
        assert_eq!(
            v("name=David Kong&x=1"),
            [("name".into(), "David Kong".into())]
        );
        assert_eq!(
            v("Addr { name: \"David Kong\", x: 1 }"),
            [("name".into(), "David Kong".into())]
        );
        assert_eq!(
            v("{\"name\":\"David Kong\"}"),
            [("name".into(), "David Kong".into())]
        );
        assert_eq!(
            v(r#"{"message":"{\"first_name\":\"David\",\"phone_number\":\"(+1)213-555-0142\"}"}"#),
            [
                ("first_name".into(), "David".into()),
                ("phone_number".into(), "(+1)213-555-0142".into())
            ]
        );
        assert_eq!(v("NAME: 'Zé Silva'"), [("NAME".into(), "Zé Silva".into())]);
        // Not a key on its own: part of a longer identifier.
        assert!(v("sku_name=Iphone product_name: x").is_empty());
        // A real key hidden inside a skipped match is still found.
        assert_eq!(
            v("sku_name=Iphone name=Ana"),
            [("name".into(), "Ana".into())]
        );
        // Empty values are not reported.
        assert!(v("name=\"\"").is_empty());
    }

    #[test]
    fn tokens_stop_at_whitespace_but_keep_scheme() {
        let m = KeyedValueMatcher::new(["authorization", "token"].into_iter(), false)
            .expect("compiles");
        assert_eq!(
            values(&m, "authorization: Bearer abc.def rest"),
            [("authorization".into(), "Bearer abc.def".into())]
        );
        assert_eq!(
            values(&m, "token=abc def"),
            [("token".into(), "abc".into())]
        );
    }
}
