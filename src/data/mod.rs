//! A stage's data as a thing of its own (`stackctl data`): its items (each named volume of
//! `volumes:`, each volume path of a data container), what mounts them, reading them out
//! through the engine's archive API and restoring them.
//!
//! Restoring never writes over what is there before the whole stream was checked:
//! - a data container is loaded into a fresh copy of itself (`…--NAME-load-ID`, same spec),
//!   and swapped in at the end by a rename (the old one and the service containers that
//!   mount it are removed; the services are created again);
//! - a named volume that is empty is loaded in place; if anything fails (a checksum, the
//!   engine, Ctrl-C) it is made empty again (removed and created anew);
//! - a named volume that holds data (`--force`) is loaded into a fresh volume
//!   (`…-load-ID`), and at the end the target is created anew and the fresh one copied into
//!   it on the engine (the engine cannot rename a volume).
//!
//! Services that mount a selected item are stopped first and started again at the end, in
//! dependency order and waiting for health, through the `apply` executor (after an
//! interrupt too, a stop in flight waited out first).
//!
//! A process killed outright leaves its staged copies and helpers; the next `data`, `up`
//! or `down` of the stage finishes or undoes that load ([`recover_dead_loads`]), so the
//! data is all old or all new.
//!
//! - [`format`]: the archive: manifest, parts, trailer; reading and writing it.

pub mod format;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use futures_util::stream::StreamExt;
use tokio::sync::mpsc;

use crate::apply::docker::{container_config, DockerTarget};
use crate::apply::{ApplyOptions, Interrupt};
use crate::engine::archive::HELPER_MOUNT;
use crate::engine::Engine;
use crate::error::{Failure, Interrupted, UsageError};
use crate::names;
use crate::output::Progress;
use crate::plan::container;
use crate::plan::up::{self, Action, PlanOptions};
use crate::stack::model::MountKind;
use crate::stack::LoadedStack;
use format::{BadArchive, Checksums, ItemInfo, ItemSum, Kind, Manifest, Measure, MountInfo, Msg};

/// The items of a stage, in stack-file order: named volumes first, then data containers'
/// volume paths. External volumes are not the stage's and are left out.
pub fn stage_items(loaded: &LoadedStack) -> Vec<ItemInfo> {
    let stack = &loaded.stack;
    let mut items = Vec::new();
    for (key, def) in &stack.volumes {
        if def.external {
            continue;
        }
        let mounts = stack
            .services
            .iter()
            .flat_map(|(service, s)| {
                s.volumes
                    .iter()
                    .filter(|m| m.kind == MountKind::Named && m.source.as_deref() == Some(key))
                    .map(move |m| MountInfo {
                        service: service.clone(),
                        target: m.target.clone(),
                    })
            })
            .collect();
        items.push(ItemInfo {
            name: key.clone(),
            kind: Kind::Volume,
            path: HELPER_MOUNT.to_string(),
            entry: format!("volumes/{key}.tar"),
            mounts,
        });
    }
    for (key, data) in &stack.data_containers {
        let users: Vec<&String> = stack
            .services
            .iter()
            .filter(|(_, s)| {
                s.volumes_from
                    .iter()
                    .any(|v| container::volumes_from_target(v) == key)
            })
            .map(|(name, _)| name)
            .collect();
        for (index, mount) in data.volumes.iter().enumerate() {
            if mount.source.is_some() {
                // A named volume is an item of its own; a bind mount is the host's.
                continue;
            }
            items.push(ItemInfo {
                name: key.clone(),
                kind: Kind::Data,
                path: mount.target.clone(),
                entry: format!("data/{key}/{index}.tar"),
                mounts: users
                    .iter()
                    .map(|service| MountInfo {
                        service: (*service).clone(),
                        target: mount.target.clone(),
                    })
                    .collect(),
            });
        }
    }
    items
}

/// The names of items, each once, in order.
pub fn item_names(items: &[ItemInfo]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for item in items {
        if !names.contains(&item.name) {
            names.push(item.name.clone());
        }
    }
    names
}

/// The items asked for by name (all when none is named). An unknown name is a usage error
/// that lists the known ones.
pub fn select(items: &[ItemInfo], asked: &[String], whose: &str) -> Result<Vec<ItemInfo>> {
    let known = item_names(items);
    if known.is_empty() {
        return Err(
            UsageError::new(format!("{whose} has no named volume or data container"))
                .with_hint("declare them under `volumes:` or `data_containers:` in the stack file")
                .into(),
        );
    }
    for name in asked {
        if !known.contains(name) {
            return Err(UsageError::new(format!(
                "no volume or data container `{name}` in {whose}"
            ))
            .with_hint(format!("known: {}", known.join(", ")))
            .into());
        }
    }
    Ok(items
        .iter()
        .filter(|i| asked.is_empty() || asked.contains(&i.name))
        .cloned()
        .collect())
}

/// The manifest of an archive of these items of a stage.
pub fn manifest(loaded: &LoadedStack, items: &[ItemInfo], compression: &str) -> Manifest {
    Manifest {
        format: format::FORMAT.to_string(),
        project: loaded.project.clone(),
        stage: loaded.stage.clone(),
        stackctl_version: env!("CARGO_PKG_VERSION").to_string(),
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        compression: compression.to_string(),
        items: items.to_vec(),
    }
}

/// The engine object an item lives in: the volume's name, or the data container's.
pub fn engine_object(loaded: &LoadedStack, item: &ItemInfo) -> String {
    match item.kind {
        Kind::Volume => container::volume_name(loaded, &item.name),
        Kind::Data => names::data_container(&loaded.stage, &loaded.project, &item.name),
    }
}

/// The services that mount any of these items.
pub fn users(items: &[ItemInfo]) -> BTreeSet<String> {
    items
        .iter()
        .flat_map(|i| i.mounts.iter().map(|m| m.service.clone()))
        .collect()
}

/// How to get an image for a stage that has none on the engine: build or pull it, or,
/// without a registry, name one the engine has in the variable the stack takes it from
/// (`DB_IMAGE=IMAGE stackctl init --env qa --no-run` writes it into `.env.qa`).
fn missing_image_hint(loaded: &LoadedStack, references: &[String]) -> String {
    let stage = &loaded.stage;
    let listed = references
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let variable = loaded
        .variables
        .iter()
        .find(|used| references.contains(&used.value))
        .map(|used| {
            format!(
                "; without a registry, name one this engine has (`docker image ls`): `{}=IMAGE stackctl init --env {stage} --no-run` writes it into .env.{stage}",
                used.name
            )
        })
        .unwrap_or_default();
    format!("the stage's images: {listed}; `stackctl -e {stage} build` or `stackctl -e {stage} pull` gets them{variable}")
}

