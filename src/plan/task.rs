//! Tasks, planned: what a container task's one-off container looks like (pure: the stack
//! in, a [`ContainerSpec`] out), and which steps a sequence runs. Running them is
//! `apply::task`.
//!
//! One container model: a task with `service:` starts from that service's own spec (the same
//! [`container::service`] `up` uses) and adjusts it: its own name and role, the task's
//! command, environment (the task's entries win), volumes and `volumes_from` added; never the
//! service's ports, healthcheck, restart policy, hostname or network aliases (a task must not
//! answer for the service). Without `service:` it starts from a bare spec on the stage
//! network.

use std::path::PathBuf;

use indexmap::IndexMap;

use super::container::{self, ContainerSpec, NetworkAttachment, StepSpec};
use super::image::{self, ImageSpec, Owner};
use crate::error::UsageError;
use crate::names;
use crate::stack::model::{
    env_list, ContainerTask, MountKind, PullPolicy, Service, Stack, Task, BUILTIN_STEPS,
};
use crate::stack::LoadedStack;

/// A container task ready to run: the container, and what must exist first.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub task: String,
    /// The one-off container.
    pub container: ContainerSpec,
    /// Build this image first when it does not exist locally: the build of whichever entry
    /// of the stage makes the image's tag.
    pub build: Option<ImageSpec>,
    /// Named volumes of the stage to create when missing: engine name and driver.
    pub volumes: Vec<(String, Option<String>)>,
    /// Stage networks to create when missing (engine names; external ones are not listed).
    pub networks: Vec<String>,
    /// The stage's data containers it takes volumes from (keys), made when missing.
    pub data_containers: Vec<String>,
    /// The task's `stdin:` file, streamed to the process unless input is piped to us.
    pub stdin_file: Option<PathBuf>,
    /// When the image is pulled: the service's `pull_policy` when the task runs its image,
    /// `missing` otherwise.
    pub pull_policy: PullPolicy,
}

/// A random short id for a one-off container name: 8 hex digits.
pub fn short_id() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time and pid still make a collision unlikely.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolve the container task `name`. `args` (after `--`) replace its command.
pub fn plan_container(
    loaded: &LoadedStack,
    name: &str,
    task: &ContainerTask,
    args: &[String],
    short_id: &str,
) -> Result<TaskPlan, UsageError> {
    let service = task_service(loaded, name, task)?;
    let image = task_image(loaded, name, task, service)?;
    let build = image::builder_of(&image::stage_images(loaded), &image).map(|b| b.request.clone());
    let mut container = match service {
        Some((service_name, service)) => container::service(loaded, service_name, service, ""),
        None => ContainerSpec {
            networks: vec![NetworkAttachment {
                network: container::default_network(loaded),
                aliases: Vec::new(),
                ipv4_address: None,
                ipv6_address: None,
            }],
            ..Default::default()
        },
    };
    adjust(loaded, &mut container, name, task, service, args, short_id);
    // A service's fixed addresses are its own: a task beside it takes any.
    for network in &mut container.networks {
        network.ipv4_address = None;
        network.ipv6_address = None;
    }
    container.image = image;
    Ok(TaskPlan {
        task: name.to_string(),
        container,
        build,
        volumes: owned_volumes(loaded, task, service),
        networks: owned_networks(loaded, service),
        data_containers: used_data_containers(loaded, task, service),
        stdin_file: task
            .stdin
            .as_ref()
            .map(|file| container::absolute_path(&loaded.dir, file)),
        pull_policy: match service {
            Some((_, service)) if task.image.is_none() && task.build.is_none() => {
                service.pull_policy.unwrap_or(PullPolicy::Missing)
            }
            _ => PullPolicy::Missing,
        },
    })
}

