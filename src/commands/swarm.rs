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

use anyhow::Result;
use futures_util::future::join_all;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{check_services, connect, load_stack, Context};
use crate::cli::{DownArgs, LogsArgs, PurgeArgs, RollbackArgs, UpArgs};
use crate::engine::swarm::{
    service_spec, BuiltSpec, FileWant, HealthWant, MountWant, NodeFound, PortWant, ServiceFound,
    ServiceWant, TaskFound, UpdateWant,
};
use crate::engine::Engine;
use crate::error::{exit, Failure, Interrupted, UsageError};
use crate::names;
use crate::output::{Printer, Progress};
use crate::plan::container;
use crate::registry::Credentials;
use crate::stack::model::{MountKind, RestartPolicy, Service, UpdateConfig};
use crate::stack::LoadedStack;

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

fn nanos(d: Option<crate::stack::model::DurationSpec>) -> Option<i64> {
    d.map(|d| d.0.as_nanos().min(i64::MAX as u128) as i64)
}

fn update_want(config: Option<&UpdateConfig>) -> UpdateWant {
    let Some(c) = config else {
        return UpdateWant::default();
    };
    UpdateWant {
        parallelism: c.parallelism,
        delay_ns: nanos(c.delay),
        failure_action: c.failure_action.clone(),
        monitor_ns: nanos(c.monitor),
        max_failure_ratio: c.max_failure_ratio,
        order: c.order.clone(),
    }
}

/// The content-addressed Swarm name of a secret or config.
fn file_name(loaded: &LoadedStack, name: &str, content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{hex}",
        names::container(&loaded.stage, &loaded.project, name)
    )
}

