//! Volume calls: create (labelled), check an external one exists, remove.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptionsBuilder;

use super::{is_not_found, Engine, EngineError};

impl Engine {
    /// Create a named volume with these labels; one that already exists is fine.
    pub async fn create_volume(
        &self,
        name: &str,
        driver: Option<&str>,
        labels: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: driver.map(str::to_string),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        self.client()
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|err| EngineError::new("create volume", name, err))
    }

    /// True when a volume of this name exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self.client().inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(EngineError::new("inspect volume", name, err)),
        }
    }

    /// Remove a volume; a missing one is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.client().remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(EngineError::new("remove volume", name, err)),
        }
    }
}
