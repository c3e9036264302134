//! The Docker engine as a [`Target`]: the one place where a plan's specs become the engine's
//! requests ([`container_config`], [`build_request`]), and where the engine's answers become
//! the executor's errors (a port already allocated, a dependency that turned unhealthy).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Result};

use super::target::{Phase, Readiness, Target};
use super::{hooks, Interrupt};
use crate::engine::build::BuildRequest;
use crate::engine::containers::{
    port_in_use, ContainerConfig, CopiedFile, Endpoint, Extras, Healthcheck, PublishedPort,
};
use crate::engine::{Engine, EngineError};
use crate::error::{Failure, Interrupted};
use crate::observed::Observed;
use crate::output::Progress;
use crate::plan::container::{self, ContainerSpec, PortSpec};
use crate::plan::image::ImageSpec;
use crate::plan::up::{Action, Change};
use crate::registry::{credentials_for, Credentials, RegistryError};
use crate::stack::model::{PullPolicy, Service};
use crate::stack::LoadedStack;

/// How often health and exit states are polled. Each poll is one inspect (about a
/// millisecond on a local engine); every millisecond between the health change and the poll
/// that sees it delays the dependents' start, and `up` itself (250 ms cost 125 ms on average).
const POLL: Duration = Duration::from_millis(50);

