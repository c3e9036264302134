//! A Swarm service as planned: its container half (from the service's [`ContainerSpec`]:
//! image, command, environment, mounts, files, networks) and its non-container half, the
//! [`DeploySpec`] (mode, replicas, placement, resources, restart policy, update and rollback
//! config, endpoint mode, published ports). Plain data: the engine turns it into its own spec
//! and the hash the service and its containers carry; the per-field hashes
//! ([`ServiceWant::field_hashes`]) give an update its reasons, as for a container.
//!
//! [`ContainerSpec`]: super::container::ContainerSpec

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::container;
use crate::names;
use crate::stack::model::{MountKind, RestartPolicy, Service, UpdateConfig};
use crate::stack::LoadedStack;

fn service_name(loaded: &LoadedStack, service: &str) -> String {
    names::container(&loaded.stage, &loaded.project, service)
}

fn owner(loaded: &LoadedStack, role: &str) -> BTreeMap<String, String> {
    names::owner_labels(&loaded.stage, &loaded.project, role)
        .into_iter()
        .collect()
}

/// A mount of a service's tasks.
#[derive(Debug, Clone)]
pub enum MountWant {
    /// A named volume (node-local), with the labels it is created with.
    Volume {
        source: String,
        target: String,
        read_only: bool,
        labels: BTreeMap<String, String>,
    },
    /// An anonymous volume.
    Anonymous {
        target: String,
    },
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
    },
}

