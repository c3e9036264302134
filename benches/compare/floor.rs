//! The floor: the fewest Engine API calls that do each step's work, made directly with bollard
//! and with ideal parallelism. It reads the same stack file as the tools, so it creates the
//! same containers (image, command, healthcheck, volume, network alias); its objects carry only
//! the harness's own label.
//!
//! Each step opens a fresh client, so connecting is counted as it is for a tool's process.
//! Calls per step (N containers, V volumes):
//! - cold up: network ‖ V volumes; services without dependencies are created and started at
//!   once; the others are created (in parallel) as soon as those have started, and each
//!   starts when its dependencies are started/healthy; health comes from the event stream
//!   (no polling delay). 1 + V + N creates + N starts + 1 events per healthcheck.
//! - no-op up: 1 list of containers by label.
//! - down: 1 list, then per container stop → remove, all in parallel, then 1 network remove.
//! - purge: as down, then network and volumes removed in parallel.
//! - task round trip: create → attach → start → (drain output ‖ wait) → remove.
//! - stdin: as the task, with the file written into the attach stream, then half-closed.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkCreateRequest,
    NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::future::{try_join_all, BoxFuture, FutureExt, Shared};
use futures_util::StreamExt;
use indexmap::IndexMap;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// The label every floor object carries (value: the run's prefix).
pub const LABEL: &str = "io.stackctl-bench.floor";

/// The subset of the stack file the floor needs.
#[derive(Debug, Deserialize)]
struct File {
    services: IndexMap<String, Service>,
    #[serde(default)]
    volumes: IndexMap<String, stackctl::stack::load::Value>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: String,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    init: Option<bool>,
    #[serde(default)]
    healthcheck: Option<Healthcheck>,
    #[serde(default)]
    depends_on: Option<DependsOn>,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DependsOn {
    List(Vec<String>),
    Map(IndexMap<String, Condition>),
}

#[derive(Debug, Deserialize)]
struct Condition {
    condition: String,
}

/// One service, resolved for the floor.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    image: String,
    command: Option<Vec<String>>,
    binds: Vec<String>,
    init: Option<bool>,
    healthcheck: Option<HealthConfig>,
    /// (dependency, wait for healthy)
    depends_on: Vec<(String, bool)>,
}

/// Prints a timeline of the floor's calls (`--verbose`), to see where a step's time goes.
#[derive(Debug, Clone, Copy)]
struct Trace {
    start: Instant,
    on: bool,
}

impl Trace {
    fn mark(&self, what: &str) {
        if self.on {
            eprintln!(
                "      floor +{:>7.1} ms  {what}",
                self.start.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}

/// The floor for one stack file, its objects named `{prefix}_…` / `{prefix}-…`.
pub struct Floor {
    pub trace: bool,
    prefix: String,
    specs: Vec<Spec>,
    volumes: Vec<String>,
}

/// Resolves to the container's id once the service is started (or healthy).
type Ready = Shared<BoxFuture<'static, Result<String, String>>>;

impl Floor {
    pub fn new(stack_yaml: &str, prefix: &str) -> Result<Floor> {
        let file: File = stackctl::stack::load::from_yaml_str(stack_yaml)
            .map_err(|e| anyhow!("read the benchmark stack: {e}"))?;
        let volumes: Vec<String> = file
            .volumes
            .keys()
            .map(|v| format!("{prefix}_{v}"))
            .collect();
        let mut specs = Vec::new();
        for (name, service) in &file.services {
            let binds = service
                .volumes
                .iter()
                .map(|v| match v.split_once(':') {
                    Some((source, rest)) if file.volumes.contains_key(source) => {
                        format!("{prefix}_{source}:{rest}")
                    }
                    _ => v.clone(),
                })
                .collect();
            let healthcheck = match &service.healthcheck {
                Some(h) => Some(HealthConfig {
                    test: Some(h.test.clone()),
                    interval: h.interval.as_deref().map(nanos).transpose()?,
                    timeout: h.timeout.as_deref().map(nanos).transpose()?,
                    retries: h.retries,
                    ..Default::default()
                }),
                None => None,
            };
            let depends_on = match &service.depends_on {
                None => Vec::new(),
                Some(DependsOn::List(list)) => list.iter().map(|d| (d.clone(), false)).collect(),
                Some(DependsOn::Map(map)) => map
                    .iter()
                    .map(|(d, c)| (d.clone(), c.condition == "service_healthy"))
                    .collect(),
            };
            specs.push(Spec {
                name: name.clone(),
                image: service.image.clone(),
                command: service.command.clone(),
                binds,
                init: service.init,
                healthcheck,
                depends_on,
            });
        }
        // Dependencies first, so each service's readiness futures exist when needed.
        let mut ordered: Vec<Spec> = Vec::new();
        while ordered.len() < specs.len() {
            let before = ordered.len();
            for spec in &specs {
                let placed = |n: &str| ordered.iter().any(|s| s.name == n);
                if !placed(&spec.name) && spec.depends_on.iter().all(|(d, _)| placed(d)) {
                    ordered.push(spec.clone());
                }
            }
            if ordered.len() == before {
                bail!("the benchmark stack has a dependency cycle or a missing dependency");
            }
        }
        // Services without dependencies first (still a valid order): the gate below needs
        // their start futures before any dependent is set up.
        ordered.sort_by_key(|spec| !spec.depends_on.is_empty());
        Ok(Floor {
            trace: false,
            prefix: prefix.to_string(),
            specs: ordered,
            volumes,
        })
    }

    pub fn network(&self) -> String {
        format!("{}_default", self.prefix)
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.prefix)
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(LABEL.to_string(), self.prefix.clone())])
    }

