//! Build contexts: the directory walked with Docker's `.dockerignore` rules and streamed to
//! the engine as a tar.
//!
//! The daemon does not apply `.dockerignore` itself (ENGINE-NOTES §2): the client decides what
//! goes into the context. The rules here are Docker's (moby's `patternmatcher` and the
//! legacy builder's walker), not gitignore's: patterns are anchored at the context root,
//! `*` and `?` never cross `/`, `**` spans any number of directories, a path is excluded when
//! a pattern matches it or one of its parent directories, and the last matching line wins.
//! The Dockerfile and `.dockerignore` are always sent.
//!
//! One rule is stackctl's own: `.env` and `.env.*` files (every stage's secrets live in
//! `.env.STAGE` at the project root, often the build context) are left out at any depth, as if
//! `.dockerignore` began with `**/.env` and `**/.env.*`; an exception in `.dockerignore`
//! (`!.env.example`) brings one back.

pub mod digest;
pub mod monitor;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;
use regex::Regex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The parsed `.dockerignore` of a build context.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without its `!`.
    text: String,
    exclusion: bool,
    matcher: Matcher,
}

/// How a pattern matches, as moby's patternmatcher decides it: plain strings are compared,
/// `foo/**` is a prefix, `**/foo` a suffix, anything else a regular expression.
#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

/// A `.dockerignore` line that is not a valid pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

impl Dockerignore {
    /// Parse the text of a `.dockerignore` file the way the docker CLI reads it.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            // A comment only when `#` is in the very first column.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, rest) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let error = |reason: &str| PatternError {
                line: index + 1,
                pattern: line.to_string(),
                reason: reason.to_string(),
            };
            if exclusion && rest.is_empty() {
                return Err(error("a lone `!` excludes nothing"));
            }
            let mut cleaned = clean(rest);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let matcher = compile(&cleaned).map_err(|reason| error(&reason))?;
            patterns.push(Pattern {
                text: cleaned,
                exclusion,
                matcher,
            });
        }
        Ok(Dockerignore { patterns })
    }

    /// Leave `.env` and `.env.*` out at any depth, before the file's own patterns, so only
    /// an explicit exception (`!…`) in `.dockerignore` sends one.
    fn exclude_env_files(&mut self) {
        let secrets = ["**/.env", "**/.env.*"].into_iter().filter_map(|text| {
            compile(text).ok().map(|matcher| Pattern {
                text: text.to_string(),
                exclusion: false,
                matcher,
            })
        });
        self.patterns.splice(0..0, secrets);
    }

    /// Add an exception (`!path`) at the end, as the docker CLI does for the Dockerfile and
    /// `.dockerignore` when a pattern would exclude them.
    fn keep(&mut self, path: &str) {
        let text = clean(path);
        if let Ok(matcher) = compile(&text) {
            self.patterns.push(Pattern {
                text,
                exclusion: true,
                matcher,
            });
        }
    }

    /// True when `path` (relative to the context, `/`-separated) is left out of the context:
    /// the last pattern that matches it or one of its parent directories is not an exception.
    /// Computed as the directory walk does, each directory's result feeding its children's.
    pub fn excluded(&self, path: &str) -> bool {
        let mut parent: Option<Vec<bool>> = None;
        let mut excluded = false;
        let ends = path
            .char_indices()
            .filter(|(_, c)| *c == '/')
            .map(|(i, _)| i)
            .chain([path.len()]);
        for end in ends {
            let (result, matches) = self.evaluate(&path[..end], parent.as_deref());
            excluded = result;
            parent = Some(matches);
        }
        excluded
    }

    /// Decide one path, given which patterns matched its parent directory (moby's
    /// `MatchesUsingParentResults`, which the docker CLI's walker uses). Returns whether it
    /// is excluded, and which patterns matched it, for its children. A pattern is only
    /// evaluated when it could change the outcome so far, and a skipped pattern does not
    /// count as matched for the children: with `*`, `!a/b`, `a` the docker CLI sends
    /// `a/b`, and so does this.
    fn evaluate(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut excluded = false;
        let mut matches = vec![false; self.patterns.len()];
        for (index, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|p| p.get(index) == Some(&true));
            if !hit {
                if pattern.exclusion != excluded {
                    continue;
                }
                hit = pattern.matches(path)
                    || (parent.is_none()
                        && path
                            .char_indices()
                            .filter(|(_, c)| *c == '/')
                            .any(|(i, _)| pattern.matches(&path[..i])));
            }
            matches[index] = hit;
            if hit {
                excluded = !pattern.exclusion;
            }
        }
        (excluded, matches)
    }

    /// True when the walker must look inside the excluded directory `dir` because an
    /// exception could re-include something in it. Docker's test is textual: an exception
    /// whose pattern starts with `dir/` (so `!**/keep` does not reach into excluded dirs).
    pub fn must_descend(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", p.text).starts_with(&prefix))
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Regex(regex) => regex.is_match(path),
        }
    }
}

