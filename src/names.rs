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

/// Label naming the task a one-off container runs.
pub const TASK: &str = "io.stackctl.task";

/// Labels of a built image. Under their own keys, never the container keys above: a
/// container started from the image, or an image built `FROM` it, inherits them, and must
/// not pass for the stage's own object. `tag` is the one tag stackctl gives the image;
/// `purge` removes that tag, and no other.
pub mod image_label {
    pub const PROJECT: &str = "io.stackctl.image.project";
    pub const STAGE: &str = "io.stackctl.image.stage";
    pub const SERVICE: &str = "io.stackctl.image.service";
    pub const TAG: &str = "io.stackctl.image.tag";
    /// The digest of the build's inputs (`context::digest`): `up` rebuilds when it changes.
    pub const CONTEXT: &str = "io.stackctl.image.context";
}

/// The ownership labels of an image built for `service` and tagged `tag`.
pub fn image_labels(
    stage: &str,
    project: &str,
    service: &str,
    tag: &str,
) -> HashMap<String, String> {
    HashMap::from([
        (image_label::PROJECT.to_string(), project.to_string()),
        (image_label::STAGE.to_string(), stage.to_string()),
        (image_label::SERVICE.to_string(), service.to_string()),
        (image_label::TAG.to_string(), tag.to_string()),
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

/// The user's labels of a network or volume (`section` is `networks` or `volumes`), with the
/// ownership labels added. A user label under `io.stackctl.` would pass a foreign object off
/// as the stage's (or hide the stage's own): it is refused, located, exit 2.
pub fn object_labels(
    loaded: &crate::stack::LoadedStack,
    section: &str,
    key: &str,
    role: &str,
) -> Result<HashMap<String, String>, crate::stack::StackErrors> {
    let user = match section {
        "networks" => loaded.stack.networks.get(key).map(|d| &d.labels),
        _ => loaded.stack.volumes.get(key).map(|d| &d.labels),
    };
    let mut labels = HashMap::new();
    let mut errors = Vec::new();
    for (label, value) in user.into_iter().flatten() {
        if label.starts_with("io.stackctl.") {
            errors.push(
                crate::stack::StackError::new(
                    loaded.locate(&[section, key, "labels", label]),
                    format!("label `{label}` of {section}.{key}: labels under `io.stackctl.` are stackctl's own (ownership)"),
                )
                .with_hint("give the label another prefix"),
            );
        } else {
            labels.insert(label.clone(), value.clone());
        }
    }
    if !errors.is_empty() {
        return Err(crate::stack::StackErrors(errors));
    }
    labels.extend(owner_labels(&loaded.stage, &loaded.project, role));
    Ok(labels)
}

/// Every network and volume label of the stack checked at once (for `config`): the
/// `io.stackctl.` ones are refused, each located.
pub fn check_object_labels(
    loaded: &crate::stack::LoadedStack,
) -> Result<(), crate::stack::StackErrors> {
    let networks = loaded
        .stack
        .networks
        .keys()
        .map(|key| object_labels(loaded, "networks", key, role::NETWORK));
    let volumes = loaded
        .stack
        .volumes
        .keys()
        .map(|key| object_labels(loaded, "volumes", key, role::VOLUME));
    let errors: Vec<crate::stack::StackError> = networks
        .chain(volumes)
        .filter_map(Result::err)
        .flat_map(|errors| errors.0)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::stack::StackErrors(errors))
    }
}

/// The stage's network of engine name `name` as the stack wants it: its key under
/// `networks:` (`default` for the stage network), driver (`bridge` unless the stack says
/// otherwise) and labels.
pub fn network_wanted(
    loaded: &crate::stack::LoadedStack,
    name: &str,
) -> Result<crate::engine::networks::NetworkWanted, crate::stack::StackErrors> {
    let (stage, project) = (&loaded.stage, &loaded.project);
    let stack_keys = loaded.stack.networks.keys().map(String::as_str);
    let key = std::iter::once("default")
        .chain(stack_keys)
        .find(|key| {
            let def = loaded.stack.networks.get(*key);
            let engine_name = def
                .and_then(|d| d.name.clone())
                .unwrap_or_else(|| network(stage, project, key));
            engine_name == name && !def.is_some_and(|d| d.external)
        })
        .unwrap_or("default");
    let driver = loaded
        .stack
        .networks
        .get(key)
        .and_then(|d| d.driver.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "bridge".to_string());
    let def = loaded.stack.networks.get(key).cloned().unwrap_or_default();
    let map = |m: &indexmap::IndexMap<String, String>| -> HashMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    Ok(crate::engine::networks::NetworkWanted {
        name: name.to_string(),
        key: key.to_string(),
        driver,
        labels: object_labels(loaded, "networks", key, role::NETWORK)?,
        stage: stage.clone(),
        project: project.clone(),
        options: map(&def.driver_opts),
        internal: def.internal,
        attachable: def.attachable,
        enable_ipv6: def.enable_ipv6,
        ipam: def
            .ipam
            .as_ref()
            .map(|ipam| crate::engine::networks::IpamWanted {
                driver: ipam.driver.clone(),
                pools: ipam
                    .config
                    .iter()
                    .map(|pool| crate::engine::networks::PoolWanted {
                        subnet: pool.subnet.clone(),
                        ip_range: pool.ip_range.clone(),
                        gateway: pool.gateway.clone(),
                        aux_addresses: map(&pool.aux_addresses),
                    })
                    .collect(),
                options: map(&ipam.options),
            }),
    })
}

/// Every network the stage itself creates (the stage network and each non-external one).
pub fn networks_wanted(
    loaded: &crate::stack::LoadedStack,
) -> Result<Vec<crate::engine::networks::NetworkWanted>, crate::stack::StackErrors> {
    let mut keys = vec!["default".to_string()];
    keys.extend(
        loaded
            .stack
            .networks
            .iter()
            .filter(|(key, def)| !def.external && key.as_str() != "default")
            .map(|(key, _)| key.clone()),
    );
    keys.iter()
        .map(|key| {
            let def = loaded.stack.networks.get(key);
            let name = def
                .and_then(|d| d.name.clone())
                .unwrap_or_else(|| network(&loaded.stage, &loaded.project, key));
            network_wanted(loaded, &name)
        })
        .collect()
}

/// The stage's own volumes whose driver the stack sets: `(engine name, key, driver)`.
pub fn volume_drivers(loaded: &crate::stack::LoadedStack) -> Vec<(String, String, String)> {
    loaded
        .stack
        .volumes
        .iter()
        .filter(|(_, def)| !def.external)
        .filter_map(|(key, def)| {
            let driver = def.driver.clone().filter(|d| !d.is_empty())?;
            let name = def
                .name
                .clone()
                .unwrap_or_else(|| volume(&loaded.stage, &loaded.project, key));
            Some((name, key.clone(), driver))
        })
        .collect()
}

/// The labels of the stage's volume of engine name `name`.
pub fn volume_labels(
    loaded: &crate::stack::LoadedStack,
    name: &str,
) -> Result<HashMap<String, String>, crate::stack::StackErrors> {
    let (stage, project) = (&loaded.stage, &loaded.project);
    let key = loaded
        .stack
        .volumes
        .iter()
        .find(|(key, def)| {
            def.name
                .clone()
                .unwrap_or_else(|| volume(stage, project, key))
                == name
        })
        .map(|(key, _)| key.clone())
        .unwrap_or_default();
    object_labels(loaded, "volumes", &key, role::VOLUME)
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
        let image = image_labels("dev", "app", "api", "app/api:dev");
        let container = owner_labels("dev", "app", role::SERVICE);
        assert!(
            image.keys().all(|k| !container.contains_key(k)),
            "{image:?}"
        );
        assert_eq!(image[image_label::TAG], "app/api:dev");
    }
}
