//! Registry calls through the engine: pull an image (`/images/create?fromImage=`) and push
//! one (`/images/NAME/push`), with credentials in the `X-Registry-Auth` header and the
//! layers' byte counts summed for progress.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bollard::auth::DockerCredentials;
use bollard::models::ProgressDetail;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{Engine, EngineError};
use crate::registry::{split_tag, Credentials};

/// How long a pull or push may go without a word from the engine before it is given up:
/// the engine itself retries an unreachable registry for a while, and a stalled transfer
/// must not hang `up`.
pub const STALL: Duration = Duration::from_secs(60);

/// Bytes done and total of a transfer, over every layer seen so far.
pub type OnProgress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

pub(crate) fn to_bollard(c: &Credentials) -> DockerCredentials {
    DockerCredentials {
        username: c.username.clone(),
        password: c.password.clone(),
        identitytoken: c.identity_token.clone(),
        serveraddress: Some(c.server.clone()),
        ..Default::default()
    }
}

/// Sums the byte counts layers report (`Downloading`/`Pushing` with a progress detail).
#[derive(Default)]
struct Layers {
    bytes: HashMap<String, (u64, u64)>,
}

impl Layers {
    fn update(
        &mut self,
        id: Option<&str>,
        status: Option<&str>,
        detail: Option<&ProgressDetail>,
    ) -> bool {
        let (Some(id), Some(status), Some(detail)) = (id, status, detail) else {
            return false;
        };
        let counted = matches!(status, "Downloading" | "Pushing");
        let complete = matches!(
            status,
            "Download complete"
                | "Pull complete"
                | "Pushed"
                | "Layer already exists"
                | "Already exists"
        );
        let entry = self.bytes.entry(id.to_string()).or_default();
        if counted {
            let current = detail.current.unwrap_or(0).max(0) as u64;
            let total = detail.total.unwrap_or(0).max(0) as u64;
            *entry = (current, total.max(current));
            true
        } else if complete {
            entry.0 = entry.1;
            true
        } else {
            false
        }
    }

    fn sums(&self) -> (u64, u64) {
        self.bytes
            .values()
            .fold((0, 0), |(d, t), (c, tot)| (d + c, t + tot))
    }
}

impl Engine {
    /// The key Docker's config uses for the engine's default registry (`docker info`'s
    /// `IndexServerAddress`).
    pub async fn index_server_address(&self) -> Result<String, EngineError> {
        let info = self
            .client()
            .info()
            .await
            .map_err(|err| self.error("read", "engine info", err))?;
        info.index_server_address
            .ok_or_else(|| EngineError::other("read", "engine info", "no IndexServerAddress"))
    }

    /// Pull `reference` (tag `latest` when it has none); returns the bytes transferred.
    pub async fn pull_image(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
        progress: OnProgress<'_>,
    ) -> Result<u64, EngineError> {
        let (repository, tag) = split_tag(reference);
        let mut builder = CreateImageOptionsBuilder::default().from_image(repository);
        if let Some(tag) = tag {
            builder = builder.tag(tag);
        }
        let stream =
            self.client()
                .create_image(Some(builder.build()), None, credentials.map(to_bollard));
        futures_util::pin_mut!(stream);
        let mut layers = Layers::default();
        loop {
            let item = tokio::time::timeout(STALL, stream.next())
                .await
                .map_err(|_| {
                    EngineError::other(
                        "pull",
                        reference,
                        format!("no progress for {}s", STALL.as_secs()),
                    )
                })?;
            let Some(item) = item else { break };
            let info = item.map_err(|err| self.error("pull", reference, err))?;
            if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(EngineError::other("pull", reference, detail));
            }
            if layers.update(
                info.id.as_deref(),
                info.status.as_deref(),
                info.progress_detail.as_ref(),
            ) {
                let (done, total) = layers.sums();
                progress(done, total);
            }
        }
        if let (repository, Some(tag)) = (repository, tag) {
            // Tag it again so the engine records when it was last pulled: the engine keeps
            // the old `LastTagTime` when a pull finds nothing new, and the timed
            // `pull_policy`s (`daily`, `every_12h`) measure from it.
            let options = TagImageOptionsBuilder::default()
                .repo(repository)
                .tag(tag)
                .build();
            self.client()
                .tag_image(reference, Some(options))
                .await
                .map_err(|err| self.error("tag", reference, err))?;
        }
        Ok(layers.sums().1)
    }

    /// When an image was last tagged or pulled (the engine's `LastTagTime`); `None` when it
    /// is not on the engine or the engine does not know.
    pub async fn image_refreshed_at(
        &self,
        reference: &str,
    ) -> Result<Option<SystemTime>, EngineError> {
        match self.client().inspect_image(reference).await {
            Ok(image) => Ok(image
                .metadata
                .and_then(|m| m.last_tag_time)
                .map(SystemTime::from)
                // Go's zero time (`0001-01-01T00:00:00Z`): never tagged.
                .filter(|t| *t > std::time::UNIX_EPOCH)),
            Err(err) if super::is_not_found(&err) => Ok(None),
            Err(err) => Err(self.error("inspect", reference, err)),
        }
    }

    /// Push `reference` (tag `latest` when it has none) to its registry; returns the bytes
    /// sent (layers the registry already had count as nothing).
    pub async fn push_image(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
        progress: OnProgress<'_>,
    ) -> Result<u64, EngineError> {
        let (repository, tag) = split_tag(reference);
        let mut builder = PushImageOptionsBuilder::default();
        if let Some(tag) = tag {
            builder = builder.tag(tag);
        }
        let stream = self.client().push_image(
            repository,
            Some(builder.build()),
            credentials.map(to_bollard),
        );
        futures_util::pin_mut!(stream);
        let mut layers = Layers::default();
        loop {
            let item = tokio::time::timeout(STALL, stream.next())
                .await
                .map_err(|_| {
                    EngineError::other(
                        "push",
                        reference,
                        format!("no progress for {}s", STALL.as_secs()),
                    )
                })?;
            let Some(item) = item else { break };
            let info = item.map_err(|err| self.error("push", reference, err))?;
            if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                return Err(EngineError::other("push", reference, detail));
            }
            // Push messages carry no layer ID in this API's model: layers are told apart
            // by their size, which is what the sums need.
            if let (Some(status), Some(detail)) =
                (info.status.as_deref(), info.progress_detail.as_ref())
            {
                let key = detail.total.unwrap_or(0).to_string();
                if status == "Pushing" && layers.update(Some(&key), Some(status), Some(detail)) {
                    let (done, total) = layers.sums();
                    progress(done, total);
                }
            }
        }
        Ok(layers.sums().1)
    }
}
