//! Container calls: create (one path for service, data and one-off task containers), start,
//! stop, remove, inspect, wait, logs.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigCgroupnsModeEnum, HostConfigLogConfig,
    NetworkConnectRequest, NetworkingConfig, PortBinding, ResourcesBlkioWeightDevice,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, ThrottleDevice,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder, WaitContainerOptions, WaitContainerOptionsBuilder,
};
use futures_util::stream::{BoxStream, StreamExt};

use super::{is_not_found, Engine, EngineError};
use crate::names;
use crate::observed::ObservedContainer;

/// The command a data container gets when neither its stack entry nor its image has one: it
/// is never started, the engine only wants a command to create it.
pub const DATA_PLACEHOLDER_COMMAND: &[&str] = &["/stackctl-data-container-is-never-started"];

/// A container to create, in the engine's terms. The Docker target fills it in from a plan's
/// container spec; this module knows nothing of stacks or plans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` items.
    pub env: Vec<String>,
    pub ports: Vec<PublishedPort>,
    /// `SOURCE:TARGET[:ro]` for named volumes (engine names) and bind mounts (absolute).
    pub binds: Vec<String>,
    /// Container paths of anonymous volumes (removed with the container).
    pub anonymous_volumes: Vec<String>,
    /// Container names, with an optional `:ro`.
    pub volumes_from: Vec<String>,
    /// The first is joined at create; the others are connected right after, before the
    /// container is ever started (20.10 refuses more than one at create).
    pub networks: Vec<Endpoint>,
    pub healthcheck: Option<Healthcheck>,
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub restart: Option<String>,
    pub labels: HashMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub init: Option<bool>,
    pub stop_signal: Option<String>,
    pub stop_timeout_s: Option<i64>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub hostname: Option<String>,
    pub extra_hosts: Vec<String>,
    /// A one-off container attached to our streams (`None`: a detached service container).
    pub attach: Option<Attach>,
    /// The rest of the container's settings (Compose keys beyond the common ones).
    pub extras: Extras,
    /// Files copied into the container right after it is created (secrets, configs).
    pub files: Vec<CopiedFile>,
}

/// Settings passed through to the engine as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// Instead of the networks: `host`, `none`, `bridge`, `container:NAME`.
    pub network_mode: Option<String>,
    /// `PORT/PROTOCOL`.
    pub expose: Vec<String>,
    pub stdin_open: bool,
    pub tty: bool,
    pub read_only: bool,
    pub tmpfs: HashMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    pub links: Vec<String>,
    pub memory_reservation: Option<i64>,
    pub pids_limit: Option<i64>,
    pub log_driver: Option<String>,
    pub log_options: HashMap<String, String>,
    /// `SOURCE:TARGET:PERMISSIONS`.
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    pub shm_size: Option<i64>,
    pub sysctls: HashMap<String, String>,
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
    pub storage_opt: HashMap<String, String>,
    pub device_cgroup_rules: Vec<String>,
    pub blkio_weight: Option<u16>,
    /// (device, weight).
    pub blkio_weight_device: Vec<(String, u16)>,
    /// (device, rate) for read and write bytes and operations per second.
    pub blkio_read_bps: Vec<(String, i64)>,
    pub blkio_write_bps: Vec<(String, i64)>,
    pub blkio_read_iops: Vec<(String, i64)>,
    pub blkio_write_iops: Vec<(String, i64)>,
    pub device_requests: Vec<DeviceRequest>,
}

/// A device request (GPUs): which driver, how many (`-1`: all) or which ones, with which
/// capabilities. Empty lists and maps are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRequest {
    pub driver: Option<String>,
    pub count: Option<i64>,
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
    pub options: HashMap<String, String>,
}

impl DeviceRequest {
    fn to_engine(&self) -> bollard::models::DeviceRequest {
        bollard::models::DeviceRequest {
            driver: self.driver.clone(),
            count: self.count,
            device_ids: (!self.device_ids.is_empty()).then(|| self.device_ids.clone()),
            capabilities: (!self.capabilities.is_empty()).then(|| vec![self.capabilities.clone()]),
            options: (!self.options.is_empty()).then(|| self.options.clone()),
        }
    }
}

