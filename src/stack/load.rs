//! The only module that knows the YAML crate: it turns a stack file's text into our own
//! value tree (`super::value`) plus a map from every YAML path to where its key and value are
//! written, and it renders a resolved stack back to YAML.
//!
//! One parser reads the text: `yaml-rust2`'s event parser (pure Rust, maintained) reports
//! every node with its position, and the tree is built from the same events, so positions and
//! values always agree. Anchors, aliases and `<<` merge keys are applied here, with limits: a
//! nesting depth, a cap on what aliases may expand to, one document per file. Every error
//! this module reports carries the position where it happened.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub use super::value::{Mapping, Number, Value};

/// How deep lists and maps may nest. Compose files need a handful of levels; the limit
/// keeps hostile files (100 000 nested `[`) from taking time or stack.
pub const MAX_DEPTH: usize = 64;
/// How many nodes aliases may produce in total (a "billion laughs" file is refused).
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A 1-based line and column, in one of the files a stack is read from (an index into
/// `Marks::files`; 0 for a single parsed text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub file: usize,
}

/// Compose's merge tags on a node: `!reset` removes what earlier files set, `!override`
/// replaces it instead of merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    Reset,
    Override,
}

/// Where a node is written: its key (for map entries) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// Positions of every node, by YAML path (map keys as text, list indexes as numbers), the
/// files they point into (as shown to the user), and the nodes tagged `!reset`/`!override`.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    map: HashMap<Vec<String>, Mark>,
    files: Vec<String>,
    tags: HashMap<Vec<String>, MergeTag>,
}

impl Marks {
    /// Marks made from their parts (the composition of several files builds them).
    pub fn from_parts(map: HashMap<Vec<String>, Mark>, files: Vec<String>) -> Self {
        Marks {
            map,
            files,
            tags: HashMap::new(),
        }
    }

    /// The mark of `path` itself, if it has one.
    pub fn get(&self, path: &[String]) -> Option<Mark> {
        self.map.get(path).copied()
    }

    /// The merge tag written on the node at `path`.
    pub fn tag(&self, path: &[String]) -> Option<MergeTag> {
        self.tags.get(path).copied()
    }

    /// Every position moved into file `file` (after parsing a text on its own).
    pub fn set_file(&mut self, file: usize) {
        for mark in self.map.values_mut() {
            mark.value.file = file;
            if let Some(key) = &mut mark.key {
                key.file = file;
            }
        }
    }

    /// The names of the files positions point into.
    pub fn set_files(&mut self, files: Vec<String>) {
        self.files = files;
    }

    /// Whether any node is tagged `!reset` or `!override`.
    pub fn has_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The name of the file a position is in (empty when unknown: the caller's file).
    pub fn file_name(&self, pos: Pos) -> Option<&str> {
        self.files
            .get(pos.file)
            .map(String::as_str)
            .filter(|f| !f.is_empty())
    }

    /// The place of a position: its file's name, else `fallback`.
    pub fn location(&self, pos: Pos, fallback: &str) -> super::Location {
        super::Location {
            file: self.file_name(pos).unwrap_or(fallback).to_string(),
            line: pos.line,
            column: pos.column,
        }
    }

    /// The node at `path`, or its nearest ancestor that has a position (values copied by
    /// aliases or merge keys have none of their own).
    pub fn find<S: AsRef<str>>(&self, path: &[S]) -> Option<Mark> {
        let mut path: Vec<String> = path.iter().map(|s| s.as_ref().to_string()).collect();
        loop {
            if let Some(mark) = self.map.get(&path) {
                return Some(*mark);
            }
            path.pop()?;
        }
    }

    /// Whether `path` itself (not an ancestor) has a position.
    pub fn has<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let path: Vec<String> = path.iter().map(|s| s.as_ref().to_string()).collect();
        self.map.contains_key(&path)
    }

    /// Where the key of `path` is written (the value's position for list items).
    pub fn key<S: AsRef<str>>(&self, path: &[S]) -> Option<Pos> {
        self.find(path).map(|m| m.key.unwrap_or(m.value))
    }

    /// Where the value of `path` starts.
    pub fn value<S: AsRef<str>>(&self, path: &[S]) -> Option<Pos> {
        self.find(path).map(|m| m.value)
    }
}

