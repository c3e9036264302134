//! `stackctl ls`: the project's stages on this engine with their state and counts, and the
//! stages that only have a stack file; the stage commands act on is marked, and the one
//! remembered (`stackctl use`). A name pattern and `--stale AGE` select as `purge --stale`.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::{connect, Context};
use crate::engine::stages::StageObjects;
use crate::names::role;
use crate::output::Mode;

#[derive(Debug, Serialize)]
struct Row {
    stage: String,
    /// `running`, `partial`, `stopped`, `down` (no service container, data or volumes
    /// left) or `absent` (a stack file, nothing on the engine).
    state: &'static str,
    /// Service containers running, and service containers in all.
    running: usize,
    services: usize,
    /// Services the stage's stack file declares (active profiles only), when it loads.
    declared: Option<usize>,
    /// Data containers, one-off containers left over, named volumes.
    data: usize,
    tasks: usize,
    volumes: usize,
    /// The stage's stack file, when it has one.
    file: Option<String>,
    /// The stage commands act on here without `-e`.
    current: bool,
    /// The stage remembered in `.stackctl/stage` (by the first `init`, or `stackctl use`).
    remembered: bool,
}

pub async fn run(ctx: &Context, args: &crate::cli::LsArgs) -> Result<i32> {
    let stale = args.stale.as_deref().map(super::parse_age).transpose()?;
    let project = &ctx.project;
    // The engine-side project name: the current stage's `name:`, else the directory's; and
    // the engine its `engine.host` names.
    let (name, engine) = match crate::stack::load(project) {
        Ok(loaded) => (loaded.project.clone(), connect(ctx, &loaded).await?),
        Err(_) => (project.dir_name(), super::connect_without_stack(ctx).await?),
    };
    let on_engine = engine.project_stages(&name).await?;
    let remembered = crate::project::remembered_stage(&project.dir)
        .ok()
        .flatten();
    // A Compose project's stages all read its Compose file (`compose.yaml`, or `-f`): the
    // current stage has a file even before anything is on the engine.
    let stack_files = project.stack_files();
    let compose_file = stack_files.compose.then(|| {
        stack_files
            .paths
            .iter()
            .map(|path| project.display_path(path))
            .collect::<Vec<_>>()
            .join(" + ")
    });
    let files = if compose_file.is_some() {
        vec![project.stage.clone()]
    } else {
        project.stages()
    };
    let mut stages: BTreeMap<String, Option<&StageObjects>> =
        files.iter().map(|stage| (stage.clone(), None)).collect();
    for (stage, objects) in &on_engine {
        stages.insert(stage.clone(), Some(objects));
    }
    // The selection `purge --stale AGE PATTERN` makes: by name, and by the age of the newest
    // object on the engine (a stage with nothing there is not stale, it is absent).
    let now = std::time::SystemTime::now();
    stages.retain(|stage, objects| {
        let named = args
            .pattern
            .as_deref()
            .is_none_or(|pattern| super::glob_match(pattern, stage));
        let old = stale.is_none_or(|age| {
            objects
                .and_then(|o| o.newest)
                .is_some_and(|newest| now.duration_since(newest).unwrap_or_default() >= age)
        });
        named && old
    });
    // What each stage's stack file declares; a file that does not load declares nothing.
    let declared = |stage: &str| {
        let mut each = project.clone();
        each.stage = stage.to_string();
        crate::stack::load(&each)
            .ok()
            .map(|loaded| loaded.stack.services.len())
    };
    let rows: Vec<Row> = stages
        .into_iter()
        .map(|(stage, objects)| {
            let empty = StageObjects::default();
            let objects = objects.unwrap_or(&empty);
            let count = |r: &str| objects.containers.iter().filter(|c| c.role == r).count();
            let services = count(role::SERVICE);
            let running = objects
                .containers
                .iter()
                .filter(|c| c.role == role::SERVICE && c.state == "running")
                .count();
            let (data, tasks, volumes) =
                (count(role::DATA), count(role::TASK), objects.volumes.len());
            let has_file = files.contains(&stage) || compose_file.is_some();
            let declared = if has_file { declared(&stage) } else { None };
            // Services without a container count as not running.
            let expected = services.max(declared.unwrap_or(0));
            let state = match (services, running) {
                (0, _) if objects.containers.is_empty() && volumes == 0 => "absent",
                (0, _) => "down",
                (_, up) if up == expected => "running",
                (_, 0) => "stopped",
                _ => "partial",
            };
            let file = has_file.then(|| match &compose_file {
                Some(file) => file.clone(),
                None => {
                    project.display_path(&project.dir.join("stacks").join(format!("{stage}.yml")))
                }
            });
            Row {
                current: stage == project.stage,
                remembered: remembered.as_deref() == Some(stage.as_str()),
                stage,
                state,
                running,
                services,
                declared,
                data,
                tasks,
                volumes,
                file,
            }
        })
        .collect();
    if ctx.printer.mode == Mode::Json {
        for row in &rows {
            ctx.printer.data(&serde_json::to_string(row)?);
        }
        return Ok(0);
    }
    if rows.is_empty() && (args.pattern.is_some() || stale.is_some()) {
        ctx.printer
            .status(&format!("no stage of project `{name}` matches"));
        return Ok(0);
    }
    if rows.is_empty() {
        ctx.printer.status(&format!(
            "no stage of project `{name}`: no stack file in stacks/ and nothing on the engine"
        ));
        ctx.printer
            .status("hint: `stackctl init --env dev` makes the first one");
        return Ok(0);
    }
    ctx.printer.data(&table(&rows));
    Ok(0)
}

fn table(rows: &[Row]) -> String {
    let header = ["STAGE", "STATE", "SERVICES", "DATA", "VOLUMES", "FILE", ""].map(String::from);
    let mut cells: Vec<[String; 7]> = vec![header];
    for r in rows {
        let mut note = Vec::new();
        if r.current {
            note.push("current");
        }
        if r.remembered {
            note.push("remembered");
        }
        let expected = r.services.max(r.declared.unwrap_or(0));
        let mut services = if expected == 0 {
            "-".to_string()
        } else {
            format!("{}/{expected}", r.running)
        };
        if r.tasks > 0 {
            services.push_str(&format!(" +{} one-off", r.tasks));
        }
        cells.push([
            r.stage.clone(),
            r.state.to_string(),
            services,
            r.data.to_string(),
            r.volumes.to_string(),
            r.file.clone().unwrap_or_else(|| "-".into()),
            if note.is_empty() {
                String::new()
            } else {
                format!("({})", note.join(", "))
            },
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
