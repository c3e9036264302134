//! `stackctl run SERVICE [-- CMD…]`: a one-off container from a service's definition (its
//! image, environment, volumes and networks; not its ports, healthcheck or restart policy),
//! attached to our streams like a task, exiting with the process's code and removed on every
//! path. What the service depends on is brought up first, as `stackctl up DEPENDENCY…` does
//! (healthy before the run starts), unless `--no-deps`.

use anyhow::Result;

use super::oneoff::{run_one_off, OneOff};
use super::{check_services, connect, load_stack, Context};
use crate::cli::RunArgs;
use crate::output::Mode;
use crate::plan::{task, up};
use crate::stack::model::Condition;

/// How long bringing up the dependencies may wait for their health (as `up`'s default).
const DEPENDENCIES_TIMEOUT: u64 = 300;

/// `stackctl up` of what the service depends on, with its progress on stderr. With `--json`
/// its events would mix into the process's output on stdout: then it is quiet, and only its
/// errors are shown.
async fn up_dependencies(ctx: &Context, services: Vec<String>) -> Result<()> {
    let mut printer = ctx.printer.clone();
    if printer.mode == Mode::Json {
        printer.mode = Mode::Plain;
        printer.quiet = true;
    }
    let ctx = Context {
        printer,
        ..ctx.clone()
    };
    let args = crate::cli::UpArgs {
        services,
        build: false,
        no_wait: false,
        timeout: DEPENDENCIES_TIMEOUT,
        dry_run: false,
        remove_orphans: false,
        renew_anon_volumes: false,
        pull: None,
        watch: false,
    };
    Box::pin(super::run_command(&ctx, crate::cli::Command::Up(args))).await?;
    Ok(())
}

pub async fn run(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    check_services(&loaded, std::slice::from_ref(&args.service))?;
    let plan = task::plan_run(&loaded, &args.service, &args.args, &task::short_id())?;
    let engine = connect(ctx, &loaded).await?;
    crate::apply::remote::check_binds(&engine, &loaded)?;
    let ctx = Context {
        printer,
        ..ctx.clone()
    };
    let dependencies = up::service_deps(&loaded, &args.service);
    if !args.no_deps && !dependencies.is_empty() {
        // Already running (and healthy, with a healthcheck), or completed when that is what
        // is asked: nothing to bring up or say.
        let observed = engine
            .observe_named(
                &loaded.stage,
                &loaded.project,
                &crate::plan::container::custom_names(&loaded),
            )
            .await?;
        let ready = dependencies.iter().all(|(service, condition)| {
            let name = crate::plan::container::container_name(&loaded, service);
            observed.container(&name).is_some_and(|c| match condition {
                Condition::ServiceCompletedSuccessfully => c.exit_code() == Some(0),
                _ => c.state == "running" && c.health.as_deref().is_none_or(|h| h == "healthy"),
            })
        });
        if !ready {
            let services = dependencies.into_iter().map(|(service, _)| service);
            up_dependencies(&ctx, services.collect()).await?;
        }
    }
    run_one_off(&ctx, &loaded, &engine, OneOff::Run, &plan, true).await
}