    pub fn filter(&self) -> String {
        format!("{LABEL}={}", self.prefix)
    }

    pub fn container_count(&self) -> usize {
        self.specs.len()
    }

    /// Nothing exists → every service running, and healthy where it has a healthcheck.
    pub async fn cold_up(&self) -> Result<Duration> {
        let start = Instant::now();
        let trace = Trace {
            start,
            on: self.trace,
        };
        let docker = connect()?;
        let network = NetworkCreateRequest {
            name: self.network(),
            driver: Some("bridge".into()),
            labels: Some(self.labels()),
            ..Default::default()
        };
        let volumes = self.volumes.iter().map(|name| {
            docker.create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(self.labels()),
                ..Default::default()
            })
        });
        tokio::try_join!(
            async {
                docker
                    .create_network(network)
                    .await
                    .context("create network")
            },
            async { try_join_all(volumes).await.context("create volume") },
        )?;
        trace.mark("network and volumes created");

        let since = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() - 1).to_string();
        let mut started: HashMap<String, Ready> = HashMap::new();
        let mut ready: HashMap<String, Ready> = HashMap::new();
        // Dependents are created once the services without dependencies have started: then
        // their creates run during the health wait, off the critical path, and do not
        // compete with the first creates and starts (all at once was measurably slower).
        let mut roots: Vec<Ready> = Vec::new();
        let mut gate: Option<Ready> = None;
        for spec in &self.specs {
            let create_gate = if spec.depends_on.is_empty() {
                None
            } else {
                Some(
                    gate.get_or_insert_with(|| {
                        let roots = roots.clone();
                        async move {
                            try_join_all(roots).await?;
                            Ok(String::new())
                        }
                        .boxed()
                        .shared()
                    })
                    .clone(),
                )
            };
            let name = self.container(&spec.name);
            let body = self.body(spec, None);
            let deps: Vec<Ready> = spec
                .depends_on
                .iter()
                .map(|(dep, healthy)| {
                    if *healthy {
                        ready[dep].clone()
                    } else {
                        started[dep].clone()
                    }
                })
                .collect();
            let d = docker.clone();
            let n = name.clone();
            let start_fut: Ready = async move {
                let create = async {
                    if let Some(gate) = create_gate {
                        gate.await.map_err(|e| anyhow!(e))?;
                    }
                    let created = d
                        .create_container(
                            Some(CreateContainerOptionsBuilder::default().name(&n).build()),
                            body,
                        )
                        .await
                        .map_err(|e| anyhow!(e));
                    trace.mark(&format!("created `{n}`"));
                    created
                };
                let (created, deps) = tokio::join!(create, try_join_all(deps));
                let id = created.map_err(|e| format!("create `{n}`: {e:#}"))?.id;
                deps?;
                d.start_container(&id, None::<StartContainerOptions>)
                    .await
                    .map_err(|e| format!("start `{n}`: {e}"))?;
                trace.mark(&format!("started `{n}`"));
                Ok(id)
            }
            .boxed()
            .shared();
            let ready_fut: Ready = if spec.healthcheck.is_some() {
                let d = docker.clone();
                let since = since.clone();
                let started = start_fut.clone();
                async move {
                    let id = started.await?;
                    wait_healthy(&d, &name, &id, &since).await?;
                    trace.mark(&format!("healthy `{name}`"));
                    Ok(id)
                }
                .boxed()
                .shared()
            } else {
                start_fut.clone()
            };
            if spec.depends_on.is_empty() {
                roots.push(start_fut.clone());
            }
            started.insert(spec.name.clone(), start_fut);
            ready.insert(spec.name.clone(), ready_fut);
        }
        try_join_all(ready.into_values())
            .await
            .map_err(|e| anyhow!(e))?;
        Ok(start.elapsed())
    }

    /// Everything already matches: one list call, checked.
    pub async fn noop_up(&self) -> Result<Duration> {
        let start = Instant::now();
        let docker = connect()?;
        let list = self.list(&docker).await?;
        let running = list
            .iter()
            .filter(|c| c.state.as_ref().map(|s| s.to_string()) == Some("running".into()))
            .count();
        if running != self.specs.len() {
            bail!("floor no-op up found {running} running containers");
        }
        Ok(start.elapsed())
    }

    /// Remove the containers (stopped gracefully) and the network; `volumes` too for purge.
    pub async fn down(&self, volumes: bool) -> Result<Duration> {
        let start = Instant::now();
        let docker = connect()?;
        let list = self.list(&docker).await?;
        let removals = list.iter().filter_map(|c| c.id.clone()).map(|id| {
            let d = docker.clone();
            async move {
                d.stop_container(&id, None::<StopContainerOptions>)
                    .await
                    .with_context(|| format!("stop `{id}`"))?;
                d.remove_container(&id, None)
                    .await
                    .with_context(|| format!("remove `{id}`"))
            }
        });
        try_join_all(removals).await?;
        let network = self.network();
        let volume_removals = self.volumes.iter().filter(|_| volumes).map(|v| {
            let d = docker.clone();
            async move {
                d.remove_volume(v, None::<bollard::query_parameters::RemoveVolumeOptions>)
                    .await
                    .with_context(|| format!("remove volume `{v}`"))
            }
        });
        tokio::try_join!(
            async {
                docker
                    .remove_network(&network)
                    .await
                    .with_context(|| format!("remove network `{network}`"))
            },
            try_join_all(volume_removals),
        )?;
        Ok(start.elapsed())
    }

    /// A one-off container on the stack network: run `command`, stream its output (and
    /// `stdin`, when given), collect the exit code, remove it. Returns the elapsed time and
    /// what it printed on stdout.
    pub async fn task(
        &self,
        service: &str,
        command: &[&str],
        stdin: Option<&Path>,
        serial: usize,
    ) -> Result<(Duration, String)> {
        let start = Instant::now();
        let docker = connect()?;
        let spec = self
            .specs
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| anyhow!("no service `{service}` in the benchmark stack"))?;
        let name = format!("{}-task-{serial}", self.prefix);
        let mut body = self.body(spec, Some(command));
        body.healthcheck = None;
        body.attach_stdout = Some(true);
        body.attach_stderr = Some(true);
        if stdin.is_some() {
            body.open_stdin = Some(true);
            body.stdin_once = Some(true);
            body.attach_stdin = Some(true);
        }
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .context("create task container")?;
        let result = run_attached(&docker, &name, stdin).await;
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .context("remove task container")?;
        let (code, stdout) = result?;
        if code != 0 {
            bail!("floor task exited with {code}");
        }
        Ok((start.elapsed(), stdout))
    }

    fn body(&self, spec: &Spec, command: Option<&[&str]>) -> ContainerCreateBody {
        let cmd = match command {
            Some(c) => Some(c.iter().map(|s| s.to_string()).collect()),
            None => spec.command.clone(),
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd,
            labels: Some(self.labels()),
            healthcheck: spec.healthcheck.clone(),
            host_config: Some(HostConfig {
                binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                init: spec.init,
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network(),
                    EndpointSettings {
                        aliases: Some(vec![spec.name.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    async fn list(&self, docker: &Docker) -> Result<Vec<bollard::models::ContainerSummary>> {
        docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&HashMap::from([("label", vec![self.filter()])]))
                    .build(),
            ))
            .await
            .context("list containers")
    }
}

/// Attach (before start, so no output is lost), start, stream stdin in while draining the
/// output, and take the exit code with a wait issued as soon as the container started.
async fn run_attached(docker: &Docker, name: &str, stdin: Option<&Path>) -> Result<(i64, String)> {
    let mut options = AttachContainerOptionsBuilder::default()
        .stream(true)
        .stdout(true)
        .stderr(true);
    if stdin.is_some() {
        options = options.stdin(true);
    }
    let AttachContainerResults { mut output, input } = docker
        .attach_container(name, Some(options.build()))
        .await
        .context("attach task container")?;
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await
        .context("start task container")?;
    // The file is read on its own thread in 1 MiB chunks (a few in flight), so the socket
    // writes never wait for a read: tokio's own file copy goes through the blocking pool in
    // small pieces and is slower than the engine.
    let writer = async move {
        if let Some(path) = stdin {
            let mut input = input;
            let mut chunks = read_chunks(path)?;
            while let Some(chunk) = chunks.recv().await {
                input.write_all(&chunk?).await.context("stream stdin")?;
            }
            input.shutdown().await.context("close stdin")?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let reader = async {
        let mut stdout = Vec::new();
        while let Some(frame) = output.next().await {
            if let LogOutput::StdOut { message } = frame.context("read task output")? {
                stdout.extend_from_slice(&message);
            }
        }
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&stdout).into_owned())
    };
    let wait = async {
        match docker
            .wait_container(name, None::<WaitContainerOptions>)
            .next()
            .await
        {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(anyhow!(e).context("wait for task container")),
            None => bail!("wait stream ended early"),
        }
    };
    let ((), stdout, code) = tokio::try_join!(writer, reader, wait)?;
    Ok((code, stdout))
}

/// `path` in 1 MiB chunks from a reader thread, at most 4 in flight.
fn read_chunks(path: &Path) -> Result<tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || loop {
        let mut chunk = vec![0u8; 1 << 20];
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                chunk.truncate(n);
                if sender.blocking_send(Ok(chunk)).is_err() {
                    break;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                let _ = sender.blocking_send(Err(err));
                break;
            }
        }
    });
    Ok(receiver)
}

