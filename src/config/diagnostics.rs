//! Config problems with the YAML path, line and column they belong to. Validation collects all of
//! them instead of stopping at the first, so ops fix a file in one pass. Errors refuse the config;
//! warnings (a route that can never match, a setting that does nothing) are printed and accepted.

use std::fmt;

use serde_saphyr::Spanned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub severity: Severity,
    /// Dotted YAML path, e.g. `routes[2].upstream`; empty for the file as a whole.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column in characters, when known.
    pub col: Option<u64>,
    pub message: String,
    /// What to change, when the usual fix is known.
    pub hint: Option<String>,
}

impl ConfigIssue {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            path: path.into(),
            line: None,
            col: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn at_line_col(mut self, line: u64, col: u64) -> Self {
        self.line = Some(line).filter(|l| *l > 0);
        self.col = Some(col).filter(|c| *c > 0 && self.line.is_some());
        self
    }

    /// Located at a spanned value of the parsed file.
    pub fn at<T>(self, at: &Spanned<T>) -> Self {
        self.at_line_col(at.referenced.line(), at.referenced.column())
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (Some(line), Some(col)) => write!(f, "{line}:{col}: ")?,
            (Some(line), None) => write!(f, "{line}: ")?,
            _ => {}
        }
        write!(f, "{}: ", self.severity.as_str())?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded: every error found, and the warnings found with them.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.issues))]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

fn render(issues: &[ConfigIssue]) -> String {
    let errors = issues.iter().filter(|i| i.is_error()).count();
    let mut out = format!("config has {errors} error(s):");
    for issue in issues {
        out.push_str("\n  ");
        out.push_str(&issue.to_string());
    }
    out
}

impl ConfigError {
    pub fn single(path: impl Into<String>, line: Option<u64>, message: impl Into<String>) -> Self {
        let mut issue = ConfigIssue::error(path, message);
        issue.line = line;
        Self {
            issues: vec![issue],
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &ConfigIssue> {
        self.issues.iter().filter(|i| i.is_error())
    }
}

/// Collects issues during validation.
#[derive(Debug, Default)]
pub struct Issues(Vec<ConfigIssue>);

impl Issues {
    /// An error at a line (or none): the position is refined from the path when the file's text
    /// is at hand.
    pub fn add(&mut self, path: impl Into<String>, line: Option<u64>, message: impl Into<String>) {
        let mut issue = ConfigIssue::error(path, message);
        issue.line = line;
        self.0.push(issue);
    }

    /// Adds an error located at a spanned value.
    pub fn at<T>(&mut self, path: impl Into<String>, at: &Spanned<T>, message: impl Into<String>) {
        self.0.push(ConfigIssue::error(path, message).at(at));
    }

    pub fn push(&mut self, issue: ConfigIssue) {
        self.0.push(issue);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(ConfigIssue::is_error)
    }

    /// The value if nothing was found; otherwise every issue, in file order.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        self.finish().map(|_| value)
    }

    /// The warnings if there is no error; otherwise every issue (warnings too), in file order.
    pub fn finish(mut self) -> Result<Vec<ConfigIssue>, ConfigError> {
        sort(&mut self.0);
        if self.has_errors() {
            Err(ConfigError { issues: self.0 })
        } else {
            Ok(self.0)
        }
    }
}

/// File order; issues without a position last, in the order they were found.
pub fn sort(issues: &mut [ConfigIssue]) {
    issues.sort_by_key(|i| (i.line.unwrap_or(u64::MAX), i.col.unwrap_or(0)));
}

/// The line a spanned value came from, if the parser knew it.
pub fn line_of<T>(at: &Spanned<T>) -> Option<u64> {
    match at.referenced.line() {
        0 => None,
        n => Some(n),
    }
}

/// The closest of `candidates` to a mistyped `name`, if one is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, c)| *score >= 0.85 || strsim::osa_distance(name, c) <= 1)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `did you mean `x`?` as a hint, when there is a close name.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let keys = [
            "address",
            "role",
            "tls",
            "allow_plaintext",
            "hosts",
            "connections",
        ];
        assert_eq!(did_you_mean("adress", keys), Some("address"));
        assert_eq!(did_you_mean("host", keys), Some("hosts"));
        assert_eq!(did_you_mean("tsl", keys), Some("tls"));
        assert_eq!(did_you_mean("upstream", keys), None);
        assert_eq!(did_you_mean("address", keys), None, "never the name itself");
    }

    #[test]
    fn display_has_the_position_severity_path_and_hint() {
        let issue = ConfigIssue::error("routes[0].match.methods", "must be a list")
            .at_line_col(19, 46)
            .hint("write `methods: [GET]`");
        assert_eq!(
            issue.to_string(),
            "19:46: error: routes[0].match.methods: must be a list (hint: write `methods: [GET]`)"
        );
        assert_eq!(
            ConfigIssue::warning("", "empty").to_string(),
            "warning: empty"
        );
    }
}
