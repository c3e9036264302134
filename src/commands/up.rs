//! `stackctl up`: converge the stage to its stack file, then wait for health.

use std::time::Duration;

use anyhow::Result;

use super::{check_services, connect, load_stack, pull_policy, Context};
use crate::apply::docker::DockerTarget;
use crate::apply::up::{converge, observe_and_plan};
use crate::apply::ApplyOptions;
use crate::cli::UpArgs;
use crate::output::Mode;
use crate::plan::up::{Plan, PlanOptions};

pub async fn run(ctx: &Context, args: &UpArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if crate::apply::swarm::is_swarm(&loaded) {
        if args.watch {
            crate::apply::swarm::refuse_watch(&loaded, "up --watch")?;
        }
        check_services(&loaded, &args.services)?;
        let options = crate::apply::swarm::UpOptions {
            services: args.services.clone(),
            build: args.build,
            pull: args.pull.map(pull_policy),
            dry_run: args.dry_run,
            no_wait: args.no_wait,
            remove_orphans: args.remove_orphans,
            timeout: args.timeout,
        };
        return crate::apply::swarm::up(
            &super::endpoint(ctx, &loaded)?,
            &loaded,
            &printer,
            &options,
        )
        .await;
    }
    crate::registry::check_references(&loaded)?;
    let engine = connect(ctx, &loaded).await?;
    crate::apply::remote::check_binds(&engine, &loaded)?;
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
    // `up --watch` goes on watching in `super::run_command`, the stage's lock released.
    Ok(0)
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