/// Turn a cleaned pattern into a matcher (moby patternmatcher's `compile`).
fn compile(pattern: &str) -> Result<Matcher, String> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut kind = Kind::Exact;
    let mut regex = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut position = 0;
    // Inside `[…]` characters pass through, so ranges such as `[a-z]` keep their meaning.
    let mut in_class = false;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is the same as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        regex.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    regex.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if position == 0 {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = Kind::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                regex.push('\\');
                regex.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(next) => {
                    i += 1;
                    regex.push_str(&regex::escape(&next.to_string()));
                    kind = Kind::Regex;
                }
                None => return Err("a trailing `\\` escapes nothing".to_string()),
            },
            '[' | ']' => {
                in_class = ch == '[';
                regex.push(ch);
                kind = Kind::Regex;
            }
            other if in_class => regex.push(other),
            '^' => regex.push('^'),
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
        position += 1;
    }
    match kind {
        Kind::Exact => Ok(Matcher::Exact),
        Kind::Prefix => Ok(Matcher::Prefix(pattern[..pattern.len() - 2].to_string())),
        Kind::Suffix => Ok(Matcher::Suffix(pattern[2..].to_string())),
        Kind::Regex => {
            regex.push('$');
            Regex::new(&regex)
                .map(Matcher::Regex)
                .map_err(|_| "unbalanced `[`…`]` or a bad character class".to_string())
        }
    }
}

/// Go's `path.Clean`: drop `.` and empty elements, resolve `..`, no trailing `/`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// One entry of the context, in walk order.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name inside the tar (relative, `/`-separated).
    pub name: PathBuf,
    /// Where it is on disk.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// What the walk saw of it (the digest of the build inputs reads it).
    pub meta: fs::Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// What will be sent: the walked entries, plus a generated Dockerfile when needed.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The context directory.
    pub root: PathBuf,
    pub entries: Vec<Entry>,
    /// The Dockerfile's name inside the context, as the daemon must be told.
    pub dockerfile: String,
    /// A Dockerfile sent under a generated name: one from outside the context, or one
    /// rewritten before sending. Like the docker CLI, its name is appended to the sent
    /// `.dockerignore`, so the daemon drops it from the context before any `COPY`.
    pub generated_dockerfile: Option<(String, Vec<u8>)>,
    pub files: usize,
    pub bytes: u64,
    /// `.dockerignore` lists the Dockerfile: it is sent, but the engine hides it from `COPY`.
    pub dockerfile_ignored: bool,
    /// `.dockerignore` lists itself: it is sent, and the classic builder hides it from `COPY`
    /// (BuildKit does not read it from an uploaded context: it can be left out).
    pub dockerignore_ignored: bool,
    /// Each file was opened once while walking, so an unreadable one fails before the upload.
    pub check_readable: bool,
}

impl BuildContext {
    /// The text of the Dockerfile that will be used.
    pub fn dockerfile_text(&self) -> io::Result<Vec<u8>> {
        match &self.generated_dockerfile {
            Some((_, text)) => Ok(text.clone()),
            None => fs::read(self.root.join(&self.dockerfile)),
        }
    }

    /// Send `text` as the Dockerfile instead of the file on disk (which is still sent, as
    /// part of the context).
    pub fn replace_dockerfile(&mut self, text: Vec<u8>) {
        // The engine hides only the Dockerfile it is told to use: one that `.dockerignore`
        // lists must then stay out of the context, as it would be out of `COPY`.
        if self.generated_dockerfile.is_none() && self.dockerfile_ignored {
            let original = PathBuf::from(&self.dockerfile);
            self.entries.retain(|entry| entry.name != original);
        }
        let name = format!(".dockerfile.{}", short_hash(&text));
        self.dockerfile = name.clone();
        self.generated_dockerfile = Some((name, text));
    }
}

/// Why a context could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context `{0}` is not a directory")]
    NotADirectory(PathBuf),
    #[error("Dockerfile `{0}` does not exist")]
    NoDockerfile(PathBuf),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("cannot read `{path}` in the build context: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The rules that decide what of `root` goes into its build context: its `.dockerignore`
/// (none when absent) after stackctl's own `.env` rule. `stackctl watch` ignores changes
/// these leave out.
pub fn context_ignore(root: &Path) -> Result<Dockerignore, ContextError> {
    let ignore_path = root.join(".dockerignore");
    let mut ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => Dockerignore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
        Err(e) => return Err(io_error(&ignore_path)(e)),
    };
    ignore.exclude_env_files();
    Ok(ignore)
}

