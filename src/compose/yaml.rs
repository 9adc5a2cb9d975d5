//! A small YAML document tree with byte positions, built from `saphyr-parser` events.
//!
//! The editor must know where each value sits in the text. saphyr-parser reports positions in
//! *characters*, and the span it gives a quoted scalar can run past the closing quote (over a
//! trailing comment), so this module converts positions to byte offsets and measures scalar
//! tokens itself. Aliases point at the node their anchor named; `<<` merge keys are followed by
//! [`Doc::get`] the way compose follows them.

use std::collections::HashSet;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::ComposeError;

pub(crate) type NodeId = usize;

/// How deep merges and aliases may nest before lookout gives up (guards against cycles).
const MAX_DEPTH: usize = 64;

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    /// The anchor defined on this node, as an index into [`Doc::anchor_names`].
    pub anchor: Option<usize>,
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

/// Converts saphyr's character indices into byte offsets.
struct Offsets {
    /// `None` when the text is ASCII and characters are bytes.
    table: Option<Vec<usize>>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Offsets {
        let table = (!text.is_ascii()).then(|| text.char_indices().map(|(b, _)| b).collect());
        Offsets {
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.len),
            Some(t) => t.get(char_index).copied().unwrap_or(self.len),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset, for messages.
pub(crate) fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let before = &text[..byte.min(text.len())];
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
    pub(super) fn parse(text: &'t str) -> Result<Doc<'t>, ComposeError> {
        let offsets = Offsets::new(text);
        let mut doc = Doc {
            text,
            nodes: Vec::new(),
            root: 0,
            anchor_names: Vec::new(),
        };
        // saphyr numbers anchors 1, 2, … in order of definition; index = id.
        let mut anchor_nodes: Vec<Option<NodeId>> = vec![None];
        let mut stack: Vec<Frame> = Vec::new();
        let mut root = None;
        let mut documents = 0;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| {
                let (line, col) = (e.marker().line(), e.marker().col() + 1);
                ComposeError::InvalidYaml {
                    line,
                    col,
                    message: e.info().to_string(),
                }
            })?;
            let start = offsets.byte(span.start.index());
            let node = match event {
                Event::DocumentStart(_) => {
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
                Event::Scalar(value, style, anchor_id, _tag) => {
                    let token = scalar_token(text, start, offsets.byte(span.end.index()), style);
                    let anchor = doc.anchor(anchor_id, &mut anchor_nodes, text, start);
                    doc.push(
                        Kind::Scalar {
                            value: value.into_owned(),
                            style,
                            token,
                        },
                        anchor,
                        &mut anchor_nodes,
                    )
                }
                Event::Alias(anchor_id) => {
                    let target =
                        anchor_nodes
                            .get(anchor_id)
                            .copied()
                            .flatten()
                            .ok_or_else(|| {
                                let (line, col) = line_col(text, start);
                                ComposeError::InvalidYaml {
                                    line,
                                    col,
                                    message: "alias to an unknown anchor".into(),
                                }
                            })?;
                    doc.push(Kind::Alias(target), None, &mut anchor_nodes)
                }
                Event::SequenceStart(anchor_id, _) => {
                    let anchor = doc.anchor(anchor_id, &mut anchor_nodes, text, start);
                    let id = doc.push(Kind::Seq(Vec::new()), anchor, &mut anchor_nodes);
                    stack.push(Frame::Seq(id, Vec::new()));
                    continue;
                }
                Event::MappingStart(anchor_id, _) => {
                    let anchor = doc.anchor(anchor_id, &mut anchor_nodes, text, start);
                    let id = doc.push(
                        Kind::Map {
                            entries: Vec::new(),
                        },
                        anchor,
                        &mut anchor_nodes,
                    );
                    stack.push(Frame::Map(id, Vec::new()));
                    continue;
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq(id, items)) => {
                        doc.nodes[id].kind = Kind::Seq(items);
                        id
                    }
                    _ => unreachable!("saphyr balances sequence events"),
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map(id, items)) => {
                        let entries = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                        doc.nodes[id].kind = Kind::Map { entries };
                        id
                    }
                    _ => unreachable!("saphyr balances mapping events"),
                },
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
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
        anchor: Option<usize>,
        anchor_nodes: &mut [Option<NodeId>],
    ) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node { kind, anchor });
        if let Some(a) = anchor {
            anchor_nodes[a] = Some(id);
        }
        id
    }

    /// Registers saphyr's anchor id (0 = none) and reads its name from the text at `start`.
    fn anchor(
        &mut self,
        anchor_id: usize,
        anchor_nodes: &mut Vec<Option<NodeId>>,
        text: &str,
        start: usize,
    ) -> Option<usize> {
        if anchor_id == 0 {
            return None;
        }
        if anchor_nodes.len() <= anchor_id {
            anchor_nodes.resize(anchor_id + 1, None);
        }
        if self.anchor_names.len() <= anchor_id {
            self.anchor_names.resize(anchor_id + 1, String::new());
        }
        self.anchor_names[anchor_id] =
            anchor_name_at(text, start).unwrap_or_else(|| format!("#{anchor_id}"));
        Some(anchor_id)
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
    pub(super) fn keys(&self, map: NodeId) -> Vec<String> {
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

/// Reads `&name` among the node properties that start at `start`.
fn anchor_name_at(text: &str, start: usize) -> Option<String> {
    let mut rest = &text[start..];
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let token_len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}'))
            .unwrap_or(rest.len());
        if let Some(name) = rest.strip_prefix('&') {
            return Some(name[..token_len - 1].to_string());
        } else if rest.starts_with('!') {
            rest = &rest[token_len..];
        } else {
            return None;
        }
    }
}

/// The bytes of a scalar token: skips node properties before it and, for quoted styles, finds
/// the closing quote (saphyr's span may include what follows it).
fn scalar_token(text: &str, start: usize, end: usize, style: ScalarStyle) -> Range<usize> {
    let bytes = text.as_bytes();
    let mut i = start;
    // Properties: `&anchor` and `!tag`, separated by whitespace.
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
    let quoted_end = |quote: u8| {
        let mut j = i + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' if quote == b'"' => j += 2,
                b'\'' if quote == b'\'' && bytes.get(j + 1) == Some(&b'\'') => j += 2,
                b if b == quote => return j + 1,
                _ => j += 1,
            }
        }
        bytes.len()
    };
    match style {
        ScalarStyle::DoubleQuoted => i..quoted_end(b'"'),
        ScalarStyle::SingleQuoted => i..quoted_end(b'\''),
        _ => i..end.max(i),
    }
}
