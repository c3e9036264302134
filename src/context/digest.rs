//! The digest of an image's build inputs: every entry of the context that `.dockerignore`
//! lets through (name, kind, mode, contents or link target), the Dockerfile, the build args
//! and the target. A build stores it on the image as a label; `up` computes it again and
//! rebuilds when it differs, naming a file that changed.
//!
//! Hashing every file at every `up` would cost a read of the whole context, so each file's
//! content hash is cached by its path, size, modification time and inode in a small file
//! under the user's cache directory (`$XDG_CACHE_HOME/stackctl`, else `~/.cache/stackctl`).
//! A cache that cannot be read or written only costs time: the hashes are recomputed.
//! The list of (name, hash) pairs of the last few digests of a context is kept beside it, so
//! a changed digest can name what changed.
//!
//! Most `up`s find nothing changed, so a second, tiny file (`KEY.quick`) holds the last
//! digest with a *listing key*: a hash of every entry's name, kind, mode, link target and
//! file stamp (size, modification time, inode) and of the other inputs. When the walk gives
//! the same listing key, every file has the stamp it had when that digest was computed, so
//! the digest is the same: the file hashes are not looked up, and the larger cache file
//! (file hashes and earlier digests' entries, some MB for a big context) is not read.
//! This trusts stamps exactly as far as the per-file cache does.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BuildContext, EntryKind};

/// Digests of one context kept for naming changes.
const KEPT_MANIFESTS: usize = 4;

/// What a build's inputs hash to, and what each entry hashed to (for naming a change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextDigest {
    /// `sha256:` and 64 hex digits.
    pub digest: String,
    /// Entry name → its own hash (kind, mode and contents or link target); `None` when the
    /// digest came from the listing key (then the cache's remembered entries of this digest
    /// name a change).
    entries: Option<BTreeMap<String, String>>,
}

/// The inputs of a build besides the context's files.
pub struct Inputs<'a> {
    pub args: &'a HashMap<String, String>,
    pub target: Option<&'a str>,
}

/// What a build's digest is computed from besides the context's files.
pub struct BuildInputs<'a> {
    pub root: &'a Path,
    pub dockerfile: Option<&'a str>,
    pub dockerfile_inline: Option<&'a str>,
    pub inputs: Inputs<'a>,
}

/// The digest of a build's inputs as `up` needs it: from the context monitor's token when
/// the monitor saw no change since the digest was last computed (no walk at all), else by
/// walking the context (module docs of `monitor`).
pub fn of_build(build: &BuildInputs<'_>) -> Result<ContextDigest, super::ContextError> {
    let token = super::monitor::token(build.root);
    let remembered_path = cache_dir().map(|dir| dir.join(format!("{}.monitored", key(build.root))));
    // The inputs the monitor does not watch: args, target, the Dockerfile's name, an inline
    // Dockerfile, and a Dockerfile outside the context (read: one file).
    let others = token.and_then(|_| outside_inputs_key(build));
    if let (Some(token), Some(others), Some(path)) = (token, &others, &remembered_path) {
        if let Some(digest) = remembered_digest(path, token, others) {
            return Ok(ContextDigest {
                digest,
                entries: None,
            });
        }
    }
    let context = match build.dockerfile_inline {
        Some(text) => super::scan_inline(build.root, text.as_bytes().to_vec())?,
        None => super::scan_listing(build.root, build.dockerfile)?,
    };
    let digest = digest(&context, &build.inputs).map_err(|source| super::ContextError::Io {
        path: build.root.to_path_buf(),
        source,
    })?;
    if let (Some(token), Some(others), Some(path)) = (token, others, remembered_path) {
        // After `digest` wrote its cache, so a remembered digest's entries can be found.
        // One line per set of other inputs (builds sharing a context), all of this token.
        let prefix = format!("{} {} ", token.instance, token.generation);
        let mut text: String = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .filter(|line| line.split_whitespace().nth(2) != Some(others.as_str()))
            .take(7)
            .map(|line| format!("{line}\n"))
            .collect();
        text.push_str(&format!("{prefix}{others} {}\n", digest.digest));
        let _ = write_atomically(&path, text.as_bytes());
    }
    Ok(digest)
}

/// The digest remembered with `token` and these other inputs, if it was.
fn remembered_digest(path: &Path, token: super::monitor::Token, others: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let instance: u64 = words.next()?.parse().ok()?;
        let generation: u64 = words.next()?.parse().ok()?;
        let (key, digest) = (words.next()?, words.next()?);
        (instance == token.instance
            && generation == token.generation
            && key == others
            && digest.starts_with("sha256:")
            && digest.len() == 71)
            .then(|| digest.to_string())
    })
}

