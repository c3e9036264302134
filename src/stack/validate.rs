//! Validation of an interpolated stack tree: unknown and unsupported keys, wrong types,
//! references to nothing, dependency cycles and bad names. Every problem is reported, each at
//! its file, line and column; nothing is silently dropped.
//!
//! Keys are checked on the raw tree, at every place of the Compose specification (the key
//! table is [`keys`]), so a typo is located at the key and offered a "did you mean"; then
//! each entry is deserialized into the model key by key (so every wrong type is
//! reported, not only the first), then references are resolved across the whole stack.

use std::collections::{BTreeSet, HashMap, HashSet};

use indexmap::IndexMap;

use super::interpolate::key_text;
use super::load::{self, Mapping, Marks, Pos, Value};
use super::model::{
    ContainerTask, DataContainer, MountKind, Service, Stack, StepsTask, Task, VolumeMount,
    BUILTIN_STEPS,
};
use super::{Location, StackError};

pub mod keys;
/// Keys of the top-level `engine:`.
const ENGINE_KEYS: &[&str] = &["host", "mode"];

const DATA_CONTAINER_KEYS: &[&str] = &["image", "build", "volumes", "command", "labels"];
const CONTAINER_TASK_KEYS: &[&str] = &[
    "service",
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "volumes",
    "volumes_from",
    "stdin",
    "working_dir",
    "user",
];

/// What validation needs besides the tree.
pub struct Context<'a> {
    pub marks: &'a Marks,
    /// The stack file as shown to the user (relative to the project directory).
    pub file: &'a str,
    /// Paths whose interpolation failed (already reported): problems inside them are skipped.
    pub failed: &'a [Vec<String>],
    /// Selected profiles.
    pub profiles: &'a [String],
}

/// Collects problems with their positions.
pub struct Report<'a> {
    ctx: &'a Context<'a>,
    pub errors: Vec<StackError>,
    /// The stack is deployed to a Swarm (`engine: { mode: swarm }`): Swarm's keys are
    /// supported, and what cannot exist there is refused.
    swarm: bool,
}

impl<'a> Report<'a> {
    pub fn new(ctx: &'a Context<'a>) -> Self {
        Report {
            ctx,
            errors: Vec::new(),
            swarm: false,
        }
    }

    fn location(&self, pos: Option<Pos>) -> Option<Location> {
        pos.map(|p| self.ctx.marks.location(p, self.ctx.file))
    }

    /// A problem about a key (located where the key is written).
    fn at_key(&mut self, path: &[String], message: String, hint: Option<String>) {
        let location = self.location(self.ctx.marks.key(path));
        self.errors.push(StackError {
            location,
            message,
            hint,
        });
    }

    /// A problem about a value (located where the value starts).
    fn at_value(&mut self, path: &[String], message: String, hint: Option<String>) {
        if self.skipped(path) {
            return;
        }
        let location = self.location(self.ctx.marks.value(path));
        self.errors.push(StackError {
            location,
            message,
            hint,
        });
    }

