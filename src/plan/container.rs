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
    /// Left out of the hash when unset (added after the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval_ns: Option<i64>,
}

/// One network a container joins, by engine name, with its aliases there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkAttachment {
    pub network: String,
    pub aliases: Vec<String>,
    /// Fixed addresses (hashed only when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

/// Everything that reaches one container. Every field except `name` (a new name is a new
/// container: the planner replaces the old one), `owner_labels` and `image` (the reference;
/// its resolved ID is `image_id`) is covered by the config hash; secrets and configs by
/// the sha256 of their content.
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
    /// The engine's network mode when not the stage network: `host`, `none`, `bridge`,
    /// `container:NAME` (then `networks` is empty).
    pub network_mode: Option<String>,
    /// Exposed (not published) ports: `80/tcp`, one per port.
    pub expose: Vec<String>,
    /// Secrets and configs copied into the container before its first start.
    pub files: Vec<FileSpec>,
    pub stdin_open: bool,
    pub tty: bool,
    pub read_only: bool,
    /// Container path → mount options (`size=…`), from `tmpfs:` and `type: tmpfs` mounts.
    pub tmpfs: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// (name, soft, hard), sorted by name.
    pub ulimits: Vec<(String, i64, i64)>,
    /// `CONTAINER:ALIAS`.
    pub links: Vec<String>,
    pub memory_reservation: Option<i64>,
    pub pids_limit: Option<i64>,
    pub log_driver: Option<String>,
    pub log_options: BTreeMap<String, String>,
    /// `SOURCE:TARGET:PERMISSIONS`.
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    pub shm_size: Option<i64>,
    pub sysctls: BTreeMap<String, String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub platform: Option<String>,
    pub privileged: bool,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub group_add: Vec<String>,
    pub runtime: Option<String>,
    pub cpu_shares: Option<i64>,
    pub cpuset: Option<String>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_rt_period: Option<i64>,
    pub cpu_rt_runtime: Option<i64>,
    pub oom_score_adj: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub mem_swappiness: Option<i64>,
    pub memswap_limit: Option<i64>,
    pub domainname: Option<String>,
    pub userns_mode: Option<String>,
    pub uts: Option<String>,
    pub cgroup_parent: Option<String>,
    pub cgroup: Option<String>,
    pub storage_opt: BTreeMap<String, String>,
    pub device_cgroup_rules: Vec<String>,
    pub blkio_config: Option<crate::stack::model::BlkioConfig>,
    /// `gpus` and `deploy.resources.reservations.devices`.
    pub device_requests: Vec<crate::stack::model::DeviceRequest>,
    /// A service's `pre_start` steps (hashed as one field, only when there are some: a
    /// service without steps keeps the hash it always had).
    pub pre_start: Vec<StepSpec>,
    /// Another replica of the service runs the `pre_start` steps in this run (not hashed).
    #[serde(skip)]
    pub pre_start_elsewhere: bool,
    /// A recreate: the anonymous volumes of the container it replaces that it mounts at the
    /// same paths, so their data stays (not hashed: what the container inherits is not
    /// part of what the user asked for).
    #[serde(skip)]
    pub kept_volumes: Vec<KeptVolume>,
    /// A recreate with `--renew-anon-volumes`: the paths whose anonymous volumes go with the
    /// container it replaces (for `--dry-run`; not hashed).
    #[serde(skip)]
    pub renewed_volumes: Vec<String>,
}

/// An anonymous volume a recreated container takes over: the engine's name of the volume and
/// the container path it is mounted at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptVolume {
    pub name: String,
    pub path: String,
}

/// A secret or config as it lands in the container. Its content is never printed or
/// hashed as such: `digest` (sha256) stands for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileSpec {
    /// `secret` or `config`.
    pub kind: &'static str,
    pub source: String,
    /// Absolute path in the container.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub digest: String,
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// Where a secret or config lands: an absolute target as written; a relative one (or the
/// source's name) under `/run/secrets/` for secrets and `/` for configs.
pub fn file_target(kind: &str, reference: &crate::stack::model::FileRef) -> String {
    let target = reference.target.as_deref().unwrap_or(&reference.source);
    if target.starts_with('/') {
        target.to_string()
    } else if kind == "secret" {
        format!("/run/secrets/{target}")
    } else {
        format!("/{target}")
    }
}