/// Walk `root` with its `.dockerignore` and list what goes into the context. Nothing is read
/// yet except `.dockerignore` and an outside Dockerfile; every file is checked to be readable
/// so a permission problem is reported before the upload starts, as the docker CLI does.
pub fn scan(root: &Path, dockerfile: Option<&str>) -> Result<BuildContext, ContextError> {
    scan_with(root, dockerfile, true)
}

/// `scan` without opening each file to check it can be read: what the digest of the build
/// inputs needs (it reads only the files whose cached hash is stale), at a third of the
/// system calls.
pub fn scan_listing(root: &Path, dockerfile: Option<&str>) -> Result<BuildContext, ContextError> {
    scan_with(root, dockerfile, false)
}

fn scan_with(
    root: &Path,
    dockerfile: Option<&str>,
    check_readable: bool,
) -> Result<BuildContext, ContextError> {
    if !root.is_dir() {
        return Err(ContextError::NotADirectory(root.to_path_buf()));
    }
    let dockerfile = dockerfile.filter(|d| !d.is_empty()).unwrap_or("Dockerfile");
    let dockerfile_path = if Path::new(dockerfile).is_absolute() {
        PathBuf::from(dockerfile)
    } else {
        root.join(dockerfile)
    };
    if !dockerfile_path.is_file() {
        return Err(ContextError::NoDockerfile(dockerfile_path));
    }
    // The Dockerfile's name relative to the context, or None when it lives outside.
    let inside = dockerfile_path
        .strip_prefix(root)
        .ok()
        .map(|rel| clean(&rel.to_string_lossy()))
        .filter(|rel| !rel.starts_with("../") && rel != "..");

    let ignore_path = root.join(".dockerignore");
    let mut ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => Dockerignore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
        Err(e) => return Err(io_error(&ignore_path)(e)),
    };
    ignore.exclude_env_files();
    let dockerignore_ignored = ignore.excluded(".dockerignore");
    if dockerignore_ignored {
        ignore.keep(".dockerignore");
    }
    let mut dockerfile_ignored = false;
    if let Some(rel) = &inside {
        if ignore.excluded(rel) {
            dockerfile_ignored = true;
            ignore.keep(rel);
        }
    }

    let mut context = BuildContext {
        root: root.to_path_buf(),
        dockerfile_ignored,
        dockerignore_ignored,
        check_readable,
        ..BuildContext::default()
    };
    walk(root, Path::new(""), None, &ignore, &mut context)?;
    match inside {
        Some(rel) => context.dockerfile = rel,
        None => {
            let text = fs::read(&dockerfile_path).map_err(io_error(&dockerfile_path))?;
            context.bytes += text.len() as u64;
            context.files += 1;
            context.replace_dockerfile(text);
        }
    }
    Ok(context)
}

/// Walk `root` as [`scan`] does, with a Dockerfile given as text (`dockerfile_inline`)
/// instead of one from the directory.
pub fn scan_inline(root: &Path, text: Vec<u8>) -> Result<BuildContext, ContextError> {
    if !root.is_dir() {
        return Err(ContextError::NotADirectory(root.to_path_buf()));
    }
    let ignore_path = root.join(".dockerignore");
    let mut ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => Dockerignore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
        Err(e) => return Err(io_error(&ignore_path)(e)),
    };
    ignore.exclude_env_files();
    let dockerignore_ignored = ignore.excluded(".dockerignore");
    if dockerignore_ignored {
        ignore.keep(".dockerignore");
    }
    let mut context = BuildContext {
        root: root.to_path_buf(),
        dockerignore_ignored,
        ..BuildContext::default()
    };
    walk(root, Path::new(""), None, &ignore, &mut context)?;
    context.bytes += text.len() as u64;
    context.files += 1;
    context.replace_dockerfile(text);
    Ok(context)
}