/// The engine request for a container spec: every field, the labels with the config hash.
pub fn container_config(spec: &ContainerSpec) -> ContainerConfig {
    ContainerConfig {
        name: spec.name.clone(),
        image: spec.image.clone(),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: spec.env.clone(),
        ports: spec
            .ports
            .iter()
            .map(|p| PublishedPort {
                container_port: p.container_port,
                protocol: p.protocol.clone(),
                host_ip: p.host_ip.clone(),
                host_port: p.host_port.clone(),
            })
            .collect(),
        binds: spec
            .binds
            .iter()
            .cloned()
            .chain(
                spec.kept_volumes
                    .iter()
                    .map(|v| format!("{}:{}", v.name, v.path)),
            )
            .collect(),
        anonymous_volumes: spec
            .anonymous_volumes
            .iter()
            .filter(|path| !spec.kept_volumes.iter().any(|v| &v.path == *path))
            .cloned()
            .collect(),
        volumes_from: spec.volumes_from.clone(),
        networks: spec
            .networks
            .iter()
            .map(|n| Endpoint {
                network: n.network.clone(),
                aliases: n.aliases.clone(),
                ipv4_address: n.ipv4_address.clone(),
                ipv6_address: n.ipv6_address.clone(),
            })
            .collect(),
        healthcheck: spec.healthcheck.as_ref().map(|h| Healthcheck {
            test: h.test.clone(),
            interval_ns: h.interval_ns,
            timeout_ns: h.timeout_ns,
            retries: h.retries,
            start_period_ns: h.start_period_ns,
            start_interval_ns: h.start_interval_ns,
        }),
        restart: spec.restart.clone(),
        labels: {
            let mut labels: HashMap<String, String> = spec.labels().into_iter().collect();
            if !spec.kept_volumes.is_empty() {
                let kept: Vec<&str> = spec.kept_volumes.iter().map(|v| v.name.as_str()).collect();
                labels.insert(crate::names::KEPT_VOLUMES.to_string(), kept.join(","));
            }
            labels
        },
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        init: spec.init,
        stop_signal: spec.stop_signal.clone(),
        stop_timeout_s: spec.stop_timeout_s,
        memory: spec.memory,
        nano_cpus: spec.nano_cpus,
        hostname: spec.hostname.clone(),
        extra_hosts: spec.extra_hosts.clone(),
        attach: None,
        extras: Extras {
            network_mode: spec.network_mode.clone(),
            expose: spec.expose.clone(),
            stdin_open: spec.stdin_open,
            tty: spec.tty,
            read_only: spec.read_only,
            tmpfs: map(&spec.tmpfs),
            cap_add: spec.cap_add.clone(),
            cap_drop: spec.cap_drop.clone(),
            ulimits: spec.ulimits.clone(),
            links: spec.links.clone(),
            memory_reservation: spec.memory_reservation,
            pids_limit: spec.pids_limit,
            log_driver: spec.log_driver.clone(),
            log_options: map(&spec.log_options),
            devices: spec.devices.clone(),
            security_opt: spec.security_opt.clone(),
            shm_size: spec.shm_size,
            sysctls: map(&spec.sysctls),
            pid: spec.pid.clone(),
            ipc: spec.ipc.clone(),
            platform: spec.platform.clone(),
            privileged: spec.privileged,
            dns: spec.dns.clone(),
            dns_search: spec.dns_search.clone(),
            dns_opt: spec.dns_opt.clone(),
            group_add: spec.group_add.clone(),
            runtime: spec.runtime.clone(),
            cpu_shares: spec.cpu_shares,
            cpuset: spec.cpuset.clone(),
            cpu_quota: spec.cpu_quota,
            cpu_period: spec.cpu_period,
            cpu_rt_period: spec.cpu_rt_period,
            cpu_rt_runtime: spec.cpu_rt_runtime,
            oom_score_adj: spec.oom_score_adj,
            oom_kill_disable: spec.oom_kill_disable,
            mem_swappiness: spec.mem_swappiness,
            memswap_limit: spec.memswap_limit,
            domainname: spec.domainname.clone(),
            userns_mode: spec.userns_mode.clone(),
            uts: spec.uts.clone(),
            cgroup_parent: spec.cgroup_parent.clone(),
            cgroup: spec.cgroup.clone(),
            device_cgroup_rules: spec.device_cgroup_rules.clone(),
            storage_opt: map(&spec.storage_opt),
            blkio_weight: spec.blkio_config.as_ref().and_then(|b| b.weight),
            blkio_weight_device: blkio(&spec.blkio_config, |b| {
                b.weight_device
                    .iter()
                    .map(|d| (d.path.clone(), d.weight))
                    .collect()
            }),
            blkio_read_bps: blkio(&spec.blkio_config, |b| {
                b.device_read_bps
                    .iter()
                    .map(|d| (d.path.clone(), d.rate.0))
                    .collect()
            }),
            blkio_write_bps: blkio(&spec.blkio_config, |b| {
                b.device_write_bps
                    .iter()
                    .map(|d| (d.path.clone(), d.rate.0))
                    .collect()
            }),
            blkio_read_iops: blkio(&spec.blkio_config, |b| {
                b.device_read_iops
                    .iter()
                    .map(|d| (d.path.clone(), d.rate))
                    .collect()
            }),
            device_requests: spec
                .device_requests
                .iter()
                .map(|request| crate::engine::containers::DeviceRequest {
                    driver: request.driver.clone(),
                    count: request.count,
                    device_ids: request.device_ids.clone(),
                    capabilities: request.capabilities.clone(),
                    options: request
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
                .collect(),
            blkio_write_iops: blkio(&spec.blkio_config, |b| {
                b.device_write_iops
                    .iter()
                    .map(|d| (d.path.clone(), d.rate))
                    .collect()
            }),
        },
        files: spec
            .files
            .iter()
            .map(|f| CopiedFile {
                path: f.path.clone(),
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
                content: f.content.clone(),
            })
            .collect(),
    }
}

fn blkio<T>(
    config: &Option<crate::stack::model::BlkioConfig>,
    pick: impl Fn(&crate::stack::model::BlkioConfig) -> Vec<T>,
) -> Vec<T> {
    config.as_ref().map(pick).unwrap_or_default()
}

fn map(
    sorted: &std::collections::BTreeMap<String, String>,
) -> std::collections::HashMap<String, String> {
    sorted.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Pull an image with the credentials Docker's config gives for its registry; failures say
/// what to do (`docker login REGISTRY`, a tag that does not exist, a registry down).
pub async fn pull_image(
    engine: &Engine,
    image: &str,
    owner: &str,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<u64> {
    let credentials = credentials(engine, image).await?;
    engine
        .pull_image(image, credentials.as_ref(), progress)
        .await
        .map_err(|err| RegistryError::new("pull", image, owner, &err.message).into())
}

/// Push an image to the registry its name holds, with the credentials Docker's config gives.
pub async fn push_image(
    engine: &Engine,
    image: &str,
    owner: &str,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<u64> {
    let credentials = credentials(engine, image).await?;
    engine
        .push_image(image, credentials.as_ref(), progress)
        .await
        .map_err(|err| RegistryError::new("push", image, owner, &err.message).into())
}

/// The lookup may run a credential helper (a process): off the async threads. A name
/// without a registry uses the engine's default one, whose config key the engine tells.
pub async fn credentials(engine: &Engine, image: &str) -> Result<Option<Credentials>> {
    let default_key = if crate::registry::registry_of(image).is_none() {
        engine.index_server_address().await?
    } else {
        String::new()
    };
    let image = image.to_string();
    tokio::task::spawn_blocking(move || credentials_for(&image, &default_key))
        .await?
        .map_err(|err| err.into_failure().into())
}

/// The engine request for an image spec. The credentials of its base images' registries
/// are looked up as `pull` and `push` look them up: a config that cannot give them is the
/// same error here (not a build that goes on without them).
pub fn build_request(image: &ImageSpec) -> Result<BuildRequest> {
    Ok(BuildRequest {
        context: image.context.clone(),
        dockerfile: image.dockerfile.clone(),
        args: image.args.clone(),
        target: image.target.clone(),
        labels: image.labels.clone(),
        tag: image.tag.clone(),
        no_cache: image.no_cache,
        dockerfile_inline: image.dockerfile_inline.clone(),
        cache_from: image.cache_from.clone(),
        network: image.network.clone(),
        shm_size: image.shm_size,
        pull: image.pull,
        registry_auth: base_credentials(image).map_err(|err| err.into_failure())?,
        also_tags: image.also_tags.clone(),
    })
}

/// Credentials for the registries the Dockerfile's `FROM` images name, so the builder can
/// pull a private base image (none found: the build goes without, as a pull does).
fn base_credentials(
    image: &ImageSpec,
) -> Result<Vec<Credentials>, crate::registry::CredentialError> {
    let path = image
        .context
        .join(image.dockerfile.as_deref().unwrap_or("Dockerfile"));
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<Credentials> = Vec::new();
    for base in crate::registry::from_images(&text, &image.args) {
        if crate::registry::registry_of(&base).is_none() {
            continue;
        }
        if let Some(credentials) = credentials_for(&base, "")? {
            if !found.iter().any(|c| c.server == credentials.server) {
                found.push(credentials);
            }
        }
    }
    Ok(found)
}

/// A stage on a Docker engine.
pub struct DockerTarget<'a> {
    pub engine: &'a Engine,
    pub loaded: &'a LoadedStack,
    pub interrupt: Interrupt,
    /// Where lifecycle hooks report their lines (none: only their failures are told).
    pub progress: Option<Progress>,
    /// The bound on each `pre_start` step and `post_start` command.
    pub hook_timeout: Duration,
}

impl<'a> DockerTarget<'a> {
    pub fn new(engine: &'a Engine, loaded: &'a LoadedStack) -> Self {
        DockerTarget {
            engine,
            loaded,
            interrupt: Interrupt::Process,
            progress: None,
            hook_timeout: Duration::from_secs(300),
        }
    }

    /// Report lifecycle hooks on `progress`, each bounded by `timeout`.
    pub fn with_hooks(mut self, progress: Progress, timeout: Duration) -> Self {
        self.progress = Some(progress);
        self.hook_timeout = timeout;
        self
    }

    /// The stack's definition of a service.
    fn definition(&self, service: &str) -> Option<&'a Service> {
        self.loaded.stack.services.get(service)
    }

    /// Run the service's `pre_stop` commands in its container when it is running.
    async fn pre_stop(&self, service: &str, container: &str) -> Result<()> {
        let Some(definition) = self.definition(service) else {
            return Ok(());
        };
        if definition.pre_stop.is_empty() {
            return Ok(());
        }
        let running = self
            .engine
            .container_status(container)
            .await?
            .is_some_and(|s| s.running);
        if running {
            hooks::run_pre_stop(
                self.engine,
                service,
                definition,
                container,
                self.progress.as_ref(),
            )
            .await;
        }
        Ok(())
    }

    /// Run the service's `post_start` commands in its container.
    async fn post_start(&self, service: &str, container: &str, phase: Phase<'_>) -> Result<()> {
        let Some(definition) = self.definition(service) else {
            return Ok(());
        };
        if definition.post_start.is_empty() {
            return Ok(());
        }
        phase("post_start")?;
        hooks::run_post_start(
            self.engine,
            service,
            container,
            &definition.post_start,
            self.hook_timeout,
            self.progress.as_ref(),
        )
        .await
    }

    /// Run the `pre_start` steps of `spec`.
    async fn pre_start(&self, service: &str, spec: &ContainerSpec, kept: &str) -> Result<()> {
        hooks::run_pre_start(
            self.engine,
            service,
            &spec.name,
            &spec.pre_start,
            self.hook_timeout,
            &self.interrupt,
            self.progress.as_ref(),
            kept,
        )
        .await
    }

    /// A recreate with `pre_start` steps: the new container is created beside the old one
    /// (named `NAME--next`, same labels), the steps run, and only when every one passed is
    /// the old container stopped (after its `pre_stop` commands) and removed, the new one
    /// renamed and started. When a step fails the new container goes and the old one keeps
    /// running: its config hash is still the old one, so the next `up` tries again.
    async fn swap(&self, service: &str, spec: &ContainerSpec, phase: Phase<'_>) -> Result<()> {
        let next = format!("{}--next", spec.name);
        let mut config = container_config(spec);
        config.name = next.clone();
        phase("creating")?;
        self.engine.create_container(&config).await?;
        let prepared = async {
            phase("pre_start")?;
            self.pre_start(
                service,
                spec,
                "the old container keeps running (nothing was changed)",
            )
            .await?;
            phase("stopping")?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if let Err(err) = prepared {
            let _ = self.engine.remove_container(&next).await;
            return Err(err);
        }
        if let Err(err) = self.check_new_ports(service, spec).await {
            let _ = self.engine.remove_container(&next).await;
            return Err(err);
        }
        // From here on the old container goes: the swap is not given up on an interrupt.
        self.pre_stop(service, &spec.name).await?;
        self.engine.stop_container(&spec.name, None).await?;
        self.engine.remove_container(&spec.name).await?;
        self.engine.rename_container(&next, &spec.name).await?;
        phase("starting")?;
        self.engine
            .start_container(&spec.name)
            .await
            .map_err(|err| start_error(self.loaded, service, err))?;
        self.post_start(service, &spec.name, phase).await
    }

    /// The stopped container of `spec`'s name replaced by a new one that mounts its
    /// anonymous volumes (`spec.kept_volumes`): the new one is created beside it (as
    /// `NAME--next`) first, so the volumes are in use by a container at every moment and the
    /// old one's removal leaves them; its other anonymous volumes go with it.
    async fn replace_keeping_volumes(&self, spec: &ContainerSpec) -> Result<()> {
        let next = format!("{}--next", spec.name);
        let mut config = container_config(spec);
        config.name = next.clone();
        // A `--next` a killed run left is cleared by the create (same stage and service).
        self.engine.create_container(&config).await?;
        self.engine.remove_container(&spec.name).await?;
        self.engine.rename_container(&next, &spec.name).await?;
        Ok(())
    }

    /// Before a recreate stops the running container: each host port the new container
    /// publishes that the old one does not is free. Taken: by another container (any engine),
    /// or by a process on this machine (a local engine). The same error as a start that
    /// finds the port taken, with nothing stopped.
    async fn check_new_ports(&self, service: &str, spec: &ContainerSpec) -> Result<()> {
        let fixed: Vec<&PortSpec> = spec
            .ports
            .iter()
            .filter(|p| !p.host_port.is_empty() && p.host_port.parse::<u16>().is_ok())
            .collect();
        if fixed.is_empty() {
            return Ok(());
        }
        let held = self.engine.host_ports(&spec.name).await?;
        for port in fixed {
            if held.contains(&(port.host_port.clone(), port.protocol.clone())) {
                continue;
            }
            let published = format!("{}/{}", port.host_port, port.protocol);
            let by_container = self
                .engine
                .containers_publishing(&published)
                .await?
                .iter()
                .any(|name| *name != spec.name);
            let by_process = !self.engine.is_remote() && taken_here(port);
            if by_container || by_process {
                let address = if port.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    port.host_ip.as_str()
                };
                let err = EngineError::other(
                    "start container",
                    &spec.name,
                    format!(
                        "Bind for {address}:{} failed: port is already allocated",
                        port.host_port
                    ),
                );
                return Err(start_error(self.loaded, service, err));
            }
        }
        Ok(())
    }

    /// Stop a container, giving up the wait (not the stop) on an interrupt: the engine
    /// finishes the stop on its own, and nothing else is started after it.
    async fn stop(&self, name: &str) -> Result<()> {
        tokio::select! {
            stopped = self.engine.stop_container(name, None) => Ok(stopped?),
            _ = self.interrupt.wait() => Err(Interrupted.into()),
        }
    }

    /// Create, recreate, start or restart one service's container, phase by phase.
    async fn service(
        &self,
        service: &str,
        spec: &ContainerSpec,
        change: &Change,
        phase: Phase<'_>,
    ) -> Result<()> {
        if matches!(change, Change::Unchanged(_)) {
            return Ok(());
        }
        let steps = !spec.pre_start.is_empty() && !spec.pre_start_elsewhere;
        if steps && matches!(change, Change::Recreate(_)) {
            return self.swap(service, spec, phase).await;
        }
        if matches!(change, Change::Recreate(_)) {
            // A published port the new container cannot have fails here, with the old one
            // still serving.
            self.check_new_ports(service, spec).await?;
        }
        if matches!(change, Change::Recreate(_) | Change::Restart(_)) {
            phase("stopping")?;
            self.pre_stop(service, &spec.name).await?;
            self.stop(&spec.name).await?;
        }
        if matches!(change, Change::Recreate(_)) && !spec.kept_volumes.is_empty() {
            phase("creating")?;
            self.replace_keeping_volumes(spec).await?;
        } else if matches!(change, Change::Recreate(_)) {
            self.engine.remove_container(&spec.name).await?;
        }
        let created = matches!(change, Change::Recreate(_)) && !spec.kept_volumes.is_empty();
        if matches!(change, Change::Create | Change::Recreate(_)) && !created {
            phase("creating")?;
            self.engine
                .create_container(&container_config(spec))
                .await?;
            if steps {
                // A container that never started would look unchanged to the next `up`:
                // it goes with the failed step, so that the steps run again.
                let ran = async {
                    phase("pre_start")?;
                    self.pre_start(service, spec, "the service was not started")
                        .await
                }
                .await;
                if let Err(err) = ran {
                    let _ = self.engine.remove_container(&spec.name).await;
                    return Err(err);
                }
            }
        }
        phase("starting")?;
        self.engine
            .start_container(&spec.name)
            .await
            .map_err(|err| start_error(self.loaded, service, err))?;
        self.post_start(service, &spec.name, phase).await
    }
}

impl DockerTarget<'_> {
    /// How long ago the images of services with a timed `pull_policy` were last pulled: one
    /// inspect each, side by side with the observe; nothing at all for the other policies.
    async fn image_ages(&self) -> Result<HashMap<String, Duration>, EngineError> {
        let loaded = self.loaded;
        let mut timed: Vec<String> = loaded
            .stack
            .services
            .iter()
            .filter(|(_, service)| matches!(service.pull_policy, Some(PullPolicy::Every(_))))
            .map(|(name, service)| container::service_image(loaded, name, service))
            .collect();
        timed.sort();
        timed.dedup();
        let now = SystemTime::now();
        let checks = timed.iter().map(|image| async move {
            let at = self.engine.image_refreshed_at(image).await?;
            Ok::<_, EngineError>(at.map(|at| {
                let age = now.duration_since(at).unwrap_or(Duration::ZERO);
                (image.clone(), age)
            }))
        });
        let ages = futures_util::future::try_join_all(checks).await?;
        Ok(ages.into_iter().flatten().collect())
    }
}

/// The images of the stack's services and data containers that the engine holds
/// (reference → image ID), and the digest of the build inputs recorded on those stackctl
/// built (reference → digest).
pub(crate) fn stack_images(
    loaded: &LoadedStack,
    index: &crate::engine::images::ImageIndex,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let mut references: Vec<String> = loaded
        .stack
        .services
        .iter()
        .map(|(name, service)| container::service_image(loaded, name, service))
        .collect();
    references.extend(
        loaded
            .stack
            .data_containers
            .keys()
            .map(|name| container::data_image(loaded, name)),
    );
    let contexts = references
        .iter()
        .filter_map(|r| {
            let found = index
                .contexts
                .get(r)
                .or_else(|| index.contexts.get(&format!("{r}:latest")));
            found.map(|c| (r.clone(), c.clone()))
        })
        .collect();
    let images = references
        .into_iter()
        .filter_map(|r| index.resolve(&r).map(|id| (r, id)))
        .collect();
    (images, contexts)
}

impl Target for DockerTarget<'_> {
    async fn observe(&self) -> Result<Observed> {
        let loaded = self.loaded;
        let custom_names = container::custom_names(loaded);
        let (mut observed, index, ages) = tokio::try_join!(
            self.engine
                .observe_named(&loaded.stage, &loaded.project, &custom_names),
            self.engine.image_index(),
            self.image_ages()
        )?;
        observed.image_ages = ages;
        (observed.images, observed.image_contexts) = stack_images(loaded, &index);
        Ok(observed)
    }

    async fn build(&self, image: &ImageSpec, output: &(dyn Fn(&str) + Send + Sync)) -> Result<()> {
        self.engine
            .build_image(&build_request(image)?, &|line: &str| output(line))
            .await?;
        Ok(())
    }

    async fn pull(
        &self,
        image: &str,
        owner: &str,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64> {
        let owner = crate::registry::owner_label(self.loaded, owner);
        pull_image(self.engine, image, &owner, progress).await
    }

    async fn apply(&self, action: &Action, phase: Phase<'_>) -> Result<()> {
        let engine = self.engine;
        match action {
            Action::Build { .. } | Action::Pull { .. } | Action::MissingImage { .. } => Ok(()),
            Action::ExternalNetwork { name, key } => {
                if engine.network_exists(name).await? {
                    return Ok(());
                }
                Err(Failure::new(format!(
                    "external network `{name}` (networks.{key}) does not exist"
                ))
                .with_hint(format!("create it with `docker network create {name}`, or drop `external: true` to let stackctl create it"))
                .into())
            }
            Action::ExternalVolume { name, key } => {
                if engine.volume_exists(name).await? {
                    return Ok(());
                }
                Err(Failure::new(format!(
                    "external volume `{name}` (volumes.{key}) does not exist"
                ))
                .with_hint(format!("create it with `docker volume create {name}`, or drop `external: true` to let stackctl create it"))
                .into())
            }
            Action::CreateNetwork { spec } => {
                phase("creating")?;
                engine.ensure_network(spec).await?;
                Ok(())
            }
            Action::CreateVolume { spec } => {
                phase("creating")?;
                Ok(engine
                    .create_volume(
                        &spec.name,
                        spec.driver.as_deref(),
                        &spec.labels,
                        &spec.options,
                    )
                    .await?)
            }
            Action::DataContainer { spec, exists, .. } => {
                if *exists {
                    return Ok(());
                }
                phase("creating")?;
                engine.create_container(&container_config(spec)).await?;
                Ok(())
            }
            Action::Service {
                service,
                spec,
                change,
                ..
            } => self.service(service, spec, change, phase).await,
            Action::Orphan { name, remove } => {
                if !*remove {
                    return Ok(());
                }
                phase("removing")?;
                self.stop(name).await?;
                Ok(engine.remove_container(name).await?)
            }
            Action::Stale { name, service } => {
                self.pre_stop(service, name).await?;
                phase("removing")?;
                self.stop(name).await?;
                Ok(engine.remove_container(name).await?)
            }
        }
    }

    async fn wait(
        &self,
        service: &str,
        container: &str,
        readiness: Readiness,
        deadline: Instant,
    ) -> Result<()> {
        let waited = async {
            match readiness {
                Readiness::Healthy => wait_healthy(self.engine, service, container, deadline).await,
                Readiness::Completed => {
                    wait_completed(self.engine, service, container, deadline).await
                }
                Readiness::NotFailed => not_failed(self.engine, service, container).await,
            }
        };
        tokio::select! {
            result = waited => result,
            _ = self.interrupt.wait() => Err(Interrupted.into()),
        }
    }
}

/// A start failure, with the friendly form of "port is already allocated".
pub fn start_error(loaded: &LoadedStack, service: &str, mut err: EngineError) -> anyhow::Error {
    if err.message.contains("could not select device driver") && err.hint.is_none() {
        let location = loaded
            .locate(&["services", service, "gpus"])
            .or_else(|| {
                loaded.locate(&[
                    "services",
                    service,
                    "deploy",
                    "resources",
                    "reservations",
                    "devices",
                ])
            })
            .map(|l| l.to_string())
            .unwrap_or_else(|| display_file(loaded));
        err.hint = Some(format!(
            "the engine has no driver for the devices `{service}` asks for ({location}); for NVIDIA GPUs install the NVIDIA container toolkit on the engine's host, or remove the request"
        ));
        return err.into();
    }
    let Some(port) = port_in_use(&err) else {
        return err.into();
    };
    let location = loaded
        .locate(&["services", service, "ports"])
        .map(|l| l.to_string())
        .unwrap_or_else(|| display_file(loaded));
    let port_text = if port.is_empty() {
        "a published port".to_string()
    } else {
        format!("port {port}")
    };
    let hint = match port_variables(loaded, service).first() {
        Some(var) => format!(
            "set {var} in .env.{} or stop the other container",
            loaded.stage
        ),
        None => format!(
            "change the published port of `{service}` in {} or stop the other container",
            display_file(loaded)
        ),
    };
    Failure::new(format!(
        "{port_text} is already allocated on this host (service `{service}`, {location})"
    ))
    .with_hint(hint)
    .into()
}

/// Whether a process on this machine holds the port (a bind fails with "in use"; any
/// other failure, such as a privileged port, says nothing).
fn taken_here(port: &container::PortSpec) -> bool {
    let Ok(number) = port.host_port.parse::<u16>() else {
        return false;
    };
    let address = if port.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        port.host_ip.as_str()
    };
    let Ok(ip) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    let at = std::net::SocketAddr::new(ip, number);
    let result = if port.protocol == "udp" {
        std::net::UdpSocket::bind(at).map(drop)
    } else {
        std::net::TcpListener::bind(at).map(drop)
    };
    matches!(result, Err(err) if err.kind() == std::io::ErrorKind::AddrInUse)
}

fn display_file(loaded: &LoadedStack) -> String {
    loaded
        .file
        .strip_prefix(&loaded.dir)
        .unwrap_or(&loaded.file)
        .display()
        .to_string()
}

/// Variables used in a service's `ports:` entries (`"${API_PORT:-5000}:5000"` → `API_PORT`),
/// from what loading recorded: the stack file is never read twice.
fn port_variables(loaded: &LoadedStack, service: &str) -> Vec<String> {
    let mut vars: Vec<String> = Vec::new();
    for used in &loaded.variables {
        let in_ports = used.path.len() >= 3
            && used.path[0] == "services"
            && used.path[1] == service
            && used.path[2] == "ports";
        if in_ports && !vars.contains(&used.name) {
            vars.push(used.name.clone());
        }
    }
    vars
}

/// Wait until a service's container is healthy; fail with its health output and logs when
/// it turns unhealthy, exits, or the deadline passes.
pub async fn wait_healthy(
    engine: &Engine,
    service: &str,
    container: &str,
    deadline: Instant,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = engine.container_status(container).await?;
        let Some(status) = status else {
            return Err(anyhow!(
                "service `{service}`: container `{container}` disappeared while waiting for health"
            ));
        };
        match status.health.as_deref() {
            Some("healthy") => return Ok(()),
            None if status.running => return Ok(()),
            Some("unhealthy") => {
                return Err(failure(
                    engine,
                    service,
                    container,
                    &format!("is unhealthy after {:.1}s", started.elapsed().as_secs_f64()),
                    &status.health_log,
                )
                .await)
            }
            _ => {}
        }
        if !status.running && status.status != "created" && status.status != "restarting" {
            let what = format!(
                "exited with code {} while waiting for health",
                status.exit_code.unwrap_or(-1)
            );
            return Err(failure(engine, service, container, &what, &status.health_log).await);
        }
        if Instant::now() >= deadline {
            let what = format!(
                "is not healthy after {:.0}s (health: {})",
                started.elapsed().as_secs_f64(),
                status.health.as_deref().unwrap_or("none")
            );
            return Err(failure(engine, service, container, &what, &status.health_log).await);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until a one-shot service exits 0; fail naming it, with its logs, otherwise.
pub async fn wait_completed(
    engine: &Engine,
    service: &str,
    container: &str,
    deadline: Instant,
) -> Result<()> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let code = match tokio::time::timeout(remaining, engine.wait_exit(container)).await {
        Ok(code) => code?,
        Err(_) => {
            let what = format!(
                "did not complete within the timeout ({:.0}s)",
                remaining.as_secs_f64()
            );
            return Err(failure(engine, service, container, &what, &[]).await);
        }
    };
    if code == 0 {
        Ok(())
    } else {
        let what = format!("exited with code {code}");
        Err(failure(engine, service, container, &what, &[]).await)
    }
}

/// A service just started must not have exited with a failure already.
async fn not_failed(engine: &Engine, service: &str, container: &str) -> Result<()> {
    match engine.container_status(container).await? {
        Some(status)
            if !status.running
                && status.status == "exited"
                && status.exit_code.unwrap_or(0) != 0 =>
        {
            let what = format!(
                "exited with code {} right after it started",
                status.exit_code.unwrap_or(-1)
            );
            Err(failure(engine, service, container, &what, &[]).await)
        }
        _ => Ok(()),
    }
}

/// A failed wait, with the last health output and the last log lines.
async fn failure(
    engine: &Engine,
    service: &str,
    container: &str,
    what: &str,
    health_log: &[String],
) -> anyhow::Error {
    let mut message = format!("service `{service}` {what}");
    if let Some(last) = health_log.last() {
        message.push_str("\n  last health check: ");
        message.push_str(&last.replace('\n', "\n    "));
    }
    match engine.log_tail(container, 20).await {
        Ok(lines) if !lines.is_empty() => {
            message.push_str(&format!(
                "\n  last {} log lines of `{container}`:",
                lines.len()
            ));
            for line in lines {
                message.push_str("\n    ");
                message.push_str(&line);
            }
        }
        _ => {}
    }
    Failure::new(message)
        .with_hint(format!(
            "see `stackctl logs {service}`; `up --timeout S` waits longer"
        ))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::containers::create_body;

    fn spec_of(yaml: &str) -> ContainerSpec {
        let loaded = crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo");
        let service = &loaded.stack.services["api"];
        container::service(&loaded, "api", service, "sha256:abc")
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
    fn every_model_key_reaches_the_create_request() {
        let spec = spec_of(API);
        let body = create_body(&container_config(&spec), false);
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
            host.restart_policy
                .and_then(|r| r.name)
                .map(|name| name.to_string()),
            Some("unless-stopped".to_string())
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
        // A service container is not attached and keeps its log file.
        assert_eq!(body.open_stdin, None);
        assert_eq!(host.log_config, None);
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
    fn every_compose_key_reaches_the_create_request() {
        let spec = spec_of(
            r#"
services:
  api:
    image: busybox:latest
    expose: [80, "9000-9001/udp"]
    stdin_open: true
    tty: true
    read_only: true
    tmpfs: ["/run:size=1m"]
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    ulimits: { nofile: { soft: 1024, hard: 2048 }, nproc: 64 }
    links: ["db:database"]
    deploy:
      resources:
        limits: { pids: 50 }
        reservations: { memory: 32m }
      restart_policy: { condition: on-failure, max_attempts: 3 }
    logging: { driver: json-file, options: { max-size: 1m } }
    devices: ["/dev/fuse:/dev/fuse2:r"]
    security_opt: ["no-new-privileges:true"]
    shm_size: 64m
    sysctls: ["net.core.somaxconn=1024"]
    pid: host
    ipc: shareable
    platform: linux/amd64
    privileged: true
    dns: [10.0.0.2]
    dns_search: example.com
    dns_opt: [use-vc]
    group_add: [audio, 1001]
    volumes:
      - { type: tmpfs, target: /cache, tmpfs: { size: 2m, mode: 0700 } }
      - { type: bind, source: /srv, target: /srv, read_only: true, bind: { propagation: rslave } }
  db:
    image: busybox:latest
"#,
        );
        let config = container_config(&spec);
        let body = create_body(&config, false);
        let host = body.host_config.clone().expect("host config");
        assert_eq!(
            body.exposed_ports,
            Some(vec!["80/tcp".into(), "9000/udp".into(), "9001/udp".into()])
        );
        assert_eq!((body.open_stdin, body.tty), (Some(true), Some(true)));
        assert_eq!(host.readonly_rootfs, Some(true));
        let tmpfs = host.tmpfs.expect("tmpfs");
        assert_eq!(tmpfs["/run"], "size=1m");
        assert_eq!(tmpfs["/cache"], "size=2097152,mode=700");
        assert_eq!(host.binds, Some(vec!["/srv:/srv:ro,rslave".to_string()]));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".into()]));
        assert_eq!(host.cap_drop, Some(vec!["ALL".into()]));
        let ulimits = host.ulimits.expect("ulimits");
        assert_eq!(ulimits[0].name.as_deref(), Some("nofile"));
        assert_eq!((ulimits[0].soft, ulimits[0].hard), (Some(1024), Some(2048)));
        assert_eq!((ulimits[1].soft, ulimits[1].hard), (Some(64), Some(64)));
        let endpoints = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .expect("endpoints");
        assert_eq!(
            endpoints["dev-demo_default"].links,
            Some(vec!["dev-demo--db:database".into()])
        );
        assert_eq!(host.links, None);
        assert_eq!(host.pids_limit, Some(50));
        assert_eq!(host.memory_reservation, Some(32 << 20));
        let restart = host.restart_policy.expect("restart policy");
        assert_eq!(
            restart.name.map(|n| n.to_string()),
            Some("on-failure".into())
        );
        assert_eq!(restart.maximum_retry_count, Some(3));
        let log = host.log_config.expect("log config");
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.expect("options")["max-size"], "1m");
        let device = &host.devices.expect("devices")[0];
        assert_eq!(device.path_on_host.as_deref(), Some("/dev/fuse"));
        assert_eq!(device.path_in_container.as_deref(), Some("/dev/fuse2"));
        assert_eq!(device.cgroup_permissions.as_deref(), Some("r"));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges:true".into()])
        );
        assert_eq!(host.shm_size, Some(64 << 20));
        assert_eq!(host.sysctls.expect("sysctls")["net.core.somaxconn"], "1024");
        assert_eq!(host.pid_mode.as_deref(), Some("host"));
        assert_eq!(host.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(config.extras.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.dns, Some(vec!["10.0.0.2".into()]));
        assert_eq!(host.dns_search, Some(vec!["example.com".into()]));
        assert_eq!(host.dns_options, Some(vec!["use-vc".into()]));
        assert_eq!(host.group_add, Some(vec!["audio".into(), "1001".into()]));
    }

    #[test]
    fn resource_and_namespace_keys_reach_the_create_request() {
        let spec = spec_of(
            r#"
services:
  api:
    image: busybox:latest
    runtime: runc
    mem_reservation: 32m
    pids_limit: 100
    cpu_shares: 512
    cpuset: "0-1"
    cpu_quota: 50000
    cpu_period: 100ms
    cpu_rt_period: 1000000
    cpu_rt_runtime: 950ms
    oom_score_adj: 500
    oom_kill_disable: true
    mem_swappiness: 10
    memswap_limit: 1g
    domainname: example.com
    userns_mode: host
    uts: host
    cgroup_parent: /custom
    cgroup: private
    storage_opt: { size: 1G }
    device_cgroup_rules: ["c 1:3 mr"]
    external_links: ["redis:cache", "other"]
    blkio_config:
      weight: 300
      weight_device: [{ path: /dev/sda, weight: 400 }]
      device_read_bps: [{ path: /dev/sda, rate: 10m }]
      device_write_iops: [{ path: /dev/sda, rate: 120 }]
    gpus: all
    deploy:
      resources:
        reservations:
          devices: [{ driver: nvidia, device_ids: ["0"], capabilities: [gpu, compute] }]
"#,
        );
        let body = create_body(&container_config(&spec), false);
        let host = body.host_config.clone().expect("host config");
        assert_eq!(host.runtime.as_deref(), Some("runc"));
        assert_eq!(host.memory_reservation, Some(32 << 20));
        assert_eq!(host.pids_limit, Some(100));
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!(host.cpu_quota, Some(50_000));
        assert_eq!(host.cpu_period, Some(100_000));
        assert_eq!(host.cpu_realtime_period, Some(1_000_000));
        assert_eq!(host.cpu_realtime_runtime, Some(950_000));
        assert_eq!(host.oom_score_adj, Some(500));
        assert_eq!(host.oom_kill_disable, Some(true));
        assert_eq!(host.memory_swappiness, Some(10));
        assert_eq!(host.memory_swap, Some(1 << 30));
        assert_eq!(body.domainname.as_deref(), Some("example.com"));
        assert_eq!(host.userns_mode.as_deref(), Some("host"));
        assert_eq!(host.uts_mode.as_deref(), Some("host"));
        assert_eq!(host.cgroup_parent.as_deref(), Some("/custom"));
        assert_eq!(
            host.cgroupns_mode.map(|mode| mode.to_string()).as_deref(),
            Some("private")
        );
        assert_eq!(host.storage_opt.expect("storage opt")["size"], "1G");
        assert_eq!(host.device_cgroup_rules, Some(vec!["c 1:3 mr".into()]));
        let endpoints = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .expect("endpoints");
        assert_eq!(
            endpoints["dev-demo_default"].links,
            Some(vec!["redis:cache".into(), "other:other".into()])
        );
        assert_eq!(host.blkio_weight, Some(300));
        assert_eq!(
            host.blkio_weight_device.expect("weight device")[0].weight,
            Some(400)
        );
        let read = &host.blkio_device_read_bps.expect("read bps")[0];
        assert_eq!(
            (read.path.as_deref(), read.rate),
            (Some("/dev/sda"), Some(10 << 20))
        );
        assert_eq!(
            host.blkio_device_write_iops.expect("write iops")[0].rate,
            Some(120)
        );
        let requests = host.device_requests.expect("device requests");
        assert_eq!(requests[0].count, Some(-1));
        assert_eq!(
            requests[0].capabilities,
            Some(vec![vec!["gpu".to_string()]])
        );
        assert_eq!(requests[1].driver.as_deref(), Some("nvidia"));
        assert_eq!(requests[1].device_ids, Some(vec!["0".to_string()]));
        assert_eq!(
            requests[1].capabilities,
            Some(vec![vec!["gpu".to_string(), "compute".to_string()]])
        );
    }

    #[test]
    fn network_mode_replaces_the_networks() {
        let spec = spec_of("services:\n  api:\n    image: busybox:latest\n    network_mode: service:db\n  db:\n    image: busybox:latest\n");
        let body = create_body(&container_config(&spec), false);
        assert_eq!(
            body.host_config.and_then(|h| h.network_mode).as_deref(),
            Some("container:dev-demo--db")
        );
        assert!(body.networking_config.is_none());
    }

    #[test]
    fn port_variables_come_from_what_loading_recorded() {
        let mut loaded = crate::plan::test_stack(
            "services:\n  api: { image: x, ports: [\"5000:5000\"] }\n",
            "demo",
            "dev",
            "/srv/demo",
        );
        let used = |name: &str, path: &[&str]| crate::stack::Use {
            name: name.into(),
            resolution: crate::stack::Resolution::Default,
            value: String::new(),
            path: path.iter().map(|p| p.to_string()).collect(),
        };
        loaded.variables = vec![
            used("API_PORT", &["services", "api", "ports", "0"]),
            used("DB_PORT", &["services", "db", "ports", "0"]),
            used("IMAGE", &["services", "api", "image"]),
        ];
        assert_eq!(port_variables(&loaded, "api"), vec!["API_PORT".to_string()]);
        assert!(port_variables(&loaded, "web").is_empty());
    }
}
