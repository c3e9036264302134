//! `stackctl up`: converge the stage to its stack file, then wait for health.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::apply::docker::DockerTarget;
use crate::apply::{self, ApplyOptions, Target};
use crate::cli::{PullArg, UpArgs};
use crate::context::digest::{self, ContextDigest, Inputs};
use crate::error::UsageError;
use crate::observed::Observed;
use crate::output::Mode;
use crate::plan::image::ImageSpec;
use crate::plan::up::{self, Plan, PlanOptions};
use crate::stack::model::PullPolicy;
use crate::stack::LoadedStack;

pub async fn run(ctx: &Context, args: &UpArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if super::swarm::is_swarm(&loaded) {
        return super::swarm::up(ctx, args).await;
    }
    crate::registry::check_references(&loaded)?;
    let engine = connect(ctx, &loaded).await?;
    super::remote::check_binds(&engine, &loaded)?;
    let timeout = Duration::from_secs(args.timeout);
    let _lock = if args.dry_run {
        None
    } else {
        Some(
            crate::lock::acquire(&engine, &loaded.project, &loaded.stage, timeout, &printer)
                .await?,
        )
    };
    if !args.dry_run {
        crate::data::recover_dead_loads(&engine, &loaded, &printer).await?;
    }
    let mut options = PlanOptions {
        services: args.services.clone(),
        build: args.build,
        remove_orphans: args.remove_orphans,
        renew_anon_volumes: args.renew_anon_volumes,
        pull: args.pull.map(pull_policy),
        ..Default::default()
    };
    let target = DockerTarget::new(&engine, &loaded);
    let first = observe_and_plan(&engine, &target, &loaded, &mut options, !args.dry_run).await?;
    for warning in &first.warnings {
        printer.warn(warning);
    }
    if args.dry_run {
        print_plan(ctx, &first);
        return Ok(0);
    }
    let progress = printer.progress();
    let target = target.with_hooks(progress.clone(), timeout);
    let apply_options = ApplyOptions::new(!args.no_wait, timeout);
    let result = converge(
        &engine,
        &target,
        &loaded,
        first,
        options,
        &apply_options,
        &progress,
    )
    .await;
    progress.summary("up", result.is_ok());
    // Failures carry log lines and health output of containers: the reporter masks the
    // stage's secrets in them.
    result?;
    drop(_lock);
    if args.watch {
        return super::watch::watch(ctx, &args.services, false).await;
    }
    Ok(0)
}

/// The policy `up --pull` gives every service.
pub(crate) fn pull_policy(arg: PullArg) -> PullPolicy {
    match arg {
        PullArg::Always => PullPolicy::Always,
        PullArg::Missing => PullPolicy::Missing,
        PullArg::Never => PullPolicy::Never,
    }
}

/// Observe the stage (and, with `check`, its networks and volumes) beside computing the
/// digests of the build inputs, and plan what `options` asks for; images whose inputs
/// changed are marked stale in `options`.
pub(crate) async fn observe_and_plan(
    engine: &crate::engine::Engine,
    target: &DockerTarget<'_>,
    loaded: &LoadedStack,
    options: &mut PlanOptions,
    check: bool,
) -> Result<Plan> {
    // The build inputs' digests are computed beside the observe (they read only files).
    let digests = context_digests(loaded);
    let (observed, digests) = if !check {
        tokio::try_join!(target.observe(), digests)?
    } else {
        // Checked beside the observe, not after it: no extra round trip on the critical path.
        let (observed, digests, ()) =
            tokio::try_join!(target.observe(), digests, check_existing(engine, loaded))?;
        (observed, digests)
    };
    for (tag, reason) in stale_images(loaded, &observed, digests) {
        options.stale.entry(tag).or_insert(reason);
    }
    make_plan(loaded, &observed, options)
}

/// Carry out `first` (planned by `observe_and_plan`): the builds, a fresh plan with the
/// images built, its actions, then the removal of the images the builds replaced.
pub(crate) async fn converge(
    engine: &crate::engine::Engine,
    target: &DockerTarget<'_>,
    loaded: &LoadedStack,
    first: Plan,
    mut options: PlanOptions,
    apply_options: &ApplyOptions,
    progress: &crate::output::Progress,
) -> Result<()> {
    let mut current = first;
    if current.fetches().next().is_some() {
        options.built =
            apply::build_images(target, &current, apply_options, progress, false).await?;
        let observed = target.observe().await?;
        current = make_plan(loaded, &observed, &options)?;
    }
    apply::execute(target, &current, apply_options, progress).await?;
    if !options.built.is_empty() {
        // The images the builds replaced, now that the containers use the new ones (R12).
        engine
            .remove_replaced_images(&loaded.stage, &loaded.project)
            .await?;
    }
    Ok(())
}