    /// Inside (or around) a value whose interpolation already failed.
    fn skipped(&self, path: &[String]) -> bool {
        self.ctx.failed.iter().any(|failed| {
            let n = failed.len().min(path.len());
            failed[..n] == path[..n]
        })
    }
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn child(base: &[String], key: &str) -> Vec<String> {
    let mut p = base.to_vec();
    p.push(key.to_string());
    p
}

/// The closest candidate to `word`, if close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| {
            *distance <= 2.max(word.len().min(c.len()) / 3) && *distance < word.len().max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Check the keys of one map; returns the map without extension, unknown and unsupported
/// keys (those are reported), ready for typed deserializing. `place`: the Compose place
/// (see [`keys`]) the map is at, for the reason a key is not supported yet.
#[allow(clippy::too_many_arguments)]
fn check_keys(
    report: &mut Report,
    map: &Mapping,
    base: &[String],
    known: &[&str],
    unsupported: &[&str],
    allow_extensions: bool,
    what: &str,
    place: Option<&str>,
) -> Mapping {
    let map = map.clone();
    check_keys_owned(
        report,
        map,
        base,
        known,
        unsupported,
        allow_extensions,
        what,
        place,
    )
}

/// [`check_keys`] of a map the caller gives away (nothing is copied).
#[allow(clippy::too_many_arguments)]
fn check_keys_owned(
    report: &mut Report,
    map: Mapping,
    base: &[String],
    known: &[&str],
    unsupported: &[&str],
    allow_extensions: bool,
    what: &str,
    place: Option<&str>,
) -> Mapping {
    let mut kept = Mapping::with_capacity(map.len());
    for (key, value) in map {
        let name = key_text(&key);
        if allow_extensions && name.starts_with("x-") {
            continue;
        }
        let swarm_key = report.swarm && place.is_some_and(|p| keys::swarm_supported(p, &name));
        if known.contains(&name.as_str()) || swarm_key {
            kept.insert(key, value);
            continue;
        }
        let at = child(base, &name);
        if unsupported.contains(&name.as_str()) {
            let hint = match place {
                Some(place) => keys::reason(place, &name),
                None => "remove the key, or run this stack with Docker Compose".to_string(),
            };
            report.at_key(
                &at,
                format!("`{name}` is not supported yet (in {what})"),
                Some(hint),
            );
        } else {
            let hint = did_you_mean(&name, known.iter().chain(unsupported).copied());
            report.at_key(&at, format!("unknown key `{name}` in {what}"), hint);
        }
    }
    kept
}

/// Check a map at a Compose place and everything under it (every nested place of
/// [`keys::PLACES`]); returns it without the keys reported.
fn prune(report: &mut Report, map: Mapping, base: &[String], path: &str, what: &str) -> Mapping {
    let Some(place) = keys::place_at(path) else {
        return map;
    };
    let kept = check_keys_owned(
        report,
        map,
        base,
        place.supported,
        place.unsupported,
        place.extensions,
        what,
        Some(path),
    );
    let owner = owner_of(base, what);
    kept.into_iter()
        .map(|(key, value)| {
            let at = child(base, &key);
            let sub = keys::child_path(path, &key);
            let value = prune_value(report, value, &at, &sub, &owner);
            (key, value)
        })
        .collect()
}

/// The entry a nested place belongs to (`service `api``), from a nested `what`.
fn owner_of(base: &[String], what: &str) -> String {
    if base.len() <= 2 {
        return what.to_string();
    }
    match what.split_once(" of ") {
        Some((_, owner)) => owner.to_string(),
        None => what.to_string(),
    }
}

/// A value under a Compose place: a map at a place, a map of named entries (`*`) or a
/// list of items (`[]`) is checked; anything else is left to the typed check.
fn prune_value(report: &mut Report, value: Value, at: &[String], path: &str, owner: &str) -> Value {
    match value {
        Value::Mapping(map) if keys::place_at(path).is_some() => {
            let what = nested_what(at, owner);
            Value::Mapping(prune(report, map, at, path, &what))
        }
        Value::Mapping(map) if keys::place_at(&format!("{path}.*")).is_some() => {
            let entries = format!("{path}.*");
            Value::Mapping(
                map.into_iter()
                    .map(|(key, entry)| {
                        let entry_at = child(at, &key);
                        let entry = prune_value(report, entry, &entry_at, &entries, owner);
                        (key, entry)
                    })
                    .collect(),
            )
        }
        Value::Sequence(items) if keys::place_at(&format!("{path}[]")).is_some() => {
            let item_path = format!("{path}[]");
            Value::Sequence(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        let item_at = child(at, &index.to_string());
                        prune_value(report, item, &item_at, &item_path, owner)
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

/// How a nested map is named in messages: "`build` of service `api`", "dependency `db` of
/// service `api`".
fn nested_what(at: &[String], owner: &str) -> String {
    let inner = &at[2.min(at.len())..];
    match inner {
        [section, name] if section == "depends_on" => format!("dependency `{name}` of {owner}"),
        [section, name] if section == "networks" => format!("network `{name}` of {owner}"),
        _ => format!("`{}` of {owner}", inner.join(".")),
    }
}

/// Deserialize `map` key by key into `T`, reporting every key whose value has the wrong
/// type (and, inside lists and maps, every wrong item); then the whole map. Returns the
/// typed value when everything was fine.
fn typed<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    map: &Mapping,
    base: &[String],
    what: &str,
) -> Option<T> {
    // The whole map first: a valid one (the usual case) is read once. A key that is valid
    // in the whole map is valid alone, so probing only after a failure reports the same.
    let whole = load::from_value::<T>(Value::Mapping(map.clone()));
    if whole.is_ok() {
        return whole.ok();
    }
    let mut ok = true;
    for (key, value) in map {
        ok &= probe::<T>(report, base, key, value, what);
    }
    if !ok {
        return None;
    }
    match whole {
        Ok(value) => Some(value),
        Err((inner, message)) => {
            let mut at = base.to_vec();
            at.extend(inner);
            report.at_value(&at, format!("{what}: {message}"), None);
            None
        }
    }
}

/// Check one key alone; when it fails and holds several items (a list or a map), check each
/// item alone so that every wrong one is reported, not only the first.
fn probe<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    base: &[String],
    key: &str,
    value: &Value,
    what: &str,
) -> bool {
    let single = |inner: Value| {
        let mut map = Mapping::new();
        map.insert(key.to_string(), inner);
        load::from_value::<T>(Value::Mapping(map))
    };
    let Err(first) = single(value.clone()) else {
        return true;
    };
    let mut found = Vec::new();
    match value {
        Value::Sequence(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                if let Err((mut inner, message)) = single(Value::Sequence(vec![item.clone()])) {
                    // The item was checked alone, at index 0: put its real index back.
                    if inner.len() > 1 && inner[1] == "0" {
                        inner[1] = index.to_string();
                    } else {
                        inner.truncate(1);
                        inner.push(index.to_string());
                    }
                    found.push((inner, message));
                }
            }
        }
        Value::Mapping(entries) if !entries.is_empty() => {
            for (sub, item) in entries {
                let mut one = Mapping::new();
                one.insert(sub.clone(), item.clone());
                if let Err((mut inner, mut message)) = single(Value::Mapping(one)) {
                    if inner.len() < 2 {
                        inner.truncate(1);
                        inner.push(key_text(sub));
                        // The entry is in the path now; drop the deserializer's own prefix.
                        let prefix = format!("`{}`: ", key_text(sub));
                        if let Some(rest) = message.strip_prefix(&prefix) {
                            message = rest.to_string();
                        }
                    }
                    found.push((inner, message));
                }
            }
        }
        _ => {}
    }
    if found.is_empty() {
        found.push(first);
    }
    for (inner, message) in found {
        let mut at = base.to_vec();
        at.extend(inner.iter().cloned());
        let field = if inner.is_empty() {
            key_text(key)
        } else {
            inner.join(".")
        };
        report.at_value(&at, format!("{what}, `{field}`: {message}"), None);
    }
    false
}

/// The longest name of a service, task, data container, volume or network (engine object
/// names are built from it with the stage and the project).
pub const MAX_NAME_LEN: usize = 63;

/// A valid name for a service, task, data container, volume or network.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The entries of a top-level `networks:` or `volumes:` section: each a map (or null) with
/// known keys, deserialized into its model type; every problem reported.
fn top_level_entries<T: serde::de::DeserializeOwned>(
    report: &mut Report,
    root: &Mapping,
    key: &str,
    noun: &str,
) -> IndexMap<String, T> {
    let mut entries = IndexMap::new();
    for (name, value) in section(report, root, key) {
        let base = path(&[key, &name]);
        let what = format!("{noun} `{name}`");
        let Some(map) = entry_map(report, value, &base, &what, true) else {
            continue;
        };
        let kept = prune(report, map, &base, &format!("{key}.*"), &what);
        if let Some(entry) = typed::<T>(report, &kept, &base, &what) {
            entries.insert(name, entry);
        }
    }
    entries
}

/// A section (`services:` …) as a map of entries; reports a wrong shape.
fn section<'v>(report: &mut Report, root: &'v Mapping, key: &str) -> Vec<(String, &'v Value)> {
    match root.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(map)) => {
            let mut entries = Vec::new();
            for (name, value) in map {
                let name = key_text(name);
                if !valid_name(&name) {
                    report.at_key(
                        &path(&[key, &name]),
                        format!("`{name}` is not a valid name (in `{key}`)"),
                        Some(if name.len() > MAX_NAME_LEN {
                            format!("names are at most {MAX_NAME_LEN} characters long (this one has {})", name.len())
                        } else {
                            "names start with a letter or digit and contain only letters, digits, `_`, `.` and `-`".to_string()
                        }),
                    );
                }
                entries.push((name, value));
            }
            entries
        }
        Some(other) => {
            report.at_value(
                &path(&[key]),
                format!(
                    "`{key}` must be a map of names, found {}",
                    super::model::describe(other)
                ),
                None,
            );
            Vec::new()
        }
    }
}

/// Names referenced by a list (`[a, b]`) or the keys of a map (`{a: …}`), with their paths.
fn names_in(value: Option<&Value>, base: &[String]) -> Vec<(String, Vec<String>)> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                item.as_str()
                    .map(|s| (s.to_string(), child(base, &i.to_string())))
            })
            .collect(),
        Some(Value::Mapping(map)) => map
            .keys()
            .map(|k| (key_text(k), child(base, &key_text(k))))
            .collect(),
        _ => Vec::new(),
    }
}

/// Check the whole tree; the typed stack (every service, whatever its profiles) when valid.
pub fn check(root: &Value, report: &mut Report) -> Option<Stack> {
    let root = root_map(root, report)?;
    let before = report.errors.len();
    report.swarm = root
        .get("engine")
        .and_then(|e| e.get("mode"))
        .and_then(Value::as_str)
        == Some("swarm");
    let top = keys::place_at("").expect("the top place");
    check_keys(
        report,
        root,
        &[],
        top.supported,
        top.unsupported,
        top.extensions,
        "the stack file",
        Some(""),
    );
    let mut stack = Stack {
        name: check_name(report, root),
        engine: check_engine(report, root),
        ..Stack::default()
    };
    for (name, value) in section(report, root, "services") {
        if let Some(service) = check_service(report, &name, value) {
            stack.services.insert(name, service);
        }
    }
    stack.networks = top_level_entries(report, root, "networks", "network");
    stack.volumes = top_level_entries(report, root, "volumes", "volume");
    stack.secrets = top_level_entries(report, root, "secrets", "secret");
    stack.configs = top_level_entries(report, root, "configs", "config");
    for (name, value) in section(report, root, "data_containers") {
        if let Some(data) = check_data_container(report, &name, value) {
            stack.data_containers.insert(name, data);
        }
    }
    for (name, value) in section(report, root, "tasks") {
        if let Some(task) = check_task(report, &name, value) {
            stack.tasks.insert(name, task);
        }
    }
    check_references(root, report);
    if report.swarm {
        check_swarm(root, report);
    } else {
        check_single_engine(root, report);
    }
    (report.errors.len() == before).then_some(stack)
}

