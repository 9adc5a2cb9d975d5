//! A small YAML document tree with byte positions, built from `libyaml-safer` events.
//!
//! The editor must know where each value sits in the text. libyaml-safer is a safe port of
//! libyaml, the parser compose's go-yaml was modelled on and the one `serde_yaml_ng` (the
//! verifying parser in [`super::edit`]) runs, so the two read every file the same way: flow
//! collections and quoted scalars whose continuation lines are indented less than YAML 1.2 asks,
//! tabs where libyaml allows them, CRLF line ends and tags such as compose's `!reset` and
//! `!override`. Its marks are byte offsets; a leading byte-order mark is skipped here and added
//! back to every offset. Aliases point at the node their anchor named; `<<` merge keys are
//! followed by [`Doc::get`] the way compose follows them.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use libyaml_safer::{EventData, Mark, Parser};

use super::ComposeError;

pub(crate) type NodeId = usize;

/// How deep merges and aliases may nest before lookout gives up (guards against cycles).
const MAX_DEPTH: usize = 64;

/// The UTF-8 byte-order mark, which libyaml (and so compose) skips at the start of a file.
const BOM: &str = "\u{feff}";

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    /// The anchor defined on this node, as an index into [`Doc::anchor_names`].
    pub anchor: Option<usize>,
    /// The node's tag as written (`!reset`, `!override`, `!!str`), if any.
    pub tag: Option<String>,
}

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Scalar {
        value: String,
        style: ScalarStyle,
        /// The bytes of the scalar token, quotes included, properties (`&a`, `!t`) excluded.
        token: Range<usize>,
    },
    Seq(Vec<NodeId>),
    Map {
        entries: Vec<(NodeId, NodeId)>,
    },
    /// An alias (`*name`), already resolved to the node its anchor names.
    Alias(NodeId),
}

/// One parsed YAML document (the first of the stream).
#[derive(Debug)]
pub(crate) struct Doc<'t> {
    pub text: &'t str,
    pub nodes: Vec<Node>,
    pub root: NodeId,
    anchor_names: Vec<String>,
}

/// 1-based line and column (in characters) of a byte offset, for messages.
pub(crate) fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let before = text.get(..byte.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte offset in `text` of a libyaml mark, `base` being the length of a skipped
/// byte-order mark. Marks past the end (in the line break [`events`] adds) are the end.
fn byte_at(text: &str, base: usize, mark: Mark) -> usize {
    usize::try_from(mark.index)
        .map_or(text.len(), |i| i.saturating_add(base))
        .min(text.len())
}

/// Every parser event of `text` (from byte `base` on), or the first error with its position.
///
/// Two guards around libyaml-safer 0.3: its scanner panics where C libyaml reads the string's
/// terminating NUL (a block scalar that ends the file without a line break), so a file that does
/// not end in a line break is parsed with one added; the added byte holds no node, and a mark in
/// it is reported as the end of the file. And any other panic in the parser becomes an
/// [`ComposeError::InvalidYaml`] instead of unwinding into the caller.
fn events(text: &str, base: usize) -> Result<Vec<libyaml_safer::Event>, ComposeError> {
    let body = text.get(base..).unwrap_or_default();
    let owned: String;
    let bytes: &[u8] = if body.ends_with('\n') {
        body.as_bytes()
    } else {
        owned = format!("{body}\n");
        owned.as_bytes()
    };
    let invalid = |mark: Mark, message: String| {
        let (line, col) = line_col(text, byte_at(text, base, mark));
        ComposeError::InvalidYaml { line, col, message }
    };
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut input = bytes;
        let mut parser = Parser::new();
        parser.set_input_string(&mut input);
        let mut out = Vec::new();
        for event in parser {
            out.push(event?);
        }
        Ok::<_, libyaml_safer::Error>(out)
    }));
    match parsed {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(e)) => {
            let message = match e.context() {
                Some(context) => format!("{context}, {}", e.problem()),
                None => e.problem().to_string(),
            };
            Err(invalid(e.problem_mark().unwrap_or_default(), message))
        }
        Err(_) => Err(ComposeError::InvalidYaml {
            line: 1,
            col: 1,
            message: "the YAML parser failed on this text; check the file with \
                      `docker compose config`"
                .into(),
        }),
    }
}

enum Frame {
    Seq(NodeId, Vec<NodeId>),
    Map(NodeId, Vec<NodeId>),
}

