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

enum Frame {
    Seq(NodeId, Vec<NodeId>),
    Map(NodeId, Vec<NodeId>),
}

impl<'t> Doc<'t> {
    /// Parses the first document of `text`. Later documents are refused: compose reads one.
    pub fn parse(text: &'t str) -> Result<Doc<'t>, ComposeError> {
        // libyaml consumes a byte-order mark without counting it in its marks.
        let base = if text.starts_with(BOM) { BOM.len() } else { 0 };
        let byte = |mark: Mark| {
            usize::try_from(mark.index)
                .map_or(text.len(), |i| i.saturating_add(base))
                .min(text.len())
        };
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
        let mut input = text[base..].as_bytes();
        let mut parser = Parser::new();
        parser.set_input_string(&mut input);
        for event in parser {
            let event = event.map_err(|e| {
                let mark = e.problem_mark().unwrap_or_default();
                let message = match e.context() {
                    Some(context) => format!("{} {context}", e.problem()),
                    None => e.problem().to_string(),
                };
                ComposeError::InvalidYaml {
                    line: usize::try_from(mark.line)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                    col: usize::try_from(mark.column)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                    message,
                }
            })?;
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

    pub fn anchor_name(&self, anchor: usize) -> &str {
        &self.anchor_names[anchor]
    }

    /// Follows aliases to the node they name, noting each anchor passed through.
    pub fn resolve(&self, mut id: NodeId, via: &mut Vec<usize>) -> NodeId {
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

    pub fn scalar(&self, id: NodeId) -> Option<&str> {
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
    pub fn get(&self, map: NodeId, key: &str, via: &mut Vec<usize>) -> Option<NodeId> {
        self.get_at(map, key, via, 0)
    }

    fn get_at(&self, map: NodeId, key: &str, via: &mut Vec<usize>, depth: usize) -> Option<NodeId> {
        if depth > MAX_DEPTH {
            return None;
        }
        let map = self.resolve(map, via);
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
                if let Some(found) = self.get_at(s, key, &mut inner, depth + 1) {
                    *via = inner;
                    return Some(found);
                }
            }
        }
        None
    }

    /// Every key of mapping `map`, own keys first, then merged ones, without repeats.
    pub fn keys(&self, map: NodeId) -> Vec<String> {
        let mut out = Vec::new();
        self.keys_at(map, &mut out, &mut HashSet::new(), 0);
        out
    }

    fn keys_at<'d>(
        &'d self,
        map: NodeId,
        out: &mut Vec<String>,
        seen: &mut HashSet<&'d str>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let map = self.resolve(map, &mut Vec::new());
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
                            self.keys_at(i, out, seen, depth + 1);
                        }
                    }
                    _ => self.keys_at(source, out, seen, depth + 1),
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
