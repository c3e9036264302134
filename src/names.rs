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

/// One-off container of `stackctl run SERVICE`: `{stage}-{project}--run-{service}-{short id}`.
pub fn run_container(stage: &str, project: &str, service: &str, short_id: &str) -> String {
    format!("{stage}-{project}--run-{service}-{short_id}")
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

/// Label of a container that took over the anonymous volumes of the one it replaced: their
/// engine names, comma-separated. The engine removes a container's anonymous volumes with it
/// only when it created them for that container; these it mounts by name, so whoever removes
/// the container removes them (`Engine::remove_container`).
pub const KEPT_VOLUMES: &str = "io.stackctl.kept-volumes";

/// The volumes a container's labels say it took over (`KEPT_VOLUMES`).
pub fn kept_volumes(labels: &HashMap<String, String>) -> Vec<String> {
    labels
        .get(KEPT_VOLUMES)
        .map(|kept| {
            kept.split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Label naming the task a one-off container runs.
pub const TASK: &str = "io.stackctl.task";

/// Labels of a built image. Under their own keys, never the container keys above: a
/// container started from the image, or an image built `FROM` it, inherits them, and must
/// not pass for the stage's own object. They say nothing of the tag the image is given
/// (a per-commit `image: …:${TAG}` would make every build a new image): identical builds
/// give identical images, and `up` recreates only what changed.
pub mod image_label {
    pub const PROJECT: &str = "io.stackctl.image.project";
    pub const STAGE: &str = "io.stackctl.image.stage";
    /// The entries built from it, comma-separated (`app,app-cron` for one shared build).
    pub const SERVICE: &str = "io.stackctl.image.service";
    /// The repositories stackctl tags it in, comma-separated (`shop/api`): `purge` removes
    /// its tags in these, and no other.
    pub const REPOSITORIES: &str = "io.stackctl.image.repositories";
    /// The one tag an older stackctl gave the image (read, no longer written).
    pub const TAG: &str = "io.stackctl.image.tag";
    /// The digest of the build's inputs (`context::digest`): `up` rebuilds when it changes.
    pub const CONTEXT: &str = "io.stackctl.image.context";
}

/// The ownership labels of an image built for `services`, tagged in `repositories`.
pub fn image_labels(
    stage: &str,
    project: &str,
    services: &[String],
    repositories: &[String],
) -> HashMap<String, String> {
    HashMap::from([
        (image_label::PROJECT.to_string(), project.to_string()),
        (image_label::STAGE.to_string(), stage.to_string()),
        (image_label::SERVICE.to_string(), services.join(",")),
        (
            image_label::REPOSITORIES.to_string(),
            repositories.join(","),
        ),
    ])
}

/// Label filters selecting every image built for this stage.
pub fn image_filter(stage: &str, project: &str) -> Vec<String> {
    vec![
        format!("{}={project}", image_label::PROJECT),
        format!("{}={stage}", image_label::STAGE),
    ]
}

/// Whether a container named `name` can be one of this stage's: every container stackctl
/// makes is named `{stage}-{project}--…`. With the labels, this keeps out a container that
/// inherited labels from an image built by an older stackctl.
pub fn is_stage_container_name(stage: &str, project: &str, name: &str) -> bool {
    name.trim_start_matches('/')
        .strip_prefix(&format!("{stage}-{project}--"))
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9_only_names_of_the_stage_pattern_are_stage_containers() {
        assert!(is_stage_container_name("dev", "app", "dev-app--api"));
        assert!(is_stage_container_name(
            "dev",
            "app",
            "/dev-app--task-x-1a2b"
        ));
        assert!(!is_stage_container_name("dev", "app", "dev-app--"));
        assert!(!is_stage_container_name("dev", "app", "eager_turing"));
        assert!(!is_stage_container_name("dev", "app", "prod-app--api"));
        assert!(!is_stage_container_name(
            "dev",
            "app",
            "dev-application--api"
        ));
    }

    #[test]
    fn r9_image_labels_share_no_key_with_container_labels() {
        let image = image_labels("dev", "app", &["api".into()], &["app/api".into()]);
        let container = owner_labels("dev", "app", role::SERVICE);
        assert!(
            image.keys().all(|k| !container.contains_key(k)),
            "{image:?}"
        );
        assert_eq!(image[image_label::REPOSITORIES], "app/api");
        assert!(!image.contains_key(image_label::TAG), "{image:?}");
    }
}
