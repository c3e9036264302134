//! `stackctl down`: remove the stage's containers (services and leftover task containers)
//! and its networks; keep volumes, data containers and images.

use std::time::Duration;

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::apply;
use crate::cli::DownArgs;
use crate::names::role;

pub async fn run(ctx: &Context, args: &DownArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let engine = connect().await?;
    let _lock = crate::lock::acquire(
        &loaded.project,
        &loaded.stage,
        Duration::from_secs(args.timeout),
        &printer,
    )
    .await?;
    let observed = engine.observe(&loaded.stage, &loaded.project).await?;
    let progress = printer.progress();
    let result = async {
        let containers: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| c.role != role::DATA)
            .cloned()
            .collect();
        apply::remove_containers(&engine, &containers, &progress).await?;
        apply::remove_networks(&engine, &observed.networks, &progress).await
    }
    .await;
    progress.summary("down", result.is_ok());
    result.map(|()| 0)
}
