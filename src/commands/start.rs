//! `stackctl start [SERVICE…]`: start stopped service containers, in parallel.

use anyhow::Result;

use super::{select_services, Context};
use crate::apply;
use crate::cli::ServicesArgs;

pub async fn run(ctx: &Context, args: &ServicesArgs) -> Result<i32> {
    let selection = select_services(ctx, args).await?;
    let (loaded, printer) = (&selection.loaded, &selection.printer);
    if !args.services.is_empty() {
        for service in &selection.wanted {
            let name = crate::plan::container::container_name(loaded, service);
            if !selection.containers.iter().any(|c| c.name == name) {
                printer.warn_with_hint(
                    &format!("service `{service}` has no container"),
                    &format!("`stackctl up {service}` creates it"),
                );
            }
        }
    }
    let progress = printer.progress();
    let result =
        apply::start_containers(&selection.engine, loaded, &selection.containers, &progress).await;
    progress.summary("start", result.is_ok());
    result.map(|()| 0)
}
