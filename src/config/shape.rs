//! The shape check: the YAML tree against the config's JSON Schema (the one `tiktok-gateway
//! schema` prints, derived from the file model), before anything is deserialized. It reports
//! every unknown key, wrong type, missing key and duplicate key in one pass, in plain words at
//! the node's position, and explains the usual causes (a key indented one level too deep or too
//! shallow, a list written as a single value, a typo) instead of reporting their consequences.
//!
//! A value is read the way the deserializer reads it: any scalar is text, numbers and booleans
//! may be quoted, `yes`/`no`/`on`/`off` are booleans, `~`/`null`/nothing is null.

use std::sync::LazyLock;

use serde_json::{Map, Value as Json};

use super::diagnostics::{ConfigIssue, did_you_mean, suggest};
use super::file::ConfigFile;
use super::yaml_tree::{Entry, Kind, Node, Pos, Span, Step, Value, path_string};

/// The schema, generated once per process.
static SCHEMA: LazyLock<Json> =
    LazyLock::new(|| serde_json::to_value(schemars::schema_for!(ConfigFile)).unwrap_or_default());

/// Every shape problem of `root` (`None`: an empty file).
pub fn check(root: Option<&Node>) -> Vec<ConfigIssue> {
    let mut c = Checker {
        defs: SCHEMA
            .get("$defs")
            .and_then(Json::as_object)
            .unwrap_or(&EMPTY),
        issues: Vec::new(),
    };
    match root {
        None => c.issues.push(
            ConfigIssue::error("", "the config is empty")
                .hint("it needs at least a `listeners:` section")
                .at_line_col(1, 1),
        ),
        Some(root) => c.node(root, &SCHEMA, &mut Vec::new(), None, &mut Vec::new()),
    }
    c.issues
}

static EMPTY: LazyLock<Map<String, Json>> = LazyLock::new(Map::new);

/// A map being checked, for keys found one level too deep.
struct Frame<'a> {
    node: &'a Node,
    schema: &'a Json,
    path: Vec<Step>,
    /// Keys of this map found (mis-indented) in a map below it: not reported missing here.
    claimed: Vec<String>,
}

struct Checker<'s> {
    defs: &'s Map<String, Json>,
    issues: Vec<ConfigIssue>,
}

