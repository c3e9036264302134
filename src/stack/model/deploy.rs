//! `deploy:` of a service: replicas, placement, update and restart policy, resources.

use super::*;

/// `deploy:`. A single engine honours `mode: replicated`, `replicas`, `resources` and
/// `restart_policy`; the other keys (validation refuses them there) are Swarm's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// `replicated` (the default); under Swarm also `global`, `replicated-job`, `global-job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<DeployRestart>,
    /// Swarm: `vip` (the default) or `dnsrr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    /// Swarm: labels of the service (not of its containers).
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
}

/// Swarm: where a service's tasks may run.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// `node.role == manager`, `node.labels.disk == ssd` …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u64>,
}

/// Swarm: spread tasks over the values of a node label (`spread: node.labels.zone`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlacementPreference {
    pub spread: String,
}

/// Swarm: how a service's tasks are replaced (`update_config`) or rolled back
/// (`rollback_config`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationSpec>,
    /// `continue`, `rollback` or `pause` (`continue` or `pause` for a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    /// `stop-first` or `start-first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Reservations>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_mem_limit"
    )]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reservations {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_size"
    )]
    pub memory: Option<ByteSize>,
    /// Devices (GPUs) the container gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
    /// Swarm: CPUs reserved on the node a task is placed on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_cpus"
    )]
    pub cpus: Option<f64>,
}

/// A device request (GPUs): which driver, how many (`all`) or which ones, with which
/// capabilities.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeviceRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// -1: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub options: IndexMap<String, String>,
}

impl<'de> Deserialize<'de> for DeviceRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            driver: Option<String>,
            #[serde(default)]
            count: Option<Scalar>,
            #[serde(default, deserialize_with = "string_or_list")]
            device_ids: Vec<String>,
            #[serde(default, deserialize_with = "string_or_list")]
            capabilities: Vec<String>,
            #[serde(default, deserialize_with = "labels")]
            options: IndexMap<String, String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let count = match raw.count {
            None | Some(Scalar::Null) => None,
            Some(Scalar::Str(all)) if all == "all" => Some(-1),
            Some(Scalar::Int(n)) if n >= 0 => Some(n),
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "`count` is a number of devices or `all`, found {}",
                    other.describe()
                )))
            }
        };
        if count.is_some() && !raw.device_ids.is_empty() {
            return Err(de::Error::custom("give `count` or `device_ids`, not both"));
        }
        Ok(DeviceRequest {
            driver: raw.driver,
            count,
            device_ids: raw.device_ids,
            capabilities: raw.capabilities,
            options: raw.options,
        })
    }
}

/// `gpus: all`, or a list of device requests (each asking for the `gpu` capability).
pub(super) fn gpus<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<DeviceRequest>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(all) if all == "all" => Ok(vec![DeviceRequest {
            count: Some(-1),
            capabilities: vec!["gpu".to_string()],
            ..Default::default()
        }]),
        value @ Value::Sequence(_) => {
            let mut requests: Vec<DeviceRequest> = from_tree(value).map_err(de::Error::custom)?;
            for request in &mut requests {
                if request.capabilities.is_empty() {
                    request.capabilities.push("gpu".to_string());
                }
            }
            Ok(requests)
        }
        other => Err(de::Error::custom(format!(
            "expected `all` or a list of device requests, found {}",
            describe(&other)
        ))),
    }
}

/// `deploy.restart_policy`: the condition (`none`, `on-failure`, `any`) and a count.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployRestart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Swarm: the wait between restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationSpec>,
    /// Swarm: how long a restart must run to count as one that worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationSpec>,
}

impl DeployRestart {
    /// The same policy as `restart:` writes it.
    pub fn policy(&self) -> Result<RestartPolicy, String> {
        Ok(match self.condition.as_deref().unwrap_or("any") {
            "none" => RestartPolicy::No,
            "any" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure(self.max_attempts),
            other => {
                return Err(format!(
                    "`{other}` is not a restart condition (`none`, `on-failure` or `any`)"
                ))
            }
        })
    }
}