/// The helper containers and staging objects made for one run, removed on every path.
pub struct Helpers<'a> {
    engine: &'a Engine,
    loaded: &'a LoadedStack,
    image: Option<String>,
    /// Helper containers made, by volume.
    made: Vec<(String, String)>,
}

impl<'a> Helpers<'a> {
    pub fn new(engine: &'a Engine, loaded: &'a LoadedStack) -> Self {
        Helpers {
            engine,
            loaded,
            image: None,
            made: Vec::new(),
        }
    }

    /// An image of the stage that is on the engine: a helper is created from it and never
    /// started, so any image does (no helper image is pulled).
    async fn image(&mut self) -> Result<String> {
        if let Some(image) = &self.image {
            return Ok(image.clone());
        }
        let loaded = self.loaded;
        let index = self.engine.image_index().await?;
        let mut references: Vec<String> = loaded
            .stack
            .data_containers
            .keys()
            .map(|name| container::data_image(loaded, name))
            .collect();
        references.extend(
            loaded
                .stack
                .services
                .iter()
                .map(|(name, service)| container::service_image(loaded, name, service)),
        );
        let image = references
            .iter()
            .find_map(|r| index.resolve(r))
            .ok_or_else(|| {
                Failure::new(format!(
                    "no image of stage `{}` is on this engine: one is needed to reach its volumes (a container is created from it, never started)",
                    loaded.stage
                ))
                .with_hint(missing_image_hint(loaded, &references))
            })?;
        self.image = Some(image.clone());
        Ok(image)
    }

    /// A never-started container mounting `volume` at [`HELPER_MOUNT`].
    pub async fn helper(&mut self, volume: &str) -> Result<String> {
        self.helper_named(volume, HELPER_TASK).await
    }

    /// A helper that writes a load into an empty volume in place: its name says so, so the
    /// next command can empty the volume again when the load died half way
    /// ([`recover_dead_loads`]).
    async fn fill_helper(&mut self, volume: &str) -> Result<String> {
        self.helper_named(volume, FILL_TASK).await
    }

    async fn helper_named(&mut self, volume: &str, task: &str) -> Result<String> {
        let image = self.image().await?;
        let loaded = self.loaded;
        let name = names::task_container(
            &loaded.stage,
            &loaded.project,
            task,
            &crate::plan::task::short_id(),
        );
        let mut labels = names::owner_labels(&loaded.stage, &loaded.project, names::role::TASK);
        labels.insert(names::TASK.to_string(), "data".to_string());
        self.engine
            .create_helper(&name, &image, volume, labels)
            .await?;
        self.made.push((volume.to_string(), name.clone()));
        Ok(name)
    }

    /// Remove one helper now.
    pub async fn remove(&mut self, name: &str) -> Result<()> {
        self.made.retain(|(_, n)| n != name);
        Ok(self.engine.remove_container(name).await?)
    }

    /// Remove every helper left.
    pub async fn remove_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        for (_, name) in std::mem::take(&mut self.made) {
            if let Err(err) = self.engine.remove_container(&name).await {
                if first.is_ok() {
                    first = Err(err.into());
                }
            }
        }
        first
    }
}

/// The task name in a helper's container name (`STAGE-PROJECT--task-data-ID`).
const HELPER_TASK: &str = "data";
/// A helper writing a load into an empty volume in place (`--task-data-fill-ID`).
const FILL_TASK: &str = "data-fill";
/// The volume whose existence says a load's stream was checked and its swap begun
/// (`STAGE-PROJECT--data-commit`: a stack volume's name has one `_`, never `--`).
fn commit_marker(loaded: &LoadedStack) -> String {
    format!("{}-{}--data-commit", loaded.stage, loaded.project)
}

/// Empty `volume` (created anew) and copy into it, on the engine, what the helper `from`
/// mounts.
async fn copy_volume(
    engine: &Engine,
    loaded: &LoadedStack,
    helpers: &mut Helpers<'_>,
    from: &str,
    volume: &str,
) -> Result<()> {
    recreate_volume(engine, loaded, volume).await?;
    let target = helpers.helper(volume).await?;
    let source = engine.download(from, HELPER_MOUNT);
    let body = source.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    engine.upload(&target, "/", body).await?;
    helpers.remove(&target).await?;
    Ok(())
}

