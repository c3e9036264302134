//! What a container of this stage should look like, as plain data: the resolved form of a
//! service or data container (names of volumes, networks and data containers already
//! stage-qualified, bind sources absolute), and its config hash.
//!
//! Pure: no engine calls. `plan::up` compares these specs with what the engine reports, the
//! Docker target (`apply::docker`) turns one into the engine's create request, and one-off
//! tasks (`plan::task`) take [`service`]'s spec and adjust it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::names;
use crate::stack::model::{MountKind, Service, VolumeMount};
use crate::stack::LoadedStack;

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub container_port: u16,
    pub protocol: String,
    /// Empty: every interface, as in Compose.
    pub host_ip: String,
    /// Empty: an ephemeral port chosen by the engine.
    pub host_port: String,
}

impl PortSpec {
    /// `8080/tcp`, the key Docker uses for exposed ports and bindings.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// A healthcheck with durations in nanoseconds, as the engine wants them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSpec {
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
}

/// One network a container joins, by engine name, with its aliases there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkAttachment {
    pub network: String,
    pub aliases: Vec<String>,
}

/// Everything that reaches one container. Every field except `name`, `role_labels` and
/// `image` (the reference; its resolved ID is `image_id`) is covered by the config hash.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContainerSpec {
    /// The container name (`{stage}-{project}--{service}`).
    pub name: String,
    /// The image reference the container is created from.
    pub image: String,
    /// The image ID it resolves to (empty when not known yet, e.g. before a build).
    pub image_id: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, sorted by key.
    pub env: Vec<String>,
    pub ports: Vec<PortSpec>,
    /// Named volumes (stage names) and bind mounts (absolute sources): `SOURCE:TARGET[:ro]`.
    pub binds: Vec<String>,
    /// Anonymous volumes: container paths.
    pub anonymous_volumes: Vec<String>,
    /// Container names, with `:ro` when read-only.
    pub volumes_from: Vec<String>,
    /// The first is the one the container is created on; the others are connected after.
    pub networks: Vec<NetworkAttachment>,
    pub healthcheck: Option<HealthSpec>,
    pub restart: Option<String>,
    /// The user's labels (ownership labels are added by [`ContainerSpec::labels`]).
    pub user_labels: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub init: Option<bool>,
    pub stop_signal: Option<String>,
    pub stop_timeout_s: Option<i64>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub hostname: Option<String>,
    pub extra_hosts: Vec<String>,
    /// Ownership labels (project, stage, role, service).
    pub owner_labels: BTreeMap<String, String>,
    /// A service's `pre_start` steps (hashed as one field, only when there are some: a
    /// service without steps keeps the hash it always had).
    pub pre_start: Vec<StepSpec>,
}

/// One `pre_start` step, resolved: the one-off container it runs in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSpec {
    /// What the user calls it: `task migrate` or the command as written.
    pub label: String,
    pub container: ContainerSpec,
    pub privileged: bool,
    /// How to build the step's image when it is missing (a task with its own `build:`).
    #[serde(skip)]
    pub build: Option<super::image::ImageSpec>,
}

impl StepSpec {
    /// What the config hash covers of a step: its image reference, privileges, and the
    /// hashed fields of its container.
    fn hashed(&self) -> serde_json::Value {
        serde_json::json!({
            "label": self.label,
            "image": self.container.image,
            "privileged": self.privileged,
            "container": self.container.hashed_fields(),
        })
    }
}

/// The engine name of a stack network (`default` is the stage network).
pub fn network_name(loaded: &LoadedStack, key: &str) -> String {
    match loaded.stack.networks.get(key) {
        Some(def) if def.external => def.name.clone().unwrap_or_else(|| key.to_string()),
        Some(def) if def.name.is_some() => def.name.clone().unwrap_or_default(),
        _ => names::network(&loaded.stage, &loaded.project, key),
    }
}

/// The engine name of a stack volume.
pub fn volume_name(loaded: &LoadedStack, key: &str) -> String {
    match loaded.stack.volumes.get(key) {
        Some(def) if def.external => def.name.clone().unwrap_or_else(|| key.to_string()),
        Some(def) if def.name.is_some() => def.name.clone().unwrap_or_default(),
        _ => names::volume(&loaded.stage, &loaded.project, key),
    }
}

/// The stage network every service joins.
pub fn default_network(loaded: &LoadedStack) -> String {
    network_name(loaded, "default")
}

/// The image reference of a service: its `image:`, else `{project}/{service}:{stage}`.
pub fn service_image(loaded: &LoadedStack, name: &str, service: &Service) -> String {
    service
        .image
        .clone()
        .unwrap_or_else(|| names::image(&loaded.stage, &loaded.project, name))
}