/// The engine name of a service's container: its `container_name`, else
/// `{stage}-{project}--{service}`.
pub fn container_name(loaded: &LoadedStack, name: &str) -> String {
    loaded
        .stack
        .services
        .get(name)
        .and_then(|s| s.container_name.clone())
        .unwrap_or_else(|| names::container(&loaded.stage, &loaded.project, name))
}

/// The names of a service's containers, one per replica: the first is [`container_name`],
/// the others add `--2`, `--3` …
pub fn replica_names(loaded: &LoadedStack, name: &str) -> Vec<String> {
    let base = container_name(loaded, name);
    let count = loaded.stack.services.get(name).map_or(1, |s| s.replicas());
    (1..=count)
        .map(|i| {
            if i == 1 {
                base.clone()
            } else {
                format!("{base}--{i}")
            }
        })
        .collect()
}

/// The `driver_opts` of the stack volume whose engine name is `name`.
pub fn volume_driver_opts(loaded: &LoadedStack, name: &str) -> BTreeMap<String, String> {
    loaded
        .stack
        .volumes
        .iter()
        .find(|(key, _)| volume_name(loaded, key) == name)
        .map(|(_, def)| {
            def.driver_opts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The container names the stack sets itself (`container_name`).
pub fn custom_names(loaded: &LoadedStack) -> Vec<String> {
    loaded
        .stack
        .services
        .values()
        .filter_map(|s| s.container_name.clone())
        .collect()
}

/// Every port of `expose:` entries (ranges expanded), as `PORT/PROTOCOL`.
fn exposed_ports(expose: &[String]) -> Vec<String> {
    let mut ports = Vec::new();
    for entry in expose {
        let (range, protocol) = entry.split_once('/').unwrap_or((entry, "tcp"));
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        let (Ok(low), Ok(high)) = (low.parse::<u16>(), high.parse::<u16>()) else {
            continue;
        };
        for port in low..=high {
            ports.push(format!("{port}/{protocol}"));
        }
    }
    ports.sort();
    ports.dedup();
    ports
}

/// The secrets and configs of a service, with their content (read while resolving).
fn files(loaded: &LoadedStack, service: &Service) -> Vec<FileSpec> {
    let mut files = Vec::new();
    for (kind, references, defs) in [
        ("secret", &service.secrets, &loaded.stack.secrets),
        ("config", &service.configs, &loaded.stack.configs),
    ] {
        for reference in references {
            let content = defs
                .get(&reference.source)
                .and_then(|d| d.data.clone())
                .unwrap_or_default();
            let number = |id: &Option<String>| id.as_deref().and_then(|i| i.parse().ok());
            files.push(FileSpec {
                kind,
                source: reference.source.clone(),
                path: file_target(kind, reference),
                uid: number(&reference.uid).unwrap_or(0),
                gid: number(&reference.gid).unwrap_or(0),
                mode: reference.mode.unwrap_or(0o444),
                digest: hex(&Sha256::digest(&content)),
                content,
            });
        }
    }
    files
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
        container_name(loaded, target)
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
        let mut flags: Vec<&str> = Vec::new();
        if mount.read_only {
            flags.push("ro");
        }
        flags.extend(mount.options.iter().map(String::as_str));
        let suffix = if flags.is_empty() {
            String::new()
        } else {
            format!(":{}", flags.join(","))
        };
        match (mount.kind, &mount.source) {
            (MountKind::Tmpfs, _) => {}
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

/// `tmpfs:` entries and `type: tmpfs` mounts: container path → options.
pub fn tmpfs_mounts(entries: &[String], volumes: &[VolumeMount]) -> BTreeMap<String, String> {
    let mut tmpfs = BTreeMap::new();
    for entry in entries {
        let (path, options) = entry.split_once(':').unwrap_or((entry, ""));
        tmpfs.insert(path.to_string(), options.to_string());
    }
    for mount in volumes.iter().filter(|m| m.kind == MountKind::Tmpfs) {
        tmpfs.insert(mount.target.clone(), mount.options.join(","));
    }
    tmpfs
}

/// The engine's network mode for `network_mode:` (`service:X` is X's container).
pub fn network_mode(loaded: &LoadedStack, mode: &str) -> String {
    match mode.strip_prefix("service:") {
        Some(service) => format!("container:{}", container_name(loaded, service)),
        None => mode.to_string(),
    }
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
        ipv4_address: None,
        ipv6_address: None,
    }];
    for (key, attachment) in &service.networks {
        let mut aliases = vec![name.to_string()];
        aliases.extend(attachment.aliases.iter().cloned());
        let joined = NetworkAttachment {
            network: network_name(loaded, key),
            aliases,
            ipv4_address: attachment.ipv4_address.clone(),
            ipv6_address: attachment.ipv6_address.clone(),
        };
        if key == "default" {
            networks[0] = joined;
        } else {
            networks.push(joined);
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
                start_interval_ns: None,
            }
        } else {
            HealthSpec {
                test: h.test.clone(),
                interval_ns: nanos(h.interval),
                timeout_ns: nanos(h.timeout),
                retries: h.retries.map(i64::from),
                start_period_ns: nanos(h.start_period),
                start_interval_ns: nanos(h.start_interval),
            }
        }
    });
    // `on-failure:5` keeps its count (the engine's maximum retry count); `restart:` wins
    // over `deploy.restart_policy` (checked while validating).
    let deploy = service.deploy.clone().unwrap_or_default();
    let restart = service
        .restart
        .or_else(|| deploy.restart_policy.as_ref().and_then(|r| r.policy().ok()))
        .map(|r| r.to_string());
    let limits = deploy
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let reservations = deploy
        .resources
        .as_ref()
        .and_then(|r| r.reservations.clone())
        .unwrap_or_default();
    let network_mode = service
        .network_mode
        .as_deref()
        .map(|mode| network_mode(loaded, mode));
    if network_mode.is_some() {
        networks.clear();
    }
    let mut ulimits: Vec<(String, i64, i64)> = service
        .ulimits
        .iter()
        .map(|(name, u)| (name.clone(), u.soft, u.hard))
        .collect();
    ulimits.sort();
    let mut links: Vec<String> = service
        .links
        .iter()
        .map(|link| {
            let (target, alias) = link.split_once(':').unwrap_or((link, link));
            format!("{}:{alias}", container_name(loaded, target))
        })
        .collect();
    // `external_links`: containers outside the stack, by their engine name.
    links.extend(service.external_links.iter().map(|link| {
        let (target, alias) = link.split_once(':').unwrap_or((link, link));
        format!("{target}:{alias}")
    }));
    let mut owner_labels: BTreeMap<String, String> =
        names::owner_labels(&loaded.stage, &loaded.project, names::role::SERVICE)
            .into_iter()
            .collect();
    owner_labels.insert(names::SERVICE.to_string(), name.to_string());
    let sorted = |map: &indexmap::IndexMap<String, String>| -> BTreeMap<String, String> {
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    ContainerSpec {
        name: container_name(loaded, name),
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
        memory: service.mem_limit.or(limits.memory).map(|m| m.0),
        nano_cpus: service
            .cpus
            .or(limits.cpus)
            .map(|c| (c * 1e9).round() as i64),
        hostname: service.hostname.clone(),
        extra_hosts: service.extra_hosts.clone(),
        owner_labels,
        network_mode,
        expose: exposed_ports(&service.expose),
        files: files(loaded, service),
        stdin_open: service.stdin_open.unwrap_or(false),
        tty: service.tty.unwrap_or(false),
        read_only: service.read_only.unwrap_or(false),
        tmpfs: tmpfs_mounts(&service.tmpfs, &service.volumes),
        cap_add: service.cap_add.clone(),
        cap_drop: service.cap_drop.clone(),
        ulimits,
        links,
        memory_reservation: service.mem_reservation.or(reservations.memory).map(|m| m.0),
        pids_limit: service.pids_limit.or(limits.pids),
        log_driver: service.logging.as_ref().and_then(|l| l.driver.clone()),
        log_options: service
            .logging
            .as_ref()
            .map(|l| sorted(&l.options))
            .unwrap_or_default(),
        devices: service.devices.iter().map(|d| d.to_string()).collect(),
        security_opt: service.security_opt.clone(),
        shm_size: service.shm_size.map(|s| s.0),
        sysctls: sorted(&service.sysctls),
        pid: service.pid.clone(),
        ipc: service.ipc.clone(),
        platform: service.platform.clone(),
        privileged: service.privileged.unwrap_or(false),
        dns: service.dns.clone(),
        dns_search: service.dns_search.clone(),
        dns_opt: service.dns_opt.clone(),
        group_add: service.group_add.clone(),
        runtime: service.runtime.clone(),
        cpu_shares: service.cpu_shares,
        cpuset: service.cpuset.clone(),
        cpu_quota: service.cpu_quota,
        cpu_period: service.cpu_period,
        cpu_rt_period: service.cpu_rt_period,
        cpu_rt_runtime: service.cpu_rt_runtime,
        oom_score_adj: service.oom_score_adj,
        oom_kill_disable: service.oom_kill_disable,
        mem_swappiness: service.mem_swappiness,
        memswap_limit: service.memswap_limit,
        domainname: service.domainname.clone(),
        userns_mode: service.userns_mode.clone(),
        uts: service.uts.clone(),
        cgroup_parent: service.cgroup_parent.clone(),
        cgroup: service.cgroup.clone(),
        device_cgroup_rules: service.device_cgroup_rules.clone(),
        storage_opt: sorted(&service.storage_opt),
        blkio_config: service.blkio_config.clone(),
        device_requests: service
            .gpus
            .iter()
            .chain(reservations.devices.iter())
            .cloned()
            .collect(),
        pre_start: Vec::new(),
        pre_start_elsewhere: false,
        kept_volumes: Vec::new(),
        renewed_volumes: Vec::new(),
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
        tmpfs: tmpfs_mounts(&[], &data.volumes),
        ..Default::default()
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
        // Keys added later count only when set, so that a container made before them keeps
        // its hash (and is not recreated by an upgrade).
        let later = [
            ("network_mode", json(&self.network_mode)),
            ("expose", json(&self.expose)),
            (
                "secrets",
                json(
                    &self
                        .files
                        .iter()
                        .filter(|f| f.kind == "secret")
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "configs",
                json(
                    &self
                        .files
                        .iter()
                        .filter(|f| f.kind == "config")
                        .collect::<Vec<_>>(),
                ),
            ),
            ("stdin_open", json(&self.stdin_open)),
            ("tty", json(&self.tty)),
            ("read_only", json(&self.read_only)),
            ("tmpfs", json(&self.tmpfs)),
            ("cap_add", json(&self.cap_add)),
            ("cap_drop", json(&self.cap_drop)),
            ("ulimits", json(&self.ulimits)),
            ("links", json(&self.links)),
            ("mem_reservation", json(&self.memory_reservation)),
            ("pids_limit", json(&self.pids_limit)),
            ("logging", json(&(&self.log_driver, &self.log_options))),
            ("devices", json(&self.devices)),
            ("security_opt", json(&self.security_opt)),
            ("shm_size", json(&self.shm_size)),
            ("sysctls", json(&self.sysctls)),
            ("pid", json(&self.pid)),
            ("ipc", json(&self.ipc)),
            ("platform", json(&self.platform)),
            ("privileged", json(&self.privileged)),
            ("dns", json(&self.dns)),
            ("dns_search", json(&self.dns_search)),
            ("dns_opt", json(&self.dns_opt)),
            ("group_add", json(&self.group_add)),
            ("runtime", json(&self.runtime)),
            ("cpu_shares", json(&self.cpu_shares)),
            ("cpuset", json(&self.cpuset)),
            ("cpu_quota", json(&self.cpu_quota)),
            ("cpu_period", json(&self.cpu_period)),
            ("cpu_rt_period", json(&self.cpu_rt_period)),
            ("cpu_rt_runtime", json(&self.cpu_rt_runtime)),
            ("oom_score_adj", json(&self.oom_score_adj)),
            ("oom_kill_disable", json(&self.oom_kill_disable)),
            ("mem_swappiness", json(&self.mem_swappiness)),
            ("memswap_limit", json(&self.memswap_limit)),
            ("domainname", json(&self.domainname)),
            ("userns_mode", json(&self.userns_mode)),
            ("uts", json(&self.uts)),
            ("cgroup_parent", json(&self.cgroup_parent)),
            ("cgroup", json(&self.cgroup)),
            ("storage_opt", json(&self.storage_opt)),
            ("device_cgroup_rules", json(&self.device_cgroup_rules)),
            ("blkio_config", json(&self.blkio_config)),
            ("device_requests", json(&self.device_requests)),
        ];
        let unset = ["null", "[]", "{}", "false", "[null,{}]"];
        fields.extend(
            later
                .into_iter()
                .filter(|(_, value)| !unset.contains(&value.as_str())),
        );
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
    let new_fields = parse(new);
    let mut changed: Vec<String> = new
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .filter(|(field, hash)| old.get(*field).map(String::as_str) != Some(*hash))
        .map(|(field, _)| field.to_string())
        .collect();
    // A key set before and unset now (keys added later are hashed only when set).
    changed.extend(
        old.keys()
            .filter(|field| !new_fields.contains_key(*field))
            .cloned(),
    );
    changed
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

    /// Two services; each case adds one key to `api`. The key changes `api`'s hash and is
    /// named as the one field that changed; `web`'s hash stays: exactly that service is
    /// recreated.
    #[test]
    fn each_compose_key_is_hashed_and_named() {
        let base = "services:\n  api:\n    image: busybox:latest\n  web:\n    image: busybox:latest\n    ports: [\"80\"]\nsecrets:\n  token: { content: a }\nconfigs:\n  conf: { content: b }\n";
        let cases = [
            ("network_mode: host", "networks,network_mode"),
            ("expose: [80, \"9000-9001/udp\"]", "expose"),
            ("secrets: [token]", "secrets"),
            ("configs: [{ source: conf, target: /etc/conf, mode: 0440 }]", "configs"),
            ("stdin_open: true", "stdin_open"),
            ("tty: true", "tty"),
            ("read_only: true", "read_only"),
            ("tmpfs: /run", "tmpfs"),
            ("cap_add: [NET_ADMIN]", "cap_add"),
            ("cap_drop: [ALL]", "cap_drop"),
            ("ulimits: { nofile: 1024 }", "ulimits"),
            ("links: [web]", "links"),
            ("deploy: { resources: { reservations: { memory: 64m } } }", "mem_reservation"),
            ("deploy: { resources: { limits: { pids: 50 } } }", "pids_limit"),
            ("deploy: { resources: { limits: { memory: 64m } } }", "mem_limit"),
            ("deploy: { resources: { limits: { cpus: '0.5' } } }", "cpus"),
            ("deploy: { restart_policy: { condition: on-failure, max_attempts: 3 } }", "restart"),
            ("logging: { driver: json-file, options: { max-size: 1m } }", "logging"),
            ("devices: [\"/dev/fuse\"]", "devices"),
            ("security_opt: [no-new-privileges:true]", "security_opt"),
            ("shm_size: 64m", "shm_size"),
            ("sysctls: { net.core.somaxconn: 1024 }", "sysctls"),
            ("pid: host", "pid"),
            ("ipc: shareable", "ipc"),
            ("platform: linux/amd64", "platform"),
            ("privileged: true", "privileged"),
            ("dns: 10.0.0.2", "dns"),
            ("dns_search: example.com", "dns_search"),
            ("dns_opt: [use-vc]", "dns_opt"),
            ("group_add: [audio]", "group_add"),
            ("runtime: runc", "runtime"),
            ("blkio_config: { weight: 300 }", "blkio_config"),
            ("gpus: all", "device_requests"),
            ("deploy: { resources: { reservations: { devices: [{ capabilities: [gpu], count: 1 }] } } }", "device_requests"),
            ("networks: { default: { ipv4_address: 10.0.0.5 } }", "networks"),
            ("mem_reservation: 32m", "mem_reservation"),
            ("pids_limit: 100", "pids_limit"),
            ("cpu_shares: 512", "cpu_shares"),
            ("cpuset: \"0\"", "cpuset"),
            ("cpu_quota: 50000", "cpu_quota"),
            ("cpu_period: 100ms", "cpu_period"),
            ("cpu_rt_period: 1s", "cpu_rt_period"),
            ("cpu_rt_runtime: 950ms", "cpu_rt_runtime"),
            ("oom_score_adj: 500", "oom_score_adj"),
            ("oom_kill_disable: true", "oom_kill_disable"),
            ("mem_swappiness: 0", "mem_swappiness"),
            ("memswap_limit: -1", "memswap_limit"),
            ("domainname: example.com", "domainname"),
            ("userns_mode: host", "userns_mode"),
            ("uts: host", "uts"),
            ("cgroup_parent: /custom", "cgroup_parent"),
            ("cgroup: host", "cgroup"),
            ("storage_opt: { size: 1G }", "storage_opt"),
            ("device_cgroup_rules: [\"c 1:3 mr\"]", "device_cgroup_rules"),
            ("external_links: [\"redis:cache\"]", "links"),
            ("volumes: [{ type: tmpfs, target: /cache, tmpfs: { size: 1m } }]", "tmpfs"),
            ("volumes: [{ type: bind, source: ./x, target: /x, bind: { propagation: rshared } }]", "volumes"),
        ];
        let specs = |yaml: &str| {
            let mut loaded = crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo");
            for def in loaded
                .stack
                .secrets
                .values_mut()
                .chain(loaded.stack.configs.values_mut())
            {
                def.data = def.content.clone().map(String::into_bytes);
            }
            let api = service(&loaded, "api", &loaded.stack.services["api"], "sha256:abc");
            let web = service(&loaded, "web", &loaded.stack.services["web"], "sha256:abc");
            (api, web)
        };
        let (api, web) = specs(base);
        for (line, field) in cases {
            let yaml = base.replace(
                "  api:\n    image: busybox:latest\n",
                &format!("  api:\n    image: busybox:latest\n    {line}\n"),
            );
            let (changed_api, changed_web) = specs(&yaml);
            assert_eq!(
                changed_fields(&api.field_hashes(), &changed_api.field_hashes()),
                field.split(',').map(String::from).collect::<Vec<_>>(),
                "{line}"
            );
            assert_ne!(api.config_hash(), changed_api.config_hash(), "{line}");
            assert_eq!(web.config_hash(), changed_web.config_hash(), "{line}");
        }
    }

    #[test]
    fn secret_content_is_hashed_not_shown() {
        let yaml = "services:\n  api:\n    image: busybox:latest\n    secrets: [token]\nsecrets:\n  token: { environment: TOKEN }\n";
        let mut loaded = crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo");
        loaded.stack.secrets["token"].data = Some(b"hunter2".to_vec());
        let one = service(&loaded, "api", &loaded.stack.services["api"], "");
        loaded.stack.secrets["token"].data = Some(b"hunter3".to_vec());
        let two = service(&loaded, "api", &loaded.stack.services["api"], "");
        assert_eq!(
            changed_fields(&one.field_hashes(), &two.field_hashes()),
            vec!["secrets".to_string()]
        );
        assert_eq!(one.files[0].path, "/run/secrets/token");
        assert_eq!(one.files[0].mode, 0o444);
        let shown = serde_json::to_string(&one).unwrap_or_default();
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_stack_without_the_new_keys_keeps_its_hash_fields() {
        let spec = spec_of(API);
        let fields: Vec<&str> = spec.hashed_fields().iter().map(|(f, _)| *f).collect();
        assert_eq!(fields.len(), 20, "{fields:?}");
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
