//! The `up` planner: desired stack + observed state → an ordered list of actions, each with
//! its reason. Pure: no engine calls, so `up --dry-run` prints exactly what `up` would do
//! and the tests below cover it without a daemon. The heart is [`decide`]: what happens to
//! one service's container.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::container::{self, ContainerSpec, KeptVolume};
use super::image::{self, ImageBuild, ImageSpec};
use super::objects::{self, NetworkSpec, VolumeSpec};
use crate::names;
pub use crate::observed::{Observed, ObservedContainer};
use crate::stack::model::{Condition, DurationSpec, MountKind, PullPolicy};
use crate::stack::{LoadedStack, StackErrors};

/// Options of `up` that change the plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Services asked for (with what they depend on); empty: every service without a profile.
    pub services: Vec<String>,
    /// Rebuild every image that has `build:` (`up --build`).
    pub build: bool,
    /// Image references already built or pulled in this run (not to be again).
    pub built: HashSet<String>,
    /// `up --pull POLICY`: replaces every service's `pull_policy`.
    pub pull: Option<PullPolicy>,
    pub remove_orphans: bool,
    /// Images whose build inputs changed since they were built, with the reason
    /// (`build context changed: api/app.py`): rebuilt like missing ones.
    pub stale: HashMap<String, String>,
    /// Only these data containers (with their images and volumes), nothing else: what a
    /// one-off container (`run`, `exec TASK`) takes volumes from, when it is not made yet.
    pub only_data: Vec<String>,
    /// `up --renew-anon-volumes`: a recreated container gets new anonymous volumes instead
    /// of the ones of the container it replaces.
    pub renew_anon_volumes: bool,
}

/// What happens to a service container.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// No container yet.
    Create,
    /// The container differs; the fields that changed (`environment`, `image`, …).
    Recreate(Vec<String>),
    /// The container is current but not running.
    Start(String),
    /// Nothing to do; why it counts as current (`running`, `completed`).
    Unchanged(String),
    /// The container is current but a dependency with `restart: true` was recreated.
    Restart(String),
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Build an image (before anything else).
    Build {
        /// The service, data container or task whose `build:` makes it.
        owner: String,
        image: String,
        reason: String,
        build: Box<ImageSpec>,
    },
    /// Pull an image from its registry (before anything else, beside the builds).
    Pull {
        /// The service or data container that runs it (the first one, when shared).
        owner: String,
        image: String,
        reason: String,
    },
    /// An image is missing, nothing builds it and its `pull_policy` is `never`.
    MissingImage {
        owner: String,
        image: String,
    },
    /// A network of the stage, with everything its creation needs.
    CreateNetwork {
        spec: Box<NetworkSpec>,
    },
    /// An `external: true` network: it must exist.
    ExternalNetwork {
        name: String,
        key: String,
    },
    /// A named volume of the stage, with everything its creation needs.
    CreateVolume {
        spec: Box<VolumeSpec>,
    },
    ExternalVolume {
        name: String,
        key: String,
    },
    /// A data container: created, never started. `exists`: kept as it is.
    DataContainer {
        key: String,
        spec: Box<ContainerSpec>,
        exists: bool,
    },
    Service {
        service: String,
        spec: Box<ContainerSpec>,
        change: Change,
        /// Services this one waits for, with the condition.
        depends_on: Vec<(String, Condition)>,
        /// Whether `up` waits for it to be healthy at the end.
        has_healthcheck: bool,
        /// Others wait for it to complete: exiting 0 is its success, not a failure.
        one_shot: bool,
    },
    /// A service container whose service is gone from the stack file.
    Orphan {
        name: String,
        remove: bool,
    },
    /// A container of a service that no longer carries that name (its `container_name`
    /// changed): removed before the service's new container is created.
    Stale {
        name: String,
        service: String,
    },
}

impl Action {
    /// (kind, object, action, reason) as printed by `up --dry-run` and in events.
    pub fn describe(&self) -> (&'static str, String, &'static str, String) {
        match self {
            Action::Build {
                owner,
                image,
                reason,
                ..
            } => (
                "image",
                image.clone(),
                "build",
                format!("{reason} (for `{owner}`)"),
            ),
            Action::Pull { image, reason, .. } => ("image", image.clone(), "pull", reason.clone()),
            Action::MissingImage { owner, image } => (
                "image",
                image.clone(),
                "missing",
                format!("not on this engine, `{owner}` has no `build:` and `pull_policy: never`"),
            ),
            Action::CreateNetwork { spec } => {
                ("network", spec.name.clone(), "create", "new".into())
            }
            Action::ExternalNetwork { name, .. } => {
                ("network", name.clone(), "use", "external".into())
            }
            Action::CreateVolume { spec } => ("volume", spec.name.clone(), "create", "new".into()),
            Action::ExternalVolume { name, .. } => {
                ("volume", name.clone(), "use", "external".into())
            }
            Action::DataContainer { spec, exists, .. } => {
                if *exists {
                    (
                        "data",
                        spec.name.clone(),
                        "unchanged",
                        "exists (kept)".into(),
                    )
                } else {
                    ("data", spec.name.clone(), "create", "new".into())
                }
            }
            Action::Service { spec, change, .. } => {
                let name = spec.name.clone();
                match change {
                    Change::Create => ("service", name, "create", "new".into()),
                    Change::Recreate(fields) => {
                        let mut reason = fields
                            .iter()
                            .map(|f| format!("{f} changed"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        reason.push_str(&volume_note(spec));
                        ("service", name, "recreate", reason)
                    }
                    Change::Start(why) => ("service", name, "start", why.clone()),
                    Change::Restart(why) => ("service", name, "restart", why.clone()),
                    Change::Unchanged(why) => ("service", name, "unchanged", why.clone()),
                }
            }
            Action::Stale { name, service } => (
                "service",
                name.clone(),
                "remove",
                format!("no longer a container of `{service}` (renamed or scaled down)"),
            ),
            Action::Orphan { name, remove } => {
                if *remove {
                    ("service", name.clone(), "remove", "orphan".into())
                } else {
                    (
                        "service",
                        name.clone(),
                        "orphan",
                        "not in the stack file; `up --remove-orphans` removes it".into(),
                    )
                }
            }
        }
    }

    /// True when executing it changes nothing.
    pub fn is_noop(&self) -> bool {
        matches!(
            self,
            Action::ExternalNetwork { .. }
                | Action::ExternalVolume { .. }
                | Action::DataContainer { exists: true, .. }
                | Action::Service {
                    change: Change::Unchanged(_),
                    ..
                }
                | Action::Orphan { remove: false, .. }
        )
    }
}

/// What a recreate does with the anonymous volumes of the container it replaces, as a note
/// after its reason: `; keeps anonymous volume /data`, `; renews anonymous volume /data
/// (its data goes)`; empty when it has none.
fn volume_note(spec: &ContainerSpec) -> String {
    let list = |paths: Vec<&str>| {
        let noun = if paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        format!("anonymous {noun} {}", paths.join(", "))
    };
    if !spec.kept_volumes.is_empty() {
        let paths = spec.kept_volumes.iter().map(|v| v.path.as_str()).collect();
        format!("; keeps {}", list(paths))
    } else if !spec.renewed_volumes.is_empty() {
        let paths: Vec<&str> = spec.renewed_volumes.iter().map(String::as_str).collect();
        let whose = if paths.len() == 1 { "its" } else { "their" };
        format!("; renews {} ({whose} data goes)", list(paths))
    } else {
        String::new()
    }
}

/// The ordered actions of one `up`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Containers of unchanged services the engine already reports healthy (no wait needed).
    pub healthy: BTreeSet<String>,
    /// What the user should know before it runs (a `required: false` dependency left out).
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn builds(&self) -> impl Iterator<Item = &Action> {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Build { .. }))
    }

    /// Images to build or pull before anything else.
    pub fn fetches(&self) -> impl Iterator<Item = &Action> {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Build { .. } | Action::Pull { .. }))
    }

    /// The service action for a service name.
    pub fn service(&self, name: &str) -> Option<&Action> {
        self.actions
            .iter()
            .find(|a| matches!(a, Action::Service { service, .. } if service == name))
    }

    /// True when nothing would change.
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(Action::is_noop)
    }
}