fn make_plan(loaded: &LoadedStack, observed: &Observed, options: &PlanOptions) -> Result<Plan> {
    up::plan(loaded, &observed.images, observed, options).map_err(|unknown| {
        let known: Vec<&str> = loaded.stack.services.keys().map(String::as_str).collect();
        UsageError::new(format!("no service `{}` in this stack", unknown.0))
            .with_hint(format!("services: {}", known.join(", ")))
            .into()
    })
}

/// `up --dry-run`: the plan on stdout, as text or one JSON event per action.
fn print_plan(ctx: &Context, plan: &Plan) {
    let printer = &ctx.printer;
    if printer.mode == Mode::Json {
        for action in &plan.actions {
            let (kind, object, verb, reason) = action.describe();
            printer.plan_event(&object, kind, verb, &reason);
            for (object, reason) in action.pre_start_lines() {
                printer.plan_event(&object, "service", "pre_start", &reason);
            }
        }
        return;
    }
    if plan.actions.is_empty() {
        printer.data("nothing to do");
        return;
    }
    printer.data(&plan.to_string());
}

/// The stage's existing networks and volumes: a driver the stack changed is named, and a
/// network name held twice (an older version's race) is repaired before anything uses it.
async fn check_existing(engine: &crate::engine::Engine, loaded: &LoadedStack) -> Result<()> {
    let networks = crate::plan::objects::networks(loaded)?;
    engine
        .check_networks(&loaded.stage, &loaded.project, &networks)
        .await?;
    engine
        .check_volume_drivers(&crate::plan::objects::volume_drivers(loaded))
        .await?;
    Ok(())
}

/// The digest of each stage build's inputs now, by image tag, with its context directory.
/// A context that cannot be read is left out: its build reports the problem.
pub(crate) async fn context_digests(
    loaded: &LoadedStack,
) -> Result<Vec<(String, PathBuf, ContextDigest)>> {
    let builds: Vec<ImageSpec> = crate::plan::image::stage_images(loaded)
        .into_iter()
        .map(|b| b.request)
        .collect();
    if builds.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tokio::task::spawn_blocking(move || {
        builds
            .into_iter()
            .filter_map(|build| {
                let digest = digest::of_build(&digest::BuildInputs {
                    root: &build.context,
                    dockerfile: build.dockerfile.as_deref(),
                    dockerfile_inline: build.dockerfile_inline.as_deref(),
                    inputs: Inputs {
                        args: &build.args,
                        target: build.target.as_deref(),
                    },
                })
                .ok()?;
                Some((build.tag, build.context, digest))
            })
            .collect()
    })
    .await?)
}

/// The images whose recorded inputs differ from today's, with the reason `up` gives.
pub(crate) fn stale_images(
    loaded: &LoadedStack,
    observed: &Observed,
    digests: Vec<(String, PathBuf, ContextDigest)>,
) -> HashMap<String, String> {
    // A file is named from the project directory (`api/app.py`), as the user sees it.
    let shown = |root: &PathBuf, entry: String| -> String {
        if entry.starts_with("build arg ") || entry.starts_with("Dockerfile ") {
            return entry;
        }
        match root.strip_prefix(&loaded.dir) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                format!("{}/{entry}", rel.to_string_lossy())
            }
            _ => entry,
        }
    };
    digests
        .into_iter()
        .filter(|(tag, _, _)| observed.images.contains_key(tag))
        .filter_map(|(tag, root, now)| {
            let reason = match observed.image_contexts.get(&tag) {
                Some(recorded) if *recorded == now.digest => return None,
                Some(recorded) => match digest::changed_entry(&root, recorded, &now) {
                    Some(entry) => format!("build context changed: {}", shown(&root, entry)),
                    None => "build context changed".to_string(),
                },
                None => "build inputs not recorded on the image".to_string(),
            };
            Some((tag, reason))
        })
        .collect()
}
