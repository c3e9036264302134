//! `stackctl run SERVICE [-- CMD…]`: a one-off container from a service's definition (its
//! image, environment, volumes and networks; not its ports, healthcheck or restart policy),
//! attached to our streams like a task, exiting with the process's code and removed on every
//! path. What the service depends on is not started: `stackctl up` does that.

use anyhow::Result;

use super::exec::{run_one_off, OneOff};
use super::{check_services, connect, load_stack, Context};
use crate::cli::RunArgs;
use crate::plan::task;

pub async fn run(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    check_services(&loaded, std::slice::from_ref(&args.service))?;
    let plan = task::plan_run(&loaded, &args.service, &args.args, &task::short_id())?;
    let engine = connect().await?;
    let ctx = Context {
        printer,
        ..ctx.clone()
    };
    run_one_off(&ctx, &loaded, &engine, OneOff::Run, &plan, true).await
}
