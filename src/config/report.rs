//! Config issues for people and for CI. For people: `file:line:col: error: path: message`, the
//! line it is about with a caret under the column, and the hint; for CI: one JSON object. Issues
//! found after loading (the compile step, the listeners' TLS files) carry a YAML path but no
//! column: `locate` finds their place in the text by that path.

use std::fmt::Write;

use serde_json::json;

use super::diagnostics::{ConfigIssue, Severity, sort};
use super::yaml_tree::{self, Found, Node, Pos, Span, Value};

/// Gives every issue the most precise position the text allows: the node its YAML path names,
/// unless the issue already points inside that node; for a path the file does not have (a
/// missing key), the nearest node above it.
pub fn locate(text: &str, issues: &mut [ConfigIssue]) {
    if issues.iter().all(|i| i.path.is_empty()) {
        return;
    }
    let Ok(Some(root)) = yaml_tree::parse(text) else {
        return;
    };
    for issue in issues.iter_mut() {
        locate_one(&root, text, issue);
    }
}

fn locate_one(root: &Node, text: &str, issue: &mut ConfigIssue) {
    if issue.path.is_empty() {
        return;
    }
    let (found, whole) = yaml_tree::follow(root, &issue.path);
    let at = found.anchor();
    let is_root = std::ptr::eq(found.node, root);
    let set = |issue: &mut ConfigIssue, p: Pos| {
        issue.line = Some(u64::from(p.line));
        issue.col = Some(u64::from(p.col));
    };
    match (issue.line, issue.col) {
        (Some(line), Some(col)) => {
            // A position inside the node is more precise than the node; the node's own start is
            // not (a map's value starts at its first key: point at the map's key instead).
            if whole && (!inside(&found, line, col) || is_start(found.node, line, col)) {
                set(issue, at);
            }
        }
        (Some(line), None) => {
            if whole || (!is_root && u64::from(at.line) == line) {
                set(issue, at);
            } else {
                let indent = text
                    .lines()
                    .nth(line.saturating_sub(1) as usize)
                    .map(|l| l.chars().take_while(|c| c.is_whitespace()).count())
                    .unwrap_or(0);
                issue.col = Some(indent as u64 + 1);
            }
        }
        _ => {
            if !is_root {
                set(issue, at);
            }
        }
    }
}

fn is_start(node: &Node, line: u64, col: u64) -> bool {
    u64::from(node.span.start.line) == line && u64::from(node.span.start.col) == col
}

/// Whether a position lies in a node or on its key.
fn inside(found: &Found<'_>, line: u64, col: u64) -> bool {
    let p = Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
    };
    let start = found.key_span.map_or(found.node.span.start, |k| k.start);
    start <= p && p < found.node.span.end
}

/// The human report: every issue in file order, then a count.
pub fn text(file: &str, source: &str, issues: &[ConfigIssue]) -> String {
    let mut issues = issues.to_vec();
    sort(&mut issues);
    let lines: Vec<&str> = source.lines().collect();
    let secrets = secret_spans(source);
    let gutter = issues
        .iter()
        .filter_map(|i| i.line)
        .max()
        .map_or(1, |l| l.to_string().len());
    let mut out = String::new();
    for issue in &issues {
        let _ = match (issue.line, issue.col) {
            (Some(line), Some(col)) => write!(out, "{file}:{line}:{col}: "),
            (Some(line), None) => write!(out, "{file}:{line}: "),
            _ => write!(out, "{file}: "),
        };
        out.push_str(issue.severity.as_str());
        out.push_str(": ");
        if !issue.path.is_empty() {
            out.push_str(&issue.path);
            out.push_str(": ");
        }
        out.push_str(&issue.message);
        out.push('\n');
        if let Some(line_no) = issue.line
            && let Some(line) = lines.get(line_no.saturating_sub(1) as usize)
        {
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad} |");
            let line = &masked(line, line_no, &secrets);
            let _ = writeln!(out, "{line_no:>gutter$} | {line}");
            if let Some(col) = issue.col {
                let col = col.saturating_sub(1) as usize;
                let before: String = line
                    .chars()
                    .take(col)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let width = token_width(line, col);
                let _ = writeln!(out, "{pad} | {before}{}", "^".repeat(width));
            }
        }
        if let Some(hint) = &issue.hint {
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad} = hint: {hint}");
        }
        out.push('\n');
    }
    let errors = issues.iter().filter(|i| i.is_error()).count();
    let warnings = issues.len() - errors;
    let _ = writeln!(
        out,
        "{file}: {}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    );
    out
}

