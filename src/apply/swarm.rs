//! A stage on a Docker Swarm (`engine: { mode: swarm }`): `up` converges the stack's
//! services as Swarm services through the manager the engine address reaches and waits
//! until each runs its replicas on the new spec; `down`, `purge`, `ps`, `logs` and
//! `rollback` act on the stage's services, tasks, networks, secrets and configs.
//!
//! Names: services `{stage}-{project}--{service}`, networks and volumes as on one engine,
//! secrets and configs `{stage}-{project}--{name}-{digest}` (content-addressed: a new content
//! is a new object, so the services using it roll). Everything carries the `io.stackctl.*`
//! ownership labels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::engine::endpoint::Endpoint;
use crate::engine::swarm::{service_spec, BuiltSpec, NodeFound, ServiceFound, TaskFound};
use crate::engine::Engine;
use crate::error::{exit, Failure, Interrupted, UsageError};
use crate::names;
use crate::observed::Observed;
use crate::output::{Printer, Progress};
use crate::plan::container;
use crate::plan::deploy::{file_name, service_want, update_reason};
use crate::plan::up::{Action, PlanOptions};
use crate::registry::Credentials;
use crate::stack::model::{MountKind, PullPolicy};
use crate::stack::LoadedStack;
use anyhow::Result;
use futures_util::future::join_all;
use futures_util::StreamExt;

/// What `up` asks of a Swarm stage (its services checked against the stack by the caller).
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services asked for (default: all).
    pub services: Vec<String>,
    pub build: bool,
    pub pull: Option<PullPolicy>,
    pub dry_run: bool,
    pub no_wait: bool,
    pub remove_orphans: bool,
    /// Seconds every wait may take.
    pub timeout: u64,
}

/// How often a wait looks at the services' tasks.
const POLL: Duration = Duration::from_millis(300);

/// Failed tasks on the new spec after which a service that is not rolling back (a first
/// deploy, `failure_action: continue`) counts as failed.
const FAILED_TASKS: usize = 3;

/// Whether the loaded stack is deployed to a Swarm.
pub fn is_swarm(loaded: &LoadedStack) -> bool {
    loaded.stack.is_swarm()
}

/// The manager's node ID; an error when the engine is not a Swarm manager.
async fn manager_node(engine: &Engine, loaded: &LoadedStack) -> Result<String> {
    match engine.swarm_node().await? {
        Some((node, true)) => Ok(node),
        Some((_, false)) => Err(Failure::new(format!(
            "the engine at {} is a Swarm worker, and {} deploys through a manager",
            engine.address,
            loaded.file_display()
        ))
        .with_hint("point `engine.host` (or -H / DOCKER_HOST) at a manager node")
        .into()),
        None => Err(Failure::new(format!(
            "the engine at {} is in no Swarm, and {} says `engine: {{ mode: swarm }}`",
            engine.address,
            loaded.file_display()
        ))
        .with_hint("run `docker swarm init` there (or join it to a swarm), or point `engine.host` at a manager")
        .into()),
    }
}

fn service_name(loaded: &LoadedStack, service: &str) -> String {
    names::container(&loaded.stage, &loaded.project, service)
}

fn owner(loaded: &LoadedStack, role: &str) -> BTreeMap<String, String> {
    names::owner_labels(&loaded.stage, &loaded.project, role)
        .into_iter()
        .collect()
}

/// The services in dependency order (dependencies first).
fn ordered(loaded: &LoadedStack) -> Vec<String> {
    let mut done: Vec<String> = Vec::new();
    let services = &loaded.stack.services;
    while done.len() < services.len() {
        let before = done.len();
        for (name, service) in services {
            if done.contains(name) {
                continue;
            }
            let ready = service
                .depends_on
                .keys()
                .all(|d| done.contains(d) || !services.contains_key(d));
            if ready {
                done.push(name.clone());
            }
        }
        if done.len() == before {
            // A cycle is refused by validation; keep the rest in file order.
            for name in services.keys() {
                if !done.contains(name) {
                    done.push(name.clone());
                }
            }
        }
    }
    done
}

/// Credentials for the registry of `image`, from Docker's config.
async fn credentials(engine: &Engine, image: &str) -> Result<Option<Credentials>> {
    crate::apply::docker::credentials(engine, image).await
}

/// `repo:tag@sha256:…`: the reference pinned to `digest`.
fn pinned(reference: &str, digest: &str) -> String {
    let base = reference.split('@').next().unwrap_or(reference);
    format!("{base}@{digest}")
}

/// The images of an `up`: each selected service's image pinned to a digest, the
/// credentials its nodes pull with, and the images built (or, with `--dry-run`, to be
/// built) with why.
struct Images {
    pins: HashMap<String, String>,
    auths: HashMap<String, Option<Credentials>>,
    /// Image reference → why it is built (`build context changed: api/app.py`).
    built: BTreeMap<String, String>,
}