/// A service's `pre_start` steps, resolved: each a one-off container named
/// `{container}--pre_start-{n}`, a copy of the service (same networks, volumes and
/// environment, the step's own image, command, user, working directory and added
/// environment), or the named task's own container. A step whose task cannot be planned
/// (validation reports it) is left out.
pub fn pre_start_steps(loaded: &LoadedStack, name: &str, service: &Service) -> Vec<StepSpec> {
    let base = names::container(&loaded.stage, &loaded.project, name);
    let mut steps = Vec::new();
    for (index, step) in service.pre_start.iter().enumerate() {
        let id = format!("pre_start-{}", index + 1);
        let (label, planned) = match &step.task {
            Some(task_name) => {
                let Some(Task::Container(task)) = loaded.stack.tasks.get(task_name) else {
                    continue;
                };
                (
                    format!("task {task_name}"),
                    plan_container(loaded, task_name, task, &[], &id),
                )
            }
            None => {
                let task = ContainerTask {
                    service: Some(name.to_string()),
                    image: step.image.clone(),
                    command: step.command.clone(),
                    environment: step.environment.clone(),
                    working_dir: step.working_dir.clone(),
                    user: step.user.clone(),
                    ..Default::default()
                };
                let label = match (&step.command, &step.image) {
                    (Some(command), _) => command.join(" "),
                    (None, Some(image)) => format!("image {image}"),
                    (None, None) => String::new(),
                };
                let planned = plan_container(loaded, name, &task, &[], &id).map(|mut plan| {
                    if step.image.is_some() {
                        // Another image: its own entrypoint, and its own command unless
                        // the step gives one.
                        plan.container.entrypoint = None;
                        if step.command.is_none() {
                            plan.container.command = None;
                        }
                    }
                    plan
                });
                (label, planned)
            }
        };
        let Ok(mut planned) = planned else {
            continue;
        };
        planned.container.name = format!("{base}--{id}");
        planned.container.pre_start.clear();
        steps.push(StepSpec {
            label,
            container: planned.container,
            privileged: step.privileged,
            build: planned.build,
        });
    }
    steps
}

/// `stackctl run SERVICE [-- CMD…]`: a one-off copy of the service, planned as a task with
/// `service: SERVICE` and nothing of its own (so the same rules apply: no ports, healthcheck,
/// restart policy or network aliases), named `…--run-SERVICE-ID`. `args` replace its command.
pub fn plan_run(
    loaded: &LoadedStack,
    service: &str,
    args: &[String],
    short_id: &str,
) -> Result<TaskPlan, UsageError> {
    let task = ContainerTask {
        service: Some(service.to_string()),
        ..Default::default()
    };
    let mut plan = plan_container(loaded, service, &task, args, short_id)?;
    plan.container.name = names::run_container(&loaded.stage, &loaded.project, service, short_id);
    Ok(plan)
}

/// The stage's data containers a task's container takes volumes from: its service's and
/// its own `volumes_from` entries that name one.
fn used_data_containers(
    loaded: &LoadedStack,
    task: &ContainerTask,
    service: Option<(&str, &Service)>,
) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let entries = service
        .iter()
        .flat_map(|(_, service)| service.volumes_from.iter())
        .chain(task.volumes_from.iter());
    for entry in entries {
        let target = container::volumes_from_target(entry);
        if loaded.stack.data_containers.contains_key(target) && !keys.iter().any(|k| k == target) {
            keys.push(target.to_string());
        }
    }
    keys
}

/// The service a task runs a copy of, checked.
fn task_service<'a>(
    loaded: &'a LoadedStack,
    name: &str,
    task: &ContainerTask,
) -> Result<Option<(&'a str, &'a Service)>, UsageError> {
    let Some(service_name) = &task.service else {
        return Ok(None);
    };
    let stack = &loaded.stack;
    match stack.services.get_key_value(service_name) {
        Some((key, service)) => Ok(Some((key.as_str(), service))),
        None => Err(UsageError::new(format!(
            "task `{name}` uses service `{service_name}`, which is not in the stack file"
        ))
        .with_hint(did_you_mean_hint(
            service_name,
            stack.services.keys().map(String::as_str),
        ))),
    }
}

/// The image a task runs: its own, else its service's; tags as `image` names them.
fn task_image(
    loaded: &LoadedStack,
    name: &str,
    task: &ContainerTask,
    service: Option<(&str, &Service)>,
) -> Result<String, UsageError> {
    let (owner, owner_name, image) = match (&task.image, &task.build, service) {
        (Some(_), _, _) | (None, Some(_), _) => (Owner::Task, name, task.image.as_deref()),
        (None, None, Some((service_name, service))) => {
            if service.image.is_none() && service.build.is_none() {
                return Err(UsageError::new(format!(
                    "task `{name}`: service `{service_name}` has neither `image:` nor `build:`"
                )));
            }
            (Owner::Service, service_name, service.image.as_deref())
        }
        (None, None, None) => {
            return Err(UsageError::new(format!(
                "task `{name}` has no `service:`, `image:` or `build:`"
            ))
            .with_hint("give it `service: SERVICE` to run in a copy of that service, or `image:`"))
        }
    };
    Ok(image::image_tag(loaded, owner, owner_name, image))
}

