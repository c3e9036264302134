//! A stack made of several Compose files, as Compose makes one: files merged in order by the
//! Compose specification's merge rules (with `!reset` and `!override`), then `include:`
//! (other projects' files copied in) and `extends:` (a service built on another one).
//!
//! Every node keeps where it is written, in which file: the merged tree is flattened back
//! into a value tree and `Marks` whose positions name their file, so an error found later
//! is reported in the file that holds the bad value.
//!
//! Rules (the Compose specification's "Merge and override", "Include" and `extends`):
//! - maps merge key by key; scalars are replaced;
//! - lists are appended, except `command`, `entrypoint`, `healthcheck.test` and a task's
//!   `steps` (replaced); `ports`, `volumes`, `secrets` and `configs` keep one entry per
//!   unique key (the target; for ports the address, ports and protocol), the later one
//!   winning; lists of plain values drop repeated values;
//! - `environment`, `labels`, `build.args` and the other `KEY=VALUE` lists merge per key, as
//!   maps;
//! - `!reset` removes what earlier files set; `!override` replaces it instead of merging.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::interpolate::{self, Use, Variables};
use super::load::{Mark, Marks, MergeTag, Pos, Value};
use super::{envfile, Location, StackError};

/// The most files one stack may read (its own, includes and extended files together).
const MAX_FILES: usize = 256;

/// One file a stack is read from.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// The file as shown to the user (relative to the project directory when inside it).
    pub shown: String,
    /// The directory its relative paths resolve against.
    pub base: PathBuf,
}

/// The files read so far; positions refer to them by index.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub files: Vec<FileInfo>,
    /// The text of every file read (to tell which variables a stack names).
    pub text: String,
}

impl Files {
    fn add(&mut self, shown: String, base: PathBuf) -> usize {
        self.files.push(FileInfo { shown, base });
        self.files.len() - 1
    }

    fn location(&self, pos: Pos) -> Location {
        Location {
            file: self
                .files
                .get(pos.file)
                .map(|f| f.shown.clone())
                .unwrap_or_default(),
            line: pos.line,
            column: pos.column,
        }
    }

    fn base(&self, pos: Pos) -> PathBuf {
        self.files
            .get(pos.file)
            .map(|f| f.base.clone())
            .unwrap_or_default()
    }

    fn names(&self) -> Vec<String> {
        self.files.iter().map(|f| f.shown.clone()).collect()
    }
}

/// A node of the tree with where it is written (or, for a node copied by an alias, where
/// its nearest written ancestor is: `inherited`, not flattened back into the marks).
#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    mark: Option<Mark>,
    tag: Option<MergeTag>,
    inherited: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Leaf(Value),
    Seq(Vec<Node>),
    Map(IndexMap<String, Node>),
}

impl Node {
    fn leaf(value: Value, mark: Option<Mark>) -> Node {
        Node {
            kind: Kind::Leaf(value),
            mark,
            tag: None,
            inherited: false,
        }
    }

    fn from_tree(value: Value, marks: &Marks, path: &mut Vec<String>) -> Node {
        Node::from_tree_under(value, marks, path, None)
    }

    fn from_tree_under(
        value: Value,
        marks: &Marks,
        path: &mut Vec<String>,
        parent: Option<Mark>,
    ) -> Node {
        let own = marks.get(path);
        let inherited = own.is_none() && parent.is_some();
        let mark = own.or(parent);
        let tag = marks.tag(path);
        let kind = match value {
            Value::Sequence(items) => Kind::Seq(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        path.push(index.to_string());
                        let node = Node::from_tree_under(item, marks, path, mark);
                        path.pop();
                        node
                    })
                    .collect(),
            ),
            Value::Mapping(map) => Kind::Map(
                map.into_iter()
                    .map(|(key, item)| {
                        path.push(key.clone());
                        let node = Node::from_tree_under(item, marks, path, mark);
                        path.pop();
                        (key, node)
                    })
                    .collect(),
            ),
            other => Kind::Leaf(other),
        };
        Node {
            kind,
            mark,
            tag,
            inherited,
        }
    }

    fn into_tree(self, path: &mut Vec<String>, marks: &mut HashMap<Vec<String>, Mark>) -> Value {
        if let Some(mark) = self.mark.filter(|_| !self.inherited) {
            marks.insert(path.clone(), mark);
        }
        match self.kind {
            Kind::Leaf(value) => value,
            Kind::Seq(items) => Value::Sequence(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        path.push(index.to_string());
                        let value = item.into_tree(path, marks);
                        path.pop();
                        value
                    })
                    .collect(),
            ),
            Kind::Map(map) => Value::Mapping(
                map.into_iter()
                    .map(|(key, item)| {
                        path.push(key.clone());
                        let value = item.into_tree(path, marks);
                        path.pop();
                        (key, value)
                    })
                    .collect(),
            ),
        }
    }

    fn map(&self) -> Option<&IndexMap<String, Node>> {
        match &self.kind {
            Kind::Map(map) => Some(map),
            _ => None,
        }
    }

    fn map_mut(&mut self) -> Option<&mut IndexMap<String, Node>> {
        match &mut self.kind {
            Kind::Map(map) => Some(map),
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        match &self.kind {
            Kind::Leaf(value) => value.scalar_text(),
            _ => None,
        }
    }

    fn key_pos(&self) -> Option<Pos> {
        self.mark.map(|m| m.key.unwrap_or(m.value))
    }

    fn value_pos(&self) -> Option<Pos> {
        self.mark.map(|m| m.value)
    }

    /// `!reset` entries removed (what is left when nothing came before them).
    fn strip_resets(&mut self) {
        match &mut self.kind {
            Kind::Map(map) => {
                map.retain(|_, item| item.tag != Some(MergeTag::Reset));
                map.values_mut().for_each(Node::strip_resets);
            }
            Kind::Seq(items) => {
                items.retain(|item| item.tag != Some(MergeTag::Reset));
                items.iter_mut().for_each(Node::strip_resets);
            }
            Kind::Leaf(_) => {}
        }
    }
}

