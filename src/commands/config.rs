//! `stackctl config`: print the resolved stack (or every problem in it), the active
//! services, or where each variable came from. Needs no Docker engine.

use anyhow::Result;

use super::Context;
use crate::cli::ConfigArgs;
use crate::error::exit;
use crate::stack::model::{Build, Stack, Task};
use crate::stack::{self, is_secret_key, LoadedStack, Resolution};

pub async fn run(ctx: &Context, args: &ConfigArgs) -> Result<i32> {
    let loaded = stack::load(&ctx.project)?;
    crate::names::check_object_labels(&loaded)?;
    let mut printer = ctx.printer.clone();
    if !args.show_secrets {
        printer.add_secrets(loaded.secrets.clone());
    }
    for warning in loaded.warnings() {
        printer.warn(&warning);
    }
    if args.services {
        for name in loaded.stack.services.keys() {
            printer.data(name);
        }
        return Ok(exit::OK);
    }
    if args.sources {
        printer.status(&format!(
            "variables, strongest source first: process environment, `{}`, built-ins (`STAGE`, `PROJECT`)",
            ctx.project.display_path(&ctx.project.env_file())
        ));
        let table = sources_table(&loaded, args.show_secrets);
        printer.data(&printer.mask(&table));
        return Ok(exit::OK);
    }
    let mut stack = loaded.stack.clone();
    if !args.show_secrets {
        mask_stack(&mut stack);
    }
    let yaml = stack::load::to_yaml(&stack)
        .map_err(|e| anyhow::anyhow!("cannot render the stack as YAML: {e}"))?;
    printer.data(&printer.mask(&yaml));
    Ok(exit::OK)
}

/// One row per variable and way it was resolved, in order of first use.
fn sources_table(loaded: &LoadedStack, show_secrets: bool) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "VARIABLE".into(),
        "SOURCE".into(),
        "VALUE".into(),
        "USED AT".into(),
    ]];
    let mut seen: Vec<(String, Resolution)> = Vec::new();
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
        let value = if is_secret_key(&used.name) && !show_secrets && !used.value.is_empty() {
            "****".to_string()
        } else {
            used.value.clone()
        };
        let path: Vec<&str> = used.path.iter().map(String::as_str).collect();
        let at = loaded
            .locate_value(&path)
            .map(|l| l.to_string())
            .unwrap_or_default();
        rows.push([used.name.clone(), source, value, at]);
    }
    for unused in &loaded.unused_env {
        let Resolution::Set(source) = &unused.resolution else {
            continue;
        };
        let value = if is_secret_key(&unused.name) && !show_secrets && !unused.value.is_empty() {
            "****".to_string()
        } else {
            unused.value.clone()
        };
        rows.push([
            unused.name.clone(),
            source.to_string(),
            value,
            "(not used by the stack file)".into(),
        ]);
    }
    let mut widths = [0usize; 3];
    for row in &rows {
        for (i, width) in widths.iter_mut().enumerate() {
            *width = (*width).max(row[i].chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
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
                *value = Some("****".into());
            }
        }
    }
    fn labels(map: &mut indexmap::IndexMap<String, String>) {
        for (key, value) in map.iter_mut() {
            if is_secret_key(key) {
                *value = "****".into();
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
