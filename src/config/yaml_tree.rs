//! The config text as a generic YAML tree in which every node and key keeps its source position.
//! The shape check walks it (so it can report every wrong type, not just the first the
//! deserializer meets) and diagnostics find a YAML path's line and column in it. Anchors, aliases
//! and `<<` merge keys are expanded the way the deserializer expands them; duplicate keys are kept
//! so the shape check can name both places.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle, ScanError, StructureStyle};

/// A 1-based line and column (in characters, as editors count them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn from_marker(m: &Marker) -> Self {
        Pos {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
            col: u32::try_from(m.col()).unwrap_or(u32::MAX).saturating_add(1),
        }
    }
}

/// A source range: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    fn contains(&self, pos: Pos) -> bool {
        self.start <= pos && pos < self.end
    }
}

#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null` or nothing at all after a key.
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub text: String,
    /// Written without quotes: only then can it be read as a number, a boolean or null.
    pub plain: bool,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub span: Span,
    /// Written in block style (indented lines), not `[..]`/`{..}` or a scalar.
    pub block: bool,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
    /// Came from a `<<` merge, not written in this map.
    pub merged: bool,
}

impl Node {
    pub fn kind(&self) -> Kind {
        match self.value {
            Value::Null => Kind::Null,
            Value::Scalar(_) => Kind::Scalar,
            Value::Seq(_) => Kind::Seq,
            Value::Map(_) => Kind::Map,
        }
    }

    /// The first entry under `key`, if this is a map.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Scalar,
    Seq,
    Map,
}

/// Why the text is not YAML: where the parser stopped and what it found.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub error: Option<ScanError>,
    /// Our own reason when the parser accepted the text but the config cannot use it.
    pub reason: Option<&'static str>,
    /// What was read before the error, to name the YAML path it happened in.
    pub partial_root: Option<Node>,
}

/// Where reading stopped and why (turned into a `SyntaxError` with what was read so far).
type Stop = (Pos, &'static str);

/// Most nodes a file may expand to (aliases copy their anchor): a config has a few hundred.
const MAX_NODES: usize = 200_000;

/// Parses `text`. `Ok(None)` is an empty document.
pub fn parse(text: &str) -> Result<Option<Node>, Box<SyntaxError>> {
    let mut b = Builder::default();
    let mut documents = 0usize;
    for next in Parser::new_from_str(text) {
        let (event, span) = match next {
            Ok(next) => next,
            Err(e) => {
                let pos = Pos::from_marker(e.marker());
                let mut err = b.fail(pos, "");
                err.reason = None;
                err.error = Some(e);
                return Err(err);
            }
        };
        let span = Span {
            start: Pos::from_marker(&span.start),
            end: Pos::from_marker(&span.end),
        };
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(b.fail(span.start, "a config file holds one YAML document"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let core = tag.as_ref().and_then(|t| t.core_suffix());
                let forced_string = core == Some("str");
                let forced_null = core == Some("null");
                let plain = style == ScalarStyle::Plain && !forced_string;
                let value = if forced_null || (plain && is_null(&text)) {
                    Value::Null
                } else {
                    Value::Scalar(Scalar {
                        text: text.into_owned(),
                        plain,
                    })
                };
                let node = Node {
                    value,
                    span,
                    block: false,
                };
                b.complete(node, anchor).map_err(|(p, r)| b.fail(p, r))?;
            }
            Event::SequenceStart(style, anchor, _) => b.open(Frame::Seq {
                start: span.start,
                block: style == StructureStyle::Block,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(style, anchor, _) => b.open(Frame::Map {
                start: span.start,
                block: style == StructureStyle::Block,
                anchor,
                entries: Vec::new(),
                merges: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                b.close_at(span.end).map_err(|(p, r)| b.fail(p, r))?
            }
            Event::Alias(id) => {
                let Some(target) = b.anchors.get(&id).cloned() else {
                    return Err(b.fail(
                        span.start,
                        "an alias refers to an anchor that is not defined above it",
                    ));
                };
                b.count(count_nodes(&target), span.start)
                    .and_then(|()| b.complete(target, 0))
                    .map_err(|(p, r)| b.fail(p, r))?;
            }
            _ => {}
        }
    }
    Ok(b.root)
}

/// Plain scalars the deserializer reads as null.
fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries.iter().map(|e| count_nodes(&e.value)).sum(),
        _ => 0,
    }
}

enum Frame {
    Seq {
        start: Pos,
        block: bool,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Pos,
        block: bool,
        anchor: usize,
        entries: Vec<Entry>,
        /// Values of `<<` keys, applied when the map closes (written keys win).
        merges: Vec<Node>,
        /// The key read, waiting for its value.
        key: Option<(String, Span, bool)>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder {
    fn fail(&mut self, pos: Pos, reason: &'static str) -> Box<SyntaxError> {
        Box::new(SyntaxError {
            pos,
            error: None,
            reason: Some(reason),
            partial_root: self.salvage(pos),
        })
    }

    /// Closes whatever is open at `at` (a key still waiting gets an empty value), so the part
    /// read before an error can name the path the error is in.
    fn salvage(&mut self, at: Pos) -> Option<Node> {
        let end = Pos {
            line: at.line,
            col: at.col.saturating_add(1),
        };
        let mut rest = Builder {
            stack: std::mem::take(&mut self.stack),
            root: self.root.take(),
            anchors: HashMap::new(),
            nodes: 0,
        };
        while let Some(frame) = rest.stack.last_mut() {
            if let Frame::Map { key, entries, .. } = frame
                && let Some((k, key_span, _)) = key.take()
            {
                entries.push(Entry {
                    key: k,
                    key_span,
                    value: Node {
                        value: Value::Null,
                        span: Span {
                            start: key_span.end,
                            end,
                        },
                        block: false,
                    },
                    merged: false,
                });
            }
            if rest.close_at(end).is_err() {
                return None;
            }
        }
        rest.root
    }

    fn count(&mut self, n: usize, at: Pos) -> Result<(), Stop> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err((at, "aliases expand this file to too many values"));
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame) {
        self.stack.push(frame);
    }

    fn close_at(&mut self, end: Pos) -> Result<(), Stop> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let (node, anchor) = match frame {
            Frame::Seq {
                start,
                block,
                anchor,
                items,
            } => (
                Node {
                    value: Value::Seq(items),
                    span: Span { start, end },
                    block,
                },
                anchor,
            ),
            Frame::Map {
                start,
                block,
                anchor,
                mut entries,
                merges,
                ..
            } => {
                for merge in merges {
                    merge_into(&mut entries, merge);
                }
                (
                    Node {
                        value: Value::Map(entries),
                        span: Span { start, end },
                        block,
                    },
                    anchor,
                )
            }
        };
        self.complete(node, anchor)
    }

    /// A finished node: the next item of the open sequence, a key or value of the open map, or
    /// the document itself.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), Stop> {
        self.count(1, node.span.start)?;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    let (text, plain) = match &node.value {
                        Value::Scalar(s) => (s.text.clone(), s.plain),
                        Value::Null => (String::new(), true),
                        // A list or map as a key: no config key looks like that.
                        Value::Seq(_) | Value::Map(_) => {
                            return Err((
                                node.span.start,
                                "a key must be a plain name, not a list or a map",
                            ));
                        }
                    };
                    *key = Some((text, node.span, plain));
                }
                Some((k, key_span, plain)) => {
                    if plain && k == "<<" {
                        merges.push(node);
                    } else {
                        entries.push(Entry {
                            key: k,
                            key_span,
                            value: node,
                            merged: false,
                        });
                    }
                }
            },
        }
        Ok(())
    }
}

