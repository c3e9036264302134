//! Compose files as they are written in the wild: the corpus in `tests/compose-corpus/`
//! (copies of `docker/awesome-compose`'s files, see its SOURCES.md) run through the real
//! `stackctl config` as plain Compose projects. Every file must be accepted, and for the files
//! docker-compose v1 accepts too, the resolved services (image, command, environment, ports,
//! volumes, networks) must agree with `docker-compose config`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

mod support;

const COMPOSE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose-corpus")
}

/// Every project of the corpus: its name and its directory.
fn projects() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(corpus_dir())
        .expect("read tests/compose-corpus")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect();
    found.sort();
    found
}

fn compose_file(dir: &Path) -> PathBuf {
    COMPOSE_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no compose file in {}", dir.display()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn load(text: &str) -> Yaml {
    YamlLoader::load_from_str(text)
        .ok()
        .and_then(|mut docs| (!docs.is_empty()).then(|| docs.remove(0)))
        .unwrap_or(Yaml::Null)
}

/// A copy of a corpus project in a temporary directory, with the build contexts its file
/// names created empty (the corpus keeps the compose files only; docker-compose v1 wants the
/// directories to exist).
fn scratch_copy(dir: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    copy_dir(dir, root.path());
    let text = std::fs::read_to_string(compose_file(root.path())).expect("read compose file");
    let doc = load(&text);
    if let Yaml::Hash(services) = &doc["services"] {
        for (_, service) in services {
            let context = match &service["build"] {
                Yaml::String(context) => Some(context.clone()),
                Yaml::Hash(_) => service["build"]["context"].as_str().map(str::to_string),
                _ => None,
            };
            if let Some(context) = context {
                let _ = std::fs::create_dir_all(root.path().join(context));
            }
        }
    }
    root
}

fn stackctl_config(dir: &Path) -> std::process::Output {
    Command::new(assert_cmd::cargo::cargo_bin("stackctl"))
        .args(["-e", "corpus", "config", "--show-secrets"])
        .current_dir(dir)
        .env_remove("STACKCTL_ENV")
        .env_remove("STACKCTL_PROFILES")
        .env("NO_COLOR", "1")
        .output()
        .expect("run stackctl")
}

#[test]
fn every_corpus_file_is_accepted() {
    let projects = projects();
    assert!(projects.len() >= 35, "the corpus holds {}", projects.len());
    let mut refused = Vec::new();
    for (name, dir) in &projects {
        let copy = scratch_copy(dir);
        let output = stackctl_config(copy.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 2,
            "{name}: exit {code} (a crash?)\n{stderr}"
        );
        if code != 0 {
            refused.push(format!("{name}:\n{stderr}"));
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} corpus files refused:\n{}",
        refused.len(),
        projects.len(),
        refused.join("\n")
    );
}

/// One service's resolved fields, in one shape whichever tool printed them.
#[derive(Debug, Default, PartialEq)]
struct Resolved {
    image: Option<String>,
    command: Option<String>,
    environment: Option<BTreeMap<String, String>>,
    ports: BTreeSet<String>,
    volumes: BTreeSet<String>,
    networks: BTreeSet<String>,
}

fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A command as words, quotes removed: `sh -c 'a b'` and `[sh, -c, a b]` both become
/// `sh -c a b`.
fn command(value: &Yaml) -> Option<String> {
    match value {
        // Quotes dropped on both sides: one tool prints the string as written, the other
        // the words a shell split it into.
        Yaml::Array(words) => Some(
            words
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(" ")
                .replace(['\'', '"'], "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Yaml::String(text) => Some(
            text.replace(['\'', '"'], "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

fn environment(value: &Yaml) -> Option<BTreeMap<String, String>> {
    match value {
        Yaml::Hash(map) => Some(
            map.iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v).unwrap_or_default())))
                .collect(),
        ),
        Yaml::Array(items) => Some(
            items
                .iter()
                .filter_map(scalar)
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (item, String::new()),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// A port as `host_ip:published:target/protocol`, whichever syntax wrote it.
fn port(value: &Yaml) -> Option<String> {
    if let Some(text) = scalar(value) {
        let (rest, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, published, target) = match parts.as_slice() {
            [target] => ("", "", *target),
            [published, target] => ("", *published, *target),
            [ip, published, target] => (*ip, *published, *target),
            _ => return Some(text.clone()),
        };
        return Some(format!("{ip}:{published}:{target}/{protocol}"));
    }
    let ip = value["host_ip"].as_str().unwrap_or("").to_string();
    let published = scalar(&value["published"]).unwrap_or_default();
    let target = scalar(&value["target"]).unwrap_or_default();
    let protocol = value["protocol"].as_str().unwrap_or("tcp").to_string();
    Some(format!("{ip}:{published}:{target}/{protocol}"))
}

/// A mount as `source:target:ro|rw` (an anonymous volume has no source).
fn volume(value: &Yaml) -> Option<String> {
    if let Some(text) = scalar(value) {
        let parts: Vec<&str> = text.split(':').collect();
        return Some(match parts.as_slice() {
            [target] => format!(":{target}:rw"),
            [source, target] => format!("{source}:{target}:rw"),
            [source, target, mode] => {
                let ro = mode.split(',').any(|m| m == "ro");
                format!("{source}:{target}:{}", if ro { "ro" } else { "rw" })
            }
            _ => text.clone(),
        });
    }
    let source = value["source"].as_str().unwrap_or("").to_string();
    let target = value["target"].as_str().unwrap_or("").to_string();
    let ro = value["read_only"].as_bool().unwrap_or(false);
    Some(format!(
        "{source}:{target}:{}",
        if ro { "ro" } else { "rw" }
    ))
}

fn networks(value: &Yaml) -> BTreeSet<String> {
    match value {
        Yaml::Hash(map) => map.keys().filter_map(scalar).collect(),
        Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
        _ => BTreeSet::new(),
    }
}

fn resolved(doc: &Yaml) -> BTreeMap<String, Resolved> {
    let Yaml::Hash(services) = &doc["services"] else {
        return BTreeMap::new();
    };
    services
        .iter()
        .filter_map(|(name, service)| {
            let name = scalar(name)?;
            // `env_file`s are merged into `environment` by one tool and listed by the other.
            let environment = match service["env_file"] {
                Yaml::BadValue | Yaml::Null => environment(&service["environment"]),
                _ => None,
            };
            Some((
                name,
                Resolved {
                    image: scalar(&service["image"]),
                    command: command(&service["command"]),
                    environment,
                    ports: match &service["ports"] {
                        Yaml::Array(items) => items.iter().filter_map(port).collect(),
                        _ => BTreeSet::new(),
                    },
                    volumes: match &service["volumes"] {
                        Yaml::Array(items) => items.iter().filter_map(volume).collect(),
                        _ => BTreeSet::new(),
                    },
                    networks: networks(&service["networks"]),
                },
            ))
        })
        .collect()
}

#[test]
fn resolved_services_agree_with_docker_compose_config() {
    support::machine_ready();
    let mut compared = 0;
    let mut differences = Vec::new();
    for (name, dir) in projects() {
        let copy = scratch_copy(&dir);
        let file = compose_file(copy.path());
        let compose = Command::new("docker-compose")
            .arg("-f")
            .arg(&file)
            .arg("config")
            .current_dir(copy.path())
            .output()
            .expect("run docker-compose (install docker-compose)");
        if !compose.status.success() {
            // A file v1 does not know (newer Compose keys): nothing to compare with.
            continue;
        }
        let ours = stackctl_config(copy.path());
        assert!(
            ours.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let theirs = resolved(&load(&String::from_utf8_lossy(&compose.stdout)));
        let mine = resolved(&load(&String::from_utf8_lossy(&ours.stdout)));
        assert!(
            !theirs.is_empty(),
            "{name}: docker-compose printed no service"
        );
        let names: BTreeSet<&String> = theirs.keys().chain(mine.keys()).collect();
        for service in names {
            let (a, b) = (theirs.get(service), mine.get(service));
            if a != b {
                differences.push(format!(
                    "{name}/{service}:\n  docker-compose: {a:?}\n  stackctl:       {b:?}"
                ));
            }
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} files compared");
    assert!(
        differences.is_empty(),
        "{} services differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
