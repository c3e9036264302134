//! The import rules of the module map (docs/src/contributing.md), read from the sources:
//! the engine's client library stays in `engine/`, the planner stays pure, and the low floors
//! (errors, names, project, output, interrupt, lock) import nothing above them.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as paths relative to `src/` with `/` between parts.
fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src/")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("under src/");
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path).expect("read a source");
            out.push((name, text));
        }
    }
}

fn all_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    sources(&root, &root, &mut out);
    out
}

/// The code of a file without its `//` comments (a doc comment may name any module).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of the files `chosen` that use one of `words`, as `file:line: text`.
fn uses(chosen: impl Fn(&str) -> bool, words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, text) in all_sources().iter().filter(|(name, _)| chosen(name)) {
        for (number, line) in code(text).lines().enumerate() {
            if words.iter().any(|word| line.contains(word)) {
                found.push(format!("src/{name}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn bollard_is_named_only_under_engine() {
    let mut found = Vec::new();
    for (name, text) in all_sources() {
        if name.starts_with("engine/") {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            if line.contains("bollard") {
                found.push(format!("src/{name}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "`bollard` outside src/engine/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_planner_imports_nothing_from_the_engine() {
    let found = uses(
        |name| name.starts_with("plan/"),
        &["crate::engine", "bollard"],
    );
    assert!(
        found.is_empty(),
        "src/plan/ imports the engine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_build_context_code_names_no_engine_type() {
    let found = uses(
        |name| name.starts_with("context/"),
        &["crate::engine", "bollard"],
    );
    assert!(
        found.is_empty(),
        "src/context/ imports the engine:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_low_floors_import_nothing_above_them() {
    let floors = [
        "error.rs",
        "names.rs",
        "project.rs",
        "output.rs",
        "output/",
        "interrupt.rs",
        "lock.rs",
    ];
    let above = [
        "crate::cli",
        "crate::commands",
        "crate::engine",
        "clap::",
        "use clap",
    ];
    let mut found = uses(
        |name| floors.iter().any(|floor| name.starts_with(floor)),
        &above,
    );
    // Still open: the stage lock takes and renews its lease through `engine::Engine`; it
    // reaches no command line and no command.
    found.retain(|line| !(line.starts_with("src/lock.rs:") && line.contains("crate::engine")));
    assert!(
        found.is_empty(),
        "a low floor imports cli.rs, commands/, engine/ or clap:\n{}",
        found.join("\n")
    );
}

/// Which engine a call reaches is a value a command holds (`EngineChoice`, `Endpoint`), not
/// process state: no `static` in the engine's address and client code, and
/// `Engine::connect` takes the endpoint.
#[test]
fn no_static_holds_the_engine_endpoint() {
    let sources = all_sources();
    for (name, text) in &sources {
        if name == "engine/endpoint.rs" || name == "engine/mod.rs" {
            let code = code(text);
            assert!(
                !code.lines().any(|l| l.trim_start().starts_with("static ")),
                "{name} holds a static"
            );
        }
    }
    let engine = &sources
        .iter()
        .find(|(name, _)| name == "engine/mod.rs")
        .expect("engine/mod.rs")
        .1;
    assert!(
        engine.contains("pub async fn connect(endpoint: endpoint::Endpoint)"),
        "Engine::connect takes the endpoint"
    );
}

#[test]
fn no_command_imports_another_command() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    // Not commands: the helpers of the one-off containers `exec`, `run` and a task's steps
    // share, and of the context monitors `down` and `purge` end.
    let helpers = ["mod", "oneoff", "monitors"];
    let commands: Vec<String> = std::fs::read_dir(&root)
        .expect("read src/commands/")
        .filter_map(|entry| {
            let path = entry.expect("an entry").path();
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            (path.extension().is_some_and(|ext| ext == "rs") && !helpers.contains(&stem.as_str()))
                .then_some(stem)
        })
        .collect();
    let words: Vec<String> = commands
        .iter()
        .flat_map(|c| [format!("super::{c}::"), format!("crate::commands::{c}::")])
        .chain(commands.iter().map(|c| format!("use super::{c};")))
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let found = uses(
        |name| name.starts_with("commands/") && name != "commands/mod.rs",
        &words,
    );
    assert!(
        found.is_empty(),
        "a command imports another command (shared code belongs in commands/mod.rs, apply/ or plan/):\n{}",
        found.join("\n")
    );
}