/// `<<: *a` or `<<: [*a, *b]`: the merged maps' keys, unless written here (or merged earlier).
fn merge_into(entries: &mut Vec<Entry>, merge: Node) {
    let sources = match merge.value {
        Value::Map(m) => vec![m],
        Value::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.value {
                Value::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for source in sources {
        for mut entry in source {
            if !entries.iter().any(|e| e.key == entry.key) {
                entry.merged = true;
                entries.push(entry);
            }
        }
    }
}

// ---------------------------------------------------------------- YAML paths

/// One step of a YAML path such as `routes[2].match.methods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Writes a path the way validation messages do: `listeners.public`, `routes[0].auth`.
pub fn path_string(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Where a path points: the node, and the key it sits under (none for list items and the root).
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub node: &'a Node,
    pub key_span: Option<Span>,
}

impl Found<'_> {
    /// Where a caret should point: the key of a block collection or an empty value (the value
    /// starts on a later line or nowhere), otherwise the value itself.
    pub fn anchor(&self) -> Pos {
        match self.key_span {
            Some(k) if self.node.block || self.node.kind() == Kind::Null => k.start,
            _ => self.node.span.start,
        }
    }
}

/// Follows `path` (as written by validation) as far as the tree has it: the deepest node
/// reached and whether the whole path was found. Map keys may contain dots (listener names), so
/// the longest key that fits is taken.
pub fn follow<'a>(root: &'a Node, path: &str) -> (Found<'a>, bool) {
    let mut here = Found {
        node: root,
        key_span: None,
    };
    let mut rest = path;
    loop {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            return (here, true);
        }
        if let Some(after) = rest.strip_prefix('[') {
            let Some((index, tail)) = after.split_once(']') else {
                return (here, false);
            };
            let (Ok(i), Value::Seq(items)) = (index.parse::<usize>(), &here.node.value) else {
                return (here, false);
            };
            let Some(item) = items.get(i) else {
                return (here, false);
            };
            here = Found {
                node: item,
                key_span: None,
            };
            rest = tail;
            continue;
        }
        let Value::Map(entries) = &here.node.value else {
            return (here, false);
        };
        let fits = |e: &&Entry| {
            rest.strip_prefix(e.key.as_str())
                .is_some_and(|t| t.is_empty() || t.starts_with('.') || t.starts_with('['))
        };
        let Some(entry) = entries.iter().filter(fits).max_by_key(|e| e.key.len()) else {
            return (here, false);
        };
        here = Found {
            node: &entry.value,
            key_span: Some(entry.key_span),
        };
        rest = &rest[entry.key.len()..];
    }
}