impl Action {
    /// The `pre_start` steps this action runs, each as (container, reason): a service that
    /// is created or recreated runs every step; otherwise none runs.
    pub fn pre_start_lines(&self) -> Vec<(String, String)> {
        let Action::Service { spec, change, .. } = self else {
            return Vec::new();
        };
        if spec.pre_start_elsewhere {
            return Vec::new();
        }
        let why = match change {
            Change::Create => "the service is created",
            Change::Recreate(_) => "the service is recreated",
            _ => return Vec::new(),
        };
        spec.pre_start
            .iter()
            .enumerate()
            .map(|(index, step)| {
                (
                    spec.name.clone(),
                    format!("step {}: {}; {why}", index + 1, step.label),
                )
            })
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for action in &self.actions {
            let (kind, object, verb, reason) = action.describe();
            writeln!(f, "{verb:<10} {kind:<8} {object}  ({reason})")?;
            for (object, reason) in action.pre_start_lines() {
                writeln!(
                    f,
                    "{:<10} {:<8} {object}  ({reason})",
                    "pre_start", "service"
                )?;
            }
        }
        Ok(())
    }
}

/// An unknown service name in `up SERVICE…`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownService(pub String);

/// Why a plan could not be made: an unknown service asked for, or a network or volume whose
/// stack definition cannot be created (labels under `io.stackctl.`).
#[derive(Debug)]
pub enum PlanError {
    UnknownService(String),
    Stack(StackErrors),
}

impl From<UnknownService> for PlanError {
    fn from(unknown: UnknownService) -> Self {
        PlanError::UnknownService(unknown.0)
    }
}

impl From<StackErrors> for PlanError {
    fn from(errors: StackErrors) -> Self {
        PlanError::Stack(errors)
    }
}

impl PlanError {
    /// The error to report: an unknown service is a usage error naming the stack's services.
    pub fn into_error(self, loaded: &LoadedStack) -> anyhow::Error {
        match self {
            PlanError::UnknownService(name) => {
                let known: Vec<&str> = loaded.stack.services.keys().map(String::as_str).collect();
                crate::error::UsageError::new(format!("no service `{name}` in this stack"))
                    .with_hint(format!("services: {}", known.join(", ")))
                    .into()
            }
            PlanError::Stack(errors) => errors.into(),
        }
    }
}

/// The services to act on: those asked for plus everything they depend on (`depends_on`,
/// `volumes_from` a service), in dependency order. Empty `asked`: every (active) service.
pub fn services_in_order(
    loaded: &LoadedStack,
    asked: &[String],
) -> Result<Vec<String>, UnknownService> {
    let services = &loaded.stack.services;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = if asked.is_empty() {
        // The loader already left out services of profiles not selected.
        services.keys().cloned().collect()
    } else {
        for name in asked {
            if !services.contains_key(name) {
                return Err(UnknownService(name.clone()));
            }
        }
        asked.to_vec()
    };
    while let Some(name) = queue.pop() {
        if !wanted.insert(name.clone()) {
            continue;
        }
        queue.extend(service_deps(loaded, &name).into_iter().map(|(d, _)| d));
    }
    Ok(dependency_order(loaded, &wanted))
}

/// The services a service waits for: `depends_on` with its condition, and services it
/// takes volumes from (started).
pub fn service_deps(loaded: &LoadedStack, name: &str) -> Vec<(String, Condition)> {
    let Some(service) = loaded.stack.services.get(name) else {
        return Vec::new();
    };
    let mut deps: Vec<(String, Condition)> = service
        .depends_on
        .iter()
        .filter(|(d, _)| loaded.stack.services.contains_key(*d))
        .map(|(d, dep)| (d.clone(), dep.condition))
        .collect();
    let shared = service
        .network_mode
        .as_deref()
        .and_then(|mode| mode.strip_prefix("service:"));
    let linked = service
        .links
        .iter()
        .map(|link| link.split_once(':').map_or(link.as_str(), |(t, _)| t));
    let targets = service
        .volumes_from
        .iter()
        .map(|entry| container::volumes_from_target(entry))
        .chain(shared)
        .chain(linked);
    for target in targets {
        if loaded.stack.services.contains_key(target) && !deps.iter().any(|(d, _)| d == target) {
            deps.push((target.to_string(), Condition::ServiceStarted));
        }
    }
    deps
}