/// Keys whose values are secrets or secret references. Validation refuses an inline secret;
/// printing the line it is on would put the secret in a terminal or a CI log, so it is masked.
const SECRET_KEYS: &[&str] = &[
    "app_secret",
    "client_secret",
    "access_token",
    "refresh_token",
    "hmac_secret",
    "key_secret",
    "forward_secret",
    "pseudonym_key",
    "sha256",
];

/// Where the secret values of `source` are (references such as `${env:X}` are not secret).
fn secret_spans(source: &str) -> Option<Vec<Span>> {
    let root = yaml_tree::parse(source).ok()??;
    let mut out = Vec::new();
    collect_secrets(&root, None, &mut out);
    Some(out)
}

fn collect_secrets(node: &Node, key: Option<&str>, out: &mut Vec<Span>) {
    match &node.value {
        Value::Map(entries) => {
            for e in entries {
                let secret = match &e.value.value {
                    // A well-formed reference names where the secret is, not the secret.
                    Value::Scalar(v) if super::secret_ref::parse_secret_ref(&v.text).is_ok() => {
                        false
                    }
                    Value::Scalar(v) => {
                        SECRET_KEYS.contains(&e.key.as_str())
                            || (e.key == "key" && key == Some("token_store"))
                            || ((e.key == "url" || e.key == "redis_url") && v.text.contains('@'))
                    }
                    _ => false,
                };
                if secret {
                    out.push(e.value.span);
                } else {
                    collect_secrets(&e.value, Some(&e.key), out);
                }
            }
        }
        Value::Seq(items) => items.iter().for_each(|i| collect_secrets(i, key, out)),
        _ => {}
    }
}

