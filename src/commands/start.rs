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
    let started =
        apply::start_containers(&selection.engine, loaded, &selection.containers, &progress).await;
    let result = match started {
        Ok(()) => post_start_hooks(&selection).await,
        Err(err) => Err(err),
    };
    progress.summary("start", result.is_ok());
    result.map(|()| 0)
}

/// The `post_start` hooks of the service containers just started, in parallel.
async fn post_start_hooks(selection: &super::ServiceSelection) -> Result<()> {
    let loaded = &selection.loaded;
    let runs = selection
        .containers
        .iter()
        .filter(|c| c.role == crate::names::role::SERVICE && c.state != "running")
        .filter_map(|c| {
            let service = c.service.as_deref()?;
            let has = loaded
                .stack
                .services
                .get(service)
                .is_some_and(|s| !s.post_start.is_empty());
            has.then(|| {
                apply::docker::run_hooks(&selection.engine, loaded, service, &c.name, "post_start")
            })
        });
    apply::first_error(futures_util::future::join_all(runs).await)
}
