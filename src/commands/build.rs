//! `stackctl build [SERVICE…] [--no-cache]`: build the stage's images.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use futures_util::StreamExt;

use super::Context;
use crate::cli::BuildArgs;
use crate::engine::Engine;
use crate::error::{exit, Interrupted, UsageError};
use crate::output::{Mode, Printer, Progress};
use crate::plan::image::{self as images, ImageBuild};
use crate::stack::{self, model::Task, LoadedStack};

use crate::apply::PARALLEL_BUILDS;

pub async fn run(mut ctx: Context, args: &BuildArgs) -> Result<i32> {
    let loaded = stack::load(&ctx.project)?;
    ctx.printer.add_secrets(loaded.secrets.iter().cloned());
    let printer = ctx.printer.clone();
    let builds = prepare(&loaded, &args.services, args.no_cache, &printer)?;
    if builds.is_empty() {
        printer.status(if args.services.is_empty() {
            "nothing to build: no service, data container or task has `build:`"
        } else {
            "nothing to build"
        });
        return Ok(exit::OK);
    }
    let engine = super::connect(&ctx, &loaded).await?;
    let progress = printer.progress();
    let outcome = build_images(&engine, builds, &progress, ctx.global.verbose > 0).await;
    progress.summary("build", outcome.is_ok());
    outcome.map(|()| exit::OK)
}

/// The checked builds to run: selected, deduplicated by tag, contexts verified.
fn prepare(
    loaded: &LoadedStack,
    names: &[String],
    no_cache: bool,
    printer: &Printer,
) -> Result<Vec<ImageBuild>> {
    let mut builds = select(loaded, names, printer)?;
    for build in &mut builds {
        build.request.no_cache = no_cache;
    }
    images::check_sources(loaded, &builds)?;
    Ok(builds)
}

/// Run the builds until done, or until an interrupt (the engine then stops the build and
/// removes its container).
async fn build_images(
    engine: &Engine,
    builds: Vec<ImageBuild>,
    progress: &Progress,
    verbose: bool,
) -> Result<()> {
    tokio::select! {
        result = build_all(engine, builds, progress, verbose) => result,
        _ = crate::interrupt::wait() => Err(Interrupted.into()),
    }
}

/// Run the builds, at most `PARALLEL_BUILDS` at once. After a failure no new build starts;
/// those already running finish. Every failure is returned (`Several` when more than one).
async fn build_all(
    engine: &Engine,
    builds: Vec<ImageBuild>,
    progress: &Progress,
    verbose: bool,
) -> Result<()> {
    let failed = Arc::new(AtomicBool::new(false));
    let results: Vec<Result<()>> = futures_util::stream::iter(builds)
        .map(|build| {
            let failed = failed.clone();
            async move {
                if failed.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let result = build_one(engine, &build, progress, verbose).await;
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                result
            }
        })
        .buffer_unordered(PARALLEL_BUILDS)
        .collect()
        .await;
    let mut errors: Vec<anyhow::Error> = results.into_iter().filter_map(Result::err).collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(crate::error::Several(errors).into()),
    }
}

/// One build on its own line: `building` (the builder's steps shown on the live line, or as
/// plain lines), then `built` or a failed `build`: the same events as `up` builds send.
async fn build_one(
    engine: &Engine,
    build: &ImageBuild,
    progress: &Progress,
    verbose: bool,
) -> Result<()> {
    let line = progress.line("image", &build.request.tag);
    line.step("building");
    let name = &build.name;
    let printer = progress.printer();
    // One line per step; every output line with `-v`.
    let shown = |text: &str| {
        if verbose || crate::engine::build::is_step(text) {
            if printer.mode == Mode::Live {
                line.detail(text);
            } else {
                printer.status(&format!("build {name}: {text}"));
            }
        }
    };
    let request = match crate::apply::docker::build_request(&build.request) {
        Ok(request) => request,
        Err(err) => {
            line.fail("build", &err.to_string());
            return Err(err);
        }
    };
    match engine.build_image(&request, &shown).await {
        Ok(_) if request.also_tags.is_empty() => {
            line.done("built", None);
            Ok(())
        }
        Ok(_) => {
            let also = format!("also tagged {}", request.also_tags.join(", "));
            line.done("built", Some(&also));
            Ok(())
        }
        Err(err) => {
            line.fail("build", &err.to_string());
            Err(err)
        }
    }
}

/// The builds the named entries need (all when none is named), one per tag. An unknown name
/// is a usage error with a suggestion; a known one without `build:` only gets a warning.
fn select(loaded: &LoadedStack, wanted: &[String], printer: &Printer) -> Result<Vec<ImageBuild>> {
    let all = images::stage_images(loaded);
    let stack = &loaded.stack;
    let known: Vec<&str> = stack
        .services
        .keys()
        .chain(stack.data_containers.keys())
        .chain(
            stack
                .tasks
                .iter()
                .filter(|(_, task)| matches!(task, Task::Container(_)))
                .map(|(name, _)| name),
        )
        .map(String::as_str)
        .collect();
    for name in wanted {
        if !known.contains(&name.as_str()) {
            let mut error = UsageError::new(format!(
                "no service, data container or task `{name}` in `{}`",
                display_file(loaded)
            ));
            error = match suggest(name, &known) {
                Some(close) => error.with_hint(format!("did you mean `{close}`?")),
                None if known.is_empty() => error.with_hint("the stack file defines none"),
                None => error.with_hint(format!("known names: {}", known.join(", "))),
            };
            return Err(error.into());
        }
        if !all.iter().any(|b| &b.name == name) {
            printer.warn(&format!(
                "`{name}` has no `build:`; nothing to build for it"
            ));
        }
    }
    let selected: Vec<ImageBuild> = all
        .into_iter()
        .filter(|build| wanted.is_empty() || wanted.contains(&build.name))
        .collect();
    // One build per tag, and one for entries whose builds are identical.
    Ok(images::merge_shared(selected))
}

fn display_file(loaded: &LoadedStack) -> String {
    loaded
        .file
        .strip_prefix(&loaded.dir)
        .unwrap_or(&loaded.file)
        .display()
        .to_string()
}

/// The closest known name, when it is close enough to be a likely typo.
fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["api", "postgres", "postgres_data"];
        assert_eq!(suggest("postgre", &known), Some("postgres"));
        assert_eq!(suggest("apii", &known), Some("api"));
        assert_eq!(suggest("zzz", &known), None);
    }
}
