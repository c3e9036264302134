//! The stage lock kept on the engine itself, so stackctl processes on different machines
//! driving one stage exclude each other (`crate::lock` decides when to wait and renew).
//!
//! The lock is a container that is created and never started, named
//! `stackctl-lock.PROJECT.STAGE`: creating it is the atomic "take" (a second create gets 409),
//! removing it by its id is the "release". Its labels say who holds it
//! (`io.stackctl.lock.host`, `.pid`, `.command`, `.since`); its file `/lease` holds a counter
//! the holder rewrites while it holds the lock. Its labels avoid `io.stackctl.project` and
//! `io.stackctl.stage` on purpose: `down` and `purge` never see it as a stage object.
//!
//! Containers need an image: `stackctl/lock:1`, imported once per engine from a one-file tar
//! (no registry involved, 0 bytes of layers to speak of).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    InspectContainerOptions, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{Engine, EngineError};

/// The image every lock container is made from.
pub const LOCK_IMAGE: &str = "stackctl/lock:1";

pub mod label {
    pub const PROJECT: &str = "io.stackctl.lock.project";
    pub const STAGE: &str = "io.stackctl.lock.stage";
    pub const HOST: &str = "io.stackctl.lock.host";
    pub const PID: &str = "io.stackctl.lock.pid";
    pub const COMMAND: &str = "io.stackctl.lock.command";
    /// When it was taken: Unix seconds on the holder's clock.
    pub const SINCE: &str = "io.stackctl.lock.since";
    /// The lease the holder renews, in milliseconds.
    pub const LEASE_MS: &str = "io.stackctl.lock.lease-ms";
    /// A digest of the holder machine's `/etc/machine-id` (empty when it has none).
    pub const MACHINE: &str = "io.stackctl.lock.machine";
}

/// The lock container's name.
pub fn lock_name(project: &str, stage: &str) -> String {
    format!("stackctl-lock.{project}.{stage}")
}

/// Who holds a lock, as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The lock container's id: release and take-over remove exactly this one.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub since: u64,
    pub lease_ms: u64,
    pub machine: String,
}

impl Holder {
    /// `HOST (pid N, `stackctl up`)`.
    pub fn describe(&self) -> String {
        format!("{} (pid {}, `{}`)", self.host, self.pid, self.command)
    }
}

/// What the holder writes into the lock.
#[derive(Debug, Clone)]
pub struct Claim {
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub since: u64,
    pub lease_ms: u64,
    pub machine: String,
}

/// A one-file tar: `name` holding `text`.
fn one_file_tar(name: &str, text: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    // Writing into a Vec cannot fail.
    let _ = builder.append_data(&mut header, name, text.as_bytes());
    builder.into_inner().unwrap_or_default()
}

impl Engine {
    /// Make sure the lock image exists on the engine.
    async fn ensure_lock_image(&self) -> Result<(), EngineError> {
        match self.client().inspect_image(LOCK_IMAGE).await {
            Ok(_) => return Ok(()),
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(self.error("inspect image", LOCK_IMAGE, e)),
        }
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo("stackctl/lock")
            .tag("1")
            .changes(vec!["LABEL io.stackctl.lock-image=1".to_string()])
            .build();
        let tar = one_file_tar("lease", "0\n");
        let mut stream =
            self.client()
                .create_image(Some(options), Some(bollard::body_full(tar.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(self.op("import image", LOCK_IMAGE))?;
        }
        Ok(())
    }

    /// Try once to take the stage's lock: `Taken(id)`, or who holds it.
    pub async fn try_lock(
        &self,
        project: &str,
        stage: &str,
        claim: &Claim,
    ) -> Result<LockAttempt, EngineError> {
        self.ensure_lock_image().await?;
        let name = lock_name(project, stage);
        let labels = HashMap::from([
            (label::PROJECT.to_string(), project.to_string()),
            (label::STAGE.to_string(), stage.to_string()),
            (label::HOST.to_string(), claim.host.clone()),
            (label::PID.to_string(), claim.pid.to_string()),
            (label::COMMAND.to_string(), claim.command.clone()),
            (label::SINCE.to_string(), claim.since.to_string()),
            (label::LEASE_MS.to_string(), claim.lease_ms.to_string()),
            (label::MACHINE.to_string(), claim.machine.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(LOCK_IMAGE.to_string()),
            cmd: Some(vec!["/lease".to_string()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        match self.client().create_container(Some(options), body).await {
            Ok(created) => Ok(LockAttempt::Taken(created.id)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => match self.lock_holder(project, stage).await? {
                Some(holder) => Ok(LockAttempt::Held(holder)),
                // Released between the create and the inspect: try again.
                None => Ok(LockAttempt::Gone),
            },
            Err(e) => Err(self.error("create lock", &name, e)),
        }
    }

    /// Who holds the stage's lock on this engine, if anyone.
    pub async fn lock_holder(
        &self,
        project: &str,
        stage: &str,
    ) -> Result<Option<Holder>, EngineError> {
        let name = lock_name(project, stage);
        let inspected = match self
            .client()
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if super::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.error("inspect lock", &name, e)),
        };
        let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        let get = |key: &str| labels.get(key).cloned().unwrap_or_default();
        Ok(Some(Holder {
            id: inspected.id.unwrap_or(name),
            host: get(label::HOST),
            pid: get(label::PID).parse().unwrap_or(0),
            command: get(label::COMMAND),
            since: get(label::SINCE).parse().unwrap_or(0),
            lease_ms: get(label::LEASE_MS).parse().unwrap_or(30_000),
            machine: get(label::MACHINE),
        }))
    }

    /// The lease counter the holder wrote last (`None`: the lock is gone).
    pub async fn lock_lease(&self, id: &str) -> Result<Option<String>, EngineError> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path("/lease")
            .build();
        let mut stream = self.client().download_from_container(id, Some(options));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(e) if super::is_not_found(&e) => return Ok(None),
                Err(e) => return Err(self.error("read lock lease", id, e)),
            }
        }
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut text = String::new();
        if let Ok(mut entries) = archive.entries() {
            if let Some(Ok(mut entry)) = entries.next() {
                use std::io::Read;
                let _ = entry.read_to_string(&mut text);
            }
        }
        Ok(Some(text.trim().to_string()))
    }

    /// Write a new lease counter into the lock the caller holds.
    pub async fn renew_lock(&self, id: &str, counter: &str) -> Result<(), EngineError> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        let tar = one_file_tar("lease", &format!("{counter}\n"));
        self.client()
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(self.op("renew lock", id))
    }

    /// Remove the lock container `id` (exactly that one: a lock taken since by someone else
    /// has another id). True when it was there.
    pub async fn remove_lock(&self, id: &str) -> Result<bool, EngineError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.client().remove_container(id, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if super::is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error("remove lock", id, e)),
        }
    }
}

/// The outcome of one `try_lock`.
#[derive(Debug)]
pub enum LockAttempt {
    /// Ours now: the lock container's id.
    Taken(String),
    /// Someone holds it.
    Held(Holder),
    /// It was released while we looked: try again.
    Gone,
}
