//! `stackctl stop [SERVICE…]`: stop service containers (kept for `start`), in parallel.

use std::time::Duration;

use anyhow::Result;

use super::{check_services, connect, load_stack, Context};
use crate::cli::ServicesArgs;
use crate::converge;
use crate::names::role;

pub async fn run(ctx: &Context, args: &ServicesArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let wanted = check_services(&loaded, &args.services)?;
    let engine = connect().await?;
    let _lock = crate::lock::acquire(
        &loaded.project,
        &loaded.stage,
        Duration::from_secs(args.timeout),
        &printer,
    )
    .await?;
    let observed = engine.observe(&loaded.stage, &loaded.project).await?;
    let containers: Vec<_> = observed
        .containers
        .into_iter()
        .filter(|c| c.role == role::SERVICE)
        .filter(|c| c.service.as_ref().is_some_and(|s| wanted.contains(s)))
        .collect();
    let progress = printer.progress();
    let result = converge::stop_containers(&engine, &containers, &progress).await;
    progress.summary("stop", result.is_ok());
    result.map(|()| 0)
}