/// A file put into a container through the engine's archive API (works on a remote engine
/// too, unlike a bind mount).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopiedFile {
    /// Absolute path in the container.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub content: Vec<u8>,
}

/// A tar archive of the files, paths relative to `/` (missing parent directories are made
/// by the engine).
pub fn files_archive(files: &[CopiedFile]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.content.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(u64::from(file.uid));
        header.set_gid(u64::from(file.gid));
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(
            &mut header,
            file.path.trim_start_matches('/'),
            file.content.as_slice(),
        )?;
    }
    builder.into_inner()
}

/// One published port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    /// Empty: every interface.
    pub host_ip: String,
    /// Empty: an ephemeral port.
    pub host_port: String,
}

impl PublishedPort {
    /// `8080/tcp`, the key Docker uses for exposed ports and bindings.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// A network the container joins, with its aliases there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

/// A healthcheck, durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
    /// Engine API 1.44 and later only (checked before the create).
    pub start_interval_ns: Option<i64>,
}

/// How a one-off container is wired to our streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attach {
    /// Hold stdin open (once: closing our side delivers end-of-file).
    pub stdin: bool,
    pub tty: bool,
}

/// What `inspect` says about a container's state.
#[derive(Debug, Clone, Default)]
pub struct ContainerStatus {
    pub id: String,
    /// `created`, `running`, `exited`, …
    pub status: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    /// The output of the most recent health checks, oldest first.
    pub health_log: Vec<String>,
    pub started_at: Option<String>,
}

/// The create request (pure). `all_networks`: every network in the request (API 1.44 and
/// later accept that); otherwise the first only, and the others are connected after (20.10
/// refuses more than one at create).
pub fn create_body(config: &ContainerConfig, all_networks: bool) -> ContainerCreateBody {
    let extras = &config.extras;
    let mut exposed: Vec<String> = config.ports.iter().map(|p| p.key()).collect();
    exposed.extend(extras.expose.iter().cloned());
    exposed.sort();
    exposed.dedup();
    let at_create = if all_networks {
        config.networks.len()
    } else {
        1
    };
    let networking_config = (!config.networks.is_empty()).then(|| NetworkingConfig {
        endpoints_config: Some(
            config
                .networks
                .iter()
                .take(at_create)
                .map(|endpoint| {
                    (
                        endpoint.network.clone(),
                        endpoint_settings(endpoint, &extras.links),
                    )
                })
                .collect(),
        ),
    });
    let attach = config.attach;
    let stdin = attach.is_some_and(|a| a.stdin);
    let tty = attach.is_some_and(|a| a.tty);
    ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: config.cmd.clone(),
        entrypoint: config.entrypoint.clone(),
        env: Some(config.env.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!config.anonymous_volumes.is_empty()).then(|| config.anonymous_volumes.clone()),
        labels: Some(config.labels.clone()),
        healthcheck: config.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            start_interval: h.start_interval_ns,
        }),
        working_dir: config.working_dir.clone(),
        user: config.user.clone(),
        stop_signal: config.stop_signal.clone(),
        stop_timeout: config.stop_timeout_s,
        hostname: config.hostname.clone(),
        domainname: extras.domainname.clone(),
        attach_stdin: attach.map(|_| stdin),
        attach_stdout: attach.map(|_| true),
        attach_stderr: attach.map(|_| true),
        open_stdin: attach.map_or(extras.stdin_open.then_some(true), |_| Some(stdin)),
        stdin_once: attach.map(|_| stdin),
        tty: attach.map_or(extras.tty.then_some(true), |_| Some(tty)),
        host_config: Some(host_config(config, tty)),
        networking_config,
        ..Default::default()
    }
}

fn some_vec(items: &[String]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| items.to_vec())
}

fn some_map(map: &HashMap<String, String>) -> Option<HashMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