/// A secret or config a service's tasks get.
#[derive(Debug, Clone)]
pub struct FileWant {
    /// `secret` or `config`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    /// Absolute path in the container.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A healthcheck, durations in nanoseconds.
#[derive(Debug, Clone)]
pub struct HealthWant {
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
}

/// A published port.
#[derive(Debug, Clone)]
pub struct PortWant {
    pub target: u16,
    pub published: Option<u16>,
    pub protocol: String,
    /// Published on the node running the task, not through the routing mesh.
    pub host_mode: bool,
}

/// An update or rollback policy.
#[derive(Debug, Clone, Default)]
pub struct UpdateWant {
    pub parallelism: Option<u64>,
    pub delay_ns: Option<i64>,
    pub failure_action: Option<String>,
    pub monitor_ns: Option<i64>,
    pub max_failure_ratio: Option<f64>,
    pub order: Option<String>,
}

/// Everything a service of the stage should be.
#[derive(Debug, Clone, Default)]
pub struct ServiceWant {
    pub name: String,
    /// Labels of the service (`deploy.labels` and ownership).
    pub labels: BTreeMap<String, String>,
    /// Labels of its containers (`labels` and ownership).
    pub container_labels: BTreeMap<String, String>,
    /// Pinned to a digest.
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub init: Option<bool>,
    pub tty: bool,
    pub stdin_open: bool,
    pub read_only: bool,
    pub stop_signal: Option<String>,
    pub stop_grace_ns: Option<i64>,
    pub health: Option<HealthWant>,
    pub extra_hosts: Vec<String>,
    pub mounts: Vec<MountWant>,
    pub files: Vec<FileWant>,
    /// Network names with the aliases on each.
    pub networks: Vec<(String, Vec<String>)>,
    /// The non-container half: how Swarm runs it.
    pub deploy: DeploySpec,
}

/// The non-container half of a service: how many tasks, where, how they restart, update and
/// roll back, and how the service is reached.
#[derive(Debug, Clone, Default)]
pub struct DeploySpec {
    /// `replicated`, `global`, `replicated-job`, `global-job`.
    pub mode: String,
    pub replicas: u64,
    pub endpoint_dnsrr: bool,
    pub ports: Vec<PortWant>,
    pub constraints: Vec<String>,
    pub preferences: Vec<String>,
    pub max_replicas_per_node: Option<u64>,
    pub nano_cpus: Option<i64>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    pub reserve_nano_cpus: Option<i64>,
    pub reserve_memory: Option<i64>,
    /// `none`, `on-failure`, `any`.
    pub restart_condition: Option<String>,
    pub restart_max_attempts: Option<u64>,
    pub restart_delay_ns: Option<i64>,
    pub restart_window_ns: Option<i64>,
    pub update: UpdateWant,
    pub rollback: UpdateWant,
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
pub fn file_name(loaded: &LoadedStack, name: &str, content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{hex}",
        names::container(&loaded.stage, &loaded.project, name)
    )
}

/// What a service should be on the swarm (its container half from [`container::service`]); `notes` gets what the plan shows about it (a
/// node-local volume pinning it to a node).
pub fn service_want(
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
    let every_node = matches!(deploy.mode.as_deref(), Some("global" | "global-job"));
    if !volumes.is_empty() {
        // "its volume `data` is" / "its volumes `a`, `b` are"
        let its_volumes = format!(
            "its volume{} {} {}",
            if volumes.len() == 1 { "" } else { "s" },
            volumes
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if volumes.len() == 1 { "is" } else { "are" },
        );
        if every_node {
            notes.push(format!(
                "service `{name}` runs a task on every node: {its_volumes} node-local, one on each node"
            ));
        } else if constraints.is_empty() {
            constraints.push(format!("node.id=={manager}"));
            notes.push(format!(
                "service `{name}` keeps to node {} (the manager): {its_volumes} node-local",
                &manager[..manager.len().min(12)],
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
        deploy: DeploySpec {
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
        },
    }
}

impl ServiceWant {
    /// `field:shorthash` pairs (the value of `names::CONFIG_FIELDS` on the service), in the
    /// form [`container::changed_fields`] compares: which fields an update changes.
    pub fn field_hashes(&self) -> String {
        let d = &self.deploy;
        let fields: Vec<(&str, String)> = vec![
            ("image", self.image.clone()),
            ("entrypoint", format!("{:?}", self.entrypoint)),
            ("command", format!("{:?}", self.command)),
            ("environment", format!("{:?}", self.env)),
            ("working_dir", format!("{:?}", self.working_dir)),
            ("user", format!("{:?}", self.user)),
            ("hostname", format!("{:?}", self.hostname)),
            ("init", format!("{:?}", self.init)),
            ("tty", self.tty.to_string()),
            ("stdin_open", self.stdin_open.to_string()),
            ("read_only", self.read_only.to_string()),
            ("stop_signal", format!("{:?}", self.stop_signal)),
            ("stop_grace_period", format!("{:?}", self.stop_grace_ns)),
            ("healthcheck", format!("{:?}", self.health)),
            ("extra_hosts", format!("{:?}", self.extra_hosts)),
            ("volumes", format!("{:?}", self.mounts)),
            ("secrets/configs", format!("{:?}", self.files)),
            ("networks", format!("{:?}", self.networks)),
            (
                "labels",
                format!("{:?}", (&self.labels, &self.container_labels)),
            ),
            ("deploy.mode", d.mode.clone()),
            ("deploy.replicas", d.replicas.to_string()),
            ("deploy.endpoint_mode", d.endpoint_dnsrr.to_string()),
            ("ports", format!("{:?}", d.ports)),
            (
                "deploy.placement",
                format!(
                    "{:?}",
                    (&d.constraints, &d.preferences, d.max_replicas_per_node)
                ),
            ),
            (
                "deploy.resources",
                format!(
                    "{:?}",
                    (
                        d.nano_cpus,
                        d.memory,
                        d.pids,
                        d.reserve_nano_cpus,
                        d.reserve_memory
                    )
                ),
            ),
            (
                "deploy.restart_policy",
                format!(
                    "{:?}",
                    (
                        &d.restart_condition,
                        d.restart_max_attempts,
                        d.restart_delay_ns,
                        d.restart_window_ns
                    )
                ),
            ),
            ("deploy.update_config", format!("{:?}", d.update)),
            ("deploy.rollback_config", format!("{:?}", d.rollback)),
        ];
        fields
            .iter()
            .map(|(field, value)| {
                let hash: String = Sha256::digest(value.as_bytes())
                    .iter()
                    .take(5)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{field}:{hash}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What an update of a deployed service changes, as the reason `up` gives: the fields whose
/// hashes differ from those the service carries, or `config` when it carries none (a service
/// deployed before the per-field hashes, or by hand).
pub fn update_reason(found_fields: Option<&str>, want: &ServiceWant) -> String {
    let fields = found_fields
        .map(|old| container::changed_fields(old, &want.field_hashes()))
        .unwrap_or_default();
    if fields.is_empty() {
        "config changed".to_string()
    } else {
        fields
            .iter()
            .map(|f| format!("{f} changed"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> ServiceWant {
        ServiceWant {
            name: "dev-demo--api".into(),
            image: "registry.test/api:1@sha256:aa".into(),
            env: vec!["A=1".into()],
            deploy: DeploySpec {
                mode: "replicated".into(),
                replicas: 2,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_update_names_the_fields_it_changes() {
        let before = want();
        let mut after = want();
        after.env.push("B=2".into());
        after.deploy.replicas = 3;
        assert_eq!(
            update_reason(Some(&before.field_hashes()), &after),
            "environment changed, deploy.replicas changed"
        );
        assert_eq!(update_reason(None, &after), "config changed");
    }

    #[test]
    fn every_field_reads_back_from_the_label() {
        let hashes = want().field_hashes();
        let fields = container::changed_fields("", &hashes);
        assert_eq!(fields.len(), hashes.split(',').count(), "{fields:?}");
        assert!(container::changed_fields(&hashes, &hashes).is_empty());
    }
}
