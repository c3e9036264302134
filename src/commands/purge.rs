//! `stackctl purge`: remove everything the stage owns — containers, data containers,
//! volumes, networks, and the tags of the images it built (an image goes with its tag unless
//! another tag or a container keeps it). Nothing without the stage's labels is touched.
//!
//! The engine's labels are enough: a stage whose stack file is not in this checkout (a CI
//! stage whose runner died before its cleanup) is purged by its labels alone, and
//! `purge --stale AGE [PATTERN]` removes every stage of the project untouched for that long.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::Result;

use super::{connect, glob_match, load_stack, parse_age, Context};
use crate::apply;
use crate::cli::PurgeArgs;
use crate::engine::Engine;
use crate::error::UsageError;
use crate::output::Printer;
use crate::stack::LoadedStack;

/// The stage to purge: from its stack file, or from the engine's labels alone.
struct Target<'a> {
    stage: String,
    project: String,
    loaded: Option<&'a LoadedStack>,
}

pub async fn run(ctx: &Context, args: &PurgeArgs) -> Result<i32> {
    let interactive = std::io::stdin().is_terminal();
    if let Some(age) = &args.stale {
        return stale(ctx, args, age, interactive).await;
    }
    if args.pattern.is_some() {
        return Err(UsageError::new("a stage pattern is given without `--stale`")
            .with_hint("`stackctl purge --stale 2h 'ci-*'` removes the stages matching it that nothing touched for 2 hours; `-e STAGE purge` removes one stage")
            .into());
    }
    if !args.yes && !interactive {
        return Err(UsageError::new(format!(
            "refusing to purge stage `{}` without confirmation: stdin is not a terminal",
            ctx.project.stage
        ))
        .with_hint("pass --yes to remove everything the stage owns")
        .into());
    }
    let file = ctx.project.stack_files().main;
    if ctx.global.files.is_empty() && !file.exists() {
        let project = project_name(ctx);
        ctx.printer.status(&format!(
            "no stack file `{}`: purging stage `{}` of `{project}` by the engine's labels",
            ctx.project.display_path(&file),
            ctx.project.stage
        ));
        let target = Target {
            stage: ctx.project.stage.clone(),
            project,
            loaded: None,
        };
        let engine = super::connect_without_stack(ctx).await?;
        return purge_stage(&engine, &ctx.printer, &target, args, interactive).await;
    }
    let (loaded, printer) = load_stack(ctx)?;
    if crate::apply::swarm::is_swarm(&loaded) {
        return crate::apply::swarm::purge(
            &super::endpoint(ctx, &loaded)?,
            &loaded,
            &printer,
            args.timeout,
        )
        .await;
    }
    let engine = connect(ctx, &loaded).await?;
    let target = Target {
        stage: loaded.stage.clone(),
        project: loaded.project.clone(),
        loaded: Some(&loaded),
    };
    let code = purge_stage(&engine, &printer, &target, args, interactive).await?;
    if code == 0 {
        super::monitors::end_unused(&engine, &ctx.project, &loaded, &printer).await;
    }
    Ok(code)
}

/// The engine-side project name without the stage's stack file: another stage's `name:`,
/// else the directory's name (what `init` writes as `name:`).
fn project_name(ctx: &Context) -> String {
    ctx.project
        .stages()
        .into_iter()
        .find_map(|stage| {
            let mut other = ctx.project.clone();
            other.stage = stage;
            crate::stack::load(&other).ok().map(|loaded| loaded.project)
        })
        .unwrap_or_else(|| ctx.project.dir_name())
}

/// Remove every stage of the project whose name matches the pattern and whose newest object
/// is older than `age` (a scheduled cleanup of CI stages whose runner died).
async fn stale(ctx: &Context, args: &PurgeArgs, age: &str, interactive: bool) -> Result<i32> {
    let age = parse_age(age)?;
    let pattern = args.pattern.as_deref().unwrap_or("*");
    if !args.yes && !interactive {
        return Err(UsageError::new(format!(
            "refusing to purge the stale stages matching `{pattern}` without confirmation: stdin is not a terminal"
        ))
        .with_hint("pass --yes to remove them")
        .into());
    }
    let (project, engine) = match crate::stack::load(&ctx.project) {
        Ok(loaded) => (loaded.project.clone(), connect(ctx, &loaded).await?),
        Err(_) => (project_name(ctx), super::connect_without_stack(ctx).await?),
    };
    let stages = stale_stages(&engine, &project, pattern, age).await?;
    if stages.is_empty() {
        ctx.printer.status(&format!(
            "no stage of `{project}` matching `{pattern}` is older than {}",
            humantime::format_duration(age)
        ));
        return Ok(0);
    }
    let mut code = 0;
    for stage in stages {
        let target = Target {
            stage: stage.clone(),
            project: project.clone(),
            loaded: None,
        };
        let printer = Printer::new(super::output_settings(&ctx.global), &stage);
        let result = purge_stage(&engine, &printer, &target, args, interactive).await?;
        code = code.max(result);
    }
    Ok(code)
}

