//! The stage as the engine holds it: one label-filtered list call per kind, run together.

use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};

use super::{label_filters, Engine, EngineError};
use crate::names;
use crate::observed::{MountedVolume, Observed, ObservedContainer};

impl Engine {
    /// Every container (all states) the label filters select: one list call.
    pub(crate) async fn labelled_containers(
        &self,
        filters: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(filters)
            .build();
        self.client()
            .list_containers(Some(options))
            .await
            .map_err(|err| self.error("list", "containers", err))
    }

    /// Every volume the label filters select: one list call.
    pub(crate) async fn labelled_volumes(
        &self,
        filters: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<bollard::models::VolumeListResponse, EngineError> {
        let options = ListVolumesOptionsBuilder::default()
            .filters(filters)
            .build();
        self.client()
            .list_volumes(Some(options))
            .await
            .map_err(|err| self.error("list", "volumes", err))
    }

    /// Every container (all states), network and volume labelled with this stage.
    pub async fn observe(&self, stage: &str, project: &str) -> Result<Observed, EngineError> {
        self.observe_named(stage, project, &[]).await
    }

    /// The same, counting also the containers the stack names itself (`container_name`),
    /// when they carry the stage's labels.
    pub async fn observe_named(
        &self,
        stage: &str,
        project: &str,
        custom_names: &[String],
    ) -> Result<Observed, EngineError> {
        let filters = label_filters(&names::stage_filter(stage, project));
        let containers = self.labelled_containers(&filters);
        let networks = async {
            let options = ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build();
            self.client()
                .list_networks(Some(options))
                .await
                .map_err(|err| self.error("list", "networks", err))
        };
        let volumes = self.labelled_volumes(&filters);
        let (containers, networks, volumes) = tokio::try_join!(containers, networks, volumes)?;
        // Labels alone are inheritable (an image's reach its containers): the name pattern
        // is the stage's own.
        let mut containers: Vec<ObservedContainer> = containers
            .into_iter()
            .map(observed_container)
            .filter(|c| {
                names::is_stage_container_name(stage, project, &c.name)
                    || custom_names.contains(&c.name)
            })
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut networks: Vec<String> = networks.into_iter().filter_map(|n| n.name).collect();
        networks.sort();
        let mut volumes: Vec<String> = volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        volumes.sort();
        Ok(Observed {
            containers,
            networks,
            volumes,
            ..Default::default()
        })
    }
}

pub(crate) fn observed_container(summary: ContainerSummary) -> ObservedContainer {
    let labels = summary.labels.unwrap_or_default();
    let status = summary.status.unwrap_or_default();
    let health = if status.contains("(healthy)") {
        Some("healthy".to_string())
    } else if status.contains("(unhealthy)") {
        Some("unhealthy".to_string())
    } else if status.contains("(health: starting)") {
        Some("starting".to_string())
    } else {
        None
    };
    let mut ports: Vec<String> = summary
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            let ip = p.ip.unwrap_or_default();
            let ip = if ip.is_empty() || ip == "0.0.0.0" || ip == "::" {
                String::new()
            } else if ip.contains(':') {
                format!("[{ip}]:")
            } else {
                format!("{ip}:")
            };
            match p.public_port {
                Some(public) => format!("{ip}{public}->{}/{proto}", p.private_port),
                None => format!("{}/{proto}", p.private_port),
            }
        })
        .collect();
    ports.sort();
    ports.dedup();
    let mut networks: Vec<String> = summary
        .network_settings
        .and_then(|settings| settings.networks)
        .map(|networks| networks.into_keys().collect())
        .unwrap_or_default();
    networks.sort();
    let mut volumes: Vec<MountedVolume> = summary
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| {
            Some(MountedVolume {
                name: m.name?,
                destination: m.destination?,
            })
        })
        .collect();
    volumes.sort_by(|a, b| a.destination.cmp(&b.destination));
    let name = summary
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    ObservedContainer {
        name,
        id: summary.id.unwrap_or_default(),
        role: labels.get(names::ROLE).cloned().unwrap_or_default(),
        service: labels.get(names::SERVICE).cloned(),
        state: summary.state.map(|s| s.to_string()).unwrap_or_default(),
        status,
        health,
        config_hash: labels.get(names::CONFIG_HASH).cloned(),
        fields: labels.get(names::CONFIG_FIELDS).cloned(),
        image_id: summary.image_id.unwrap_or_default(),
        ports,
        networks,
        volumes,
        kept_volumes: names::kept_volumes(&labels),
    }
}
