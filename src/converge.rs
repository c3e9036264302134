//! The executor: runs a [`Plan`] against the engine. Networks and volumes first, then data
//! containers, then services in dependency order with independent ones in parallel
//! (bounded), each `depends_on` condition awaited with a deadline; finally every service
//! with a healthcheck is awaited. Interrupts stop new work; in-flight calls finish.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures_util::future::join_all;
use tokio::sync::{watch, Semaphore};

use crate::engine::containers::port_in_use;
use crate::engine::{Engine, EngineError};
use crate::error::Interrupted;
use crate::names;
use crate::output::Progress;
use crate::plan::{Action, Change, Plan};
use crate::stack::model::Condition;
use crate::stack::LoadedStack;

/// How many engine operations run at once. High enough that a small stack's containers all
/// stop (or start) in one wave: with 4, the fifth container's stop waited for the first one,
/// adding a whole stop to `down` (BENCHMARKS.md).
pub const PARALLEL: usize = 16;

/// How often health and exit states are polled. Each poll is one inspect (about a
/// millisecond on a local engine); every millisecond between the health change and the poll
/// that sees it delays the dependents' start, and `up` itself (250 ms cost 125 ms on average).
const POLL: Duration = Duration::from_millis(50);

/// Options of one converge run.
#[derive(Debug, Clone)]
pub struct ConvergeOptions {
    /// Wait for every service with a healthcheck to be healthy.
    pub wait: bool,
    /// Bound on every wait of this run, from its start.
    pub timeout: Duration,
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

/// Build the images the plan asks for; returns the references built.
pub async fn build_images(
    engine: &Engine,
    loaded: &LoadedStack,
    plan: &Plan,
    progress: &Progress,
    no_cache: bool,
) -> Result<HashSet<String>> {
    let mut built = HashSet::new();
    for action in plan.builds() {
        crate::interrupt::check()?;
        let Action::Build {
            owner,
            image,
            reason,
        } = action
        else {
            continue;
        };
        let Some(mut request) = crate::images::stage_images(loaded)
            .into_iter()
            .find(|b| b.name == *owner && b.owner != crate::images::Owner::Task)
            .map(|b| b.request)
        else {
            continue;
        };
        request.no_cache = no_cache;
        let line = progress.line("image", image);
        line.step("building");
        let shown = |text: &str| line.detail(text);
        match engine.build_image(&request, &shown).await {
            Ok(_) => {
                line.done("built", Some(reason));
                built.insert(image.clone());
            }
            Err(err) => {
                line.fail("build", &err.to_string());
                return Err(err.context(format!("build the image of `{owner}`")));
            }
        }
    }
    Ok(built)
}

/// Run every non-build action of the plan.
pub async fn execute(
    engine: &Engine,
    loaded: &LoadedStack,
    plan: &Plan,
    options: &ConvergeOptions,
    progress: &Progress,
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + options.timeout;

    let missing: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::MissingImage { owner, image } => Some(format!(
                "image `{image}` of `{owner}` is not on this engine"
            )),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(anyhow!(
            "{}\nhint: load or build the image first (`docker load`, `docker build -t …`), or give `{}` a `build:`",
            missing.join("\n"),
            plan.actions
                .iter()
                .find_map(|a| match a {
                    Action::MissingImage { owner, .. } => Some(owner.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        ));
    }

    for action in &plan.actions {
        crate::interrupt::check()?;
        match action {
            Action::ExternalNetwork { name, key } if !engine.network_exists(name).await? => {
                return Err(anyhow!(
                    "external network `{name}` (networks.{key}) does not exist\nhint: create it with `docker network create {name}`, or drop `external: true` to let stackctl create it"
                ));
            }
            Action::ExternalVolume { name, key } if !engine.volume_exists(name).await? => {
                return Err(anyhow!(
                    "external volume `{name}` (volumes.{key}) does not exist\nhint: create it with `docker volume create {name}`, or drop `external: true` to let stackctl create it"
                ));
            }
            Action::CreateNetwork { name } => {
                let line = progress.line("network", name);
                line.step("creating");
                let labels =
                    names::owner_labels(&loaded.stage, &loaded.project, names::role::NETWORK);
                match engine.create_network(name, &labels).await {
                    Ok(()) => line.done("created", None),
                    Err(err) => {
                        line.fail("create", &err.to_string());
                        return Err(err.into());
                    }
                }
            }
            Action::CreateVolume { name, driver } => {
                let line = progress.line("volume", name);
                line.step("creating");
                let labels =
                    names::owner_labels(&loaded.stage, &loaded.project, names::role::VOLUME);
                match engine.create_volume(name, driver.as_deref(), &labels).await {
                    Ok(()) => line.done("created", None),
                    Err(err) => {
                        line.fail("create", &err.to_string());
                        return Err(err.into());
                    }
                }
            }
            Action::DataContainer { spec, exists, .. } => {
                if *exists {
                    progress.unchanged("data", &spec.name, "exists (kept)");
                    continue;
                }
                let line = progress.line("data", &spec.name);
                line.step("creating");
                match engine.create_container(spec).await {
                    Ok(_) => line.done("created", None),
                    Err(err) => {
                        line.fail("create", &err.to_string());
                        return Err(err.into());
                    }
                }
            }
            Action::Orphan { name, remove } => {
                if *remove {
                    let line = progress.line("service", name);
                    line.step("removing");
                    engine.stop_container(name, None).await?;
                    engine.remove_container(name).await?;
                    line.done("removed", Some("orphan"));
                } else {
                    progress.message(&format!(
                        "warning: container `{name}` belongs to no service of the stack file\nhint: `stackctl up --remove-orphans` removes it"
                    ));
                }
            }
            _ => {}
        }
    }

    converge_services(engine, loaded, plan, progress, deadline).await?;

    if options.wait {
        wait_for_health(engine, plan, progress, started, deadline).await?;
        check_running(engine, loaded, plan).await?;
    }
    Ok(())
}

/// Create, recreate or start the services, each after its dependencies meet their condition.
async fn converge_services(
    engine: &Engine,
    loaded: &LoadedStack,
    plan: &Plan,
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
    for action in &services {
        if let Action::Service { service, .. } = action {
            let (tx, rx) = watch::channel(Outcome::Pending);
            senders.insert(service.clone(), tx);
            receivers.insert(service.clone(), rx);
        }
    }
    let container_of: HashMap<String, String> = services
        .iter()
        .filter_map(|a| match a {
            Action::Service { service, spec, .. } => Some((service.clone(), spec.name.clone())),
            _ => None,
        })
        .collect();
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let runs = services.iter().map(|action| {
        let permits = permits.clone();
        let receivers = &receivers;
        let senders = &senders;
        let container_of = &container_of;
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
                for (dep, condition) in depends_on {
                    let Some(mut rx) = receivers.get(dep).cloned() else {
                        continue;
                    };
                    let outcome = tokio::select! {
                        r = rx.wait_for(|o| *o != Outcome::Pending) => r.map(|o| *o).unwrap_or(Outcome::Failed),
                        _ = crate::interrupt::wait() => return Err(Interrupted.into()),
                    };
                    if outcome == Outcome::Failed {
                        return Err(anyhow::Error::new(Skipped(dep.clone())));
                    }
                    // Nothing to do here: no need to wait for what it depends on.
                    if matches!(change, Change::Unchanged(_)) {
                        continue;
                    }
                    let container = &container_of[dep];
                    let condition = if plan.healthy.contains(dep) && *condition == Condition::ServiceHealthy {
                        &Condition::ServiceStarted
                    } else {
                        condition
                    };
                    match condition {
                        Condition::ServiceStarted => {}
                        Condition::ServiceHealthy => {
                            let line = progress.line("service", &spec.name);
                            line.waiting(&format!("waiting for `{dep}` to be healthy"));
                            let waited = wait_healthy(engine, dep, container, deadline).await;
                            line.clear();
                            waited?;
                        }
                        Condition::ServiceCompletedSuccessfully => {
                            let line = progress.line("service", &spec.name);
                            line.waiting(&format!("waiting for `{dep}` to complete"));
                            let waited = wait_completed(engine, dep, container, deadline).await;
                            line.clear();
                            waited?;
                        }
                    }
                }
                crate::interrupt::check()?;
                let _permit = permits.acquire().await.map_err(|e| anyhow!(e))?;
                crate::interrupt::check()?;
                apply(engine, loaded, service, spec, change, progress).await
            }
            .await;
            let outcome = if result.is_ok() {
                Outcome::Ready
            } else {
                Outcome::Failed
            };
            if let Some(tx) = senders.get(service) {
                let _ = tx.send(outcome);
            }
            result
        }
    });
    let results = join_all(runs).await;
    first_error(results)
}

/// Combine the failures of parallel work into one error: an interrupt wins; skipped
/// services (a dependency failed) are not reported on their own.
fn first_error(results: Vec<Result<()>>) -> Result<()> {
    let mut messages: Vec<String> = Vec::new();
    let mut interrupted = false;
    let mut first: Option<anyhow::Error> = None;
    for result in results {
        let Err(err) = result else { continue };
        if err.downcast_ref::<Interrupted>().is_some() {
            interrupted = true;
        } else if err.downcast_ref::<Skipped>().is_none() {
            messages.push(format!("{err:#}"));
            first.get_or_insert(err);
        }
    }
    if interrupted {
        return Err(Interrupted.into());
    }
    match (messages.len(), first) {
        (0, _) => Ok(()),
        (1, Some(err)) => Err(err),
        _ => Err(anyhow!(messages.join("\nerror: "))),
    }
}

/// Do what the plan says for one service.
async fn apply(
    engine: &Engine,
    loaded: &LoadedStack,
    service: &str,
    spec: &crate::spec::ContainerSpec,
    change: &Change,
    progress: &Progress,
) -> Result<()> {
    let (action, reason) = match change {
        Change::Unchanged(why) => {
            progress.unchanged("service", &spec.name, why);
            return Ok(());
        }
        Change::Create => ("created", None),
        Change::Recreate(fields) => (
            "recreated",
            Some(
                fields
                    .iter()
                    .map(|f| format!("{f} changed"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ),
        Change::Start(why) => ("started", Some(why.clone())),
    };
    let line = progress.line("service", &spec.name);
    let step = std::sync::Mutex::new("start");
    let enter = |name: &'static str, shown: &str| {
        if let Ok(mut current) = step.lock() {
            *current = name;
        }
        line.step(shown);
    };
    let result: Result<()> = async {
        if matches!(change, Change::Recreate(_)) {
            enter("stop", "stopping");
            engine.stop_container(&spec.name, None).await?;
            engine.remove_container(&spec.name).await?;
        }
        if matches!(change, Change::Create | Change::Recreate(_)) {
            enter("create", "creating");
            engine.create_container(spec).await?;
        }
        enter("start", "starting");
        engine
            .start_container(&spec.name)
            .await
            .map_err(|err| start_error(loaded, service, err))
    }
    .await;
    match result {
        Ok(()) => {
            line.done(action, reason.as_deref());
            Ok(())
        }
        Err(err) => {
            let failed = step.lock().map(|s| *s).unwrap_or("start");
            line.fail(failed, &format!("{err:#}"));
            Err(err)
        }
    }
}

/// A start failure, with the friendly form of "port is already allocated".
fn start_error(loaded: &LoadedStack, service: &str, err: EngineError) -> anyhow::Error {
    let Some(port) = port_in_use(&err) else {
        return err.into();
    };
    let location = loaded
        .locate(&["services", service, "ports"])
        .map(|l| l.to_string())
        .unwrap_or_else(|| display_file(loaded));
    let port_text = if port.is_empty() {
        "a published port".to_string()
    } else {
        format!("port {port}")
    };
    let hint = match port_variables(loaded, service).first() {
        Some(var) => format!(
            "set {var} in .env.{} or stop the other container",
            loaded.stage
        ),
        None => format!(
            "change the published port of `{service}` in {} or stop the other container",
            display_file(loaded)
        ),
    };
    anyhow!("{port_text} is already allocated on this host (service `{service}`, {location})\nhint: {hint}")
}

fn display_file(loaded: &LoadedStack) -> String {
    loaded
        .file
        .strip_prefix(&loaded.dir)
        .unwrap_or(&loaded.file)
        .display()
        .to_string()
}

/// Variables used in a service's `ports:` entries in the stack file as written
/// (`"${API_PORT:-5000}:5000"` → `API_PORT`).
fn port_variables(loaded: &LoadedStack, service: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(&loaded.file) else {
        return Vec::new();
    };
    let Ok((value, _)) = crate::stack::load::parse(&text) else {
        return Vec::new();
    };
    let Some(ports) = value
        .get("services")
        .and_then(|s| s.get(service))
        .and_then(|s| s.get("ports"))
        .and_then(|p| p.as_sequence())
    else {
        return Vec::new();
    };
    let mut vars = Vec::new();
    for entry in ports {
        let text = match entry {
            crate::stack::load::Value::String(s) => s.clone(),
            other => other.scalar_text().unwrap_or_default(),
        };
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end > 0 {
                vars.push(after[..end].to_string());
            }
            rest = &after[end..];
        }
    }
    vars
}

/// Wait until a service's container is healthy; fail with its health output and logs when
/// it turns unhealthy, exits, or the deadline passes.
pub async fn wait_healthy(
    engine: &Engine,
    service: &str,
    container: &str,
    deadline: Instant,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = engine.container_status(container).await?;
        let Some(status) = status else {
            return Err(anyhow!(
                "service `{service}`: container `{container}` disappeared while waiting for health"
            ));
        };
        match status.health.as_deref() {
            Some("healthy") => return Ok(()),
            None if status.running => return Ok(()),
            Some("unhealthy") => {
                return Err(failure(
                    engine,
                    service,
                    container,
                    &format!("is unhealthy after {:.1}s", started.elapsed().as_secs_f64()),
                    &status.health_log,
                )
                .await)
            }
            _ => {}
        }
        if !status.running && status.status != "created" && status.status != "restarting" {
            let what = format!(
                "exited with code {} while waiting for health",
                status.exit_code.unwrap_or(-1)
            );
            return Err(failure(engine, service, container, &what, &status.health_log).await);
        }
        if Instant::now() >= deadline {
            let what = format!(
                "is not healthy after {:.0}s (health: {})",
                started.elapsed().as_secs_f64(),
                status.health.as_deref().unwrap_or("none")
            );
            return Err(failure(engine, service, container, &what, &status.health_log).await);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        }
    }
}

/// Wait until a one-shot service exits 0; fail naming it, with its logs, otherwise.
pub async fn wait_completed(
    engine: &Engine,
    service: &str,
    container: &str,
    deadline: Instant,
) -> Result<()> {
    let wait = engine.wait_exit(container);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let code = tokio::select! {
        r = tokio::time::timeout(remaining, wait) => match r {
            Ok(code) => code?,
            Err(_) => {
                let what = format!("did not complete within the timeout ({:.0}s)", remaining.as_secs_f64());
                return Err(failure(engine, service, container, &what, &[]).await);
            }
        },
        _ = crate::interrupt::wait() => return Err(Interrupted.into()),
    };
    if code == 0 {
        Ok(())
    } else {
        Err(failure(
            engine,
            service,
            container,
            &format!("exited with code {code}"),
            &[],
        )
        .await)
    }
}

/// A failed wait, with the last health output and the last log lines.
async fn failure(
    engine: &Engine,
    service: &str,
    container: &str,
    what: &str,
    health_log: &[String],
) -> anyhow::Error {
    let mut message = format!("service `{service}` {what}");
    if let Some(last) = health_log.last() {
        message.push_str("\n  last health check: ");
        message.push_str(&last.replace('\n', "\n    "));
    }
    match engine.log_tail(container, 20).await {
        Ok(lines) if !lines.is_empty() => {
            message.push_str(&format!(
                "\n  last {} log lines of `{container}`:",
                lines.len()
            ));
            for line in lines {
                message.push_str("\n    ");
                message.push_str(&line);
            }
        }
        _ => {}
    }
    message.push_str(&format!(
        "\nhint: see `stackctl logs {service}`; `up --timeout S` waits longer"
    ));
    anyhow!(message)
}

/// Wait, in parallel, for every service with a healthcheck to be healthy.
async fn wait_for_health(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
    started: Instant,
    deadline: Instant,
) -> Result<()> {
    let _ = started;
    let waits = plan.actions.iter().filter_map(|action| match action {
        Action::Service {
            service,
            spec,
            change,
            has_healthcheck: true,
            ..
        } => Some(async move {
            // An unchanged container the list already reports healthy needs no inspect.
            if matches!(change, Change::Unchanged(_)) && observed_healthy(plan, service) {
                return Ok(());
            }
            let line = progress.line("service", &spec.name);
            line.waiting("waiting for health");
            match wait_healthy(engine, service, &spec.name, deadline).await {
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

fn observed_healthy(plan: &Plan, service: &str) -> bool {
    plan.healthy.contains(service)
}

/// Stop and remove containers, [`PARALLEL`] at a time, each on its own line.
pub async fn remove_containers(
    engine: &Engine,
    containers: &[crate::plan::ObservedContainer],
    progress: &Progress,
) -> Result<()> {
    use futures_util::stream::{self, StreamExt};
    let results: Vec<Result<()>> = stream::iter(containers.iter().map(|container| async move {
        crate::interrupt::check()?;
        let kind = kind_of(container);
        let line = progress.line(kind, &container.name);
        let result = async {
            if container.state == "running" || container.state == "restarting" {
                line.step("stopping");
                engine.stop_container(&container.name, None).await?;
            }
            line.step("removing");
            engine.remove_container(&container.name).await?;
            Ok::<(), EngineError>(())
        }
        .await;
        match result {
            Ok(()) => {
                line.done("removed", None);
                Ok(())
            }
            Err(err) => {
                line.fail("remove", &err.to_string());
                Err(err.into())
            }
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect()
    .await;
    first_error(results)
}

/// Stop containers, [`PARALLEL`] at a time.
pub async fn stop_containers(
    engine: &Engine,
    containers: &[crate::plan::ObservedContainer],
    progress: &Progress,
) -> Result<()> {
    use futures_util::stream::{self, StreamExt};
    let results: Vec<Result<()>> = stream::iter(containers.iter().map(|container| async move {
        crate::interrupt::check()?;
        if container.state != "running"
            && container.state != "restarting"
            && container.state != "paused"
        {
            progress.unchanged(kind_of(container), &container.name, "not running");
            return Ok(());
        }
        let line = progress.line(kind_of(container), &container.name);
        line.step("stopping");
        match engine.stop_container(&container.name, None).await {
            Ok(()) => {
                line.done("stopped", None);
                Ok(())
            }
            Err(err) => {
                line.fail("stop", &err.to_string());
                Err(err.into())
            }
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect()
    .await;
    first_error(results)
}

/// Start containers, [`PARALLEL`] at a time.
pub async fn start_containers(
    engine: &Engine,
    loaded: &LoadedStack,
    containers: &[crate::plan::ObservedContainer],
    progress: &Progress,
) -> Result<()> {
    use futures_util::stream::{self, StreamExt};
    let results: Vec<Result<()>> = stream::iter(containers.iter().map(|container| async move {
        crate::interrupt::check()?;
        if container.state == "running" || container.state == "restarting" {
            progress.unchanged(kind_of(container), &container.name, "running");
            return Ok(());
        }
        let line = progress.line(kind_of(container), &container.name);
        line.step("starting");
        let service = container.service.clone().unwrap_or_default();
        match engine
            .start_container(&container.name)
            .await
            .map_err(|err| start_error(loaded, &service, err))
        {
            Ok(()) => {
                line.done("started", None);
                Ok(())
            }
            Err(err) => {
                line.fail("start", &format!("{err:#}"));
                Err(err)
            }
        }
    }))
    .buffer_unordered(PARALLEL)
    .collect()
    .await;
    first_error(results)
}

/// Remove networks once their endpoints are gone (the engine can take a moment to release
/// an endpoint after its container is removed).
pub async fn remove_networks(
    engine: &Engine,
    networks: &[String],
    progress: &Progress,
) -> Result<()> {
    for name in networks {
        crate::interrupt::check()?;
        let line = progress.line("network", name);
        line.step("removing");
        let mut attempt = 0;
        loop {
            match engine.remove_network(name).await {
                Ok(()) => {
                    line.done("removed", None);
                    break;
                }
                Err(err) if err.message.contains("active endpoints") && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => {
                    line.fail("remove", &err.to_string());
                    let hint = if err.message.contains("active endpoints") {
                        format!("\nhint: a container stackctl does not own is attached; see `docker network inspect {name}`")
                    } else {
                        String::new()
                    };
                    return Err(anyhow!("{err}{hint}"));
                }
            }
        }
    }
    Ok(())
}

fn kind_of(container: &crate::plan::ObservedContainer) -> &'static str {
    match container.role.as_str() {
        "data" => "data",
        "task" => "task",
        _ => "service",
    }
}

/// After `up` started services without a healthcheck, make sure none of them has already
/// failed (exited non-zero). Services others wait on to complete, and unchanged ones, are
/// not checked; exiting 0 is a finished job, not a failure.
async fn check_running(engine: &Engine, loaded: &LoadedStack, plan: &Plan) -> Result<()> {
    let one_shots: HashSet<&String> = loaded
        .stack
        .services
        .values()
        .flat_map(|s| s.depends_on.iter())
        .filter(|(_, d)| d.condition == Condition::ServiceCompletedSuccessfully)
        .map(|(n, _)| n)
        .collect();
    let checks = plan.actions.iter().filter_map(|action| match action {
        Action::Service {
            service,
            spec,
            change,
            has_healthcheck: false,
            ..
        } if !matches!(change, Change::Unchanged(_)) && !one_shots.contains(service) => {
            Some(async move {
                match engine.container_status(&spec.name).await? {
                    Some(status)
                        if !status.running
                            && status.status == "exited"
                            && status.exit_code.unwrap_or(0) != 0 =>
                    {
                        let what = format!(
                            "exited with code {} right after it started",
                            status.exit_code.unwrap_or(-1)
                        );
                        Err(failure(engine, service, &spec.name, &what, &[]).await)
                    }
                    _ => Ok(()),
                }
            })
        }
        _ => None,
    });
    first_error(join_all(checks).await)
}
