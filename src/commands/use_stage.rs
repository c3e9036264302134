//! `stackctl use [STAGE]`: choose the stage commands in this project act on without `-e`
//! (`.stackctl/stage`), or print the one they act on and why. `init` remembers only the first
//! stage of a project, so that a second one made beside it does not silently become the one
//! a plain `purge --yes` removes; this is the explicit way to switch.

use anyhow::Result;

use super::Context;
use crate::cli::{GlobalArgs, UseArgs};
use crate::error::{exit, UsageError};
use crate::output::Printer;
use crate::project::{Project, STATE_DIR};

pub fn run(global: &GlobalArgs, args: &UseArgs) -> Result<i32> {
    let Some(stage) = &args.stage else {
        return show(global);
    };
    let mut chosen = global.clone();
    chosen.env = Some(stage.clone());
    let project = Project::resolve(&super::selection(&chosen))?;
    let file = project.stack_files().main;
    if !file.is_file() {
        let stages = project.stages();
        let hint = if stages.is_empty() {
            format!("`stackctl init --env {stage}` makes it")
        } else {
            format!(
                "`stackctl init --env {stage}` makes it; stages with a stack file: {}",
                quoted(&stages)
            )
        };
        return Err(UsageError::new(format!(
            "stage `{stage}` has no stack file `{}`",
            project.display_path(&file)
        ))
        .with_hint(hint)
        .into());
    }
    let previous = crate::project::remembered_stage(&project.dir)
        .ok()
        .flatten();
    let ctx = Context {
        printer: Printer::new(super::output_settings(&chosen), &project.stage),
        project,
        global: chosen,
        engine: Default::default(),
    };
    if previous.as_deref() == Some(stage.as_str()) {
        ctx.printer.status(&format!(
            "commands here already act on stage `{stage}` without `-e`"
        ));
    } else {
        super::remember_stage(&ctx, previous.as_deref());
    }
    if let Some(variable) = environment_stage().filter(|v| v != stage) {
        ctx.printer.warn(&format!(
            "STACKCTL_ENV is set to `{variable}` in this shell, and wins over the remembered stage"
        ));
    }
    Ok(exit::OK)
}

/// Print the stage plain commands act on (stdout), and where it comes from (stderr).
fn show(global: &GlobalArgs) -> Result<i32> {
    let project = Project::resolve(&super::selection(global))?;
    let printer = Printer::new(super::output_settings(global), &project.stage);
    let remembered = crate::project::remembered_stage(&project.dir)
        .ok()
        .flatten();
    let source = if environment_stage().as_deref() == Some(project.stage.as_str()) {
        "from STACKCTL_ENV".to_string()
    } else if global.env.is_some() {
        "from `-e`".to_string()
    } else if remembered.as_deref() == Some(project.stage.as_str()) {
        format!("remembered in `{STATE_DIR}/stage`")
    } else {
        "the default: no stage is remembered".to_string()
    };
    printer.data(&project.stage);
    printer.status(&format!("stage `{}`: {source}", project.stage));
    Ok(exit::OK)
}

fn environment_stage() -> Option<String> {
    std::env::var("STACKCTL_ENV").ok().filter(|v| !v.is_empty())
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