/// The staged copy of `object` a load makes (`OBJECT-load-ID`)?
fn is_staged_copy_of(object: &str, name: &str) -> bool {
    name.strip_prefix(object)
        .and_then(|rest| rest.strip_prefix("-load-"))
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// What a `data` command killed before it could clean up leaves on its stage, and what the
/// next command does with it. Call holding the stage lock: a live `data` command holds it,
/// so whatever is found then belongs to a dead one (each command clears what an earlier one
/// left, so there is one at most).
///
/// When the load had checked its whole stream and begun to swap it in (the commit marker
/// volume exists), the swap is finished: each data container's staged copy takes its
/// place, each staged volume is copied into its target, a volume filled in place is kept.
/// Otherwise the load is undone: staged copies removed, a volume filled in place (it was
/// empty) emptied again. Helper containers are removed either way. Last, the services it
/// had stopped (its marker file) are started again, once any stop it asked for is over.
/// Each step is said on stderr; the data is so left all old or all new.
pub async fn recover_dead_loads(
    engine: &Engine,
    loaded: &LoadedStack,
    printer: &crate::output::Printer,
) -> Result<()> {
    let items = stage_items(loaded);
    if items.is_empty() {
        return Ok(());
    }
    let observed = engine.observe(&loaded.stage, &loaded.project).await?;
    let marker = commit_marker(loaded);
    let forward = observed.volumes.contains(&marker);
    let helper_prefix = names::task_container(&loaded.stage, &loaded.project, HELPER_TASK, "");
    let fill_prefix = names::task_container(&loaded.stage, &loaded.project, FILL_TASK, "");
    let staged_of = |name: &str| {
        items
            .iter()
            .find(|item| is_staged_copy_of(&engine_object(loaded, item), name))
    };
    let said = |message: String| {
        printer.status(&format!(
            "{message} (left by a `data` command of stage `{}` killed before it finished)",
            loaded.stage
        ))
    };
    // Helpers first: they may mount the staged volumes. A volume filled in place is made
    // empty again unless the swap had begun.
    for helper in observed
        .containers
        .iter()
        .filter(|c| c.name.starts_with(&helper_prefix))
    {
        engine.remove_container(&helper.name).await?;
        if helper.name.starts_with(&fill_prefix) && !forward {
            for mount in &helper.volumes {
                if items.iter().any(|i| engine_object(loaded, i) == mount.name) {
                    recreate_volume(engine, loaded, &mount.name).await?;
                    said(format!("emptied volume `{}` again", mount.name));
                }
            }
        }
    }
    for container in &observed.containers {
        let Some(item) = staged_of(&container.name) else {
            continue;
        };
        let object = engine_object(loaded, item);
        if forward {
            swap_data_container(engine, loaded, &item.name, &object, &container.name).await?;
            said(format!("swapped in `{object}` from its checked copy"));
        } else {
            engine.remove_container(&container.name).await?;
            said(format!("removed `{}`, an unfinished copy", container.name));
        }
    }
    let mut helpers = Helpers::new(engine, loaded);
    let result = async {
        for volume in &observed.volumes {
            let Some(item) = staged_of(volume) else {
                continue;
            };
            if forward {
                let object = engine_object(loaded, item);
                let from = helpers.helper(volume).await?;
                copy_volume(engine, loaded, &mut helpers, &from, &object).await?;
                helpers.remove(&from).await?;
                remove_volume_when_free(engine, volume).await?;
                said(format!(
                    "swapped in volume `{object}` from its checked copy"
                ));
            } else {
                remove_volume_when_free(engine, volume).await?;
                said(format!("removed volume `{volume}`, an unfinished copy"));
            }
        }
        if forward {
            remove_volume_when_free(engine, &marker).await?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let cleaned = helpers.remove_all().await;
    result.and(cleaned)?;
    // Services a dead command stopped: a stop it asked for may still be under way on the
    // engine (a second stop returns once the container is down); then start them.
    let services = stopped_by_dead_command(loaded);
    if !services.is_empty() {
        for service in &services {
            for name in container::replica_names(loaded, service) {
                engine.stop_container(&name, None).await?;
            }
        }
        let progress = printer.progress();
        start_again(
            engine,
            loaded,
            &services,
            Duration::from_secs(120),
            &progress,
        )
        .await?;
        said(format!(
            "started again the services it had stopped: {}",
            services.join(", ")
        ));
    }
    Ok(())
}

/// Where an item is read from: (container, path). A named volume gets a helper; a missing
/// volume or data container is an error that says so.
pub async fn source_of(
    helpers: &mut Helpers<'_>,
    loaded: &LoadedStack,
    item: &ItemInfo,
) -> Result<(String, String)> {
    let engine = helpers.engine;
    let object = engine_object(loaded, item);
    match item.kind {
        Kind::Volume => {
            if !engine.volume_exists(&object).await? {
                return Err(Failure::new(format!(
                    "volume `{}` of stage `{}` does not exist (`{object}`)",
                    item.name, loaded.stage
                ))
                .with_hint(format!("`stackctl -e {} up` creates it", loaded.stage))
                .into());
            }
            Ok((helpers.helper(&object).await?, HELPER_MOUNT.to_string()))
        }
        Kind::Data => {
            if engine.container_volumes(&object).await?.is_none() {
                return Err(Failure::new(format!(
                    "data container `{}` of stage `{}` does not exist (`{object}`)",
                    item.name, loaded.stage
                ))
                .with_hint(format!("`stackctl -e {} up` creates it", loaded.stage))
                .into());
            }
            Ok((object, item.path.clone()))
        }
    }
}

/// The file naming the services a `data` command stopped, while they are stopped: a
/// command killed before it started them again leaves it, and the next one (holding the
/// stage lock) waits out any stop still under way on the engine and starts them
/// ([`recover_dead_loads`]). On this machine's runtime directory, beside the lock files.
fn stopped_marker(loaded: &LoadedStack) -> std::path::PathBuf {
    crate::lock::runtime_dir().join(format!("{}-{}.data-stopped", loaded.project, loaded.stage))
}

/// The services a dead command stopped, from its marker.
fn stopped_by_dead_command(loaded: &LoadedStack) -> Vec<String> {
    std::fs::read_to_string(stopped_marker(loaded))
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| loaded.stack.services.contains_key(*l))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Stop the running containers of `services`; returns the services stopped, to start
/// again. When a stop fails (or is interrupted), those stopped are started again first.
pub async fn stop_users(
    engine: &Engine,
    loaded: &LoadedStack,
    services: &BTreeSet<String>,
    timeout: Duration,
    progress: &Progress,
) -> Result<Vec<String>> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let observed = engine
        .observe_named(
            &loaded.stage,
            &loaded.project,
            &container::custom_names(loaded),
        )
        .await?;
    let running: Vec<_> = observed
        .containers
        .into_iter()
        .filter(|c| c.role == names::role::SERVICE)
        .filter(|c| c.service.as_ref().is_some_and(|s| services.contains(s)))
        .filter(|c| matches!(c.state.as_str(), "running" | "restarting" | "paused"))
        .collect();
    let stopped: Vec<String> = running.iter().filter_map(|c| c.service.clone()).collect();
    if !stopped.is_empty() {
        let marker = stopped_marker(loaded);
        crate::lock::private_dir(&crate::lock::runtime_dir())?;
        let mut names: Vec<String> = stopped_by_dead_command(loaded);
        names.extend(stopped.iter().cloned());
        names.sort();
        names.dedup();
        std::fs::write(&marker, names.join("\n") + "\n").map_err(|e| {
            Failure::new(format!(
                "cannot write `{}`: {}",
                marker.display(),
                crate::error::io_reason(&e)
            ))
        })?;
    }
    if let Err(err) = crate::apply::stop_containers(engine, Some(loaded), &running, progress).await
    {
        // An interrupt ends the wait for a stop, not the stop: the engine completes it
        // after the container's grace. Wait for it (a second stop call returns when the
        // container is down), or the start below finds it still running and does nothing.
        for container in &running {
            let _ = engine.stop_container(&container.name, None).await;
        }
        if let Err(again) = start_again(engine, loaded, &stopped, timeout, progress).await {
            crate::print_error(&again.context("starting the stopped services again"));
        }
        return Err(err);
    }
    Ok(stopped)
}

/// Start `services` again (created anew when their container was removed), in dependency
/// order, waiting for health: `up SERVICE…` limited to them. It runs after an interrupt
/// too: the stage is put back as it was.
pub async fn start_again(
    engine: &Engine,
    loaded: &LoadedStack,
    services: &[String],
    timeout: Duration,
    progress: &Progress,
) -> Result<()> {
    if services.is_empty() {
        return Ok(());
    }
    let started = start_services(engine, loaded, services, timeout, progress).await;
    if started.is_ok() {
        let _ = std::fs::remove_file(stopped_marker(loaded));
    }
    started
}

async fn start_services(
    engine: &Engine,
    loaded: &LoadedStack,
    services: &[String],
    timeout: Duration,
    progress: &Progress,
) -> Result<()> {
    // Not the process's interrupt: this is the putting back, bounded by the command's grace.
    let (_never, interrupt) = Interrupt::switch();
    let mut target = DockerTarget::new(engine, loaded);
    target.interrupt = interrupt.clone();
    let observed = crate::apply::Target::observe(&target).await?;
    let options = PlanOptions {
        services: services.to_vec(),
        ..Default::default()
    };
    let plan = up::plan(loaded, &observed.images, &observed, &options)
        .map_err(|e| e.into_error(loaded))?;
    let wanted: BTreeSet<&String> = services.iter().collect();
    let mut plan = plan;
    plan.actions.retain(|action| match action {
        Action::Service { service, .. } => wanted.contains(service),
        Action::CreateNetwork { .. } | Action::ExternalNetwork { .. } => true,
        _ => false,
    });
    let mut apply_options = ApplyOptions::new(true, timeout);
    apply_options.interrupt = interrupt;
    crate::apply::execute(&target, &plan, &apply_options, progress).await
}

/// Create what the items need and is missing (volumes, data containers, and the images of
/// those), as `up` would.
async fn ensure_objects(
    engine: &Engine,
    loaded: &LoadedStack,
    items: &[ItemInfo],
    progress: &Progress,
    timeout: Duration,
) -> Result<()> {
    let volumes: BTreeSet<String> = items
        .iter()
        .filter(|i| i.kind == Kind::Volume)
        .map(|i| container::volume_name(loaded, &i.name))
        .collect();
    let data: BTreeSet<String> = items
        .iter()
        .filter(|i| i.kind == Kind::Data)
        .map(|i| i.name.clone())
        .collect();
    let data_images: BTreeSet<String> = data
        .iter()
        .map(|name| container::data_image(loaded, name))
        .collect();
    let target = DockerTarget::new(engine, loaded);
    let options = ApplyOptions::new(false, timeout);
    let keep = |plan: &mut up::Plan| {
        plan.actions.retain(|action| match action {
            Action::CreateVolume { spec } => volumes.contains(&spec.name),
            Action::DataContainer { key, .. } => data.contains(key),
            Action::Build { image, .. } | Action::Pull { image, .. } => data_images.contains(image),
            Action::MissingImage { owner, .. } => data.contains(owner),
            _ => false,
        })
    };
    let observed = crate::apply::Target::observe(&target).await?;
    let mut plan_options = PlanOptions::default();
    let mut plan = up::plan(loaded, &observed.images, &observed, &plan_options)
        .map_err(|e| e.into_error(loaded))?;
    keep(&mut plan);
    if plan.fetches().next().is_some() {
        plan_options.built =
            crate::apply::build_images(&target, &plan, &options, progress, false).await?;
        let observed = crate::apply::Target::observe(&target).await?;
        plan = up::plan(loaded, &observed.images, &observed, &plan_options)
            .map_err(|e| e.into_error(loaded))?;
        keep(&mut plan);
    }
    if plan.is_noop() {
        return Ok(());
    }
    crate::apply::execute(&target, &plan, &options, progress).await
}

/// How many entries a container path holds, reading no more than it takes to tell: 1 (the
/// directory alone) means empty. A missing path counts as empty.
async fn holds_data(engine: &Engine, container: &str, path: &str) -> Result<bool> {
    let mut stream = engine.download(container, path);
    let mut measure = Measure::default();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => measure.feed(&chunk),
            Err(err) if err.is_not_found() => return Ok(false),
            Err(err) => return Err(err.into()),
        }
        if measure.entries() >= 2 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where the items of one data container or named volume go while the stream comes in.
enum Dest {
    /// An empty named volume, written in place through a helper.
    InPlace { volume: String, helper: String },
    /// A named volume with data: a fresh volume, copied into the target at the end.
    VolumeStaging {
        volume: String,
        staging: String,
        helper: String,
    },
    /// A data container: a fresh copy of it, renamed into place at the end.
    DataStaging {
        key: String,
        container: String,
        staging: String,
    },
}

impl Dest {
    /// The container and path an item's stream is written into.
    fn upload_target(&self, item: &ItemInfo) -> (String, String) {
        match self {
            Dest::InPlace { helper, .. } | Dest::VolumeStaging { helper, .. } => {
                (helper.clone(), "/".to_string())
            }
            Dest::DataStaging { staging, .. } => (staging.clone(), parent_of(&item.path)),
        }
    }
}

/// The directory a path is in (`/var/lib/postgresql/data` → `/var/lib/postgresql`): the
/// stream's entries start with the path's own name.
fn parent_of(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    }
}

/// What a restore needs to know besides the stream.
pub struct RestoreOptions {
    pub force: bool,
    pub timeout: Duration,
    /// Where the stream comes from, for messages (`the archive`, `stage dev`).
    pub source: String,
}

/// Restore the items of `manifest` whose `selected` flag is set into the stage, from the
/// steps `rx` gives after the manifest. Every item's checksum is checked (those not
/// selected too) before anything is swapped in; on any failure or interrupt the stage is
/// left as it was. `ready` is called once the stage is prepared and the stream may start.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    engine: &Engine,
    loaded: &LoadedStack,
    manifest: &Manifest,
    selected: &[bool],
    rx: &mut mpsc::Receiver<Result<Msg, BadArchive>>,
    options: &RestoreOptions,
    progress: &Progress,
    ready: impl FnOnce(),
) -> Result<()> {
    let items: Vec<ItemInfo> = manifest
        .items
        .iter()
        .zip(selected)
        .filter(|(_, on)| **on)
        .map(|(i, _)| i.clone())
        .collect();
    ensure_objects(engine, loaded, &items, progress, options.timeout).await?;
    crate::interrupt::check()?;
    let mut helpers = Helpers::new(engine, loaded);
    let result = restore_prepared(
        engine,
        loaded,
        manifest,
        selected,
        rx,
        options,
        progress,
        ready,
        &mut helpers,
    )
    .await;
    let cleaned = helpers.remove_all().await;
    result.and(cleaned)
}