/// The host half of a create request: mounts, ports, restart, network, logs, and the
/// settings passed through as they are.
fn host_config(config: &ContainerConfig, tty: bool) -> HostConfig {
    let extras = &config.extras;
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &config.ports {
        port_bindings
            .entry(port.key())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(port.host_ip.clone()),
                host_port: Some(port.host_port.clone()),
            });
    }
    let restart_policy = config.restart.as_deref().map(|r| {
        // `on-failure:N`: at most N restarts.
        let (name, count) = r.split_once(':').unwrap_or((r, ""));
        RestartPolicy {
            name: Some(match name {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                _ => RestartPolicyNameEnum::NO,
            }),
            maximum_retry_count: count.parse().ok(),
        }
    });
    let attach = config.attach;
    HostConfig {
        binds: (!config.binds.is_empty()).then(|| config.binds.clone()),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        volumes_from: (!config.volumes_from.is_empty()).then(|| config.volumes_from.clone()),
        restart_policy,
        init: config.init,
        memory: config.memory,
        nano_cpus: config.nano_cpus,
        extra_hosts: (!config.extra_hosts.is_empty()).then(|| config.extra_hosts.clone()),
        network_mode: extras
            .network_mode
            .clone()
            .or_else(|| config.networks.first().map(|n| n.network.clone())),
        log_config: match attach {
            Some(_) => Some(HostConfigLogConfig {
                typ: Some("none".to_string()),
                config: None,
            }),
            None => extras
                .log_driver
                .as_ref()
                .map(|driver| HostConfigLogConfig {
                    typ: Some(driver.clone()),
                    config: some_map(&extras.log_options),
                }),
        },
        // On user-defined networks links go with each endpoint; only the engine's own
        // networks (`network_mode: bridge` …) take them here.
        links: if config.networks.is_empty() {
            some_vec(&extras.links)
        } else {
            None
        },
        // Honoured from API 1.42; older engines get the size by a resize right after start.
        console_size: if tty {
            crate::tty::size().map(|(rows, cols)| vec![usize::from(rows), usize::from(cols)])
        } else {
            None
        },
        ..passed_through(extras)
    }
}

/// The settings of `extras` the engine takes as they are.
fn passed_through(extras: &Extras) -> HostConfig {
    HostConfig {
        readonly_rootfs: extras.read_only.then_some(true),
        tmpfs: some_map(&extras.tmpfs),
        cap_add: some_vec(&extras.cap_add),
        cap_drop: some_vec(&extras.cap_drop),
        ulimits: (!extras.ulimits.is_empty()).then(|| {
            extras
                .ulimits
                .iter()
                .map(|(name, soft, hard)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(*soft),
                    hard: Some(*hard),
                })
                .collect()
        }),
        memory_reservation: extras.memory_reservation,
        pids_limit: extras.pids_limit,
        devices: (!extras.devices.is_empty()).then(|| {
            extras
                .devices
                .iter()
                .map(|device| {
                    let mut parts = device.splitn(3, ':');
                    DeviceMapping {
                        path_on_host: parts.next().map(str::to_string),
                        path_in_container: parts.next().map(str::to_string),
                        cgroup_permissions: parts.next().map(str::to_string),
                    }
                })
                .collect()
        }),
        security_opt: some_vec(&extras.security_opt),
        shm_size: extras.shm_size,
        sysctls: some_map(&extras.sysctls),
        pid_mode: extras.pid.clone(),
        ipc_mode: extras.ipc.clone(),
        privileged: extras.privileged.then_some(true),
        dns: some_vec(&extras.dns),
        dns_search: some_vec(&extras.dns_search),
        dns_options: some_vec(&extras.dns_opt),
        group_add: some_vec(&extras.group_add),
        runtime: extras.runtime.clone(),
        cpu_shares: extras.cpu_shares,
        cpuset_cpus: extras.cpuset.clone(),
        cpu_quota: extras.cpu_quota,
        cpu_period: extras.cpu_period,
        cpu_realtime_period: extras.cpu_rt_period,
        cpu_realtime_runtime: extras.cpu_rt_runtime,
        oom_score_adj: extras.oom_score_adj,
        oom_kill_disable: extras.oom_kill_disable,
        memory_swappiness: extras.mem_swappiness,
        memory_swap: extras.memswap_limit,
        userns_mode: extras.userns_mode.clone(),
        uts_mode: extras.uts.clone(),
        cgroup_parent: extras.cgroup_parent.clone(),
        cgroupns_mode: extras.cgroup.as_deref().map(|mode| match mode {
            "host" => HostConfigCgroupnsModeEnum::HOST,
            _ => HostConfigCgroupnsModeEnum::PRIVATE,
        }),
        storage_opt: some_map(&extras.storage_opt),
        device_cgroup_rules: some_vec(&extras.device_cgroup_rules),
        blkio_weight: extras.blkio_weight,
        blkio_weight_device: (!extras.blkio_weight_device.is_empty()).then(|| {
            extras
                .blkio_weight_device
                .iter()
                .map(|(path, weight)| ResourcesBlkioWeightDevice {
                    path: Some(path.clone()),
                    weight: Some(usize::from(*weight)),
                })
                .collect()
        }),
        blkio_device_read_bps: throttle(&extras.blkio_read_bps),
        blkio_device_write_bps: throttle(&extras.blkio_write_bps),
        blkio_device_read_iops: throttle(&extras.blkio_read_iops),
        blkio_device_write_iops: throttle(&extras.blkio_write_iops),
        device_requests: (!extras.device_requests.is_empty()).then(|| {
            extras
                .device_requests
                .iter()
                .map(DeviceRequest::to_engine)
                .collect()
        }),
        ..Default::default()
    }
}