/// `line` (number `line_no`) with secret values replaced by `*` of the same width, quotes
/// kept. Without a tree (the text is not YAML), any value after a secret key's name is masked.
fn masked(line: &str, line_no: u64, secrets: &Option<Vec<Span>>) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    let mut hide = |from: usize, to: usize| {
        for c in chars.iter_mut().take(to).skip(from) {
            if !matches!(c, '"' | '\'') {
                *c = '*';
            }
        }
    };
    match secrets {
        Some(spans) => {
            for s in spans {
                let (start, end) = (u64::from(s.start.line), u64::from(s.end.line));
                if (start..=end).contains(&line_no) {
                    let from = if start == line_no {
                        s.start.col as usize - 1
                    } else {
                        0
                    };
                    let to = if end == line_no {
                        s.end.col as usize - 1
                    } else {
                        usize::MAX
                    };
                    hide(from, to);
                }
            }
        }
        None => {
            let text: String = line.chars().collect();
            for key in SECRET_KEYS.iter().chain(&["key", "url", "redis_url"]) {
                let needle = format!("{key}:");
                if let Some(at) = text.find(&needle) {
                    let from = text[..at].chars().count() + needle.chars().count();
                    hide(from, usize::MAX);
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// How many characters the caret underlines: the quoted string, key or word starting at `col`
/// (0-based), at least one.
fn token_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col).collect();
    let Some(first) = rest.first() else {
        return 1;
    };
    if *first == '"' || *first == '\'' {
        let close = rest.iter().skip(1).position(|c| c == first);
        return close.map_or(rest.len(), |i| i + 2);
    }
    let mut width = 0;
    for (i, c) in rest.iter().enumerate() {
        let key_end = *c == ':' && rest.get(i + 1).is_none_or(|n| n.is_whitespace());
        if key_end || c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#') {
            break;
        }
        width += 1;
    }
    width.max(1)
}

/// The CI report: one object with every issue.
pub fn json(file: &str, issues: &[ConfigIssue]) -> serde_json::Value {
    let mut issues = issues.to_vec();
    sort(&mut issues);
    let errors = issues.iter().filter(|i| i.is_error()).count();
    let diagnostics: Vec<serde_json::Value> = issues
        .iter()
        .map(|i| {
            json!({
                "severity": i.severity.as_str(),
                "file": file,
                "line": i.line,
                "col": i.col,
                "path": i.path,
                "message": i.message,
                "hint": i.hint,
            })
        })
        .collect();
    json!({
        "file": file,
        "ok": errors == 0,
        "errors": errors,
        "warnings": issues.iter().filter(|i| i.severity == Severity::Warning).count(),
        "diagnostics": diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_sits_under_the_column_and_spans_the_value() {
        let source = "a:\n  methods: GET\n\tb: \"x y\"\n";
        let issues = [
            ConfigIssue::error("a.methods", "must be a list")
                .at_line_col(2, 12)
                .hint("write `methods: [GET]`"),
            ConfigIssue::warning("b", "odd").at_line_col(3, 5),
        ];
        let out = text("g.yaml", source, &issues);
        assert_eq!(
            out,
            "g.yaml:2:12: error: a.methods: must be a list\n  |\n2 |   methods: GET\n  |            ^^^\n  = hint: write `methods: [GET]`\n\n\
             g.yaml:3:5: warning: b: odd\n  |\n3 | \tb: \"x y\"\n  | \t   ^^^^^\n\n\
             g.yaml: 1 error, 1 warning\n"
        );
    }

    #[test]
    fn secret_values_are_masked_in_the_printed_line() {
        let source = "tiktok:\n  apps:\n    main: { app_key: k, app_secret: \"hunter2\", api_base: x }\n  token_store: { path: p, key: abc }\nrate_limits: { url: \"redis://:pw@h\" }\nx: { app_secret: \"${env:S}\" }\n";
        let issues = [
            ConfigIssue::error("tiktok.apps.main.app_secret", "inline").at_line_col(3, 39),
            ConfigIssue::error("tiktok.token_store.key", "inline").at_line_col(4, 32),
            ConfigIssue::error("rate_limits.url", "inline").at_line_col(5, 21),
            ConfigIssue::error("x", "fine").at_line_col(6, 1),
        ];
        let out = text("g.yaml", source, &issues);
        assert!(
            !out.contains("hunter2") && !out.contains("abc") && !out.contains(":pw@"),
            "{out}"
        );
        assert!(
            out.contains("app_secret: \"*******\", api_base: x"),
            "{out}"
        );
        assert!(out.contains("\"${env:S}\""), "references are shown: {out}");
        // Not YAML: whatever follows a secret key's name is masked.
        let out = text(
            "g.yaml",
            "a: [\nsha256: deadbeef\n",
            &[ConfigIssue::error("", "x").at_line_col(2, 1)],
        );
        assert!(!out.contains("deadbeef"), "{out}");
    }

    #[test]
    fn keys_stop_at_the_colon() {
        assert_eq!(token_width("  upstream: orders", 2), 8);
        assert_eq!(token_width("url: https://x.example/a", 5), 19);
        assert_eq!(token_width("{ methods: [GET] }", 12), 3);
        assert_eq!(token_width("", 4), 1);
    }

    #[test]
    fn paths_give_issues_their_position() {
        let source = "routes:\n  - name: a\n    auth: { jwt: idp, scopes: [x] }\n";
        let mut issues = vec![
            ConfigIssue::error("routes[0].auth.scopes", "bad"),
            ConfigIssue::error("routes[0].upstream", "missing"),
            ConfigIssue::error("webhooks", "needed"),
            // Pointing inside the node its path names: kept.
            ConfigIssue::error("routes[0].auth", "inside").at_line_col(3, 13),
            // Pointing elsewhere: moved to the node.
            ConfigIssue::error("routes[0].auth.jwt", "elsewhere").at_line_col(3, 11),
        ];
        issues[0].line = Some(2);
        locate(source, &mut issues);
        let at: Vec<(Option<u64>, Option<u64>)> = issues.iter().map(|i| (i.line, i.col)).collect();
        assert_eq!(
            at,
            [
                (Some(3), Some(31)),
                (Some(2), Some(5)),
                (None, None),
                (Some(3), Some(13)),
                (Some(3), Some(18)),
            ]
        );
    }

    #[test]
    fn json_has_one_entry_per_issue() {
        let issues = [ConfigIssue::error("x", "bad").at_line_col(1, 2)];
        let v = json("g.yaml", &issues);
        assert_eq!(v["ok"], false);
        assert_eq!(v["errors"], 1);
        assert_eq!(
            v["diagnostics"][0],
            json!({"severity": "error", "file": "g.yaml", "line": 1, "col": 2, "path": "x", "message": "bad", "hint": null})
        );
    }
}
