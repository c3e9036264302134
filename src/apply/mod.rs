//! The executor: runs a [`Plan`] through a [`Target`]. Images first (in parallel, bounded),
//! then networks, volumes and data containers, then services in dependency order with
//! independent ones in parallel (bounded), each `depends_on` condition awaited with a
//! deadline; finally every service with a healthcheck is awaited. After an interrupt nothing
//! new starts (not even the next phase of an action under way) and the run ends in
//! [`Interrupted`] (exit 130); the engine's in-flight calls finish, long waits (a build, a
//! stop's grace period, a health wait) are given up at once.
//!
//! - [`target`]: the seam: what the executor asks of a target.
//! - [`docker`]: the Docker engine as a target; the plan → engine translation.
//! - [`task`]: running one-off tasks (what must exist first, then the attached container).
//! - [`remote`]: what changes when the engine is on another machine (bind mounts, ports).
//! - [`swarm`]: a stage on a Docker Swarm: its services converged, waited, listed, rolled back
//!   (the road beside the executor, until it goes behind the target seam).
//! - [`up`]: `up` as a library: observe beside the build inputs' digests, plan, converge.
//! - [`bulk`]: whole-stage stops, starts and removals (`down`, `purge`, `stop`, `start`).

pub mod bulk;
pub mod docker;
pub mod hooks;
pub mod remote;
pub mod swarm;
pub mod target;
pub mod task;
pub mod up;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures_util::future::join_all;

use tokio::sync::{watch, Semaphore};

pub use bulk::{remove_containers, remove_networks, start_containers, stop_containers};
pub use target::{Readiness, Target};

use crate::error::{Failure, Interrupted};
use crate::output::Progress;
use crate::plan::up::{Action, Change, Plan};
use crate::stack::model::Condition;

/// How many engine operations run at once. High enough that a small stack's containers all
/// stop (or start) in one wave: with 4, the fifth container's stop waited for the first one,
/// adding a whole stop to `down` (BENCHMARKS.md).
pub const PARALLEL: usize = 16;

/// Builds running at once, in `up` as in `build`. Measured on two cores with the classic
/// builder: two independent uncached builds took 6-7 s side by side against 10-11 s one
/// after the other.
pub const PARALLEL_BUILDS: usize = 2;

/// Pulls running at once (beside the builds): the engine downloads each image's layers in
/// parallel itself (three at a time), so a few images at once keep the link busy.
pub const PARALLEL_PULLS: usize = 4;

/// Where the executor learns of an interrupt: the process's signals, or (in tests) a switch.
#[derive(Debug, Clone)]
pub enum Interrupt {
    /// SIGINT / SIGTERM of this process (`crate::interrupt`).
    Process,
    /// Turned on by its sender.
    Switch(watch::Receiver<bool>),
}

impl Interrupt {
    /// A switch and its sender (`send(true)` interrupts).
    pub fn switch() -> (watch::Sender<bool>, Interrupt) {
        let (sender, receiver) = watch::channel(false);
        (sender, Interrupt::Switch(receiver))
    }

    pub fn requested(&self) -> bool {
        match self {
            Interrupt::Process => crate::interrupt::requested(),
            Interrupt::Switch(receiver) => *receiver.borrow(),
        }
    }