fn throttle(devices: &[(String, i64)]) -> Option<Vec<ThrottleDevice>> {
    (!devices.is_empty()).then(|| {
        devices
            .iter()
            .map(|(path, rate)| ThrottleDevice {
                path: Some(path.clone()),
                rate: Some(*rate),
            })
            .collect()
    })
}

/// An endpoint on a network; `links` (`CONTAINER:ALIAS`) are the container's links, which
/// the engine resolves per user-defined network.
fn endpoint_settings(endpoint: &Endpoint, links: &[String]) -> EndpointSettings {
    EndpointSettings {
        aliases: (!endpoint.aliases.is_empty()).then(|| endpoint.aliases.clone()),
        links: (!links.is_empty()).then(|| links.to_vec()),
        ipam_config: (endpoint.ipv4_address.is_some() || endpoint.ipv6_address.is_some()).then(
            || EndpointIpamConfig {
                ipv4_address: endpoint.ipv4_address.clone(),
                ipv6_address: endpoint.ipv6_address.clone(),
                link_local_ips: None,
            },
        ),
        ..Default::default()
    }
}

impl Engine {
    /// Create a container and connect it to its other networks; returns its ID. A container
    /// either comes out complete or not at all: when a connect fails, it is removed again, so
    /// no container carries a config hash it does not match. A name held by a container of
    /// the same stage and role (one a killed run left half-made) is cleared and the create
    /// retried once; a name held by anything else is an error that says so.
    pub async fn create_container(&self, config: &ContainerConfig) -> Result<String, EngineError> {
        let placeholder;
        let config = match self.placeholder_command(config).await {
            Some(with_command) => {
                placeholder = with_command;
                &placeholder
            }
            None => config,
        };
        let id = match self.create_only(config).await {
            Err(err) if err.status == Some(409) => {
                self.clear_name(config, err).await?;
                self.create_only(config).await?
            }
            other => other?,
        };
        if let Err(err) = self.connect_networks(&id, config).await {
            let _ = self.remove_container(&id).await;
            return Err(err);
        }
        if let Err(err) = self.copy_files(&id, config).await {
            let _ = self.remove_container(&id).await;
            return Err(err);
        }
        Ok(id)
    }

