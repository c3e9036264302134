//! `stackctl build [SERVICE…] [--no-cache]`: build the stage's images.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use futures_util::StreamExt;

use super::Context;
use crate::cli::BuildArgs;
use crate::engine::Engine;
use crate::error::{exit, Interrupted, UsageError};
use crate::output::{Mode, Printer};
use crate::plan::image::{self as images, ImageBuild};
use crate::stack::{self, model::Task, LoadedStack};

use crate::apply::PARALLEL_BUILDS;

pub async fn run(mut ctx: Context, args: &BuildArgs) -> Result<i32> {
    let loaded = stack::load(&ctx.project)?;
    ctx.printer.add_secrets(loaded.secrets.iter().cloned());
    let printer = ctx.printer;
    let builds = prepare(&loaded, &args.services, args.no_cache, &printer)?;
    if builds.is_empty() {
        printer.status(if args.services.is_empty() {
            "nothing to build: no service, data container or task has `build:`"
        } else {
            "nothing to build"
        });
        return Ok(exit::OK);
    }
    let engine = Engine::connect().await?;
    let started = Instant::now();
    let count = builds.len();
    let outcome = build_images(&engine, builds, &printer, ctx.global.verbose > 0).await;
    let elapsed = started.elapsed().as_millis();
    match outcome {
        Ok(()) => {
            if printer.mode == Mode::Json {
                printer.event(&printer.stage, "summary", "build", "done", elapsed);
            } else {
                let noun = if count == 1 { "image" } else { "images" };
                printer.status(&format!(
                    "built {count} {noun} ({:.1}s)",
                    elapsed as f64 / 1000.0
                ));
            }
            Ok(exit::OK)
        }
        Err(err) => {
            if printer.mode == Mode::Json {
                printer.event(&printer.stage, "summary", "build", "failed", elapsed);
            }
            Err(err)
        }
    }
}

/// Build the named entries' images (all when `names` is empty) with the same checks, output
/// and failure handling as `stackctl build`; for the built-in `build` step of task
/// sequences and for `up --build`.
pub async fn build_stage(
    engine: &Engine,
    loaded: &LoadedStack,
    printer: &Printer,
    names: &[String],
    no_cache: bool,
    verbose: bool,
) -> Result<()> {
    let builds = prepare(loaded, names, no_cache, printer)?;
    build_images(engine, builds, printer, verbose).await
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
    printer: &Printer,
    verbose: bool,
) -> Result<()> {
    tokio::select! {
        result = build_all(engine, builds, printer, verbose) => result,
        _ = crate::interrupt::wait() => Err(Interrupted.into()),
    }
}

/// Run the builds, at most `PARALLEL_BUILDS` at once. After a failure no new build starts;
/// those already running finish. The first failure is returned, later ones are printed.
async fn build_all(
    engine: &Engine,
    builds: Vec<ImageBuild>,
    printer: &Printer,
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
                let result = build_one(engine, &build, printer, verbose).await;
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                result
            }
        })
        .buffer_unordered(PARALLEL_BUILDS)
        .collect()
        .await;
    let mut errors = results.into_iter().filter_map(Result::err);
    match errors.next() {
        None => Ok(()),
        Some(first) => {
            for other in errors {
                eprintln!("error: {}", printer.mask(&format!("{other:#}")));
            }
            Err(first)
        }
    }
}

async fn build_one(
    engine: &Engine,
    build: &ImageBuild,
    printer: &Printer,
    verbose: bool,
) -> Result<()> {
    let tag = &build.request.tag;
    let name = build.name.clone();
    printer.event(tag, "image", "build", "started", 0);
    let started = Instant::now();
    let progress_printer = printer.clone();
    // One line per step; every output line with `-v`.
    let progress = move |line: &str| {
        if verbose || line.starts_with("Step ") {
            progress_printer.status(&format!("build {name}: {line}"));
        }
    };
    let request = crate::apply::docker::build_request(&build.request);
    let result = engine.build_image(&request, &progress).await;
    let elapsed = started.elapsed().as_millis().max(1);
    match result {
        Ok(_) => {
            printer.event(tag, "image", "build", "done", elapsed);
            Ok(())
        }
        Err(err) => {
            printer.event(tag, "image", "build", "failed", elapsed);
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
    let mut selected: Vec<ImageBuild> = Vec::new();
    for build in all {
        let chosen = wanted.is_empty() || wanted.contains(&build.name);
        if chosen && !selected.iter().any(|s| s.request.tag == build.request.tag) {
            selected.push(build);
        }
    }
    Ok(selected)
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