/// A YAML syntax error at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl SyntaxError {
    fn at(pos: Pos, message: impl Into<String>) -> Self {
        SyntaxError {
            pos: Some(pos),
            message: message.into(),
        }
    }
}

/// How many times a flow collection's line indented less than YAML's strict rule is
/// re-indented before parsing again (see `parse`), and how many bytes those re-parses may
/// read in total (a hostile file of such lines must not take long).
const MAX_INDENT_REPAIRS: usize = 200;
const MAX_REPAIR_BYTES: usize = 64 << 20;

/// Parse a stack file's text into a value tree (aliases and merge keys applied) and its marks.
///
/// PyYAML and Go's YAML library (what Compose reads files with) accept a line inside a flow
/// collection indented no further than its parent key, as in
/// `command: [\n  "a",\n]` written at a key's column; `yaml-rust2` says "invalid
/// indentation". Such a line is indented just enough and the text parsed again, with every
/// column on that line still reported where it is written.
pub fn parse(text: &str) -> Result<(Value, Marks), SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut repaired: Option<String> = None;
    let mut shifts: HashMap<usize, usize> = HashMap::new();
    let repairs = MAX_INDENT_REPAIRS.min(MAX_REPAIR_BYTES / text.len().max(1));
    let mut attempt = 0;
    let mut first_error: Option<SyntaxError> = None;
    loop {
        let current = repaired.as_deref().unwrap_or(text);
        let mut builder = Builder {
            parser: Parser::new_from_str(current),
            lines: current.split('\n').collect(),
            shifts: &shifts,
            open_flows: Vec::new(),
            recording: true,
            // About one mark per line, plus one per flow item: sized once, never rehashed.
            marks: HashMap::with_capacity(
                1 + current
                    .bytes()
                    .filter(|b| matches!(b, b'\n' | b','))
                    .count(),
            ),
            tags: HashMap::new(),
            anchors: HashMap::new(),
            alias_nodes: 0,
            indent_fix: None,
        };
        match builder.stream() {
            Ok(value) => {
                return Ok((
                    value,
                    Marks {
                        map: builder.marks,
                        files: Vec::new(),
                        tags: builder.tags,
                    },
                ))
            }
            Err(err) => {
                let fix = builder.indent_fix.take();
                drop(builder);
                // An error on a line that was re-indented means the repair did not fit (a
                // `]` really is missing): the error before any repair says it better.
                let on_repaired = err.pos.is_some_and(|p| shifts.contains_key(&p.line));
                let err = match first_error.take() {
                    Some(first) if on_repaired => return Err(first),
                    Some(first) => {
                        first_error = Some(first);
                        err
                    }
                    None => {
                        first_error = Some(err.clone());
                        err
                    }
                };
                let Some((line, spaces)) = fix.filter(|_| attempt < repairs) else {
                    return Err(err);
                };
                attempt += 1;
                let mut lines: Vec<String> = current.split('\n').map(str::to_string).collect();
                lines[line - 1].insert_str(0, &" ".repeat(spaces));
                *shifts.entry(line).or_insert(0) += spaces;
                repaired = Some(lines.join("\n"));
            }
        }
    }
}

/// Parse YAML text straight into a typed value (tests and tools that read YAML files).
pub fn from_yaml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let (value, marks) = parse(text).map_err(|e| match e.pos {
        Some(p) => format!("{}:{}: {}", p.line, p.column, e.message),
        None => e.message,
    })?;
    from_value(value).map_err(|(path, message)| match marks.value(&path) {
        Some(p) if !path.is_empty() => format!("{}:{}: {message}", p.line, p.column),
        _ => message,
    })
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    lines: Vec<&'a str>,
    /// Spaces added at the start of lines (by line number) to re-indent flow collections.
    shifts: &'a HashMap<usize, usize>,
    /// After an "invalid indentation" error inside a flow collection: the line to indent
    /// and by how many spaces.
    indent_fix: Option<(usize, usize)>,
    /// Flow collections (`[`, `{`) open around the current event, for error messages.
    open_flows: Vec<(char, Pos)>,
    /// Off while building the value of a `<<` merge key (its nodes get the merge's marks).
    recording: bool,
    marks: HashMap<Vec<String>, Mark>,
    tags: HashMap<Vec<String>, MergeTag>,
    /// Anchored nodes by the parser's anchor id.
    anchors: HashMap<usize, Value>,
    /// Nodes produced by aliases so far.
    alias_nodes: usize,
}