/// `wanted` in dependency order (dependencies first), ties in stack-file order. A cycle
/// (rejected by validation) falls back to file order for what remains.
pub fn dependency_order(loaded: &LoadedStack, wanted: &BTreeSet<String>) -> Vec<String> {
    let in_file: Vec<&String> = loaded
        .stack
        .services
        .keys()
        .filter(|n| wanted.contains(*n))
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut placed: HashSet<&str> = HashSet::new();
    loop {
        let mut progressed = false;
        for name in &in_file {
            if placed.contains(name.as_str()) {
                continue;
            }
            let ready = service_deps(loaded, name)
                .iter()
                .all(|(d, _)| placed.contains(d.as_str()) || !wanted.contains(d));
            if ready {
                placed.insert(name.as_str());
                done.push((*name).clone());
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    for name in in_file {
        if !placed.contains(name.as_str()) {
            done.push(name.clone());
        }
    }
    done
}

/// Decide what `up` does. `images` maps image references to the IDs the engine has.
pub fn plan(
    loaded: &LoadedStack,
    images: &HashMap<String, String>,
    observed: &Observed,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let (selected, data) = if options.only_data.is_empty() {
        let selected = services_in_order(loaded, &options.services)?;
        let data = data_containers(loaded, &selected, options);
        (selected, data)
    } else {
        (Vec::new(), options.only_data.clone())
    };
    let mut actions = merge_builds(image_actions(
        loaded, images, observed, options, &selected, &data,
    ));
    if !selected.is_empty() {
        actions.extend(network_actions(loaded, observed, &selected)?);
    }
    actions.extend(volume_actions(loaded, observed, &selected, &data)?);
    for name in &data {
        let image = container::data_image(loaded, name);
        let id = images.get(&image).cloned().unwrap_or_default();
        if let Some(spec) = container::data_container(loaded, name, &id) {
            actions.push(Action::DataContainer {
                key: name.clone(),
                exists: !data_missing(loaded, observed, name),
                spec: Box::new(spec),
            });
        }
    }
    let (services, healthy) =
        service_actions(loaded, images, observed, options, &selected, &actions);
    actions.extend(services);
    if options.only_data.is_empty() {
        actions.extend(orphan_actions(loaded, observed, options));
        actions.extend(stale_actions(loaded, observed));
    }
    Ok(Plan {
        actions,
        healthy,
        warnings: optional_dependencies_left_out(loaded, &selected),
    })
}

/// Data containers the selected services use (all of them for a full `up`).
fn data_containers(
    loaded: &LoadedStack,
    selected: &[String],
    options: &PlanOptions,
) -> Vec<String> {
    let stack = &loaded.stack;
    if options.services.is_empty() {
        return stack.data_containers.keys().cloned().collect();
    }
    let mut data: Vec<String> = Vec::new();
    for name in selected {
        for entry in &stack.services[name.as_str()].volumes_from {
            let target = container::volumes_from_target(entry);
            if stack.data_containers.contains_key(target) && !data.iter().any(|d| d == target) {
                data.push(target.to_string());
            }
        }
    }
    data
}

/// Images to build: what is missing (or everything buildable with `--build`); images
/// missing that nothing builds. An image another entry of the stage builds (a service
/// running the tag a second service or a data container builds) counts as buildable.
pub(crate) fn image_actions(
    loaded: &LoadedStack,
    images: &HashMap<String, String>,
    observed: &Observed,
    options: &PlanOptions,
    selected: &[String],
    data: &[String],
) -> Vec<Action> {
    let stack = &loaded.stack;
    let builds: Vec<ImageBuild> = image::stage_images(loaded)
        .into_iter()
        .filter(|b| b.owner != image::Owner::Task)
        .collect();
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for name in data {
        if data_missing(loaded, observed, name) {
            wanted.push((name, container::data_image(loaded, name)));
        }
    }
    for name in selected {
        let service = &stack.services[name.as_str()];
        wanted.push((name, container::service_image(loaded, name, service)));
    }
    let mut actions = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (owner, image) in wanted {
        if !seen.insert(image.clone()) {
            continue;
        }
        let have = images.contains_key(&image);
        let builder = image::builder_of(&builds, &image);
        let done = options.built.contains(&image);
        let own = stack.services.get(owner).and_then(|s| s.pull_policy);
        let policy = options.pull.or(own).unwrap_or(PullPolicy::Missing);
        let forced_build = own == Some(PullPolicy::Build);
        // Compose's meaning: a service's own `pull_policy: always` pulls its image even when
        // it has a `build:` (a server stage runs what CI pushed); `--build` still builds.
        let pulls_instead = own == Some(PullPolicy::Always) && !options.build;
        let stale = options.stale.get(&image).filter(|_| have);
        match builder.filter(|_| !pulls_instead) {
            Some(build) if !done && (options.build || forced_build || !have || stale.is_some()) => {
                actions.push(Action::Build {
                    owner: build.name.clone(),
                    reason: if options.build {
                        "--build".into()
                    } else if forced_build && have {
                        "pull_policy: build".into()
                    } else if let Some(reason) = stale {
                        reason.clone()
                    } else {
                        "image missing".into()
                    },
                    image,
                    build: Box::new(build.request.clone()),
                })
            }
            Some(_) => {}
            None if done => {}
            None => match policy {
                PullPolicy::Never if !have => actions.push(Action::MissingImage {
                    owner: owner.to_string(),
                    image,
                }),
                PullPolicy::Always => actions.push(Action::Pull {
                    owner: owner.to_string(),
                    image,
                    reason: if options.pull.is_some() {
                        "--pull always".into()
                    } else {
                        "pull_policy: always".into()
                    },
                }),
                PullPolicy::Missing | PullPolicy::Build | PullPolicy::Every(_) if !have => actions
                    .push(Action::Pull {
                        owner: owner.to_string(),
                        image,
                        reason: "missing".into(),
                    }),
                PullPolicy::Every(period) => {
                    let age = observed.image_ages.get(&image).copied();
                    if age.is_none_or(|age| age >= period) {
                        let when = age.map_or("at an unknown time".to_string(), |age| {
                            format!("{} ago", DurationSpec(Duration::from_secs(age.as_secs())))
                        });
                        actions.push(Action::Pull {
                            owner: owner.to_string(),
                            reason: format!("pull_policy: {policy}; last pulled {when}"),
                            image,
                        })
                    }
                }
                _ => {}
            },
        }
    }
    actions
}

/// Identical builds folded into the first of them (`app` and `app-cron` built from one
/// context): one build, tagged for each.
fn merge_builds(actions: Vec<Action>) -> Vec<Action> {
    let mut merged: Vec<Action> = Vec::new();
    for action in actions {
        if let Action::Build { image, build, .. } = &action {
            let leader = merged.iter_mut().find_map(|a| match a {
                Action::Build { build: first, .. } if first.same_build(build) => Some(first),
                _ => None,
            });
            if let Some(first) = leader {
                if !first.tags().any(|t| t == image) {
                    first.also_tags.push(image.clone());
                }
                continue;
            }
        }
        merged.push(action);
    }
    merged
}

/// The stage network and every other one the selected services join.
fn network_actions(
    loaded: &LoadedStack,
    observed: &Observed,
    selected: &[String],
) -> Result<Vec<Action>, StackErrors> {
    let stack = &loaded.stack;
    let mut keys: Vec<String> = vec!["default".to_string()];
    for name in selected {
        for key in stack.services[name.as_str()].networks.keys() {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    let mut actions = Vec::new();
    for key in &keys {
        let name = container::network_name(loaded, key);
        if stack.networks.get(key).is_some_and(|n| n.external) {
            actions.push(Action::ExternalNetwork {
                name,
                key: key.clone(),
            });
        } else if !observed.networks.contains(&name) {
            actions.push(Action::CreateNetwork {
                spec: Box::new(objects::network(loaded, &name)?),
            });
        }
    }
    Ok(actions)
}

/// Named volumes the selected services and data containers mount.
fn volume_actions(
    loaded: &LoadedStack,
    observed: &Observed,
    selected: &[String],
    data: &[String],
) -> Result<Vec<Action>, StackErrors> {
    let stack = &loaded.stack;
    let mut keys: Vec<String> = Vec::new();
    let mounts = selected
        .iter()
        .flat_map(|n| stack.services[n.as_str()].volumes.iter())
        .chain(
            data.iter()
                .flat_map(|n| stack.data_containers[n.as_str()].volumes.iter()),
        );
    for mount in mounts {
        if let (MountKind::Named, Some(source)) = (mount.kind, &mount.source) {
            if !keys.contains(source) {
                keys.push(source.clone());
            }
        }
    }
    let mut actions = Vec::new();
    for key in &keys {
        let name = container::volume_name(loaded, key);
        let def = stack.volumes.get(key);
        if def.is_some_and(|v| v.external) {
            actions.push(Action::ExternalVolume {
                name,
                key: key.clone(),
            });
        } else if !observed.volumes.contains(&name) {
            let driver = def.and_then(|v| v.driver.clone());
            actions.push(Action::CreateVolume {
                spec: Box::new(objects::volume(loaded, &name, driver)?),
            });
        }
    }
    Ok(actions)
}

/// One action per selected service, in dependency order, and the unchanged services the
/// engine already reports healthy.
fn service_actions(
    loaded: &LoadedStack,
    images: &HashMap<String, String>,
    observed: &Observed,
    options: &PlanOptions,
    selected: &[String],
    earlier: &[Action],
) -> (Vec<Action>, BTreeSet<String>) {
    let stack = &loaded.stack;
    let one_shots = one_shot_services(loaded);
    let mut healthy = BTreeSet::new();
    let mut actions: Vec<Action> = Vec::new();
    for name in selected {
        let service = &stack.services[name.as_str()];
        let image = container::service_image(loaded, name, service);
        let rebuilding = earlier.iter().any(|a| match a {
            Action::Build { build, .. } => build.tags().any(|t| *t == image),
            Action::Pull { image: i, .. } => *i == image,
            _ => false,
        });
        let image_id = if rebuilding {
            String::new()
        } else {
            images.get(&image).cloned().unwrap_or_default()
        };
        let mut first = container::service(loaded, name, service, &image_id);
        first.pre_start = super::task::pre_start_steps(loaded, name, service);
        // With replicas the steps run once, for the first replica created or recreated
        // (the others wait for it); every replica's hash covers them.
        let mut steps_claimed = false;
        for replica in container::replica_names(loaded, name) {
            let mut spec = first.clone();
            spec.name = replica;
            let current = observed.container(&spec.name);
            let one_shot = one_shots.contains(name);
            let mut change = decide(&spec, current, rebuilding, one_shot);
            if let Some(shared) = recreated_network_owner(service, &actions) {
                if !matches!(change, Change::Create | Change::Recreate(_)) {
                    // Its network namespace was the old container's.
                    change = Change::Recreate(vec![format!("network_mode (`{shared}` recreated)")]);
                }
            }
            if matches!(change, Change::Unchanged(_)) {
                if let Some(dep) = restarting_dependency(loaded, name, &actions) {
                    change = Change::Restart(format!("`{dep}` recreated (restart: true)"));
                }
            }
            if change == Change::Unchanged("running".into())
                && current.is_some_and(|c| c.health.as_deref() == Some("healthy"))
            {
                healthy.insert(spec.name.clone());
            }
            if matches!(change, Change::Create | Change::Recreate(_)) && !steps_claimed {
                steps_claimed = true;
            } else {
                spec.pre_start_elsewhere = true;
            }
            if let (Change::Recreate(_), Some(current)) = (&change, current) {
                carry_anonymous_volumes(&mut spec, current, observed, options.renew_anon_volumes);
            }
            let has_healthcheck = spec
                .healthcheck
                .as_ref()
                .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
            actions.push(Action::Service {
                service: name.clone(),
                depends_on: service_deps(loaded, name),
                has_healthcheck,
                one_shot,
                change,
                spec: Box::new(spec),
            });
        }
    }
    (actions, healthy)
}

/// What a recreated container does with the anonymous volumes of the container it replaces
/// (an image's `VOLUME`s, a service's `volumes: [/path]`): as in Compose, it mounts them at
/// the same paths so their data stays; with `renew` (`up -V`) it gets new ones and the old
/// ones go with the old container. Only the old container's own anonymous volumes count: not
/// the stage's named volumes, not those it mounts from another container (`volumes_from`),
/// not a path the new spec mounts something else at.
fn carry_anonymous_volumes(
    spec: &mut ContainerSpec,
    current: &ObservedContainer,
    observed: &Observed,
    renew: bool,
) {
    let mut claimed: BTreeSet<&str> = spec
        .binds
        .iter()
        .filter_map(|bind| bind.split(':').nth(1))
        .chain(spec.tmpfs.keys().map(String::as_str))
        .collect();
    let mut shared: BTreeSet<&str> = BTreeSet::new();
    for other in observed
        .containers
        .iter()
        .filter(|c| c.name != current.name)
    {
        let source = spec
            .volumes_from
            .iter()
            .any(|entry| container::volumes_from_target(entry) == other.name);
        for volume in &other.volumes {
            shared.insert(volume.name.as_str());
            if source {
                claimed.insert(volume.destination.as_str());
            }
        }
    }
    let own = current.volumes.iter().filter(|v| {
        v.is_anonymous_name()
            && !observed.volumes.contains(&v.name)
            && !shared.contains(v.name.as_str())
            && !claimed.contains(v.destination.as_str())
    });
    if renew {
        spec.renewed_volumes = own.map(|v| v.destination.clone()).collect();
    } else {
        spec.kept_volumes = own
            .map(|v| KeptVolume {
                name: v.name.clone(),
                path: v.destination.clone(),
            })
            .collect();
    }
}

/// `depends_on` entries with `required: false` whose service is not active (its profile is
/// not selected): the dependent starts without it, as in Compose, and is told so.
fn optional_dependencies_left_out(loaded: &LoadedStack, selected: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in selected {
        for (dep, dependency) in &loaded.stack.services[name.as_str()].depends_on {
            if !dependency.required && !loaded.stack.services.contains_key(dep) {
                warnings.push(format!(
                    "service `{name}` starts without `{dep}`: it is not active and the dependency has `required: false`"
                ));
            }
        }
    }
    warnings
}

/// Services others wait on to complete: their exited-0 container is current.
pub fn one_shot_services(loaded: &LoadedStack) -> HashSet<String> {
    loaded
        .stack
        .services
        .values()
        .flat_map(|s| s.depends_on.iter())
        .filter(|(_, d)| d.condition == Condition::ServiceCompletedSuccessfully)
        .map(|(n, _)| n.clone())
        .collect()
}

/// The service whose network this one shares (`network_mode: service:X`), when this plan
/// creates its container anew.
fn recreated_network_owner(
    service: &crate::stack::model::Service,
    planned: &[Action],
) -> Option<String> {
    let owner = service.network_mode.as_deref()?.strip_prefix("service:")?;
    planned
        .iter()
        .any(|a| {
            matches!(a, Action::Service { service, change: Change::Recreate(_) | Change::Create, .. } if service == owner)
        })
        .then(|| owner.to_string())
}

/// A dependency with `restart: true` that this plan recreates (dependencies come first).
fn restarting_dependency(loaded: &LoadedStack, name: &str, planned: &[Action]) -> Option<String> {
    let service = loaded.stack.services.get(name)?;
    service
        .depends_on
        .iter()
        .filter(|(_, dep)| dep.restart)
        .map(|(dep, _)| dep)
        .find(|dep| {
            planned.iter().any(|a| {
                matches!(a, Action::Service { service, change: Change::Recreate(_), .. } if service == *dep)
            })
        })
        .cloned()
}

/// What happens to one service's container: created when missing, recreated when its
/// config hash (or the networks it is attached to) differ from the spec or its image is being
/// rebuilt, started when current but not running, else unchanged. A container without a
/// config hash (a half-made one) is recreated. `one_shot`: others wait for it to complete,
/// so its exit 0 counts as current.
pub fn decide(
    spec: &ContainerSpec,
    current: Option<&ObservedContainer>,
    rebuilding: bool,
    one_shot: bool,
) -> Change {
    let Some(current) = current else {
        return Change::Create;
    };
    if rebuilding {
        return Change::Recreate(vec!["image".into()]);
    }
    if current.config_hash.as_deref() != Some(&spec.config_hash()) {
        let fields = current
            .fields
            .as_deref()
            .map(|old| container::changed_fields(old, &spec.field_hashes()))
            .unwrap_or_default();
        return if fields.is_empty() {
            Change::Recreate(vec!["config".into()])
        } else {
            Change::Recreate(fields)
        };
    }
    let detached = !current.networks.is_empty()
        && spec
            .networks
            .iter()
            .any(|n| !current.networks.contains(&n.network));
    if detached {
        return Change::Recreate(vec!["networks".into()]);
    }
    match current.state.as_str() {
        "running" | "restarting" => Change::Unchanged("running".into()),
        "paused" => Change::Unchanged("paused".into()),
        "exited" if one_shot && current.exit_code() == Some(0) => {
            Change::Unchanged("completed".into())
        }
        "created" => Change::Start("created, not started".into()),
        _ => Change::Start("was stopped".into()),
    }
}

/// Service containers whose service is gone from the stack file.
fn orphan_actions(loaded: &LoadedStack, observed: &Observed, options: &PlanOptions) -> Vec<Action> {
    observed
        .containers
        .iter()
        .filter(|c| c.role == names::role::SERVICE)
        .filter(|c| {
            !c.service
                .as_ref()
                .is_some_and(|s| loaded.stack.services.contains_key(s))
        })
        .map(|c| Action::Orphan {
            name: c.name.clone(),
            remove: options.remove_orphans,
        })
        .collect()
}

/// Containers of a service of the stack that are not among its containers now (its
/// `container_name` changed, or it runs fewer replicas).
fn stale_actions(loaded: &LoadedStack, observed: &Observed) -> Vec<Action> {
    observed
        .containers
        .iter()
        .filter(|c| c.role == names::role::SERVICE)
        .filter_map(|c| {
            let service = c.service.as_ref()?;
            loaded.stack.services.get(service)?;
            let wanted = container::replica_names(loaded, service);
            (!wanted.contains(&c.name)).then(|| Action::Stale {
                name: c.name.clone(),
                service: service.clone(),
            })
        })
        .collect()
}

fn data_missing(loaded: &LoadedStack, observed: &Observed, name: &str) -> bool {
    observed
        .container(&names::data_container(&loaded.stage, &loaded.project, name))
        .is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE_ID: &str = "sha256:1111";

    fn loaded(yaml: &str) -> LoadedStack {
        crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo")
    }

    fn images() -> HashMap<String, String> {
        HashMap::from([
            ("busybox:latest".to_string(), IMAGE_ID.to_string()),
            ("other:1".to_string(), "sha256:2222".to_string()),
            ("demo/api:dev".to_string(), "sha256:3333".to_string()),
        ])
    }

    const BASE: &str = r#"
services:
  db:
    image: busybox:latest
    command: [sleep, "3600"]
    environment: { A: "1" }
    ports: ["5432:5432"]
    healthcheck: { test: [CMD, "true"], interval: 1s }
    volumes_from: [dbdata]
  api:
    image: busybox:latest
    command: [httpd, -f]
    depends_on: { db: { condition: service_healthy } }
    volumes: ["cache:/cache", "./logs:/logs:ro", "/anon"]
  worker:
    image: busybox:latest
    depends_on: [api]
data_containers:
  dbdata:
    image: busybox:latest
    volumes: [/var/lib/data]
volumes:
  cache: {}
"#;

    /// The engine state right after a full `up` of `stack`: everything exists and runs.
    fn converged(loaded: &LoadedStack) -> Observed {
        let plan = plan(
            loaded,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .expect("plan");
        let mut observed = Observed::default();
        for action in &plan.actions {
            match action {
                Action::CreateNetwork { spec } => observed.networks.push(spec.name.clone()),
                Action::CreateVolume { spec } => observed.volumes.push(spec.name.clone()),
                Action::DataContainer { spec, .. } => observed
                    .containers
                    .push(observed_of(spec, "data", "created")),
                Action::Service { spec, .. } => observed
                    .containers
                    .push(observed_of(spec, "service", "running")),
                _ => {}
            }
        }
        observed
    }

    fn observed_of(spec: &ContainerSpec, role: &str, state: &str) -> ObservedContainer {
        let labels = spec.labels();
        ObservedContainer {
            name: spec.name.clone(),
            id: format!("id-{}", spec.name),
            role: role.into(),
            service: labels.get(names::SERVICE).cloned(),
            state: state.into(),
            status: String::new(),
            health: None,
            config_hash: labels.get(names::CONFIG_HASH).cloned(),
            fields: labels.get(names::CONFIG_FIELDS).cloned(),
            image_id: spec.image_id.clone(),
            ports: Vec::new(),
            networks: spec.networks.iter().map(|n| n.network.clone()).collect(),
            volumes: Vec::new(),
            kept_volumes: Vec::new(),
        }
    }

    fn changes(plan: &Plan) -> Vec<(String, &'static str, String)> {
        plan.actions
            .iter()
            .map(|a| {
                let (_, object, verb, reason) = a.describe();
                (object, verb, reason)
            })
            .collect()
    }

    fn service_change<'a>(plan: &'a Plan, name: &str) -> &'a Change {
        match plan.service(name) {
            Some(Action::Service { change, .. }) => change,
            other => panic!("no service action for {name}: {other:?}"),
        }
    }

    /// A 64-digit name, as the engine gives an anonymous volume.
    fn anonymous(seed: char) -> String {
        std::iter::repeat_n(seed, 64).collect()
    }

    fn mounted(name: &str, destination: &str) -> crate::observed::MountedVolume {
        crate::observed::MountedVolume {
            name: name.into(),
            destination: destination.into(),
        }
    }

    fn service_spec<'a>(plan: &'a Plan, name: &str) -> &'a ContainerSpec {
        match plan.service(name) {
            Some(Action::Service { spec, .. }) => spec,
            other => panic!("no service action for {name}: {other:?}"),
        }
    }

    /// Guards the loss of a database's data on every recreate: the new container took
    /// fresh anonymous volumes and the old ones went with the old container.
    #[test]
    fn a_recreate_keeps_only_the_old_containers_own_anonymous_volumes() {
        let stack = loaded(BASE);
        let mut observed = converged(&stack);
        let data = anonymous('d');
        let own = anonymous('a');
        let image_volume = anonymous('b');
        let replaced_by_bind = anonymous('c');
        for container in observed.containers.iter_mut() {
            if container.name == "dev-demo--dbdata" {
                container.volumes = vec![mounted(&data, "/var/lib/data")];
            }
            if container.name == "dev-demo--api" {
                container.fields = Some("environment:changed".into());
                container.config_hash = Some("old".into());
                container.volumes = vec![
                    mounted(&own, "/anon"),
                    mounted("dev-demo_cache", "/cache"),
                    mounted(&image_volume, "/srv/image-volume"),
                    // An old anonymous volume where the stack now mounts `cache`.
                    mounted(&replaced_by_bind, "/cache"),
                ];
            }
            if container.name == "dev-demo--db" {
                container.config_hash = Some("old".into());
                // What `volumes_from` brings is the data container's, never the service's.
                container.volumes = vec![mounted(&data, "/var/lib/data")];
            }
        }
        let plan1 = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        let api = service_spec(&plan1, "api");
        assert_eq!(
            api.kept_volumes,
            vec![
                KeptVolume {
                    name: own.clone(),
                    path: "/anon".into()
                },
                KeptVolume {
                    name: image_volume.clone(),
                    path: "/srv/image-volume".into()
                },
            ]
        );
        assert!(service_spec(&plan1, "db").kept_volumes.is_empty());
        let (_, _, _, reason) = plan1.service("api").unwrap().describe();
        assert!(
            reason.ends_with("; keeps anonymous volumes /anon, /srv/image-volume"),
            "{reason}"
        );

        let renew = PlanOptions {
            renew_anon_volumes: true,
            ..Default::default()
        };
        let plan2 = plan(&stack, &images(), &observed, &renew).unwrap();
        let api = service_spec(&plan2, "api");
        assert!(api.kept_volumes.is_empty());
        assert_eq!(api.renewed_volumes, vec!["/anon", "/srv/image-volume"]);
        let (_, _, _, reason) = plan2.service("api").unwrap().describe();
        assert!(
            reason
                .ends_with("; renews anonymous volumes /anon, /srv/image-volume (their data goes)"),
            "{reason}"
        );
        // Neither is hashed: what a container inherits is not what the user asked for.
        let mut bare = api.clone();
        bare.renewed_volumes.clear();
        bare.kept_volumes = service_spec(&plan1, "api").kept_volumes.clone();
        assert_eq!(bare.config_hash(), api.config_hash());
    }

    #[test]
    fn empty_engine_creates_everything_in_order() {
        let stack = loaded(BASE);
        let plan = plan(
            &stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        let got: Vec<(String, &str)> = changes(&plan).into_iter().map(|(o, v, _)| (o, v)).collect();
        assert_eq!(
            got,
            vec![
                ("dev-demo_default".to_string(), "create"),
                ("dev-demo_cache".to_string(), "create"),
                ("dev-demo--dbdata".to_string(), "create"),
                ("dev-demo--db".to_string(), "create"),
                ("dev-demo--api".to_string(), "create"),
                ("dev-demo--worker".to_string(), "create"),
            ]
        );
        assert_eq!(service_change(&plan, "db"), &Change::Create);
    }

    #[test]
    fn converged_state_plans_nothing() {
        let stack = loaded(BASE);
        let observed = converged(&stack);
        let plan = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        assert!(plan.is_noop(), "{plan}");
        for name in ["db", "api", "worker"] {
            assert_eq!(
                service_change(&plan, name),
                &Change::Unchanged("running".into())
            );
        }
    }

    fn changed_one(yaml_after: &str, service: &str, field: &str) {
        let before = loaded(BASE);
        let observed = converged(&before);
        let after = loaded(yaml_after);
        let plan = plan(&after, &images(), &observed, &PlanOptions::default()).unwrap();
        for name in ["db", "api", "worker"] {
            let change = service_change(&plan, name);
            if name == service {
                assert_eq!(change, &Change::Recreate(vec![field.to_string()]), "{name}");
            } else {
                assert_eq!(
                    change,
                    &Change::Unchanged("running".into()),
                    "{name} for a change of {field}"
                );
            }
        }
    }

    #[test]
    fn each_kind_of_change_recreates_exactly_that_service() {
        changed_one(
            &BASE.replace(r#"{ A: "1" }"#, r#"{ A: "2" }"#),
            "db",
            "environment",
        );
        changed_one(
            &BASE.replace("[httpd, -f]", "[httpd, -f, -v]"),
            "api",
            "command",
        );
        changed_one(
            &BASE.replace(r#""5432:5432""#, r#""5433:5432""#),
            "db",
            "ports",
        );
        changed_one(
            &BASE.replace("./logs:/logs:ro", "./logs:/logs"),
            "api",
            "volumes",
        );
        changed_one(
            &BASE.replace(
                "    depends_on: [api]",
                "    depends_on: [api]\n    user: \"1000\"",
            ),
            "worker",
            "user",
        );
        changed_one(
            &BASE.replace("interval: 1s", "interval: 2s"),
            "db",
            "healthcheck",
        );
        changed_one(
            &BASE.replace(
                "  worker:\n    image: busybox:latest",
                "  worker:\n    image: other:1",
            ),
            "worker",
            "image",
        );
    }

    #[test]
    fn new_image_id_recreates_with_image_reason() {
        let stack = loaded(BASE);
        let observed = converged(&stack);
        let mut newer = images();
        newer.insert("busybox:latest".into(), "sha256:9999".into());
        let plan = plan(&stack, &newer, &observed, &PlanOptions::default()).unwrap();
        for name in ["db", "api", "worker"] {
            assert_eq!(
                service_change(&plan, name),
                &Change::Recreate(vec!["image".into()])
            );
        }
        // The data container keeps its data: it is never recreated.
        assert!(plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::DataContainer { exists: true, .. })));
    }

    #[test]
    fn stopped_container_is_started_and_missing_labels_say_config() {
        let stack = loaded(BASE);
        let mut observed = converged(&stack);
        observed
            .containers
            .iter_mut()
            .find(|c| c.name == "dev-demo--api")
            .unwrap()
            .state = "exited".into();
        let worker = observed
            .containers
            .iter_mut()
            .find(|c| c.name == "dev-demo--worker")
            .unwrap();
        worker.fields = None;
        worker.config_hash = Some("old".into());
        let plan = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            service_change(&plan, "api"),
            &Change::Start("was stopped".into())
        );
        assert_eq!(
            service_change(&plan, "worker"),
            &Change::Recreate(vec!["config".into()])
        );
        let (_, _, verb, reason) = plan.service("worker").unwrap().describe();
        assert_eq!((verb, reason.as_str()), ("recreate", "config changed"));
    }

    #[test]
    fn orphans_are_reported_and_removed_only_when_asked() {
        let stack = loaded(BASE);
        let mut observed = converged(&stack);
        observed.containers.push(ObservedContainer {
            name: "dev-demo--old".into(),
            role: "service".into(),
            service: Some("old".into()),
            state: "running".into(),
            ..Default::default()
        });
        let plan1 = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        assert!(plan1.actions.contains(&Action::Orphan {
            name: "dev-demo--old".into(),
            remove: false
        }));
        assert!(plan1.is_noop());
        let options = PlanOptions {
            remove_orphans: true,
            ..Default::default()
        };
        let plan2 = plan(&stack, &images(), &observed, &options).unwrap();
        assert!(plan2.actions.contains(&Action::Orphan {
            name: "dev-demo--old".into(),
            remove: true
        }));
        assert!(!plan2.is_noop());
    }

    #[test]
    fn selecting_a_service_brings_its_dependencies_only() {
        let stack = loaded(BASE);
        let options = PlanOptions {
            services: vec!["api".into()],
            ..Default::default()
        };
        let plan = plan(&stack, &images(), &Observed::default(), &options).unwrap();
        assert!(plan.service("api").is_some());
        assert!(plan.service("db").is_some());
        assert!(plan.service("worker").is_none());
        let bad = PlanOptions {
            services: vec!["nope".into()],
            ..Default::default()
        };
        assert!(
            matches!(plan_err(&stack, &bad), PlanError::UnknownService(name) if name == "nope")
        );
    }

    fn plan_err(stack: &LoadedStack, options: &PlanOptions) -> PlanError {
        plan(stack, &images(), &Observed::default(), options).unwrap_err()
    }

    /// A network or volume the plan creates carries its spec: a target reads no stack file.
    #[test]
    fn created_networks_and_volumes_carry_their_spec() {
        let stack = loaded(
            "services:\n  api: { image: busybox, volumes: [\"data:/data\"] }\nvolumes:\n  data: { driver_opts: { type: tmpfs }, labels: { team: a } }\n",
        );
        let plan = plan(
            &stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        let network = plan.actions.iter().find_map(|a| match a {
            Action::CreateNetwork { spec } => Some(spec),
            _ => None,
        });
        assert_eq!(network.map(|n| n.name.as_str()), Some("dev-demo_default"));
        let volume = plan.actions.iter().find_map(|a| match a {
            Action::CreateVolume { spec } => Some(spec),
            _ => None,
        });
        let volume = volume.expect("the volume is created");
        assert_eq!(
            volume.options.get("type").map(String::as_str),
            Some("tmpfs")
        );
        assert_eq!(volume.labels.get("team").map(String::as_str), Some("a"));
    }

    /// Labels under `io.stackctl.` on a network are refused when planning, before any change.
    #[test]
    fn a_network_with_our_labels_is_refused_when_planning() {
        let stack = loaded(
            "services:\n  api: { image: busybox }\nnetworks:\n  default: { labels: { io.stackctl.role: x } }\n",
        );
        let err = plan(
            &stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        );
        assert!(matches!(err, Err(PlanError::Stack(_))));
    }

    #[test]
    fn missing_images_are_built_or_reported() {
        let stack = loaded("services:\n  api: { build: ./api }\n  web: { image: nothere:1 }\n");
        let plan1 = plan(
            &stack,
            &HashMap::new(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        match &plan1.actions[0] {
            Action::Build {
                owner,
                image,
                reason,
                build,
            } => {
                assert_eq!(
                    (owner.as_str(), image.as_str(), reason.as_str()),
                    ("api", "demo/api:dev", "image missing")
                );
                assert_eq!(build.context, std::path::PathBuf::from("/srv/demo/api"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            plan1.actions[1],
            Action::Pull {
                owner: "web".into(),
                image: "nothere:1".into(),
                reason: "missing".into()
            }
        );
        // Present images are built only with --build, and not twice in one run.
        let options = PlanOptions {
            build: true,
            ..Default::default()
        };
        let plan2 = plan(&stack, &images(), &Observed::default(), &options).unwrap();
        assert_eq!(plan2.builds().count(), 1);
        let options = PlanOptions {
            build: true,
            built: HashSet::from(["demo/api:dev".to_string()]),
            ..Default::default()
        };
        let plan3 = plan(&stack, &images(), &Observed::default(), &options).unwrap();
        assert_eq!(plan3.builds().count(), 0);
    }

    #[test]
    fn one_shot_dependency_that_completed_is_current() {
        let stack = loaded(
            "services:\n  migrate: { image: busybox:latest, command: [\"true\"] }\n  api:\n    image: busybox:latest\n    depends_on: { migrate: { condition: service_completed_successfully } }\n",
        );
        let mut observed = converged(&stack);
        let migrate = observed
            .containers
            .iter_mut()
            .find(|c| c.name == "dev-demo--migrate")
            .unwrap();
        migrate.state = "exited".into();
        migrate.status = "Exited (0) 3 seconds ago".into();
        let plan1 = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            service_change(&plan1, "migrate"),
            &Change::Unchanged("completed".into())
        );
        observed
            .containers
            .iter_mut()
            .find(|c| c.name == "dev-demo--migrate")
            .unwrap()
            .status = "Exited (3) 1 second ago".into();
        let plan2 = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            service_change(&plan2, "migrate"),
            &Change::Start("was stopped".into())
        );
    }

    #[test]
    fn external_objects_are_checked_not_created() {
        let stack = loaded(
            "services:\n  a:\n    image: busybox:latest\n    networks: [shared]\n    volumes: [\"ext:/x\"]\nnetworks:\n  shared: { external: true, name: corp-net }\nvolumes:\n  ext: { external: true }\n",
        );
        let plan = plan(
            &stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        assert!(plan.actions.contains(&Action::ExternalNetwork {
            name: "corp-net".into(),
            key: "shared".into()
        }));
        assert!(plan.actions.contains(&Action::ExternalVolume {
            name: "ext".into(),
            key: "ext".into()
        }));
        match plan.service("a") {
            Some(Action::Service { spec, .. }) => {
                assert_eq!(spec.networks[0].network, "dev-demo_default");
                assert_eq!(spec.networks[1].network, "corp-net");
                assert_eq!(spec.networks[1].aliases, vec!["a".to_string()]);
                assert_eq!(spec.binds, vec!["ext:/x".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dependency_order_puts_dependencies_first() {
        let stack = loaded(
            "services:\n  web: { image: busybox:latest, depends_on: [api] }\n  api: { image: busybox:latest, depends_on: [db], volumes_from: [\"files:ro\"] }\n  db: { image: busybox:latest }\n  files: { image: busybox:latest }\n",
        );
        let order = services_in_order(&stack, &[]).unwrap();
        assert_eq!(order, vec!["db", "files", "api", "web"]);
        match plan(
            &stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap()
        .service("api")
        {
            Some(Action::Service { spec, .. }) => {
                assert_eq!(spec.volumes_from, vec!["dev-demo--files:ro".to_string()])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spec_maps_resolved_names_and_paths() {
        let stack = loaded(BASE);
        let plan = plan(
            &stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        match plan.service("api") {
            Some(Action::Service {
                spec, depends_on, ..
            }) => {
                assert_eq!(
                    spec.binds,
                    vec![
                        "dev-demo_cache:/cache".to_string(),
                        "/srv/demo/logs:/logs:ro".to_string()
                    ]
                );
                assert_eq!(spec.anonymous_volumes, vec!["/anon".to_string()]);
                assert_eq!(
                    depends_on,
                    &vec![("db".to_string(), Condition::ServiceHealthy)]
                );
                assert_eq!(spec.networks[0].aliases, vec!["api".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decide_create_recreate_start_or_unchanged() {
        let stack = loaded(BASE);
        let spec = container::service(&stack, "db", &stack.stack.services["db"], IMAGE_ID);
        let current = observed_of(&spec, "service", "running");
        let with = |change: &dyn Fn(&mut ObservedContainer)| {
            let mut c = current.clone();
            change(&mut c);
            c
        };
        let recreate =
            |fields: &[&str]| Change::Recreate(fields.iter().map(|f| f.to_string()).collect());
        let other = container::service(&stack, "api", &stack.stack.services["api"], IMAGE_ID);
        // (case, observed container, rebuilding, one-shot, expected)
        let table: Vec<(&str, Option<ObservedContainer>, bool, bool, Change)> = vec![
            ("missing", None, false, false, Change::Create),
            (
                "running",
                Some(current.clone()),
                false,
                false,
                Change::Unchanged("running".into()),
            ),
            (
                "restarting",
                Some(with(&|c| c.state = "restarting".into())),
                false,
                false,
                Change::Unchanged("running".into()),
            ),
            (
                "paused",
                Some(with(&|c| c.state = "paused".into())),
                false,
                false,
                Change::Unchanged("paused".into()),
            ),
            (
                "created",
                Some(with(&|c| c.state = "created".into())),
                false,
                false,
                Change::Start("created, not started".into()),
            ),
            (
                "exited",
                Some(with(&|c| {
                    c.state = "exited".into();
                    c.status = "Exited (0) 1s ago".into()
                })),
                false,
                false,
                Change::Start("was stopped".into()),
            ),
            (
                "one-shot done",
                Some(with(&|c| {
                    c.state = "exited".into();
                    c.status = "Exited (0) 1s ago".into()
                })),
                false,
                true,
                Change::Unchanged("completed".into()),
            ),
            (
                "one-shot failed",
                Some(with(&|c| {
                    c.state = "exited".into();
                    c.status = "Exited (2) 1s ago".into()
                })),
                false,
                true,
                Change::Start("was stopped".into()),
            ),
            (
                "image rebuilt",
                Some(current.clone()),
                true,
                false,
                recreate(&["image"]),
            ),
            (
                "no hash (half-made)",
                Some(with(&|c| {
                    c.config_hash = None;
                    c.fields = None
                })),
                false,
                false,
                recreate(&["config"]),
            ),
            (
                "other config",
                Some(with(&|c| {
                    c.config_hash = Some(other.config_hash());
                    c.fields = Some(other.field_hashes())
                })),
                false,
                false,
                recreate(&[
                    "command",
                    "environment",
                    "ports",
                    "volumes",
                    "volumes_from",
                    "networks",
                    "healthcheck",
                ]),
            ),
            (
                "network missing",
                Some(with(&|c| c.networks = vec!["elsewhere".into()])),
                false,
                false,
                recreate(&["networks"]),
            ),
        ];
        for (case, observed, rebuilding, one_shot, expected) in table {
            assert_eq!(
                decide(&spec, observed.as_ref(), rebuilding, one_shot),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn defect1_an_image_another_service_builds_is_built_not_missing() {
        // `api` runs the tag `db` builds, and comes first in the file; a data container too.
        let stack = loaded(
            "services:\n  api: { image: app/bb:dev }\n  db: { build: ./db, image: app/bb:dev }\ndata_containers:\n  files: { image: app/bb:dev }\n",
        );
        let plan = plan(
            &stack,
            &HashMap::new(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::MissingImage { .. })),
            "{plan}"
        );
        let builds: Vec<(&str, &str)> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Build { owner, image, .. } => Some((owner.as_str(), image.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(builds, vec![("db", "app/bb:dev")]);
    }

    #[test]
    fn defect4_a_container_missing_one_of_its_networks_is_recreated() {
        let stack =
            loaded("services:\n  a:\n    image: busybox:latest\n    networks: [default, back]\n");
        let mut observed = converged(&stack);
        observed.containers[0].networks = vec!["dev-demo_default".into()];
        let plan = plan(&stack, &images(), &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            service_change(&plan, "a"),
            &Change::Recreate(vec!["networks".into()])
        );
    }

    #[test]
    fn defect3_restart_true_restarts_the_dependent_when_its_dependency_is_recreated() {
        let yaml = "services:\n  db: { image: busybox:latest, environment: { V: \"1\" } }\n  api:\n    image: busybox:latest\n    depends_on: { db: { condition: service_started, restart: true } }\n  web:\n    image: busybox:latest\n    depends_on: [db]\n";
        let before = loaded(yaml);
        let observed = converged(&before);
        let after = loaded(&yaml.replace("V: \"1\"", "V: \"2\""));
        let plan = plan(&after, &images(), &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            service_change(&plan, "db"),
            &Change::Recreate(vec!["environment".into()])
        );
        assert_eq!(
            service_change(&plan, "api"),
            &Change::Restart("`db` recreated (restart: true)".into())
        );
        assert_eq!(
            service_change(&plan, "web"),
            &Change::Unchanged("running".into())
        );
        // Unchanged dependency: no restart.
        let plan = plan_of(&before, &observed);
        assert_eq!(
            service_change(&plan, "api"),
            &Change::Unchanged("running".into())
        );
    }

    #[test]
    fn only_data_plans_those_data_containers_and_nothing_else() {
        let stack = loaded(BASE);
        let options = PlanOptions {
            only_data: vec!["dbdata".into()],
            ..Default::default()
        };
        let plan = plan(&stack, &images(), &Observed::default(), &options).unwrap();
        assert!(
            plan.actions.iter().any(
                |a| matches!(a, Action::DataContainer { key, exists: false, .. } if key == "dbdata")
            ),
            "{:?}",
            plan.actions
        );
        assert!(
            plan.actions.iter().all(|a| matches!(
                a,
                Action::DataContainer { .. } | Action::CreateVolume { .. }
            )),
            "no service, network or removal: {:?}",
            plan.actions
        );
    }

    fn plan_of(stack: &LoadedStack, observed: &Observed) -> Plan {
        plan(stack, &images(), observed, &PlanOptions::default()).unwrap()
    }

    #[test]
    fn defect3_a_dependency_not_required_and_not_active_is_left_out_with_a_warning() {
        // As the loader leaves it: `ghost` is in a profile that is not selected.
        let stack = loaded(
            "services:\n  api:\n    image: busybox:latest\n    depends_on: { ghost: { condition: service_healthy, required: false } }\n",
        );
        let plan = plan_of(&stack, &Observed::default());
        assert_eq!(service_change(&plan, "api"), &Change::Create);
        match plan.service("api") {
            Some(Action::Service { depends_on, .. }) => assert!(depends_on.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            plan.warnings,
            vec!["service `api` starts without `ghost`: it is not active and the dependency has `required: false`".to_string()]
        );
    }

    #[test]
    fn pull_policy_decides_when_an_image_is_pulled() {
        let stack = loaded(
            "services:\n  a: { image: 'busybox:latest', pull_policy: always }\n  b: { image: 'other:1', pull_policy: never }\n  c: { image: 'gone:1', pull_policy: never }\n  d: { image: 'gone:2' }\n  e: { image: 'other:1' }\n  f: { image: 'demo/api:dev', build: ./api, pull_policy: build }\n",
        );
        let fetch = |options: &PlanOptions| -> Vec<(String, String, String)> {
            plan(&stack, &images(), &Observed::default(), options)
                .unwrap()
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::Pull { image, reason, .. } => {
                        Some(("pull".into(), image.clone(), reason.clone()))
                    }
                    Action::Build { image, reason, .. } => {
                        Some(("build".into(), image.clone(), reason.clone()))
                    }
                    Action::MissingImage { image, .. } => {
                        Some(("missing".into(), image.clone(), String::new()))
                    }
                    _ => None,
                })
                .collect()
        };
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            fetch(&PlanOptions::default()),
            vec![
                t("pull", "busybox:latest", "pull_policy: always"),
                t("missing", "gone:1", ""),
                t("pull", "gone:2", "missing"),
                t("build", "demo/api:dev", "pull_policy: build"),
            ]
        );
        let never = PlanOptions {
            pull: Some(PullPolicy::Never),
            ..Default::default()
        };
        assert_eq!(
            fetch(&never),
            vec![
                t("missing", "gone:1", ""),
                t("missing", "gone:2", ""),
                t("build", "demo/api:dev", "pull_policy: build"),
            ]
        );
        let always = PlanOptions {
            pull: Some(PullPolicy::Always),
            ..Default::default()
        };
        assert_eq!(
            fetch(&always).len(),
            5,
            "other:1 is shared by b and e: one pull"
        );
        assert!(fetch(&always).contains(&t("pull", "other:1", "--pull always")));
    }

    /// The containers a plan leaves running for a stack, as the engine would list them.
    fn observed_after(stack: &LoadedStack) -> Observed {
        let plan = plan(
            stack,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        let containers = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Service { spec, .. } => Some(observed_of(spec, "service", "running")),
                _ => None,
            })
            .collect();
        Observed {
            containers,
            networks: vec!["dev-demo_default".into()],
            ..Default::default()
        }
    }

    #[test]
    fn replicas_run_pre_start_steps_once_and_share_the_hash() {
        let yaml = "services:\n  api:\n    image: busybox:latest\n    scale: 3\n    pre_start:\n      - command: [echo, one]\n";
        let three = loaded(yaml);
        let plan3 = plan(
            &three,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        let specs: Vec<&ContainerSpec> = plan3
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Service { spec, .. } => Some(spec.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(specs.len(), 3);
        assert!(specs
            .iter()
            .all(|s| s.pre_start.len() == 1 && s.config_hash() == specs[0].config_hash()));
        let lines: Vec<(String, String)> = plan3
            .actions
            .iter()
            .flat_map(Action::pre_start_lines)
            .collect();
        assert_eq!(
            lines,
            vec![(
                "dev-demo--api".to_string(),
                "step 1: echo one; the service is created".to_string()
            )]
        );
        // Scaling up: the running replica stays, the new one runs the steps.
        let running = observed_after(&loaded(&yaml.replace("scale: 3", "scale: 1")));
        let plan4 = plan(&three, &images(), &running, &PlanOptions::default()).unwrap();
        let lines: Vec<String> = plan4
            .actions
            .iter()
            .flat_map(Action::pre_start_lines)
            .map(|(container, _)| container)
            .collect();
        assert_eq!(lines, vec!["dev-demo--api--2".to_string()]);
    }

    #[test]
    fn replicas_are_containers_and_scaling_down_removes_the_extra_ones() {
        let three =
            loaded("services:\n  api:\n    image: busybox:latest\n    deploy: { replicas: 3 }\n");
        let plan3 = plan(
            &three,
            &images(),
            &Observed::default(),
            &PlanOptions::default(),
        )
        .unwrap();
        let created: Vec<String> = changes(&plan3)
            .into_iter()
            .filter(|(_, verb, _)| *verb == "create")
            .map(|(object, _, _)| object)
            .collect();
        assert_eq!(
            created,
            vec![
                "dev-demo_default",
                "dev-demo--api",
                "dev-demo--api--2",
                "dev-demo--api--3"
            ]
        );
        let running = observed_after(&three);
        let one = loaded("services:\n  api:\n    image: busybox:latest\n    scale: 1\n");
        let plan1 = plan(&one, &images(), &running, &PlanOptions::default()).unwrap();
        let got: Vec<(String, &str)> = changes(&plan1)
            .into_iter()
            .map(|(o, v, _)| (o, v))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dev-demo--api".to_string(), "unchanged"),
                ("dev-demo--api--2".to_string(), "remove"),
                ("dev-demo--api--3".to_string(), "remove"),
            ]
        );
    }

    #[test]
    fn a_new_container_name_replaces_the_old_container() {
        let before = loaded(
            "services:\n  api:\n    image: busybox:latest\n  db:\n    image: busybox:latest\n",
        );
        let running = observed_after(&before);
        let after = loaded("services:\n  api:\n    image: busybox:latest\n    container_name: dev-api\n  db:\n    image: busybox:latest\n");
        let plan = plan(&after, &images(), &running, &PlanOptions::default()).unwrap();
        let got: Vec<(String, &str)> = changes(&plan).into_iter().map(|(o, v, _)| (o, v)).collect();
        assert_eq!(
            got,
            vec![
                ("dev-api".to_string(), "create"),
                ("dev-demo--db".to_string(), "unchanged"),
                ("dev-demo--api".to_string(), "remove"),
            ]
        );
    }

    #[test]
    fn sharing_a_recreated_services_network_recreates_the_sharer() {
        let yaml = "services:\n  vpn:\n    image: busybox:latest\n    environment: { V: \"1\" }\n  app:\n    image: busybox:latest\n    network_mode: service:vpn\n";
        let running = observed_after(&loaded(yaml));
        let after = loaded(&yaml.replace("V: \"1\"", "V: \"2\""));
        let plan = plan(&after, &images(), &running, &PlanOptions::default()).unwrap();
        assert_eq!(
            service_change(&plan, "vpn"),
            &Change::Recreate(vec!["environment".into()])
        );
        assert_eq!(
            service_change(&plan, "app"),
            &Change::Recreate(vec!["network_mode (`vpn` recreated)".into()])
        );
        match plan.service("app") {
            Some(Action::Service {
                spec, depends_on, ..
            }) => {
                assert_eq!(
                    spec.network_mode.as_deref(),
                    Some("container:dev-demo--vpn")
                );
                assert!(spec.networks.is_empty());
                assert_eq!(
                    depends_on,
                    &vec![("vpn".to_string(), Condition::ServiceStarted)]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timed_pull_policies_pull_only_an_image_older_than_their_period() {
        let stack = loaded(
            "services:\n  a: { image: 'busybox:latest', pull_policy: daily }\n  b: { image: 'other:1', pull_policy: every_2h }\n  c: { image: 'gone:1', pull_policy: weekly }\n  d: { image: 'demo/api:dev', pull_policy: every_30m }\n",
        );
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let observed = Observed {
            image_ages: HashMap::from([
                ("busybox:latest".to_string(), hours(25)),
                ("other:1".to_string(), hours(1)),
            ]),
            ..Default::default()
        };
        let pulls: Vec<(String, String)> =
            plan(&stack, &images(), &observed, &PlanOptions::default())
                .unwrap()
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::Pull { image, reason, .. } => Some((image.clone(), reason.clone())),
                    _ => None,
                })
                .collect();
        assert_eq!(
            pulls,
            vec![
                (
                    "busybox:latest".to_string(),
                    "pull_policy: daily; last pulled 25h ago".to_string()
                ),
                ("gone:1".to_string(), "missing".to_string()),
                (
                    "demo/api:dev".to_string(),
                    "pull_policy: every_30m; last pulled at an unknown time".to_string()
                ),
            ],
            "other:1 was pulled an hour ago, inside its 2h"
        );
    }

    #[test]
    fn a_services_own_always_pulls_its_image_even_with_a_build_but_build_still_builds() {
        let stack = loaded(
            "services:\n  api: { image: 'demo/api:dev', build: ./api, pull_policy: always }\n",
        );
        let kinds = |options: &PlanOptions| -> Vec<&'static str> {
            plan(&stack, &images(), &Observed::default(), options)
                .unwrap()
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::Pull { .. } => Some("pull"),
                    Action::Build { .. } => Some("build"),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(kinds(&PlanOptions::default()), vec!["pull"]);
        let build = PlanOptions {
            build: true,
            ..Default::default()
        };
        assert_eq!(kinds(&build), vec!["build"]);
    }
}
