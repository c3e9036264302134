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
use crate::error::{Failure, Interrupted};
use crate::names;
use crate::output::Printer;
use crate::plan::task::TaskPlan;
use crate::stack::model::PullPolicy;
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
        .map(|(volume, _)| engine.volume_labels(volume));
    let networks_found = plan
        .networks
        .iter()
        .map(|network| engine.networks_named(network));
    let (image_id, volumes_exist, networks_found) = tokio::try_join!(
        engine.image_id(image),
        futures_util::future::try_join_all(volumes_exist),
        futures_util::future::try_join_all(networks_found),
    )?;
    let refresh = plan.build.is_none()
        && image_id.is_some()
        && match plan.pull_policy {
            PullPolicy::Always => true,
            PullPolicy::Every(period) => engine
                .image_refreshed_at(image)
                .await?
                .and_then(|at| at.elapsed().ok())
                .is_none_or(|age| age >= period),
            _ => false,
        };
    if image_id.is_none() && plan.build.is_none() && plan.pull_policy == PullPolicy::Never {
        return Err(Failure::new(format!(
            "image `{image}` of task `{}` is not on this engine and its service's `pull_policy` is `never`",
            plan.task
        ))
        .with_hint("pull it first (`stackctl pull SERVICE` or `docker pull IMAGE`), or change the service's `pull_policy`")
        .into());
    }
    if image_id.is_none() || refresh {
        if let Some(build) = &plan.build {
            printer.status(&format!("build image `{image}`"));
            let output = move |line: &str| {
                if verbose {
                    printer.status(&format!("  {line}"));
                }
            };
            let request = build_request(build)?;
            tokio::select! {
                built = engine.build_image(&request, &output) => { built?; }
                _ = crate::interrupt::wait() => return Err(Interrupted.into()),
            }
        } else {
            // Not built by the stage: pulled from its registry, as `up` does.
            printer.status(&format!("pull image `{image}`"));
            let started = std::time::Instant::now();
            let owner = crate::registry::owner_label(loaded, &plan.task);
            let bytes = tokio::select! {
                pulled = super::docker::pull_image(engine, image, &owner, &|_, _| {}) => pulled?,
                _ = crate::interrupt::wait() => return Err(Interrupted.into()),
            };
            printer.status(&format!(
                "pulled image `{image}` ({}, {:.1}s)",
                crate::output::human_bytes(bytes),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    // Only a stage network that exists once, with the stage's labels, is used as it is;
    // anything else is settled under the stage lock (R6, R8, R11).
    let networks_ready = networks_found
        .iter()
        .all(|found| found.len() == 1 && found[0].is_stage(&loaded.stage, &loaded.project));
    let volumes_ready = volumes_exist.iter().all(|labels| {
        labels.as_ref().is_some_and(|labels| {
            labels.get(names::PROJECT) == Some(&loaded.project)
                && labels.get(names::STAGE) == Some(&loaded.stage)
        })
    });
    if networks_ready && volumes_ready {
        return Ok(());
    }
    // Creation is serialised per stage: parallel tasks after `down` make one network, and
    // the others wait for it.
    let _lock = crate::lock::acquire(
        engine,
        &loaded.project,
        &loaded.stage,
        LOCK_TIMEOUT,
        printer,
    )
    .await?;
    for (volume, driver) in &plan.volumes {
        // Creates it when missing, refuses one of that name that is not the stage's.
        let existed = engine.volume_labels(volume).await?.is_some();
        let labels = crate::plan::objects::volume_labels(loaded, volume)?;
        let options = crate::plan::container::volume_driver_opts(loaded, volume)
            .into_iter()
            .collect();
        engine
            .create_volume(volume, driver.as_deref(), &labels, &options)
            .await?;
        if !existed {
            printer.status(&format!("created volume `{volume}`"));
        }
    }
    for network in &plan.networks {
        // The same labelled network `up` creates; whichever comes first makes it.
        let wanted = crate::plan::objects::network(loaded, network)?;
        let (_, created) = engine.ensure_network(&wanted).await?;
        if created {
            printer.status(&format!("created network `{network}`"));
        }
    }
    Ok(())
}

/// How long a task waits for another stackctl changing the stage (an `up` holds the lock
/// through its health waits) before it creates the stage's networks or volumes.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

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
    let replicas = loaded.stack.services.keys().flat_map(|service| {
        crate::plan::container::replica_names(loaded, service)
            .into_iter()
            .map(move |container| (service, container))
    });
    let waits = replicas.map(|(service, container)| {
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
