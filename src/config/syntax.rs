//! YAML syntax errors in plain words, at the place to fix, with the usual fix as a hint. The
//! parser stops at the first syntax error, so there is at most one of these per run.

use serde_saphyr::granit_parser::ErrorKind;

use super::diagnostics::ConfigIssue;
use super::yaml_tree::{Pos, SyntaxError, path_at};

/// The issue for a syntax error in `text`. `partial` is the part of the tree read before the
/// error, if any, to name the YAML path.
pub fn issue(text: &str, e: &SyntaxError) -> ConfigIssue {
    let (pos, message, hint) = describe(text, e);
    let path = e
        .partial_root
        .as_ref()
        // Where the parser stopped: the path it was reading.
        .map(|root| path_at(root, e.pos))
        .unwrap_or_default();
    ConfigIssue::error(path, message)
        .maybe_hint(hint)
        .at_line_col(u64::from(pos.line), u64::from(pos.col))
}

fn describe(text: &str, e: &SyntaxError) -> (Pos, String, Option<String>) {
    let at = e.pos;
    if let Some(reason) = e.reason {
        let hint = match reason {
            r if r.starts_with("a config file holds one") => {
                Some("remove this `---` line and merge the documents into one".into())
            }
            r if r.starts_with("an alias") => {
                Some("define the anchor (`&name`) before the first `*name` that uses it".into())
            }
            _ => None,
        };
        return (at, reason.into(), hint);
    }
    let Some(kind) = e.error.as_ref().map(|e| e.kind()) else {
        return (at, "not valid YAML".into(), None);
    };
    let line = |n: u32| text.lines().nth(n.saturating_sub(1) as usize).unwrap_or("");
    match kind {
        ErrorKind::TabInIndentation
        | ErrorKind::TabInBlockIndentation
        | ErrorKind::TabNotAllowed
        | ErrorKind::TabInPlainScalar
        | ErrorKind::TabAtBlockScalarStart => {
            let pos = first_indenting_tab(text, at.line).unwrap_or(at);
            (
                pos,
                "a tab is used to indent; YAML indents with spaces only".into(),
                Some("replace the tab with spaces".into()),
            )
        }
        ErrorKind::MappingValueNotAllowed | ErrorKind::ExpectedBlockMappingKey => {
            let here = line(at.line);
            let indent = indentation(here);
            let above = (1..at.line)
                .rev()
                .map(line)
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            let start_of_line = Pos {
                line: at.line,
                col: indent as u32 + 1,
            };
            match above {
                Some(above) if indent > indentation(above) && !here.trim_start().starts_with('-') => (
                    start_of_line,
                    "this line is indented further than the key above it, which already has a value"
                        .into(),
                    Some(format!(
                        "line it up with the key above (column {}), or move that key's value onto its own indented lines",
                        indentation(above) + 1
                    )),
                ),
                _ if matches!(kind, ErrorKind::ExpectedBlockMappingKey) => (
                    start_of_line,
                    "this line's indentation matches no key above it".into(),
                    Some("line it up with the keys of the map it belongs to".into()),
                ),
                _ => (
                    at,
                    "a second `: ` on one line: a value cannot itself be `key: value` here".into(),
                    Some("put quotes around a value that contains `: `, or start a nested map on its own indented line".into()),
                ),
            }
        }
        ErrorKind::ExpectedBlockSequenceEntry => (
            at,
            "a list item (`- `) was expected at this indentation".into(),
            Some("start the line with `- `, or indent it under the item it belongs to".into()),
        ),
        ErrorKind::UnclosedFlowCollection { open } => (
            at,
            format!("this `{open}` is never closed"),
            Some(format!("add the matching `{}`", closing(*open))),
        ),
        ErrorKind::MismatchedFlowCollectionEnd { open, close } => (
            at,
            format!("this `{open}` is closed by `{close}`"),
            Some(format!("close it with `{}`", closing(*open))),
        ),
        ErrorKind::MisplacedFlowCollectionEnd => {
            (at, "a closing bracket without an opening one".into(), None)
        }
        ErrorKind::UnclosedQuotedScalar => (
            at,
            "this quoted text is never closed".into(),
            Some("add the closing quote".into()),
        ),
        ErrorKind::InvalidTrailingSingleQuotedScalar
        | ErrorKind::InvalidTrailingDoubleQuotedScalar => (
            at,
            "text follows the closing quote".into(),
            Some("put the whole value inside the quotes".into()),
        ),
        ErrorKind::UnknownAnchor => (
            at,
            "an alias refers to an anchor that is not defined above it".into(),
            Some("define the anchor (`&name`) before the first `*name` that uses it".into()),
        ),
        ErrorKind::UnexpectedCharacter { character } if character.is_control() => (
            at,
            format!(
                "the file contains a control character (U+{:04X})",
                u32::from(*character)
            ),
            None,
        ),
        ErrorKind::UnexpectedCharacter { character } => (
            at,
            format!("`{character}` cannot start a value"),
            Some("put quotes around the value".into()),
        ),
        ErrorKind::BlockEntryInFlowCollection => (
            at,
            "a `- ` list item inside `[...]` or `{...}`".into(),
            Some("inside brackets, separate items with commas".into()),
        ),
        ErrorKind::RecursionLimitExceeded => (at, "nested too deeply".into(), None),
        other => (at, format!("not valid YAML: {other}"), None),
    }
}

fn closing(open: char) -> char {
    match open {
        '[' => ']',
        '{' => '}',
        other => other,
    }
}

/// Width of a line's leading spaces.
fn indentation(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ').count()
}

/// The parser notices a tab where it stops reading, which may be a line or two later than the
/// tab: point at the first tab in a line's indentation from the line before on.
fn first_indenting_tab(text: &str, line: u32) -> Option<Pos> {
    let first = line.saturating_sub(1).max(1);
    text.lines()
        .enumerate()
        .skip(first as usize - 1)
        .take(3)
        .find_map(|(i, l)| {
            let col = l
                .chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .position(|c| c == '\t')?;
            Some(Pos {
                line: i as u32 + 1,
                col: col as u32 + 1,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml_tree::parse;

    fn issue_of(text: &str) -> ConfigIssue {
        issue(text, &parse(text).unwrap_err())
    }

    #[test]
    fn a_tab_is_named_where_it_is() {
        let i = issue_of("m:\n  a: 1\n\tb: 2\n");
        assert_eq!((i.line, i.col), (Some(3), Some(1)));
        assert_eq!(
            i.message,
            "a tab is used to indent; YAML indents with spaces only"
        );
        assert_eq!(i.path, "m.a");
    }

    #[test]
    fn a_key_indented_under_a_scalar_gets_the_indentation_hint() {
        let i = issue_of("m:\n  a: 1\n    b: 2\n");
        assert_eq!((i.line, i.col), (Some(3), Some(5)));
        assert!(
            i.message.starts_with("this line is indented further"),
            "{i}"
        );
        assert!(i.hint.unwrap().contains("column 3"));
    }

    #[test]
    fn brackets_and_quotes() {
        let i = issue_of("m: [a, b\n");
        assert_eq!(i.message, "this `[` is never closed");
        assert_eq!(i.col, Some(4));
        assert_eq!(
            issue_of("m: \"abc\n").message,
            "this quoted text is never closed"
        );
        assert_eq!(issue_of("m: {a: 1]\n").message, "this `{` is closed by `]`");
    }
}
