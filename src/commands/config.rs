//! `stackctl config`: print the resolved stack (or every problem in it), the active
//! services, or where each variable came from. Needs no Docker engine.

use anyhow::Result;

use super::Context;
use crate::cli::ConfigArgs;
use crate::error::exit;
use crate::output::Mode;
use crate::stack::model::{Build, Stack, Task};
use crate::stack::{self, is_secret_key, LoadedStack, Resolution, Use};

pub async fn run(ctx: &Context, args: &ConfigArgs) -> Result<i32> {
    let loaded = stack::load(&ctx.project)?;
    crate::plan::objects::check_object_labels(&loaded)?;
    let printer = &ctx.printer;
    let json = printer.mode == Mode::Json;
    for warning in loaded.warnings() {
        printer.warn(&warning);
    }
    if args.services {
        let names: Vec<&String> = loaded.stack.services.keys().collect();
        if json {
            printer.data(&serde_json::to_string(&names)?);
        } else {
            for name in names {
                printer.data(name);
            }
        }
        return Ok(exit::OK);
    }
    if args.sources {
        let rows = sources(&loaded, args.show_secrets);
        if json {
            for row in &rows {
                printer.data(&serde_json::to_string(row)?);
            }
        } else {
            let env_files = ctx
                .project
                .env_files(ctx.project.stack_files().compose)
                .iter()
                .rev()
                .map(|path| format!("`{}`", ctx.project.display_path(path)))
                .collect::<Vec<_>>()
                .join(", ");
            printer.status(&format!(
                "variables, strongest source first: process environment, {env_files}, built-ins (`STAGE`, `PROJECT`)"
            ));
            printer.data(&sources_table(&rows));
        }
        return Ok(exit::OK);
    }
    let mut stack = loaded.stack.clone();
    if !args.show_secrets {
        mask_stack(&mut stack);
    }
    let mut tree = serde_json::to_value(&stack)?;
    if !args.show_secrets {
        mask_interpolated(&mut tree, &loaded);
    }
    let text = if json {
        serde_json::to_string(&tree)?
    } else {
        stack::load::to_yaml(&tree)
            .map_err(|e| anyhow::anyhow!("cannot render the stack as YAML: {e}"))?
    };
    printer.data(&text);
    Ok(exit::OK)
}

/// The text that replaces a secret value: a whole value is replaced, never part of one.
const MASK: &str = "****";

/// Replace every value that a secret-looking variable was interpolated into by `****`,
/// the whole value (a URL holding a password becomes `****`, not half of one). The stack
/// file's paths lead into the resolved stack; where the resolved form differs (an
/// `environment` list became a map, a command string became a list), every string under the
/// deepest place reached that holds the variable's value is replaced.
fn mask_interpolated(tree: &mut serde_json::Value, loaded: &LoadedStack) {
    for used in &loaded.variables {
        if !holds_secret(loaded, used) {
            continue;
        }
        // The longest prefix of the path that exists in the resolved stack, as a JSON pointer.
        let mut pointer = String::new();
        let mut reached = true;
        for step in &used.path {
            let next = format!("{pointer}/{}", step.replace('~', "~0").replace('/', "~1"));
            if tree.pointer(&next).is_none() {
                reached = false;
                break;
            }
            pointer = next;
        }
        let Some(node) = tree.pointer_mut(&pointer) else {
            continue;
        };
        if reached && node.is_string() {
            *node = serde_json::Value::String(MASK.to_string());
            continue;
        }
        mask_strings_holding(node, &used.value);
    }
}

/// Is this variable's value a secret, or does it hold one? A secret-looking name (`DB_PASSWORD`),
/// or a value from the environment or `.env.STAGE` with a secret value of the stage inside
/// (`DATABASE_URL=postgresql://app:${the password}@db`). A default written in the stack file
/// is not a secret, even when a password happens to be a word of it (`postgres:16`).
fn holds_secret(loaded: &LoadedStack, used: &Use) -> bool {
    if used.value.is_empty() {
        return false;
    }
    is_secret_key(&used.name)
        || (matches!(used.resolution, Resolution::Set(_))
            && loaded
                .secrets
                .iter()
                .any(|secret| secret.len() >= 4 && used.value.contains(secret.as_str())))
}