/// Decide the images as `up` does on one engine (the same planner: a missing image, a
/// changed build context, `--build`, `--pull`, `pull_policy`), with "present" meaning
/// built on the manager for an image the stack builds, and pinned by the deployed service
/// for the others. Then build (on the manager) and push what needs it, and pin every
/// service's image: to the digest its registry gives for the tag when it was built or
/// pushed now, is new, or is to be pulled (`--pull always`); else to the digest the deployed
/// service already runs, so a tag moved elsewhere changes nothing until asked for.
async fn images(
    engine: &Engine,
    loaded: &LoadedStack,
    selected: &[String],
    found: &HashMap<String, ServiceFound>,
    args: &UpOptions,
    progress: &Progress,
) -> Result<Images> {
    let (dry_run, timeout) = (args.dry_run, args.timeout);
    let (index, digests) = tokio::try_join!(
        async { Ok::<_, anyhow::Error>(engine.image_index().await?) },
        crate::apply::up::context_digests(loaded)
    )?;
    let (here, contexts) = crate::apply::docker::stack_images(loaded, &index);
    let builds: Vec<crate::plan::image::ImageBuild> = crate::plan::image::stage_images(loaded);
    let builder = |reference: &str| crate::plan::image::builder_of(&builds, reference);
    let mut observed = Observed {
        image_contexts: contexts,
        ..Default::default()
    };
    for name in selected {
        let service = &loaded.stack.services[name];
        let reference = container::service_image(loaded, name, service);
        if builder(&reference).is_some() {
            if let Some(id) = here.get(&reference) {
                observed.images.insert(reference, id.clone());
            }
        } else if let Some((base, digest)) = found
            .get(&service_name(loaded, name))
            .and_then(|f| f.image.split_once('@'))
        {
            if base == reference {
                observed.images.insert(reference, digest.to_string());
            }
        }
    }
    let mut options = PlanOptions {
        build: args.build,
        pull: args.pull,
        ..Default::default()
    };
    options.stale = crate::apply::up::stale_images(loaded, &observed, digests);
    let actions = crate::plan::up::image_actions(
        loaded,
        &observed.images,
        &observed,
        &options,
        selected,
        &[],
    );

    let mut built = BTreeMap::new();
    let mut resolve: HashSet<String> = HashSet::new();
    let mut builds: Vec<Action> = Vec::new();
    for action in actions {
        match &action {
            Action::Build { image, reason, .. } => {
                built.insert(image.clone(), reason.clone());
                builds.push(action);
            }
            Action::Pull { image, .. } => {
                resolve.insert(image.clone());
            }
            Action::MissingImage { owner, image } => {
                return Err(Failure::new(format!(
                    "service `{owner}`: image `{image}` is not deployed yet, and `pull_policy: never` (or `--pull never`) forbids asking its registry for the digest to pin it to"
                ))
                .with_hint("run `stackctl up --pull missing` once")
                .into());
            }
            _ => {}
        }
    }
    if !dry_run && !builds.is_empty() {
        // On the manager, with the executor's bounded parallelism and interrupts.
        let plan = crate::plan::up::Plan {
            actions: builds,
            healthy: Default::default(),
            warnings: Vec::new(),
        };
        let target = super::docker::DockerTarget::new(engine, loaded);
        let options = super::ApplyOptions::new(false, Duration::from_secs(timeout));
        super::build_images(&target, &plan, &options, progress, false).await?;
    }

    let mut pushed: HashSet<String> = HashSet::new();
    let mut pins = HashMap::new();
    let mut auths = HashMap::new();
    for name in selected {
        crate::interrupt::check()?;
        let service = &loaded.stack.services[name];
        let reference = container::service_image(loaded, name, service);
        let owner = crate::registry::owner_label(loaded, name);
        let creds = credentials(engine, &reference).await?;
        // An image the stack builds is pushed from the manager, unless its service's
        // `pull_policy: always` runs what the registry has (what CI pushed).
        let ours = builder(&reference).is_some() && !resolve.contains(&reference);
        let digest = if let Some((_, digest)) = reference.split_once('@') {
            Some(digest.to_string())
        } else if dry_run && built.contains_key(&reference) {
            None
        } else if let (false, false, Some(digest)) = (
            ours,
            resolve.contains(&reference),
            observed.images.get(&reference),
        ) {
            Some(digest.clone())
        } else if dry_run {
            // Nothing is built or pushed: the digest the registry has now, if any.
            engine
                .registry_digest(&reference, creds.as_ref())
                .await
                .ok()
        } else {
            if ours && pushed.insert(reference.clone()) {
                let line = progress.line("image", &reference);
                line.step("pushing");
                match crate::apply::docker::push_image(engine, &reference, &owner, &|_, _| {}).await
                {
                    Ok(bytes) => line.done("pushed", Some(&crate::output::human_bytes(bytes))),
                    Err(err) => {
                        line.fail("push", &format!("{err:#}"));
                        return Err(err);
                    }
                }
            }
            let digest = engine
                .registry_digest(&reference, creds.as_ref())
                .await
                .map_err(|e| {
                    Failure::new(format!(
                        "{owner}: image `{reference}` cannot be found in its registry: {}",
                        e.message
                    ))
                    .with_hint(format!(
                        "every node pulls it from there: push it, or check the name and `{}`",
                        crate::registry::login_hint(&reference)
                    ))
                })?;
            Some(digest)
        };
        let image = digest.map_or_else(|| reference.clone(), |d| pinned(&reference, &d));
        pins.insert(name.clone(), image);
        auths.insert(name.clone(), creds);
    }
    Ok(Images { pins, auths, built })
}

/// One service's plan: what it is and what happens to it.
struct Planned {
    service: String,
    built: BuiltSpec,
    found: Option<ServiceFound>,
    /// Why it is updated, when its spec changed (`environment changed, deploy.replicas changed`).
    reason: String,
}

impl Planned {
    fn changed(&self) -> bool {
        self.found.as_ref().and_then(|f| f.hash.as_deref()) != Some(self.built.hash.as_str())
    }
}

