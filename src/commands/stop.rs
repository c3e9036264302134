//! `stackctl stop [SERVICE…]`: stop service containers (kept for `start`), in parallel.

use anyhow::Result;

use super::{select_services, Context};
use crate::apply;
use crate::cli::ServicesArgs;

pub async fn run(ctx: &Context, args: &ServicesArgs) -> Result<i32> {
    let selection = select_services(ctx, args).await?;
    let warn = |message: &str| selection.printer.warn(message);
    apply::docker::pre_stop_hooks(
        &selection.engine,
        &selection.loaded,
        &selection.containers,
        &warn,
    )
    .await;
    let progress = selection.printer.progress();
    let result = apply::stop_containers(&selection.engine, &selection.containers, &progress).await;
    progress.summary("stop", result.is_ok());
    result.map(|()| 0)
}
