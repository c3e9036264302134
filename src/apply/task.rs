//! Running one-off tasks: what must exist first (the image, built when missing; the stage's
//! volumes and networks), then the attached container, through the same container path as
//! `up` ([`super::docker::container_config`]); and the `wait` step of sequences.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Result;

use super::docker::{build_request, container_config, DockerTarget};
use super::target::{Readiness, Target};
use crate::engine::attach::{Input, Outcome};
use crate::engine::{Engine, EngineError};
use crate::error::{Interrupted, UsageError};
use crate::names;
use crate::output::Printer;
use crate::plan::task::TaskPlan;
use crate::stack::LoadedStack;

/// Make sure the image, the stage's volumes and networks exist. The existence checks are
/// independent reads, so they run concurrently: on the common path (everything exists) a task
/// pays one round trip here, not one per object. Nothing is created before the image is known.
pub async fn prepare(
    engine: &Engine,
    loaded: &LoadedStack,
    plan: &TaskPlan,
    printer: &Printer,
    verbose: bool,
) -> Result<()> {
    let image = &plan.container.image;
    let volumes_exist = plan
        .volumes
        .iter()
        .map(|(volume, _)| engine.volume_exists(volume));
    let networks_exist = plan
        .networks
        .iter()
        .map(|network| engine.network_exists(network));
    let (image_id, volumes_exist, networks_exist) = tokio::try_join!(
        engine.image_id(image),
        futures_util::future::try_join_all(volumes_exist),
        futures_util::future::try_join_all(networks_exist),
    )?;
    if image_id.is_none() {
        let Some(build) = &plan.build else {
            return Err(UsageError::new(format!(
                "task `{}`: image `{image}` does not exist on this engine",
                plan.task
            ))
            .with_hint(format!(
                "build or load it first (`docker pull {image}` or `docker build -t {image} …`), or give the task `build:`"
            ))
            .into());
        };
        printer.status(&format!("build image `{image}`"));
        let output = move |line: &str| {
            if verbose {
                printer.status(&format!("  {line}"));
            }
        };
        let request = build_request(build);
        tokio::select! {
            built = engine.build_image(&request, &output) => { built?; }
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        }
    }
    for ((volume, driver), exists) in plan.volumes.iter().zip(volumes_exist) {
        if !exists {
            let labels = names::owner_labels(&loaded.stage, &loaded.project, names::role::VOLUME);
            engine
                .create_volume(volume, driver.as_deref(), &labels)
                .await?;
            printer.status(&format!("created volume `{volume}`"));
        }
    }
    for (network, exists) in plan.networks.iter().zip(networks_exist) {
        // The same labelled network `up` creates; whichever comes first makes it.
        if !exists {
            let labels = names::owner_labels(&loaded.stage, &loaded.project, names::role::NETWORK);
            engine.create_network(network, &labels).await?;
            printer.status(&format!("created network `{network}`"));
        }
    }
    Ok(())
}

/// Run the task's one-off container attached to `input`; it is removed on every path.
pub async fn run(
    engine: &Engine,
    plan: &TaskPlan,
    input: Input,
    tty: bool,
) -> Result<Outcome, EngineError> {
    engine
        .run_task(&container_config(&plan.container), input, tty)
        .await
}

/// The `wait` step: until every service is healthy (or running, without a healthcheck) and
/// every one-shot dependency has exited 0, within `deadline`.
pub async fn wait_for_stage(
    engine: &Engine,
    loaded: &LoadedStack,
    deadline: Instant,
) -> Result<()> {
    let target = DockerTarget::new(engine, loaded);
    let one_shots: HashSet<String> = crate::plan::up::one_shot_services(loaded);
    let waits = loaded.stack.services.keys().map(|service| {
        let container = names::container(&loaded.stage, &loaded.project, service);
        let readiness = if one_shots.contains(service) {
            Readiness::Completed
        } else {
            Readiness::Healthy
        };
        let target = &target;
        async move { target.wait(service, &container, readiness, deadline).await }
    });
    for result in futures_util::future::join_all(waits).await {
        result?;
    }
    Ok(())
}
