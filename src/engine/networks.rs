//! The stage's networks: created with the stage's labels, checked, removed.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::InspectNetworkOptions;

use super::{is_not_found, op, Engine, EngineError};

impl Engine {
    /// Create a bridge network with these labels; one that already exists is fine.
    pub async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match self.client().create_network(request).await {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = EngineError::new("create network", name, err);
                if err.status == Some(409) || err.message.contains("already exists") {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// True when a network of this name (or ID) exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self
            .client()
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(EngineError::new("inspect network", name, err)),
        }
    }

    /// Remove a network; a missing one is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        match self.client().remove_network(name).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(op("remove network", name)(err)),
        }
    }
}