/// The top of a stack file must be a map (an empty file gets its own message).
fn root_map<'v>(root: &'v Value, report: &mut Report) -> Option<&'v Mapping> {
    match root {
        Value::Mapping(map) => Some(map),
        Value::Null => {
            report.errors.push(StackError {
                location: None,
                message: format!("the stack file `{}` is empty", report.ctx.file),
                hint: Some("declare at least `services:`".into()),
            });
            None
        }
        other => {
            report.at_value(
                &[],
                format!(
                    "a stack file is a map with `services:`, found {}",
                    super::model::describe(other)
                ),
                None,
            );
            None
        }
    }
}

fn check_name(report: &mut Report, root: &Mapping) -> Option<String> {
    match root.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => {
            report.at_value(
                &path(&["name"]),
                format!(
                    "`name` must be a string, found {}",
                    super::model::describe(other)
                ),
                None,
            );
            None
        }
    }
}

/// `engine: { host: URL }`: where the stage's engine is (`ssh://`, `tcp://`, `unix://`).
fn check_engine(report: &mut Report, root: &Mapping) -> Option<super::model::EngineDef> {
    let map = match root.get("engine") {
        None | Some(Value::Null) => return None,
        Some(Value::Mapping(map)) => map,
        Some(other) => {
            report.at_value(
                &path(&["engine"]),
                format!(
                    "`engine` must be a map (`engine: {{ host: ssh://USER@HOST }}`), found {}",
                    super::model::describe(other)
                ),
                None,
            );
            return None;
        }
    };
    check_keys(
        report,
        map,
        &path(&["engine"]),
        ENGINE_KEYS,
        &[],
        true,
        "`engine`",
        None,
    );
    let mode = match map.get("mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) if mode == "single" || mode == "swarm" => Some(mode.clone()),
        Some(other) => {
            report.at_value(
                &path(&["engine", "mode"]),
                format!(
                    "`engine.mode` is `single` or `swarm`, found {}",
                    super::model::describe(other)
                ),
                Some("`swarm` deploys the stack as Swarm services through a manager; leave it out for one engine".into()),
            );
            return None;
        }
    };
    let host = match map.get("host") {
        None | Some(Value::Null) => None,
        Some(Value::String(host)) => {
            const SCHEMES: &[&str] = &["ssh://", "tcp://", "unix://", "http://", "https://"];
            if !SCHEMES.iter().any(|s| host.starts_with(s)) {
                report.at_value(
                    &path(&["engine", "host"]),
                    format!("`engine.host` `{host}` has no known scheme"),
                    Some(
                        "write ssh://USER@HOST[:PORT], tcp://HOST:PORT or unix:///PATH".to_string(),
                    ),
                );
                return None;
            }
            Some(host.clone())
        }
        Some(other) => {
            report.at_value(
                &path(&["engine", "host"]),
                format!(
                    "`engine.host` must be a string, found {}",
                    super::model::describe(other)
                ),
                None,
            );
            return None;
        }
    };
    Some(super::model::EngineDef { host, mode })
}

fn check_service(report: &mut Report, name: &str, value: &Value) -> Option<Service> {
    let base = path(&["services", name]);
    let what = format!("service `{name}`");
    let mut kept = check_image_entry(
        report,
        value,
        (&base, &what),
        None,
        "add `image: NAME` to run an image, or `build: DIR` to build one",
    )?;
    check_pull_policy(report, &mut kept, &base, &what);
    check_hooks(report, &mut kept, &base, &what);
    check_develop(report, &mut kept, &base, &what);
    typed::<Service>(report, &kept, &base, &what)
}

fn check_data_container(report: &mut Report, name: &str, value: &Value) -> Option<DataContainer> {
    let base = path(&["data_containers", name]);
    let what = format!("data container `{name}`");
    let kept = check_image_entry(
        report,
        value,
        (&base, &what),
        Some(DATA_CONTAINER_KEYS),
        "add `image: NAME` or `build: DIR`",
    )?;
    typed::<DataContainer>(report, &kept, &base, &what)
}

/// A service (`known` is `None`: the Compose keys) or data container (its own `known`
/// keys), at `base`, called `what`: a map that has `image` or `build`. Returns the known
/// keys, ready for typed deserializing.
fn check_image_entry(
    report: &mut Report,
    value: &Value,
    (base, what): (&[String], &str),
    known: Option<&[&str]>,
    hint: &str,
) -> Option<Mapping> {
    let map = entry_map(report, value, base, what, false)?;
    let kept = match known {
        None => prune(report, map, base, "services.*", what),
        Some(known) => {
            let mut kept = check_keys(report, &map, base, known, &[], true, what, None);
            check_nested(report, &mut kept, base, what);
            kept
        }
    };
    if !kept.contains_key("image") && !kept.contains_key("build") {
        report.at_key(
            base,
            format!("{what} has neither `image` nor `build`"),
            Some(hint.into()),
        );
    }
    Some(kept)
}

/// A task has `steps` or runs one container; which one decides the keys it may have.
fn check_task(report: &mut Report, name: &str, value: &Value) -> Option<Task> {
    let base = path(&["tasks", name]);
    let what = format!("task `{name}`");
    let map = entry_map(report, value, &base, &what, false)?;
    if map.contains_key("steps") {
        check_steps_task(report, &map, &base, &what).map(Task::Steps)
    } else {
        check_container_task(report, &map, &base, &what).map(Task::Container)
    }
}

/// Only `steps` (and `x-` extensions) beside `steps`; a container key there gets a hint to
/// split the task.
fn check_steps_task(
    report: &mut Report,
    map: &Mapping,
    base: &[String],
    what: &str,
) -> Option<StepsTask> {
    let others: Vec<String> = map
        .keys()
        .filter(|k| *k != "steps" && !k.starts_with("x-"))
        .cloned()
        .collect();
    let mut kept = Mapping::new();
    for (key, value) in map {
        if key_text(key) == "steps" {
            kept.insert(key.clone(), value.clone());
        }
    }
    for other in others {
        let hint = if CONTAINER_TASK_KEYS.contains(&other.as_str()) {
            Some("a task runs either one container (`service`/`image`/`build` with `command`) or a sequence of `steps`; split it into two tasks".to_string())
        } else {
            did_you_mean(&other, ["steps"])
        };
        report.at_key(
            &child(base, &other),
            format!("unexpected key `{other}` in {what}, which has `steps`"),
            hint,
        );
    }
    typed::<StepsTask>(report, &kept, base, what)
}

fn check_container_task(
    report: &mut Report,
    map: &Mapping,
    base: &[String],
    what: &str,
) -> Option<ContainerTask> {
    let mut kept = check_keys(
        report,
        map,
        base,
        CONTAINER_TASK_KEYS,
        &[],
        true,
        what,
        None,
    );
    check_nested(report, &mut kept, base, what);
    if !["service", "image", "build"]
        .iter()
        .any(|k| kept.contains_key(*k))
    {
        report.at_key(
            base,
            format!("{what} has none of `service`, `image`, `build` or `steps`"),
            Some("give it `service: NAME` to run in a copy of a service, `image`/`build` for its own container, or `steps: [...]`".into()),
        );
    }
    typed::<ContainerTask>(report, &kept, base, what)
}

/// `pull_policy: build` needs a `build:`. Other values are checked by type.
fn check_pull_policy(report: &mut Report, kept: &mut Mapping, base: &[String], what: &str) {
    let Some(Value::String(policy)) = kept.get("pull_policy") else {
        return;
    };
    let policy = policy.clone();
    let at = child(base, "pull_policy");
    if policy == "build" && !kept.contains_key("build") {
        report.at_value(
            &at,
            format!("{what}: `pull_policy: build` needs a `build:`"),
            None,
        );
        kept.shift_remove("pull_policy");
    }
}

