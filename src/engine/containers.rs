//! Container calls: create from a [`ContainerSpec`], start, stop, remove, inspect, wait,
//! logs.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HealthStatusEnum, HostConfig,
    NetworkConnectRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::stream::{BoxStream, StreamExt};

use super::{is_not_found, op, Engine, EngineError};
use crate::spec::ContainerSpec;

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

/// The create request for a spec (pure). The first network is set at create time; the
/// others are connected after (20.10 refuses more than one at create).
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        port_bindings
            .entry(port.key())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(port.host_ip.clone()),
                host_port: Some(port.host_port.clone()),
            });
    }
    let mut exposed: Vec<String> = spec.ports.iter().map(|p| p.key()).collect();
    exposed.sort();
    exposed.dedup();
    let restart_policy = spec.restart.as_deref().map(|r| RestartPolicy {
        name: Some(match r {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            _ => RestartPolicyNameEnum::NO,
        }),
        maximum_retry_count: None,
    });
    let networking_config = spec.networks.first().map(|first| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            first.network.clone(),
            EndpointSettings {
                aliases: Some(first.aliases.clone()),
                ..Default::default()
            },
        )])),
    });
    let labels: HashMap<String, String> = spec.labels().into_iter().collect();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!spec.anonymous_volumes.is_empty()).then(|| spec.anonymous_volumes.clone()),
        labels: Some(labels),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            start_interval: None,
        }),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout_s,
        hostname: spec.hostname.clone(),
        host_config: Some(HostConfig {
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            volumes_from: (!spec.volumes_from.is_empty()).then(|| spec.volumes_from.clone()),
            restart_policy,
            init: spec.init,
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            network_mode: spec.networks.first().map(|n| n.network.clone()),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

impl Engine {
    /// Create a container from its spec and connect it to its other networks. Returns the ID.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.create_container_with(spec, create_body(spec)).await
    }

    /// Create a container from a spec with an adjusted body (one-off tasks set stdin and
    /// attach flags), then connect its other networks.
    pub async fn create_container_with(
        &self,
        spec: &ContainerSpec,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .client()
            .create_container(Some(options), body)
            .await
            .map_err(op("create container", &spec.name))?;
        for extra in spec.networks.iter().skip(1) {
            self.client()
                .connect_network(
                    &extra.network,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(extra.aliases.clone()),
                            ..Default::default()
                        }),
                    },
                )
                .await
                .map_err(op("connect to network", &extra.network))?;
        }
        Ok(created.id)
    }

    pub async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.client()
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(op("start container", name))
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
        match self
            .client()
            .stop_container(name, Some(options.build()))
            .await
        {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) || is_not_modified(&err) => Ok(()),
            Err(err) => Err(EngineError::new("stop container", name, err)),
        }
    }

    /// Force-remove a container and its anonymous volumes; a missing one is fine.
    pub async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.client().remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(EngineError::new("remove container", name, err)),
        }
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
            Err(err) => return Err(EngineError::new("inspect container", name, err)),
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
            Some(Err(err)) => Err(EngineError::new("wait for container", name, err)),
            None => Err(EngineError::other(
                "wait for container",
                name,
                "the engine ended the wait without an exit code",
            )),
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
                    Some(Err(err)) => return Err(EngineError::new("read logs of", name, err)),
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
        follow: bool,
        tail: Option<u64>,
        since: Option<i32>,
    ) -> BoxStream<'static, Result<Vec<u8>, EngineError>> {
        let mut options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow);
        if let Some(tail) = tail {
            options = options.tail(&tail.to_string());
        }
        if let Some(since) = since {
            options = options.since(since);
        }
        let owned = name.to_string();
        self.client()
            .logs(name, Some(options.build()))
            .map(move |item| match item {
                Ok(output) => Ok(match output {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message } => message.to_vec(),
                }),
                Err(err) => Err(EngineError::new("read logs of", &owned, err)),
            })
            .boxed()
    }
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