/// One entry of a map being built: a key and its value, or a `<<` merge.
enum Entry {
    Pair(String, Value),
    Merge(Vec<Mapping>, Pos, Pos),
}

impl Builder<'_> {
    /// A parser position as written in the file (columns of re-indented lines moved back).
    fn pos(&self, marker: &Marker) -> Pos {
        let mut at = pos(marker);
        if let Some(shift) = self.shifts.get(&at.line) {
            at.column = at.column.saturating_sub(*shift).max(1);
        }
        at
    }

    /// For an "invalid indentation" error at `marker` inside a flow collection: how far to
    /// indent that line so that it lies right of the key (or `- ` item) the outermost open
    /// flow collection starts on.
    fn plan_indent_fix(&mut self, marker: &Marker) {
        let Some((_, opened)) = self.open_flows.first() else {
            return;
        };
        let Some(start) = self.lines.get(opened.line.wrapping_sub(1)) else {
            return;
        };
        let bytes = start.as_bytes();
        let mut at = 0;
        loop {
            while bytes.get(at) == Some(&b' ') {
                at += 1;
            }
            if bytes.get(at) == Some(&b'-') && matches!(bytes.get(at + 1), Some(b' ')) {
                at += 1;
                continue;
            }
            break;
        }
        let needed = at + 1;
        let line = marker.line();
        let Some(text) = self.lines.get(line.wrapping_sub(1)) else {
            return;
        };
        let written = text.len() - text.trim_start_matches(' ').len();
        if marker.col() == written && written < needed {
            self.indent_fix = Some((line, needed - written));
        }
    }

    fn next(&mut self) -> Result<(Event, Pos), SyntaxError> {
        match self.parser.next_token() {
            Ok((event, marker)) => Ok((event, self.pos(&marker))),
            Err(err) if err.info() == "recursion limit exceeded" => {
                Err(too_deep(self.pos(err.marker())))
            }
            Err(err) => {
                if matches!(
                    err.info(),
                    "invalid indentation" | "invalid indentation in flow construct"
                ) {
                    self.plan_indent_fix(err.marker());
                }
                let mut message = err.info().to_string();
                if let Some((open, at)) = self.open_flows.last() {
                    let close = if *open == '[' { ']' } else { '}' };
                    message.push_str(&format!(
                        ", inside the `{open}` opened at {}:{} (is a `{close}` or a `,` missing?)",
                        at.line, at.column
                    ));
                }
                Err(SyntaxError::at(self.pos(err.marker()), message))
            }
        }
    }

    /// The flow indicator (`[` or `{`) a collection starts with, if it is flow style.
    fn flow_at(&self, at: Pos) -> Option<char> {
        let line = self.lines.get(at.line.checked_sub(1)?)?;
        let shift = self.shifts.get(&at.line).copied().unwrap_or(0);
        line.chars()
            .nth(at.column.checked_sub(1)? + shift)
            .filter(|c| matches!(c, '[' | '{'))
    }

    fn stream(&mut self) -> Result<Value, SyntaxError> {
        let mut value = None;
        loop {
            let (event, at) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(value.unwrap_or(Value::Null)),
                Event::DocumentStart if value.is_some() => {
                    return Err(SyntaxError::at(
                        at,
                        "a second YAML document (after `---`); a stack file holds one document",
                    ))
                }
                Event::DocumentStart => {
                    let (event, at) = self.next()?;
                    value = Some(self.node(event, at, &mut Vec::new(), 0)?);
                }
                other => {
                    value = Some(self.node(other, at, &mut Vec::new(), 0)?);
                }
            }
        }
    }

    fn mark(&mut self, path: &[String], mark: Mark) {
        if self.recording {
            self.marks.insert(path.to_vec(), mark);
        }
    }

    fn remember(&mut self, anchor: usize, value: &Value) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
    }

    /// Build the node that `event` starts, at `path`, `depth` collections deep.
    fn node(
        &mut self,
        event: Event,
        at: Pos,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Value, SyntaxError> {
        if path.is_empty() && depth == 0 {
            self.marks.insert(
                Vec::new(),
                Mark {
                    key: None,
                    value: at,
                },
            );
        }
        if let Event::Scalar(_, _, _, Some(tag))
        | Event::SequenceStart(_, Some(tag))
        | Event::MappingStart(_, Some(tag)) = &event
        {
            if let Some(merge) = merge_tag(tag) {
                if self.recording {
                    self.tags.insert(path.clone(), merge);
                }
            }
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.filter(|t| merge_tag(t).is_none());
                let value = scalar(text, style, tag.as_ref(), at)?;
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::Alias(id) => {
                let value = self.anchors.get(&id).cloned().ok_or_else(|| {
                    SyntaxError::at(at, "an alias to an anchor that is not defined before it")
                })?;
                self.alias_nodes += value.size();
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(SyntaxError::at(
                        at,
                        format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} values; a stack file this repetitive is refused"
                        ),
                    ));
                }
                Ok(value)
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = tag.filter(|t| merge_tag(t).is_none());
                check_collection_tag(tag.as_ref(), "seq", at)?;
                if depth >= MAX_DEPTH {
                    return Err(too_deep(at));
                }
                let flow = self.flow_at(at);
                if let Some(open) = flow {
                    self.open_flows.push((open, at));
                }
                let mut items = Vec::new();
                loop {
                    let (event, item_at) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    path.push(items.len().to_string());
                    self.mark(
                        path,
                        Mark {
                            key: None,
                            value: item_at,
                        },
                    );
                    let item = self.node(event, item_at, path, depth + 1);
                    path.pop();
                    items.push(item?);
                }
                if flow.is_some() {
                    self.open_flows.pop();
                }
                let value = Value::Sequence(items);
                self.remember(anchor, &value);
                Ok(value)
            }
            Event::MappingStart(anchor, tag) => {
                let tag = tag.filter(|t| merge_tag(t).is_none());
                check_collection_tag(tag.as_ref(), "map", at)?;
                if depth >= MAX_DEPTH {
                    return Err(too_deep(at));
                }
                let flow = self.flow_at(at);
                if let Some(open) = flow {
                    self.open_flows.push((open, at));
                }
                let value = Value::Mapping(self.mapping(path, depth)?);
                if flow.is_some() {
                    self.open_flows.pop();
                }
                self.remember(anchor, &value);
                Ok(value)
            }
            other => Err(SyntaxError::at(
                at,
                format!("unexpected YAML event {other:?}"),
            )),
        }
    }

    fn mapping(&mut self, path: &mut Vec<String>, depth: usize) -> Result<Mapping, SyntaxError> {
        let mut entries = Vec::new();
        let mut explicit: HashMap<String, Pos> = HashMap::new();
        loop {
            let (event, key_at) = self.next()?;
            let (key, merge) = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, style, anchor, tag) => {
                    // `!!merge <<` is the explicit spelling of a merge key.
                    let merge_tagged = tag
                        .as_ref()
                        .is_some_and(|t| is_core_tag(t) && t.suffix == "merge");
                    let merge = text == "<<" && (style == TScalarStyle::Plain || merge_tagged);
                    let tag = tag.filter(|_| !merge_tagged);
                    let key = match scalar(text, style, tag.as_ref(), key_at)? {
                        Value::Null => "null".to_string(),
                        other => other.scalar_text().unwrap_or_default(),
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, Value::String(key.clone()));
                    }
                    (key, merge)
                }
                Event::Alias(id) => match self.anchors.get(&id).and_then(Value::scalar_text) {
                    Some(key) => (key, false),
                    None => {
                        return Err(SyntaxError::at(
                            key_at,
                            "a map key must be a single value (text), not a list, a map or an unknown alias",
                        ))
                    }
                },
                _ => {
                    return Err(SyntaxError::at(
                        key_at,
                        "a map key must be a single value (text), not a list or a map",
                    ))
                }
            };
            let (event, value_at) = self.next()?;
            if merge {
                let recording = std::mem::replace(&mut self.recording, false);
                let merged = self.node(event, value_at, path, depth + 1);
                self.recording = recording;
                let merged = merged?;
                let maps = match merged {
                    Value::Mapping(map) => vec![map],
                    Value::Sequence(items) if items.iter().all(Value::is_mapping) => items
                        .into_iter()
                        .filter_map(|item| match item {
                            Value::Mapping(map) => Some(map),
                            _ => None,
                        })
                        .collect(),
                    other => {
                        return Err(SyntaxError::at(
                            value_at,
                            format!(
                                "a `<<` merge key takes a map or a list of maps (usually `<<: *anchor`), found {}",
                                super::model::describe(&other)
                            ),
                        ))
                    }
                };
                entries.push(Entry::Merge(maps, key_at, value_at));
                continue;
            }
            if explicit.contains_key(&key) {
                return Err(SyntaxError::at(
                    key_at,
                    format!("duplicate key `{key}` (the same key appears earlier in this map)"),
                ));
            }
            explicit.insert(key.clone(), key_at);
            path.push(key.clone());
            self.mark(
                path,
                Mark {
                    key: Some(key_at),
                    value: value_at,
                },
            );
            let value = self.node(event, value_at, path, depth + 1);
            path.pop();
            entries.push(Entry::Pair(key, value?));
        }
        // Explicit keys win over merged ones; among merged maps, the first wins.
        let mut map = Mapping::new();
        for entry in entries {
            match entry {
                Entry::Pair(key, value) => {
                    map.insert(key, value);
                }
                Entry::Merge(maps, key_at, value_at) => {
                    for source in maps {
                        for (key, value) in source {
                            if explicit.contains_key(&key) || map.contains_key(&key) {
                                continue;
                            }
                            path.push(key.clone());
                            if self.recording && !self.marks.contains_key(path.as_slice()) {
                                self.marks.insert(
                                    path.clone(),
                                    Mark {
                                        key: Some(key_at),
                                        value: value_at,
                                    },
                                );
                            }
                            path.pop();
                            map.insert(key, value);
                        }
                    }
                }
            }
        }
        Ok(map)
    }
}