/// An entry of a section as a map (null allowed for networks and volumes).
fn entry_map(
    report: &mut Report,
    value: &Value,
    base: &[String],
    what: &str,
    null_ok: bool,
) -> Option<Mapping> {
    match value {
        Value::Mapping(map) => Some(map.clone()),
        Value::Null if null_ok => Some(Mapping::new()),
        Value::Null => {
            report.at_key(
                base,
                format!("{what} is empty"),
                Some("give it at least `image:` or `build:`".into()),
            );
            None
        }
        other => {
            report.at_value(
                base,
                format!(
                    "{what} must be a map, found {}",
                    super::model::describe(other)
                ),
                None,
            );
            None
        }
    }
}

/// The Compose places inside a data container or task (`build`, long `volumes`): report
/// unknown keys and drop them so typed deserializing sees only known keys.
fn check_nested(report: &mut Report, map: &mut Mapping, base: &[String], what: &str) {
    for key in ["build", "volumes"] {
        if let Some(value) = map.get(key).cloned() {
            let at = child(base, key);
            let checked = prune_value(report, value, &at, &format!("services.*.{key}"), what);
            map.insert(key.into(), checked);
        }
    }
}

/// Under `engine: { mode: swarm }`: what cannot exist in a Swarm, refused before anything
/// changes.
fn check_swarm(root: &Mapping, report: &mut Report) {
    if root
        .get("data_containers")
        .and_then(Value::as_mapping)
        .is_some_and(|m| !m.is_empty())
    {
        report.at_key(
            &path(&["data_containers"]),
            "data containers cannot exist in a Swarm: there is no container to keep and no node to keep it on".into(),
            Some("give the services a named volume instead (`volumes: [NAME:/PATH]`)".into()),
        );
    }
    let refused: &[(&str, &str, &str)] = &[
        (
            "volumes_from",
            "a Swarm task cannot mount another container's volumes",
            "mount a named volume instead (`volumes: [NAME:/PATH]`)",
        ),
        (
            "network_mode",
            "a Swarm service joins the stage's overlay networks, it shares no other container's network",
            "remove `network_mode`; the service reaches the others by name on the stage's network",
        ),
        (
            "container_name",
            "Swarm names each task's container itself",
            "remove `container_name`; the service is `{stage}-{project}--{service}`",
        ),
        (
            "links",
            "a Swarm service has no links",
            "remove `links`; services reach each other by name on the stage's network",
        ),
        (
            "pre_start",
            "lifecycle hooks run around one container, and Swarm starts the tasks itself",
            "run the step as a task (`stackctl exec TASK`) or a `replicated-job` service",
        ),
        (
            "post_start",
            "lifecycle hooks run around one container, and Swarm starts the tasks itself",
            "remove the hook",
        ),
        (
            "pre_stop",
            "lifecycle hooks run around one container, and Swarm stops the tasks itself",
            "remove the hook",
        ),
    ];
    for (name, service) in raw_entries(root, "services") {
        let base = path(&["services", name]);
        for (key, why, hint) in refused {
            if service.contains_key(*key) {
                report.at_key(
                    &child(&base, key),
                    format!("service `{name}`: `{key}` cannot be used in a Swarm: {why}"),
                    Some((*hint).to_string()),
                );
            }
        }
        match service.get("image").and_then(Value::as_str) {
            Some(image) if crate::registry::registry_of(image).is_none() => report.at_value(
                &child(&base, "image"),
                format!("service `{name}`: image `{image}` names no registry, and every node of the Swarm must pull it"),
                Some("write the registry in the name: `registry.example.com/NAME[:TAG]`".into()),
            ),
            None if service.contains_key("build") => report.at_key(
                &child(&base, "build"),
                format!("service `{name}` is built but has no `image:` to push it to, and every node of the Swarm must pull it"),
                Some("add `image: registry.example.com/NAME[:TAG]`".into()),
            ),
            _ => {}
        }
    }
    for (name, task) in raw_entries(root, "tasks") {
        if task.contains_key("volumes_from") {
            report.at_key(
                &path(&["tasks", name, "volumes_from"]),
                format!("task `{name}`: `volumes_from` cannot be used in a Swarm"),
                Some("mount a named volume instead (`volumes: [NAME:/PATH]`)".into()),
            );
        }
    }
}

/// On one engine: what only a Swarm has.
fn check_single_engine(root: &Mapping, report: &mut Report) {
    for (name, service) in raw_entries(root, "services") {
        let Some(Value::Sequence(ports)) = service.get("ports") else {
            continue;
        };
        for (i, port) in ports.iter().enumerate() {
            if port.get("mode").and_then(Value::as_str) == Some("ingress") {
                report.at_value(
                    &path(&["services", name, "ports", &i.to_string(), "mode"]),
                    format!("service `{name}`: port `mode: ingress` (the Swarm routing mesh) is not supported on a single engine"),
                    Some("remove `mode` or write `mode: host`; or deploy to a Swarm with `engine: { mode: swarm }`".into()),
                );
            }
        }
    }
}

/// The entries of a section as written (whether or not they passed type checks).
fn raw_entries<'v>(root: &'v Mapping, section: &str) -> Vec<(&'v str, &'v Mapping)> {
    match root.get(section) {
        Some(Value::Mapping(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_mapping().map(|m| (k.as_str(), m)))
            .collect(),
        _ => Vec::new(),
    }
}

fn raw_names<'v>(root: &'v Mapping, section: &str) -> Vec<&'v str> {
    match root.get(section) {
        Some(Value::Mapping(map)) => map.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Edges of a dependency graph: from a name to the names it needs, each with the YAML path
/// of the entry that says so (where a cycle is reported).
type Edges<'n> = IndexMap<&'n str, Vec<(&'n str, Vec<String>)>>;

/// What the stack declares, as written, for resolving references against it.
struct Declared<'v> {
    services: Vec<&'v str>,
    data: Vec<&'v str>,
    tasks: Vec<&'v str>,
    /// Declared networks and `default`, which always exists.
    networks: Vec<&'v str>,
    volumes: Vec<&'v str>,
    secrets: Vec<&'v str>,
    configs: Vec<&'v str>,
    /// Services and data containers: what `volumes_from` may name.
    with_data: Vec<&'v str>,
    profiles_of: HashMap<&'v str, Vec<String>>,
    selected: Vec<String>,
}

impl<'v> Declared<'v> {
    fn new(root: &'v Mapping, selected: &[String]) -> Self {
        let services = raw_names(root, "services");
        let data = raw_names(root, "data_containers");
        let mut networks = raw_names(root, "networks");
        if !networks.contains(&"default") {
            networks.push("default");
        }
        Declared {
            with_data: services.iter().chain(data.iter()).copied().collect(),
            profiles_of: raw_entries(root, "services")
                .into_iter()
                .map(|(name, map)| (name, strings(map.get("profiles"))))
                .collect(),
            services,
            data,
            tasks: raw_names(root, "tasks"),
            networks,
            volumes: raw_names(root, "volumes"),
            secrets: raw_names(root, "secrets"),
            configs: raw_names(root, "configs"),
            selected: selected.to_vec(),
        }
    }

    /// Whether a service runs under the selected profiles (a name that is not a service
    /// counts as active: it is reported as missing elsewhere).
    fn active(&self, name: &str) -> bool {
        self.profiles_of
            .get(name)
            .is_none_or(|p| p.is_empty() || p.iter().any(|p| self.selected.contains(p)))
    }

    fn service(&self, name: &str) -> Option<&'v str> {
        self.services.iter().find(|s| **s == name).copied()
    }
}