/// The hash of a build's inputs outside the watched context. `None` when the Dockerfile
/// outside the context cannot be read (the walk reports it).
fn outside_inputs_key(build: &BuildInputs<'_>) -> Option<String> {
    let mut hasher = Sha256::new();
    let mut args: Vec<(&String, &String)> = build.inputs.args.iter().collect();
    args.sort();
    for (key, value) in args {
        hasher.update(b"(arg)\0");
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    if let Some(target) = build.inputs.target {
        hasher.update(b"(target)\0");
        hasher.update(target.as_bytes());
        hasher.update([0]);
    }
    match build.dockerfile_inline {
        Some(text) => {
            hasher.update(b"(inline)\0");
            hasher.update(text.as_bytes());
        }
        None => {
            let name = build
                .dockerfile
                .filter(|d| !d.is_empty())
                .unwrap_or("Dockerfile");
            hasher.update(b"(dockerfile)\0");
            hasher.update(name.as_bytes());
            hasher.update([0]);
            let path = build.root.join(name);
            let inside = path.strip_prefix(build.root).is_ok_and(|rel| {
                let rel = super::clean(&rel.to_string_lossy());
                rel != ".." && !rel.starts_with("../")
            });
            if !inside {
                hasher.update(fs::read(&path).ok()?);
            }
        }
    }
    Some(hex(&hasher.finalize()))
}

/// The digest of `context` and `inputs`, with the file hashes cached (see the module docs).
pub fn digest(context: &BuildContext, inputs: &Inputs<'_>) -> io::Result<ContextDigest> {
    digest_cached_in(cache_dir().as_deref(), context, inputs)
}

fn digest_cached_in(
    cache_dir: Option<&Path>,
    context: &BuildContext,
    inputs: &Inputs<'_>,
) -> io::Result<ContextDigest> {
    let cache_key = key(&context.root);
    let listing = listing_key(context, inputs);
    let quick_path = cache_dir.map(|dir| dir.join(format!("{cache_key}.quick")));
    if let Some(digest) = quick_path
        .as_deref()
        .and_then(|p| quick_digest(p, &listing))
    {
        return Ok(ContextDigest {
            digest,
            entries: None,
        });
    }
    let cache_path = cache_dir.map(|dir| dir.join(format!("{cache_key}.tsv")));
    let mut cache = cache_path.as_deref().map(Cache::load).unwrap_or_default();
    let mut entries = BTreeMap::new();
    let mut fresh = Cache::default();
    let mut hashed = 0usize;
    for entry in &context.entries {
        let name = entry.name.to_string_lossy().replace('\\', "/");
        let meta = &entry.meta;
        let mode = meta.mode() & 0o7777;
        let own = match &entry.kind {
            EntryKind::Dir => format!("d {mode:o}"),
            EntryKind::Symlink(target) => format!("l {}", target.to_string_lossy()),
            EntryKind::File => {
                let stamp = Stamp::of(meta);
                let hash = match cache.files.remove(&name) {
                    Some((seen, hash)) if seen == stamp => hash,
                    _ => {
                        hashed += 1;
                        hash_file(&entry.path)?
                    }
                };
                fresh.files.insert(name.clone(), (stamp, hash.clone()));
                format!("f {mode:o} {hash}")
            }
        };
        entries.insert(name, own);
    }
    if let Some((name, text)) = &context.generated_dockerfile {
        entries.insert(format!("(Dockerfile {name})"), hex(&Sha256::digest(text)));
    }
    let mut args: Vec<(&String, &String)> = inputs.args.iter().collect();
    args.sort();
    for (key, value) in args {
        entries.insert(format!("(build arg {key})"), hex(&Sha256::digest(value)));
    }
    if let Some(target) = inputs.target {
        entries.insert("(target)".to_string(), target.to_string());
    }
    entries.insert("(dockerfile)".to_string(), context.dockerfile.clone());
    let mut all = Sha256::new();
    for (name, own) in &entries {
        all.update(name.as_bytes());
        all.update([0]);
        all.update(own.as_bytes());
        all.update([0]);
    }
    let result = ContextDigest {
        digest: format!("sha256:{}", hex(&all.finalize())),
        entries: Some(entries),
    };
    // Written only when it learnt something: a file hashed, a file gone, a new digest.
    let learnt = hashed > 0
        || !cache.files.is_empty()
        || cache.manifests.first().map(|(d, _)| d) != Some(&result.digest);
    if let (Some(path), true) = (&cache_path, learnt) {
        fresh.manifests = cache.manifests;
        fresh.remember(&result);
        // Best effort: a cache that cannot be written is recomputed next time.
        let _ = fresh.save(path);
    }
    if let Some(path) = &quick_path {
        // After the cache file, so a listing key never names a digest it lacks the entries of.
        let _ = write_atomically(path, format!("{listing}\n{}\n", result.digest).as_bytes());
    }
    Ok(result)
}

/// The hash of what the walk saw of every entry (name, kind, mode, link target, file
/// stamp) and of the other inputs: equal listing keys mean equal digests (module docs).
fn listing_key(context: &BuildContext, inputs: &Inputs<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(256);
    for entry in &context.entries {
        use std::os::unix::ffi::OsStrExt;
        let meta = &entry.meta;
        line.clear();
        line.extend_from_slice(entry.name.as_os_str().as_bytes());
        line.push(0);
        match &entry.kind {
            EntryKind::Dir => line.push(b'd'),
            EntryKind::Symlink(target) => {
                line.push(b'l');
                line.extend_from_slice(target.as_os_str().as_bytes());
            }
            EntryKind::File => {
                let stamp = Stamp::of(meta);
                line.push(b'f');
                line.extend_from_slice(&stamp.size.to_le_bytes());
                line.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
                line.extend_from_slice(&stamp.ino.to_le_bytes());
            }
        }
        line.extend_from_slice(&(meta.mode() & 0o7777).to_le_bytes());
        line.push(0);
        hasher.update(&line);
    }
    if let Some((name, text)) = &context.generated_dockerfile {
        hasher.update(b"(generated)\0");
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(text));
    }
    let mut args: Vec<(&String, &String)> = inputs.args.iter().collect();
    args.sort();
    for (key, value) in args {
        hasher.update(b"(arg)\0");
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(value));
    }
    if let Some(target) = inputs.target {
        hasher.update(b"(target)\0");
        hasher.update(target.as_bytes());
        hasher.update([0]);
    }
    hasher.update(b"(dockerfile)\0");
    hasher.update(context.dockerfile.as_bytes());
    hex(&hasher.finalize())
}