/// What a service should be on the swarm; `notes` gets what the plan shows about it (a
/// node-local volume pinning it to a node).
fn want(
    loaded: &LoadedStack,
    name: &str,
    service: &Service,
    image: &str,
    manager: &str,
    files: &HashMap<(&'static str, String), (String, String)>,
    notes: &mut Vec<String>,
) -> ServiceWant {
    let spec = container::service(loaded, name, service, image);
    let deploy = service.deploy.clone().unwrap_or_default();
    let mut labels = owner(loaded, names::role::SERVICE);
    labels.insert(names::SERVICE.to_string(), name.to_string());
    let mut container_labels = labels.clone();
    for (k, v) in &deploy.labels {
        labels.insert(k.clone(), v.clone());
    }
    for (k, v) in &spec.user_labels {
        container_labels.insert(k.clone(), v.clone());
    }
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for mount in &service.volumes {
        match (mount.kind, &mount.source) {
            (MountKind::Named, Some(source)) => {
                let volume = container::volume_name(loaded, source);
                volumes.push(volume.clone());
                let mut labels = owner(loaded, names::role::VOLUME);
                if let Some(def) = loaded.stack.volumes.get(source) {
                    for (k, v) in &def.labels {
                        labels.insert(k.clone(), v.clone());
                    }
                }
                mounts.push(MountWant::Volume {
                    source: volume,
                    target: mount.target.clone(),
                    read_only: mount.read_only,
                    labels,
                });
            }
            (MountKind::Bind, Some(source)) => mounts.push(MountWant::Bind {
                source: container::absolute_path(&loaded.dir, source)
                    .display()
                    .to_string(),
                target: mount.target.clone(),
                read_only: mount.read_only,
            }),
            (MountKind::Tmpfs, _) => mounts.push(MountWant::Tmpfs {
                target: mount.target.clone(),
            }),
            _ => mounts.push(MountWant::Anonymous {
                target: mount.target.clone(),
            }),
        }
    }
    for entry in &service.tmpfs {
        let target = entry.split(':').next().unwrap_or(entry).to_string();
        mounts.push(MountWant::Tmpfs { target });
    }
    let placement = deploy.placement.clone().unwrap_or_default();
    let mut constraints = placement.constraints.clone();
    if !volumes.is_empty() {
        if constraints.is_empty() {
            constraints.push(format!("node.id=={manager}"));
            notes.push(format!(
                "service `{name}` keeps to node {} (the manager): its volume{} {} {} node-local",
                &manager[..manager.len().min(12)],
                if volumes.len() == 1 { "" } else { "s" },
                volumes
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if volumes.len() == 1 { "is" } else { "are" },
            ));
        } else {
            notes.push(format!(
                "service `{name}`: its volumes are node-local; its constraints ({}) should keep it on one node",
                constraints.join(", ")
            ));
        }
    }
    let restart = deploy.restart_policy.clone();
    let restart_condition = match (&restart, service.restart) {
        (Some(r), _) => r.condition.clone(),
        (None, Some(RestartPolicy::No)) => Some("none".to_string()),
        (None, Some(RestartPolicy::OnFailure(_))) => Some("on-failure".to_string()),
        (None, Some(_)) => Some("any".to_string()),
        (None, None) => None,
    };
    let restart_max_attempts = match (&restart, service.restart) {
        (Some(r), _) => r.max_attempts.map(u64::from),
        (None, Some(RestartPolicy::OnFailure(n))) => n.map(u64::from),
        _ => None,
    };
    let reservations = deploy
        .resources
        .as_ref()
        .and_then(|r| r.reservations.clone())
        .unwrap_or_default();
    let files = spec
        .files
        .iter()
        .filter_map(|f| {
            let (id, swarm_name) = files.get(&(f.kind, f.source.clone()))?;
            Some(FileWant {
                kind: f.kind,
                id: id.clone(),
                name: swarm_name.clone(),
                path: f.path.clone(),
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            })
        })
        .collect();
    ServiceWant {
        name: service_name(loaded, name),
        labels,
        container_labels,
        image: image.to_string(),
        entrypoint: spec.entrypoint.clone(),
        command: spec.command.clone(),
        env: spec.env.clone(),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        init: spec.init,
        tty: spec.tty,
        stdin_open: spec.stdin_open,
        read_only: spec.read_only,
        stop_signal: spec.stop_signal.clone(),
        stop_grace_ns: spec.stop_timeout_s.map(|s| s * 1_000_000_000),
        health: spec.healthcheck.as_ref().map(|h| HealthWant {
            test: h.test.clone(),
            interval_ns: h.interval_ns,
            timeout_ns: h.timeout_ns,
            retries: h.retries,
            start_period_ns: h.start_period_ns,
        }),
        extra_hosts: spec.extra_hosts.clone(),
        mounts,
        files,
        networks: spec
            .networks
            .iter()
            .map(|n| (n.network.clone(), n.aliases.clone()))
            .collect(),
        mode: deploy.mode.clone().unwrap_or_else(|| "replicated".into()),
        replicas: u64::from(service.replicas()),
        endpoint_dnsrr: deploy.endpoint_mode.as_deref() == Some("dnsrr"),
        ports: service
            .ports
            .iter()
            .map(|p| PortWant {
                target: p.container_port,
                published: p.host_port,
                protocol: p.protocol.clone(),
                host_mode: p.mode.as_deref() == Some("host"),
            })
            .collect(),
        constraints,
        preferences: placement
            .preferences
            .iter()
            .map(|p| p.spread.clone())
            .collect(),
        max_replicas_per_node: placement.max_replicas_per_node,
        nano_cpus: spec.nano_cpus,
        memory: spec.memory,
        pids: spec.pids_limit,
        reserve_nano_cpus: reservations.cpus.map(|c| (c * 1e9) as i64),
        reserve_memory: reservations.memory.map(|m| m.0),
        restart_condition,
        restart_max_attempts,
        restart_delay_ns: restart.as_ref().and_then(|r| nanos(r.delay)),
        restart_window_ns: restart.as_ref().and_then(|r| nanos(r.window)),
        update: update_want(deploy.update_config.as_ref()),
        rollback: update_want(deploy.rollback_config.as_ref()),
    }
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

/// Build (on the manager) and push the images of the services that have `build:`, then
/// pin every service's image to the digest its registry holds. Returns service → pinned
/// reference, and service → credentials for the nodes' pulls.
async fn images(
    engine: &Engine,
    loaded: &LoadedStack,
    selected: &[String],
    rebuild: bool,
    dry_run: bool,
    progress: &Progress,
) -> Result<(
    HashMap<String, String>,
    HashMap<String, Option<Credentials>>,
)> {
    let builds = crate::plan::image::stage_images(loaded);
    let mut built: HashSet<String> = HashSet::new();
    let mut pins = HashMap::new();
    let mut auths = HashMap::new();
    for name in selected {
        crate::interrupt::check()?;
        let service = &loaded.stack.services[name];
        let reference = container::service_image(loaded, name, service);
        let owner = crate::registry::owner_label(loaded, name);
        let creds = credentials(engine, &reference).await?;
        if dry_run {
            // Nothing is built or pushed: the digest the registry has now, if any.
            let digest = engine.registry_digest(&reference, creds.as_ref()).await;
            let image = match digest {
                Ok(digest) => pinned(&reference, &digest),
                Err(_) => reference.clone(),
            };
            pins.insert(name.clone(), image);
            auths.insert(name.clone(), creds);
            continue;
        }
        if service.build.is_some() && !built.contains(&reference) {
            let build = builds
                .iter()
                .find(|b| b.request.tag == reference)
                .ok_or_else(|| anyhow::anyhow!("no build of `{reference}`"))?;
            let present = engine.image_id(&reference).await?.is_some();
            if rebuild || !present {
                let line = progress.line("image", &reference);
                line.step("building");
                let shown = |text: &str| line.detail(text);
                let request = crate::apply::docker::build_request(&build.request);
                match engine.build_image(&request, &shown).await {
                    Ok(_) => line.done("built", None),
                    Err(err) => {
                        line.fail("build", &format!("{err:#}"));
                        return Err(err.context(format!("build the image of {owner}")));
                    }
                }
            }
            let line = progress.line("image", &reference);
            line.step("pushing");
            match crate::apply::docker::push_image(engine, &reference, &owner, &|_, _| {}).await {
                Ok(bytes) => line.done("pushed", Some(&crate::output::human_bytes(bytes))),
                Err(err) => {
                    line.fail("push", &format!("{err:#}"));
                    return Err(err);
                }
            }
            built.insert(reference.clone());
        }
        let digest = if reference.contains('@') {
            reference.split('@').nth(1).unwrap_or_default().to_string()
        } else {
            engine
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
                })?
        };
        pins.insert(name.clone(), pinned(&reference, &digest));
        auths.insert(name.clone(), creds);
    }
    Ok((pins, auths))
}