/// The tree of one parsed file, its positions moved to file `file`.
fn node_of(value: Value, mut marks: Marks, file: usize) -> Node {
    marks.set_file(file);
    Node::from_tree(value, &marks, &mut Vec::new())
}

/// A tree flattened back into a value and its marks.
fn flatten(node: Node, files: &Files) -> (Value, Marks) {
    let mut map = HashMap::new();
    let value = node.into_tree(&mut Vec::new(), &mut map);
    (value, Marks::from_parts(map, files.names()))
}

// ---------------------------------------------------------------------------------------
// Merging

/// Where a list is replaced rather than appended, by the path below a service or task.
fn replaced_list(path: &[String]) -> bool {
    let inner = entry_path(path);
    matches!(
        inner.as_slice(),
        ["command"] | ["entrypoint"] | ["healthcheck", "test"] | ["steps"]
    )
}

/// The path below `services.NAME` (or `tasks.NAME`, `data_containers.NAME`); empty elsewhere.
fn entry_path(path: &[String]) -> Vec<&str> {
    match path {
        [section, _, rest @ ..]
            if matches!(section.as_str(), "services" | "tasks" | "data_containers") =>
        {
            rest.iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    }
}

/// `KEY=VALUE` lists that merge per key, as maps.
fn keyed_list(path: &[String]) -> Option<char> {
    let inner = entry_path(path);
    match inner.as_slice() {
        ["environment"]
        | ["labels"]
        | ["annotations"]
        | ["sysctls"]
        | ["build", "args"]
        | ["build", "labels"]
        | ["deploy", "labels"] => Some('='),
        ["extra_hosts"] | ["build", "extra_hosts"] => Some(':'),
        _ => None,
    }
}

/// Lists whose entries are unique by a key: ports, volumes, secrets, configs.
fn unique_key(path: &[String], item: &Node) -> Option<String> {
    let inner = entry_path(path);
    let field = |name: &str| {
        item.map()
            .and_then(|m| m.get(name))
            .and_then(Node::text)
            .unwrap_or_default()
    };
    match inner.as_slice() {
        ["volumes"] | ["devices"] => match item.text() {
            Some(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                Some(parts.get(1).unwrap_or(&parts[0]).to_string())
            }
            None => Some(field("target")),
        },
        ["secrets"] | ["configs"] => match item.text() {
            Some(text) => Some(text),
            None => {
                let target = field("target");
                Some(if target.is_empty() {
                    field("source")
                } else {
                    target
                })
            }
        },
        ["ports"] => match item.text() {
            Some(text) => {
                let (spec, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
                let (rest, target) = spec.rsplit_once(':').unwrap_or(("", spec));
                let (ip, published) = rest.rsplit_once(':').unwrap_or(("", rest));
                Some(format!("{ip}|{published}|{target}|{protocol}"))
            }
            None => {
                let protocol = field("protocol");
                Some(format!(
                    "{}|{}|{}|{}",
                    field("host_ip"),
                    field("published"),
                    field("target"),
                    if protocol.is_empty() {
                        "tcp".to_string()
                    } else {
                        protocol
                    }
                ))
            }
        },
        _ => None,
    }
}

/// A `KEY=VALUE` list as a map (`KEY` alone maps to null); anything else as it is (for
/// validation to report).
fn as_keyed_map(node: Node, separator: char) -> Node {
    let all_text = match &node.kind {
        Kind::Seq(items) => items.iter().all(|item| item.text().is_some()),
        _ => false,
    };
    if !all_text {
        return node;
    }
    let Kind::Seq(items) = node.kind else {
        return node;
    };
    let mut map = IndexMap::new();
    for item in items {
        let text = item.text().unwrap_or_default();
        let (key, value) = match text.split_once(separator) {
            Some((key, value)) => (key.to_string(), Value::String(value.to_string())),
            None => (text, Value::Null),
        };
        map.insert(key, Node::leaf(value, item.mark));
    }
    node_with(map, node.mark)
}

fn node_with(map: IndexMap<String, Node>, mark: Option<Mark>) -> Node {
    Node {
        kind: Kind::Map(map),
        mark,
        tag: None,
        inherited: false,
    }
}

/// `over` merged onto `base` at `path`.
fn merge(base: Node, over: Node, path: &mut Vec<String>) -> Node {
    if over.tag == Some(MergeTag::Override) {
        let mut over = over;
        over.tag = None;
        over.strip_resets();
        return over;
    }
    if let Some(separator) = keyed_list(path) {
        let either_list = matches!(base.kind, Kind::Seq(_)) || matches!(over.kind, Kind::Seq(_));
        if either_list {
            return merge(
                as_keyed_map(base, separator),
                as_keyed_map(over, separator),
                path,
            );
        }
    }
    match (base.kind, over.kind) {
        (Kind::Map(mut map), Kind::Map(over_map)) => {
            for (key, item) in over_map {
                if item.tag == Some(MergeTag::Reset) {
                    map.shift_remove(&key);
                    continue;
                }
                path.push(key.clone());
                let merged = match map.shift_remove_full(&key) {
                    Some((index, _, existing)) => {
                        let merged = merge(existing, item, path);
                        path.pop();
                        map.insert(key.clone(), merged);
                        let last = map.len() - 1;
                        map.move_index(last, index);
                        continue;
                    }
                    None => {
                        let mut item = item;
                        item.tag = None;
                        item.strip_resets();
                        item
                    }
                };
                path.pop();
                map.insert(key, merged);
            }
            Node {
                kind: Kind::Map(map),
                mark: base.mark.or(over.mark),
                tag: None,
                inherited: base.inherited,
            }
        }
        (Kind::Seq(items), Kind::Seq(over_items)) if !replaced_list(path) => {
            let mut items = items;
            for mut item in over_items {
                if item.tag == Some(MergeTag::Reset) {
                    continue;
                }
                item.strip_resets();
                let key = unique_key(path, &item);
                let same = match &key {
                    Some(key) => items
                        .iter()
                        .position(|existing| unique_key(path, existing).as_ref() == Some(key)),
                    None => match &item.kind {
                        Kind::Leaf(value) => items
                            .iter()
                            .position(|e| matches!(&e.kind, Kind::Leaf(v) if v == value)),
                        _ => None,
                    },
                };
                match same {
                    Some(index) => {
                        let existing = items.remove(index);
                        path.push(index.to_string());
                        let merged = if existing.map().is_some() && item.map().is_some() {
                            merge(existing, item, path)
                        } else {
                            item
                        };
                        path.pop();
                        items.insert(index, merged);
                    }
                    None => items.push(item),
                }
            }
            Node {
                kind: Kind::Seq(items),
                mark: base.mark.or(over.mark),
                tag: None,
                inherited: base.inherited,
            }
        }
        (_, kind) => {
            let mut node = Node {
                kind,
                mark: over.mark,
                tag: None,
                inherited: over.inherited,
            };
            node.strip_resets();
            node
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading files

/// Why a file of the stack could not be read: said by the caller, who knows where it is
/// referenced from.
pub enum FileError {
    NotFound,
    Errors(Vec<StackError>),
}

/// Read and parse one file into the table; its tree with positions in it.
fn read_file(files: &mut Files, path: &Path, shown: &str, base: &Path) -> Result<Node, FileError> {
    let (value, marks, index) = read_tree(files, path, shown, base)?;
    Ok(node_of(value, marks, index))
}

/// One file parsed: its tree, its marks (still in file 0) and its index in `files`.
fn read_tree(
    files: &mut Files,
    path: &Path,
    shown: &str,
    base: &Path,
) -> Result<(Value, Marks, usize), FileError> {
    if files.files.len() >= MAX_FILES {
        return Err(FileError::Errors(vec![StackError::new(
            None,
            format!(
                "`{shown}`: a stack may read at most {MAX_FILES} files (through `include`, `extends` and `-f`)"
            ),
        )]));
    }
    let text = match super::read_text(path, shown) {
        Ok(text) => text,
        Err(super::ReadError::NotFound) => return Err(FileError::NotFound),
        Err(super::ReadError::Refused(error)) => return Err(FileError::Errors(vec![error])),
    };
    let (value, marks) = super::parse_stack(&text, shown).map_err(|e| FileError::Errors(e.0))?;
    files.text.push_str(&text);
    files.text.push('\n');
    let index = files.add(shown.to_string(), base.to_path_buf());
    Ok((value, marks, index))
}

/// The stack files merged in order: the value tree, its marks and the files read.
pub fn read_and_merge(
    paths: &[(PathBuf, String)],
    base: &Path,
    missing: impl Fn(&str) -> StackError,
) -> Result<(Value, Marks, Files), Vec<StackError>> {
    let mut files = Files::default();
    // One file with no merge tags: nothing to merge or strip, and turning it into nodes and
    // back would give the same tree and marks (the common case, and a large file's time).
    if let [(path, shown)] = paths {
        return match read_tree(&mut files, path, shown, base) {
            Ok((value, mut marks, index)) if !marks.has_tags() => {
                marks.set_file(index);
                marks.set_files(files.names());
                Ok((value, marks, files))
            }
            Ok((value, marks, index)) => {
                let mut node = node_of(value, marks, index);
                node.strip_resets();
                let (value, marks) = flatten(node, &files);
                Ok((value, marks, files))
            }
            Err(FileError::NotFound) => Err(vec![missing(shown)]),
            Err(FileError::Errors(found)) => Err(found),
        };
    }
    let mut merged: Option<Node> = None;
    let mut errors = Vec::new();
    for (path, shown) in paths {
        match read_file(&mut files, path, shown, base) {
            Ok(node) => {
                merged = Some(match merged {
                    None => node,
                    Some(so_far) => merge(so_far, node, &mut Vec::new()),
                });
            }
            Err(FileError::NotFound) => errors.push(missing(shown)),
            Err(FileError::Errors(found)) => errors.extend(found),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut node = merged.unwrap_or_else(|| Node::leaf(Value::Null, None));
    node.strip_resets();
    let (value, marks) = flatten(node, &files);
    Ok((value, marks, files))
}

// ---------------------------------------------------------------------------------------
// include and extends

/// What `include` and `extends` need from the loading stack.
pub struct Expand<'a> {
    pub files: &'a mut Files,
    /// The stage's variables (the including project's environment).
    pub vars: &'a Variables,
    /// The project directory.
    pub dir: &'a Path,
    pub errors: Vec<StackError>,
    /// Variables used by included and extended files.
    pub uses: Vec<Use>,
}

impl Expand<'_> {
    fn error(&mut self, pos: Option<Pos>, message: String, hint: Option<&str>) {
        let mut error = StackError::new(pos.map(|p| self.files.location(p)), message);
        if let Some(hint) = hint {
            error = error.with_hint(hint);
        }
        self.errors.push(error);
    }

    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// `include:` and `extends:` applied to an interpolated tree; problems are reported located
/// in the file that holds them.
pub fn expand(root: Value, marks: Marks, ctx: &mut Expand) -> (Value, Marks) {
    // Neither `include` nor any `extends`: the tree and marks stay as they are (turning them
    // into nodes and back would give the same ones, at a large file's cost).
    let services_extend = root
        .get("services")
        .and_then(Value::as_mapping)
        .is_some_and(|services| {
            services
                .values()
                .any(|service| service.get("extends").is_some())
        });
    if root.get("include").is_none() && !services_extend {
        return (root, marks);
    }
    let mut node = Node::from_tree(root, &marks, &mut Vec::new());
    let mut chain = Vec::new();
    let vars = ctx.vars.clone();
    include(&mut node, ctx, &vars, &mut chain);
    extends(&mut node, ctx);
    flatten(node, ctx.files)
}

/// Resource sections an included project contributes.
const SECTIONS: [&str; 7] = [
    "services",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "data_containers",
    "tasks",
];

fn include(node: &mut Node, ctx: &mut Expand, outer: &Variables, chain: &mut Vec<PathBuf>) {
    let Some(map) = node.map_mut() else { return };
    let Some(entries) = map.shift_remove("include") else {
        return;
    };
    let items = match entries.kind {
        Kind::Seq(items) => items,
        Kind::Leaf(Value::Null) => return,
        _ => {
            ctx.error(
                entries.value_pos(),
                "`include` takes a list of files, or of `{ path, project_directory, env_file }`"
                    .into(),
                None,
            );
            return;
        }
    };
    for item in items {
        let Some(included) = include_entry(&item, ctx, outer, chain) else {
            continue;
        };
        let Some(map) = node.map_mut() else { return };
        copy_resources(map, included, &item, ctx);
    }
}

/// Text or a list of texts (`path`, `env_file`).
fn texts(node: &Node) -> Option<Vec<(String, Option<Pos>)>> {
    match &node.kind {
        Kind::Leaf(Value::String(text)) => Some(vec![(text.clone(), node.value_pos())]),
        Kind::Seq(items) => items
            .iter()
            .map(|item| match &item.kind {
                Kind::Leaf(Value::String(text)) => Some((text.clone(), item.value_pos())),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// One `include` entry loaded: the included project's tree (merged, included, interpolated
/// with its variables, its relative paths made absolute).
fn include_entry(
    item: &Node,
    ctx: &mut Expand,
    outer: &Variables,
    chain: &mut Vec<PathBuf>,
) -> Option<Node> {
    let from = item
        .value_pos()
        .map(|p| ctx.files.base(p))
        .unwrap_or(ctx.dir.to_path_buf());
    let IncludeForm {
        paths,
        project_directory,
        env_files,
    } = include_form(item, ctx, &from)?;
    let paths: Vec<(PathBuf, Option<Pos>)> = paths
        .into_iter()
        .map(|(text, pos)| (clean(&from.join(text)), pos))
        .collect();
    let first = paths[0].0.clone();
    let directory = clean(
        &project_directory.unwrap_or_else(|| first.parent().unwrap_or(ctx.dir).to_path_buf()),
    );
    if let Some(start) = chain.iter().position(|p| *p == first) {
        let cycle: Vec<String> = chain[start..]
            .iter()
            .chain([&first])
            .map(|p| ctx.shown(p))
            .collect();
        ctx.error(
            paths[0].1,
            format!("`include` cycle: {}", cycle.join(" -> ")),
            Some("remove one of these `include` entries"),
        );
        return None;
    }

    let vars = include_variables(ctx, outer, env_files, &from, &directory);
    let mut node = read_included(ctx, &paths, &directory)?;
    node.strip_resets();
    // Interpolated in its own context, then its own includes, then its paths made absolute.
    let mut node = interpolate_included(node, ctx, &vars);
    chain.push(first);
    include(&mut node, ctx, &vars, chain);
    chain.pop();
    rebase(&mut node, &directory, ctx.dir);
    Some(node)
}

/// What an `include` entry names: its files, its `project_directory` and its `env_file`s
/// (the short form is files only). `None` after an error.
fn include_form(item: &Node, ctx: &mut Expand, from: &Path) -> Option<IncludeForm> {
    let at = item.value_pos();
    let form = match &item.kind {
        Kind::Leaf(Value::String(_)) => (texts(item)?, None, None),
        Kind::Map(map) => {
            for (key, value) in map {
                if !matches!(key.as_str(), "path" | "project_directory" | "env_file") {
                    ctx.error(
                        value.key_pos(),
                        format!("unknown key `{key}` in an `include` entry"),
                        Some("an `include` entry takes `path`, `project_directory` and `env_file`"),
                    );
                    return None;
                }
            }
            let Some(paths) = map.get("path").and_then(texts).filter(|p| !p.is_empty()) else {
                ctx.error(
                    map.get("path").and_then(Node::value_pos).or(at),
                    "an `include` entry needs `path`: a file or a list of files".into(),
                    None,
                );
                return None;
            };
            let directory = match map.get("project_directory") {
                None => None,
                Some(node) => match &node.kind {
                    Kind::Leaf(Value::String(text)) => Some(from.join(text)),
                    _ => {
                        ctx.error(
                            node.value_pos(),
                            "`project_directory` takes a directory".into(),
                            None,
                        );
                        return None;
                    }
                },
            };
            let env_files = match map.get("env_file") {
                None => None,
                Some(node) => match texts(node) {
                    Some(list) => Some(list),
                    None => {
                        ctx.error(
                            node.value_pos(),
                            "`env_file` takes a file or a list of files".into(),
                            None,
                        );
                        return None;
                    }
                },
            };
            (paths, directory, env_files)
        }
        _ => {
            ctx.error(
                at,
                "an `include` entry is a file, or a map with `path`".into(),
                None,
            );
            return None;
        }
    };
    let (paths, project_directory, env_files) = form;
    Some(IncludeForm {
        paths,
        project_directory,
        env_files,
    })
}

/// An `include` entry as written: texts with where they are.
struct IncludeForm {
    paths: Vec<(String, Option<Pos>)>,
    project_directory: Option<PathBuf>,
    env_files: Option<Vec<(String, Option<Pos>)>>,
}

/// The included project's variables: its env files give defaults; the including project's
/// environment (process, then its env files) wins.
fn include_variables(
    ctx: &mut Expand,
    outer: &Variables,
    env_files: Option<Vec<(String, Option<Pos>)>>,
    from: &Path,
    directory: &Path,
) -> Variables {
    let mut vars = outer.clone();
    let env_files: Vec<(PathBuf, Option<Pos>, bool)> = match env_files {
        Some(list) => list
            .into_iter()
            .map(|(text, pos)| (from.join(text), pos, true))
            .collect(),
        None => vec![(directory.join(".env"), None, false)],
    };
    for (path, pos, required) in env_files {
        let shown = ctx.shown(&path);
        match super::read_text(&path, &shown) {
            Ok(text) => {
                let parsed = envfile::parse(&text).and_then(|mut entries| {
                    let mut scope = outer.clone();
                    envfile::expand(&mut entries, &mut scope, &shown).map(|()| entries)
                });
                match parsed {
                    Ok(entries) => {
                        for entry in entries {
                            vars.set_default(&entry.key, &entry.value, &shown, entry.line);
                        }
                    }
                    Err(e) => ctx.errors.push(StackError::new(
                        Some(Location {
                            file: shown,
                            line: e.line,
                            column: 1,
                        }),
                        e.message,
                    )),
                }
            }
            Err(super::ReadError::NotFound) if !required => {}
            Err(super::ReadError::NotFound) => ctx.error(
                pos,
                format!("cannot read env file `{shown}`: no such file"),
                None,
            ),
            Err(super::ReadError::Refused(error)) => ctx.errors.push(error),
        }
    }

    vars
}

/// The included files read and merged in order; `None` after an error.
fn read_included(
    ctx: &mut Expand,
    paths: &[(PathBuf, Option<Pos>)],
    directory: &Path,
) -> Option<Node> {
    let mut merged: Option<Node> = None;
    for (path, pos) in paths {
        let shown = ctx.shown(path);
        match read_file(ctx.files, path, &shown, directory) {
            Ok(node) => {
                merged = Some(match merged {
                    None => node,
                    Some(so_far) => merge(so_far, node, &mut Vec::new()),
                })
            }
            Err(FileError::NotFound) => {
                ctx.error(
                    *pos,
                    format!("cannot read included file `{shown}`: no such file"),
                    Some("`include` paths are relative to the file that includes them"),
                );
                return None;
            }
            Err(FileError::Errors(errors)) => {
                ctx.errors.extend(errors);
                return None;
            }
        }
    }
    merged
}

/// The included tree interpolated with its own variables, its failures located.
fn interpolate_included(node: Node, ctx: &mut Expand, vars: &Variables) -> Node {
    let (mut value, marks) = flatten(node, ctx.files);
    let mut failures = Vec::new();
    interpolate::interpolate_tree(
        &mut value,
        &mut Vec::new(),
        vars,
        &mut ctx.uses,
        &mut failures,
    );
    for (path, failure) in failures {
        let location = marks.value(&path).map(|p| ctx.files.location(p));
        let mut error = StackError::new(location, failure.message);
        error.hint = failure.hint;
        ctx.errors.push(error);
    }
    Node::from_tree(value, &marks, &mut Vec::new())
}

/// The included project's resources copied into the including one; a name both define is
/// an error (Compose does not merge them either).
fn copy_resources(
    map: &mut IndexMap<String, Node>,
    included: Node,
    entry: &Node,
    ctx: &mut Expand,
) {
    let Kind::Map(mut from) = included.kind else {
        return;
    };
    for section in SECTIONS {
        let Some(Node {
            kind: Kind::Map(resources),
            mark,
            ..
        }) = from.shift_remove(section)
        else {
            continue;
        };
        let target = map
            .entry(section.to_string())
            .or_insert_with(|| node_with(IndexMap::new(), mark));
        if matches!(target.kind, Kind::Leaf(Value::Null)) {
            target.kind = Kind::Map(IndexMap::new());
        }
        let Some(target) = target.map_mut() else {
            continue;
        };
        for (name, resource) in resources {
            if let Some(existing) = target.get(&name) {
                let here = existing.key_pos();
                let there = resource
                    .key_pos()
                    .map(|p| ctx.files.location(p).to_string())
                    .unwrap_or_default();
                let kind = section.trim_end_matches('s').replace('_', " ");
                let kind = if section == "data_containers" {
                    "data container".to_string()
                } else {
                    kind
                };
                ctx.error(
                    here.or(entry.value_pos()),
                    format!("{kind} `{name}` is defined here and in an included file ({there})"),
                    Some("rename one of them; `include` copies resources and does not merge them"),
                );
                continue;
            }
            target.insert(name, resource);
        }
    }
}

/// Relative paths of a tree read from another directory made absolute (build contexts, bind
/// mounts, env files, a task's `stdin`, secret and config files).
fn rebase(node: &mut Node, from: &Path, project: &Path) {
    if from == project {
        return;
    }
    let Some(map) = node.map_mut() else { return };
    for section in ["services", "tasks", "data_containers"] {
        if let Some(entries) = map.get_mut(section).and_then(Node::map_mut) {
            for entry in entries.values_mut() {
                rebase_entry(entry, from);
            }
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(entries) = map.get_mut(section).and_then(Node::map_mut) {
            for entry in entries.values_mut() {
                if let Some(file) = entry.map_mut().and_then(|m| m.get_mut("file")) {
                    rebase_path(file, from);
                }
            }
        }
    }
}

fn rebase_entry(entry: &mut Node, from: &Path) {
    let Some(map) = entry.map_mut() else { return };
    if let Some(build) = map.get_mut("build") {
        match build.map_mut() {
            Some(build) => {
                if let Some(context) = build.get_mut("context") {
                    rebase_path(context, from);
                } else {
                    build.insert(
                        "context".into(),
                        Node::leaf(Value::String(from.display().to_string()), None),
                    );
                }
            }
            None => rebase_path(build, from),
        }
    }
    if let Some(stdin) = map.get_mut("stdin") {
        rebase_path(stdin, from);
    }
    if let Some(env_file) = map.get_mut("env_file") {
        match &mut env_file.kind {
            Kind::Seq(items) => {
                for item in items {
                    match item.map_mut() {
                        Some(long) => {
                            if let Some(path) = long.get_mut("path") {
                                rebase_path(path, from);
                            }
                        }
                        None => rebase_path(item, from),
                    }
                }
            }
            _ => rebase_path(env_file, from),
        }
    }
    if let Some(Node {
        kind: Kind::Seq(volumes),
        ..
    }) = map.get_mut("volumes")
    {
        for volume in volumes {
            match &mut volume.kind {
                Kind::Leaf(Value::String(text)) => {
                    if let Some((source, rest)) = text.split_once(':') {
                        if is_relative_source(source) {
                            *text = format!("{}:{rest}", from.join(source).display());
                        }
                    }
                }
                Kind::Map(long) => {
                    if let Some(source) = long.get_mut("source") {
                        if source.text().is_some_and(|s| is_relative_source(&s)) {
                            rebase_path(source, from);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A bind mount source written relative (`./data`, `../x`, `.`), as Compose tells them from
/// volume names.
fn is_relative_source(source: &str) -> bool {
    source == "." || source == ".." || source.starts_with("./") || source.starts_with("../")
}

fn rebase_path(node: &mut Node, from: &Path) {
    if let Kind::Leaf(Value::String(text)) = &mut node.kind {
        if !text.is_empty() && !text.starts_with('/') && !text.starts_with('~') {
            *text = clean(&from.join(&*text)).display().to_string();
        }
    }
}

/// `a/./b/../c` as `a/c` (no file system access).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Every service's `extends` applied, recursively, with cycles reported.
fn extends(node: &mut Node, ctx: &mut Expand) {
    let Some(services) = node
        .map()
        .and_then(|m| m.get("services"))
        .and_then(Node::map)
        .cloned()
    else {
        return;
    };
    let mut cache: HashMap<PathBuf, Option<IndexMap<String, Node>>> = HashMap::new();
    let mut done: IndexMap<String, Node> = IndexMap::new();
    for (name, service) in &services {
        if service.map().is_some_and(|m| m.contains_key("extends")) {
            let mut chain = vec![(None, name.clone())];
            let resolved = extend(service, &services, None, ctx, &mut cache, &mut chain);
            // A failed `extends` is reported; the service goes on without it.
            done.insert(
                name.clone(),
                resolved.unwrap_or_else(|| {
                    let mut service = service.clone();
                    if let Some(map) = service.map_mut() {
                        map.shift_remove("extends");
                    }
                    service
                }),
            );
        }
    }
    let Some(target) = node
        .map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(Node::map_mut)
    else {
        return;
    };
    for (name, service) in done {
        target.insert(name, service);
    }
}

/// A service with its `extends` applied: the base (itself extended first) merged under it.
/// `file` is the file the service is in (None: the stack itself).
fn extend(
    service: &Node,
    services: &IndexMap<String, Node>,
    file: Option<&PathBuf>,
    ctx: &mut Expand,
    cache: &mut HashMap<PathBuf, Option<IndexMap<String, Node>>>,
    chain: &mut Vec<(Option<PathBuf>, String)>,
) -> Option<Node> {
    let mut service = service.clone();
    let Some(spec) = service.map_mut().and_then(|m| m.shift_remove("extends")) else {
        return Some(service);
    };
    let (base_name, base_file) = match &spec.kind {
        Kind::Leaf(Value::String(name)) => (name.clone(), None),
        Kind::Map(map) => {
            for (key, value) in map {
                if !matches!(key.as_str(), "service" | "file") {
                    ctx.error(
                        value.key_pos(),
                        format!("unknown key `{key}` in `extends`"),
                        Some("`extends` takes `service` and, optionally, `file`"),
                    );
                    return None;
                }
            }
            let Some(name) = map.get("service").and_then(|n| match &n.kind {
                Kind::Leaf(Value::String(s)) => Some(s.clone()),
                _ => None,
            }) else {
                ctx.error(
                    spec.value_pos(),
                    "`extends` needs `service`: the name of the service to build on".into(),
                    None,
                );
                return None;
            };
            let file = match map.get("file") {
                None => None,
                Some(node) => match &node.kind {
                    Kind::Leaf(Value::String(text)) => Some((text.clone(), node.value_pos())),
                    _ => {
                        ctx.error(node.value_pos(), "`file` takes a file".into(), None);
                        return None;
                    }
                },
            };
            (name, file)
        }
        _ => {
            ctx.error(
                spec.value_pos(),
                "`extends` takes a service name, or `{ service, file }`".into(),
                None,
            );
            return None;
        }
    };

    // Where the base service is: another file, or the same one.
    let (base_services, base_path) = match base_file {
        Some((text, pos)) => {
            let from = spec
                .value_pos()
                .map(|p| ctx.files.base(p))
                .unwrap_or(ctx.dir.to_path_buf());
            let path = clean(&from.join(&text));
            if !cache.contains_key(&path) {
                let loaded = load_extended_file(&path, pos, ctx);
                cache.insert(path.clone(), loaded);
            }
            match cache.get(&path).cloned().flatten() {
                Some(found) => (found, Some(path)),
                None => return None,
            }
        }
        None => (services.clone(), file.cloned()),
    };
    let key = (base_path.clone(), base_name.clone());
    if let Some(start) = chain.iter().position(|link| *link == key) {
        let cycle: Vec<String> = chain[start..]
            .iter()
            .chain([&key])
            .map(|(_, name)| name.clone())
            .collect();
        ctx.error(
            spec.key_pos(),
            format!("`extends` cycle: {}", cycle.join(" -> ")),
            Some("remove one of these `extends`"),
        );
        return None;
    }
    let Some(base) = base_services.get(&base_name) else {
        let place = match &base_path {
            Some(path) => format!("in `{}`", ctx.shown(path)),
            None => "in this stack".to_string(),
        };
        let hint = super::validate::suggest(&base_name, base_services.keys().map(String::as_str))
            .map(|close| format!("did you mean `{close}`?"));
        ctx.error(
            spec.value_pos(),
            format!("`extends`: no service `{base_name}` {place}"),
            hint.as_deref(),
        );
        return None;
    };
    chain.push(key);
    let base = extend(base, &base_services, base_path.as_ref(), ctx, cache, chain);
    chain.pop();
    let base = base?;
    let mut path = vec!["services".to_string(), "_".to_string()];
    Some(merge(base, service, &mut path))
}

/// The services of a file named by `extends.file`: interpolated with the stage's variables,
/// relative paths made absolute against its directory.
fn load_extended_file(
    path: &Path,
    pos: Option<Pos>,
    ctx: &mut Expand,
) -> Option<IndexMap<String, Node>> {
    let shown = ctx.shown(path);
    let directory = path.parent().unwrap_or(ctx.dir).to_path_buf();
    let node = match read_file(ctx.files, path, &shown, &directory) {
        Ok(node) => node,
        Err(FileError::NotFound) => {
            ctx.error(
                pos,
                format!("cannot read `{shown}` (named by `extends`): no such file"),
                Some("`extends.file` is relative to the file that names it"),
            );
            return None;
        }
        Err(FileError::Errors(errors)) => {
            ctx.errors.extend(errors);
            return None;
        }
    };
    let mut node = node;
    node.strip_resets();
    let (mut value, marks) = flatten(node, ctx.files);
    let mut failures = Vec::new();
    interpolate::interpolate_tree(
        &mut value,
        &mut Vec::new(),
        ctx.vars,
        &mut ctx.uses,
        &mut failures,
    );
    for (at, failure) in failures {
        let location = marks.value(&at).map(|p| ctx.files.location(p));
        let mut error = StackError::new(location, failure.message);
        error.hint = failure.hint;
        ctx.errors.push(error);
    }
    let mut node = Node::from_tree(value, &marks, &mut Vec::new());
    rebase(&mut node, &directory, ctx.dir);
    let services = node
        .map()
        .and_then(|m| m.get("services"))
        .and_then(Node::map)
        .cloned();
    if services.is_none() {
        ctx.error(
            pos,
            format!("`{shown}` (named by `extends`) has no `services:`"),
            None,
        );
    }
    services
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    fn merged(texts: &[&str]) -> Value {
        let mut files = Files::default();
        let mut node: Option<Node> = None;
        for (index, text) in texts.iter().enumerate() {
            let (value, marks) = load::parse(text).unwrap();
            files.add(format!("f{index}"), PathBuf::from("/p"));
            let next = node_of(value, marks, index);
            node = Some(match node {
                None => next,
                Some(so_far) => merge(so_far, next, &mut Vec::new()),
            });
        }
        let mut node = node.unwrap();
        node.strip_resets();
        flatten(node, &files).0
    }

    #[test]
    fn maps_merge_lists_append_commands_replace() {
        let value = merged(&[
            "services:\n  a:\n    image: x\n    command: [a, b]\n    dns: [1.1.1.1]\n    environment: [A=1, B=2]\n",
            "services:\n  a:\n    command: [c]\n    dns: [8.8.8.8, 1.1.1.1]\n    environment: {B: 3}\n  b: {image: y}\n",
        ]);
        let a = &value["services"]["a"];
        assert_eq!(a["image"].as_str(), Some("x"));
        assert_eq!(
            a["command"],
            Value::Sequence(vec![Value::String("c".into())])
        );
        assert_eq!(a["dns"].as_sequence().map(Vec::len), Some(2));
        assert_eq!(a["environment"]["A"].as_str(), Some("1"));
        assert_eq!(a["environment"]["B"].as_i64(), Some(3));
        assert_eq!(value["services"]["b"]["image"].as_str(), Some("y"));
    }

    #[test]
    fn unique_entries_are_replaced_by_their_key() {
        let value = merged(&[
            "services:\n  a:\n    volumes: [foo:/work, /keep]\n    ports: ['8080:80', '9000:9000']\n",
            "services:\n  a:\n    volumes: [bar:/work]\n    ports: ['8080:80', {target: 81}]\n",
        ]);
        let a = &value["services"]["a"];
        assert_eq!(a["volumes"][0].as_str(), Some("bar:/work"));
        assert_eq!(a["volumes"].as_sequence().map(Vec::len), Some(2));
        assert_eq!(a["ports"].as_sequence().map(Vec::len), Some(3));
    }

    #[test]
    fn reset_removes_and_override_replaces() {
        let value = merged(&[
            "services:\n  a:\n    image: x\n    ports: ['80:80']\n    environment: {FOO: bar, KEEP: 1}\n    labels: {a: b}\n",
            "services:\n  a:\n    ports: !reset []\n    environment:\n      FOO: !reset null\n    labels: !override {c: d}\n    user: !reset root\n",
        ]);
        let a = &value["services"]["a"];
        assert!(a.get("ports").is_none(), "{a:?}");
        assert!(a.get("user").is_none(), "{a:?}");
        assert!(a["environment"].get("FOO").is_none());
        assert_eq!(a["environment"]["KEEP"].as_i64(), Some(1));
        assert!(a["labels"].get("a").is_none());
        assert_eq!(a["labels"]["c"].as_str(), Some("d"));
    }

    #[test]
    fn merged_positions_name_their_file() {
        let mut files = Files::default();
        files.add("base.yml".into(), PathBuf::from("/p"));
        files.add("qa.yml".into(), PathBuf::from("/p"));
        let (one, marks_one) = load::parse("services:\n  a:\n    image: x\n").unwrap();
        let (two, marks_two) = load::parse("services:\n  a:\n    ports: [80]\n").unwrap();
        let node = merge(
            node_of(one, marks_one, 0),
            node_of(two, marks_two, 1),
            &mut Vec::new(),
        );
        let (_, marks) = flatten(node, &files);
        let image = marks.value(&["services", "a", "image"]).unwrap();
        assert_eq!(marks.location(image, "?").to_string(), "base.yml:3:12");
        let port = marks.value(&["services", "a", "ports", "0"]).unwrap();
        assert_eq!(marks.location(port, "?").to_string(), "qa.yml:3:13");
    }
}
