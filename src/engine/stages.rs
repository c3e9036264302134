//! Every stage of one project on this engine (`stackctl ls`): two label-filtered list calls.

use std::collections::BTreeMap;

use super::{label_filters, Engine, EngineError};
use crate::names;
use crate::observed::ObservedContainer;

/// What the engine holds of one stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageObjects {
    /// Its containers (all roles, all states), by name.
    pub containers: Vec<ObservedContainer>,
    /// Its named volumes.
    pub volumes: Vec<String>,
    /// When its newest container or volume was created.
    pub newest: Option<std::time::SystemTime>,
}

impl Engine {
    /// The containers and volumes labelled with `project`, by stage.
    pub async fn project_stages(
        &self,
        project: &str,
    ) -> Result<BTreeMap<String, StageObjects>, EngineError> {
        let filters = label_filters(&[format!("{}={project}", names::PROJECT)]);
        let containers = self.labelled_containers(&filters);
        let volumes = self.labelled_volumes(&filters);
        let (containers, volumes) = tokio::try_join!(containers, volumes)?;
        let mut stages: BTreeMap<String, StageObjects> = BTreeMap::new();
        for summary in containers {
            let Some(stage) = summary
                .labels
                .as_ref()
                .and_then(|labels| labels.get(names::STAGE))
                .cloned()
            else {
                continue;
            };
            let created = summary
                .created
                .and_then(|secs| u64::try_from(secs).ok())
                .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
            let container = super::observe::observed_container(summary);
            // As in `observe`: the name pattern is the stage's own (labels are inheritable).
            if names::is_stage_container_name(&stage, project, &container.name) {
                let objects = stages.entry(stage).or_default();
                objects.containers.push(container);
                objects.newest = objects.newest.max(created);
            }
        }
        for volume in volumes.volumes.unwrap_or_default() {
            if let Some(stage) = volume.labels.get(names::STAGE) {
                let created = volume.created_at.map(std::time::SystemTime::from);
                let objects = stages.entry(stage.clone()).or_default();
                objects.volumes.push(volume.name);
                objects.newest = objects.newest.max(created);
            }
        }
        for objects in stages.values_mut() {
            objects.containers.sort_by(|a, b| a.name.cmp(&b.name));
            objects.volumes.sort();
        }
        Ok(stages)
    }
}