#[allow(clippy::too_many_arguments)]
async fn restore_prepared(
    engine: &Engine,
    loaded: &LoadedStack,
    manifest: &Manifest,
    selected: &[bool],
    rx: &mut mpsc::Receiver<Result<Msg, BadArchive>>,
    options: &RestoreOptions,
    progress: &Progress,
    ready: impl FnOnce(),
    helpers: &mut Helpers<'_>,
) -> Result<()> {
    let stage = &loaded.stage;
    // Check every target first: foreign users, and data where --force was not given.
    let mut holding: Vec<String> = Vec::new();
    let mut in_place: HashMap<String, bool> = HashMap::new();
    let mut checked: BTreeSet<String> = BTreeSet::new();
    for (item, _) in manifest.items.iter().zip(selected).filter(|(_, on)| **on) {
        let object = engine_object(loaded, item);
        let has_data = match item.kind {
            Kind::Volume => {
                if !checked.insert(object.clone()) {
                    continue;
                }
                let foreign: Vec<String> = engine
                    .volume_users(&object)
                    .await?
                    .into_iter()
                    .filter(|u| !is_stage_own(loaded, &u.labels, &u.name))
                    .map(|u| u.name)
                    .collect();
                if !foreign.is_empty() {
                    return Err(Failure::new(format!(
                        "volume `{object}` is mounted by containers that are not stage `{stage}`'s: {}",
                        foreign.join(", ")
                    ))
                    .with_hint("stop and remove them, then run again")
                    .into());
                }
                let helper = helpers.helper(&object).await?;
                let has = holds_data(engine, &helper, HELPER_MOUNT).await?;
                helpers.remove(&helper).await?;
                in_place.insert(object.clone(), !has);
                has
            }
            Kind::Data => holds_data(engine, &object, &item.path).await?,
        };
        if has_data {
            holding.push(match item.kind {
                Kind::Volume => format!("volume `{}`", item.name),
                Kind::Data => format!("data container `{}` ({})", item.name, item.path),
            });
        }
    }
    if !holding.is_empty() && !options.force {
        holding.dedup();
        return Err(UsageError::new(format!(
            "refusing to overwrite data: stage `{stage}` already holds data in {}",
            holding.join(", ")
        ))
        .with_hint("`--force` replaces it (the old data is dropped once the new is checked)")
        .into());
    }
    crate::interrupt::check()?;
    let items: Vec<ItemInfo> = manifest
        .items
        .iter()
        .zip(selected)
        .filter(|(_, on)| **on)
        .map(|(i, _)| i.clone())
        .collect();
    let stopped = stop_users(engine, loaded, &users(&items), options.timeout, progress).await?;
    let mut dests: HashMap<String, Dest> = HashMap::new();
    let result = async {
        for item in &items {
            let object = engine_object(loaded, item);
            if dests.contains_key(&object) {
                continue;
            }
            crate::interrupt::check()?;
            let dest = match item.kind {
                Kind::Volume if in_place.get(&object).copied().unwrap_or(true) => Dest::InPlace {
                    volume: object.clone(),
                    helper: helpers.fill_helper(&object).await?,
                },
                Kind::Volume => {
                    let staging = format!("{object}-load-{}", crate::plan::task::short_id());
                    let labels =
                        names::owner_labels(&loaded.stage, &loaded.project, names::role::VOLUME);
                    engine
                        .create_volume(&staging, None, &labels, &Default::default())
                        .await?;
                    let dest = Dest::VolumeStaging {
                        volume: object.clone(),
                        staging: staging.clone(),
                        helper: String::new(),
                    };
                    dests.insert(object.clone(), dest);
                    let helper = helpers.helper(&staging).await?;
                    if let Some(Dest::VolumeStaging { helper: h, .. }) = dests.get_mut(&object) {
                        *h = helper;
                    }
                    continue;
                }
                Kind::Data => {
                    let staging = format!("{object}-load-{}", crate::plan::task::short_id());
                    let index = engine.image_index().await?;
                    let image_id = index
                        .resolve(&container::data_image(loaded, &item.name))
                        .unwrap_or_default();
                    let spec = container::data_container(loaded, &item.name, &image_id)
                        .ok_or_else(|| anyhow!("no data container `{}`", item.name))?;
                    let mut config = container_config(&spec);
                    config.name = staging.clone();
                    engine.create_container(&config).await?;
                    Dest::DataStaging {
                        key: item.name.clone(),
                        container: object.clone(),
                        staging,
                    }
                }
            };
            dests.insert(object, dest);
        }
        ready();
        receive(
            engine, loaded, manifest, selected, rx, &dests, options, progress,
        )
        .await
    }
    .await;
    let result = match result {
        Ok(()) => commit(engine, loaded, helpers, &dests, progress).await,
        Err(err) => {
            // The source learns at once that nobody reads any more (a copy's source starts
            // its services again while this stage is put back).
            rx.close();
            let undone = rollback(engine, loaded, &dests).await;
            if let Err(undo) = undone {
                crate::print_error(&undo.context("putting the stage back as it was"));
            }
            Err(err)
        }
    };
    let started = start_again(engine, loaded, &stopped, options.timeout, progress).await;
    result?;
    started?;
    // An interrupt during the swap was held until it was done: say it came.
    crate::interrupt::check()?;
    Ok(())
}