/// Turn a service's spec (or a bare one) into the task's one-off container.
fn adjust(
    loaded: &LoadedStack,
    spec: &mut ContainerSpec,
    name: &str,
    task: &ContainerTask,
    service: Option<(&str, &Service)>,
    args: &[String],
    short_id: &str,
) {
    let (stage, project) = (loaded.stage.as_str(), loaded.project.as_str());
    spec.name = names::task_container(stage, project, name, short_id);
    spec.image_id = String::new();
    // What only the service's own container has.
    spec.ports.clear();
    spec.healthcheck = None;
    spec.restart = None;
    spec.hostname = None;
    for network in &mut spec.networks {
        network.aliases.clear();
    }
    let mut environment: IndexMap<String, Option<String>> = IndexMap::new();
    if let Some((_, service)) = service {
        environment.extend(service.environment.clone());
    }
    environment.extend(task.environment.clone());
    spec.env = env_list(&environment);
    let (binds, anonymous) = container::mounts(loaded, &task.volumes);
    spec.binds.extend(binds);
    spec.anonymous_volumes.extend(anonymous);
    spec.tmpfs
        .extend(container::tmpfs_mounts(&[], &task.volumes));
    spec.volumes_from.extend(
        task.volumes_from
            .iter()
            .map(|entry| container::volumes_from_name(loaded, entry)),
    );
    if !args.is_empty() {
        spec.command = Some(args.to_vec());
    } else if task.command.is_some() {
        spec.command = task.command.clone();
    }
    if task.entrypoint.is_some() {
        spec.entrypoint = task.entrypoint.clone();
    }
    if task.working_dir.is_some() {
        spec.working_dir = task.working_dir.clone();
    }
    if task.user.is_some() {
        spec.user = task.user.clone();
    }
    spec.owner_labels = names::owner_labels(stage, project, names::role::TASK)
        .into_iter()
        .collect();
    spec.owner_labels
        .insert(names::TASK.to_string(), name.to_string());
}

/// The stage's own named volumes the container mounts, to create when missing.
fn owned_volumes(
    loaded: &LoadedStack,
    task: &ContainerTask,
    service: Option<(&str, &Service)>,
) -> Vec<(String, Option<String>)> {
    let stack = &loaded.stack;
    let mut volumes: Vec<(String, Option<String>)> = Vec::new();
    let mounted = service
        .map(|(_, s)| s.volumes.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(task.volumes.iter());
    for mount in mounted {
        let (MountKind::Named, Some(key)) = (mount.kind, &mount.source) else {
            continue;
        };
        let def = stack.volumes.get(key);
        if def.is_some_and(|d| d.external) {
            continue;
        }
        let engine_name = container::volume_name(loaded, key);
        if !volumes.iter().any(|(name, _)| name == &engine_name) {
            volumes.push((engine_name, def.and_then(|d| d.driver.clone())));
        }
    }
    volumes
}

/// The stage's own networks the container joins (the stage network first), to create when
/// missing; external ones are not listed.
fn owned_networks(loaded: &LoadedStack, service: Option<(&str, &Service)>) -> Vec<String> {
    let mut keys = vec!["default"];
    if let Some((_, service)) = service {
        keys.extend(
            service
                .networks
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "default"),
        );
    }
    keys.into_iter()
        .filter(|key| !loaded.stack.networks.get(*key).is_some_and(|d| d.external))
        .map(|key| container::network_name(loaded, key))
        .collect()
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A built-in: `up`, `down`, `build`, `wait`.
    Builtin(String),
    /// A container task, by name.
    Task(String),
}

/// Flatten a sequence into the steps it runs, expanding nested sequences; a cycle or an
/// unknown name is an error naming it.
pub fn flatten_steps(stack: &Stack, name: &str) -> Result<Vec<Step>, UsageError> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    flatten_into(stack, name, &mut path, &mut out)?;
    Ok(out)
}

