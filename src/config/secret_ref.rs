//! Secret references: `${env:NAME}` and `${file:/path}`, resolved when the config loads. Secrets are
//! never written inline in YAML (policy §7), and a missing one is an error naming the key, never an
//! empty string.

use std::path::Path;

use super::Secret;

/// What a secret-bearing field may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef<'a> {
    Env(&'a str),
    File(&'a str),
}

/// Parses a `${env:..}` / `${file:..}` reference; anything else is refused (no inline secrets).
pub fn parse_secret_ref(text: &str) -> Result<SecretRef<'_>, String> {
    let inner = text
        .trim()
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| {
            "secrets are never inline: use \"${env:NAME}\" or \"${file:/path}\"".to_string()
        })?;
    if let Some(name) = inner.strip_prefix("env:") {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Not echoed: a mistyped reference may hold the secret itself.
            return Err("not an environment variable name (letters, digits and _ only)".into());
        }
        Ok(SecretRef::Env(name))
    } else if let Some(path) = inner.strip_prefix("file:") {
        if path.is_empty() {
            return Err("empty file path in secret reference".into());
        }
        Ok(SecretRef::File(path))
    } else {
        Err("unknown secret reference: use ${env:NAME} or ${file:/path}".into())
    }
}

/// Resolves a reference. Relative file paths are taken from `base_dir` (the config's folder).
/// A trailing newline in a file is dropped (secrets files usually end with one).
pub fn resolve_secret(text: &str, base_dir: &Path) -> Result<Secret, String> {
    match parse_secret_ref(text)? {
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            Ok(_) => Err(format!("environment variable {name} is empty")),
            Err(_) => Err(format!("environment variable {name} is not set")),
        },
        SecretRef::File(path) => {
            let full = base_dir.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read secret file {}: {e}", full.display()))?;
            let value = text.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(format!("secret file {} is empty", full.display()));
            }
            Ok(Secret::new(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secrets_are_refused() {
        assert!(parse_secret_ref("hunter2").is_err());
        assert!(parse_secret_ref("${vault:x}").is_err());
        assert_eq!(parse_secret_ref("${env:A_B}"), Ok(SecretRef::Env("A_B")));
        assert_eq!(parse_secret_ref("${file:/x}"), Ok(SecretRef::File("/x")));
    }

    #[test]
    fn missing_env_is_an_error_not_empty() {
        let err = resolve_secret("${env:TTGW_SURELY_UNSET_VAR}", Path::new(".")).unwrap_err();
        assert!(err.contains("TTGW_SURELY_UNSET_VAR"));
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "abc\n").unwrap();
        let s = resolve_secret("${file:s}", dir.path()).unwrap();
        assert_eq!(s.expose(), "abc");
        std::fs::write(dir.path().join("e"), "\n").unwrap();
        assert!(resolve_secret("${file:e}", dir.path()).is_err());
    }
}