/// References to nothing, cycles, names used twice. Works on the entries as written, so a
/// service with a type error still counts as declared.
fn check_references(root: &Mapping, report: &mut Report) {
    let declared = Declared::new(root, report.ctx.profiles);
    let mut service_edges: Edges = IndexMap::new();
    for (name, raw) in raw_entries(root, "services") {
        let edges = check_service_references(report, &declared, name, raw);
        check_pre_start_tasks(report, root, name, raw);
        service_edges.insert(name, edges);
    }
    for (name, raw) in raw_entries(root, "data_containers") {
        check_data_container_references(report, &declared, name, raw);
    }
    let mut task_edges: Edges = IndexMap::new();
    for (name, raw) in raw_entries(root, "tasks") {
        let edges = check_task_references(report, &declared, name, raw);
        task_edges.insert(name, edges);
    }
    report_cycles(report, &service_edges, &task_edges);
    check_container_names(root, report);
}

/// `container_name`: a valid engine name, used once in the stack, on one container.
/// Replicas: their names (`SERVICE--2` …) are no other service's, and on one engine they
/// publish no fixed host port (each would take the same one).
fn check_container_names(root: &Mapping, report: &mut Report) {
    let mut seen: HashMap<String, String> = HashMap::new();
    let services = raw_entries(root, "services");
    for (name, raw) in &services {
        let replicas = raw
            .get("scale")
            .or_else(|| raw.get("deploy").and_then(|d| d.get("replicas")))
            .and_then(|v| v.as_i64())
            .unwrap_or(1);
        if replicas <= 1 || raw.contains_key("container_name") {
            continue;
        }
        let at = match raw.get("scale") {
            Some(_) => path(&["services", name, "scale"]),
            None => path(&["services", name, "deploy", "replicas"]),
        };
        if let Some(other) = (2..=replicas)
            .map(|i| format!("{name}--{i}"))
            .find(|replica| services.iter().any(|(s, _)| s == replica))
        {
            report.at_value(
                &at,
                format!("service `{name}` runs {replicas} replicas, and its replica `{other}` would take the container name of service `{other}`"),
                Some("rename the service `{other}`: replicas are named `SERVICE--N`".replace("{other}", &other)),
            );
        }
        let fixed = raw
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|p| load::from_value::<super::model::PortMapping>(p.clone()).ok())
            .find_map(|p| p.host_port);
        // On a Swarm, each task publishes it on its own node (`mode: host`) or the routing
        // mesh does (`mode: ingress`).
        if let Some(port) = fixed.filter(|_| !report.swarm) {
            report.at_value(
                &at,
                format!("service `{name}` runs {replicas} replicas, and each would publish host port {port}"),
                Some("publish a container port without a host port (`\"8080\"`), so that each replica gets its own, or run one replica".into()),
            );
        }
    }
    for (name, raw) in services {
        let Some(Value::String(container)) = raw.get("container_name") else {
            continue;
        };
        let at = path(&["services", name, "container_name"]);
        let mut chars = container.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            report.at_value(
                &at,
                format!("service `{name}`: `{container}` is not a valid container name"),
                Some("a container name starts with a letter or digit and contains only letters, digits, `_`, `.` and `-`".into()),
            );
        } else if let Some(other) = seen.insert(container.clone(), name.to_string()) {
            report.at_value(
                &at,
                format!("services `{other}` and `{name}` both have `container_name: {container}`"),
                Some("give each service its own container name".into()),
            );
        }
        let replicas = raw
            .get("scale")
            .or_else(|| raw.get("deploy").and_then(|d| d.get("replicas")))
            .and_then(|v| v.as_i64());
        if replicas.is_some_and(|n| n > 1) {
            report.at_value(
                &at,
                format!("service `{name}` has `container_name` and more than one replica"),
                Some("a container name names one container: remove `container_name` or run one replica".into()),
            );
        }
    }
}

/// A service's settings that depend on each other: `network_mode` with `networks`,
/// `read_only` with secrets and configs (copied into the container's filesystem), the
/// deploy mode and restart condition.
fn check_service_settings(report: &mut Report, name: &str, raw: &Mapping, base: &[String]) {
    if let Some(Value::String(mode)) = raw.get("network_mode") {
        let valid = matches!(mode.as_str(), "host" | "none" | "bridge")
            || mode.strip_prefix("service:").is_some_and(|s| !s.is_empty())
            || mode
                .strip_prefix("container:")
                .is_some_and(|s| !s.is_empty());
        if !valid {
            report.at_value(
                &child(base, "network_mode"),
                format!("service `{name}`: `network_mode: {mode}` is not a network mode"),
                Some("use `host`, `none`, `bridge`, `service:NAME` or `container:NAME`".into()),
            );
        }
        if raw.contains_key("networks") {
            report.at_key(
                &child(base, "networks"),
                format!("service `{name}` has both `network_mode` and `networks`"),
                Some(
                    "a container joins networks or shares a network mode, not both: remove one"
                        .into(),
                ),
            );
        }
    }
    if let Some(Value::String(cgroup)) = raw.get("cgroup") {
        if !matches!(cgroup.as_str(), "host" | "private") {
            report.at_value(
                &child(base, "cgroup"),
                format!("service `{name}`: `cgroup: {cgroup}` is not a cgroup namespace mode"),
                Some("use `host` or `private`".into()),
            );
        }
    }
    let copies = ["secrets", "configs"].iter().find(|k| {
        raw.get(**k)
            .is_some_and(|v| v.as_sequence().is_some_and(|s| !s.is_empty()))
    });
    if let (Some(Value::Bool(true)), Some(key)) = (raw.get("read_only"), copies) {
        report.at_key(
            &child(base, "read_only"),
            format!("service `{name}` has `read_only: true` and `{key}`"),
            Some("stackctl copies secrets and configs into the container's filesystem before it starts, which a read-only one refuses; drop `read_only` or the files".into()),
        );
    }
    let deploy = raw.get("deploy").and_then(Value::as_mapping);
    if let Some(Value::String(mode)) = deploy.and_then(|d| d.get("mode")) {
        const SWARM_MODES: &[&str] = &["replicated", "global", "replicated-job", "global-job"];
        if report.swarm && !SWARM_MODES.contains(&mode.as_str()) {
            report.at_value(
                &path(&["services", name, "deploy", "mode"]),
                format!("service `{name}`: `deploy.mode: {mode}` is not a Swarm mode"),
                Some("use `replicated`, `global`, `replicated-job` or `global-job`".into()),
            );
        } else if !report.swarm && mode != "replicated" {
            report.at_value(
                &path(&["services", name, "deploy", "mode"]),
                format!("service `{name}`: `deploy.mode: {mode}` is not supported yet"),
                Some("`global` runs one container per Swarm node; on one engine only `replicated` means something (`engine: { mode: swarm }` deploys to a Swarm)".into()),
            );
        }
    }
    let condition = deploy
        .and_then(|d| d.get("restart_policy"))
        .and_then(|r| r.get("condition"));
    if let Some(Value::String(condition)) = condition {
        if !matches!(condition.as_str(), "none" | "on-failure" | "any") {
            report.at_value(
                &path(&["services", name, "deploy", "restart_policy", "condition"]),
                format!("service `{name}`: `{condition}` is not a restart condition"),
                Some("use `none`, `on-failure` or `any`".into()),
            );
        }
    }
}

