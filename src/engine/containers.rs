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
    let restart_policy = spec.restart.as_deref().map(|r| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{LoadedStack, Stack};

    fn spec_of(yaml: &str) -> ContainerSpec {
        let stack: Stack = crate::stack::Stack::from_yaml_str(yaml).expect("valid stack");
        let loaded = LoadedStack {
            stack,
            project: "demo".into(),
            stage: "dev".into(),
            dir: "/srv/demo".into(),
            file: "/srv/demo/stacks/dev.yml".into(),
            ..Default::default()
        };
        let service = &loaded.stack.services["api"];
        crate::spec::service(&loaded, "api", service, "sha256:abc")
    }

    const API: &str = r#"
services:
  api:
    image: busybox:latest
    command: [httpd, -f]
    entrypoint: [/bin/sh, -c]
    environment: { B: "2", A: "1", UNSET: }
    ports: ["127.0.0.1:8080:80", "9090"]
    volumes: ["data:/data:ro", "./logs:/logs", "/scratch"]
    volumes_from: ["files:ro"]
    networks: { back: { aliases: [api-back] } }
    healthcheck: { test: [CMD, "true"], interval: 1s, timeout: 500ms, retries: 3, start_period: 2s }
    restart: unless-stopped
    labels: { team: data }
    working_dir: /app
    user: "1000:1000"
    init: true
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    mem_limit: 64m
    cpus: 0.5
    hostname: api-host
    extra_hosts: ["db.local:10.0.0.5"]
  files: { image: busybox:latest }
"#;

    #[test]
    fn defect7_on_failure_with_a_count_reaches_the_create_request() {
        let spec = spec_of(&API.replace("restart: unless-stopped", "restart: on-failure:5"));
        let policy = create_body(&spec)
            .host_config
            .and_then(|h| h.restart_policy)
            .expect("restart policy");
        assert_eq!(policy.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(policy.maximum_retry_count, Some(5));
    }

    #[test]
    fn every_model_key_reaches_the_create_request() {
        let spec = spec_of(API);
        let body = create_body(&spec);
        let host = body.host_config.clone().expect("host config");
        assert_eq!(body.image.as_deref(), Some("busybox:latest"));
        assert_eq!(body.cmd, Some(vec!["httpd".to_string(), "-f".to_string()]));
        assert_eq!(
            body.entrypoint,
            Some(vec!["/bin/sh".to_string(), "-c".to_string()])
        );
        assert_eq!(body.env, Some(vec!["A=1".to_string(), "B=2".to_string()]));
        assert_eq!(
            body.exposed_ports,
            Some(vec!["80/tcp".to_string(), "9090/tcp".to_string()])
        );
        let bindings = host.port_bindings.expect("port bindings");
        let web = bindings["80/tcp"].clone().expect("80 bound");
        assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(web[0].host_port.as_deref(), Some("8080"));
        // No host IP means every interface, as in Compose; no host port means ephemeral.
        let other = bindings["9090/tcp"].clone().expect("9090 bound");
        assert_eq!(other[0].host_ip.as_deref(), Some(""));
        assert_eq!(other[0].host_port.as_deref(), Some(""));
        assert_eq!(
            host.binds,
            Some(vec![
                "dev-demo_data:/data:ro".to_string(),
                "/srv/demo/logs:/logs".to_string()
            ])
        );
        assert_eq!(body.volumes, Some(vec!["/scratch".to_string()]));
        assert_eq!(
            host.volumes_from,
            Some(vec!["dev-demo--files:ro".to_string()])
        );
        let health = body.healthcheck.expect("healthcheck");
        assert_eq!(health.interval, Some(1_000_000_000));
        assert_eq!(health.timeout, Some(500_000_000));
        assert_eq!(health.start_period, Some(2_000_000_000));
        assert_eq!(health.retries, Some(3));
        assert_eq!(
            host.restart_policy.and_then(|r| r.name),
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.init, Some(true));
        assert_eq!(
            host.extra_hosts,
            Some(vec!["db.local:10.0.0.5".to_string()])
        );
        assert_eq!(body.working_dir.as_deref(), Some("/app"));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.stop_timeout, Some(90));
        assert_eq!(body.hostname.as_deref(), Some("api-host"));
        let labels = body.labels.expect("labels");
        assert_eq!(labels["team"], "data");
        assert_eq!(labels["io.stackctl.role"], "service");
        assert_eq!(labels["io.stackctl.service"], "api");
        assert_eq!(labels["io.stackctl.config-hash"], spec.config_hash());
        // Created on the stage network only; the others are connected after create.
        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .expect("endpoints");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(
            endpoints["dev-demo_default"].aliases,
            Some(vec!["api".to_string()])
        );
        assert_eq!(spec.networks[1].network, "dev-demo_back");
        assert_eq!(
            spec.networks[1].aliases,
            vec!["api".to_string(), "api-back".to_string()]
        );
    }

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
            crate::spec::changed_fields(&one.field_hashes(), &changed.field_hashes()),
            vec!["cpus".to_string()]
        );
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
