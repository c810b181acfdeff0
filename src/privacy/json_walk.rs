//! A strict, allocation-light JSON walker that rewrites scalars in place. It validates the whole
//! document (RFC 8259), tracks each value's [`Ctx`] through the catalogue, and copies every byte
//! it does not replace verbatim: numbers keep their exact text (19-digit ids never pass through
//! a float), whitespace and key order are untouched, and a body with nothing to mask comes back
//! byte-identical.

use std::borrow::Cow;

use super::catalogue::{Ctx, FieldCatalogue};
use super::error::MaskError;

/// Nesting limit: deeper documents are refused rather than walked (stack safety).
pub const MAX_DEPTH: usize = 128;

/// The kind of a scalar value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Str,
    Num,
    Bool,
    Null,
}

/// A scalar as found in the source.
#[derive(Debug, Clone, Copy)]
pub struct Scalar<'a> {
    pub kind: ScalarKind,
    /// For strings: the text between the quotes, still escaped. Otherwise the literal text.
    pub raw: &'a str,
    has_escapes: bool,
}

impl<'a> Scalar<'a> {
    /// The value as text: strings unescaped (borrowed unless they contain escapes).
    pub fn text(&self) -> Cow<'a, str> {
        if self.has_escapes {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    pub fn is_empty_string(&self) -> bool {
        self.kind == ScalarKind::Str && self.raw.is_empty()
    }
}

/// Decides about each scalar. Writing JSON text into `replacement` and returning `true` replaces
/// the scalar (including its quotes) with that text.
pub trait Visitor {
    fn scalar(&mut self, ctx: Ctx, scalar: &Scalar<'_>, replacement: &mut String) -> bool;

    /// Decides about an object member's name (`object` is the context of the object holding it):
    /// personal data used as a key (`{"maria@example.com": 1}`) is as personal as a value.
    /// Classification of the member always uses the original name.
    fn key(&mut self, _object: Ctx, _key: &Scalar<'_>, _replacement: &mut String) -> bool {
        false
    }
}

/// Walks `src`; with `rewrite` the result holds the rewritten document, otherwise `None`.
pub fn walk<V: Visitor>(
    src: &[u8],
    catalogue: &FieldCatalogue,
    visitor: &mut V,
    rewrite: bool,
) -> Result<Option<Vec<u8>>, MaskError> {
    let text = std::str::from_utf8(src).map_err(|e| MaskError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let mut w = Walker {
        src: text,
        bytes: src,
        pos: 0,
        catalogue,
        visitor,
        out: if rewrite { Some(Vec::new()) } else { None },
        copied: 0,
        replaced: false,
        scratch: String::new(),
    };
    w.ws();
    w.value(Ctx::Unknown, 0)?;
    w.ws();
    if w.pos != w.bytes.len() {
        return Err(MaskError::InvalidJson { at: w.pos });
    }
    let replaced = w.replaced;
    Ok(w.out.map(|mut out| {
        if !replaced {
            // Nothing replaced: hand back the source bytes unchanged.
            src.to_vec()
        } else {
            out.extend_from_slice(&src[w.copied..]);
            out
        }
    }))
}

struct Walker<'a, 'c, 'v, V> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    catalogue: &'c FieldCatalogue,
    visitor: &'v mut V,
    out: Option<Vec<u8>>,
    copied: usize,
    replaced: bool,
    scratch: String,
}

impl<'a, V: Visitor> Walker<'a, '_, '_, V> {
    fn err(&self) -> MaskError {
        MaskError::InvalidJson { at: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), MaskError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    fn value(&mut self, ctx: Ctx, depth: usize) -> Result<(), MaskError> {
        if depth > MAX_DEPTH {
            return Err(MaskError::TooDeep { limit: MAX_DEPTH });
        }
        match self.peek() {
            Some(b'{') => self.object(ctx, depth),
            Some(b'[') => self.array(ctx, depth),
            Some(b'"') => {
                let start = self.pos;
                let (raw, has_escapes) = self.string()?;
                self.emit(
                    ctx,
                    start,
                    Scalar {
                        kind: ScalarKind::Str,
                        raw,
                        has_escapes,
                    },
                );
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.number()?;
                let raw = &self.src[start..self.pos];
                self.emit(
                    ctx,
                    start,
                    Scalar {
                        kind: ScalarKind::Num,
                        raw,
                        has_escapes: false,
                    },
                );
                Ok(())
            }
            Some(b't') => self.literal("true", ctx, ScalarKind::Bool),
            Some(b'f') => self.literal("false", ctx, ScalarKind::Bool),
            Some(b'n') => self.literal("null", ctx, ScalarKind::Null),
            _ => Err(self.err()),
        }
    }

    fn literal(&mut self, word: &'static str, ctx: Ctx, kind: ScalarKind) -> Result<(), MaskError> {
        if !self.bytes[self.pos..].starts_with(word.as_bytes()) {
            return Err(self.err());
        }
        let start = self.pos;
        self.pos += word.len();
        self.emit(
            ctx,
            start,
            Scalar {
                kind,
                raw: word,
                has_escapes: false,
            },
        );
        Ok(())
    }

    /// Lets the visitor decide about the scalar at `start..self.pos`.
    fn emit(&mut self, ctx: Ctx, start: usize, scalar: Scalar<'_>) {
        self.scratch.clear();
        let replaced = self.visitor.scalar(ctx, &scalar, &mut self.scratch);
        self.replace_from(start, replaced);
    }

    /// Lets the visitor decide about the member name at `start..self.pos`.
    fn emit_key(&mut self, object: Ctx, start: usize, key: Scalar<'_>) {
        self.scratch.clear();
        let replaced = self.visitor.key(object, &key, &mut self.scratch);
        self.replace_from(start, replaced);
    }

    /// With `replaced`, the source at `start..self.pos` becomes the visitor's replacement text.
    fn replace_from(&mut self, start: usize, replaced: bool) {
        if replaced && let Some(out) = self.out.as_mut() {
            if out.capacity() == 0 {
                out.reserve(self.bytes.len() + self.bytes.len() / 8);
            }
            out.extend_from_slice(&self.bytes[self.copied..start]);
            out.extend_from_slice(self.scratch.as_bytes());
            self.copied = self.pos;
            self.replaced = true;
        }
    }

    fn object(&mut self, ctx: Ctx, depth: usize) -> Result<(), MaskError> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err());
            }
            let start = self.pos;
            let (raw, has_escapes) = self.string()?;
            self.emit_key(
                ctx,
                start,
                Scalar {
                    kind: ScalarKind::Str,
                    raw,
                    has_escapes,
                },
            );
            let child = if has_escapes {
                self.catalogue.child(ctx, &unescape(raw))
            } else {
                self.catalogue.child(ctx, raw)
            };
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.value(child, depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err()),
            }
        }
    }

    fn array(&mut self, ctx: Ctx, depth: usize) -> Result<(), MaskError> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(ctx, depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err()),
            }
        }
    }

    /// Parses a string at `self.pos` (on the opening quote); returns its raw content.
    fn string(&mut self) -> Result<(&'a str, bool), MaskError> {
        self.pos += 1;
        let start = self.pos;
        let mut has_escapes = false;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err());
            };
            match b {
                b'"' => {
                    let raw = &self.src[start..self.pos];
                    self.pos += 1;
                    return Ok((raw, has_escapes));
                }
                b'\\' => {
                    has_escapes = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self
                                .bytes
                                .get(self.pos + 1..self.pos + 5)
                                .ok_or(self.err())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(self.err());
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.err()),
                    }
                }
                0x00..=0x1f => return Err(self.err()),
                _ => self.pos += 1,
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), MaskError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err());
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err());
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// Decodes JSON string escapes in already-validated raw string content.
pub fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hi = hex4(&mut chars);
                let code = if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair is two escapes; peek at the second one.
                    let rest = chars.as_str();
                    if let Some(second) = rest.strip_prefix("\\u") {
                        let mut look = second.chars();
                        let lo = hex4(&mut look);
                        if (0xDC00..0xE000).contains(&lo) {
                            chars = look;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            0xFFFD
                        }
                    } else {
                        0xFFFD
                    }
                } else {
                    hi
                };
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
    }
    v
}