    /// `Err(Interrupted)` once interrupted: call before starting anything.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.requested() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// Resolves when interrupted (at once if already).
    pub async fn wait(&self) {
        match self {
            Interrupt::Process => crate::interrupt::wait().await,
            Interrupt::Switch(receiver) => {
                let mut receiver = receiver.clone();
                let _ = receiver.wait_for(|on| *on).await;
            }
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Wait for every service with a healthcheck to be healthy.
    pub wait: bool,
    /// Bound on every wait of this run, from its start.
    pub timeout: Duration,
    /// Actions at once.
    pub parallel: usize,
    /// Builds at once.
    pub parallel_builds: usize,
    /// Pulls at once.
    pub parallel_pulls: usize,
    pub interrupt: Interrupt,
}

impl ApplyOptions {
    pub fn new(wait: bool, timeout: Duration) -> Self {
        ApplyOptions {
            wait,
            timeout,
            parallel: PARALLEL,
            parallel_builds: PARALLEL_BUILDS,
            parallel_pulls: PARALLEL_PULLS,
            interrupt: Interrupt::Process,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Ready,
    Failed,
}

/// A service that failed because one it depends on failed (reported there, not here).
#[derive(Debug, thiserror::Error)]
#[error("skipped: `{0}` failed")]
struct Skipped(String);

/// Build and pull the images the plan asks for, side by side: at most
/// [`ApplyOptions::parallel_builds`] builds and [`ApplyOptions::parallel_pulls`] pulls at
/// once; returns the references built or pulled. After a failure nothing new starts; an
/// interrupt gives up the builds and pulls under way.
pub async fn build_images<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &Progress,
    no_cache: bool,
) -> Result<HashSet<String>> {
    let failed = std::sync::atomic::AtomicBool::new(false);
    let failed = &failed;
    let build_permits = &Semaphore::new(options.parallel_builds.max(1));
    let pull_permits = &Semaphore::new(options.parallel_pulls.max(1));
    let fetches = plan.fetches().map(|action| async move {
        let permits = if matches!(action, Action::Build { .. }) {
            build_permits
        } else {
            pull_permits
        };
        let _permit = permits.acquire().await.map_err(|e| anyhow!(e))?;
        options.interrupt.check()?;
        if failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let result: Result<Vec<String>> = match action {
            Action::Build {
                owner,
                image,
                reason,
                build,
            } => {
                let mut spec = (**build).clone();
                spec.no_cache = no_cache;
                let line = progress.line("image", image);
                line.step("building");
                let shown = |text: &str| line.detail(text);
                let result = tokio::select! {
                    built = target.build(&spec, &shown) => built,
                    _ = options.interrupt.wait() => Err(Interrupted.into()),
                };
                match result {
                    Ok(()) => {
                        if spec.also_tags.is_empty() {
                            line.done("built", Some(reason));
                        } else {
                            let also =
                                format!("{reason}; also tagged {}", spec.also_tags.join(", "));
                            line.done("built", Some(&also));
                        }
                        Ok(spec.tags().cloned().collect())
                    }
                    Err(err) => {
                        line.fail("build", &format!("{err:#}"));
                        Err(err.context(format!("build the image of `{owner}`")))
                    }
                }
            }
            Action::Pull { owner, image, .. } => pull_one(target, options, progress, owner, image)
                .await
                .map(|pulled| pulled.into_iter().collect()),
            _ => Ok(Vec::new()),
        };
        if result.is_err() {
            failed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        result
    });
    let results: Vec<Result<Vec<String>>> = join_all(fetches).await;
    let mut built = HashSet::new();
    let mut outcomes = Vec::new();
    for result in results {
        match result {
            Ok(images) if images.is_empty() => {}
            Ok(images) => {
                built.extend(images);
                outcomes.push(Ok(()));
            }
            Err(err) => outcomes.push(Err(err)),
        }
    }
    first_error(outcomes)?;
    options.interrupt.check()?;
    Ok(built)
}

/// How often a pull's progress becomes a JSON event (the live line takes every update).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Pull one image on its own progress line: start, bytes (live, or throttled JSON events),
/// then done with its size, or failed.
async fn pull_one<T: Target>(
    target: &T,
    options: &ApplyOptions,
    progress: &Progress,
    owner: &str,
    image: &str,
) -> Result<Option<String>> {
    let line = progress.line("image", image);
    line.step("pulling");
    let last = std::sync::Mutex::new(Instant::now());
    let moved = |done: u64, total: u64| {
        if let Ok(mut last) = last.lock() {
            if line.is_live() || last.elapsed() >= PROGRESS_EVERY {
                *last = Instant::now();
                line.transfer("pulling", done, total);
            }
        }
    };
    let result = tokio::select! {
        pulled = target.pull(image, owner, &moved) => pulled,
        _ = options.interrupt.wait() => Err(Interrupted.into()),
    };
    match result {
        Ok(bytes) => {
            let size = if bytes == 0 {
                "its layers were already here".to_string()
            } else {
                crate::output::human_bytes(bytes)
            };
            line.done("pulled", Some(&size));
            Ok(Some(image.to_string()))
        }
        Err(err) => {
            line.fail("pull", &format!("{err:#}"));
            Err(err)
        }
    }
}

/// Run every non-build action of the plan.
pub async fn execute<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &Progress,
) -> Result<()> {
    let deadline = Instant::now() + options.timeout;
    missing_images(plan)?;
    prepare_stage(target, plan, options, progress).await?;
    converge_services(target, plan, options, progress, deadline).await?;
    if options.wait {
        wait_for_health(target, plan, options, progress, deadline).await?;
        check_not_failed(target, plan, options).await?;
    }
    // A signal that came while the last actions finished: they are done, but the run was
    // interrupted and says so.
    options.interrupt.check()?;
    Ok(())
}

/// Images the plan needs that are missing and that nothing builds: one error naming them all.
fn missing_images(plan: &Plan) -> Result<()> {
    let missing: Vec<(&String, &String)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::MissingImage { owner, image } => Some((owner, image)),
            _ => None,
        })
        .collect();
    let Some((first_owner, _)) = missing.first() else {
        return Ok(());
    };
    let lines: Vec<String> = missing
        .iter()
        .map(|(owner, image)| {
            format!(
                "image `{image}` of `{owner}` is not on this engine and `pull_policy` is `never`"
            )
        })
        .collect();
    Err(Failure::new(lines.join("
"))
        .with_hint(format!("`pull_policy: never` forbids pulling it: load or build the image first (`docker load`, `docker build -t …`), give `{first_owner}` a `build:`, or drop `pull_policy: never`"))
        .into())
}

/// Networks, volumes, data containers and orphans, one after the other.
async fn prepare_stage<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &Progress,
) -> Result<()> {
    let interrupt = &options.interrupt;
    let phase = |_: &'static str| -> Result<()> { Ok(interrupt.check()?) };
    for action in &plan.actions {
        interrupt.check()?;
        let (kind, object, verb, reason) = action.describe();
        match action {
            Action::ExternalNetwork { .. } | Action::ExternalVolume { .. } => {
                target.apply(action, &phase).await?;
            }
            Action::Orphan {
                remove: false,
                name,
            } => progress.warn(
                &format!("container `{name}` belongs to no service of the stack file"),
                Some("`stackctl up --remove-orphans` removes it"),
            ),
            Action::DataContainer { exists: true, .. } => {
                progress.unchanged(kind, &object, &reason)
            }
            Action::CreateNetwork { .. }
            | Action::CreateVolume { .. }
            | Action::DataContainer { .. }
            | Action::Orphan { .. }
            | Action::Stale { .. } => {
                let line = progress.line(kind, &object);
                line.step(if verb == "remove" {
                    "removing"
                } else {
                    "creating"
                });
                match target.apply(action, &phase).await {
                    Ok(()) if verb == "remove" => line.done("removed", Some(&reason)),
                    Ok(()) => line.done("created", None),
                    Err(err) => {
                        line.fail(verb, &format!("{err:#}"));
                        return Err(err);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Create, recreate, start or restart the services, each after its dependencies meet their
/// condition; at most [`ApplyOptions::parallel`] at once. A service whose dependency failed
/// is skipped (the dependency's error is the one reported); the others go on.
async fn converge_services<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &Progress,
    deadline: Instant,
) -> Result<()> {
    let services: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Service { .. }))
        .collect();
    let mut senders: HashMap<String, watch::Sender<Outcome>> = HashMap::new();
    let mut receivers: HashMap<String, watch::Receiver<Outcome>> = HashMap::new();
    // Keyed by container: a service with replicas has several, all awaited.
    let mut containers_of: HashMap<String, Vec<String>> = HashMap::new();
    for action in &services {
        if let Action::Service { service, spec, .. } = action {
            let (tx, rx) = watch::channel(Outcome::Pending);
            senders.insert(spec.name.clone(), tx);
            receivers.insert(spec.name.clone(), rx);
            containers_of
                .entry(service.clone())
                .or_default()
                .push(spec.name.clone());
        }
    }
    // A service with replicas runs its `pre_start` steps in one of them (the plan picks
    // it); its other replicas start after that one.
    let mut steps_in: HashMap<String, String> = HashMap::new();
    for action in &services {
        if let Action::Service {
            service,
            spec,
            change,
            ..
        } = action
        {
            if !spec.pre_start.is_empty()
                && !spec.pre_start_elsewhere
                && matches!(change, Change::Create | Change::Recreate(_))
            {
                steps_in.insert(service.clone(), spec.name.clone());
            }
        }
    }
    let permits = Arc::new(Semaphore::new(options.parallel.max(1)));
    let runs = services.iter().map(|action| {
        let permits = permits.clone();
        let (receivers, senders, containers_of) = (&receivers, &senders, &containers_of);
        let steps_in = &steps_in;
        async move {
            let Action::Service {
                service,
                spec,
                change,
                depends_on,
                ..
            } = action
            else {
                return Ok(());
            };
            let result = async {
                if let Some(runner) = steps_in.get(service.as_str()) {
                    let waits = *runner != spec.name && !matches!(change, Change::Unchanged(_));
                    if let Some(mut rx) = receivers.get(runner).cloned().filter(|_| waits) {
                        let outcome = tokio::select! {
                            r = rx.wait_for(|o| *o != Outcome::Pending) => {
                                r.map(|o| *o).unwrap_or(Outcome::Failed)
                            }
                            _ = options.interrupt.wait() => return Err(Interrupted.into()),
                        };
                        if outcome == Outcome::Failed {
                            return Err(anyhow::Error::new(Skipped(service.clone())));
                        }
                    }
                }
                for (dep, condition) in depends_on {
                    for dep_container in containers_of.get(dep).into_iter().flatten() {
                        let Some(rx) = receivers.get(dep_container).cloned() else {
                            continue;
                        };
                        let waited = wait_dependency(
                            target,
                            plan,
                            options,
                            progress,
                            deadline,
                            rx,
                            dep,
                            condition,
                            dep_container,
                            &spec.name,
                            change,
                        );
                        waited.await?;
                    }
                }
                options.interrupt.check()?;
                let _permit = permits.acquire().await.map_err(|e| anyhow!(e))?;
                options.interrupt.check()?;
                apply_service(target, action, &spec.name, change, options, progress).await
            }
            .await;
            let outcome = if result.is_ok() {
                Outcome::Ready
            } else {
                Outcome::Failed
            };
            if let Some(tx) = senders.get(&spec.name) {
                let _ = tx.send(outcome);
            }
            result
        }
    });
    first_error(join_all(runs).await)
}

/// Wait for one dependency: its own action first, then its condition (unless this service
/// has nothing to do).
#[allow(clippy::too_many_arguments)]
async fn wait_dependency<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &Progress,
    deadline: Instant,
    mut rx: watch::Receiver<Outcome>,
    dep: &str,
    condition: &Condition,
    dep_container: &str,
    container: &str,
    change: &Change,
) -> Result<()> {
    let outcome = tokio::select! {
        r = rx.wait_for(|o| *o != Outcome::Pending) => r.map(|o| *o).unwrap_or(Outcome::Failed),
        _ = options.interrupt.wait() => return Err(Interrupted.into()),
    };
    if outcome == Outcome::Failed {
        return Err(anyhow::Error::new(Skipped(dep.to_string())));
    }
    // Nothing to do here: no need to wait for what it depends on.
    if matches!(change, Change::Unchanged(_)) {
        return Ok(());
    }
    let (readiness, what) = match condition {
        Condition::ServiceHealthy if !plan.healthy.contains(dep_container) => {
            (Readiness::Healthy, "to be healthy")
        }
        Condition::ServiceCompletedSuccessfully => (Readiness::Completed, "to complete"),
        _ => return Ok(()),
    };
    let line = progress.line("service", container);
    line.waiting(&format!("waiting for `{dep}` {what}"));
    let waited = target.wait(dep, dep_container, readiness, deadline).await;
    line.clear();
    waited
}

/// Do what the plan says for one service, on its own progress line.
async fn apply_service<T: Target>(
    target: &T,
    action: &Action,
    container: &str,
    change: &Change,
    options: &ApplyOptions,
    progress: &Progress,
) -> Result<()> {
    let (done, reason) = match change {
        Change::Unchanged(why) => {
            progress.unchanged("service", container, why);
            return Ok(());
        }
        Change::Create => ("created", None),
        Change::Recreate(_) => ("recreated", Some(action.describe().3)),
        Change::Start(why) => ("started", Some(why.clone())),
        Change::Restart(why) => ("restarted", Some(why.clone())),
    };
    let line = progress.line("service", container);
    let current = std::sync::Mutex::new("starting");
    let phase = |name: &'static str| -> Result<()> {
        options.interrupt.check()?;
        if let Ok(mut current) = current.lock() {
            *current = name;
        }
        line.step(name);
        Ok(())
    };
    match target.apply(action, &phase).await {
        Ok(()) => {
            line.done(done, reason.as_deref());
            Ok(())
        }
        Err(err) => {
            let failed = match current.lock().map(|s| *s).unwrap_or("starting") {
                "stopping" => "stop",
                "creating" => "create",
                "removing" => "remove",
                "pre_start" => "pre_start",
                "post_start" => "post_start",
                _ => "start",
            };
            line.fail(failed, &format!("{err:#}"));
            Err(err)
        }
    }
}

/// Combine the failures of parallel work into one error: an interrupt wins; skipped
/// services (a dependency failed) are not reported on their own.
pub(crate) fn first_error(results: Vec<Result<()>>) -> Result<()> {
    let mut errors: Vec<anyhow::Error> = Vec::new();
    let mut interrupted = false;
    for result in results {
        let Err(err) = result else { continue };
        if err.downcast_ref::<Interrupted>().is_some() {
            interrupted = true;
        } else if err.downcast_ref::<Skipped>().is_none() {
            errors.push(err);
        }
    }
    if interrupted {
        return Err(Interrupted.into());
    }
    // Each failure is printed by the reporter with its own `error:` and `hint:` lines.
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(crate::error::Several(errors).into()),
    }
}

/// Wait, in parallel, for every service with a healthcheck to be healthy.
async fn wait_for_health<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &Progress,
    deadline: Instant,
) -> Result<()> {
    let waits = plan.actions.iter().filter_map(|action| match action {
        Action::Service {
            service,
            spec,
            change,
            has_healthcheck: true,
            ..
        } => Some(async move {
            // An unchanged container the list already reports healthy needs no inspect.
            if matches!(change, Change::Unchanged(_)) && plan.healthy.contains(&spec.name) {
                return Ok(());
            }
            options.interrupt.check()?;
            let line = progress.line("service", &spec.name);
            line.waiting("waiting for health");
            match target
                .wait(service, &spec.name, Readiness::Healthy, deadline)
                .await
            {
                Ok(()) => {
                    line.done("healthy", None);
                    Ok(())
                }
                Err(err) => {
                    line.fail("wait for health", &format!("{err:#}"));
                    Err(err)
                }
            }
        }),
        _ => None,
    });
    first_error(join_all(waits).await)
}

/// After `up` started services without a healthcheck, make sure none of them has already
/// failed (exited non-zero). Services others wait on to complete, and unchanged ones, are
/// not checked; exiting 0 is a finished job, not a failure.
async fn check_not_failed<T: Target>(
    target: &T,
    plan: &Plan,
    options: &ApplyOptions,
) -> Result<()> {
    let deadline = Instant::now() + options.timeout;
    let checks = plan.actions.iter().filter_map(|action| match action {
        Action::Service {
            service,
            spec,
            change,
            has_healthcheck: false,
            one_shot: false,
            ..
        } if !matches!(change, Change::Unchanged(_)) => {
            Some(target.wait(service, &spec.name, Readiness::NotFailed, deadline))
        }
        _ => None,
    });
    first_error(join_all(checks).await)
}

#[cfg(test)]
mod tests;