/// The container's `health_status: healthy` event (replayed from `since` if it came first).
async fn wait_healthy(
    docker: &Docker,
    container: &str,
    id: &str,
    since: &str,
) -> Result<(), String> {
    let filters = HashMap::from([
        ("container", vec![id.to_string()]),
        ("event", vec!["health_status".to_string()]),
    ]);
    let mut events = docker.events(Some(
        EventsOptionsBuilder::default()
            .since(since)
            .filters(&filters)
            .build(),
    ));
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("events of `{container}`: {e}"))?;
        match event.action.as_deref() {
            Some("health_status: healthy") => return Ok(()),
            Some("health_status: unhealthy") => return Err(format!("`{container}` is unhealthy")),
            _ => {}
        }
    }
    Err(format!(
        "event stream ended before `{container}` was healthy"
    ))
}

pub fn connect() -> Result<Docker> {
    let docker = match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => Docker::connect_with_defaults(),
        _ => Docker::connect_with_local_defaults(),
    }
    .context("connect to the Docker engine")?;
    Ok(docker)
}

/// `1s`, `500ms`, `2m` → nanoseconds.
fn nanos(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| anyhow!("duration `{text}` has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .with_context(|| format!("duration `{text}`"))?;
    let scale = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => bail!("duration `{text}`: unknown unit `{unit}`"),
    };
    Ok(number * scale)
}