fn too_deep(at: Pos) -> SyntaxError {
    SyntaxError::at(
        at,
        format!("lists and maps nest more than {MAX_DEPTH} levels deep here"),
    )
}

/// Compose's `!reset` and `!override`.
fn merge_tag(tag: &yaml_rust2::parser::Tag) -> Option<MergeTag> {
    if tag.handle != "!" {
        return None;
    }
    match tag.suffix.as_str() {
        "reset" => Some(MergeTag::Reset),
        "override" => Some(MergeTag::Override),
        _ => None,
    }
}

fn is_core_tag(tag: &yaml_rust2::parser::Tag) -> bool {
    tag.handle == "tag:yaml.org,2002:"
}

fn tag_text(tag: &yaml_rust2::parser::Tag) -> String {
    if is_core_tag(tag) {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

fn unsupported_tag(tag: &yaml_rust2::parser::Tag, at: Pos) -> SyntaxError {
    SyntaxError::at(
        at,
        format!(
            "the YAML tag `{}` is not supported (YAML's own tags like `!!str` and Compose's `!reset` and `!override` are)",
            tag_text(tag)
        ),
    )
}

fn check_collection_tag(
    tag: Option<&yaml_rust2::parser::Tag>,
    kind: &str,
    at: Pos,
) -> Result<(), SyntaxError> {
    match tag {
        None => Ok(()),
        Some(tag) if is_core_tag(tag) && tag.suffix == kind => Ok(()),
        Some(tag) => Err(unsupported_tag(tag, at)),
    }
}

/// A scalar's value: quoted and block scalars are text; plain ones read as YAML 1.2 core.
fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&yaml_rust2::parser::Tag>,
    at: Pos,
) -> Result<Value, SyntaxError> {
    let Some(tag) = tag else {
        return Ok(if style == TScalarStyle::Plain {
            super::value::plain_scalar(&text)
        } else {
            Value::String(text)
        });
    };
    if !is_core_tag(tag) {
        return Err(unsupported_tag(tag, at));
    }
    let read = super::value::plain_scalar(&text);
    let fits = match (tag.suffix.as_str(), &read) {
        ("str", _) => return Ok(Value::String(text)),
        ("null", Value::Null) | ("bool", Value::Bool(_)) => true,
        ("int", Value::Number(Number::Int(_) | Number::UInt(_))) => true,
        ("float", Value::Number(n)) => return Ok(Value::Number(Number::Float(n.as_f64()))),
        _ => false,
    };
    if fits {
        Ok(read)
    } else {
        Err(SyntaxError::at(
            at,
            format!("`{text}` is not a valid `{}`", tag_text(tag)),
        ))
    }
}

/// Deserialize a typed value from a tree, reporting the path of the first problem.
pub fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
) -> Result<T, (Vec<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        (path, clean_message(&err.into_inner().to_string()))
    })
}