/// One service's plan: what it is and what happens to it.
struct Planned {
    service: String,
    built: BuiltSpec,
    found: Option<ServiceFound>,
}

impl Planned {
    fn changed(&self) -> bool {
        self.found.as_ref().and_then(|f| f.hash.as_deref()) != Some(self.built.hash.as_str())
    }
}

pub async fn up(ctx: &Context, args: &UpArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let selected = {
        let asked = check_services(&loaded, &args.services)?;
        if asked.is_empty() {
            ordered(&loaded)
        } else {
            ordered(&loaded)
                .into_iter()
                .filter(|s| asked.contains(s))
                .collect()
        }
    };
    let timeout = Duration::from_secs(args.timeout);
    let (engine, manager, _lock) =
        reach_manager(&loaded, &printer, (!args.dry_run).then_some(timeout)).await?;
    let deadline = Instant::now() + timeout;
    let progress = printer.progress();
    let result = converge(
        &engine, &loaded, &printer, &progress, &selected, &manager, args, deadline,
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
    args: &UpArgs,
    deadline: Instant,
) -> Result<i32> {
    // Images first: a service whose image cannot be pinned changes nothing.
    let (pins, auths) =
        images(engine, loaded, selected, args.build, args.dry_run, progress).await?;
    let found: HashMap<String, ServiceFound> = engine
        .stage_services(&loaded.stage, &loaded.project)
        .await?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();

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
        let want = want(
            loaded,
            name,
            service,
            &pins[name],
            manager,
            &files,
            &mut notes,
        );
        let built = service_spec(&want);
        plan.push(Planned {
            service: name.clone(),
            found: found.get(&want.name).cloned(),
            built,
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
        for p in &plan {
            let action = match (&p.found, p.changed()) {
                (None, _) => "create",
                (Some(_), true) => "update",
                (Some(_), false) => "unchanged",
            };
            printer.data(&format!("service {}: {action}", p.service));
        }
        for o in &orphans {
            printer.data(&format!("service {}: remove (not in the stack)", o.service));
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
                line.done("updated", None);
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
    let nodes: HashMap<String, NodeFound> = engine
        .swarm_nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
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

/// Remove the stage's services and wait until their tasks are gone; then its networks.
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
        loop {
            let tasks = engine.tasks_left(&service.id).await?;
            if tasks.is_empty() {
                line.done("removed", None);
                return Ok(());
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
    // do the same on theirs).
    loop {
        let left = engine
            .observe_named(&loaded.stage, &loaded.project, &[])
            .await?
            .containers
            .len();
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

/// The engine, the manager node's ID, and (when `lock` gives how long to wait for it) the
/// stage's lock as on one engine: a file lock here, and on a remote manager a lock kept on
/// that engine, so two machines changing one stage take turns.
async fn reach_manager(
    loaded: &LoadedStack,
    printer: &Printer,
    lock: Option<Duration>,
) -> Result<(Engine, String, Option<crate::lock::StageLock>)> {
    let engine = connect().await?;
    let manager = manager_node(&engine, loaded).await?;
    let held = match lock {
        Some(timeout) => Some(
            crate::lock::acquire(&engine, &loaded.project, &loaded.stage, timeout, printer).await?,
        ),
        None => None,
    };
    Ok((engine, manager, held))
}

pub async fn down(ctx: &Context, args: &DownArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let (engine, _, _lock) =
        reach_manager(&loaded, &printer, Some(Duration::from_secs(args.timeout))).await?;
    let progress = printer.progress();
    let deadline = Instant::now() + Duration::from_secs(args.timeout.max(30));
    let result = remove_stage(&engine, &loaded, &progress, deadline).await;
    progress.summary("down", result.is_ok());
    result.map(|_| exit::OK)
}

pub async fn purge(ctx: &Context, args: &PurgeArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let (engine, manager, _lock) =
        reach_manager(&loaded, &printer, Some(Duration::from_secs(args.timeout))).await?;
    let progress = printer.progress();
    let deadline = Instant::now() + Duration::from_secs(args.timeout.max(30));
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
        remove_stage(&engine, &loaded, &progress, deadline).await?;
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
        let nodes: HashMap<String, NodeFound> = engine
            .swarm_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        for (volume, on) in &volume_nodes {
            let elsewhere: Vec<String> = on
                .iter()
                .filter(|n| **n != manager)
                .map(|n| nodes.get(n).map(NodeFound::display).unwrap_or(n.clone()))
                .collect();
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

pub async fn ps(ctx: &Context) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let engine = connect().await?;
    manager_node(&engine, &loaded).await?;
    let nodes: HashMap<String, NodeFound> = engine
        .swarm_nodes()
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
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

pub async fn logs(ctx: &Context, args: &LogsArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let wanted = check_services(&loaded, &args.services)?;
    let engine = connect().await?;
    manager_node(&engine, &loaded).await?;
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
    let stream =
        engine.service_log_stream(&services, args.follow, args.tail.map(|t| t.to_string()));
    futures_util::pin_mut!(stream);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = crate::interrupt::wait() => break,
        };
        let Some((service, text)) = item else { break };
        let text = text?;
        let prefix = crate::output::log_prefix(&printer, &service, width, index[&service]);
        for line in text.lines() {
            printer.data(&format!("{prefix}{}", printer.mask(line)));
        }
    }
    Ok(exit::OK)
}

pub async fn rollback(ctx: &Context, args: &RollbackArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if !is_swarm(&loaded) {
        return Err(UsageError::new(format!(
            "`rollback` returns Swarm services to their previous spec, and {} deploys to one engine",
            loaded.file_display()
        ))
        .with_hint("on one engine, check out the previous stack file and run `stackctl up`")
        .into());
    }
    let wanted = check_services(&loaded, &args.services)?;
    let (engine, _, _lock) =
        reach_manager(&loaded, &printer, Some(Duration::from_secs(args.timeout))).await?;
    let progress = printer.progress();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
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
        if args.no_wait {
            return Ok(());
        }
        let planned: Vec<Planned> = services
            .iter()
            .map(|s| Planned {
                service: s.service.clone(),
                built: BuiltSpec::placeholder(),
                found: Some(s.clone()),
            })
            .collect();
        let waits = planned
            .iter()
            .map(|p| converged(&engine, &loaded, &printer, &progress, p, deadline, true));
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
    let nodes: HashMap<String, NodeFound> = engine
        .swarm_nodes()
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
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
