//! Names and labels of the engine objects a stage owns (SPEC §4 "Names", "Ownership").
//! Every name carries the stage so two stages of one project never collide.

use std::collections::HashMap;

pub use crate::stack::model::labels::*;

/// Roles written in the `io.stackctl.role` label.
pub mod role {
    pub const SERVICE: &str = "service";
    pub const DATA: &str = "data";
    pub const TASK: &str = "task";
    pub const NETWORK: &str = "network";
    pub const VOLUME: &str = "volume";
    pub const IMAGE: &str = "image";
}

/// Container of a service: `{stage}-{project}--{service}`.
pub fn container(stage: &str, project: &str, service: &str) -> String {
    format!("{stage}-{project}--{service}")
}

/// Data container: `{stage}-{project}--{name}`.
pub fn data_container(stage: &str, project: &str, name: &str) -> String {
    format!("{stage}-{project}--{name}")
}

/// One-off task container: `{stage}-{project}--task-{name}-{short id}`.
pub fn task_container(stage: &str, project: &str, task: &str, short_id: &str) -> String {
    format!("{stage}-{project}--task-{task}-{short_id}")
}

/// The stage network: `{stage}-{project}_default`; other stack networks `{stage}-{project}_{name}`.
pub fn network(stage: &str, project: &str, name: &str) -> String {
    format!("{stage}-{project}_{name}")
}

/// A named volume: `{stage}-{project}_{volume}`.
pub fn volume(stage: &str, project: &str, name: &str) -> String {
    format!("{stage}-{project}_{name}")
}

/// A built image without `image:`: `{project}/{service}:{stage}`.
pub fn image(stage: &str, project: &str, service: &str) -> String {
    format!("{project}/{service}:{stage}")
}

/// The ownership labels of an object of this stage with this role.
pub fn owner_labels(stage: &str, project: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (PROJECT.to_string(), project.to_string()),
        (STAGE.to_string(), stage.to_string()),
        (ROLE.to_string(), role.to_string()),
    ])
}

/// Label filters (`key=value`) selecting every object of this stage.
pub fn stage_filter(stage: &str, project: &str) -> Vec<String> {
    vec![format!("{PROJECT}={project}"), format!("{STAGE}={stage}")]
}

/// Label holding the short hash of each hashed field of a container (`image:1a2b3c4d,…`), so
/// the planner can say which field changed from the container list alone.
pub const CONFIG_FIELDS: &str = "io.stackctl.config-fields";

/// Label naming the task a one-off container runs.
pub const TASK: &str = "io.stackctl.task";