    /// A data container is created, never started, but the engine refuses to create a
    /// container without a command ("No command specified"), which is what a data image made
    /// `FROM scratch` has. When neither the stack nor the image gives one, the data container
    /// gets [`DATA_PLACEHOLDER_COMMAND`] (never run); its config hash, made from the plan,
    /// does not change.
    async fn placeholder_command(&self, config: &ContainerConfig) -> Option<ContainerConfig> {
        let is_data = config.labels.get(names::ROLE).map(String::as_str) == Some(names::role::DATA);
        if !is_data || config.cmd.is_some() || config.entrypoint.is_some() {
            return None;
        }
        // Not found or unreadable: the create says what is wrong with the image.
        let image = self.client().inspect_image(&config.image).await.ok()?;
        let image_config = image.config?;
        let given = |part: &Option<Vec<String>>| part.as_ref().is_some_and(|p| !p.is_empty());
        if given(&image_config.cmd) || given(&image_config.entrypoint) {
            return None;
        }
        Some(ContainerConfig {
            cmd: Some(
                DATA_PLACEHOLDER_COMMAND
                    .iter()
                    .map(|part| part.to_string())
                    .collect(),
            ),
            ..config.clone()
        })
    }

    /// Put the config's files into the (created, not started) container.
    async fn copy_files(&self, id: &str, config: &ContainerConfig) -> Result<(), EngineError> {
        if config.files.is_empty() {
            return Ok(());
        }
        let archive = files_archive(&config.files).map_err(|err| EngineError {
            operation: "copy secrets and configs into".into(),
            object: config.name.clone(),
            message: err.to_string(),
            status: None,
            hint: None,
            engine: self.name(),
        })?;
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.client()
            .upload_to_container(id, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(self.op("copy secrets and configs into", &config.name))
    }

    async fn create_only(&self, config: &ContainerConfig) -> Result<String, EngineError> {
        let start_interval = config
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.start_interval_ns.is_some());
        let version = self.client().client_version();
        if start_interval && (version.major_version, version.minor_version) < (1, 44) {
            // An older engine would ignore it without a word.
            return Err(EngineError {
                operation: "create container".into(),
                object: config.name.clone(),
                message: format!(
                    "`healthcheck.start_interval` needs engine API 1.44 or later; this engine speaks {}.{}",
                    version.major_version, version.minor_version
                ),
                status: None,
                hint: Some(
                    "remove `start_interval` (the checks then run at `interval` during `start_period` too), or use a newer engine".into(),
                ),
                engine: self.name(),
            });
        }
        let mut options = CreateContainerOptionsBuilder::default().name(&config.name);
        if let Some(platform) = &config.extras.platform {
            options = options.platform(platform);
        }
        let options = options.build();
        self.client()
            .create_container(
                Some(options),
                create_body(config, self.joins_all_at_create()),
            )
            .await
            .map(|created| created.id)
            .map_err(self.op("create container", &config.name))
    }

    /// Whether the engine takes every network in the create request (API 1.44+): then a
    /// container is never without one of its networks, even for a moment.
    fn joins_all_at_create(&self) -> bool {
        let version = self.client().client_version();
        (version.major_version, version.minor_version) >= (1, 44)
    }