/// The path of the deepest node whose source range holds `pos` (for errors the deserializer
/// reports by position only).
pub fn path_at(root: &Node, pos: Pos) -> String {
    let mut steps = Vec::new();
    let mut here = root;
    'descend: loop {
        match &here.value {
            Value::Map(entries) => {
                for e in entries.iter().filter(|e| !e.merged) {
                    if e.key_span.contains(pos) || e.value.span.contains(pos) {
                        steps.push(Step::Key(e.key.clone()));
                        here = &e.value;
                        continue 'descend;
                    }
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.span.contains(pos) {
                        steps.push(Step::Index(i));
                        here = item;
                        continue 'descend;
                    }
                }
            }
            _ => {}
        }
        return path_string(&steps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn positions_are_one_based_characters() {
        let t = tree("a:\n  bé: [x, \"y\"]\n");
        let (found, whole) = follow(&t, "a.bé[1]");
        assert!(whole);
        assert_eq!(found.node.span.start, Pos { line: 2, col: 11 });
        let (found, _) = follow(&t, "a.bé");
        assert_eq!(found.key_span.unwrap().start, Pos { line: 2, col: 3 });
        assert_eq!(found.anchor(), Pos { line: 2, col: 7 });
        let (found, _) = follow(&t, "a");
        assert_eq!(
            found.anchor(),
            Pos { line: 1, col: 1 },
            "block map: the key"
        );
    }

    #[test]
    fn a_missing_path_stops_at_the_deepest_node_found() {
        let t = tree("routes:\n  - name: a\n");
        let (found, whole) = follow(&t, "routes[0].upstream");
        assert!(!whole);
        assert_eq!(found.node.span.start, Pos { line: 2, col: 5 });
        assert!(!follow(&t, "routes[3]").1);
    }

    #[test]
    fn dotted_keys_are_followed() {
        let t = tree("listeners:\n  a.b: { address: x }\n");
        let (found, whole) = follow(&t, "listeners.a.b.address");
        assert!(whole);
        assert_eq!(found.node.span.start, Pos { line: 2, col: 19 });
    }

    #[test]
    fn aliases_and_merges_expand_and_written_keys_win() {
        let t = tree("base: &b { x: 1, y: 2 }\nm:\n  <<: *b\n  y: 3\n");
        let m = &t.get("m").unwrap().value;
        let Value::Map(entries) = &m.value else {
            panic!()
        };
        let keys: Vec<(&str, bool)> = entries.iter().map(|e| (e.key.as_str(), e.merged)).collect();
        assert_eq!(keys, [("y", false), ("x", true)]);
        let Value::Scalar(y) = &m.get("y").unwrap().value.value else {
            panic!()
        };
        assert_eq!(y.text, "3");
    }

    #[test]
    fn duplicates_are_kept_for_the_shape_check() {
        let t = tree("a: 1\na: 2\n");
        let Value::Map(entries) = &t.value else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn nulls_quotes_and_tags() {
        let t = tree("a: ~\nb:\nc: 'null'\nd: !!str 5\ne: 5\n");
        assert_eq!(t.get("a").unwrap().value.kind(), Kind::Null);
        assert_eq!(t.get("b").unwrap().value.kind(), Kind::Null);
        let scalar = |k: &str| match &t.get(k).unwrap().value.value {
            Value::Scalar(s) => (s.text.clone(), s.plain),
            other => panic!("{other:?}"),
        };
        assert_eq!(scalar("c"), ("null".into(), false));
        assert_eq!(scalar("d"), ("5".into(), false));
        assert_eq!(scalar("e"), ("5".into(), true));
    }

    #[test]
    fn alias_bombs_are_cut_off() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.reason.is_some());
    }

    #[test]
    fn path_at_names_the_deepest_node() {
        let t = tree("routes:\n  - name: a\n    match: { path: /x }\n");
        assert_eq!(
            path_at(&t, Pos { line: 3, col: 20 }),
            "routes[0].match.path"
        );
        assert_eq!(path_at(&t, Pos { line: 2, col: 11 }), "routes[0].name");
    }

    #[test]
    fn second_documents_are_refused() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }
}