/// The image reference of a data container.
pub fn data_image(loaded: &LoadedStack, name: &str) -> String {
    loaded
        .stack
        .data_containers
        .get(name)
        .and_then(|d| d.image.clone())
        .unwrap_or_else(|| names::image(&loaded.stage, &loaded.project, name))
}

/// The engine name of what a `volumes_from` entry points at: a data container or a service
/// container of this stage, keeping a `:ro`/`:rw` suffix.
pub fn volumes_from_name(loaded: &LoadedStack, entry: &str) -> String {
    let (target, mode) = match entry.rsplit_once(':') {
        Some((target, mode)) if mode == "ro" || mode == "rw" => (target, Some(mode)),
        _ => (entry, None),
    };
    let target = target.strip_prefix("container:").unwrap_or(target);
    let name = if loaded.stack.data_containers.contains_key(target) {
        names::data_container(&loaded.stage, &loaded.project, target)
    } else if loaded.stack.services.contains_key(target) {
        names::container(&loaded.stage, &loaded.project, target)
    } else {
        target.to_string()
    };
    match mode {
        Some("ro") => format!("{name}:ro"),
        _ => name,
    }
}

/// The name part of a `volumes_from` entry (`postgres_data:ro` → `postgres_data`).
pub fn volumes_from_target(entry: &str) -> &str {
    let target = match entry.rsplit_once(':') {
        Some((target, mode)) if mode == "ro" || mode == "rw" => target,
        _ => entry,
    };
    target.strip_prefix("container:").unwrap_or(target)
}

/// The resolved mounts of a list of volume entries: (binds, anonymous volumes).
pub fn mounts(loaded: &LoadedStack, volumes: &[VolumeMount]) -> (Vec<String>, Vec<String>) {
    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    for mount in volumes {
        let suffix = if mount.read_only { ":ro" } else { "" };
        match (mount.kind, &mount.source) {
            (MountKind::Named, Some(source)) => binds.push(format!(
                "{}:{}{suffix}",
                volume_name(loaded, source),
                mount.target
            )),
            (MountKind::Bind, Some(source)) => binds.push(format!(
                "{}:{}{suffix}",
                absolute_path(&loaded.dir, source).display(),
                mount.target
            )),
            _ => anonymous.push(mount.target.clone()),
        }
    }
    (binds, anonymous)
}