/// Appends `s` as a JSON string literal (with quotes).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::catalogue::CatalogueSettings;

    /// Replaces every string with "X" and records contexts, to test the walker alone.
    #[derive(Default)]
    struct Probe {
        seen: Vec<(Ctx, ScalarKind, String)>,
    }
    impl Visitor for Probe {
        fn scalar(&mut self, ctx: Ctx, s: &Scalar<'_>, r: &mut String) -> bool {
            self.seen.push((ctx, s.kind, s.text().into_owned()));
            if s.kind == ScalarKind::Str {
                r.push_str("\"X\"");
                true
            } else {
                false
            }
        }
    }

    fn cat() -> FieldCatalogue {
        FieldCatalogue::new(&CatalogueSettings::default()).expect("valid")
    }

    #[test]
    fn rewrites_strings_and_keeps_everything_else_byte_exact() {
        let src = br#" {"id" : 7494049642642441621, "f": -1.50e+3, "s":"a\"b\u00e9\ud83d\ude00", "a":[true,null,{}] } "#;
        let mut p = Probe::default();
        let out = walk(src, &cat(), &mut p, true)
            .expect("valid")
            .expect("rewrite");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#" {"id" : 7494049642642441621, "f": -1.50e+3, "s":"X", "a":[true,null,{}] } "#
        );
        assert!(
            p.seen
                .iter()
                .any(|(_, k, t)| *k == ScalarKind::Str && t == "a\"bé😀")
        );
        assert!(p.seen.iter().any(|(c, k, t)| *c == Ctx::Keep
            && *k == ScalarKind::Num
            && t == "7494049642642441621"));
    }

    #[test]
    fn untouched_document_is_returned_identical() {
        struct Nop;
        impl Visitor for Nop {
            fn scalar(&mut self, _: Ctx, _: &Scalar<'_>, _: &mut String) -> bool {
                false
            }
        }
        let src = b"{\"a\": [1, 2.5, \"x\"],\n \"b\": {}}";
        assert_eq!(walk(src, &cat(), &mut Nop, true), Ok(Some(src.to_vec())));
        assert_eq!(walk(src, &cat(), &mut Nop, false), Ok(None));
    }

    #[test]
    fn escaped_keys_are_classified_by_their_decoded_name() {
        let mut p = Probe::default();
        walk(br#"{"buyer\u005femail":"a@b.co"}"#, &cat(), &mut p, false).expect("valid");
        assert!(matches!(p.seen[0].0, Ctx::Personal { .. }));
    }

    #[test]
    fn refuses_invalid_json() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\" 1}",
            b"{\"a\":01}",
            b"[1,]",
            b"{\"a\":1,}",
            b"\"\x01\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"tru",
            b"1.",
            b"-",
            b"1e",
            b"{} {}",
            b"{'a':1}",
            b"\xff",
            b"[1 2]",
            b"{\"a\":1 \"b\":2}",
            b"NaN",
        ] {
            assert!(
                walk(bad, &cat(), &mut Probe::default(), true).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_excessive_depth() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert_eq!(
            walk(deep.as_bytes(), &cat(), &mut Probe::default(), false),
            Err(MaskError::TooDeep { limit: MAX_DEPTH })
        );
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(walk(ok.as_bytes(), &cat(), &mut Probe::default(), false).is_ok());
    }

    #[test]
    fn json_string_encoding_round_trips() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_str(&s).expect("valid JSON string");
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