/// The digest the quick file holds for this listing key, if it holds one for it.
fn quick_digest(path: &Path, listing: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let (key, digest) = (lines.next()?, lines.next()?);
    (key == listing && digest.starts_with("sha256:") && digest.len() == 71)
        .then(|| digest.to_string())
}

/// Written to a temporary file and renamed, so a reader never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&temp)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&temp, path)
}

/// The first entry (in name order) that differs between the inputs of an earlier digest of
/// the same context, when it is still remembered, and `now`: `api/app.py`, or `build arg
/// VERSION`. `None` when the earlier inputs are not known here.
pub fn changed_entry(context_root: &Path, earlier: &str, now: &ContextDigest) -> Option<String> {
    changed_entry_in(&cache_dir()?, context_root, earlier, now)
}

fn changed_entry_in(
    cache_dir: &Path,
    context_root: &Path,
    earlier: &str,
    now: &ContextDigest,
) -> Option<String> {
    let path = cache_dir.join(format!("{}.tsv", key(context_root)));
    let cache = Cache::load(&path);
    let remembered = |digest: &str| {
        cache
            .manifests
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, entries)| entries)
    };
    let before = remembered(earlier)?;
    let now_entries = match &now.entries {
        Some(entries) => entries,
        None => remembered(&now.digest)?,
    };
    let names: std::collections::BTreeSet<&String> =
        before.keys().chain(now_entries.keys()).collect();
    let changed = names
        .into_iter()
        .find(|name| before.get(*name) != now_entries.get(*name))
        .map(|name| {
            name.trim_start_matches('(')
                .trim_end_matches(')')
                .to_string()
        });
    changed
}

pub(crate) fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("stackctl").join("contexts"))
}

/// The cache file's name for a context directory.
pub(crate) fn key(root: &Path) -> String {
    hex(&Sha256::digest(root.to_string_lossy().as_bytes()))[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// What identifies a file's contents without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
        }
    }
}

/// The cache of one context: file hashes by name, and the last few digests' entries.
#[derive(Debug, Default)]
struct Cache {
    files: HashMap<String, (Stamp, String)>,
    manifests: Vec<(String, BTreeMap<String, String>)>,
}

