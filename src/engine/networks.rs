//! The stage's networks and named volumes: created with the stage's labels when missing.

use std::collections::HashMap;

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};

use super::{Engine, EngineError};

impl Engine {
    /// Create the network `name` (bridge, labelled) unless it exists. Returns true when it
    /// was created.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<bool, EngineError> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(false),
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(EngineError::new("inspect network", name, e)),
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::new("create network", name, e))?;
        Ok(true)
    }

    /// Create the named volume `name` (labelled) unless it exists. Returns true when it was
    /// created.
    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<bool, EngineError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(false),
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(EngineError::new("inspect volume", name, e)),
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::new("create volume", name, e))?;
        Ok(true)
    }
}
