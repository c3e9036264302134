//! Whole-stage operations of `down`, `purge`, `stop` and `start`: many containers (or
//! networks) at once, [`PARALLEL`] at a time, each on its own progress line.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::stream::{self, StreamExt};

use super::{first_error, PARALLEL};
use crate::engine::networks::NetworkFound;
use crate::engine::Engine;
use crate::names::role;
use crate::observed::ObservedContainer;
use crate::output::{Line, Progress};
use crate::stack::LoadedStack;

/// Run `work` for each container, [`PARALLEL`] at a time; after an interrupt nothing new
/// starts. Every container is tried; the first error is the result.
async fn each_container<'a, F, Fut>(containers: &'a [ObservedContainer], work: F) -> Result<()>
where
    F: Fn(&'a ObservedContainer) -> Fut,
    Fut: Future<Output = Result<()>> + 'a,
{
    let results: Vec<Result<()>> = stream::iter(containers.iter().map(|container| {
        let work = work(container);
        async move {
            crate::interrupt::check()?;
            work.await
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect()
    .await;
    first_error(results)
}

/// End a container's line with `done` or, on an error, with `failed` and the error.
fn finish(line: Line, result: Result<()>, done: &str, failed: &str) -> Result<()> {
    match &result {
        Ok(()) => line.done(done, None),
        Err(err) => line.fail(failed, &format!("{err:#}")),
    }
    result
}

/// Run a running service container's `pre_stop` commands (from `stack`, when given) before
/// it is stopped; their failures are warnings.
async fn pre_stop(
    engine: &Engine,
    stack: Option<&LoadedStack>,
    container: &ObservedContainer,
    line: &Line,
    progress: &Progress,
) {
    let (Some(loaded), Some(service)) = (stack, container.service.as_deref()) else {
        return;
    };
    if container.role != role::SERVICE || container.state != "running" {
        return;
    }
    let Some(definition) = loaded.stack.services.get(service) else {
        return;
    };
    if definition.pre_stop.is_empty() {
        return;
    }
    line.step("pre_stop");
    super::hooks::run_pre_stop(engine, service, definition, &container.name, Some(progress)).await;
}

/// Stop and remove containers, [`PARALLEL`] at a time, each on its own line; a running
/// service's `pre_stop` commands (from `stack`) run first.
pub async fn remove_containers(
    engine: &Engine,
    stack: Option<&LoadedStack>,
    containers: &[ObservedContainer],
    progress: &Progress,
) -> Result<()> {
    each_container(containers, |container| async move {
        let line = progress.line(kind_of(container), &container.name);
        let result = async {
            if container.state == "running" || container.state == "restarting" {
                pre_stop(engine, stack, container, &line, progress).await;
                line.step("stopping");
                stop(engine, &container.name).await?;
            }
            line.step("removing");
            engine.remove_observed(container).await?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        finish(line, result, "removed", "remove")
    })
    .await
}

/// Stop containers, [`PARALLEL`] at a time; a running service's `pre_stop` commands (from
/// `stack`) run first.
pub async fn stop_containers(
    engine: &Engine,
    stack: Option<&LoadedStack>,
    containers: &[ObservedContainer],
    progress: &Progress,
) -> Result<()> {
    each_container(containers, |container| async move {
        if container.state != "running"
            && container.state != "restarting"
            && container.state != "paused"
        {
            progress.unchanged(kind_of(container), &container.name, "not running");
            return Ok(());
        }
        let line = progress.line(kind_of(container), &container.name);
        pre_stop(engine, stack, container, &line, progress).await;
        line.step("stopping");
        let result = stop(engine, &container.name).await;
        finish(line, result, "stopped", "stop")
    })
    .await
}

/// Start containers, [`PARALLEL`] at a time.
pub async fn start_containers(
    engine: &Engine,
    loaded: &LoadedStack,
    containers: &[ObservedContainer],
    progress: &Progress,
) -> Result<()> {
    each_container(containers, |container| async move {
        if container.state == "running" || container.state == "restarting" {
            progress.unchanged(kind_of(container), &container.name, "running");
            return Ok(());
        }
        let line = progress.line(kind_of(container), &container.name);
        line.step("starting");
        let service = container.service.clone().unwrap_or_default();
        let result = async {
            engine
                .start_container(&container.name)
                .await
                .map_err(|err| super::docker::start_error(loaded, &service, err))?;
            // A service's `post_start` commands run after every start, as in `up`.
            match loaded.stack.services.get(&service) {
                Some(definition)
                    if container.role == role::SERVICE && !definition.post_start.is_empty() =>
                {
                    line.step("post_start");
                    super::hooks::run_post_start(
                        engine,
                        &service,
                        &container.name,
                        &definition.post_start,
                        super::hooks::POST_START_TIMEOUT,
                        Some(progress),
                    )
                    .await
                }
                _ => Ok(()),
            }
        }
        .await;
        finish(line, result, "started", "start")
    })
    .await
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
                let mut failure = crate::error::Failure::new(err.to_string());
                if busy {
                    failure = failure.with_hint(format!("a container stackctl does not own is attached; see `docker network inspect {}`", network.id));
                }
                return Err(failure.into());
            }
            let late: Vec<_> = engine
                .observe(stage, project)
                .await?
                .containers
                .into_iter()
                .filter(|c| c.role != role::DATA)
                .collect();
            if !late.is_empty() {
                remove_containers(engine, None, &late, progress).await?;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = crate::interrupt::wait() => return Err(crate::error::Interrupted.into()),
            }
        }
    }
    Ok(())
}

/// Stop a container; on an interrupt stop waiting for its grace period (the engine finishes
/// the stop on its own) and report the interrupt.
async fn stop(engine: &Engine, name: &str) -> Result<()> {
    tokio::select! {
        stopped = engine.stop_container(name, None) => Ok(stopped?),
        _ = crate::interrupt::wait() => Err(crate::error::Interrupted.into()),
    }
}

fn kind_of(container: &ObservedContainer) -> &'static str {
    match container.role.as_str() {
        "data" => "data",
        "task" => "task",
        _ => "service",
    }
}