/// Secrets and configs a service uses must be declared at the top level.
fn check_file_references(
    report: &mut Report,
    declared: &Declared,
    name: &str,
    raw: &Mapping,
    base: &[String],
) {
    for (key, known) in [
        ("secrets", &declared.secrets),
        ("configs", &declared.configs),
    ] {
        let Some(Value::Sequence(items)) = raw.get(key) else {
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let source = match item {
                Value::String(source) => source.as_str(),
                Value::Mapping(map) => match map.get("source") {
                    Some(Value::String(source)) => source.as_str(),
                    _ => continue,
                },
                _ => continue,
            };
            if !known.contains(&source) {
                let noun = &key[..key.len() - 1];
                let at = child(&child(base, key), &index.to_string());
                let hint = did_you_mean(source, known.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "declare it under the top-level `{key}:` with `file`, `environment`{}",
                        if key == "configs" {
                            " or `content`"
                        } else {
                            ""
                        }
                    )
                });
                report.at_value(
                    &at,
                    format!("service `{name}` uses {noun} `{source}`, which is not declared under `{key}:`"),
                    Some(hint),
                );
            }
        }
    }
}

/// A service's `depends_on`, `volumes_from`, `networks` and named volumes; returns its
/// edges in the dependency graph (`depends_on` and `volumes_from` on other services).
fn check_service_references<'v>(
    report: &mut Report,
    declared: &Declared<'v>,
    name: &str,
    raw: &Mapping,
) -> Vec<(&'v str, Vec<String>)> {
    let base = path(&["services", name]);
    let mut edges = check_depends_on(report, declared, name, raw, &base);
    check_service_settings(report, name, raw, &base);
    check_file_references(report, declared, name, raw, &base);
    edges.extend(check_shared_services(report, declared, name, raw, &base));
    edges.extend(check_service_volumes_from(
        report, declared, name, raw, &base,
    ));
    for (network, at) in names_in(raw.get("networks"), &child(&base, "networks")) {
        if !declared.networks.contains(&network.as_str()) {
            missing(report, &at, &format!("service `{name}` joins network `{network}`, which is not declared under `networks:`"), &network, &declared.networks);
        }
    }
    named_volumes(
        report,
        raw.get("volumes"),
        &child(&base, "volumes"),
        &format!("service `{name}`"),
        &declared.volumes,
    );
    edges
}

fn check_depends_on<'v>(
    report: &mut Report,
    declared: &Declared<'v>,
    name: &str,
    raw: &Mapping,
    base: &[String],
) -> Vec<(&'v str, Vec<String>)> {
    let mut edges = Vec::new();
    for (dep, at) in names_in(raw.get("depends_on"), &child(base, "depends_on")) {
        if dep == name {
            report.at_value(&at, format!("service `{name}` depends on itself"), None);
        } else if let Some(target) = declared.service(&dep) {
            edges.push((target, at.clone()));
            // `required: false`: the planner leaves it out with a warning, as Compose.
            if declared.active(name)
                && !declared.active(&dep)
                && dependency_required(raw.get("depends_on"), &dep)
            {
                inactive(
                    report,
                    &at,
                    &format!("service `{name}` depends on `{dep}`"),
                    &declared.profiles_of[dep.as_str()],
                );
            }
        } else {
            missing(
                report,
                &at,
                &format!("service `{name}` depends on `{dep}`, which is not a service"),
                &dep,
                &declared.services,
            );
        }
    }
    edges
}

/// `network_mode: service:X` and `links` name services (edges: they start first).
fn check_shared_services<'v>(
    report: &mut Report,
    declared: &Declared<'v>,
    name: &str,
    raw: &Mapping,
    base: &[String],
) -> Vec<(&'v str, Vec<String>)> {
    let mut named: Vec<(String, Vec<String>, &str)> = Vec::new();
    if let Some(Value::String(mode)) = raw.get("network_mode") {
        if let Some(service) = mode.strip_prefix("service:") {
            named.push((
                service.to_string(),
                child(base, "network_mode"),
                "shares the network of",
            ));
        }
    }
    for (link, at) in names_in(raw.get("links"), &child(base, "links")) {
        let target = link
            .split_once(':')
            .map_or(link.as_str(), |(t, _)| t)
            .to_string();
        named.push((target, at, "links to"));
    }
    let mut edges = Vec::new();
    for (target, at, verb) in named {
        if target == name {
            report.at_value(&at, format!("service `{name}` {verb} itself"), None);
        } else if let Some(service) = declared.service(&target) {
            edges.push((service, at));
        } else {
            missing(
                report,
                &at,
                &format!("service `{name}` {verb} `{target}`, which is not a service"),
                &target,
                &declared.services,
            );
        }
    }
    edges
}

/// A service's `volumes_from`: another service (an edge), a data container, or an error.
fn check_service_volumes_from<'v>(
    report: &mut Report,
    declared: &Declared<'v>,
    name: &str,
    raw: &Mapping,
    base: &[String],
) -> Vec<(&'v str, Vec<String>)> {
    let mut edges = Vec::new();
    for (entry, at) in names_in(raw.get("volumes_from"), &child(base, "volumes_from")) {
        let source = volumes_from_name(&entry);
        if source == name {
            report.at_value(
                &at,
                format!("service `{name}` takes volumes from itself"),
                None,
            );
        } else if let Some(target) = declared.service(source) {
            edges.push((target, at.clone()));
            if declared.active(name) && !declared.active(source) {
                inactive(
                    report,
                    &at,
                    &format!("service `{name}` takes volumes from `{source}`"),
                    &declared.profiles_of[source],
                );
            }
        } else if let Some(container) = source.strip_prefix("container:") {
            report.at_value(
                &at,
                format!("service `{name}`: `volumes_from: container:{container}` is not supported yet"),
                Some("name a service or a data container of this stack; containers outside the stack are not managed by stackctl".into()),
            );
        } else if !declared.data.contains(&source) {
            missing(report, &at, &format!("service `{name}` takes volumes from `{source}`, which is neither a service nor a data container"), source, &declared.with_data);
        }
    }
    edges
}

fn check_data_container_references(
    report: &mut Report,
    declared: &Declared,
    name: &str,
    raw: &Mapping,
) {
    if declared.services.contains(&name) {
        report.at_key(
            &path(&["data_containers", name]),
            format!("`{name}` is both a service and a data container"),
            Some("give one of them another name".into()),
        );
    }
    named_volumes(
        report,
        raw.get("volumes"),
        &path(&["data_containers", name, "volumes"]),
        &format!("data container `{name}`"),
        &declared.volumes,
    );
}

/// A task's name (not a service's too), `service`, `volumes_from`, named volumes and
/// `steps`; returns its edges in the task graph (steps that are tasks).
fn check_task_references<'v>(
    report: &mut Report,
    declared: &Declared<'v>,
    name: &str,
    raw: &Mapping,
) -> Vec<(&'v str, Vec<String>)> {
    let base = path(&["tasks", name]);
    if declared.services.contains(&name) {
        report.at_key(
            &base,
            format!("`{name}` is both a task and a service"),
            Some("`stackctl exec NAME` must know which one you mean: rename the task".into()),
        );
    }
    if let Some(Value::String(service)) = raw.get("service") {
        check_task_service(report, declared, name, service, &child(&base, "service"));
    }
    for (entry, at) in names_in(raw.get("volumes_from"), &child(&base, "volumes_from")) {
        let source = volumes_from_name(&entry);
        if !declared.with_data.contains(&source) {
            missing(report, &at, &format!("task `{name}` takes volumes from `{source}`, which is neither a service nor a data container"), source, &declared.with_data);
        }
    }
    named_volumes(
        report,
        raw.get("volumes"),
        &child(&base, "volumes"),
        &format!("task `{name}`"),
        &declared.volumes,
    );
    check_steps(report, declared, name, raw, &base)
}