impl<'t> Doc<'t> {
    /// Parses the first document of `text`. Later documents are refused: compose reads one.
    pub(super) fn parse(text: &'t str) -> Result<Doc<'t>, ComposeError> {
        // libyaml consumes a byte-order mark without counting it in its marks.
        let base = if text.starts_with(BOM) { BOM.len() } else { 0 };
        let byte = |mark: Mark| byte_at(text, base, mark);
        let mut doc = Doc {
            text,
            nodes: Vec::new(),
            root: 0,
            anchor_names: Vec::new(),
        };
        let mut anchors: HashMap<String, NodeId> = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut root = None;
        let mut documents = 0;
        for event in events(text, base)? {
            let start = byte(event.start_mark);
            let node = match event.data {
                EventData::DocumentStart { .. } => {
                    documents += 1;
                    if documents > 1 {
                        let (line, col) = line_col(text, start);
                        return Err(ComposeError::InvalidYaml {
                            line,
                            col,
                            message: "a compose file holds one YAML document, found a second"
                                .into(),
                        });
                    }
                    continue;
                }
                EventData::Scalar {
                    anchor,
                    tag,
                    value,
                    style,
                    ..
                } => {
                    let style = match style {
                        libyaml_safer::ScalarStyle::SingleQuoted => ScalarStyle::SingleQuoted,
                        libyaml_safer::ScalarStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
                        libyaml_safer::ScalarStyle::Literal => ScalarStyle::Literal,
                        libyaml_safer::ScalarStyle::Folded => ScalarStyle::Folded,
                        _ => ScalarStyle::Plain,
                    };
                    let token = scalar_token(text, start, byte(event.end_mark));
                    let kind = Kind::Scalar {
                        value,
                        style,
                        token,
                    };
                    doc.push(kind, anchor, tag, &mut anchors)
                }
                EventData::Alias { anchor } => {
                    let target = anchors.get(&anchor).copied().ok_or_else(|| {
                        let (line, col) = line_col(text, start);
                        ComposeError::InvalidYaml {
                            line,
                            col,
                            message: format!("alias *{anchor} names no anchor defined before it"),
                        }
                    })?;
                    doc.push(Kind::Alias(target), None, None, &mut anchors)
                }
                EventData::SequenceStart { anchor, tag, .. } => {
                    let id = doc.push(Kind::Seq(Vec::new()), anchor, tag, &mut anchors);
                    stack.push(Frame::Seq(id, Vec::new()));
                    continue;
                }
                EventData::MappingStart { anchor, tag, .. } => {
                    let kind = Kind::Map {
                        entries: Vec::new(),
                    };
                    let id = doc.push(kind, anchor, tag, &mut anchors);
                    stack.push(Frame::Map(id, Vec::new()));
                    continue;
                }
                EventData::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq(id, items)) => {
                        doc.nodes[id].kind = Kind::Seq(items);
                        id
                    }
                    _ => unreachable!("libyaml balances sequence events"),
                },
                EventData::MappingEnd => match stack.pop() {
                    Some(Frame::Map(id, items)) => {
                        let entries = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                        doc.nodes[id].kind = Kind::Map { entries };
                        id
                    }
                    _ => unreachable!("libyaml balances mapping events"),
                },
                EventData::StreamStart { .. }
                | EventData::StreamEnd
                | EventData::DocumentEnd { .. } => {
                    continue;
                }
            };
            match stack.last_mut() {
                Some(Frame::Seq(_, items) | Frame::Map(_, items)) => items.push(node),
                None => root = root.or(Some(node)),
            }
        }
        match root {
            Some(root) => {
                doc.root = root;
                Ok(doc)
            }
            None => Err(ComposeError::NotCompose {
                reason: "the file is empty".into(),
            }),
        }
    }

    fn push(
        &mut self,
        kind: Kind,
        anchor: Option<String>,
        tag: Option<String>,
        anchors: &mut HashMap<String, NodeId>,
    ) -> NodeId {
        let id = self.nodes.len();
        let anchor = anchor.map(|name| {
            anchors.insert(name.clone(), id);
            self.anchor_names.push(name);
            self.anchor_names.len() - 1
        });
        self.nodes.push(Node { kind, anchor, tag });
        id
    }

    pub(super) fn anchor_name(&self, anchor: usize) -> &str {
        &self.anchor_names[anchor]
    }

    /// Follows aliases to the node they name, noting each anchor passed through.
    pub(super) fn resolve(&self, mut id: NodeId, via: &mut Vec<usize>) -> NodeId {
        for _ in 0..MAX_DEPTH {
            match self.nodes[id].kind {
                Kind::Alias(target) => {
                    via.extend(self.nodes[target].anchor);
                    id = target;
                }
                _ => return id,
            }
        }
        id
    }

    pub(super) fn scalar(&self, id: NodeId) -> Option<&str> {
        match &self.nodes[id].kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    fn is_merge_key(&self, id: NodeId) -> bool {
        matches!(&self.nodes[id].kind,
            Kind::Scalar { value, style: ScalarStyle::Plain, .. } if value == "<<")
    }

    /// The value of `key` in mapping `map`: its own entry first, then `<<` merges in order.
    /// Anchors passed through on the way are pushed onto `via`.
    pub(super) fn get(&self, map: NodeId, key: &str, via: &mut Vec<usize>) -> Option<NodeId> {
        self.get_at(map, key, via, &mut HashSet::new(), 0)
    }

    /// `searched`: the mappings already searched for `key` without finding it. Each is searched
    /// once: `<<: [*a, *a]` chains forty deep would otherwise be searched 2^40 times (a file
    /// found by fuzzing stalled a check for good).
    fn get_at(
        &self,
        map: NodeId,
        key: &str,
        via: &mut Vec<usize>,
        searched: &mut HashSet<NodeId>,
        depth: usize,
    ) -> Option<NodeId> {
        if depth > MAX_DEPTH {
            return None;
        }
        let map = self.resolve(map, via);
        if !searched.insert(map) {
            return None;
        }
        let Kind::Map { entries } = &self.nodes[map].kind else {
            return None;
        };
        if let Some(&(_, v)) = entries
            .iter()
            .find(|&&(k, _)| !self.is_merge_key(k) && self.scalar(k) == Some(key))
        {
            return Some(v);
        }
        for &(_, v) in entries.iter().filter(|&&(k, _)| self.is_merge_key(k)) {
            let mut merge_via = via.clone();
            let source = self.resolve(v, &mut merge_via);
            let sources = match &self.nodes[source].kind {
                Kind::Seq(items) => items.clone(),
                _ => vec![v],
            };
            for s in sources {
                let mut inner = merge_via.clone();
                if let Some(found) = self.get_at(s, key, &mut inner, searched, depth + 1) {
                    *via = inner;
                    return Some(found);
                }
            }
        }
        None
    }

    /// Every key of mapping `map`, own keys first, then merged ones, without repeats.
    pub(super) fn keys(&self, map: NodeId) -> Vec<String> {
        let mut out = Vec::new();
        self.keys_at(map, &mut out, &mut HashSet::new(), &mut HashSet::new(), 0);
        out
    }

    /// `visited`: the mappings whose keys are in `out` already; each is read once (see
    /// [`Doc::get_at`]).
    fn keys_at<'d>(
        &'d self,
        map: NodeId,
        out: &mut Vec<String>,
        seen: &mut HashSet<&'d str>,
        visited: &mut HashSet<NodeId>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let map = self.resolve(map, &mut Vec::new());
        if !visited.insert(map) {
            return;
        }
        let Kind::Map { entries } = &self.nodes[map].kind else {
            return;
        };
        for &(k, _) in entries {
            if let Some(name) = self.scalar(k).filter(|_| !self.is_merge_key(k))
                && seen.insert(name)
            {
                out.push(name.to_string());
            }
        }
        for &(k, v) in entries {
            if self.is_merge_key(k) {
                let source = self.resolve(v, &mut Vec::new());
                match &self.nodes[source].kind {
                    Kind::Seq(items) => {
                        for &i in items {
                            self.keys_at(i, out, seen, visited, depth + 1);
                        }
                    }
                    _ => self.keys_at(source, out, seen, visited, depth + 1),
                }
            }
        }
    }
}