/// Replace every string under `node` that contains `value` by `****`.
fn mask_strings_holding(node: &mut serde_json::Value, value: &str) {
    match node {
        serde_json::Value::String(text) if text.contains(value) => *text = MASK.to_string(),
        serde_json::Value::Array(items) => {
            for item in items {
                mask_strings_holding(item, value);
            }
        }
        serde_json::Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                mask_strings_holding(item, value);
            }
        }
        _ => {}
    }
}

/// One variable of `config --sources` (`--json`: one object per line).
#[derive(Debug, serde::Serialize)]
struct SourceRow {
    variable: String,
    source: String,
    value: String,
    used_at: String,
}

/// One row per variable and way it was resolved, in order of first use.
fn sources(loaded: &LoadedStack, show_secrets: bool) -> Vec<SourceRow> {
    let mut rows: Vec<SourceRow> = Vec::new();
    let mut seen: Vec<(String, Resolution)> = Vec::new();
    let shown = |used: &Use| {
        if !show_secrets && holds_secret(loaded, used) {
            MASK.to_string()
        } else {
            used.value.clone()
        }
    };
    for used in &loaded.variables {
        let key = (used.name.clone(), used.resolution.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let source = match &used.resolution {
            Resolution::Set(source) => source.to_string(),
            Resolution::Default => "default in the stack file".into(),
            Resolution::Unset => "not set (empty)".into(),
            Resolution::LeftOut => "not set (entry left out)".into(),
        };
        let path: Vec<&str> = used.path.iter().map(String::as_str).collect();
        let at = loaded
            .locate_value(&path)
            .map(|l| l.to_string())
            .unwrap_or_default();
        rows.push(SourceRow {
            variable: used.name.clone(),
            source,
            value: shown(used),
            used_at: at,
        });
    }
    for unused in &loaded.unused_env {
        let Resolution::Set(source) = &unused.resolution else {
            continue;
        };
        rows.push(SourceRow {
            variable: unused.name.clone(),
            source: source.to_string(),
            value: shown(unused),
            used_at: "(not used by the stack file)".into(),
        });
    }
    rows
}

/// The rows as a table with a header, columns aligned.
fn sources_table(rows: &[SourceRow]) -> String {
    let mut cells: Vec<[String; 4]> = vec![[
        "VARIABLE".into(),
        "SOURCE".into(),
        "VALUE".into(),
        "USED AT".into(),
    ]];
    cells.extend(rows.iter().map(|r| {
        [
            r.variable.clone(),
            r.source.clone(),
            r.value.clone(),
            r.used_at.clone(),
        ]
    }));
    let mut widths = [0usize; 3];
    for row in &cells {
        for (i, width) in widths.iter_mut().enumerate() {
            *width = (*width).max(row[i].chars().count());
        }
    }
    let mut out = String::new();
    for row in cells {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Replace the values of secret-looking keys (environment, build args, labels) by `****`.
fn mask_stack(stack: &mut Stack) {
    fn env(map: &mut indexmap::IndexMap<String, Option<String>>) {
        for (key, value) in map.iter_mut() {
            if is_secret_key(key) && value.is_some() {
                *value = Some(MASK.into());
            }
        }
    }
    fn labels(map: &mut indexmap::IndexMap<String, String>) {
        for (key, value) in map.iter_mut() {
            if is_secret_key(key) {
                *value = MASK.into();
            }
        }
    }
    fn build(build: &mut Option<Build>) {
        if let Some(build) = build {
            env(&mut build.args);
            labels(&mut build.labels);
        }
    }
    for service in stack.services.values_mut() {
        env(&mut service.environment);
        labels(&mut service.labels);
        build(&mut service.build);
        for step in &mut service.pre_start {
            env(&mut step.environment);
        }
        for hook in service.post_start.iter_mut().chain(&mut service.pre_stop) {
            env(&mut hook.environment);
        }
    }
    for data in stack.data_containers.values_mut() {
        labels(&mut data.labels);
        build(&mut data.build);
    }
    for task in stack.tasks.values_mut() {
        if let Task::Container(task) = task {
            env(&mut task.environment);
            build(&mut task.build);
        }
    }
    for network in stack.networks.values_mut() {
        labels(&mut network.labels);
    }
    for volume in stack.volumes.values_mut() {
        labels(&mut volume.labels);
    }
}