/// Whether a container is the stage's own (labels and name), not someone else's.
fn is_stage_own(loaded: &LoadedStack, labels: &HashMap<String, String>, name: &str) -> bool {
    labels.get(names::PROJECT) == Some(&loaded.project)
        && labels.get(names::STAGE) == Some(&loaded.stage)
        && names::is_stage_container_name(&loaded.stage, &loaded.project, name)
}

/// Take the stream in: each selected item into its destination, each item measured; then
/// every measure checked against the trailer.
#[allow(clippy::too_many_arguments)]
async fn receive(
    engine: &Engine,
    loaded: &LoadedStack,
    manifest: &Manifest,
    selected: &[bool],
    rx: &mut mpsc::Receiver<Result<Msg, BadArchive>>,
    dests: &HashMap<String, Dest>,
    options: &RestoreOptions,
    progress: &Progress,
) -> Result<()> {
    let refused = |why: String| -> anyhow::Error {
        Failure::new(format!(
            "{} is refused: {why}; stage `{}` was left as it was",
            options.source, loaded.stage
        ))
        .with_hint("check the archive (it may be damaged or cut short) and try again")
        .into()
    };
    let mut current: Option<Current> = None;
    let result = receive_items(
        engine,
        loaded,
        manifest,
        selected,
        rx,
        dests,
        options,
        progress,
        &refused,
        &mut current,
    )
    .await;
    if result.is_err() {
        // The upload under way is cut off (not ended cleanly: the engine would extract a
        // truncated stream) and awaited, so nothing writes while the stage is put back.
        if let Some((_, _, input, upload, line)) = current.take() {
            drop(input);
            if let Some(upload) = upload {
                upload.abort();
                let _ = upload.await;
            }
            line.fail("load", "stopped");
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn receive_items(
    engine: &Engine,
    loaded: &LoadedStack,
    manifest: &Manifest,
    selected: &[bool],
    rx: &mut mpsc::Receiver<Result<Msg, BadArchive>>,
    dests: &HashMap<String, Dest>,
    options: &RestoreOptions,
    progress: &Progress,
    refused: &dyn Fn(String) -> anyhow::Error,
    current: &mut Option<Current>,
) -> Result<()> {
    let mut sums: Vec<Option<ItemSum>> = vec![None; manifest.items.len()];
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        };
        let msg = match msg {
            None => return Err(refused("the stream ended before its checksums".into())),
            Some(Err(bad)) => return Err(refused(bad.0)),
            Some(Ok(msg)) => msg,
        };
        match msg {
            Msg::Manifest(_) => return Err(refused("a second manifest".into())),
            Msg::Start(index) => {
                if current.is_some() || sums.get(index).is_none_or(|s| s.is_some()) {
                    return Err(refused(format!(
                        "item {index} begins twice or out of place"
                    )));
                }
                let item = &manifest.items[index];
                let line = progress.line(kind_word(item.kind), &item.name);
                let (input, upload) = if selected.get(index).copied().unwrap_or(false) {
                    line.step("loading");
                    let dest = dests
                        .get(&engine_object(loaded, item))
                        .ok_or_else(|| anyhow!("no destination for `{}`", item.name))?;
                    let (container, path) = dest.upload_target(item);
                    let (tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
                    let body = futures_util::stream::unfold(body_rx, |mut rx| async move {
                        rx.recv().await.map(|item| (item, rx))
                    });
                    let engine = engine.clone();
                    let upload =
                        tokio::spawn(async move { engine.upload(&container, &path, body).await });
                    (Some(tx), Some(upload))
                } else {
                    line.step("checking");
                    (None, None)
                };
                *current = Some((index, Measure::default(), input, upload, line));
            }
            Msg::Data(data) => {
                let Some((index, measure, input, upload, line)) = current.as_mut() else {
                    return Err(refused("data outside of an item".into()));
                };
                measure.feed(&data);
                line.detail(&crate::output::human_bytes(measure.bytes));
                if let Some(sender) = input {
                    if sender.send(Ok(data)).await.is_err() {
                        // The upload ended early: its error says why.
                        let item = &manifest.items[*index];
                        let ended = match upload.take() {
                            Some(handle) => handle.await.map_err(|e| anyhow!(e))?,
                            None => Ok(()),
                        };
                        return Err(match ended {
                            Err(err) => refused(format!(
                                "the engine refused the data of {} `{}`: {}",
                                item.kind.word(),
                                item.name,
                                err.message
                            )),
                            Ok(()) => refused(format!(
                                "the engine stopped reading the data of `{}`",
                                item.name
                            )),
                        });
                    }
                }
            }
            Msg::End => {
                let Some((index, measure, input, upload, line)) = current.take() else {
                    return Err(refused("an item end outside of an item".into()));
                };
                drop(input);
                let item = &manifest.items[index];
                if let Some(handle) = upload {
                    if let Err(err) = handle.await.map_err(|e| anyhow!(e))? {
                        line.fail("load", &err.message);
                        return Err(refused(format!(
                            "the engine refused the data of {} `{}`: {}",
                            item.kind.word(),
                            item.name,
                            err.message
                        )));
                    }
                }
                let sum = measure.finish(&item.entry);
                let size = crate::output::human_bytes(sum.content_bytes);
                if selected.get(index).copied().unwrap_or(false) {
                    line.done("loaded", Some(&format!("{size}, not yet checked")));
                } else {
                    line.done("skipped", Some(&size));
                }
                sums[index] = Some(sum);
            }
            Msg::Trailer(trailer) => {
                verify(manifest, &sums, &trailer).map_err(refused)?;
                progress.message(&format!(
                    "checksums of {} match: {} items, {} checked",
                    options.source,
                    sums.len(),
                    crate::output::human_bytes(sums.iter().flatten().map(|s| s.bytes).sum())
                ));
                return Ok(());
            }
        }
    }
}

/// An upload under way.
type Upload = tokio::task::JoinHandle<Result<(), crate::engine::EngineError>>;

/// The item under way in `receive`: its index, measure, the upload's input, the upload
/// itself (none for an item not restored), and its progress line.
type Current = (
    usize,
    Measure,
    Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    Option<Upload>,
    crate::output::Line,
);

/// Every item of the manifest went through whole and matches its checksum.
fn verify(
    manifest: &Manifest,
    sums: &[Option<ItemSum>],
    trailer: &Checksums,
) -> Result<(), String> {
    for (item, sum) in manifest.items.iter().zip(sums) {
        let Some(sum) = sum else {
            return Err(format!(
                "{} `{}` is missing from it",
                item.kind.word(),
                item.name
            ));
        };
        let Some(expected) = trailer.items.iter().find(|s| s.entry == item.entry) else {
            return Err(format!("no checksum for `{}`", item.entry));
        };
        if expected.sha256 != sum.sha256 || expected.bytes != sum.bytes {
            return Err(format!(
                "the checksum of {} `{}` does not match: sha256 {} over {} bytes, expected {} over {} bytes; the archive is damaged",
                item.kind.word(),
                item.name,
                &sum.sha256[..16.min(sum.sha256.len())],
                sum.bytes,
                &expected.sha256[..16.min(expected.sha256.len())],
                expected.bytes
            ));
        }
    }
    Ok(())
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Volume => "volume",
        Kind::Data => "data",
    }
}

/// Swap every destination in. Interrupts are held: a half swap would be the one state that
/// is neither old nor new. A process killed half way leaves the commit marker, and the next
/// command finishes the swap from the staged copies (`recover_dead_loads`).
async fn commit(
    engine: &Engine,
    loaded: &LoadedStack,
    helpers: &mut Helpers<'_>,
    dests: &HashMap<String, Dest>,
    progress: &Progress,
) -> Result<()> {
    let marker = commit_marker(loaded);
    let labels = names::owner_labels(&loaded.stage, &loaded.project, names::role::TASK);
    engine
        .create_volume(&marker, None, &labels, &Default::default())
        .await?;
    for dest in dests.values() {
        match dest {
            Dest::InPlace { helper, .. } => helpers.remove(helper).await?,
            Dest::DataStaging {
                key,
                container,
                staging,
            } => {
                let line = progress.line("data", container);
                line.step("swapping in");
                swap_data_container(engine, loaded, key, container, staging).await?;
                line.done("replaced", None);
            }
            Dest::VolumeStaging {
                volume,
                staging,
                helper,
            } => {
                let line = progress.line("volume", volume);
                line.step("swapping in");
                copy_volume(engine, loaded, helpers, helper, volume).await?;
                helpers.remove(helper).await?;
                remove_volume_when_free(engine, staging).await?;
                line.done("replaced", None);
            }
        }
    }
    remove_volume_when_free(engine, &marker).await?;
    Ok(())
}

/// Put the checked copy `staging` of data container `key` in the place of `container`: the
/// containers that take its volumes go first (the restart creates the services again).
async fn swap_data_container(
    engine: &Engine,
    loaded: &LoadedStack,
    key: &str,
    container: &str,
    staging: &str,
) -> Result<()> {
    for (service, def) in &loaded.stack.services {
        if def
            .volumes_from
            .iter()
            .any(|v| container::volumes_from_target(v) == key)
        {
            for name in container::replica_names(loaded, service) {
                engine.remove_container(&name).await?;
            }
        }
    }
    remove_users_of_container(engine, loaded, container).await?;
    engine.remove_container(container).await?;
    engine.rename_container(staging, container).await?;
    Ok(())
}

/// Remove the stage's containers that take volumes from `container` (task containers
/// left over, say), so it can go.
async fn remove_users_of_container(
    engine: &Engine,
    loaded: &LoadedStack,
    container: &str,
) -> Result<()> {
    let Some(volumes) = engine.container_volumes(container).await? else {
        return Ok(());
    };
    for (_, volume) in volumes {
        for user in engine.volume_users(&volume).await? {
            if user.name != container && is_stage_own(loaded, &user.labels, &user.name) {
                engine.remove_container(&user.name).await?;
            }
        }
    }
    Ok(())
}

/// Remove a named volume (and the stage's containers that mount it: they are created again
/// by the restart) and create it anew, empty, with its labels and driver.
async fn recreate_volume(engine: &Engine, loaded: &LoadedStack, volume: &str) -> Result<()> {
    for user in engine.volume_users(volume).await? {
        if is_stage_own(loaded, &user.labels, &user.name) {
            engine.remove_container(&user.name).await?;
        }
    }
    remove_volume_when_free(engine, volume).await?;
    let labels = crate::plan::objects::volume_labels(loaded, volume)?;
    let driver = loaded
        .stack
        .volumes
        .iter()
        .find(|(key, _)| container::volume_name(loaded, key) == volume)
        .and_then(|(_, def)| def.driver.clone());
    let options = container::volume_driver_opts(loaded, volume)
        .into_iter()
        .collect();
    engine
        .create_volume(volume, driver.as_deref(), &labels, &options)
        .await?;
    Ok(())
}

/// How long a volume removal keeps trying while the engine finishes with a container that
/// was just removed or an archive call that was just cut off.
const VOLUME_FREE_DEADLINE: Duration = Duration::from_secs(15);

/// Remove a volume, trying again while the engine still reports it in use.
async fn remove_volume_when_free(engine: &Engine, volume: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + VOLUME_FREE_DEADLINE;
    loop {
        match engine.remove_volume(volume).await {
            Ok(()) => return Ok(()),
            Err(err) if err.status == Some(409) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => {
                return Err(err
                    .with_hint(format!(
                        "a container that is not the stage's mounts it: `docker ps -a --filter volume={volume}`"
                    ))
                    .into())
            }
        }
    }
}

/// Put every target back as it was: staging objects removed, a volume written in place
/// made empty again.
async fn rollback(
    engine: &Engine,
    loaded: &LoadedStack,
    dests: &HashMap<String, Dest>,
) -> Result<()> {
    let mut first: Result<()> = Ok(());
    for dest in dests.values() {
        let done: Result<()> = async {
            match dest {
                Dest::InPlace { volume, helper } => {
                    engine.remove_container(helper).await?;
                    recreate_volume(engine, loaded, volume).await
                }
                Dest::VolumeStaging {
                    staging, helper, ..
                } => {
                    if !helper.is_empty() {
                        engine.remove_container(helper).await?;
                    }
                    remove_volume_when_free(engine, staging).await
                }
                Dest::DataStaging { staging, .. } => Ok(engine.remove_container(staging).await?),
            }
        }
        .await;
        if first.is_ok() {
            first = done;
        }
    }
    first
}

/// Read items of a stage and give their streams to `sink`, measuring each; returns the
/// measures. Stops at an interrupt.
pub async fn read_items<F, Fut>(
    engine: &Engine,
    loaded: &LoadedStack,
    items: &[ItemInfo],
    helpers: &mut Helpers<'_>,
    progress: &Progress,
    verb: (&str, &str),
    mut sink: F,
) -> Result<Vec<ItemSum>>
where
    F: FnMut(Msg) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut sums = Vec::new();
    for (index, item) in items.iter().enumerate() {
        crate::interrupt::check()?;
        let (container, path) = source_of(helpers, loaded, item).await?;
        let line = progress.line(kind_word(item.kind), &item.name);
        line.step(verb.0);
        sink(Msg::Start(index)).await?;
        let mut stream = engine.download(&container, &path);
        let mut measure = Measure::default();
        let outcome: Result<()> = async {
            loop {
                let chunk = tokio::select! {
                    chunk = stream.next() => chunk,
                    _ = crate::interrupt::wait() => return Err(Interrupted.into()),
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk?;
                measure.feed(&chunk);
                line.detail(&crate::output::human_bytes(measure.bytes));
                sink(Msg::Data(chunk)).await?;
            }
            sink(Msg::End).await
        }
        .await;
        if let Err(err) = outcome {
            line.fail(verb.0, &format!("{err:#}"));
            return Err(err);
        }
        let sum = measure.finish(&item.entry);
        line.done(
            verb.1,
            Some(&format!(
                "{} in {} entries",
                crate::output::human_bytes(sum.content_bytes),
                sum.entries
            )),
        );
        sums.push(sum);
    }
    Ok(sums)
}

/// The size of each item of a stage (its files' bytes and entries), read through the
/// archive API; None for an item whose volume or container does not exist.
pub async fn measure_items(
    engine: &Engine,
    loaded: &LoadedStack,
    items: &[ItemInfo],
) -> Result<Vec<Option<ItemSum>>> {
    let mut helpers = Helpers::new(engine, loaded);
    let result = async {
        let mut out = Vec::new();
        for item in items {
            crate::interrupt::check()?;
            let object = engine_object(loaded, item);
            let exists = match item.kind {
                Kind::Volume => engine.volume_exists(&object).await?,
                Kind::Data => engine.container_volumes(&object).await?.is_some(),
            };
            if !exists {
                out.push(None);
                continue;
            }
            let (container, path) = source_of(&mut helpers, loaded, item).await?;
            let mut stream = engine.download(&container, &path);
            let mut measure = Measure::default();
            while let Some(chunk) = stream.next().await {
                crate::interrupt::check()?;
                match chunk {
                    Ok(chunk) => measure.feed(&chunk),
                    Err(err) if err.is_not_found() => break,
                    Err(err) => return Err(err.into()),
                }
            }
            out.push(Some(measure.finish(&item.entry)));
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    let cleaned = helpers.remove_all().await;
    let out = result?;
    cleaned?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_named_volumes_and_data_container_paths_with_their_users() {
        let loaded = crate::plan::test_stack(
            "services:\n  db:\n    image: x\n    volumes_from: [store]\n    volumes: [\"cache:/cache\", \"./logs:/logs\"]\nvolumes:\n  cache: {}\n  shared: { external: true }\ndata_containers:\n  store:\n    image: x\n    volumes: [/var/lib/db, \"cache:/c\", /other]\n",
            "demo",
            "dev",
            "/srv/demo",
        );
        let items = stage_items(&loaded);
        let summary: Vec<(String, Kind, String, String)> = items
            .iter()
            .map(|i| (i.name.clone(), i.kind, i.path.clone(), i.entry.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "cache".into(),
                    Kind::Volume,
                    "/stackctl-data".into(),
                    "volumes/cache.tar".into()
                ),
                (
                    "store".into(),
                    Kind::Data,
                    "/var/lib/db".into(),
                    "data/store/0.tar".into()
                ),
                (
                    "store".into(),
                    Kind::Data,
                    "/other".into(),
                    "data/store/2.tar".into()
                ),
            ]
        );
        assert_eq!(items[0].mounts[0].service, "db");
        assert_eq!(users(&items), BTreeSet::from(["db".to_string()]));
        let err = select(&items, &["nope".into()], "stage `dev`").unwrap_err();
        let usage = err.downcast_ref::<UsageError>().expect("usage error");
        assert_eq!(usage.hint.as_deref(), Some("known: cache, store"));
        assert_eq!(select(&items, &["store".into()], "x").unwrap().len(), 2);
        assert_eq!(parent_of("/var/lib/db"), "/var/lib");
        assert_eq!(parent_of("/db/"), "/");
    }

    #[test]
    fn verify_wants_every_item_whole_and_matching() {
        let loaded = crate::plan::test_stack(
            "services: {}\nvolumes:\n  a: {}\n  b: {}\n",
            "demo",
            "dev",
            "/srv/demo",
        );
        let manifest = manifest(&loaded, &stage_items(&loaded), "none");
        let sum = |entry: &str, sha: &str| ItemSum {
            entry: entry.into(),
            bytes: 1536,
            entries: 1,
            content_bytes: 0,
            sha256: sha.into(),
        };
        let trailer = Checksums {
            items: vec![sum("volumes/a.tar", "aa"), sum("volumes/b.tar", "bb")],
        };
        let good = vec![
            Some(sum("volumes/a.tar", "aa")),
            Some(sum("volumes/b.tar", "bb")),
        ];
        assert_eq!(verify(&manifest, &good, &trailer), Ok(()));
        let flipped = vec![
            Some(sum("volumes/a.tar", "aa")),
            Some(sum("volumes/b.tar", "bc")),
        ];
        let err = verify(&manifest, &flipped, &trailer).unwrap_err();
        assert!(err.contains("volume `b` does not match"), "{err}");
        let missing = vec![Some(sum("volumes/a.tar", "aa")), None];
        let err = verify(&manifest, &missing, &trailer).unwrap_err();
        assert!(err.contains("`b` is missing"), "{err}");
    }

    #[test]
    fn a_staged_copy_is_the_object_name_with_load_and_an_id() {
        let object = "qa-shop--store";
        assert!(is_staged_copy_of(object, "qa-shop--store-load-1a2b3c4d"));
        assert!(!is_staged_copy_of(object, "qa-shop--store"));
        assert!(!is_staged_copy_of(object, "qa-shop--store-load-"));
        assert!(!is_staged_copy_of(object, "qa-shop--store-load-1a2b-x"));
        assert!(!is_staged_copy_of(object, "qa-shop--store2-load-1a2b3c4d"));
        // The commit marker is no volume's staged copy.
        assert!(!is_staged_copy_of("qa-shop_vol", "qa-shop--data-commit"));
    }
}