/// The stages of `project` on the engine whose name matches `pattern` and whose newest
/// container or volume was created more than `age` ago, sorted.
pub async fn stale_stages(
    engine: &Engine,
    project: &str,
    pattern: &str,
    age: Duration,
) -> Result<Vec<String>> {
    let now = SystemTime::now();
    Ok(engine
        .project_stages(project)
        .await?
        .into_iter()
        .filter(|(stage, _)| glob_match(pattern, stage))
        .filter(|(_, objects)| {
            objects
                .newest
                .is_some_and(|newest| now.duration_since(newest).unwrap_or_default() >= age)
        })
        .map(|(stage, _)| stage)
        .collect())
}

async fn purge_stage(
    engine: &Engine,
    printer: &Printer,
    target: &Target<'_>,
    args: &PurgeArgs,
    interactive: bool,
) -> Result<i32> {
    let (stage, project) = (&target.stage, &target.project);
    let _lock = crate::lock::acquire(
        engine,
        project,
        stage,
        Duration::from_secs(args.timeout),
        printer,
    )
    .await?;
    let (stack_tags, custom_names) = match target.loaded {
        Some(loaded) => (
            crate::plan::image::stage_images(loaded)
                .into_iter()
                .map(|image| image.request.tag)
                .collect(),
            crate::plan::container::custom_names(loaded),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let (observed, networks, images) = tokio::try_join!(
        engine.observe_named(stage, project, &custom_names),
        engine.stage_networks(stage, project),
        engine.stage_images(stage, project, &stack_tags),
    )?;
    // Only what stackctl made: the tag it gave (another tag, and the image under it, stay),
    // or an image a rebuild left without any tag.
    let images: Vec<_> = images
        .into_iter()
        .filter(|image| !image.own_tags.is_empty() || image.dangling)
        .collect();
    let image_name = |image: &crate::engine::images::StageImage| {
        let short = image.id.trim_start_matches("sha256:");
        if image.own_tags.is_empty() {
            short[..short.len().min(12)].to_string()
        } else {
            image.own_tags.join(", ")
        }
    };
    if !args.yes && interactive {
        let mut question = format!("remove everything stage `{stage}` of `{project}` owns?\n");
        let containers: Vec<String> = observed.containers.iter().map(|c| c.name.clone()).collect();
        let networks_named: Vec<String> = networks.iter().map(|n| n.name.clone()).collect();
        let images_named: Vec<String> = images.iter().map(image_name).collect();
        for (kind, names) in [
            ("containers", &containers),
            ("volumes", &observed.volumes),
            ("networks", &networks_named),
            ("images", &images_named),
        ] {
            if !names.is_empty() {
                question.push_str(&format!("  {kind}: {}\n", names.join(", ")));
            }
        }
        if containers.is_empty()
            && observed.volumes.is_empty()
            && networks_named.is_empty()
            && images_named.is_empty()
        {
            question.push_str("  (nothing on the engine)\n");
        }
        question.push_str(&format!("purge stage `{stage}`? [y/N] "));
        if !confirm(&question) {
            printer.status("nothing removed");
            return Ok(crate::error::exit::FAILURE);
        }
    }
    let progress = printer.progress();
    let result = async {
        apply::remove_containers(engine, target.loaded, &observed.containers, &progress).await?;
        apply::remove_networks(engine, stage, project, &networks, &progress).await?;
        for volume in &observed.volumes {
            crate::interrupt::check()?;
            let line = progress.line("volume", volume);
            line.step("removing");
            engine.remove_volume(volume).await?;
            line.done("removed", None);
        }
        for image in &images {
            crate::interrupt::check()?;
            let line = progress.line("image", &image_name(image));
            line.step("removing");
            if !image.own_tags.is_empty() {
                for tag in &image.own_tags {
                    engine.remove_image_tag(tag).await?;
                }
                line.done("removed", None);
            } else if engine.remove_unused_image(&image.id).await? {
                line.done("removed", None);
            } else {
                line.done("kept", Some("a container uses it"));
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    progress.summary("purge", result.is_ok());
    result.map(|()| 0)
}

/// Ask on the terminal; only `y`/`yes` confirms.
fn confirm(question: &str) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(question.as_bytes());
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_patterns_match_like_the_shell() {
        assert!(glob_match("ci-*", "ci-123"));
        assert!(glob_match("ci-*", "ci-"));
        assert!(!glob_match("ci-*", "qa"));
        assert!(glob_match("*", "dev"));
        assert!(glob_match("ci-?2", "ci-12"));
        assert!(!glob_match("ci-?2", "ci-123"));
        assert!(glob_match("*-4*", "ci-42-b"));
        assert!(!glob_match("dev", "dev2"));
    }

    #[test]
    fn ages_are_human_durations() {
        assert_eq!(parse_age("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_age("soon").is_err());
    }
}