impl<'s> Checker<'s> {
    /// Follows `$ref`s.
    fn resolve(&self, mut schema: &'s Json) -> &'s Json {
        for _ in 0..16 {
            let Some(name) = schema
                .get("$ref")
                .and_then(Json::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            else {
                break;
            };
            match self.defs.get(name) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    /// The alternatives of an `anyOf`, resolved; a schema without one is its own only branch.
    fn branches(&self, schema: &'s Json) -> Vec<&'s Json> {
        let schema = self.resolve(schema);
        match schema.get("anyOf").and_then(Json::as_array) {
            Some(list) => list.iter().flat_map(|b| self.branches(b)).collect(),
            None => vec![schema],
        }
    }

    fn node(
        &mut self,
        node: &'s Node,
        schema: &'s Json,
        path: &mut Vec<Step>,
        key_span: Option<Span>,
        frames: &mut Vec<Frame<'s>>,
    ) {
        let branches = self.branches(schema);
        let fitting: Vec<&Json> = branches
            .iter()
            .copied()
            .filter(|b| accepts_kind(b, node.kind()))
            .collect();
        let Some(first) = fitting.first().copied() else {
            self.type_error(node, schema, path, key_span);
            return;
        };
        if fitting.len() > 1 {
            // Several alternatives take this kind of value: fine if any of them accepts it.
            for branch in &fitting {
                let mut trial = Checker {
                    defs: self.defs,
                    issues: Vec::new(),
                };
                trial.node_in(node, branch, path, key_span, frames, schema);
                if trial.issues.is_empty() {
                    return;
                }
            }
        }
        self.node_in(node, first, path, key_span, frames, schema);
    }

    /// Checks `node` against one alternative; `whole` (all alternatives) words a type error.
    fn node_in(
        &mut self,
        node: &'s Node,
        branch: &'s Json,
        path: &mut Vec<Step>,
        key_span: Option<Span>,
        frames: &mut Vec<Frame<'s>>,
        whole: &'s Json,
    ) {
        match &node.value {
            Value::Null => {}
            Value::Map(entries) => self.map(node, entries, branch, path, frames),
            Value::Seq(items) => {
                let items_schema = branch.get("items").unwrap_or(&Json::Bool(true));
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.node(item, items_schema, path, None, frames);
                    path.pop();
                }
            }
            Value::Scalar(s) => {
                if !scalar_fits(&s.text, branch) {
                    self.type_error(node, whole, path, key_span);
                    return;
                }
                if let Some(allowed) = branch.get("enum").and_then(Json::as_array) {
                    let names: Vec<String> = allowed.iter().map(enum_text).collect();
                    if !names.contains(&s.text) {
                        let hint = suggest(&s.text, names.iter().map(String::as_str));
                        self.issues.push(
                            ConfigIssue::error(
                                path_string(path),
                                format!(
                                    "{} must be {}, found `{}`",
                                    field(path),
                                    one_of(&names),
                                    shorten(&s.text)
                                ),
                            )
                            .maybe_hint(hint)
                            .at_line_col(pos_line(node.span.start), pos_col(node.span.start)),
                        );
                    }
                }
            }
        }
    }

    fn map(
        &mut self,
        node: &'s Node,
        entries: &'s [Entry],
        schema: &'s Json,
        path: &mut Vec<Step>,
        frames: &mut Vec<Frame<'s>>,
    ) {
        let properties: &'s Map<String, Json> = schema
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&EMPTY);
        let additional = schema.get("additionalProperties");
        let mut emptied: Vec<&str> = Vec::new();
        let mut skip: Vec<usize> = Vec::new();

        // Keys written one level too shallow, next to the map they belong in: report them once,
        // and not also the map they left empty.
        for (i, entry) in entries.iter().enumerate() {
            if entry.merged || properties.contains_key(&entry.key) || additional_allows(additional)
            {
                continue;
            }
            let Some(owner) = properties
                .iter()
                .find(|(_, s)| self.object_has(s, &entry.key))
                .map(|(name, _)| name.as_str())
            else {
                continue;
            };
            skip.push(i);
            let owner_entry = entries.iter().find(|e| e.key == owner);
            let hint = match owner_entry.map(|e| e.value.kind()) {
                Some(Kind::Null) => {
                    emptied.push(owner);
                    format!("indent it under `{owner}:`, which is empty as written")
                }
                Some(_) => format!("indent it under `{owner}:`, with the other keys there"),
                None => format!("write it under a `{owner}:` key"),
            };
            path.push(Step::Key(entry.key.clone()));
            self.issues.push(
                ConfigIssue::error(
                    path_string(path),
                    format!("`{}` belongs under `{owner}`", entry.key),
                )
                .hint(hint)
                .at_line_col(
                    pos_line(entry.key_span.start),
                    pos_col(entry.key_span.start),
                ),
            );
            path.pop();
        }
        // The same in a map of names (`listeners`, `upstreams`): a setting written at the level
        // of the names, after a name left empty.
        if let Some(named) = additional.filter(|a| a.is_object()) {
            for (i, entry) in entries.iter().enumerate() {
                if entry.merged
                    || entry.value.kind() == Kind::Map
                    || !self.object_has(named, &entry.key)
                {
                    continue;
                }
                let Some(owner) = entries[..i]
                    .iter()
                    .rev()
                    .find(|e| !e.merged && e.value.kind() == Kind::Null)
                else {
                    continue;
                };
                skip.push(i);
                emptied.push(owner.key.as_str());
                path.push(Step::Key(entry.key.clone()));
                self.issues.push(
                    ConfigIssue::error(
                        path_string(path),
                        format!("`{}` belongs under `{}`", entry.key, owner.key),
                    )
                    .hint(format!(
                        "indent it under `{}:`, which is empty as written",
                        owner.key
                    ))
                    .at_line_col(
                        pos_line(entry.key_span.start),
                        pos_col(entry.key_span.start),
                    ),
                );
                path.pop();
            }
        }

        frames.push(Frame {
            node,
            schema,
            path: path.clone(),
            claimed: Vec::new(),
        });
        for (i, entry) in entries.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            path.push(Step::Key(entry.key.clone()));
            let first = entries.iter().position(|e| e.key == entry.key);
            if first != Some(i) {
                // A merged key never reaches here: merging skips keys already written.
                let line = first
                    .and_then(|f| entries.get(f))
                    .map(|f| f.key_span.start.line)
                    .unwrap_or(0);
                self.issues.push(
                    ConfigIssue::error(
                        path_string(path),
                        format!(
                            "`{}` is written twice in this map (first on line {line})",
                            entry.key
                        ),
                    )
                    .hint("keep one of them")
                    .at_line_col(
                        pos_line(entry.key_span.start),
                        pos_col(entry.key_span.start),
                    ),
                );
            } else if let Some(property) = properties.get(&entry.key) {
                if !(emptied.contains(&entry.key.as_str()) && entry.value.kind() == Kind::Null) {
                    self.node(&entry.value, property, path, Some(entry.key_span), frames);
                }
            } else if let Some(additional) = additional.filter(|a| additional_allows(Some(a))) {
                if !(emptied.contains(&entry.key.as_str()) && entry.value.kind() == Kind::Null) {
                    self.node(&entry.value, additional, path, Some(entry.key_span), frames);
                }
            } else {
                self.unknown_key(entry, properties, path, frames);
            }
            path.pop();
        }
        let Some(frame) = frames.pop() else { return };

        let required = schema
            .get("required")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let at = anchor_of(node, path, frames);
        for key in required.iter().filter_map(Json::as_str) {
            if entries.iter().any(|e| e.key == key) || frame.claimed.iter().any(|c| c == key) {
                continue;
            }
            path.push(Step::Key(key.to_string()));
            let what = properties
                .get(key)
                .and_then(|p| p.get("description"))
                .and_then(Json::as_str)
                .map(first_sentence);
            self.issues.push(
                ConfigIssue::error(
                    path_string(path),
                    format!("required key `{key}` is missing"),
                )
                .maybe_hint(what.map(|w| format!("`{key}`: {w}")))
                .at_line_col(pos_line(at), pos_col(at)),
            );
            path.pop();
        }
    }

    /// A key this map does not have: written one level too deep (it belongs to a map above), or
    /// a typo.
    fn unknown_key(
        &mut self,
        entry: &Entry,
        properties: &Map<String, Json>,
        path: &[Step],
        frames: &mut [Frame<'s>],
    ) {
        let at = entry.key_span.start;
        let here = path_string(path);
        let parent_key = path.iter().rev().nth(1).and_then(|s| match s {
            Step::Key(k) => Some(k.clone()),
            Step::Index(_) => None,
        });
        // `frames` ends with this map; look at the maps above it, nearest first.
        let depth = frames.len().saturating_sub(1);
        for frame in frames[..depth].iter_mut().rev() {
            // It belongs there if that map has the key, lacks it, and would take its value.
            let fits = self
                .resolve(frame.schema)
                .get("properties")
                .and_then(Json::as_object)
                .and_then(|p| p.get(&entry.key))
                .is_some_and(|s| {
                    self.branches(s)
                        .iter()
                        .any(|b| accepts_kind(b, entry.value.kind()))
                });
            if !fits || frame.node.get(&entry.key).is_some() {
                continue;
            }
            frame.claimed.push(entry.key.clone());
            let owner = match path_string(&frame.path) {
                p if p.is_empty() => "the top level".to_string(),
                p => p,
            };
            let column = match &frame.node.value {
                Value::Map(entries) => entries
                    .iter()
                    .find(|e| !e.merged)
                    .map(|e| e.key_span.start.col),
                _ => None,
            };
            let under = parent_key
                .as_deref()
                .map(|k| format!(" under `{k}`"))
                .unwrap_or_default();
            let hint = match column {
                Some(col) => {
                    format!("move it left to column {col}, in line with the other keys of {owner}")
                }
                None => format!("move it left, in line with the other keys of {owner}"),
            };
            self.issues.push(
                ConfigIssue::error(
                    here,
                    format!("`{}` is indented{under}; it belongs to {owner}", entry.key),
                )
                .hint(hint)
                .at_line_col(pos_line(at), pos_col(at)),
            );
            return;
        }
        let close = did_you_mean(&entry.key, properties.keys().map(String::as_str));
        if let (Some(close), Some(this)) = (close, frames.last_mut())
            && this.node.get(close).is_none()
        {
            // A misspelt required key is not also reported missing.
            this.claimed.push(close.to_string());
        }
        let hint = close.map(|c| format!("did you mean `{c}`?")).or_else(|| {
            (!properties.is_empty()).then(|| {
                let keys: Vec<&str> = properties.keys().map(String::as_str).collect();
                format!("keys allowed here: {}", keys.join(", "))
            })
        });
        self.issues.push(
            ConfigIssue::error(here, format!("unknown key `{}`", entry.key))
                .maybe_hint(hint)
                .at_line_col(pos_line(at), pos_col(at)),
        );
    }

    /// Whether `schema` (a property's) is a map that has `key` among its properties.
    fn object_has(&self, schema: &'s Json, key: &str) -> bool {
        self.branches(schema).iter().any(|b| {
            b.get("properties")
                .and_then(Json::as_object)
                .is_some_and(|p| p.contains_key(key))
        })
    }

    fn type_error(&mut self, node: &Node, schema: &'s Json, path: &[Step], key_span: Option<Span>) {
        let expected = self.describe(schema);
        let key = match path.last() {
            Some(Step::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        let wants = |kind: &str| {
            self.branches(schema)
                .iter()
                .any(|b| types(b).contains(&kind))
        };
        let hint = match (&node.value, key) {
            (Value::Scalar(s), Some(k)) if wants("array") => {
                Some(format!("write `{k}: [{}]`", s.text.trim()))
            }
            (Value::Seq(items), Some(k)) if items.len() == 1 => match &items[0].value {
                Value::Scalar(s) => Some(format!("write a single value: `{k}: {}`", s.text)),
                _ => None,
            },
            (Value::Null, Some(k)) if wants("object") => Some(format!(
                "write its settings on the lines below, indented under `{k}:`"
            )),
            (Value::Map(_), _) if wants("array") => {
                Some("start each item of the list with `- `".into())
            }
            (Value::Seq(_), _) if wants("object") => {
                Some("write `key: value` lines, without `- `".into())
            }
            (Value::Scalar(_), _) if wants("object") => {
                let keys = self.keys_of(schema);
                (!keys.is_empty()).then(|| format!("its keys: {}", keys.join(", ")))
            }
            _ => None,
        };
        let at = match key_span {
            Some(k) if node.block || node.kind() == Kind::Null => k.start,
            _ => node.span.start,
        };
        self.issues.push(
            ConfigIssue::error(
                path_string(path),
                format!("{} must be {expected}, found {}", field(path), found(node)),
            )
            .maybe_hint(hint)
            .at_line_col(pos_line(at), pos_col(at)),
        );
    }

    fn keys_of(&self, schema: &'s Json) -> Vec<String> {
        self.branches(schema)
            .iter()
            .filter_map(|b| b.get("properties").and_then(Json::as_object))
            .flat_map(|p| p.keys().cloned())
            .collect()
    }

    /// What a schema accepts, in plain words.
    fn describe(&self, schema: &'s Json) -> String {
        let mut parts: Vec<String> = Vec::new();
        for branch in self.branches(schema) {
            let words = describe_one(branch);
            if !words.is_empty() && !parts.contains(&words) {
                parts.push(words);
            }
        }
        match parts.len() {
            0 => "something else".into(),
            _ => parts.join(" or "),
        }
    }
}

fn describe_one(schema: &Json) -> String {
    if let Some(allowed) = schema.get("enum").and_then(Json::as_array) {
        let names: Vec<String> = allowed.iter().map(enum_text).collect();
        return one_of(&names);
    }
    let t = types(schema);
    let mut words: Vec<&str> = Vec::new();
    if t.contains(&"object") {
        words.push(if schema.get("properties").is_some() {
            "a map of settings"
        } else {
            "a map of names to settings"
        });
    }
    if t.contains(&"array") {
        words.push("a list");
    }
    if t.contains(&"string") {
        words.push("a single value (text or a number)");
    } else if t.contains(&"number") {
        words.push("a number");
    }
    if t.contains(&"integer") && !t.contains(&"string") {
        let non_negative = schema.get("minimum").and_then(Json::as_f64) == Some(0.0)
            || schema
                .get("format")
                .and_then(Json::as_str)
                .is_some_and(|f| f.starts_with("uint"));
        words.push(if non_negative {
            "a whole number (0 or more)"
        } else {
            "a whole number"
        });
    }
    if t.contains(&"boolean") {
        words.push("true or false");
    }
    words.join(" or ")
}

/// `a`, `b` or `c` in words.
fn one_of(names: &[String]) -> String {
    match names {
        [] => "something else".into(),
        [one] => format!("`{one}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let (last, rest) = quoted
                .split_last()
                .map(|(l, r)| (l.clone(), r))
                .unwrap_or_default();
            format!("one of {} or {last}", rest.join(", "))
        }
    }
}

fn enum_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The schema's `type`, as a list.
fn types(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(list)) => list.iter().filter_map(Json::as_str).collect(),
        // An `enum` without a type takes scalars; no type at all takes anything.
        _ if schema.get("enum").is_some() => vec!["string"],
        _ => vec!["object", "array", "string", "null"],
    }
}

fn additional_allows(additional: Option<&Json>) -> bool {
    match additional {
        None => false,
        Some(Json::Bool(allowed)) => *allowed,
        Some(_) => true,
    }
}

fn accepts_kind(schema: &Json, kind: Kind) -> bool {
    let t = types(schema);
    match kind {
        Kind::Null => t.contains(&"null"),
        Kind::Map => t.contains(&"object"),
        Kind::Seq => t.contains(&"array"),
        Kind::Scalar => t
            .iter()
            .any(|t| matches!(*t, "string" | "number" | "integer" | "boolean")),
    }
}

/// Whether a non-null scalar is one of the schema's scalar types, as the deserializer reads it.
fn scalar_fits(text: &str, schema: &Json) -> bool {
    let t = types(schema);
    // The deserializer reads any scalar as text where text is wanted, and quoted numbers and
    // booleans as numbers and booleans.
    if t.contains(&"string") {
        return true;
    }
    if t.contains(&"integer") && integer_fits(text, schema) {
        return true;
    }
    if t.contains(&"number") && (yaml_int(text).is_some() || yaml_float(text)) {
        return true;
    }
    t.contains(&"boolean") && yaml_bool(text).is_some()
}

/// Within the range the schema's `format` (from the Rust type) and `minimum` allow.
fn integer_fits(text: &str, schema: &Json) -> bool {
    let Some(n) = yaml_int(text) else {
        return false;
    };
    let (lo, hi): (i128, i128) = match schema.get("format").and_then(Json::as_str) {
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint" | "uint64") => (0, u64::MAX.into()),
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    let min = schema
        .get("minimum")
        .and_then(Json::as_i64)
        .map_or(lo, |m| lo.max(m.into()));
    (min..=hi).contains(&n)
}

/// Trims what the deserializer trims around a scalar.
fn trim(text: &str) -> &str {
    text.trim_matches([' ', '\t', '\r', '\n'])
}

/// An integer as the deserializer reads one: optional sign, decimal without leading zeros, or
/// `0x`/`0o`/`0b`, with single `_` between digits.
pub(crate) fn yaml_int(text: &str) -> Option<i128> {
    let t = trim(text);
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) = if let Some(d) = rest.strip_prefix("0x").or(rest.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = rest.strip_prefix("0o").or(rest.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = rest.strip_prefix("0b").or(rest.strip_prefix("0B")) {
        (2, d)
    } else {
        if rest.len() > 1 && rest.starts_with('0') {
            return None;
        }
        (10, rest)
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let magnitude = i128::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn yaml_float(text: &str) -> bool {
    let t = trim(text);
    let unsigned = t.trim_start_matches(['+', '-']);
    matches!(
        unsigned,
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
    ) || (t.chars().any(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || "+-._eE".contains(c))
        && t.replace('_', "").parse::<f64>().is_ok())
}

/// The booleans the deserializer accepts (YAML 1.1 spellings, any case).
fn yaml_bool(text: &str) -> Option<bool> {
    let t = trim(text).to_ascii_lowercase();
    match t.as_str() {
        "true" | "yes" | "y" | "on" => Some(true),
        "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// The key a message names: the last key of the path with any list index after it, or "the
/// file" for the top level.
fn field(path: &[Step]) -> String {
    let start = path
        .iter()
        .rposition(|s| matches!(s, Step::Key(_)))
        .unwrap_or(0);
    match path_string(&path[start..]) {
        p if p.is_empty() => "the file".into(),
        p => format!("`{p}`"),
    }
}

fn found(node: &Node) -> String {
    match &node.value {
        Value::Null => "nothing".into(),
        Value::Scalar(s) => format!("`{}`", shorten(&s.text)),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a map".into(),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

fn first_sentence(text: &str) -> String {
    let text = text.split("\n").next().unwrap_or(text);
    match text.find(". ") {
        Some(end) => text[..=end].to_string(),
        None => text.to_string(),
    }
}

/// Where a map's problems point: its key when it has one, else its first key.
fn anchor_of(node: &Node, path: &[Step], frames: &[Frame<'_>]) -> Pos {
    if let (Some(Step::Key(k)), Some(parent)) = (path.last(), frames.last())
        && let Some(entry) = parent.node.get(k)
        && node.block
    {
        return entry.key_span.start;
    }
    node.span.start
}

fn pos_line(p: Pos) -> u64 {
    u64::from(p.line)
}

fn pos_col(p: Pos) -> u64 {
    u64::from(p.col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml_tree::parse;

    fn issues(text: &str) -> Vec<String> {
        let root = parse(text).unwrap();
        check(root.as_ref())
            .into_iter()
            .map(|i| {
                format!(
                    "{}:{}: {}: {}{}",
                    i.line.unwrap_or(0),
                    i.col.unwrap_or(0),
                    i.path,
                    i.message,
                    i.hint.map(|h| format!(" [{h}]")).unwrap_or_default()
                )
            })
            .collect()
    }

    const OK: &str = "listeners:\n  egress: { address: \"127.0.0.1:8080\" }\n";

    #[test]
    fn a_valid_file_has_no_shape_issue() {
        assert!(issues(OK).is_empty(), "{:?}", issues(OK));
        let shipped = include_str!("../../gateway.yaml");
        assert!(issues(shipped).is_empty(), "{:?}", issues(shipped));
    }

    #[test]
    fn scalars_are_read_like_the_deserializer_reads_them() {
        assert_eq!(yaml_int("1_000"), Some(1000));
        assert_eq!(yaml_int("0x10"), Some(16));
        assert_eq!(yaml_int("-5"), Some(-5));
        assert_eq!(yaml_int("017"), None);
        assert_eq!(yaml_int("three"), None);
        assert_eq!(yaml_bool("Yes"), Some(true));
        assert_eq!(yaml_bool("1"), None);
        let upstream = |retries: &str| {
            issues(&format!(
                "{OK}upstreams:\n  o:\n    targets: [\"a:1\"]\n    retries: {retries}\n"
            ))
        };
        assert!(upstream("\"3\"").is_empty());
        assert_eq!(
            upstream("-1"),
            ["6:14: upstreams.o.retries: `retries` must be a whole number (0 or more), found `-1`"]
        );
    }

    #[test]
    fn an_empty_file_needs_listeners() {
        assert_eq!(
            issues(""),
            ["1:1: : the config is empty [it needs at least a `listeners:` section]"]
        );
    }

    #[test]
    fn a_setting_left_at_the_level_of_names_is_reported_once() {
        assert_eq!(
            issues("listeners:\n  egress:\n  address: \"127.0.0.1:8080\"\n"),
            [
                "3:3: listeners.address: `address` belongs under `egress` [indent it under `egress:`, which is empty as written]"
            ]
        );
    }

    #[test]
    fn a_key_left_at_the_parent_level_is_reported_once() {
        let text = format!(
            "{OK}routes:\n  - name: a\n    listener: egress\n    match:\n    path_prefix: /x/\n    auth: none\n    upstream: o\n"
        );
        assert_eq!(
            issues(&text),
            [
                "7:5: routes[0].path_prefix: `path_prefix` belongs under `match` [indent it under `match:`, which is empty as written]"
            ]
        );
    }
}
