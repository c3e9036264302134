//! `stackctl rollback [SERVICE…]`: Swarm services back to the spec they had before their last
//! update, waited until they run it.

use anyhow::Result;

use super::{check_services, load_stack, Context};
use crate::cli::RollbackArgs;
use crate::error::UsageError;

pub async fn run(ctx: &Context, args: &RollbackArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if !crate::apply::swarm::is_swarm(&loaded) {
        return Err(UsageError::new(format!(
            "`rollback` returns Swarm services to their previous spec, and {} deploys to one engine",
            loaded.file_display()
        ))
        .with_hint("on one engine, check out the previous stack file and run `stackctl up`")
        .into());
    }
    let wanted = check_services(&loaded, &args.services)?;
    crate::apply::swarm::rollback(
        &super::endpoint(ctx, &loaded)?,
        &loaded,
        &printer,
        &wanted,
        !args.no_wait,
        args.timeout,
    )
    .await
}
