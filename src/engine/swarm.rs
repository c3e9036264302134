//! Swarm: a stage's services, their tasks, the nodes, secrets and configs, and overlay
//! networks, on the manager the engine address reaches. A service's wanted state is written
//! as [`ServiceWant`] (plain data, planned in `crate::plan::deploy`); [`service_spec`] turns it into
//! the engine's spec and its hash (the `io.stackctl.config-hash` label of the service and of
//! its tasks' containers), so a no-op `up` compares hashes and updates nothing.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit,
    Mount, MountType, MountVolumeOptions, NetworkAttachmentConfig, NetworkCreateRequest,
    ResourceObject, SecretSpec, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecModeReplicatedJob, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    InspectServiceOptions, ListConfigsOptionsBuilder, ListNetworksOptionsBuilder,
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    LogsOptionsBuilder, UpdateServiceOptionsBuilder,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{Engine, EngineError};
use crate::plan::deploy::{MountWant, ServiceWant, UpdateWant};
use crate::registry::Credentials;

/// Label of the hash of a service's spec (on the service and its containers).
pub const HASH: &str = crate::names::CONFIG_HASH;

/// What the manager holds of one service.
#[derive(Debug, Clone)]
pub struct ServiceFound {
    pub id: String,
    pub name: String,
    /// The stack's name of the service (`io.stackctl.service`).
    pub service: String,
    pub hash: Option<String>,
    /// The per-field hashes of its spec (`names::CONFIG_FIELDS`), when it carries them.
    pub fields: Option<String>,
    pub version: u64,
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused`,
    /// `rollback_completed`; `None` before any update.
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    /// `replicated`, `global`, `replicated-job`, `global-job`.
    pub mode: String,
    pub replicas: u64,
    /// The volumes its tasks mount (named ones) and the constraints keeping it on a node.
    pub volumes: Vec<String>,
    pub constraints: Vec<String>,
    /// The image of its spec (`repo:tag@sha256:…` as stackctl pins it).
    pub image: String,
}

/// One task of a service.
#[derive(Debug, Clone)]
pub struct TaskFound {
    pub id: String,
    pub service_id: String,
    pub slot: Option<i64>,
    pub node_id: String,
    pub state: String,
    pub desired: String,
    pub message: String,
    pub err: Option<String>,
    pub hash: Option<String>,
    pub container_id: Option<String>,
    pub exit_code: Option<i64>,
    pub updated_at: String,
    /// The labels of its container (ownership, stack `labels`).
    pub labels: HashMap<String, String>,
}

/// One node of the swarm.
#[derive(Debug, Clone)]
pub struct NodeFound {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub role: String,
    pub ready: bool,
}

impl NodeFound {
    /// How messages name a node: its address and short ID (hostnames may repeat).
    pub fn display(&self) -> String {
        format!("{} ({})", self.address, &self.id[..self.id.len().min(12)])
    }
}

/// A secret or config of the stage.
#[derive(Debug, Clone)]
pub struct FileFound {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
}

fn sorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// JSON with every object's keys sorted (the engine's maps are `HashMap`s).
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical).collect())
        }
        other => other,
    }
}

fn update_config(want: &UpdateWant, default_order: &str) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(want.parallelism.unwrap_or(1) as i64),
        delay: Some(want.delay_ns.unwrap_or(0)),
        failure_action: Some(match want.failure_action.as_deref() {
            Some("continue") => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            Some("pause") => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            _ => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: want.monitor_ns.or(Some(5_000_000_000)),
        max_failure_ratio: Some(want.max_failure_ratio.unwrap_or(0.0)),
        order: Some(match want.order.as_deref().unwrap_or(default_order) {
            "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
    }
}

fn rollback_config(want: &UpdateWant, default_order: &str) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(want.parallelism.unwrap_or(1) as i64),
        delay: Some(want.delay_ns.unwrap_or(0)),
        failure_action: Some(match want.failure_action.as_deref() {
            Some("continue") => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
        }),
        monitor: want.monitor_ns.or(Some(5_000_000_000)),
        max_failure_ratio: Some(want.max_failure_ratio.unwrap_or(0.0)),
        order: Some(match want.order.as_deref().unwrap_or(default_order) {
            "start-first" => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
        }),
    }
}

/// The engine's spec of a service and its hash (over everything but the hash labels).
pub struct BuiltSpec {
    spec: ServiceSpec,
    pub hash: String,
}

/// The engine's spec for `want`; updates of a service without volumes or host-mode
/// published ports start the new task before stopping the old one (`start-first`) unless
/// `update_config.order` says otherwise.
pub fn service_spec(want: &ServiceWant) -> BuiltSpec {
    let job = want.deploy.mode.ends_with("-job");
    let mounts = want
        .mounts
        .iter()
        .map(|m| match m {
            MountWant::Volume {
                source,
                target,
                read_only,
                labels,
            } => Mount {
                typ: Some(MountType::VOLUME),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(sorted(labels)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            MountWant::Anonymous { target } => Mount {
                typ: Some(MountType::VOLUME),
                target: Some(target.clone()),
                ..Default::default()
            },
            MountWant::Bind {
                source,
                target,
                read_only,
            } => Mount {
                typ: Some(MountType::BIND),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
            MountWant::Tmpfs { target } => Mount {
                typ: Some(MountType::TMPFS),
                target: Some(target.clone()),
                ..Default::default()
            },
        })
        .collect::<Vec<_>>();
    let has_volumes = want
        .mounts
        .iter()
        .any(|m| matches!(m, MountWant::Volume { .. }));
    let secrets = want
        .files
        .iter()
        .filter(|f| f.kind == "secret")
        .map(|f| TaskSpecContainerSpecSecrets {
            secret_id: Some(f.id.clone()),
            secret_name: Some(f.name.clone()),
            file: Some(TaskSpecContainerSpecFile {
                name: Some(
                    f.path
                        .strip_prefix("/run/secrets/")
                        .unwrap_or(&f.path)
                        .to_string(),
                ),
                uid: Some(f.uid.to_string()),
                gid: Some(f.gid.to_string()),
                mode: Some(f.mode),
            }),
        })
        .collect::<Vec<_>>();
    let configs = want
        .files
        .iter()
        .filter(|f| f.kind == "config")
        .map(|f| TaskSpecContainerSpecConfigs {
            config_id: Some(f.id.clone()),
            config_name: Some(f.name.clone()),
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(f.path.clone()),
                uid: Some(f.uid.to_string()),
                gid: Some(f.gid.to_string()),
                mode: Some(f.mode),
            }),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let container = TaskSpecContainerSpec {
        image: Some(want.image.clone()),
        labels: Some(sorted(&want.container_labels)),
        command: want.entrypoint.clone(),
        args: want.command.clone(),
        hostname: want.hostname.clone(),
        env: Some(want.env.clone()),
        dir: want.working_dir.clone(),
        user: want.user.clone(),
        tty: Some(want.tty),
        open_stdin: Some(want.stdin_open),
        read_only: Some(want.read_only),
        mounts: Some(mounts),
        stop_signal: want.stop_signal.clone(),
        stop_grace_period: want.stop_grace_ns,
        health_check: want.health.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            ..Default::default()
        }),
        hosts: (!want.extra_hosts.is_empty()).then(|| {
            want.extra_hosts
                .iter()
                .map(|h| match h.split_once(':') {
                    Some((host, ip)) => format!("{ip} {host}"),
                    None => h.clone(),
                })
                .collect()
        }),
        secrets: Some(secrets),
        configs: Some(configs),
        init: want.init,
        ..Default::default()
    };
    let condition = match want.deploy.restart_condition.as_deref().unwrap_or(if job {
        "on-failure"
    } else {
        "any"
    }) {
        "none" => TaskSpecRestartPolicyConditionEnum::NONE,
        "on-failure" => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        _ => TaskSpecRestartPolicyConditionEnum::ANY,
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: want.deploy.nano_cpus,
                memory_bytes: want.deploy.memory,
                pids: want.deploy.pids,
            }),
            reservations: Some(ResourceObject {
                nano_cpus: want.deploy.reserve_nano_cpus,
                memory_bytes: want.deploy.reserve_memory,
                generic_resources: None,
            }),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(condition),
            delay: want.deploy.restart_delay_ns,
            max_attempts: want.deploy.restart_max_attempts.map(|n| n as i64),
            window: want.deploy.restart_window_ns,
        }),
        placement: Some(TaskSpecPlacement {
            constraints: Some(want.deploy.constraints.clone()),
            preferences: Some(
                want.deploy
                    .preferences
                    .iter()
                    .map(|p| TaskSpecPlacementPreferences {
                        spread: Some(TaskSpecPlacementSpread {
                            spread_descriptor: Some(p.clone()),
                        }),
                    })
                    .collect(),
            ),
            max_replicas: want.deploy.max_replicas_per_node.map(|n| n as i64),
            ..Default::default()
        }),
        networks: Some(
            want.networks
                .iter()
                .map(|(target, aliases)| NetworkAttachmentConfig {
                    target: Some(target.clone()),
                    aliases: Some(aliases.clone()),
                    driver_opts: None,
                })
                .collect(),
        ),
        ..Default::default()
    };
    let mode = match want.deploy.mode.as_str() {
        "global" => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        "replicated-job" => ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(want.deploy.replicas as i64),
                total_completions: Some(want.deploy.replicas as i64),
            }),
            ..Default::default()
        },
        "global-job" => ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
        _ => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(want.deploy.replicas as i64),
            }),
            ..Default::default()
        },
    };
    // Two tasks cannot share a volume, nor hold one node's host-mode published port: a new
    // task could not start beside the old one (with a task on every node, nowhere).
    let host_ports = want
        .deploy
        .ports
        .iter()
        .any(|p| p.host_mode && p.published.is_some());
    let order = if has_volumes || host_ports {
        "stop-first"
    } else {
        "start-first"
    };
    let ports = want
        .deploy
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol.as_str() {
                "udp" => EndpointPortConfigProtocolEnum::UDP,
                "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                _ => EndpointPortConfigProtocolEnum::TCP,
            }),
            target_port: Some(i64::from(p.target)),
            published_port: p.published.map(i64::from),
            publish_mode: Some(if p.host_mode {
                EndpointPortConfigPublishModeEnum::HOST
            } else {
                EndpointPortConfigPublishModeEnum::INGRESS
            }),
            ..Default::default()
        })
        .collect();
    let mut spec = ServiceSpec {
        name: Some(want.name.clone()),
        labels: Some(sorted(&want.labels)),
        task_template: Some(task),
        mode: Some(mode),
        update_config: (!job).then(|| update_config(&want.deploy.update, order)),
        rollback_config: (!job).then(|| rollback_config(&want.deploy.rollback, order)),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(if want.deploy.endpoint_dnsrr {
                EndpointSpecModeEnum::DNSRR
            } else {
                EndpointSpecModeEnum::VIP
            }),
            ports: Some(ports),
        }),
        ..Default::default()
    };
    let json = canonical(serde_json::to_value(&spec).unwrap_or_default());
    let hash = hex(&Sha256::digest(json.to_string().as_bytes()));
    let hash = hash[..16].to_string();
    if let Some(labels) = spec.labels.as_mut() {
        labels.insert(HASH.to_string(), hash.clone());
    }
    if let Some(labels) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.labels.as_mut())
    {
        labels.insert(HASH.to_string(), hash.clone());
    }
    // Beside the hash, not in it: which fields an update changes (its reasons). A service
    // deployed before this label is compared by its hash alone, and is not rolled for it.
    if let Some(labels) = spec.labels.as_mut() {
        labels.insert(crate::names::CONFIG_FIELDS.to_string(), want.field_hashes());
    }
    BuiltSpec { spec, hash }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn state_name<T: std::fmt::Display>(state: Option<T>) -> String {
    state.map(|s| s.to_string()).unwrap_or_default()
}

fn found_service(service: bollard::models::Service) -> ServiceFound {
    let spec = service.spec.clone().unwrap_or_default();
    let labels = spec.labels.clone().unwrap_or_default();
    let mode = spec.mode.clone().unwrap_or_default();
    let (mode_name, replicas) = if mode.global.is_some() {
        ("global", 0)
    } else if let Some(job) = mode.replicated_job {
        (
            "replicated-job",
            job.total_completions.unwrap_or(1).max(0) as u64,
        )
    } else if mode.global_job.is_some() {
        ("global-job", 0)
    } else {
        (
            "replicated",
            mode.replicated.and_then(|r| r.replicas).unwrap_or(1).max(0) as u64,
        )
    };
    let status = service.update_status.clone();
    let task = spec.task_template.clone().unwrap_or_default();
    let image = task
        .container_spec
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let volumes = task
        .container_spec
        .and_then(|c| c.mounts)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ == Some(MountType::VOLUME))
        .filter_map(|m| m.source)
        .collect();
    ServiceFound {
        id: service.id.unwrap_or_default(),
        name: spec.name.clone().unwrap_or_default(),
        service: labels
            .get(crate::names::SERVICE)
            .cloned()
            .unwrap_or_default(),
        hash: labels.get(HASH).cloned(),
        fields: labels.get(crate::names::CONFIG_FIELDS).cloned(),
        version: service.version.and_then(|v| v.index).unwrap_or(0),
        update_state: status
            .as_ref()
            .and_then(|s| s.state)
            .filter(|s| *s != ServiceUpdateStatusStateEnum::EMPTY)
            .map(|s| s.to_string()),
        update_message: status.and_then(|s| s.message),
        mode: mode_name.to_string(),
        replicas,
        volumes,
        constraints: task
            .placement
            .and_then(|p| p.constraints)
            .unwrap_or_default(),
        image,
    }
}

fn stage_filters(stage: &str, project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        crate::names::stage_filter(stage, project),
    )])
}

fn auth(credentials: Option<&Credentials>) -> Option<bollard::auth::DockerCredentials> {
    credentials.map(super::registry::to_bollard)
}

impl Engine {
    /// This engine's node ID in its swarm, and whether it is a manager; `None` when it is
    /// in no swarm.
    pub async fn swarm_node(&self) -> Result<Option<(String, bool)>, EngineError> {
        let info = self
            .client()
            .info()
            .await
            .map_err(|e| self.error("inspect", "the engine", e))?;
        let Some(swarm) = info.swarm else {
            return Ok(None);
        };
        let node = swarm.node_id.unwrap_or_default();
        if node.is_empty() {
            return Ok(None);
        }
        Ok(Some((node, swarm.control_available.unwrap_or(false))))
    }

    /// The stage's services.
    pub async fn stage_services(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<Vec<ServiceFound>, EngineError> {
        let options = ListServicesOptionsBuilder::default()
            .filters(&stage_filters(stage, project))
            .build();
        let services = self
            .client()
            .list_services(Some(options))
            .await
            .map_err(|e| self.error("list", "services", e))?;
        Ok(services.into_iter().map(found_service).collect())
    }

    /// One service by name or ID; `None` when it does not exist.
    pub async fn swarm_service(&self, name: &str) -> Result<Option<ServiceFound>, EngineError> {
        match self
            .client()
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(service) => Ok(Some(found_service(service))),
            Err(e) if super::is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("inspect", name, e)),
        }
    }

    /// Create a service; the nodes pull its image with `credentials`.
    pub async fn create_swarm_service(
        &self,
        spec: &BuiltSpec,
        credentials: Option<&Credentials>,
    ) -> Result<(), EngineError> {
        let name = spec.spec.name.clone().unwrap_or_default();
        self.client()
            .create_service(spec.spec.clone(), auth(credentials))
            .await
            .map_err(|e| self.error("create", &name, e))?;
        Ok(())
    }

    /// Update a service to `spec` from the version `found` has.
    pub async fn update_swarm_service(
        &self,
        found: &ServiceFound,
        spec: &BuiltSpec,
        credentials: Option<&Credentials>,
    ) -> Result<(), EngineError> {
        let options = UpdateServiceOptionsBuilder::default()
            .version(found.version as i32)
            .build();
        self.client()
            .update_service(&found.id, spec.spec.clone(), options, auth(credentials))
            .await
            .map_err(|e| self.error("update", &found.name, e))?;
        Ok(())
    }

    /// Return a service to the spec it had before its last update.
    pub async fn rollback_swarm_service(&self, found: &ServiceFound) -> Result<(), EngineError> {
        let current = self
            .client()
            .inspect_service(&found.id, None::<InspectServiceOptions>)
            .await
            .map_err(|e| self.error("inspect", &found.name, e))?;
        let spec = current.spec.unwrap_or_default();
        let mut options = UpdateServiceOptionsBuilder::default()
            .version(current.version.and_then(|v| v.index).unwrap_or(0) as i32)
            .build();
        options.rollback = Some("previous".to_string());
        self.client()
            .update_service(&found.id, spec, options, None)
            .await
            .map_err(|e| self.error("roll back", &found.name, e))?;
        Ok(())
    }

    pub async fn remove_swarm_service(&self, id: &str) -> Result<(), EngineError> {
        match self.client().delete_service(id).await {
            Ok(()) => Ok(()),
            Err(e) if super::is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error("remove", id, e)),
        }
    }

    /// The tasks of a service (every state, newest first).
    pub async fn service_tasks(&self, service: &str) -> Result<Vec<TaskFound>, EngineError> {
        self.tasks(HashMap::from([("service", vec![service])]))
            .await
    }

    /// The tasks a removed service left, by the service's ID (the engine resolves a
    /// `service` filter by name, which a removed service no longer has).
    pub async fn tasks_left(&self, service_id: &str) -> Result<Vec<TaskFound>, EngineError> {
        Ok(self
            .tasks(HashMap::new())
            .await?
            .into_iter()
            .filter(|t| t.service_id == service_id)
            .collect())
    }

    /// Every task whose container carries the stage's ownership labels, whether its
    /// service still exists or not.
    pub async fn stage_tasks(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<Vec<TaskFound>, EngineError> {
        let wanted = crate::names::stage_filter(stage, project);
        Ok(self
            .tasks(HashMap::new())
            .await?
            .into_iter()
            .filter(|t| {
                wanted.iter().all(|kv| {
                    kv.split_once('=')
                        .is_some_and(|(k, v)| t.labels.get(k).map(String::as_str) == Some(v))
                })
            })
            .collect())
    }

    async fn tasks(
        &self,
        filters: HashMap<&str, Vec<&str>>,
    ) -> Result<Vec<TaskFound>, EngineError> {
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        let tasks = self
            .client()
            .list_tasks(Some(options))
            .await
            .map_err(|e| self.error("list", "tasks", e))?;
        let mut found: Vec<TaskFound> = tasks
            .into_iter()
            .map(|t| {
                let status = t.status.clone().unwrap_or_default();
                let container = status.container_status.clone().unwrap_or_default();
                TaskFound {
                    id: t.id.clone().unwrap_or_default(),
                    service_id: t.service_id.clone().unwrap_or_default(),
                    slot: t.slot,
                    node_id: t.node_id.clone().unwrap_or_default(),
                    state: state_name(status.state),
                    desired: state_name(t.desired_state),
                    message: status.message.clone().unwrap_or_default(),
                    err: status.err.clone().filter(|e| !e.is_empty()),
                    hash: t
                        .spec
                        .as_ref()
                        .and_then(|s| s.container_spec.as_ref())
                        .and_then(|c| c.labels.as_ref())
                        .and_then(|l| l.get(HASH).cloned()),
                    labels: t
                        .spec
                        .as_ref()
                        .and_then(|s| s.container_spec.as_ref())
                        .and_then(|c| c.labels.clone())
                        .unwrap_or_default(),
                    container_id: container.container_id.filter(|c| !c.is_empty()),
                    exit_code: container.exit_code,
                    updated_at: t.updated_at.map(super::rfc3339).unwrap_or_default(),
                }
            })
            .collect();
        found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(found)
    }

    /// The nodes of the swarm.
    pub async fn swarm_nodes(&self) -> Result<Vec<NodeFound>, EngineError> {
        let nodes = self
            .client()
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| self.error("list", "nodes", e))?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let status = n.status.unwrap_or_default();
                NodeFound {
                    id: n.id.unwrap_or_default(),
                    hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                    address: status.addr.unwrap_or_default(),
                    role: n
                        .spec
                        .and_then(|s| s.role)
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    ready: status.state.map(|s| s.to_string()).as_deref() == Some("ready"),
                }
            })
            .collect())
    }

    /// The last `lines` lines a task wrote (stdout and stderr).
    pub async fn task_log_tail(&self, task: &str, lines: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let stream = self.client().task_logs(task, Some(options));
        futures_util::pin_mut!(stream);
        let mut out = Vec::new();
        let read = async {
            while let Some(Ok(item)) = stream.next().await {
                out.extend(
                    String::from_utf8_lossy(&item.into_bytes())
                        .lines()
                        .map(str::to_string),
                );
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
        out
    }

    /// The merged logs of services: each line with the service's stack name.
    pub fn service_log_stream(
        &self,
        services: &[(String, String)],
        follow: bool,
        tail: Option<String>,
    ) -> impl futures_util::Stream<Item = (String, Result<String, EngineError>)> + use<> {
        let client = self.long_client();
        let streams = services.iter().map(|(id, service)| {
            let mut builder = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(follow);
            if let Some(tail) = &tail {
                builder = builder.tail(tail);
            }
            let service = service.clone();
            let id = id.clone();
            let engine = self.name();
            client
                .service_logs(&id, Some(builder.build()))
                .map(move |item| {
                    (
                        service.clone(),
                        item.map(|l| String::from_utf8_lossy(&l.into_bytes()).into_owned())
                            .map_err(|e| EngineError::new("logs", &id, e).on(engine.clone())),
                    )
                })
                .boxed()
        });
        futures_util::stream::select_all(streams.collect::<Vec<_>>())
    }

    /// Create an attachable overlay network unless one of that name exists.
    pub async fn ensure_overlay_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        internal: bool,
    ) -> Result<bool, EngineError> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(&HashMap::from([("name", vec![name])]))
            .build();
        let found = self
            .client()
            .list_networks(Some(options))
            .await
            .map_err(|e| self.error("list", "networks", e))?;
        if found.iter().any(|n| n.name.as_deref() == Some(name)) {
            return Ok(false);
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".to_string()),
            attachable: Some(true),
            internal: Some(internal),
            labels: Some(sorted(labels)),
            ..Default::default()
        };
        self.client()
            .create_network(request)
            .await
            .map_err(|e| self.error("create", name, e))?;
        Ok(true)
    }

    /// The stage's networks on the manager (overlay ones are the swarm's), by name.
    pub async fn stage_network_names(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(&stage_filters(stage, project))
            .build();
        let found = self
            .client()
            .list_networks(Some(options))
            .await
            .map_err(|e| self.error("list", "networks", e))?;
        Ok(found
            .into_iter()
            .map(|n| (n.id.unwrap_or_default(), n.name.unwrap_or_default()))
            .collect())
    }

    /// A secret or config named `name` with `data`, created unless it exists; its ID.
    pub async fn ensure_swarm_file(
        &self,
        kind: &'static str,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &[u8],
    ) -> Result<(String, bool), EngineError> {
        for found in self.swarm_files_named(kind, name).await? {
            if found.name == name {
                return Ok((found.id, false));
            }
        }
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        let created = if kind == "secret" {
            self.client()
                .create_secret(SecretSpec {
                    name: Some(name.to_string()),
                    labels: Some(sorted(labels)),
                    data: Some(data),
                    ..Default::default()
                })
                .await
        } else {
            self.client()
                .create_config(ConfigSpec {
                    name: Some(name.to_string()),
                    labels: Some(sorted(labels)),
                    data: Some(data),
                    ..Default::default()
                })
                .await
        };
        let created = created.map_err(|e| self.error("create", name, e))?;
        Ok((created.id, true))
    }

    /// The ID of the secret or config named `name`, if it exists.
    pub async fn swarm_file_id(
        &self,
        kind: &'static str,
        name: &str,
    ) -> Result<Option<String>, EngineError> {
        Ok(self
            .swarm_files_named(kind, name)
            .await?
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.id))
    }

    async fn swarm_files_named(
        &self,
        kind: &'static str,
        name: &str,
    ) -> Result<Vec<FileFound>, EngineError> {
        let filters = HashMap::from([("name", vec![name])]);
        self.swarm_files(kind, filters).await
    }

    async fn swarm_files(
        &self,
        kind: &'static str,
        filters: HashMap<&str, Vec<&str>>,
    ) -> Result<Vec<FileFound>, EngineError> {
        let what = if kind == "secret" {
            "secrets"
        } else {
            "configs"
        };
        let found: Vec<(Option<String>, Option<String>)> = if kind == "secret" {
            let options = ListSecretsOptionsBuilder::default()
                .filters(&filters)
                .build();
            self.client()
                .list_secrets(Some(options))
                .await
                .map_err(|e| self.error("list", what, e))?
                .into_iter()
                .map(|s| (s.id, s.spec.and_then(|s| s.name)))
                .collect()
        } else {
            let options = ListConfigsOptionsBuilder::default()
                .filters(&filters)
                .build();
            self.client()
                .list_configs(Some(options))
                .await
                .map_err(|e| self.error("list", what, e))?
                .into_iter()
                .map(|s| (s.id, s.spec.and_then(|s| s.name)))
                .collect()
        };
        Ok(found
            .into_iter()
            .map(|(id, name)| FileFound {
                kind,
                id: id.unwrap_or_default(),
                name: name.unwrap_or_default(),
            })
            .collect())
    }

    /// The stage's secrets and configs.
    pub async fn stage_swarm_files(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<Vec<FileFound>, EngineError> {
        let labels = crate::names::stage_filter(stage, project);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut found = self
            .swarm_files("secret", HashMap::from([("label", labels.clone())]))
            .await?;
        found.extend(
            self.swarm_files("config", HashMap::from([("label", labels)]))
                .await?,
        );
        Ok(found)
    }

    /// Remove a secret or config; gone already is fine.
    pub async fn remove_swarm_file(&self, file: &FileFound) -> Result<(), EngineError> {
        let result = if file.kind == "secret" {
            self.client().delete_secret(&file.id).await
        } else {
            self.client().delete_config(&file.id).await
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if super::is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error("remove", &file.name, e)),
        }
    }

    /// The digest the registry gives for `reference` (`sha256:…`), asked through the manager
    /// with `credentials`.
    pub async fn registry_digest(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, EngineError> {
        let found = self
            .client()
            .inspect_registry_image(reference, auth(credentials))
            .await
            .map_err(|e| self.error("inspect in its registry", reference, e))?;
        found
            .descriptor
            .digest
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                EngineError::other(
                    "inspect in its registry",
                    reference,
                    "the registry gave no digest",
                )
            })
    }
}

impl Engine {
    /// Names of the stage's volumes on this engine (the manager's node).
    pub async fn stage_volume_names(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<Vec<String>, EngineError> {
        let found = self
            .labelled_volumes(&stage_filters(stage, project))
            .await?;
        Ok(found
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }
}

impl BuiltSpec {
    /// A spec that stands for "whatever the service has now" (the wait of a rollback).
    pub fn placeholder() -> BuiltSpec {
        BuiltSpec {
            spec: ServiceSpec::default(),
            hash: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::deploy::{DeploySpec, PortWant};

    fn order(want: &ServiceWant) -> Option<ServiceSpecUpdateConfigOrderEnum> {
        service_spec(want).spec.update_config.and_then(|u| u.order)
    }

    fn port(host_mode: bool, published: Option<u16>) -> PortWant {
        PortWant {
            target: 8080,
            published,
            protocol: "tcp".into(),
            host_mode,
        }
    }

    #[test]
    fn updates_start_first_unless_two_tasks_cannot_coexist_on_a_node() {
        let plain = ServiceWant {
            name: "s-p--api".into(),
            deploy: DeploySpec {
                mode: "replicated".into(),
                replicas: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            order(&plain),
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        let mut ingress = plain.clone();
        ingress.deploy.ports = vec![port(false, Some(80)), port(true, None)];
        assert_eq!(
            order(&ingress),
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        let mut host_port = plain.clone();
        host_port.deploy.ports = vec![port(true, Some(80))];
        assert_eq!(
            order(&host_port),
            Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        let rollback = service_spec(&host_port).spec.rollback_config;
        assert_eq!(
            rollback.and_then(|r| r.order),
            Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST)
        );
        let volume = ServiceWant {
            mounts: vec![MountWant::Volume {
                source: "s-p_data".into(),
                target: "/data".into(),
                read_only: false,
                labels: BTreeMap::new(),
            }],
            ..plain.clone()
        };
        assert_eq!(
            order(&volume),
            Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        // update_config.order says otherwise: as it says.
        let mut asked = host_port.clone();
        asked.deploy.update = UpdateWant {
            order: Some("start-first".into()),
            ..Default::default()
        };
        assert_eq!(
            order(&asked),
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
    }
}
