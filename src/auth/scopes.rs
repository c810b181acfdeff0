//! A small, immutable set of OAuth scope names with cheap membership checks.
//!
//! Sets are tiny (a handful of names), so a sorted boxed slice beats a hash set: no hashing,
//! no allocation on lookup. The space-separated form is kept precomputed because the pipeline
//! sends it upstream (`x-gateway-scopes`) and in `WWW-Authenticate`.

use std::sync::Arc;

/// Upper bound on scopes taken from one token; the token size limit bounds it too.
const MAX_SCOPES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope #{index} is empty or contains characters outside RFC 6749 scope-token")]
    Invalid { index: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSet {
    sorted: Box<[Box<str>]>,
    joined: Arc<str>,
}

impl Default for ScopeSet {
    fn default() -> Self {
        Self {
            sorted: Box::new([]),
            joined: Arc::from(""),
        }
    }
}

/// RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`: visible ASCII without `"` and
/// `\`, which also makes every scope safe inside a header value and a quoted challenge string.
pub fn is_valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

impl ScopeSet {
    /// Scopes from configuration: every name must be valid, otherwise the config is refused.
    pub fn from_config<I, S>(names: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for (index, n) in names.into_iter().enumerate() {
            let n = n.as_ref();
            if !is_valid_scope(n) {
                return Err(ScopeError::Invalid { index });
            }
            out.push(Box::<str>::from(n));
        }
        Ok(Self::from_vec(out))
    }

    /// Scopes granted by a token. Names that are not valid scope tokens are dropped: they could
    /// never equal a configured scope, and dropping them keeps the propagated header clean.
    pub fn from_granted<'a, I>(names: I) -> Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        let out: Vec<Box<str>> = names
            .into_iter()
            .filter(|n| is_valid_scope(n))
            .take(MAX_SCOPES)
            .map(Box::from)
            .collect();
        Self::from_vec(out)
    }

    /// A space-separated scope string (the OAuth `scope` claim form).
    pub fn from_space_separated(s: &str) -> Self {
        Self::from_granted(s.split(' '))
    }

    fn from_vec(mut v: Vec<Box<str>>) -> Self {
        v.sort_unstable();
        v.dedup();
        let joined = Arc::from(v.join(" "));
        Self {
            sorted: v.into_boxed_slice(),
            joined,
        }
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.sorted
            .binary_search_by(|s| s.as_ref().cmp(scope))
            .is_ok()
    }

    /// True when every scope of `required` is present here (an empty requirement always holds).
    pub fn contains_all(&self, required: &ScopeSet) -> bool {
        required.sorted.iter().all(|r| self.contains(r))
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.sorted.iter().map(|s| s.as_ref())
    }

    /// Space-separated, sorted: `a b c`.
    pub fn joined(&self) -> &Arc<str> {
        &self.joined
    }

    /// The union of two sets (used to merge scopes from several matching mTLS rules).
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        Self::from_vec(
            self.sorted
                .iter()
                .chain(other.sorted.iter())
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_and_subset() {
        let have = ScopeSet::from_space_separated("orders:read  pii:read orders:read");
        assert_eq!(have.len(), 2);
        assert_eq!(have.joined().as_ref(), "orders:read pii:read");
        assert!(have.contains("pii:read"));
        assert!(!have.contains("orders:write"));
        let need = ScopeSet::from_config(["orders:read"]).unwrap();
        assert!(have.contains_all(&need));
        let need_more = ScopeSet::from_config(["orders:read", "admin"]).unwrap();
        assert!(!have.contains_all(&need_more));
        assert!(have.contains_all(&ScopeSet::default()));
    }

    #[test]
    fn config_refuses_invalid_names() {
        assert_eq!(
            ScopeSet::from_config(["ok", "bad\"quote"]),
            Err(ScopeError::Invalid { index: 1 })
        );
        assert!(ScopeSet::from_config(["with space"]).is_err());
        assert!(ScopeSet::from_config([""]).is_err());
        assert!(ScopeSet::from_config(["back\\slash"]).is_err());
    }

    #[test]
    fn granted_drops_invalid_names() {
        let s = ScopeSet::from_granted(["ok", "new\nline", "é", ""]);
        assert_eq!(s.joined().as_ref(), "ok");
    }

    #[test]
    fn granted_is_bounded() {
        let many: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
        let s = ScopeSet::from_granted(many.iter().map(String::as_str));
        assert_eq!(s.len(), MAX_SCOPES);
    }
}