/// The bytes of a scalar token: libyaml's event starts at the node's properties (`&anchor`,
/// `!tag`, separated by whitespace) and ends after the token, closing quote included.
fn scalar_token(text: &str, start: usize, end: usize) -> Range<usize> {
    let bytes = text.as_bytes();
    let mut i = start;
    loop {
        while i < end && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i < end && matches!(bytes[i], b'&' | b'!') {
            while i < end && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
        } else {
            break;
        }
    }
    i..end.max(i)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_yaml_ng::Value;

    use super::*;
    use crate::compose::{EditOptions, ImageSite, locate, set_image};

    /// The image token of `service` as the span parser finds it, and an edit of it.
    fn edits(text: &str, service: &str) -> (String, String) {
        let span = match locate(text, service).unwrap() {
            ImageSite::Inline { span, .. } => span,
            other => panic!("{other:?}"),
        };
        let edit = set_image(text, service, "nginx:1.27", &EditOptions::default()).unwrap();
        (text[span].to_string(), edit.text)
    }

    #[test]
    fn flow_sequence_closed_at_the_parent_indentation() {
        // getsentry/self-hosted: `]` sits left of the items, at the key's own column.
        let text = "services:\n  web:\n    image: nginx:1.25\n    command: [\n        \"a\",\n      \"b\",\n    ]\n    healthcheck:\n      test:\n        [\"CMD\",\n  \"true\"]\n";
        let (token, edited) = edits(text, "web");
        assert_eq!(token, "nginx:1.25");
        assert_eq!(edited, text.replace("nginx:1.25", "nginx:1.27"));
        let text = "services:\n  web:\n    command: [\"a\",\n\"b\"]\n    image: nginx:1.25\n";
        assert_eq!(edits(text, "web").0, "nginx:1.25");
    }

    #[test]
    fn quoted_scalar_continued_on_a_less_indented_line() {
        let text = "services:\n  web:\n    command: \"sh -c 'echo a\n  b'\"\n    entrypoint: 'x\ny'\n    image: \"nginx:1.25\"\n";
        let (token, edited) = edits(text, "web");
        assert_eq!(token, "\"nginx:1.25\"");
        assert_eq!(edited, text.replace("nginx:1.25", "nginx:1.27"));
    }

    #[test]
    fn tabs_where_libyaml_allows_them() {
        let text =
            "services:\n  web:\n    image:\tnginx:1.25\t# pinned\n    ports: [\t\"80:80\" ]\n";
        let (token, edited) = edits(text, "web");
        assert_eq!(token, "nginx:1.25");
        assert_eq!(edited, text.replace("nginx:1.25", "nginx:1.27"));
    }

    #[test]
    fn byte_order_mark() {
        let text = "\u{feff}services:\n  web:\n    image: nginx:1.25\n";
        let (token, edited) = edits(text, "web");
        assert_eq!(token, "nginx:1.25");
        assert_eq!(edited, "\u{feff}services:\n  web:\n    image: nginx:1.27\n");
    }

    #[test]
    fn crlf_line_ends() {
        let text =
            "services:\r\n  web:\r\n    command: \"a\r\n      b\"\r\n    image: 'nginx:1.25'\r\n";
        let (token, edited) = edits(text, "web");
        assert_eq!(token, "'nginx:1.25'");
        assert_eq!(edited, text.replace("nginx:1.25", "nginx:1.27"));
    }

    #[test]
    fn reset_and_override_tags() {
        let text = "services:\n  web:\n    image: !override nginx:1.25\n    ports: !reset []\n    environment: !override\n      A: b\n";
        let (token, edited) = edits(text, "web");
        assert_eq!(token, "nginx:1.25");
        assert_eq!(edited, text.replace("nginx:1.25", "nginx:1.27"));
        let doc = Doc::parse(text).unwrap();
        let tags: Vec<_> = doc.nodes.iter().filter_map(|n| n.tag.as_deref()).collect();
        assert_eq!(tags, ["!override", "!reset", "!override"]);
        // `!reset` on the image itself drops the value: nothing to edit here.
        let e = locate("services:\n  web:\n    image: !reset null\n", "web").unwrap_err();
        assert!(e.to_string().contains("tagged `!reset`"), "{e}");
    }

    #[test]
    fn invalid_yaml_is_refused_with_line_and_column() {
        for (text, line, col) in [
            ("services:\n  web:\n    image: [nginx\n", 4, 1),
            ("services:\n  web:\n    image: nginx\n   ports: []\n", 4, 4),
            ("services:\n  web:\n\timage: nginx\n", 3, 1),
            ("services:\n  web:\n    image: \"nginx\n", 4, 1),
        ] {
            match Doc::parse(text) {
                Err(ComposeError::InvalidYaml {
                    line: l,
                    col: c,
                    message,
                }) => {
                    assert_eq!((l, c), (line, col), "{text:?}: {message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{text:?}: {other:?}"),
            }
            // The verifying parser refuses it too.
            assert!(serde_yaml_ng::from_str::<Value>(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_file_without_a_final_line_break() {
        // A block scalar that ends the file: libyaml-safer 0.3 panics on it as given.
        let text = "services:\n  web:\n    image: nginx:1.25\n    command: >\n      run";
        assert_eq!(
            edits(text, "web").1,
            text.replace("nginx:1.25", "nginx:1.27")
        );
        let text = "services:\n  web:\n    image: nginx:1.25";
        assert_eq!(
            edits(text, "web").1,
            "services:\n  web:\n    image: nginx:1.27"
        );
        match Doc::parse("services:\n  web:\n    image: [nginx") {
            Err(ComposeError::InvalidYaml { line, col, .. }) => assert_eq!((line, col), (3, 18)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parser_failures_are_errors_not_panics() {
        for text in [
            "a: \"\\ud800\"\n",
            "a: \"\\U0011ffff\"\n",
            "a: |\n  x\r",
            "a: !<\n",
            "%YAML 1.1\n%YAML 1.1\n---\na: b\n",
            "? |\n",
        ] {
            match Doc::parse(text) {
                Ok(_) | Err(ComposeError::InvalidYaml { .. } | ComposeError::NotCompose { .. }) => {
                }
                Err(other) => panic!("{text:?}: {other:?}"),
            }
        }
    }

    fn corpus(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                corpus(&path, out);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(path);
            }
        }
    }

    /// Compares the node tree with serde_yaml_ng's reading of the same text.
    fn same(doc: &Doc<'_>, id: NodeId, v: &Value, at: &str) -> Result<(), String> {
        let id = doc.resolve(id, &mut Vec::new());
        let node = &doc.nodes[id];
        if let Value::Tagged(t) = v {
            let tag = t.tag.to_string();
            if node.tag.as_deref() != Some(tag.as_str()) {
                return Err(format!("{at}: tag {:?} vs {tag}", node.tag));
            }
            return same_untagged(doc, id, &t.value, at);
        }
        same_untagged(doc, id, v, at)
    }

    fn same_untagged(doc: &Doc<'_>, id: NodeId, v: &Value, at: &str) -> Result<(), String> {
        match (&doc.nodes[id].kind, v) {
            (Kind::Scalar { value, style, .. }, v) => {
                let plain = *style == ScalarStyle::Plain;
                let ok = match v {
                    Value::String(s) => s == value,
                    Value::Null => plain && ["", "~", "null", "Null", "NULL"].contains(&&**value),
                    Value::Bool(b) => plain && value.eq_ignore_ascii_case(&b.to_string()),
                    Value::Number(n) => {
                        plain
                            && (n.to_string() == *value
                                || value.parse::<f64>().ok() == n.as_f64()
                                || value.starts_with("0x")
                                || value.starts_with("0o"))
                    }
                    _ => false,
                };
                ok.then_some(()).ok_or(format!("{at}: {value:?} vs {v:?}"))
            }
            (Kind::Seq(items), Value::Sequence(s)) if items.len() == s.len() => items
                .iter()
                .zip(s)
                .enumerate()
                .try_for_each(|(i, (&n, v))| same(doc, n, v, &format!("{at}.{i}"))),
            (Kind::Map { entries }, Value::Mapping(m)) if entries.len() == m.len() => {
                for &(k, val) in entries {
                    let name = doc.scalar(doc.resolve(k, &mut Vec::new())).unwrap_or("?");
                    let at = format!("{at}.{name}");
                    let (_, theirs) = m
                        .iter()
                        .find(|(mk, _)| same(doc, k, mk, &at).is_ok())
                        .ok_or(format!("{at}: key missing"))?;
                    same(doc, val, theirs, &at)?;
                }
                Ok(())
            }
            (kind, v) => Err(format!("{at}: {kind:?} vs {v:?}")),
        }
    }

    /// The span parser and the verifying parser (serde_yaml_ng) read every corpus file alike.
    #[test]
    fn both_parsers_agree_on_every_corpus_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose");
        let mut files = Vec::new();
        corpus(&root, &mut files);
        assert!(files.len() >= 90, "{}", files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let ours = Doc::parse(&text);
            let theirs = serde_yaml_ng::from_str::<Value>(&text);
            match (ours, theirs) {
                (Ok(doc), Ok(v)) => {
                    if let Err(e) = same(&doc, doc.root, &v, "") {
                        panic!("{}: {e}", path.display());
                    }
                }
                (ours, theirs) => panic!(
                    "{}: span parser {:?}, serde_yaml_ng {:?}",
                    path.display(),
                    ours.err(),
                    theirs.err()
                ),
            }
        }
    }
}
