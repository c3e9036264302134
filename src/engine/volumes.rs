//! Volume calls: create (labelled; a foreign volume of the name is refused), check an
//! external one exists, remove.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptionsBuilder;

use super::{is_not_found, Engine, EngineError};
use crate::names;

impl Engine {
    /// Create a named volume with these labels (the stage's ownership labels among them).
    /// One the stage already has is fine; one of that name without the stage's labels is
    /// not used: the engine would hand it over silently, unlabelled.
    pub async fn create_volume(
        &self,
        name: &str,
        driver: Option<&str>,
        labels: &HashMap<String, String>,
        driver_opts: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        if let Some(found) = self.volume_labels(name).await? {
            let stage_own = [names::PROJECT, names::STAGE]
                .iter()
                .all(|key| labels.get(*key).is_some_and(|v| found.get(*key) == Some(v)));
            if stage_own {
                return Ok(());
            }
            return Err(EngineError::other(
                "create volume",
                name,
                format!("a volume that is not this stage's holds the name `{name}` (without the stage's labels); stackctl will not use it"),
            )
            .with_hint(format!("remove or rename it (`docker volume rm {name}`), give the volume another `name:`, or declare it `external: true` to use it as it is")));
        }
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: driver.map(str::to_string),
            labels: Some(labels.clone()),
            driver_opts: (!driver_opts.is_empty()).then(|| driver_opts.clone()),
            ..Default::default()
        };
        self.client()
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|err| self.error("create volume", name, err))
    }

    /// Check the driver of each existing volume `(name, key under volumes:, driver)` the
    /// stack gives a driver: one made with another driver is named, not silently kept.
    pub async fn check_volume_drivers(
        &self,
        wanted: &[(String, String, String)],
    ) -> Result<(), EngineError> {
        for (name, key, driver) in wanted {
            let found = match self.client().inspect_volume(name).await {
                Ok(volume) => volume.driver,
                Err(err) if is_not_found(&err) => continue,
                Err(err) => return Err(self.error("inspect volume", name, err)),
            };
            if found != *driver {
                return Err(EngineError::other(
                    "volume",
                    name,
                    format!("exists with driver `{found}`, but volumes.{key} asks for `{driver}`"),
                )
                .with_hint(format!("`stackctl purge` removes the stage's volumes (and their data); or set the driver back to `{found}`")));
            }
        }
        Ok(())
    }

    /// The labels of the volume of this name, or None when there is none.
    pub async fn volume_labels(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, EngineError> {
        match self.client().inspect_volume(name).await {
            Ok(volume) => Ok(Some(volume.labels)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(self.error("inspect volume", name, err)),
        }
    }

    /// True when a volume of this name exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self.client().inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(self.error("inspect volume", name, err)),
        }
    }

    /// Remove a volume unless a container still mounts it; a missing one is fine.
    pub async fn remove_volume_unless_used(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveVolumeOptionsBuilder::default().build();
        match self.client().remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(err) => Err(self.error("remove volume", name, err)),
        }
    }

    /// Remove a volume; a missing one is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.client().remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(self.error("remove volume", name, err)),
        }
    }
}