/// Render a value as YAML.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    let tree = super::value::to_value(value).map_err(|e| e.to_string())?;
    let mut out = String::new();
    emit(&tree, 0, &mut out);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Block-style YAML, as `serde_yaml` wrote it: maps indented by two, list items at their
/// key's indentation, `{}`/`[]` for empty collections, text quoted only when it would
/// otherwise read as something else.
fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (index, (key, item)) in map.iter().enumerate() {
                // The first key of a map that is a list item goes on the `- ` line.
                if index > 0 || !out.ends_with("- ") {
                    out.push_str(&pad);
                }
                out.push_str(&scalar_text(key));
                out.push(':');
                emit_after_key(item, indent, out);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                if index > 0 || !out.ends_with("- ") {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                match item {
                    Value::Mapping(m) if !m.is_empty() => emit(item, indent + 2, out),
                    Value::Sequence(s) if !s.is_empty() => emit(item, indent + 2, out),
                    other => {
                        out.push_str(&inline(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn emit_after_key(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            emit(item, indent + 2, out);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            emit(item, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_text(s),
        Value::Sequence(_) => "[]".into(),
        Value::Mapping(_) => "{}".into(),
    }
}

/// Text as a YAML scalar: plain when it reads back as the same text, else single-quoted,
/// else (control characters, line breaks) double-quoted with escapes.
pub fn scalar_text(text: &str) -> String {
    if plain_ok(text) {
        return text.to_string();
    }
    if !text.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return format!("'{}'", text.replace('\'', "''"));
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn plain_ok(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    // Text that another YAML reader could take for a number or a boolean stays quoted.
    if !matches!(super::value::plain_scalar(text), Value::String(_))
        || super::value::leading_zero_digits(text)
        || matches!(
            text.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off"
        )
    {
        return false;
    }
    if first.is_whitespace() || text.ends_with(char::is_whitespace) {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    // `-`, `?` and `:` start an indicator when a space (or nothing) follows.
    let second = text.chars().nth(1);
    if matches!(first, '-' | '?' | ':') && second.is_none_or(|c| c == ' ') {
        return false;
    }
    if text.starts_with("---") || text.starts_with("...") {
        return false;
    }
    !(text.contains(": ")
        || text.ends_with(':')
        || text.contains(" #")
        || text.chars().any(|c| c.is_control() || c == '\u{feff}'))
}

/// serde's messages name Rust types (`expected u32`); say what a user writes instead, and
/// drop position suffixes that point into an intermediate value rather than the file.
fn clean_message(message: &str) -> String {
    let mut message = message.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    // Nested deserializers prefix their messages (`` `db`: unknown variant … ``): rewrite the
    // serde part wherever it is.
    if let Ok(invalid) = regex::Regex::new(r"invalid (?:type|value): (.+), expected (.+)$") {
        if let Some(caps) = invalid.captures(&message) {
            let found = describe_found(&caps[1]);
            let expected = match &caps[2] {
                "u8" => "a whole number from 0 to 255".to_string(),
                "u16" => "a whole number from 0 to 65535".to_string(),
                "u32" => format!("a whole number from 0 to {}", u32::MAX),
                "u64" | "usize" => "a whole number (0 or more)".to_string(),
                "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
                "f32" | "f64" => "a number".to_string(),
                "a sequence" => "a list".to_string(),
                other if other.starts_with("struct ") => "a map".to_string(),
                other => other.to_string(),
            };
            let start = caps.get(0).map(|m| m.start()).unwrap_or(0);
            return format!("{}expected {expected}, found {found}", &message[..start]);
        }
    }
    if let Ok(unknown) =
        regex::Regex::new(r"unknown (variant|field) `([^`]*)`, expected (?:one of )?(.+)$")
    {
        if let Some(caps) = unknown.captures(&message) {
            let start = caps.get(0).map(|m| m.start()).unwrap_or(0);
            let prefix = &message[..start];
            return if &caps[1] == "field" {
                format!("{prefix}unknown key `{}` (expected {})", &caps[2], &caps[3])
            } else {
                format!("{prefix}`{}` is not one of {}", &caps[2], &caps[3])
            };
        }
    }
    message
}

fn describe_found(found: &str) -> String {
    if let Some(text) = found.strip_prefix("string ") {
        return format!("the string `{}`", text.trim_matches('"'));
    }
    for (prefix, noun) in [
        ("integer ", "the number"),
        ("floating point ", "the number"),
        ("boolean ", "the boolean"),
    ] {
        if let Some(value) = found.strip_prefix(prefix) {
            return format!("{noun} {}", value.trim_matches('`'));
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a map".into(),
        "unit value" | "unit" => "nothing (null)".into(),
        other => other.into(),
    }
}

fn pos(marker: &Marker) -> Pos {
    Pos {
        line: marker.line(),
        // yaml-rust2 counts columns from 0.
        column: marker.col() + 1,
        file: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Pos {
        Pos {
            line,
            column,
            file: 0,
        }
    }

    #[test]
    fn marks_keys_and_values() {
        let text =
            "services:\n  api:\n    image: busybox\n    ports:\n      - \"80:80\"\n      - 81\n";
        let (value, marks) = parse(text).unwrap();
        assert!(value.get("services").is_some());
        assert_eq!(marks.key(&["services", "api"]), Some(at(2, 3)));
        assert_eq!(marks.key(&["services", "api", "image"]), Some(at(3, 5)));
        assert_eq!(marks.value(&["services", "api", "image"]), Some(at(3, 12)));
        assert_eq!(
            marks.value(&["services", "api", "ports", "1"]),
            Some(at(6, 9))
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            marks.key(&["services", "api", "image", "x"]),
            Some(at(3, 5))
        );
    }

    #[test]
    fn flow_style_is_marked() {
        let (_, marks) = parse("a: { b: [x, y], c: 1 }\n").unwrap();
        assert_eq!(marks.key(&["a", "c"]), Some(at(1, 17)));
        assert_eq!(marks.value(&["a", "b", "1"]), Some(at(1, 13)));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("services:\n  api:\n    image: [busybox\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err:?}");
        assert_eq!(err.pos.map(|p| p.line), Some(2));
    }

    #[test]
    fn serde_messages_speak_yaml() {
        let cases = [
            (
                "invalid type: string \"many\", expected u32",
                "expected a whole number from 0 to 4294967295, found the string `many`",
            ),
            (
                "invalid type: integer `3`, expected a boolean",
                "expected a boolean, found the number 3",
            ),
            (
                "invalid type: sequence, expected struct Healthcheck",
                "expected a map, found a list",
            ),
            (
                "unknown variant `x`, expected one of `no`, `always`",
                "`x` is not one of `no`, `always`",
            ),
            ("something else at line 3 column 4", "something else"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_message(input), expected, "{input}");
        }
    }

    #[test]
    fn merge_keys_apply() {
        let (value, _) = parse("x: &base {a: 1}\ny:\n  <<: *base\n  b: 2\n").unwrap();
        assert_eq!(value["y"]["a"].as_i64(), Some(1));
    }

    #[test]
    fn r2_deep_nesting_is_a_located_error_in_well_under_a_second() {
        let started = std::time::Instant::now();
        let text = format!("services: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("nest more than"), "{err:?}");
        assert_eq!(err.pos.map(|p| p.line), Some(1));
        let block: String = (0..200)
            .map(|depth| format!("{}k{depth}:\n", " ".repeat(depth)))
            .collect();
        assert!(parse(&block)
            .unwrap_err()
            .message
            .contains("nest more than"));
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn r3_a_second_document_is_located() {
        let err = parse("services: {}\n---\nservices: {}\n").unwrap_err();
        assert_eq!(err.pos.map(|p| p.line), Some(2), "{err:?}");
        assert!(err.message.contains("second YAML document"), "{err:?}");
    }

    #[test]
    fn r3_alias_expansion_limit_is_located() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let prev = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
        assert!(err.pos.is_some());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn r3_a_merge_of_a_scalar_is_located() {
        let err = parse("x: 1\ny:\n  <<: 3\n").unwrap_err();
        assert_eq!(err.pos, Some(at(3, 7)), "{err:?}");
        assert!(err.message.contains("`<<`"), "{err:?}");
    }

    #[test]
    fn flow_collections_may_close_at_their_keys_column_like_pyyaml_and_go_read_them() {
        // getsentry/self-hosted's docker-compose.yml closes `test: [` this way.
        let text = "s:\n  test: [\n      \"CMD-SHELL\",\n      \"true\",\n  ]\n  cmd:\n    [\n      \"a\",\n    ]\n  labels: {a: b,\n  c: d\n  }\n  next: 1\n";
        let (value, marks) = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(value["s"]["test"][1].as_str(), Some("true"));
        assert_eq!(value["s"]["cmd"][0].as_str(), Some("a"));
        assert_eq!(value["s"]["labels"]["c"].as_str(), Some("d"));
        assert_eq!(value["s"]["next"].as_i64(), Some(1));
        // Columns stay those written, also on a re-indented line.
        assert_eq!(marks.key(&["s", "labels", "c"]), Some(at(11, 3)));
        assert_eq!(marks.key(&["s", "next"]), Some(at(13, 3)));
        // Real indentation mistakes are still located errors.
        let err = parse("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(err.pos.map(|p| p.line), Some(3), "{err:?}");
    }

    #[test]
    fn merges_nest_and_take_the_explicit_merge_tag() {
        let text = "x-a: &a {restart: always}\nx-b: &b\n  <<: *a\n  dep: &dep\n    r:\n      <<: *a\n  image: i\nx-c: &c\n  <<: *b\n  dep:\n    <<: *dep\n    s: {}\nsvc:\n  !!merge <<: *c\n";
        let (value, _) = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(value["svc"]["restart"].as_str(), Some("always"));
        assert_eq!(value["svc"]["image"].as_str(), Some("i"));
        assert_eq!(value["svc"]["dep"]["r"]["restart"].as_str(), Some("always"));
        assert!(value["svc"]["dep"]["s"].is_mapping());
        assert!(value["svc"].get("<<").is_none());
    }

    #[test]
    fn explicit_keys_win_over_merged_ones() {
        let (value, marks) = parse("x: &b {a: 1, b: 2}\ny:\n  b: 3\n  <<: [*b, {c: 4}]\n").unwrap();
        assert_eq!(value["y"]["b"].as_i64(), Some(3));
        assert_eq!(value["y"]["a"].as_i64(), Some(1));
        assert_eq!(value["y"]["c"].as_i64(), Some(4));
        assert_eq!(marks.key(&["y", "a"]), Some(at(4, 3)));
    }

    #[test]
    fn tags_core_ones_apply_others_are_refused() {
        let (value, _) = parse("a: !!str 5\nb: !!int 7\n").unwrap();
        assert_eq!(value["a"].as_str(), Some("5"));
        assert_eq!(value["b"].as_i64(), Some(7));
        let (value, marks) = parse("a: !reset []\nb: !override {x: 1}\n").unwrap();
        assert_eq!(value["a"], Value::Sequence(Vec::new()));
        assert_eq!(marks.tag(&["a".to_string()]), Some(MergeTag::Reset));
        assert_eq!(marks.tag(&["b".to_string()]), Some(MergeTag::Override));
        let err = parse("a: !custom 1\n").unwrap_err();
        assert!(err.message.contains("`!custom`"), "{err:?}");
        assert_eq!(err.pos.map(|p| p.line), Some(1));
    }

    #[test]
    fn rendered_yaml_reads_back_the_same() {
        let mut map = Mapping::new();
        for text in [
            "plain",
            "8080:80",
            "9000",
            "010",
            "true",
            "yes",
            "",
            " padded",
            "a: b",
            "#x",
            "-",
            "- item",
            "it's",
            "line\nbreak",
            "tab\there",
            "~",
            "null",
            "1.5",
            "x #y",
            "*star",
            "{x}",
            "quote\"d",
            "back\\slash",
        ] {
            map.insert(format!("k{}", map.len()), Value::String(text.to_string()));
        }
        map.insert("n".into(), Value::Number(Number::Int(-3)));
        map.insert("f".into(), Value::Number(Number::Float(0.5)));
        map.insert("whole".into(), Value::Number(Number::Float(2.0)));
        map.insert("none".into(), Value::Null);
        map.insert(
            "list".into(),
            Value::Sequence(vec![
                Value::Mapping(map.clone()),
                Value::Sequence(vec![Value::Bool(false)]),
                Value::Sequence(Vec::new()),
            ]),
        );
        map.insert("empty".into(), Value::Mapping(Mapping::new()));
        let tree = Value::Mapping(map);
        let yaml = to_yaml(&tree).unwrap();
        let (back, _) = parse(&yaml).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
        assert_eq!(back, tree, "{yaml}");
        assert!(yaml.contains("\nk0: plain\n") || yaml.starts_with("k0: plain\n"));
        assert!(yaml.contains("k2: '9000'"), "{yaml}");
    }
}
