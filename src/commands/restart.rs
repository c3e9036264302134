//! `stackctl restart [SERVICE…]`: stop and start the services' existing containers, in
//! dependency order, waiting for health as `up` does (through the same executor).

use std::time::Duration;

use anyhow::Result;

use super::{check_services, connect, load_stack, Context};
use crate::apply::docker::DockerTarget;
use crate::apply::{self, ApplyOptions, Target};
use crate::cli::RestartArgs;
use crate::error::Failure;
use crate::plan::restart;
use crate::plan::up::{self, PlanOptions};

pub async fn run(ctx: &Context, args: &RestartArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let wanted = check_services(&loaded, &args.services)?;
    let engine = connect(ctx, &loaded).await?;
    let timeout = Duration::from_secs(args.timeout);
    let _lock =
        crate::lock::acquire(&engine, &loaded.project, &loaded.stage, timeout, &printer).await?;
    let target = DockerTarget::new(&engine, &loaded);
    let observed = target.observe().await?;
    let options = PlanOptions {
        services: args.services.clone(),
        ..Default::default()
    };
    let up_plan = up::plan(&loaded, &observed.images, &observed, &options)
        .map_err(|e| e.into_error(&loaded))?;
    let plan = restart::plan(up_plan, &wanted).map_err(|missing| {
        let names: Vec<String> = missing.0.iter().map(|s| format!("`{s}`")).collect();
        Failure::new(format!(
            "no container to restart for {} on stage `{}`",
            names.join(", "),
            loaded.stage
        ))
        .with_hint(format!("`stackctl up {}` creates it", missing.0.join(" ")))
    })?;
    for warning in &plan.warnings {
        printer.warn(warning);
    }
    let progress = printer.progress();
    let target = target.with_hooks(progress.clone(), timeout);
    let result = apply::execute(
        &target,
        &plan,
        &ApplyOptions::new(!args.no_wait, timeout),
        &progress,
    )
    .await;
    progress.summary("restart", result.is_ok());
    result.map(|()| 0)
}