/// A task's `service:` must be a service that runs under the selected profiles.
fn check_task_service(
    report: &mut Report,
    declared: &Declared,
    name: &str,
    service: &str,
    at: &[String],
) {
    if !declared.services.contains(&service) {
        missing(
            report,
            at,
            &format!("task `{name}` uses service `{service}`, which is not a service"),
            service,
            &declared.services,
        );
    } else if !declared.active(service) {
        inactive(
            report,
            at,
            &format!("task `{name}` uses service `{service}`"),
            &declared.profiles_of[service],
        );
    }
}

/// Each step is a task (an edge) or a built-in step.
fn check_steps<'v>(
    report: &mut Report,
    declared: &Declared<'v>,
    name: &str,
    raw: &Mapping,
    base: &[String],
) -> Vec<(&'v str, Vec<String>)> {
    let mut edges = Vec::new();
    for (step, at) in names_in(raw.get("steps"), &child(base, "steps")) {
        if let Some(target) = declared.tasks.iter().find(|t| **t == step) {
            edges.push((*target, at));
        } else if !BUILTIN_STEPS.contains(&step.as_str()) {
            let all: Vec<&str> = declared
                .tasks
                .iter()
                .chain(BUILTIN_STEPS.iter())
                .copied()
                .collect();
            missing(report, &at, &format!("task `{name}` has a step `{step}`, which is neither a task nor one of `up`, `down`, `build`, `wait`"), &step, &all);
        }
    }
    edges
}

fn report_cycles(report: &mut Report, service_edges: &Edges, task_edges: &Edges) {
    for (cycle, at) in cycles(service_edges) {
        report.at_value(
            &at,
            format!("dependency cycle between services: {}", cycle.join(" -> ")),
            Some("remove one of these `depends_on`/`volumes_from` entries".into()),
        );
    }
    for (cycle, at) in cycles(task_edges) {
        report.at_value(
            &at,
            format!("cycle between tasks: {}", cycle.join(" -> ")),
            Some("a task cannot run itself through its `steps`".into()),
        );
    }
}

/// `name`, `name:ro` or `name:rw` → `name`.
pub fn volumes_from_name(entry: &str) -> &str {
    entry
        .strip_suffix(":ro")
        .or_else(|| entry.strip_suffix(":rw"))
        .unwrap_or(entry)
}

fn named_volumes(
    report: &mut Report,
    mounts: Option<&Value>,
    base: &[String],
    what: &str,
    declared: &[&str],
) {
    let Some(Value::Sequence(items)) = mounts else {
        return;
    };
    for (index, item) in items.iter().enumerate() {
        // Mounts with a type error are reported by the type check.
        let Ok(mount) = load::from_value::<VolumeMount>(item.clone()) else {
            continue;
        };
        if mount.kind != MountKind::Named {
            continue;
        }
        let Some(source) = &mount.source else {
            continue;
        };
        if !declared.contains(&source.as_str()) {
            let at = child(base, &index.to_string());
            let hint = match suggest(source, declared.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? (a host path starts with `./` or `/`)"),
                None => format!(
                    "declare it under the top-level `volumes:` (`volumes: {{ {source}: {{}} }}`), or write a host path as `./{source}`"
                ),
            };
            report.at_value(
                &at,
                format!("{what} mounts volume `{source}`, which is not declared under `volumes:`"),
                Some(hint),
            );
        }
    }
}

fn missing(report: &mut Report, at: &[String], message: &str, name: &str, candidates: &[&str]) {
    let hint = did_you_mean(name, candidates.iter().copied());
    report.at_value(at, message.to_string(), hint);
}

/// `depends_on.DEP.required`: true unless written `false`.
fn dependency_required(depends_on: Option<&Value>, dep: &str) -> bool {
    let required = match depends_on {
        Some(Value::Mapping(map)) => map
            .get(dep)
            .and_then(|entry| entry.get("required"))
            .and_then(Value::as_bool),
        _ => None,
    };
    required != Some(false)
}

fn inactive(report: &mut Report, at: &[String], message: &str, profiles: &[String]) {
    let list = profiles
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    report.at_value(
        at,
        format!("{message}, which is only in profile {list} (not selected)"),
        profiles
            .first()
            .map(|p| format!("select it with `--profile {p}`")),
    );
}

/// Every elementary cycle found by a depth-first walk, each reported once (by its node set),
/// as `a -> b -> a`, with the path of the edge that closes it.
fn cycles<'n>(
    edges: &IndexMap<&'n str, Vec<(&'n str, Vec<String>)>>,
) -> Vec<(Vec<&'n str>, Vec<String>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    fn visit<'n>(
        node: &'n str,
        edges: &IndexMap<&'n str, Vec<(&'n str, Vec<String>)>>,
        state: &mut HashMap<&'n str, State>,
        stack: &mut Vec<&'n str>,
        seen: &mut HashSet<BTreeSet<&'n str>>,
        found: &mut Vec<(Vec<&'n str>, Vec<String>)>,
    ) {
        state.insert(node, State::Open);
        stack.push(node);
        for (next, at) in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(State::New) {
                State::New => visit(next, edges, state, stack, seen, found),
                State::Open => {
                    if let Some(start) = stack.iter().position(|n| n == next) {
                        let mut cycle: Vec<&str> = stack[start..].to_vec();
                        if seen.insert(cycle.iter().copied().collect()) {
                            cycle.push(next);
                            found.push((cycle, at.clone()));
                        }
                    }
                }
                State::Done => {}
            }
        }
        stack.pop();
        state.insert(node, State::Done);
    }
    let mut state = HashMap::new();
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(State::New) == State::New {
            visit(
                node,
                edges,
                &mut state,
                &mut Vec::new(),
                &mut seen,
                &mut found,
            );
        }
    }
    found
}

/// A service's `pre_start`, `post_start` and `pre_stop`: lists of maps (their keys are
/// checked at their places in [`keys`]); a step has `command`, `image` or `task` (a task
/// alone), a hook has `command`.
fn check_hooks(report: &mut Report, map: &mut Mapping, base: &[String], what: &str) {
    for key in ["pre_start", "post_start", "pre_stop"] {
        let Some(value) = map.get(key).cloned() else {
            continue;
        };
        let at = child(base, key);
        let items = match value {
            Value::Null => {
                map.shift_remove(key);
                continue;
            }
            Value::Sequence(items) => items,
            other => {
                report.at_value(
                    &at,
                    format!(
                        "{what}: `{key}` must be a list of {}, found {}",
                        if key == "pre_start" { "steps" } else { "hooks" },
                        super::model::describe(&other)
                    ),
                    Some(format!("write `{key}: [{{command: …}}]`")),
                );
                map.shift_remove(key);
                continue;
            }
        };
        let mut cleaned = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_at = child(&at, &index.to_string());
            let label = format!("`{key}` item {} of {what}", index + 1);
            let Value::Mapping(inner) = item else {
                report.at_value(
                    &item_at,
                    format!(
                        "{label} must be a map, found {}",
                        super::model::describe(item)
                    ),
                    Some("write `- command: …`".into()),
                );
                continue;
            };
            // Unknown keys were reported and dropped at the place `services.*.KEY[]`.
            let kept = inner;
            if key == "pre_start" {
                let has = |k: &str| kept.contains_key(k);
                if !has("command") && !has("image") && !has("task") {
                    report.at_value(
                        &item_at,
                        format!("{label} has none of `command`, `image` or `task`"),
                        Some("give the step a `command` (run in a copy of the service), an `image`, or `task: NAME` to run one of the stack's tasks".into()),
                    );
                } else if has("task") {
                    for other in [
                        "command",
                        "image",
                        "user",
                        "privileged",
                        "working_dir",
                        "environment",
                    ] {
                        if has(other) {
                            report.at_key(
                                &child(&item_at, other),
                                format!("{label} names a task and also has `{other}`"),
                                Some("a `task` step runs the task as declared under `tasks:`; set it there, or drop `task`".into()),
                            );
                        }
                    }
                }
            } else if !kept.contains_key("command") {
                report.at_value(
                    &item_at,
                    format!("{label} has no `command`"),
                    Some("a hook runs a command inside the container: add `command: …`".into()),
                );
            }
            cleaned.push(Value::Mapping(kept.clone()));
        }
        map.insert(key.into(), Value::Sequence(cleaned));
    }
}

