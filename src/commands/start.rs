//! `stackctl start [SERVICE…]`: start stopped service containers, in parallel.

use std::time::Duration;

use anyhow::Result;

use super::{check_services, connect, load_stack, Context};
use crate::cli::ServicesArgs;
use crate::converge;
use crate::names::{self, role};

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
        .iter()
        .filter(|c| c.role == role::SERVICE)
        .filter(|c| c.service.as_ref().is_some_and(|s| wanted.contains(s)))
        .cloned()
        .collect();
    for service in &wanted {
        let name = names::container(&loaded.stage, &loaded.project, service);
        if observed.container(&name).is_none() && !args.services.is_empty() {
            printer.warn(&format!(
                "service `{service}` has no container\nhint: `stackctl up {service}` creates it"
            ));
        }
    }
    let progress = printer.progress();
    let result = converge::start_containers(&engine, &loaded, &containers, &progress).await;
    progress.summary("start", result.is_ok());
    result.map(|()| 0)
}