fn short_hash(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(data);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory's subtree is walked on a thread of its own when the walk may use threads and
/// the directory has at least this many subdirectories to walk.
const PARALLEL_MIN_DIRS: usize = 2;

/// A subtree's entries in walk order, or why it could not be walked.
type Walked = Result<Vec<Entry>, ContextError>;

fn walk(
    root: &Path,
    dir: &Path,
    parent: Option<&[bool]>,
    ignore: &Dockerignore,
    context: &mut BuildContext,
) -> Result<(), ContextError> {
    // Stat calls dominate a large context's walk: the subtrees of one directory are walked
    // on a few threads (std's scoped threads: a fixed split, no pool or crate needed), each
    // entry is stat'ed relative to its open directory (no path lookup from the root), and
    // the results are put back in walk order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let entries = walk_dir(root, dir, parent, ignore, context.check_readable, threads)?;
    for entry in &entries {
        if entry.kind == EntryKind::File {
            context.files += 1;
            context.bytes += entry.meta.len();
        }
    }
    context.entries.extend(entries);
    Ok(())
}

/// What comes at one place of the walk order: an entry, or a subtree to walk.
enum Item {
    Entry(Entry),
    Subtree(PathBuf, Vec<bool>),
}

/// The entries under `dir` in walk order (names sorted, a directory before its contents).
/// `threads` > 1: the subtrees of the first directory with several subdirectories are split
/// over that many threads.
fn walk_dir(
    root: &Path,
    dir: &Path,
    parent: Option<&[bool]>,
    ignore: &Dockerignore,
    check_readable: bool,
    threads: usize,
) -> Result<Vec<Entry>, ContextError> {
    let items = list_dir(root, dir, parent, ignore, check_readable)?;
    let subtrees: Vec<(&PathBuf, &Vec<bool>)> = items
        .iter()
        .filter_map(|item| match item {
            Item::Subtree(rel, matches) => Some((rel, matches)),
            Item::Entry(_) => None,
        })
        .collect();
    let walked: Vec<Walked> = if threads > 1 && subtrees.len() >= PARALLEL_MIN_DIRS {
        walk_on_threads(root, dir, &subtrees, ignore, check_readable, threads)?
    } else {
        subtrees
            .into_iter()
            .map(|(rel, matches)| {
                walk_dir(
                    root,
                    rel,
                    Some(matches.as_slice()),
                    ignore,
                    check_readable,
                    threads,
                )
            })
            .collect()
    };
    let mut walked = walked.into_iter();
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Entry(entry) => entries.push(entry),
            Item::Subtree(..) => {
                entries.extend(walked.next().unwrap_or_else(|| Ok(Vec::new()))?);
            }
        }
    }
    Ok(entries)
}

/// One directory's entries, sorted by name, what `.dockerignore` leaves out left out; its
/// subdirectories as subtrees to walk.
fn list_dir(
    root: &Path,
    dir: &Path,
    parent: Option<&[bool]>,
    ignore: &Dockerignore,
    check_readable: bool,
) -> Result<Vec<Item>, ContextError> {
    let full = root.join(dir);
    let mut listed: Vec<fs::DirEntry> = fs::read_dir(&full)
        .map_err(io_error(&full))?
        .collect::<Result<_, _>>()
        .map_err(io_error(&full))?;
    listed.sort_by_key(fs::DirEntry::file_name);
    let mut items = Vec::with_capacity(listed.len());
    for listed in listed {
        let rel = dir.join(listed.file_name());
        let path = root.join(&rel);
        let key = rel.to_string_lossy().replace('\\', "/");
        // Relative to the open directory: `fstatat`, not a lookup of the whole path.
        let meta = listed.metadata().map_err(io_error(&path))?;
        let (excluded, matches) = ignore.evaluate(&key, parent);
        if excluded {
            // An excluded directory is still walked when an exception may re-include
            // something inside it; the directory entry itself stays out.
            if meta.is_dir() && ignore.must_descend(&key) {
                items.push(Item::Subtree(rel, matches));
            }
            continue;
        }
        let file_type = meta.file_type();
        if file_type.is_dir() {
            items.push(Item::Entry(Entry {
                name: rel.clone(),
                path,
                kind: EntryKind::Dir,
                meta,
            }));
            items.push(Item::Subtree(rel, matches));
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(io_error(&path))?;
            items.push(Item::Entry(Entry {
                name: rel,
                path,
                kind: EntryKind::Symlink(target),
                meta,
            }));
        } else if file_type.is_file() {
            if check_readable {
                File::open(&path).map_err(io_error(&path))?;
            }
            items.push(Item::Entry(Entry {
                name: rel,
                path,
                kind: EntryKind::File,
                meta,
            }));
        }
        // Sockets, FIFOs and devices are left out: a build cannot use them.
    }
    Ok(items)
}