/// `up --watch` and `watch` copy files into one engine's containers and restart them
/// there: refused for a swarm stage before anything is reached.
pub fn refuse_watch(loaded: &LoadedStack, command: &str) -> Result<()> {
    if !is_swarm(loaded) {
        return Ok(());
    }
    Err(UsageError::new(format!(
        "`{command}` needs a single engine (it copies files into the containers and restarts them there), and {} deploys to a Swarm (`engine: {{ mode: swarm }}`)",
        loaded.file_display()
    ))
    .with_hint("after an edit, `stackctl up` rebuilds, pushes and rolls the services whose build context changed; for the edit loop, use a stage with `mode: single`")
    .into())
}

/// `up` on a Swarm stage: converge its services and wait until each runs its replicas on
/// the new spec.
pub async fn up(
    endpoint: &Endpoint,
    loaded: &LoadedStack,
    printer: &Printer,
    args: &UpOptions,
) -> Result<i32> {
    let selected = {
        let asked = &args.services;
        if asked.is_empty() {
            ordered(loaded)
        } else {
            ordered(loaded)
                .into_iter()
                .filter(|s| asked.contains(s))
                .collect()
        }
    };
    let timeout = Duration::from_secs(args.timeout);
    let (engine, manager, _lock) = reach_manager(
        endpoint,
        loaded,
        printer,
        (!args.dry_run).then_some(timeout),
    )
    .await?;
    let deadline = Instant::now() + timeout;
    let progress = printer.progress();
    let result = converge(
        &engine, loaded, printer, &progress, &selected, &manager, args, deadline,
    )
    .await;
    if !args.dry_run {
        progress.summary("up", result.as_ref().is_ok_and(|c| *c == exit::OK));
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn converge(
    engine: &Engine,
    loaded: &LoadedStack,
    printer: &Printer,
    progress: &Progress,
    selected: &[String],
    manager: &str,
    args: &UpOptions,
    deadline: Instant,
) -> Result<i32> {
    let found: HashMap<String, ServiceFound> = engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    // Images first: a service whose image cannot be pinned changes nothing.
    let Images { pins, auths, built } =
        images(engine, loaded, selected, &found, args, progress).await?;

    // Secrets and configs, content-addressed (created only when the plan is applied).
    let mut wanted_files: Vec<(&'static str, String, String, Vec<u8>)> = Vec::new();
    for name in selected {
        let service = &loaded.stack.services[name];
        for (kind, refs, defs) in [
            ("secret", &service.secrets, &loaded.stack.secrets),
            ("config", &service.configs, &loaded.stack.configs),
        ] {
            for r in refs {
                let content = defs
                    .get(&r.source)
                    .and_then(|d| d.data.clone())
                    .unwrap_or_default();
                if !wanted_files
                    .iter()
                    .any(|(k, s, _, _)| *k == kind && *s == r.source)
                {
                    let swarm_name = file_name(loaded, &r.source, &content);
                    wanted_files.push((kind, r.source.clone(), swarm_name, content));
                }
            }
        }
    }
    let mut files: HashMap<(&'static str, String), (String, String)> = HashMap::new();
    if !args.dry_run {
        for (kind, source, swarm_name, content) in &wanted_files {
            let mut labels = owner(loaded, kind);
            labels.insert(names::SERVICE.to_string(), source.clone());
            let (id, created) = engine
                .ensure_swarm_file(kind, swarm_name, &labels, content)
                .await?;
            if created {
                progress.line(kind, swarm_name).done("created", None);
            }
            files.insert((*kind, source.clone()), (id, swarm_name.clone()));
        }
    } else {
        for (kind, source, swarm_name, _) in &wanted_files {
            let id = engine
                .swarm_file_id(kind, swarm_name)
                .await?
                .unwrap_or_else(|| swarm_name.clone());
            files.insert((*kind, source.clone()), (id, swarm_name.clone()));
        }
    }

    let mut notes = Vec::new();
    let mut plan: Vec<Planned> = Vec::new();
    for name in selected {
        let service = &loaded.stack.services[name];
        let want = service_want(
            loaded,
            name,
            service,
            &pins[name],
            manager,
            &files,
            &mut notes,
        );
        let built = service_spec(&want);
        let current = found.get(&want.name).cloned();
        let reason = update_reason(current.as_ref().and_then(|f| f.fields.as_deref()), &want);
        plan.push(Planned {
            service: name.clone(),
            found: current,
            built,
            reason,
        });
    }
    let known: HashSet<String> = loaded
        .stack
        .services
        .keys()
        .map(|s| service_name(loaded, s))
        .collect();
    let orphans: Vec<&ServiceFound> = if args.services.is_empty() && args.remove_orphans {
        found
            .values()
            .filter(|f| !known.contains(&f.name))
            .collect()
    } else {
        Vec::new()
    };

    for note in &notes {
        printer.status(note);
    }
    if args.dry_run {
        // `--json`: one event per planned action, as on one engine.
        let json = printer.mode == crate::output::Mode::Json;
        for (image, reason) in &built {
            if json {
                printer.plan_event(image, "image", "build", reason);
            } else {
                printer.data(&format!("image {image}: build ({reason})"));
            }
        }
        for p in &plan {
            let service = &loaded.stack.services[&p.service];
            let rebuilt = built.get(&container::service_image(loaded, &p.service, service));
            let action = match (&p.found, p.changed() || rebuilt.is_some()) {
                (None, _) => "create",
                (Some(_), true) => "update",
                (Some(_), false) => "unchanged",
            };
            if json {
                let reason = match (&p.found, rebuilt) {
                    (None, _) => "new".to_string(),
                    (Some(_), Some(reason)) => format!("image rebuilt: {reason}"),
                    (Some(_), None) if action == "update" => p.reason.clone(),
                    (Some(_), None) => "spec unchanged".to_string(),
                };
                printer.plan_event(&p.service, "service", action, &reason);
                continue;
            }
            match rebuilt.filter(|_| p.found.is_some()) {
                Some(reason) => printer.data(&format!(
                    "service {}: {action} (image rebuilt: {reason})",
                    p.service
                )),
                None if action == "update" => {
                    printer.data(&format!("service {}: {action} ({})", p.service, p.reason))
                }
                None => printer.data(&format!("service {}: {action}", p.service)),
            }
        }
        for o in &orphans {
            if json {
                printer.plan_event(&o.service, "service", "remove", "not in the stack");
            } else {
                printer.data(&format!("service {}: remove (not in the stack)", o.service));
            }
        }
        return Ok(exit::OK);
    }

    // Networks: attachable overlays (one-off task containers join them on the manager).
    let mut networks: Vec<(String, bool)> = vec![(container::default_network(loaded), false)];
    for (key, def) in &loaded.stack.networks {
        if !def.external && key != "default" {
            networks.push((container::network_name(loaded, key), def.internal));
        }
    }
    for (network, internal) in &networks {
        if engine
            .ensure_overlay_network(network, &owner(loaded, names::role::NETWORK), *internal)
            .await?
        {
            progress.line("network", network).done("created", None);
        }
    }

    // Services in dependency order; a new service waits for what it depends on.
    let mut changed: Vec<&Planned> = Vec::new();
    for p in &plan {
        crate::interrupt::check()?;
        let service = &loaded.stack.services[&p.service];
        let creds = auths.get(&p.service).cloned().flatten();
        match &p.found {
            Some(found) if !p.changed() => {
                progress.unchanged("service", &p.service, "spec unchanged");
                let _ = found;
            }
            Some(found) => {
                let line = progress.line("service", &p.service);
                line.step("updating");
                engine
                    .update_swarm_service(found, &p.built, creds.as_ref())
                    .await?;
                line.done("updated", Some(&p.reason));
                changed.push(p);
            }
            None => {
                let waits: Vec<&Planned> = plan
                    .iter()
                    .filter(|d| service.depends_on.contains_key(&d.service))
                    .collect();
                if !args.no_wait {
                    for dep in waits {
                        converged(engine, loaded, printer, progress, dep, deadline, false).await?;
                    }
                }
                let line = progress.line("service", &p.service);
                line.step("creating");
                engine
                    .create_swarm_service(&p.built, creds.as_ref())
                    .await?;
                line.done("created", None);
                changed.push(p);
            }
        }
    }
    for orphan in orphans {
        engine.remove_swarm_service(&orphan.id).await?;
        progress
            .line("service", &orphan.service)
            .done("removed", Some("not in the stack"));
    }
    if args.no_wait {
        return Ok(exit::OK);
    }
    let waits = changed
        .iter()
        .map(|p| converged(engine, loaded, printer, progress, p, deadline, false));
    let results = join_all(waits).await;
    let mut failures: Vec<String> = Vec::new();
    for r in results {
        if let Err(e) = r {
            failures.push(format!("{e:#}"));
        }
    }
    if !failures.is_empty() {
        return Err(Failure::new(failures.join("\n"))
            .with_hint("`stackctl ps` lists the tasks per node; `stackctl logs SERVICE` reads their output")
            .into());
    }
    // Secrets and configs no service uses any more (an old content): removed.
    let in_use: HashSet<&String> = wanted_files.iter().map(|(_, _, n, _)| n).collect();
    if args.services.is_empty() {
        for file in engine
            .stage_swarm_files(&loaded.stage, &loaded.project)
            .await?
        {
            if !in_use.contains(&file.name) && engine.remove_swarm_file(&file).await.is_ok() {
                progress
                    .line(file.kind, &file.name)
                    .done("removed", Some("no longer used"));
            }
        }
    }
    Ok(exit::OK)
}

/// How far a service is: (running on the new spec, wanted), and whether it is done.
fn count(found: &ServiceFound, tasks: &[TaskFound], hash: &str) -> (usize, usize, bool) {
    let current: Vec<&TaskFound> = tasks
        .iter()
        .filter(|t| t.hash.as_deref() == Some(hash))
        .collect();
    match found.mode.as_str() {
        "replicated-job" => {
            let complete = current.iter().filter(|t| t.state == "complete").count();
            let wanted = found.replicas as usize;
            (complete, wanted, complete >= wanted)
        }
        "global-job" => {
            let complete = current.iter().filter(|t| t.state == "complete").count();
            (
                complete,
                current.len(),
                !current.is_empty() && complete == current.len(),
            )
        }
        mode => {
            let running = current
                .iter()
                .filter(|t| t.desired == "running" && t.state == "running")
                .count();
            let wanted = if mode == "global" {
                current.iter().filter(|t| t.desired == "running").count()
            } else {
                found.replicas as usize
            };
            // Old tasks still running (start-first) are stopped before the update is over.
            let old = tasks
                .iter()
                .any(|t| t.hash.as_deref() != Some(hash) && t.state == "running");
            (
                running,
                wanted,
                running >= wanted && (mode != "global" || wanted > 0) && !old,
            )
        }
    }
}

/// Wait until the service runs its replicas on `planned`'s spec (healthy: Swarm counts a
/// task with a healthcheck as running once it is healthy), showing `2/3 running`; fail with
/// the failing tasks' node, state, error and last log lines when the update rolls back or
/// pauses, when tasks keep failing, or at the deadline. `rollback`: the wait of
/// `stackctl rollback` (a finished rollback is success).
async fn converged(
    engine: &Engine,
    loaded: &LoadedStack,
    printer: &Printer,
    progress: &Progress,
    planned: &Planned,
    deadline: Instant,
    rollback: bool,
) -> Result<()> {
    let name = service_name(loaded, &planned.service);
    let line = progress.line("service", &planned.service);
    let mut hash = planned.built.hash.clone();
    let mut shown = String::new();
    loop {
        if crate::interrupt::requested() {
            return Err(Interrupted.into());
        }
        let Some(found) = engine.swarm_service(&name).await? else {
            line.fail("wait", "gone");
            anyhow::bail!("service `{}` disappeared while waiting", planned.service);
        };
        if rollback {
            hash = found.hash.clone().unwrap_or_default();
        }
        let tasks = engine.service_tasks(&found.id).await?;
        let (running, wanted, done) = count(&found, &tasks, &hash);
        let state = found.update_state.as_deref();
        let verb = if found.mode.ends_with("-job") {
            "complete"
        } else {
            "running"
        };
        let text = format!("{running}/{wanted} {verb}");
        if text != shown {
            line.waiting(&text);
            shown = text;
        }
        let settled = match state {
            None | Some("completed") => true,
            Some("rollback_completed") => rollback,
            _ => false,
        };
        if done && settled {
            line.done(&format!("{running}/{wanted} {verb}"), None);
            return Ok(());
        }
        let failed: Vec<&TaskFound> = tasks
            .iter()
            .filter(|t| {
                t.hash.as_deref() == Some(hash.as_str())
                    && matches!(t.state.as_str(), "failed" | "rejected")
            })
            .collect();
        let rolled_back = !rollback
            && matches!(
                state,
                Some("rollback_started" | "rollback_completed" | "rollback_paused" | "paused")
            );
        let stuck = failed.len() >= FAILED_TASKS && !matches!(state, Some("updating"));
        let late = Instant::now() >= deadline;
        if rolled_back && state == Some("rollback_completed") && !late {
            // The failure is told once the previous spec runs again (a stop-first rollback
            // starts the last old task after Swarm says it completed).
            let previous = found.hash.clone().unwrap_or_default();
            let (running, wanted, done) = count(&found, &tasks, &previous);
            if !done {
                let text = format!("rolling back: {running}/{wanted} {verb}");
                if text != shown {
                    line.waiting(&text);
                    shown = text;
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = crate::interrupt::wait() => return Err(Interrupted.into()),
                }
                continue;
            }
        }
        if (rolled_back && state != Some("rollback_started")) || stuck || late {
            let why = match (state, late) {
                (Some("rollback_completed"), _) => {
                    "its update failed and was rolled back".to_string()
                }
                (Some("paused"), _) => {
                    "its update failed and is paused (`failure_action: pause`)".to_string()
                }
                (Some("rollback_paused"), _) => {
                    "its update failed and its rollback is paused".to_string()
                }
                (_, true) => format!("it did not converge in time ({running}/{wanted} {verb})"),
                _ => format!("{} of its tasks failed", failed.len()),
            };
            line.fail("converge", &why);
            let report = failure_report(engine, printer, &found, &tasks, &hash).await;
            anyhow::bail!("service `{}`: {why}{report}", planned.service);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        }
    }
}

/// The failing tasks of a service on the spec `hash` (the newest three): node, state,
/// error, last log lines.
async fn failure_report(
    engine: &Engine,
    printer: &Printer,
    found: &ServiceFound,
    tasks: &[TaskFound],
    hash: &str,
) -> String {
    let nodes = nodes_by_id(engine).await.unwrap_or_default();
    let mut failing: Vec<&TaskFound> = tasks
        .iter()
        .filter(|t| {
            t.hash.as_deref() == Some(hash) && matches!(t.state.as_str(), "failed" | "rejected")
        })
        .collect();
    if failing.is_empty() {
        failing = tasks
            .iter()
            .filter(|t| t.hash.as_deref() == Some(hash) && t.state != "running")
            .collect();
    }
    let mut out = String::new();
    if let Some(message) = &found.update_message {
        out.push_str(&format!("\n  swarm: {message}"));
    }
    for task in failing.iter().take(3) {
        let node = nodes
            .get(&task.node_id)
            .map(NodeFound::display)
            .unwrap_or_else(|| "no node".to_string());
        let error = task.err.clone().unwrap_or_else(|| task.message.clone());
        out.push_str(&format!(
            "\n  task {}.{} on node {node}: {}: {error}",
            found.service,
            task.slot.unwrap_or(0),
            task.state
        ));
        if !task.node_id.is_empty() {
            for log in engine.task_log_tail(&task.id, 5).await {
                out.push_str(&format!("\n    | {}", printer.mask(&log)));
            }
        }
    }
    out
}

/// How long the finished tasks of a removed job must stay, not marked for removal, before
/// `down` takes them for kept (see [`remove_stage`]).
const KEPT_AFTER: Duration = Duration::from_secs(2);

fn finished(task: &TaskFound) -> bool {
    matches!(
        task.state.as_str(),
        "complete" | "failed" | "shutdown" | "rejected" | "orphaned"
    )
}

/// Remove the stage's services and wait until their tasks are gone; then its networks.
///
/// Some engines never remove the tasks of a removed job (`replicated-job`, `global-job`):
/// their jobs orchestrator does not mark them for removal (moby/moby#44312; Docker 20.10
/// does this), so the finished tasks and their exited containers stay. A removed job's
/// tasks that are all finished and stay unmarked for [`KEPT_AFTER`] are taken for kept:
/// `down` goes on and names them (see [`kept_tasks`]).
async fn remove_stage(
    engine: &Engine,
    loaded: &LoadedStack,
    progress: &Progress,
    deadline: Instant,
) -> Result<Vec<ServiceFound>> {
    let services = engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?;
    for service in &services {
        engine.remove_swarm_service(&service.id).await?;
    }
    let waits = services.iter().map(|service| async move {
        let line = progress.line("service", &service.service);
        line.waiting("removing");
        let job = service.mode.ends_with("-job");
        let mut kept_since: Option<Instant> = None;
        loop {
            let tasks = engine.tasks_left(&service.id).await?;
            if tasks.is_empty() {
                line.done("removed", None);
                return Ok(());
            }
            if job && tasks.iter().all(|t| finished(t) && t.desired != "remove") {
                let since = *kept_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= KEPT_AFTER {
                    line.done(
                        "removed",
                        Some(&format!(
                            "the swarm keeps its {} finished task(s)",
                            tasks.len()
                        )),
                    );
                    return Ok(());
                }
            } else {
                kept_since = None;
            }
            if Instant::now() >= deadline {
                line.fail("remove", "tasks left");
                anyhow::bail!(
                    "service `{}`: {} task(s) still there at the deadline",
                    service.service,
                    tasks.len()
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = crate::interrupt::wait() => return Err(Interrupted.into()),
            }
        }
    });
    for r in join_all(waits).await {
        r?;
    }
    // The manager's own task containers are removed after their tasks (the workers' agents
    // do the same on theirs), but for those of kept tasks.
    let kept: Vec<String> = engine
        .stage_tasks(&loaded.stage, &loaded.project)
        .await?
        .into_iter()
        .filter_map(|t| t.container_id)
        .collect();
    loop {
        let left = engine
            .observe_named(&loaded.stage, &loaded.project, &[])
            .await?
            .containers
            .iter()
            .filter(|c| {
                !kept
                    .iter()
                    .any(|k| k.starts_with(&c.id) || c.id.starts_with(k))
            })
            .count();
        if left == 0 {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{left} task container(s) of the stage still on the manager at the deadline"
            );
        }
        tokio::time::sleep(POLL).await;
    }
    for (id, name) in engine
        .stage_network_names(&loaded.stage, &loaded.project)
        .await?
    {
        // A network is in use until the last task's endpoint is released on the manager.
        loop {
            match engine.remove_network(&id).await {
                Ok(()) => {
                    progress.line("network", &name).done("removed", None);
                    break;
                }
                Err(e) if Instant::now() < deadline && e.status == Some(403) => {
                    tokio::time::sleep(POLL).await
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(services)
}

/// The finished tasks of removed jobs that the swarm keeps (see [`remove_stage`]), named by
/// service with the nodes holding their exited containers; with `remove_here`, the
/// containers on the manager are removed (only the other nodes are named).
async fn kept_tasks(
    engine: &Engine,
    loaded: &LoadedStack,
    manager: &str,
    progress: &Progress,
    remove_here: bool,
) -> Result<()> {
    let tasks = engine.stage_tasks(&loaded.stage, &loaded.project).await?;
    if tasks.is_empty() {
        return Ok(());
    }
    let nodes = nodes_by_id(engine).await?;
    let mut by_service: BTreeMap<String, Vec<&TaskFound>> = BTreeMap::new();
    for task in &tasks {
        let service = task.labels.get(names::SERVICE).cloned().unwrap_or_default();
        by_service.entry(service).or_default().push(task);
    }
    let prune = names::stage_filter(&loaded.stage, &loaded.project)
        .iter()
        .map(|f| format!("--filter label={f}"))
        .collect::<Vec<_>>()
        .join(" ");
    for (service, tasks) in by_service {
        let mut elsewhere: Vec<String> = Vec::new();
        let mut removed = 0;
        for task in tasks {
            match &task.container_id {
                Some(container) if remove_here && task.node_id == manager => {
                    engine.remove_container(container).await?;
                    removed += 1;
                }
                _ => elsewhere.push(
                    nodes
                        .get(&task.node_id)
                        .map(NodeFound::display)
                        .unwrap_or_else(|| task.node_id.clone()),
                ),
            }
        }
        if removed > 0 {
            progress.line("task", &service).done(
                "removed",
                Some(&format!("{removed} kept container(s) on the manager")),
            );
        }
        elsewhere.sort();
        elsewhere.dedup();
        if !elsewhere.is_empty() {
            progress.warn(
                &format!(
                    "the swarm keeps the finished tasks of job `{service}` with their exited containers on {}: this engine does not remove the tasks of a removed job (moby/moby#44312)",
                    elsewhere.join(", ")
                ),
                Some(&format!(
                    "{}on those nodes, `docker container prune {prune}` removes the containers",
                    if remove_here { "" } else { "`stackctl purge` removes those on the manager; " }
                )),
            );
        }
    }
    Ok(())
}

/// The swarm's nodes by node ID.
async fn nodes_by_id(engine: &Engine) -> Result<HashMap<String, NodeFound>> {
    Ok(engine
        .swarm_nodes()
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect())
}

/// The engine, the manager node's ID, and (when `lock` gives how long to wait for it) the
/// stage's lock as on one engine: a file lock here, and on a remote manager a lock kept on
/// that engine, so two machines changing one stage take turns.
async fn reach_manager(
    endpoint: &Endpoint,
    loaded: &LoadedStack,
    printer: &Printer,
    lock: Option<Duration>,
) -> Result<(Engine, String, Option<crate::lock::StageLock>)> {
    let engine = Engine::connect(endpoint.clone()).await?;
    let manager = manager_node(&engine, loaded).await?;
    let held = match lock {
        Some(timeout) => Some(
            crate::lock::acquire(&engine, &loaded.project, &loaded.stage, timeout, printer).await?,
        ),
        None => None,
    };
    Ok((engine, manager, held))
}

/// `down` on a Swarm stage: its services (their tasks gone) and networks removed.
pub async fn down(
    endpoint: &Endpoint,
    loaded: &LoadedStack,
    printer: &Printer,
    timeout: u64,
) -> Result<i32> {
    let (engine, manager, _lock) = reach_manager(
        endpoint,
        loaded,
        printer,
        Some(Duration::from_secs(timeout)),
    )
    .await?;
    let progress = printer.progress();
    let deadline = Instant::now() + Duration::from_secs(timeout.max(30));
    let result = async {
        remove_stage(&engine, loaded, &progress, deadline).await?;
        kept_tasks(&engine, loaded, &manager, &progress, false).await
    }
    .await;
    progress.summary("down", result.is_ok());
    result.map(|_| exit::OK)
}

/// `purge` on a Swarm stage: `down`, then its secrets, configs and the volumes the
/// manager holds (those on other nodes are named).
pub async fn purge(
    endpoint: &Endpoint,
    loaded: &LoadedStack,
    printer: &Printer,
    timeout: u64,
) -> Result<i32> {
    let (engine, manager, _lock) = reach_manager(
        endpoint,
        loaded,
        printer,
        Some(Duration::from_secs(timeout)),
    )
    .await?;
    let progress = printer.progress();
    let deadline = Instant::now() + Duration::from_secs(timeout.max(30));
    // Where each volume's tasks ran, before the services go.
    let mut volume_nodes: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for service in engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?
    {
        if service.volumes.is_empty() {
            continue;
        }
        let tasks = engine.service_tasks(&service.id).await?;
        for volume in &service.volumes {
            let nodes = volume_nodes.entry(volume.clone()).or_default();
            nodes.extend(
                tasks
                    .iter()
                    .filter(|t| !t.node_id.is_empty())
                    .map(|t| t.node_id.clone()),
            );
        }
    }
    let result = async {
        remove_stage(&engine, loaded, &progress, deadline).await?;
        kept_tasks(&engine, loaded, &manager, &progress, true).await?;
        for file in engine
            .stage_swarm_files(&loaded.stage, &loaded.project)
            .await?
        {
            engine.remove_swarm_file(&file).await?;
            progress.line(file.kind, &file.name).done("removed", None);
        }
        let here = engine
            .stage_volume_names(&loaded.stage, &loaded.project)
            .await?;
        for volume in &here {
            engine.remove_volume(volume).await?;
            progress.line("volume", volume).done("removed", None);
        }
        let nodes = nodes_by_id(&engine).await?;
        // Volumes of services no longer deployed (after `down`): where the stack file put
        // their tasks. A service without constraints was kept on the manager.
        for (name, service) in &loaded.stack.services {
            let deploy = service.deploy.clone().unwrap_or_default();
            let every_node = matches!(deploy.mode.as_deref(), Some("global" | "global-job"));
            let constraints = deploy
                .placement
                .map(|p| p.constraints)
                .unwrap_or_default();
            for mount in &service.volumes {
                let (MountKind::Named, Some(source)) = (mount.kind, &mount.source) else {
                    continue;
                };
                if loaded.stack.volumes.get(source).is_some_and(|d| d.external) {
                    continue;
                }
                let volume = container::volume_name(loaded, source);
                if volume_nodes.contains_key(&volume) {
                    continue;
                }
                if every_node {
                    volume_nodes
                        .entry(volume)
                        .or_default()
                        .extend(nodes.keys().cloned());
                } else if !constraints.is_empty() {
                    progress.warn(
                        &format!(
                            "volume `{volume}` (service `{name}`) is node-local on the node its constraints ({}) chose, which may not be the manager: not removed there",
                            constraints.join(", ")
                        ),
                        Some(&format!("run `docker volume rm {volume}` on that node")),
                    );
                }
            }
        }
        for (volume, on) in &volume_nodes {
            let mut elsewhere: Vec<String> = on
                .iter()
                .filter(|n| **n != manager)
                .map(|n| nodes.get(n).map(NodeFound::display).unwrap_or(n.clone()))
                .collect();
            elsewhere.sort();
            if !elsewhere.is_empty() {
                progress.warn(
                    &format!(
                        "volume `{volume}` is node-local on {}, out of the manager's reach: not removed",
                        elsewhere.join(", ")
                    ),
                    Some(&format!("run `docker volume rm {volume}` on that node")),
                );
            }
        }
        anyhow::Ok(())
    }
    .await;
    progress.summary("purge", result.is_ok());
    result.map(|()| exit::OK)
}

/// `ps` on a Swarm stage: the tasks of its services, per node.
pub async fn ps(endpoint: &Endpoint, loaded: &LoadedStack, printer: &Printer) -> Result<i32> {
    let engine = Engine::connect(endpoint.clone()).await?;
    manager_node(&engine, loaded).await?;
    let nodes = nodes_by_id(&engine).await?;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut services = engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?;
    services.sort_by(|a, b| a.service.cmp(&b.service));
    for service in &services {
        let tasks = engine.service_tasks(&service.id).await?;
        for task in tasks
            .iter()
            .filter(|t| t.desired == "running" || t.state == "running" || t.desired == "complete")
        {
            let node = nodes
                .get(&task.node_id)
                .map(NodeFound::display)
                .unwrap_or_else(|| "-".to_string());
            let mut state = task.state.clone();
            if let Some(err) = &task.err {
                state = format!("{state}: {err}");
            }
            rows.push([
                node,
                service.service.clone(),
                format!("{}.{}", service.service, task.slot.unwrap_or(0)),
                task.desired.clone(),
                state,
            ]);
        }
    }
    rows.sort();
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([["NODE", "SERVICE", "TASK", "DESIRED"][i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let row = |r: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    printer.data(&row(["NODE", "SERVICE", "TASK", "DESIRED", "STATE"]));
    for r in &rows {
        printer.data(&row([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    Ok(exit::OK)
}

/// `logs` on a Swarm stage: the output of the services' tasks (`wanted`: every service when
/// empty).
pub async fn logs(
    endpoint: &Endpoint,
    loaded: &LoadedStack,
    printer: &Printer,
    wanted: &[String],
    follow: bool,
    tail: Option<u64>,
) -> Result<i32> {
    let engine = Engine::connect(endpoint.clone()).await?;
    manager_node(&engine, loaded).await?;
    let services: Vec<(String, String)> = engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.service))
        .map(|s| (s.id, s.service))
        .collect();
    let width = services.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let index: HashMap<String, usize> = services
        .iter()
        .enumerate()
        .map(|(i, (_, s))| (s.clone(), i))
        .collect();
    let stream = engine.service_log_stream(&services, follow, tail.map(|t| t.to_string()));
    futures_util::pin_mut!(stream);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = crate::interrupt::wait() => break,
        };
        let Some((service, text)) = item else { break };
        let text = text?;
        let prefix = crate::output::log_prefix(printer, &service, width, index[&service]);
        for line in text.lines() {
            printer.data(&format!("{prefix}{}", printer.mask(line)));
        }
    }
    Ok(exit::OK)
}

/// `rollback`: the services `wanted` (every one when empty) back to their previous spec;
/// with `wait`, until they run it.
pub async fn rollback(
    endpoint: &Endpoint,
    loaded: &LoadedStack,
    printer: &Printer,
    wanted: &[String],
    wait: bool,
    timeout: u64,
) -> Result<i32> {
    let (engine, _, _lock) = reach_manager(
        endpoint,
        loaded,
        printer,
        Some(Duration::from_secs(timeout)),
    )
    .await?;
    let progress = printer.progress();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let services: Vec<ServiceFound> = engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.service))
        .collect();
    let result = async {
        for service in &services {
            let line = progress.line("service", &service.service);
            line.step("rolling back");
            engine.rollback_swarm_service(service).await.map_err(|e| {
                Failure::new(format!("service `{}`: {}", service.service, e.message)).with_hint(
                    "a service rolls back only to the spec it had before its last update",
                )
            })?;
            line.done("rolling back", None);
        }
        if !wait {
            return Ok(());
        }
        let planned: Vec<Planned> = services
            .iter()
            .map(|s| Planned {
                service: s.service.clone(),
                built: BuiltSpec::placeholder(),
                found: Some(s.clone()),
                reason: String::new(),
            })
            .collect();
        let waits = planned
            .iter()
            .map(|p| converged(&engine, loaded, printer, &progress, p, deadline, true));
        let failures: Vec<String> = join_all(waits)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| format!("{e:#}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow::Error::from(Failure::new(failures.join("\n"))))
        }
    }
    .await;
    progress.summary("rollback", result.is_ok());
    result.map(|()| exit::OK)
}

/// `exec SERVICE -- CMD` on a swarm: the container of a running task of the service on the
/// manager (the node the engine address reaches); an error saying where the tasks run when
/// none runs there.
pub async fn task_container_here(
    engine: &Engine,
    loaded: &LoadedStack,
    service: &str,
) -> Result<String> {
    let manager = manager_node(engine, loaded).await?;
    let name = service_name(loaded, service);
    let Some(found) = engine.swarm_service(&name).await? else {
        return Err(Failure::new(format!(
            "service `{service}` is not deployed on stage `{}`",
            loaded.stage
        ))
        .with_hint(format!("deploy it with `stackctl up {service}`"))
        .into());
    };
    let tasks = engine.service_tasks(&found.id).await?;
    let running: Vec<&TaskFound> = tasks
        .iter()
        .filter(|t| t.state == "running" && t.desired == "running")
        .collect();
    if let Some(container) = running
        .iter()
        .filter(|t| t.node_id == manager)
        .find_map(|t| t.container_id.clone())
    {
        return Ok(container);
    }
    let nodes = nodes_by_id(engine).await?;
    let mut elsewhere: Vec<String> = running
        .iter()
        .map(|t| {
            nodes
                .get(&t.node_id)
                .map(NodeFound::display)
                .unwrap_or_else(|| t.node_id.clone())
        })
        .collect();
    elsewhere.sort();
    elsewhere.dedup();
    let message = if elsewhere.is_empty() {
        format!(
            "service `{service}` has no running task on stage `{}`",
            loaded.stage
        )
    } else {
        format!(
            "service `{service}` runs no task on the manager this engine address reaches; its tasks run on {}",
            elsewhere.join(", ")
        )
    };
    Err(Failure::new(message)
        .with_hint("exec reaches the containers of the manager's node: point -H at a manager where a task runs, or use `docker exec` on that node")
        .into())
}
