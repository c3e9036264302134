//! The stage's networks and volumes as the stack wants them: their engine names, labels
//! (the user's, checked, and the ownership labels) and, for a network, its driver and
//! address management. The engine creates them from these specs (`engine::networks`).

use std::collections::HashMap;

use crate::names;
use crate::stack::{LoadedStack, StackError, StackErrors};

/// A network as the stage wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The engine name (`{stage}-{project}_{key}`, or the stack's `name:`).
    pub name: String,
    /// The key under `networks:` (`default` for the stage network), for messages.
    pub key: String,
    pub driver: String,
    /// Every label it is created with: the stack's own, then the ownership labels.
    pub labels: HashMap<String, String>,
    pub stage: String,
    pub project: String,
    /// Driver options, and the settings it is created with (not compared afterwards).
    pub options: HashMap<String, String>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub ipam: Option<IpamSpec>,
}

/// A network's address management as the stack writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamSpec {
    pub driver: Option<String>,
    pub pools: Vec<PoolSpec>,
    pub options: HashMap<String, String>,
}

/// One address pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSpec {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: HashMap<String, String>,
}

/// The user's labels of a network or volume (`section` is `networks` or `volumes`), with the
/// ownership labels added. A user label under `io.stackctl.` would pass a foreign object off
/// as the stage's (or hide the stage's own): it is refused, located, exit 2.
pub fn object_labels(
    loaded: &LoadedStack,
    section: &str,
    key: &str,
    role: &str,
) -> Result<HashMap<String, String>, StackErrors> {
    let user = match section {
        "networks" => loaded.stack.networks.get(key).map(|d| &d.labels),
        _ => loaded.stack.volumes.get(key).map(|d| &d.labels),
    };
    let mut labels = HashMap::new();
    let mut errors = Vec::new();
    for (label, value) in user.into_iter().flatten() {
        if label.starts_with("io.stackctl.") {
            errors.push(
                StackError::new(
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
        return Err(StackErrors(errors));
    }
    labels.extend(names::owner_labels(&loaded.stage, &loaded.project, role));
    Ok(labels)
}

/// Every network and volume label of the stack checked at once (for `config`): the
/// `io.stackctl.` ones are refused, each located.
pub fn check_object_labels(loaded: &LoadedStack) -> Result<(), StackErrors> {
    let networks = loaded
        .stack
        .networks
        .keys()
        .map(|key| object_labels(loaded, "networks", key, names::role::NETWORK));
    let volumes = loaded
        .stack
        .volumes
        .keys()
        .map(|key| object_labels(loaded, "volumes", key, names::role::VOLUME));
    let errors: Vec<StackError> = networks
        .chain(volumes)
        .filter_map(Result::err)
        .flat_map(|errors| errors.0)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StackErrors(errors))
    }
}

/// The stage's network of engine name `name` as the stack wants it: its key under
/// `networks:` (`default` for the stage network), driver (`bridge` unless the stack says
/// otherwise) and labels.
pub fn network(loaded: &LoadedStack, name: &str) -> Result<NetworkSpec, StackErrors> {
    let (stage, project) = (&loaded.stage, &loaded.project);
    let stack_keys = loaded.stack.networks.keys().map(String::as_str);
    let key = std::iter::once("default")
        .chain(stack_keys)
        .find(|key| {
            let def = loaded.stack.networks.get(*key);
            let engine_name = def
                .and_then(|d| d.name.clone())
                .unwrap_or_else(|| names::network(stage, project, key));
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
    Ok(NetworkSpec {
        name: name.to_string(),
        key: key.to_string(),
        driver,
        labels: object_labels(loaded, "networks", key, names::role::NETWORK)?,
        stage: stage.clone(),
        project: project.clone(),
        options: map(&def.driver_opts),
        internal: def.internal,
        attachable: def.attachable,
        enable_ipv6: def.enable_ipv6,
        ipam: def.ipam.as_ref().map(|ipam| IpamSpec {
            driver: ipam.driver.clone(),
            pools: ipam
                .config
                .iter()
                .map(|pool| PoolSpec {
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
pub fn networks(loaded: &LoadedStack) -> Result<Vec<NetworkSpec>, StackErrors> {
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
                .unwrap_or_else(|| names::network(&loaded.stage, &loaded.project, key));
            network(loaded, &name)
        })
        .collect()
}

/// The stage's own volumes whose driver the stack sets: `(engine name, key, driver)`.
pub fn volume_drivers(loaded: &LoadedStack) -> Vec<(String, String, String)> {
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
                .unwrap_or_else(|| names::volume(&loaded.stage, &loaded.project, key));
            Some((name, key.clone(), driver))
        })
        .collect()
}

/// The labels of the stage's volume of engine name `name`.
pub fn volume_labels(
    loaded: &LoadedStack,
    name: &str,
) -> Result<HashMap<String, String>, StackErrors> {
    let (stage, project) = (&loaded.stage, &loaded.project);
    let key = loaded
        .stack
        .volumes
        .iter()
        .find(|(key, def)| {
            def.name
                .clone()
                .unwrap_or_else(|| names::volume(stage, project, key))
                == name
        })
        .map(|(key, _)| key.clone())
        .unwrap_or_default();
    object_labels(loaded, "volumes", &key, names::role::VOLUME)
}

/// A volume the stage creates: its engine name, driver, labels (ownership and the stack's,
/// checked) and driver options, as planned (a target reads nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
}

/// The spec of the stage's volume `name` (engine name).
pub fn volume(
    loaded: &LoadedStack,
    name: &str,
    driver: Option<String>,
) -> Result<VolumeSpec, StackErrors> {
    Ok(VolumeSpec {
        name: name.to_string(),
        driver,
        labels: volume_labels(loaded, name)?,
        options: super::container::volume_driver_opts(loaded, name)
            .into_iter()
            .collect(),
    })
}