/// The subtrees walked on `threads` threads, each serially, in their order.
fn walk_on_threads(
    root: &Path,
    dir: &Path,
    subtrees: &[(&PathBuf, &Vec<bool>)],
    ignore: &Dockerignore,
    check_readable: bool,
    threads: usize,
) -> Result<Vec<Walked>, ContextError> {
    let mut walked: Vec<Walked> = Vec::new();
    // Thread k walks subtrees k, k + threads, …; each serially.
    let per_thread: Vec<Vec<(usize, Walked)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(subtrees.len()))
            .map(|k| {
                let subtrees = &subtrees;
                scope.spawn(move || {
                    subtrees
                        .iter()
                        .enumerate()
                        .skip(k)
                        .step_by(threads)
                        .map(|(index, (rel, matches))| {
                            let walked = walk_dir(
                                root,
                                rel,
                                Some(matches.as_slice()),
                                ignore,
                                check_readable,
                                1,
                            );
                            (index, walked)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    walked.resize_with(subtrees.len(), || Ok(Vec::new()));
    let mut done = 0;
    for (index, result) in per_thread.into_iter().flatten() {
        walked[index] = result;
        done += 1;
    }
    if done != subtrees.len() {
        return Err(ContextError::Io {
            path: root.join(dir),
            source: io::Error::other("a walking thread stopped"),
        });
    }
    Ok(walked)
}

/// Write the context as a tar into `writer`, each file read once. Owners are root, as the
/// docker CLI sends them; modes, times and symlinks are kept.
pub fn write_tar<W: Write>(context: &BuildContext, writer: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    let generated = context.generated_dockerfile.as_ref();
    let mut wrote_ignore = false;
    for entry in &context.entries {
        let meta = fs::symlink_metadata(&entry.path)?;
        if let (Some((name, _)), EntryKind::File) = (generated, &entry.kind) {
            if entry.name == Path::new(".dockerignore") {
                let mut text = fs::read(&entry.path)?;
                text.extend_from_slice(format!("\n{name}\n").as_bytes());
                let mut header = tar::Header::new_gnu();
                header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                header.set_uid(0);
                header.set_gid(0);
                header.set_size(text.len() as u64);
                builder.append_data(&mut header, &entry.name, text.as_slice())?;
                wrote_ignore = true;
                continue;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_uid(0);
        header.set_gid(0);
        match &entry.kind {
            EntryKind::Dir => {
                header.set_size(0);
                builder.append_data(&mut header, &entry.name, io::empty())?;
            }
            EntryKind::Symlink(target) => {
                header.set_size(0);
                builder.append_link(&mut header, &entry.name, target)?;
            }
            EntryKind::File => {
                let file = File::open(&entry.path)?;
                // The size of what is read now, not of what was seen while walking.
                let size = file.metadata()?.len();
                header.set_size(size);
                builder.append_data(&mut header, &entry.name, file.take(size))?;
            }
        }
    }
    if let Some((name, text)) = generated {
        if !wrote_ignore {
            // Hide both generated files from `COPY`, as the docker CLI does.
            append_generated(
                &mut builder,
                ".dockerignore",
                format!(".dockerignore\n{name}\n").as_bytes(),
            )?;
        }
        append_generated(&mut builder, name, text)?;
    }
    builder.into_inner()
}

fn append_generated<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    );
    builder.append_data(&mut header, name, data)
}

/// A `Write` that hands 64 KiB chunks to an async receiver (the HTTP request body).
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload was abandoned"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Stream the context's tar: a blocking task writes it chunk by chunk while the request
/// sends it, so a large context is never held in memory. The task's result says whether
/// the tar was complete (a failure also ends the stream with an error).
pub fn stream(
    context: BuildContext,
) -> (
    impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    JoinHandle<io::Result<()>>,
) {
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(8);
    let task = tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        let result = write_tar(&context, writer).and_then(|mut writer| writer.flush());
        if let Err(e) = &result {
            let _ = sender.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    (body, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Dockerignore {
        Dockerignore::parse(text).expect("valid .dockerignore")
    }

    #[test]
    fn a_walk_on_threads_lists_what_a_serial_walk_lists_in_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(
            root.join(".dockerignore"),
            "src/d3\n!src/d3/keep\n**/*.log\n",
        )
        .unwrap();
        for d in 0..6 {
            let sub = root.join(format!("src/d{d}"));
            fs::create_dir_all(sub.join("inner")).unwrap();
            for f in ["a", "b.log", "keep", "inner/c"] {
                fs::write(sub.join(f), f).unwrap();
            }
        }
        fs::write(root.join("src.txt"), "after src/ in name order").unwrap();
        let mut ignore = context_ignore(root).unwrap();
        ignore.keep("Dockerfile");
        let names = |threads| -> Vec<String> {
            walk_dir(root, Path::new(""), None, &ignore, true, threads)
                .unwrap()
                .into_iter()
                .map(|e| e.name.to_string_lossy().into_owned())
                .collect()
        };
        let serial = names(1);
        assert_eq!(names(3), serial);
        assert!(serial.contains(&"src/d3/keep".to_string()));
        assert!(!serial.contains(&"src/d3".to_string()));
        assert!(!serial.iter().any(|n| n.ends_with(".log")));
        assert_eq!(serial.len(), 4 + 5 * 5 + 1);
    }

    /// (patterns, path, excluded?) — Docker's behaviour, case by case.
    #[test]
    fn matcher_follows_docker_rules() {
        let cases: &[(&str, &str, bool)] = &[
            // Anchored at the root: `*.log` is the root only.
            ("*.log", "app.log", true),
            ("*.log", "logs/app.log", false),
            ("*.log", "a/b/c.log", false),
            // `**` matches any depth, including none.
            ("**/*.tmp", "x.tmp", true),
            ("**/*.tmp", "a/x.tmp", true),
            ("**/*.tmp", "a/b/c/x.tmp", true),
            ("**/*.tmp", "a/x.tmpl", false),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**/z", "b/a/z", false),
            ("a/**", "a/b", true),
            ("a/**", "a/b/c", true),
            ("**", "anything/at/all", true),
            // A directory pattern excludes its subtree, but only at the root.
            ("node_modules", "node_modules", true),
            ("node_modules", "node_modules/x/y.js", true),
            ("node_modules", "sub/node_modules", false),
            ("node_modules", "sub/node_modules/x.js", false),
            ("**/node_modules", "sub/node_modules/x.js", true),
            // `*` and `?` never cross `/`.
            ("*", "top", true),
            ("*", "dir/file", true), // the parent `dir` matches
            ("*/b", "a/b", true),
            ("*/b", "a/x/b", false),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("a?c", "a/c", false),
            ("a?c", "abc", true),
            // Cleaning: leading `/`, `./`, trailing `/`, `..`.
            ("/secret", "secret/key", true),
            ("./build/", "build/out.o", true),
            ("a/../b", "b", true),
            ("a/../b", "a/b", false),
            // Regex characters are literal.
            ("a.c", "abc", false),
            ("a.c", "a.c", true),
            ("f(1)+", "f(1)+", true),
            ("$HOME", "$HOME", true),
            // Character classes.
            ("[ab].txt", "a.txt", true),
            ("[ab].txt", "c.txt", false),
            ("[^a].txt", "b.txt", true),
            ("[a-c].txt", "b.txt", true),
            ("[a-c].txt", "-.txt", false),
            // Escapes.
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            // Comments only in column 1; a `#` elsewhere is part of a pattern.
            ("# a comment\nkept", "# a comment", false),
            (" #notcomment", "#notcomment", true),
            ("a#b", "a#b", true),
            // Spaces around patterns are trimmed; blank lines ignored.
            ("  spaced.txt  \n\n", "spaced.txt", true),
            // The last matching line wins.
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            // A pattern skipped at the parent (already excluded there) does not count for
            // the children: the docker CLI sends `a/b` here.
            ("*\n!a/b\na", "a/b", false),
            ("*\n!a/b\na", "a/c", true),
            // An exception inside an excluded directory re-includes that file only.
            ("secret\n!secret/public.txt", "secret/public.txt", false),
            ("secret\n!secret/public.txt", "secret/private.key", true),
            ("secret\n!secret/public.txt", "secret", true),
            // An exception for a directory re-includes its subtree.
            ("docs\n!docs/api", "docs/api/index.html", false),
            // `! ` with spaces before the pattern.
            ("*.txt\n!  keep.txt", "keep.txt", false),
            // No patterns: nothing excluded.
            ("", "anything", false),
            // A lone `.` or `/` matches no path.
            (".", "a", false),
            ("/", "a", false),
        ];
        for (patterns, path, expected) in cases {
            assert_eq!(
                ignore(patterns).excluded(path),
                *expected,
                "patterns {patterns:?} on path {path:?}"
            );
        }
    }

    #[test]
    fn suffix_pattern_without_slash_matches_any_suffix() {
        // moby treats a leading `**` as a plain suffix test: `**.log` matches `a/b.log`.
        let ig = ignore("**.log");
        assert!(ig.excluded("b.log"));
        assert!(ig.excluded("a/b.log"));
        assert!(!ig.excluded("a/b.txt"));
    }

    #[test]
    fn descends_only_where_an_exception_starts_with_the_directory() {
        let ig = ignore("secret\n!secret/public.txt\nvendor\n!**/keep");
        assert!(ig.must_descend("secret"));
        assert!(!ig.must_descend("vendor"));
        assert!(!ig.must_descend("secre"));
        let deep = ignore("a\n!a/b/c.txt");
        assert!(deep.must_descend("a"));
        assert!(deep.must_descend("a/b"));
        assert!(!deep.must_descend("a/x"));
    }

    #[test]
    fn invalid_patterns_name_their_line() {
        let err = Dockerignore::parse("ok\n[unclosed").expect_err("bad class");
        assert_eq!(err.line, 2);
        assert_eq!(err.pattern, "[unclosed");
        let err = Dockerignore::parse("# c\n!").expect_err("lone !");
        assert_eq!(err.line, 2);
        let err = Dockerignore::parse("trailing\\").expect_err("trailing backslash");
        assert_eq!(err.line, 1);
    }

    #[test]
    fn clean_is_go_path_clean() {
        for (input, expected) in [
            ("", "."),
            (".", "."),
            ("./a/", "a"),
            ("a//b", "a/b"),
            ("a/./b/../c", "a/c"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("!a/", "!a"),
        ] {
            assert_eq!(clean(input), expected, "clean({input:?})");
        }
    }

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in files {
            let path = dir.path().join(file);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("mkdir");
            }
            if let Some(dir_only) = file.strip_suffix('/') {
                fs::create_dir_all(dir.path().join(dir_only)).expect("mkdir");
            } else {
                fs::write(&path, format!("content of {file}")).expect("write");
            }
        }
        dir
    }

    fn tar_names(context: &BuildContext) -> Vec<String> {
        let bytes = write_tar(context, Vec::new()).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let entry = e.expect("entry");
                let mut name = entry.path().expect("path").to_string_lossy().into_owned();
                if entry.header().entry_type() == tar::EntryType::Directory && !name.ends_with('/')
                {
                    name.push('/');
                }
                name
            })
            .collect()
    }

    #[test]
    fn tar_holds_exactly_what_dockerignore_lets_through() {
        let dir = tree(&[
            "Dockerfile",
            "app.py",
            "app.log",
            "logs/keep.log",
            "cache/x.tmp",
            "node_modules/pkg/index.js",
            "sub/node_modules/pkg/index.js",
            "secret/public.txt",
            "secret/private.key",
            "empty/",
        ]);
        fs::write(
            dir.path().join(".dockerignore"),
            "# build junk\n*.log\n**/*.tmp\nnode_modules\nsecret\n!secret/public.txt\nDockerfile\n.dockerignore\n",
        )
        .expect("write .dockerignore");
        #[cfg(unix)]
        std::os::unix::fs::symlink("app.py", dir.path().join("link.py")).expect("symlink");

        let context = scan(dir.path(), None).expect("scan");
        assert_eq!(context.dockerfile, "Dockerfile");
        assert_eq!(
            tar_names(&context),
            vec![
                ".dockerignore",
                "Dockerfile",
                "app.py",
                "cache/",
                "empty/",
                "link.py",
                "logs/",
                "logs/keep.log",
                "secret/public.txt",
                "sub/",
                "sub/node_modules/",
                "sub/node_modules/pkg/",
                "sub/node_modules/pkg/index.js",
            ]
        );
    }

    /// The expected list is what `COPY . /ctx` + `find` showed with docker CLI 28.2's legacy
    /// builder on the same tree (the daemon hides the Dockerfile and `.dockerignore` from
    /// `COPY` when they are listed, so they are left out of the comparison).
    #[test]
    fn context_matches_the_docker_cli_legacy_builder() {
        let dir = tree(&[
            "Dockerfile",
            "app.py",
            "app.log",
            "logs/keep.log",
            "cache/x.tmp",
            "node_modules/pkg/index.js",
            "sub/node_modules/pkg/index.js",
            "secret/public.txt",
            "secret/private.key",
            "a/b/c.txt",
            "a/z",
            "vendor/x/keep",
            "docs/api/i.html",
            "docs/other",
            "README.md",
            "CHANGES.md",
            "x.log.bak",
            "#hash",
            "empty/",
        ]);
        fs::write(
            dir.path().join(".dockerignore"),
            "# build junk\n*.log\n**/*.tmp\nnode_modules\nsecret\n!secret/public.txt\nDockerfile\n.dockerignore\n #hash\nvendor\n!**/keep\n*.md\n!README.md\ndocs\n!docs/api\na/**/c.txt\n",
        )
        .expect("write .dockerignore");
        let context = scan(dir.path(), None).expect("scan");
        let names: Vec<String> = tar_names(&context)
            .into_iter()
            .map(|n| n.trim_end_matches('/').to_string())
            .filter(|n| n != "Dockerfile" && n != ".dockerignore")
            .collect();
        let docker = [
            "README.md",
            "a",
            "a/b",
            "a/z",
            "app.py",
            "cache",
            "docs/api",
            "docs/api/i.html",
            "empty",
            "logs",
            "logs/keep.log",
            "secret/public.txt",
            "sub",
            "sub/node_modules",
            "sub/node_modules/pkg",
            "sub/node_modules/pkg/index.js",
            "x.log.bak",
        ];
        // `find` also lists `docs` and `secret`: the daemon creates them as parents.
        assert_eq!(names, docker);
    }

    #[cfg(unix)]
    #[test]
    fn tar_keeps_symlinks_modes_and_contents() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tree(&["Dockerfile", "run.sh"]);
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("outside")).expect("symlink");
        let context = scan(dir.path(), None).expect("scan");
        let bytes = write_tar(&context, Vec::new()).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            match name.as_str() {
                "run.sh" => {
                    assert_eq!(entry.header().mode().expect("mode") & 0o777, 0o750);
                    assert_eq!(entry.header().uid().expect("uid"), 0);
                    let mut text = String::new();
                    entry.read_to_string(&mut text).expect("read");
                    assert_eq!(text, "content of run.sh");
                }
                "outside" => {
                    assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
                    assert_eq!(
                        entry.link_name().expect("link").expect("target"),
                        Path::new("/etc/passwd")
                    );
                }
                _ => {}
            }
        }
    }

    #[test]
    fn r24_env_files_stay_out_of_the_context_unless_an_exception_asks() {
        let dir = tree(&[
            "Dockerfile",
            ".env",
            ".env.dev",
            ".env.example",
            "app/.env.prod",
            "app/main.py",
            "environment.txt",
        ]);
        let context = scan(dir.path(), None).expect("scan");
        assert_eq!(
            tar_names(&context),
            vec!["Dockerfile", "app/", "app/main.py", "environment.txt"]
        );

        fs::write(dir.path().join(".dockerignore"), "*.txt\n!.env.example\n")
            .expect("write .dockerignore");
        let context = scan(dir.path(), None).expect("scan");
        assert_eq!(
            tar_names(&context),
            vec![
                ".dockerignore",
                ".env.example",
                "Dockerfile",
                "app/",
                "app/main.py"
            ]
        );
    }

    #[test]
    fn dockerfile_outside_the_context_is_added_under_a_generated_name() {
        let dir = tree(&["ctx/app.py", "docker/Dockerfile.api"]);
        let context =
            scan(&dir.path().join("ctx"), Some("../docker/Dockerfile.api")).expect("scan");
        assert!(context.dockerfile.starts_with(".dockerfile."));
        let names = tar_names(&context);
        assert_eq!(
            names,
            vec![
                "app.py".to_string(),
                ".dockerignore".to_string(),
                context.dockerfile.clone()
            ]
        );
        let bytes = write_tar(&context, Vec::new()).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            if entry.path().expect("path") == Path::new(".dockerignore") {
                let mut text = String::new();
                entry.read_to_string(&mut text).expect("read");
                assert_eq!(text, format!(".dockerignore\n{}\n", context.dockerfile));
            }
        }
    }

    #[test]
    fn dockerfile_in_an_excluded_directory_is_still_sent() {
        let dir = tree(&["docker/Dockerfile", "docker/other", "app.py"]);
        fs::write(dir.path().join(".dockerignore"), "docker\n").expect("write");
        let context = scan(dir.path(), Some("docker/Dockerfile")).expect("scan");
        assert_eq!(context.dockerfile, "docker/Dockerfile");
        assert_eq!(
            tar_names(&context),
            vec![".dockerignore", "app.py", "docker/Dockerfile"]
        );
    }

    #[test]
    fn replaced_dockerfile_is_listed_in_the_sent_dockerignore() {
        let dir = tree(&["Dockerfile", "app.py"]);
        fs::write(dir.path().join(".dockerignore"), "*.log").expect("write");
        let mut context = scan(dir.path(), None).expect("scan");
        let mut text = context.dockerfile_text().expect("read Dockerfile");
        text.extend_from_slice(b"LABEL a=b\n");
        context.replace_dockerfile(text);
        let bytes = write_tar(&context, Vec::new()).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("read");
            seen.push((name, text));
        }
        let generated = context.dockerfile.clone();
        assert_eq!(
            seen,
            vec![
                (".dockerignore".to_string(), format!("*.log\n{generated}\n")),
                (
                    "Dockerfile".to_string(),
                    "content of Dockerfile".to_string()
                ),
                ("app.py".to_string(), "content of app.py".to_string()),
                (generated, "content of DockerfileLABEL a=b\n".to_string()),
            ]
        );
    }

    #[test]
    fn replaced_dockerfile_that_dockerignore_lists_is_not_sent() {
        let dir = tree(&["Dockerfile", "app.py"]);
        fs::write(dir.path().join(".dockerignore"), "Dockerfile\n").expect("write");
        let mut context = scan(dir.path(), None).expect("scan");
        assert!(context.dockerfile_ignored);
        let text = context.dockerfile_text().expect("read Dockerfile");
        context.replace_dockerfile(text);
        let generated = context.dockerfile.clone();
        assert_eq!(
            tar_names(&context),
            vec![".dockerignore".to_string(), "app.py".to_string(), generated]
        );
    }

    #[test]
    fn missing_dockerfile_is_reported_before_anything_is_sent() {
        let dir = tree(&["app.py"]);
        let err = scan(dir.path(), None).expect_err("no Dockerfile");
        assert!(matches!(err, ContextError::NoDockerfile(_)), "{err}");
    }

    #[tokio::test]
    async fn streamed_tar_equals_the_written_one() {
        let dir = tree(&["Dockerfile", "big.bin", "a/b.txt"]);
        fs::write(dir.path().join("big.bin"), vec![7u8; 300 * 1024]).expect("write big");
        let context = scan(dir.path(), None).expect("scan");
        let expected = write_tar(&context, Vec::new()).expect("tar");
        let (body, task) = stream(context);
        use futures_util::StreamExt;
        let chunks: Vec<io::Result<Bytes>> = body.collect().await;
        task.await.expect("join").expect("tar task");
        let streamed: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.expect("chunk").to_vec())
            .collect();
        assert_eq!(streamed, expected);
    }
}