fn flatten_into(
    stack: &Stack,
    name: &str,
    path: &mut Vec<String>,
    out: &mut Vec<Step>,
) -> Result<(), UsageError> {
    if path.iter().any(|p| p == name) {
        path.push(name.to_string());
        return Err(UsageError::new(format!(
            "task sequence loops: {}",
            path.iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(" → ")
        )));
    }
    let Some(Task::Steps(sequence)) = stack.tasks.get(name) else {
        out.push(Step::Task(name.to_string()));
        return Ok(());
    };
    path.push(name.to_string());
    for step in &sequence.steps {
        match stack.tasks.get(step) {
            Some(Task::Steps(_)) => flatten_into(stack, step, path, out)?,
            Some(Task::Container(_)) => out.push(Step::Task(step.clone())),
            None if BUILTIN_STEPS.contains(&step.as_str()) => out.push(Step::Builtin(step.clone())),
            None => {
                let candidates = stack
                    .tasks
                    .keys()
                    .map(String::as_str)
                    .chain(BUILTIN_STEPS.iter().copied());
                return Err(UsageError::new(format!(
                    "task `{name}` has a step `{step}` that is neither a task nor a built-in step"
                ))
                .with_hint(did_you_mean_hint(step, candidates)));
            }
        }
    }
    path.pop();
    Ok(())
}

/// The closest candidate to `name`, if one is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn did_you_mean_hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    match did_you_mean(name, candidates.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if candidates.is_empty() => "the stack file defines none".to_string(),
        None => format!(
            "known: {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(yaml: &str) -> LoadedStack {
        crate::plan::test_stack(yaml, "app", "dev", "/srv/app")
    }

    fn container_task(loaded: &LoadedStack, name: &str) -> ContainerTask {
        match loaded.stack.tasks.get(name) {
            Some(Task::Container(task)) => task.clone(),
            other => panic!("not a container task: {other:?}"),
        }
    }

    const STACK: &str = r#"
services:
  api:
    build: { context: api, args: { MODE: prod } }
    environment: { MODE: serve, DB: postgres }
    ports: ["5000:5000"]
    volumes: ["./logs:/app/logs", "cache:/cache:ro", "/scratch"]
    volumes_from: [api_data]
    healthcheck: { test: [CMD, "true"] }
    restart: always
    command: [serve]
    working_dir: /app
data_containers:
  api_data: { image: busybox, volumes: [/data] }
volumes:
  cache: {}
  shared: { external: true, name: team-shared }
tasks:
  migrate:
    service: api
    command: [python, manage.py, migrate]
    environment: { MODE: migrate }
    volumes: ["shared:/shared"]
  import: { image: "db:1", stdin: dumps/x.sql }
  init: { steps: [up, migrate, import, wait] }