    async fn connect_networks(
        &self,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<(), EngineError> {
        if self.joins_all_at_create() {
            return Ok(());
        }
        for extra in config.networks.iter().skip(1) {
            self.client()
                .connect_network(
                    &extra.network,
                    NetworkConnectRequest {
                        container: id.to_string(),
                        endpoint_config: Some(endpoint_settings(extra, &config.extras.links)),
                    },
                )
                .await
                .map_err(self.op("connect to network", &extra.network))?;
        }
        Ok(())
    }

    /// The name is taken: remove the holder when it is this stage's own container of the
    /// same role and service, else say whose it is not.
    async fn clear_name(
        &self,
        config: &ContainerConfig,
        conflict: EngineError,
    ) -> Result<(), EngineError> {
        let holder = match self
            .client()
            .inspect_container(&config.name, None::<InspectContainerOptions>)
            .await
        {
            Ok(holder) => holder,
            // Gone in the meantime: the retry will tell.
            Err(err) if is_not_found(&err) => return Ok(()),
            Err(_) => return Err(conflict),
        };
        let labels = holder.config.and_then(|c| c.labels).unwrap_or_default();
        let same = |key: &str| labels.get(key) == config.labels.get(key);
        let ours = [names::PROJECT, names::STAGE, names::ROLE, names::SERVICE]
            .iter()
            .all(|key| same(key))
            && labels.contains_key(names::PROJECT);
        if ours {
            return self.remove_container(&config.name).await;
        }
        let label = |labels: &HashMap<String, String>, key: &str| {
            labels.get(key).cloned().unwrap_or_default()
        };
        // Another stage's container (a fixed `container_name` used by two stages).
        if let (Some(stage), Some(project)) = (labels.get(names::STAGE), labels.get(names::PROJECT))
        {
            let theirs = format!(
                "service `{}` of stage `{stage}` (project `{project}`)",
                label(&labels, names::SERVICE)
            );
            let ours = format!(
                "service `{}` of stage `{}` (project `{}`)",
                label(&config.labels, names::SERVICE),
                label(&config.labels, names::STAGE),
                label(&config.labels, names::PROJECT)
            );
            return Err(EngineError {
                operation: "create container".into(),
                object: config.name.clone(),
                message: format!(
                    "the container name `{}` of {ours} is already the container of {theirs}",
                    config.name
                ),
                status: Some(409),
                hint: Some(
                    "container names are unique on an engine: put the stage in `container_name` (`${STAGE}-…`), or remove `container_name`".to_string(),
                ),
                engine: self.name(),
            });
        }
        Err(EngineError {
            operation: "create container".into(),
            object: config.name.clone(),
            message: "the name is held by a container that is not this stage's (it lacks the stage's labels)".to_string(),
            engine: self.name(),
            status: Some(409),
            hint: Some(format!(
                "remove or rename it (`docker rm -f {0}` or `docker rename {0} NEW`), then run again",
                config.name
            )),
        })
    }

    pub async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.client()
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(self.op("start container", name))
    }

