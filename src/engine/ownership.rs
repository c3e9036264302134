//! Telling the stage's own objects from others that hold one of its names. The engine's
//! answer to a taken name is a raw conflict; this says what holds it and what to do.

use std::collections::BTreeMap;

use bollard::query_parameters::InspectContainerOptions;

use super::{Engine, EngineError};
use crate::names;

impl Engine {
    /// A container create failed: when it was because a container without this stage's
    /// labels holds the name, say so instead of the engine's conflict (R10). `owner` is the
    /// ownership labels the new container was to carry.
    pub async fn explain_name_conflict(
        &self,
        name: &str,
        owner: &BTreeMap<String, String>,
        err: EngineError,
    ) -> EngineError {
        if err.status != Some(409) {
            return err;
        }
        let Ok(holder) = self
            .client()
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        else {
            return err;
        };
        let labels = holder
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let stage_own = [names::PROJECT, names::STAGE]
            .iter()
            .all(|key| owner.get(*key).is_some_and(|v| labels.get(*key) == Some(v)));
        if stage_own {
            return err;
        }
        let id = holder.id.unwrap_or_default();
        let short = &id[..id.len().min(12)];
        EngineError::other(
            &err.operation,
            &err.object,
            format!(
                "a container that is not this stage's holds the name `{name}` (ID {short}, without the stage's labels); remove or rename it\nhint: `docker rename {name} {name}-old` keeps it; `docker rm -f {name}` removes it"
            ),
        )
    }
}
