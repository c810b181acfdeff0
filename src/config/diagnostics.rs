//! Config problems with the YAML path and line they belong to. Validation collects all of them
//! instead of stopping at the first, so ops fix a file in one pass.

use std::fmt;

use serde_saphyr::Spanned;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted YAML path, e.g. `routes[2].upstream`.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Why a config could not be loaded: every issue found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.issues))]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

fn render(issues: &[ConfigIssue]) -> String {
    let mut out = format!("config has {} error(s):", issues.len());
    for issue in issues {
        out.push_str("\n  ");
        out.push_str(&issue.to_string());
    }
    out
}

impl ConfigError {
    pub fn single(path: impl Into<String>, line: Option<u64>, message: impl Into<String>) -> Self {
        Self {
            issues: vec![ConfigIssue {
                path: path.into(),
                line,
                message: message.into(),
            }],
        }
    }
}

/// Collects issues during validation.
#[derive(Debug, Default)]
pub struct Issues(Vec<ConfigIssue>);

impl Issues {
    pub fn add(&mut self, path: impl Into<String>, line: Option<u64>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            line,
            message: message.into(),
        });
    }

    /// Adds an issue located at a spanned value.
    pub fn at<T>(&mut self, path: impl Into<String>, at: &Spanned<T>, message: impl Into<String>) {
        self.add(path, line_of(at), message);
    }

    /// The value if nothing was found; otherwise every issue, in file order.
    pub fn into_result<T>(mut self, value: T) -> Result<T, ConfigError> {
        self.0.sort_by_key(|i| i.line.unwrap_or(u64::MAX));
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { issues: self.0 })
        }
    }
}

/// The line a spanned value came from, if the parser knew it.
pub fn line_of<T>(at: &Spanned<T>) -> Option<u64> {
    match at.referenced.line() {
        0 => None,
        n => Some(n),
    }
}