    /// Stop a container; `timeout` seconds before SIGKILL (`None`: the container's own).
    /// A missing or already stopped container is fine.
    pub async fn stop_container(
        &self,
        name: &str,
        timeout: Option<i32>,
    ) -> Result<(), EngineError> {
        let mut options = StopContainerOptionsBuilder::default();
        if let Some(t) = timeout {
            options = options.t(t);
        }
        // The engine answers after the container's grace period (its `stop_grace_period`).
        match self
            .long_client()
            .stop_container(name, Some(options.build()))
            .await
        {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) || is_not_modified(&err) => Ok(()),
            Err(err) => Err(self.error("stop container", name, err)),
        }
    }

    /// The host ports a container publishes, as (port, protocol); none when it is missing.
    pub async fn host_ports(&self, name: &str) -> Result<Vec<(String, String)>, EngineError> {
        let inspect = match self
            .client()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(err) if is_not_found(&err) => return Ok(Vec::new()),
            Err(err) => return Err(self.error("inspect container", name, err)),
        };
        Ok(inspect
            .host_config
            .and_then(|h| h.port_bindings)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(key, bindings)| {
                let protocol = key.rsplit('/').next().unwrap_or("tcp").to_string();
                bindings
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |b| Some((b.host_port?, protocol.clone())))
            })
            .collect())
    }

    /// The names of the running containers that publish `published` (`8080/tcp`).
    pub async fn containers_publishing(&self, published: &str) -> Result<Vec<String>, EngineError> {
        let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .filters(&HashMap::from([("publish", vec![published])]))
            .build();
        let found = self
            .client()
            .list_containers(Some(options))
            .await
            .map_err(|err| self.error("list", "containers", err))?;
        Ok(found
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// Force-remove a container and its anonymous volumes; a missing one is fine, and so is
    /// one whose removal is already under way (409: a second stackctl, `down`, is on it).
    /// The anonymous volumes it took over from a container it replaced (`names::KEPT_VOLUMES`)
    /// are mounted by name, which the engine does not remove with it: they go after it,
    /// unless another container still mounts them (a recreate's new container).
    pub async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let kept: Vec<String> = match self
            .client()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => names::kept_volumes(
                &inspect
                    .config
                    .and_then(|config| config.labels)
                    .unwrap_or_default(),
            ),
            Err(err) if is_not_found(&err) => return Ok(()),
            Err(err) => return Err(self.error("inspect container", name, err)),
        };
        self.remove_with_kept(name, &kept).await
    }

    /// [`Engine::remove_container`] of a container the list reported (its labels known):
    /// no inspect first.
    pub async fn remove_observed(&self, container: &ObservedContainer) -> Result<(), EngineError> {
        self.remove_with_kept(&container.name, &container.kept_volumes)
            .await
    }

    /// Remove a container with its anonymous volumes, then the volumes it took over (`kept`).
    async fn remove_with_kept(&self, name: &str, kept: &[String]) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.client().remove_container(name, Some(options)).await {
            Ok(()) => {}
            Err(err) if is_not_found(&err) => return Ok(()),
            // Another removal is under way (a second stackctl, or one a killed run started
            // that the engine finishes): the name is free only once it is done, and whoever
            // removes a container expects that (a create or a rename of that name next).
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => {
                return self.wait_removed(name).await;
            }
            Err(err) => return Err(self.error("remove container", name, err)),
        }
        for volume in kept {
            self.remove_volume_unless_used(volume).await?;
        }
        Ok(())
    }

    /// The state of a container, or `None` when it does not exist.
    pub async fn container_status(
        &self,
        name: &str,
    ) -> Result<Option<ContainerStatus>, EngineError> {
        let inspect = match self
            .client()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(self.error("inspect container", name, err)),
        };
        let state = inspect.state.unwrap_or_default();
        let health = state.health.as_ref();
        Ok(Some(ContainerStatus {
            id: inspect.id.unwrap_or_default(),
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            health: health
                .and_then(|h| h.status)
                .filter(|s| !matches!(s, HealthStatusEnum::EMPTY | HealthStatusEnum::NONE))
                .map(|s| s.to_string()),
            health_log: health
                .and_then(|h| h.log.as_ref())
                .map(|log| {
                    log.iter()
                        .map(|entry| {
                            format!(
                                "exit {}: {}",
                                entry.exit_code.unwrap_or(-1),
                                entry.output.as_deref().unwrap_or("").trim_end()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            started_at: state.started_at,
        }))
    }

    /// Wait until the container stops and return its exit code.
    pub async fn wait_exit(&self, name: &str) -> Result<i64, EngineError> {
        let mut stream = self
            .client()
            .wait_container(name, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(self.error("wait for container", name, err)),
            None => Err(EngineError::other(
                "wait for container",
                name,
                "the engine ended the wait without an exit code",
            )),
        }
    }

    /// Returns once the container is gone (at once when it is already).
    pub async fn wait_removed(&self, name: &str) -> Result<(), EngineError> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("removed")
            .build();
        let mut stream = self.client().wait_container(name, Some(options));
        match stream.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(BollardError::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(err)) if is_not_found(&err) => Ok(()),
            Some(Err(err)) => Err(self.error("wait for the removal of", name, err)),
        }
    }

    /// The last `lines` lines of a container's output (stdout and stderr).
    pub async fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, EngineError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.client().logs(name, Some(options));
        let mut text = String::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(output)) => text.push_str(&String::from_utf8_lossy(&output.into_bytes())),
                    Some(Err(err)) if is_not_found(&err) => break,
                    Some(Err(err)) => return Err(self.error("read logs of", name, err)),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        Ok(text.lines().map(str::to_string).collect())
    }

    /// A container's output as a stream of chunks (stdout and stderr), for `logs`.
    pub fn log_stream(
        &self,
        name: &str,
        query: &LogQuery,
    ) -> BoxStream<'static, Result<Vec<u8>, EngineError>> {
        let mut options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(query.follow)
            .timestamps(query.timestamps);
        if let Some(tail) = query.tail {
            options = options.tail(&tail.to_string());
        }
        if let Some(since) = query.since {
            options = options.since(since);
        }
        if let Some(until) = query.until {
            options = options.until(until);
        }
        let owned = name.to_string();
        let engine = self.name();
        self.client()
            .logs(name, Some(options.build()))
            .map(move |item| match item {
                Ok(output) => Ok(match output {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message } => message.to_vec(),
                }),
                Err(err) => Err(EngineError::new("read logs of", &owned, err).on(engine.clone())),
            })
            .boxed()
    }
}

