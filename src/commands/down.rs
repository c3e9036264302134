//! `stackctl down`: remove the stage's containers (services, and task containers still
//! running or left by a killed `exec`) and its networks; keep volumes, data containers and
//! images.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{connect, load_stack, Context};
use crate::cli::DownArgs;
use crate::converge;
use crate::engine::networks::NetworkFound;
use crate::engine::Engine;
use crate::names::role;
use crate::output::Progress;

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
    let (observed, networks) = tokio::try_join!(
        engine.observe(&loaded.stage, &loaded.project),
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
        converge::remove_containers(&engine, &containers, &progress).await?;
        remove_networks(
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
    result.map(|()| 0)
}

/// How long a network removal keeps trying while the engine releases endpoints or a task
/// container that started after the stage was listed is being removed.
const NETWORK_DEADLINE: Duration = Duration::from_secs(15);

/// Remove the stage's networks by ID (every copy of a duplicated name goes). A network that
/// still has endpoints gets the stage's containers removed again (a task that started after
/// the stage was listed), then another try, until a deadline.
pub async fn remove_networks(
    engine: &Engine,
    stage: &str,
    project: &str,
    networks: &[NetworkFound],
    progress: &Progress,
) -> Result<()> {
    for network in networks {
        crate::interrupt::check()?;
        let line = progress.line("network", &network.name);
        line.step("removing");
        let deadline = Instant::now() + NETWORK_DEADLINE;
        loop {
            let err = match engine.remove_network(&network.id).await {
                Ok(()) => {
                    line.done("removed", None);
                    break;
                }
                Err(err) => err,
            };
            let busy = err.message.contains("active endpoints");
            if !busy || Instant::now() >= deadline {
                line.fail("remove", &err.to_string());
                let hint = if busy {
                    format!("\nhint: a container stackctl does not own is attached; see `docker network inspect {}`", network.id)
                } else {
                    String::new()
                };
                return Err(anyhow!("{err}{hint}"));
            }
            let late: Vec<_> = engine
                .observe(stage, project)
                .await?
                .containers
                .into_iter()
                .filter(|c| c.role != role::DATA)
                .collect();
            if !late.is_empty() {
                converge::remove_containers(engine, &late, progress).await?;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = crate::interrupt::wait() => return Err(crate::error::Interrupted.into()),
            }
        }
    }
    Ok(())
}