impl Cache {
    /// Lines `F size mtime ino hash name` and `M digest`, each `M` followed by its entries as
    /// `E name\town`. Anything unreadable is skipped.
    fn load(path: &Path) -> Cache {
        let mut cache = Cache::default();
        let Ok(text) = fs::read_to_string(path) else {
            return cache;
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("F ") {
                let mut parts = rest.splitn(5, ' ');
                let (Some(size), Some(mtime), Some(ino), Some(hash), Some(name)) = (
                    parts.next().and_then(|s| s.parse().ok()),
                    parts.next().and_then(|s| s.parse().ok()),
                    parts.next().and_then(|s| s.parse().ok()),
                    parts.next(),
                    parts.next(),
                ) else {
                    continue;
                };
                let stamp = Stamp {
                    size,
                    mtime_ns: mtime,
                    ino,
                };
                cache
                    .files
                    .insert(name.to_string(), (stamp, hash.to_string()));
            } else if let Some(digest) = line.strip_prefix("M ") {
                cache.manifests.push((digest.to_string(), BTreeMap::new()));
            } else if let Some(rest) = line.strip_prefix("E ") {
                if let (Some((name, own)), Some(last)) =
                    (rest.split_once('\t'), cache.manifests.last_mut())
                {
                    last.1.insert(name.to_string(), own.to_string());
                }
            }
        }
        cache
    }

    fn remember(&mut self, digest: &ContextDigest) {
        let Some(entries) = &digest.entries else {
            return;
        };
        self.manifests.retain(|(d, _)| *d != digest.digest);
        self.manifests
            .insert(0, (digest.digest.clone(), entries.clone()));
        self.manifests.truncate(KEPT_MANIFESTS);
    }

    /// Written to a temporary file and renamed, so a reader never sees half of it.
    fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        for (name, (stamp, hash)) in &self.files {
            if name.contains('\n') {
                continue;
            }
            text.push_str(&format!(
                "F {} {} {} {hash} {name}\n",
                stamp.size, stamp.mtime_ns, stamp.ino
            ));
        }
        for (digest, entries) in &self.manifests {
            text.push_str(&format!("M {digest}\n"));
            for (name, own) in entries {
                if !name.contains(['\n', '\t']) {
                    text.push_str(&format!("E {name}\t{own}\n"));
                }
            }
        }
        write_atomically(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::scan;

    fn digest_of(cache: &Path, dir: &Path, args: &HashMap<String, String>) -> ContextDigest {
        let context = scan(dir, None).unwrap();
        digest_cached_in(Some(cache), &context, &Inputs { args, target: None }).unwrap()
    }

    #[test]
    fn the_digest_follows_contents_modes_ignored_files_and_args_and_names_the_change() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /app\n").unwrap();
        fs::write(root.join(".dockerignore"), "*.log\n").unwrap();
        fs::create_dir(root.join("api")).unwrap();
        fs::write(root.join("api/app.py"), "print(1)\n").unwrap();
        let none = HashMap::new();
        let first = digest_of(cache, root, &none);
        assert!(first.entries.is_some(), "the first digest is computed");
        let again = digest_of(cache, root, &none);
        assert_eq!(again.digest, first.digest, "stable");
        assert!(
            again.entries.is_none(),
            "an unchanged listing takes the quick path"
        );

        // An ignored file changes nothing.
        fs::write(root.join("debug.log"), "noise").unwrap();
        assert_eq!(digest_of(cache, root, &none).digest, first.digest);

        // A changed file is noticed even with the same size and a restored mtime: the
        // cache is keyed by inode too, and a rewrite through a new file changes it.
        fs::write(root.join("api/app.new"), "print(2)\n").unwrap();
        fs::rename(root.join("api/app.new"), root.join("api/app.py")).unwrap();
        let second = digest_of(cache, root, &none);
        assert_ne!(second.digest, first.digest);
        assert_eq!(
            changed_entry_in(cache, root, &first.digest, &second).as_deref(),
            Some("api/app.py")
        );

        // From the quick path too, the change is named (by the remembered entries).
        let quick = digest_of(cache, root, &none);
        assert!(quick.entries.is_none());
        assert_eq!(quick.digest, second.digest);
        assert_eq!(
            changed_entry_in(cache, root, &first.digest, &quick).as_deref(),
            Some("api/app.py")
        );

        // A build arg is an input too.
        let args = HashMap::from([("VERSION".to_string(), "2".to_string())]);
        let third = digest_of(cache, root, &args);
        assert_ne!(third.digest, second.digest);
        assert_eq!(
            changed_entry_in(cache, root, &second.digest, &third).as_deref(),
            Some("build arg VERSION")
        );

        // A mode change is an input (COPY keeps modes).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("api/app.py"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(digest_of(cache, root, &args).digest, third.digest);
    }
}