/// Which part of a container's output `log_stream` reads.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Keep following new output.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<u64>,
    /// Only lines from this Unix time on, and before that one.
    pub since: Option<i32>,
    pub until: Option<i32>,
    /// Each line starts with the engine's RFC 3339 timestamp and a space.
    pub timestamps: bool,
}

/// 304: the container was already started or stopped.
fn is_not_modified(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// True when starting failed because a published port is taken; returns the port.
pub fn port_in_use(err: &EngineError) -> Option<String> {
    if !err.message.contains("port is already allocated")
        && !err.message.contains("address already in use")
    {
        return None;
    }
    // "Bind for 0.0.0.0:18080 failed: port is already allocated"
    // "listen tcp4 0.0.0.0:18080: bind: address already in use"
    let before = err
        .message
        .split(" failed: port is already allocated")
        .next()
        .unwrap_or("");
    let before = before
        .split(": bind: address already in use")
        .next()
        .unwrap_or(before);
    before
        .rsplit(':')
        .next()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        .or(Some(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect7_on_failure_with_a_count_reaches_the_create_request() {
        let config = ContainerConfig {
            name: "dev-app--api".into(),
            image: "img".into(),
            restart: Some("on-failure:5".into()),
            ..Default::default()
        };
        let policy = create_body(&config, false)
            .host_config
            .and_then(|h| h.restart_policy)
            .expect("restart policy");
        assert_eq!(policy.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(policy.maximum_retry_count, Some(5));
    }

    #[test]
    fn an_attached_one_off_holds_stdin_open_once_and_keeps_no_log_file() {
        let config = ContainerConfig {
            name: "dev-app--task-x-abc123".into(),
            image: "img".into(),
            networks: vec![
                Endpoint {
                    network: "dev-app_default".into(),
                    ..Default::default()
                },
                Endpoint {
                    network: "dev-app_back".into(),
                    ..Default::default()
                },
            ],
            attach: Some(Attach {
                stdin: true,
                tty: false,
            }),
            ..Default::default()
        };
        let body = create_body(&config, false);
        assert_eq!(body.open_stdin, Some(true));
        assert_eq!(body.stdin_once, Some(true));
        assert_eq!(body.tty, Some(false));
        let log = body
            .host_config
            .and_then(|h| h.log_config)
            .and_then(|l| l.typ);
        assert_eq!(log.as_deref(), Some("none"));
        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .unwrap_or_default();
        assert_eq!(endpoints.len(), 1, "one network at create (20.10)");
        assert!(endpoints.contains_key("dev-app_default"));

        let all = create_body(&config, true)
            .networking_config
            .and_then(|n| n.endpoints_config)
            .unwrap_or_default();
        assert_eq!(all.len(), 2, "every network at create (API 1.44+)");
        let detached = create_body(
            &ContainerConfig {
                attach: None,
                ..config.clone()
            },
            false,
        );
        assert_eq!(detached.open_stdin, None);
        assert_eq!(detached.host_config.and_then(|h| h.log_config), None);
        let closed = create_body(
            &ContainerConfig {
                attach: Some(Attach::default()),
                ..config
            },
            false,
        );
        assert_eq!(closed.open_stdin, Some(false));
        assert_eq!(closed.stdin_once, Some(false));
    }

    #[test]
    fn port_in_use_finds_the_port_in_both_engine_messages() {
        let allocated = EngineError::other(
            "start container",
            "x",
            "driver failed programming external connectivity on endpoint x (abc): Bind for 0.0.0.0:18080 failed: port is already allocated",
        );
        assert_eq!(port_in_use(&allocated).as_deref(), Some("18080"));
        let in_use = EngineError::other(
            "start container",
            "x",
            "driver failed programming external connectivity on endpoint x (abc): Error starting userland proxy: listen tcp4 0.0.0.0:5432: bind: address already in use",
        );
        assert_eq!(port_in_use(&in_use).as_deref(), Some("5432"));
        assert_eq!(
            port_in_use(&EngineError::other("start container", "x", "no such image")),
            None
        );
    }
}