"#;

    #[test]
    fn service_task_inherits_everything_but_ports_health_and_restart() {
        let loaded = loaded(STACK);
        let task = container_task(&loaded, "migrate");
        let plan = plan_container(&loaded, "migrate", &task, &[], "abc123").expect("plan");
        let c = &plan.container;
        assert_eq!(c.name, "dev-app--task-migrate-abc123");
        assert_eq!(c.image, "app/api:dev");
        assert_eq!(
            c.command.as_deref(),
            Some(&["python".to_string(), "manage.py".into(), "migrate".into()][..])
        );
        assert_eq!(
            c.env,
            vec!["MODE=migrate".to_string(), "DB=postgres".into()]
        );
        assert_eq!(
            c.binds,
            vec![
                "/srv/app/logs:/app/logs".to_string(),
                "dev-app_cache:/cache:ro".into(),
                "team-shared:/shared".into()
            ]
        );
        assert_eq!(c.anonymous_volumes, vec!["/scratch".to_string()]);
        assert_eq!(c.volumes_from, vec!["dev-app--api_data".to_string()]);
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.networks[0].network, "dev-app_default");
        assert!(c.networks[0].aliases.is_empty(), "no alias of the service");
        assert!(c.ports.is_empty() && c.healthcheck.is_none() && c.restart.is_none());
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        let labels = c.labels();
        assert_eq!(
            labels.get("io.stackctl.role").map(String::as_str),
            Some("task")
        );
        assert_eq!(labels.get(names::TASK).map(String::as_str), Some("migrate"));
        assert_eq!(labels.get(names::SERVICE), None);
        // The external volume is not ours to create; the stage's own is.
        assert_eq!(plan.volumes, vec![("dev-app_cache".to_string(), None)]);
        assert_eq!(plan.networks, vec!["dev-app_default".to_string()]);
        let build = plan.build.expect("the service's build");
        assert_eq!(build.tag, "app/api:dev");
        assert_eq!(build.context, PathBuf::from("/srv/app/api"));
        assert_eq!(build.args.get("MODE").map(String::as_str), Some("prod"));
    }

    #[test]
    fn args_replace_the_command_and_stdin_resolves_against_the_project() {
        let loaded = loaded(STACK);
        let task = container_task(&loaded, "import");
        let args = vec!["wc".to_string(), "-c".into()];
        let plan = plan_container(&loaded, "import", &task, &args, "0f0f0f").expect("plan");
        assert_eq!(plan.container.command, Some(args));
        assert_eq!(plan.container.image, "db:1");
        assert!(plan.build.is_none());
        assert_eq!(plan.stdin_file, Some(PathBuf::from("/srv/app/dumps/x.sql")));
    }

    #[test]
    fn sequences_flatten_with_builtins() {
        let loaded = loaded(STACK);
        let steps = flatten_steps(&loaded.stack, "init").expect("steps");
        assert_eq!(
            steps,
            vec![
                Step::Builtin("up".into()),
                Step::Task("migrate".into()),
                Step::Task("import".into()),
                Step::Builtin("wait".into()),
            ]
        );
    }

    #[test]
    fn a_looping_sequence_is_an_error() {
        let loaded = loaded("tasks:\n  a: { steps: [b] }\n  b: { steps: [a] }\n");
        let err = flatten_steps(&loaded.stack, "a").expect_err("loop");
        assert_eq!(err.message, "task sequence loops: `a` → `b` → `a`");
    }

    #[test]
    fn an_unknown_step_suggests_a_name() {
        let loaded = loaded("tasks:\n  migrate: { image: x }\n  init: { steps: [migrat] }\n");
        let err = flatten_steps(&loaded.stack, "init").expect_err("unknown");
        assert_eq!(err.hint.as_deref(), Some("did you mean `migrate`?"));
    }

    #[test]
    fn issue12_run_copies_the_service_with_its_own_name_and_no_ports() {
        let loaded = loaded(STACK);
        let args = vec!["sh".to_string()];
        let plan = plan_run(&loaded, "api", &args, "0a1b2c3d").expect("plan");
        let c = &plan.container;
        assert_eq!(c.name, "dev-app--run-api-0a1b2c3d");
        assert_eq!(c.image, "app/api:dev");
        assert_eq!(c.command, Some(args));
        assert_eq!(c.env, vec!["MODE=serve".to_string(), "DB=postgres".into()]);
        assert!(c.ports.is_empty() && c.healthcheck.is_none() && c.restart.is_none());
        assert_eq!(c.volumes_from, vec!["dev-app--api_data".to_string()]);
        assert_eq!(
            c.labels().get("io.stackctl.role").map(String::as_str),
            Some("task")
        );
        let plain = plan_run(&loaded, "api", &[], "0a1b2c3d").expect("plan");
        assert_eq!(plain.container.command, Some(vec!["serve".to_string()]));
        assert!(plan.build.is_some(), "built when missing, as for a task");
    }

    #[test]
    fn short_ids_are_eight_hex_digits() {
        let id = short_id();
        assert_eq!(id.len(), 8);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn defect1_a_task_of_a_service_running_another_services_tag_gets_that_build() {
        let loaded = loaded(
            "services:\n  api: { image: app/bb:dev }\n  db: { build: ./db, image: app/bb:dev }\ntasks:\n  migrate: { service: api, command: [true] }\n",
        );
        let task = container_task(&loaded, "migrate");
        let plan = plan_container(&loaded, "migrate", &task, &[], "0a0a0a0a").expect("plan");
        assert_eq!(plan.container.image, "app/bb:dev");
        let build = plan.build.expect("db's build");
        assert_eq!(build.context, PathBuf::from("/srv/app/db"));
    }
}