/// A `pre_start` step's `task:` names a container task of the stack (not a task with
/// `steps`).
fn check_pre_start_tasks(report: &mut Report, root: &Mapping, name: &str, raw: &Mapping) {
    let Some(Value::Sequence(steps)) = raw.get("pre_start") else {
        return;
    };
    let tasks = raw_entries(root, "tasks");
    let container_tasks: Vec<&str> = tasks
        .iter()
        .filter(|(_, map)| !map.contains_key("steps"))
        .map(|(task, _)| *task)
        .collect();
    for (index, step) in steps.iter().enumerate() {
        let Some(Value::String(task)) = step.as_mapping().and_then(|m| m.get("task")) else {
            continue;
        };
        let at = path(&["services", name, "pre_start", &index.to_string(), "task"]);
        if tasks.iter().any(|(t, _)| t == task) {
            if !container_tasks.contains(&task.as_str()) {
                report.at_value(
                    &at,
                    format!("service `{name}`: `pre_start` step {} runs task `{task}`, which has `steps`", index + 1),
                    Some("a `pre_start` step runs one container: name a task with `service`, `image` or `build`, or list the steps here".into()),
                );
            }
        } else {
            missing(
                report,
                &at,
                &format!(
                    "service `{name}`: `pre_start` step {} runs task `{task}`, which is not a task",
                    index + 1
                ),
                task,
                &container_tasks,
            );
        }
    }
}

const DEVELOP_KEYS: &[&str] = &["watch"];
const WATCH_RULE_KEYS: &[&str] = &[
    "path",
    "action",
    "target",
    "ignore",
    "include",
    "initial_sync",
    "exec",
];
const WATCH_EXEC_KEYS: &[&str] = &[
    "command",
    "user",
    "working_dir",
    "environment",
    "privileged",
];

/// `develop:` of a service: the keys of each `watch` rule and of its `exec`, and what each
/// action needs (`target` for the sync actions, `exec` for `sync+exec` only). Types are
/// checked when the service is deserialized.
fn check_develop(report: &mut Report, kept: &mut Mapping, base: &[String], what: &str) {
    let Some(Value::Mapping(develop)) = kept.get("develop").cloned() else {
        return;
    };
    let at = child(base, "develop");
    let what = format!("`develop` of {what}");
    let mut develop = check_keys(report, &develop, &at, DEVELOP_KEYS, &[], true, &what, None);
    if let Some(Value::Sequence(rules)) = develop.get("watch").cloned() {
        let watch_at = child(&at, "watch");
        let mut cleaned = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let Value::Mapping(rule) = rule else {
                cleaned.push(rule.clone());
                continue;
            };
            let rule_at = child(&watch_at, &index.to_string());
            let rule_what = format!("watch rule {} of {what}", index + 1);
            let mut rule = check_keys(
                report,
                rule,
                &rule_at,
                WATCH_RULE_KEYS,
                &[],
                true,
                &rule_what,
                None,
            );
            if let Some(Value::Mapping(exec)) = rule.get("exec").cloned() {
                let exec_at = child(&rule_at, "exec");
                let exec_what = format!("`exec` of {rule_what}");
                let exec = check_keys(
                    report,
                    &exec,
                    &exec_at,
                    WATCH_EXEC_KEYS,
                    &[],
                    true,
                    &exec_what,
                    None,
                );
                rule.insert("exec".into(), Value::Mapping(exec));
            }
            // An unknown action is reported when the rule is deserialized; nothing more here.
            let action = match rule.get("action") {
                Some(Value::String(action))
                    if ["sync", "rebuild", "restart", "sync+restart", "sync+exec"]
                        .contains(&action.as_str()) =>
                {
                    Some(action.as_str())
                }
                _ => None,
            };
            let syncs = matches!(action, Some("sync" | "sync+restart" | "sync+exec"));
            match rule.get("target") {
                None if syncs => report.at_key(
                    &rule_at,
                    format!("{rule_what}: `action: {}` needs a `target`", action.unwrap_or_default()),
                    Some("add `target: /path/in/container` (where `path` lands in the container)".into()),
                ),
                Some(Value::String(target)) if syncs && !target.starts_with('/') => report.at_value(
                    &child(&rule_at, "target"),
                    format!("{rule_what}: `target` must be an absolute path in the container, found `{target}`"),
                    None,
                ),
                Some(_) if !syncs && action.is_some() => report.at_key(
                    &child(&rule_at, "target"),
                    format!("{rule_what}: `target` applies only to the sync actions, not `{}`", action.unwrap_or_default()),
                    Some("remove `target`, or use `action: sync`".into()),
                ),
                _ => {}
            }
            match (action, rule.contains_key("exec")) {
                (Some("sync+exec"), false) => report.at_key(
                    &rule_at,
                    format!("{rule_what}: `action: sync+exec` needs an `exec` with a `command`"),
                    Some("add `exec: {command: ...}`".into()),
                ),
                (Some(other), true) if other != "sync+exec" => report.at_key(
                    &child(&rule_at, "exec"),
                    format!(
                        "{rule_what}: `exec` applies only to `action: sync+exec`, not `{other}`"
                    ),
                    Some("remove `exec`, or use `action: sync+exec`".into()),
                ),
                _ => {}
            }
            if rule.get("initial_sync") == Some(&Value::Bool(true)) && !syncs && action.is_some() {
                report.at_key(
                    &child(&rule_at, "initial_sync"),
                    format!("{rule_what}: `initial_sync` applies only to the sync actions"),
                    Some("remove `initial_sync`".into()),
                );
            }
            cleaned.push(Value::Mapping(rule));
        }
        develop.insert("watch".into(), Value::Sequence(cleaned));
    }
    kept.insert("develop".into(), Value::Mapping(develop));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys = keys::SERVICE_KEYS.iter().copied();
        assert_eq!(suggest("enviroment", keys.clone()), Some("environment"));
        assert_eq!(suggest("imgae", keys.clone()), Some("image"));
        assert_eq!(suggest("port", keys.clone()), Some("ports"));
        assert_eq!(suggest("zzzzzz", keys.clone()), None);
        assert_eq!(suggest("x", ["y"]), None);
    }

    #[test]
    fn names() {
        for good in ["api", "db1", "a.b-c_d", "9x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", "_a", "a b", "a/b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn finds_each_cycle_once() {
        let mut edges: IndexMap<&str, Vec<(&str, Vec<String>)>> = IndexMap::new();
        edges.insert("a", vec![("b", vec![])]);
        edges.insert("b", vec![("c", vec![]), ("a", vec![])]);
        edges.insert("c", vec![("b", vec![])]);
        edges.insert("d", vec![]);
        let found: Vec<String> = cycles(&edges)
            .into_iter()
            .map(|(c, _)| c.join(" -> "))
            .collect();
        assert_eq!(found, vec!["b -> c -> b", "a -> b -> a"]);
    }
}
