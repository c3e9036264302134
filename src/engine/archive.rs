//! The engine's archive API and what `stackctl data` needs around it: a container path as a
//! tar stream (GET /containers/{id}/archive), a tar stream into a container path (PUT), the
//! never-started helper containers that give the archive API a named volume to read or
//! write, renames, and which containers mount a volume.
//!
//! Verified on 20.10 (API 1.41): the archive API works on a container that was created and
//! never started, its volumes (named, anonymous, `volumes_from`) included; GET of `/d` yields
//! entries `d/`, `d/…` (the directory itself first, with its mode and owner), and PUT of that
//! stream to `/` restores them, the mount point's own mode and owner too.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RenameContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};

use super::containers::ContainerConfig;
use super::{is_not_found, Engine, EngineError};

/// How long an upload may take before the engine answers: it answers after the whole
/// stream went in, so only a bound that no real volume reaches.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a helper container mounts the named volume it gives the archive API.
pub const HELPER_MOUNT: &str = "/stackctl-data";

/// One container that mounts a volume.
#[derive(Debug, Clone)]
pub struct VolumeUser {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
}

impl Engine {
    /// The tar stream of `path` in `container` (created or running). A missing container or
    /// path is an error that says so (404).
    pub fn download(
        &self,
        container: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes, EngineError>> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let object = format!("{container}:{path}");
        let engine = self.name();
        self.client()
            .download_from_container(container, Some(options))
            .map(move |item| {
                item.map_err(|err| {
                    EngineError::new("read archive of", &object, err).on(engine.clone())
                })
            })
            .boxed()
    }

    /// Extract a tar stream into `path` of `container`. The stream's errors end the request
    /// (nothing more is written); the engine's refusal (a damaged tar) is the error.
    pub async fn upload(
        &self,
        container: &str,
        path: &str,
        body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), EngineError> {
        let options = UploadToContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.docker
            .clone()
            .with_timeout(UPLOAD_TIMEOUT)
            .upload_to_container(container, Some(options), bollard::body_try_stream(body))
            .await
            .map_err(|err| self.error("write archive into", &format!("{container}:{path}"), err))
    }

    /// Create a container that is never started, from `image`, mounting `volume` at
    /// [`HELPER_MOUNT`], without a network: the archive API's way into a named volume.
    pub async fn create_helper(
        &self,
        name: &str,
        image: &str,
        volume: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let config = ContainerConfig {
            name: name.to_string(),
            image: image.to_string(),
            // Never run; an image without a command (`FROM scratch`) still needs one to be
            // created.
            cmd: Some(vec!["/stackctl-never-started".to_string()]),
            binds: vec![format!("{volume}:{HELPER_MOUNT}")],
            labels,
            ..Default::default()
        };
        let body = super::containers::create_body(&config, false);
        let mut body = body;
        if let Some(host) = body.host_config.as_mut() {
            host.network_mode = Some("none".to_string());
        }
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
            .name(name)
            .build();
        self.client()
            .create_container(Some(options), body)
            .await
            .map(|_| ())
            .map_err(|err| self.error("create container", name, err))
    }

    /// Rename a container.
    pub async fn rename_container(&self, from: &str, to: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptionsBuilder::default().name(to).build();
        self.client()
            .rename_container(from, options)
            .await
            .map_err(|err| self.error("rename container", from, err))
    }

    /// Every container (any state, anyone's) that mounts the volume `volume`.
    pub async fn volume_users(&self, volume: &str) -> Result<Vec<VolumeUser>, EngineError> {
        let filters = HashMap::from([("volume".to_string(), vec![volume.to_string()])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .client()
            .list_containers(Some(options))
            .await
            .map_err(|err| self.error("list containers using", volume, err))?;
        Ok(list
            .into_iter()
            .map(|c| VolumeUser {
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                labels: c.labels.unwrap_or_default(),
                running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
            })
            .collect())
    }

    /// The volumes a container mounts: (destination path, volume name), or None when the
    /// container does not exist.
    pub async fn container_volumes(
        &self,
        name: &str,
    ) -> Result<Option<Vec<(String, String)>>, EngineError> {
        let inspect = match self
            .client()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(self.error("inspect container", name, err)),
        };
        Ok(Some(
            inspect
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| Some((m.destination?, m.name?)))
                .collect(),
        ))
    }
}