/// A path of the stack file made absolute (bind sources, build contexts, `stdin:` files): `~`
/// is the home directory, relative paths resolve against the project directory; `.` and `..`
/// are folded lexically so equal paths hash equally.
pub fn absolute_path(dir: &Path, source: &str) -> PathBuf {
    let raw = if let Some(rest) = source.strip_prefix("~/") {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(rest)
    } else if Path::new(source).is_absolute() {
        PathBuf::from(source)
    } else {
        dir.join(source)
    };
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn nanos(duration: Option<crate::stack::model::DurationSpec>) -> Option<i64> {
    duration.map(|d| d.0.as_nanos().min(i64::MAX as u128) as i64)
}

/// The spec of a service's container. `image_id` is the ID its image resolves to (empty
/// when unknown).
pub fn service(
    loaded: &LoadedStack,
    name: &str,
    service: &Service,
    image_id: &str,
) -> ContainerSpec {
    let (binds, anonymous_volumes) = mounts(loaded, &service.volumes);
    let mut env: Vec<(String, String)> = service
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect();
    env.sort();
    let ports = service
        .ports
        .iter()
        .map(|p| PortSpec {
            container_port: p.container_port,
            protocol: p.protocol.clone(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
            host_port: p.host_port.map(|p| p.to_string()).unwrap_or_default(),
        })
        .collect();
    let mut networks = vec![NetworkAttachment {
        network: default_network(loaded),
        aliases: vec![name.to_string()],
    }];
    for (key, attachment) in &service.networks {
        let mut aliases = vec![name.to_string()];
        aliases.extend(attachment.aliases.iter().cloned());
        if key == "default" {
            networks[0].aliases = aliases;
        } else {
            networks.push(NetworkAttachment {
                network: network_name(loaded, key),
                aliases,
            });
        }
    }
    let healthcheck = service.healthcheck.as_ref().map(|h| {
        if h.disable {
            HealthSpec {
                test: vec!["NONE".to_string()],
                interval_ns: None,
                timeout_ns: None,
                retries: None,
                start_period_ns: None,
            }
        } else {
            HealthSpec {
                test: h.test.clone(),
                interval_ns: nanos(h.interval),
                timeout_ns: nanos(h.timeout),
                retries: h.retries.map(i64::from),
                start_period_ns: nanos(h.start_period),
            }
        }
    });
    // `on-failure:5` keeps its count (the engine's maximum retry count).
    let restart = service.restart.map(|r| r.to_string());
    let mut owner_labels: BTreeMap<String, String> =
        names::owner_labels(&loaded.stage, &loaded.project, names::role::SERVICE)
            .into_iter()
            .collect();
    owner_labels.insert(names::SERVICE.to_string(), name.to_string());
    ContainerSpec {
        name: names::container(&loaded.stage, &loaded.project, name),
        image: service_image(loaded, name, service),
        image_id: image_id.to_string(),
        command: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ports,
        binds,
        anonymous_volumes,
        volumes_from: service
            .volumes_from
            .iter()
            .map(|v| volumes_from_name(loaded, v))
            .collect(),
        networks,
        healthcheck,
        restart,
        user_labels: service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        working_dir: service.working_dir.clone(),
        user: service.user.clone(),
        init: service.init,
        stop_signal: service.stop_signal.clone(),
        stop_timeout_s: service
            .stop_grace_period
            .map(|d| d.0.as_secs_f64().ceil() as i64),
        memory: service.mem_limit.map(|m| m.0),
        nano_cpus: service.cpus.map(|c| (c * 1e9).round() as i64),
        hostname: service.hostname.clone(),
        extra_hosts: service.extra_hosts.clone(),
        owner_labels,
        pre_start: Vec::new(),
    }
}

/// The spec of a data container (created, never started).
pub fn data_container(loaded: &LoadedStack, name: &str, image_id: &str) -> Option<ContainerSpec> {
    let data = loaded.stack.data_containers.get(name)?;
    let (binds, anonymous_volumes) = mounts(loaded, &data.volumes);
    let mut owner_labels: BTreeMap<String, String> =
        names::owner_labels(&loaded.stage, &loaded.project, names::role::DATA)
            .into_iter()
            .collect();
    owner_labels.insert(names::SERVICE.to_string(), name.to_string());
    Some(ContainerSpec {
        name: names::data_container(&loaded.stage, &loaded.project, name),
        image: data_image(loaded, name),
        image_id: image_id.to_string(),
        command: data.command.clone(),
        entrypoint: None,
        env: Vec::new(),
        ports: Vec::new(),
        binds,
        anonymous_volumes,
        volumes_from: Vec::new(),
        networks: Vec::new(),
        healthcheck: None,
        restart: None,
        user_labels: data
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        working_dir: None,
        user: None,
        init: None,
        stop_signal: None,
        stop_timeout_s: None,
        memory: None,
        nano_cpus: None,
        hostname: None,
        extra_hosts: Vec::new(),
        owner_labels,
        pre_start: Vec::new(),
    })
}

impl ContainerSpec {
    /// Each hashed field by the name the user knows it by, in a fixed order, with its
    /// canonical JSON form.
    pub fn hashed_fields(&self) -> Vec<(&'static str, String)> {
        fn json<T: Serialize>(value: &T) -> String {
            serde_json::to_string(value).unwrap_or_default()
        }
        let mut volumes = self.binds.clone();
        volumes.extend(self.anonymous_volumes.iter().cloned());
        let mut fields = vec![
            ("image", json(&self.image_id)),
            ("command", json(&self.command)),
            ("entrypoint", json(&self.entrypoint)),
            ("environment", json(&self.env)),
            ("ports", json(&self.ports)),
            ("volumes", json(&volumes)),
            ("volumes_from", json(&self.volumes_from)),
            ("networks", json(&self.networks)),
            ("healthcheck", json(&self.healthcheck)),
            ("restart", json(&self.restart)),
            ("labels", json(&self.user_labels)),
            ("working_dir", json(&self.working_dir)),
            ("user", json(&self.user)),
            ("init", json(&self.init)),
            ("stop_signal", json(&self.stop_signal)),
            ("stop_grace_period", json(&self.stop_timeout_s)),
            ("mem_limit", json(&self.memory)),
            ("cpus", json(&self.nano_cpus)),
            ("hostname", json(&self.hostname)),
            ("extra_hosts", json(&self.extra_hosts)),
        ];
        if !self.pre_start.is_empty() {
            let steps: Vec<serde_json::Value> =
                self.pre_start.iter().map(StepSpec::hashed).collect();
            fields.push(("pre_start", json(&steps)));
        }
        fields
    }

    /// sha256 over every hashed field, in canonical order.
    pub fn config_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (field, value) in self.hashed_fields() {
            hasher.update(field.as_bytes());
            hasher.update(b"=");
            hasher.update(value.as_bytes());
            hasher.update(b"\n");
        }
        hex(&hasher.finalize())
    }

    /// The value of `names::CONFIG_FIELDS`: `field:shorthash` pairs, comma-separated.
    pub fn field_hashes(&self) -> String {
        self.hashed_fields()
            .into_iter()
            .map(|(field, value)| format!("{field}:{}", &hex(&Sha256::digest(value))[..10]))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every label the container carries: the user's, ownership, and the config hashes.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.user_labels.clone();
        labels.extend(self.owner_labels.clone());
        labels.insert(names::CONFIG_HASH.to_string(), self.config_hash());
        labels.insert(names::CONFIG_FIELDS.to_string(), self.field_hashes());
        labels
    }
}

/// The fields whose short hashes differ between two `names::CONFIG_FIELDS` values, in the
/// canonical order. Empty when the old label is missing or unreadable.
pub fn changed_fields(old: &str, new: &str) -> Vec<String> {
    let parse = |text: &str| -> BTreeMap<String, String> {
        text.split(',')
            .filter_map(|pair| pair.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let old = parse(old);
    new.split(',')
        .filter_map(|pair| pair.split_once(':'))
        .filter(|(field, hash)| old.get(*field).map(String::as_str) != Some(*hash))
        .map(|(field, _)| field.to_string())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(yaml: &str) -> ContainerSpec {
        let loaded = crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo");
        service(&loaded, "api", &loaded.stack.services["api"], "sha256:abc")
    }

    const API: &str = "services:\n  api:\n    image: busybox:latest\n    environment: { B: \"2\", A: \"1\", UNSET: }\n    cpus: 0.5\n";

    #[test]
    fn config_hash_is_canonical() {
        let one = spec_of(API);
        let reordered = spec_of(&API.replace(
            r#"{ B: "2", A: "1", UNSET: }"#,
            r#"{ A: "1", UNSET: , B: "2" }"#,
        ));
        assert_eq!(one.config_hash(), reordered.config_hash());
        let changed = spec_of(&API.replace("cpus: 0.5", "cpus: 1"));
        assert_ne!(one.config_hash(), changed.config_hash());
        assert_eq!(
            changed_fields(&one.field_hashes(), &changed.field_hashes()),
            vec!["cpus".to_string()]
        );
    }

    fn with_steps(yaml: &str) -> ContainerSpec {
        let loaded = crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo");
        let api = &loaded.stack.services["api"];
        let mut spec = service(&loaded, "api", api, "sha256:abc");
        spec.pre_start = crate::plan::task::pre_start_steps(&loaded, "api", api);
        spec
    }

    const STEPS: &str = "services:\n  api:\n    image: busybox:latest\n    volumes: [\"data:/data\"]\n    environment: { A: \"1\" }\n    pre_start:\n      - task: migrate\n      - command: [sh, -c, \"echo one\"]\n        environment: { B: \"2\" }\nvolumes: { data: {} }\ntasks:\n  migrate: { service: api, command: [migrate] }\n";

    #[test]
    fn pre_start_steps_are_copies_of_the_service_and_part_of_its_hash() {
        let spec = with_steps(STEPS);
        assert_eq!(spec.pre_start.len(), 2);
        let (task, command) = (&spec.pre_start[0], &spec.pre_start[1]);
        assert_eq!(task.label, "task migrate");
        assert_eq!(task.container.command, Some(vec!["migrate".to_string()]));
        assert_eq!(command.label, "sh -c echo one");
        assert_eq!(command.container.name, "dev-demo--api--pre_start-2");
        assert_eq!(
            command.container.env,
            vec!["A=1".to_string(), "B=2".to_string()]
        );
        assert_eq!(
            command.container.binds,
            vec!["dev-demo_data:/data".to_string()]
        );
        assert!(command.container.ports.is_empty() && command.container.healthcheck.is_none());
        // A service without steps keeps the hash it always had; a changed step changes it.
        let plain = spec_of(API);
        assert!(plain.hashed_fields().iter().all(|(f, _)| *f != "pre_start"));
        let changed = with_steps(&STEPS.replace("echo one", "echo two"));
        assert_ne!(spec.config_hash(), changed.config_hash());
        assert_eq!(
            changed_fields(&spec.field_hashes(), &changed.field_hashes()),
            vec!["pre_start".to_string()]
        );
    }
}
