//! `stackctl down`: remove the stage's containers (services, and task containers still
//! running or left by a killed `exec`) and its networks; keep volumes, data containers and
//! images.

use std::time::Duration;

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::apply;
use crate::cli::DownArgs;
use crate::names::role;

pub async fn run(ctx: &Context, args: &DownArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if crate::apply::swarm::is_swarm(&loaded) {
        return crate::apply::swarm::down(
            &super::endpoint(ctx, &loaded)?,
            &loaded,
            &printer,
            args.timeout,
        )
        .await;
    }
    let engine = connect(ctx, &loaded).await?;
    let _lock = crate::lock::acquire(
        &engine,
        &loaded.project,
        &loaded.stage,
        Duration::from_secs(args.timeout),
        &printer,
    )
    .await?;
    crate::data::recover_dead_loads(&engine, &loaded, &printer).await?;
    let custom_names = crate::plan::container::custom_names(&loaded);
    let (observed, networks) = tokio::try_join!(
        engine.observe_named(&loaded.stage, &loaded.project, &custom_names),
        engine.stage_networks(&loaded.stage, &loaded.project),
    )?;
    let progress = printer.progress();
    let result = async {
        let containers: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| c.role != role::DATA)
            .cloned()
            .collect();
        apply::remove_containers(&engine, Some(&loaded), &containers, &progress).await?;
        apply::remove_networks(
            &engine,
            &loaded.stage,
            &loaded.project,
            &networks,
            &progress,
        )
        .await?;
        // Images a rebuild replaced, now that no container of the stage uses them.
        engine
            .remove_replaced_images(&loaded.stage, &loaded.project)
            .await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    progress.summary("down", result.is_ok());
    result?;
    super::monitors::end_unused(&engine, &ctx.project, &loaded, &printer).await;
    Ok(0)
}
