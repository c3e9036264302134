//! Tasks: a one-off container, or a sequence of steps.

use super::*;

/// A task: a one-off container, or a sequence of steps.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Task {
    Container(ContainerTask),
    Steps(StepsTask),
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let is_steps = value
            .as_mapping()
            .map(|m| m.contains_key("steps"))
            .unwrap_or(false);
        if is_steps {
            from_tree(value).map(Task::Steps).map_err(de::Error::custom)
        } else if value.is_mapping() {
            from_tree(value)
                .map(Task::Container)
                .map_err(de::Error::custom)
        } else {
            Err(de::Error::custom(format!(
                "expected a task map (`service:`/`image:`/`build:` with `command:`, or `steps:`), found {}",
                describe(&value)
            )))
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerTask {
    /// Inherit image, environment, networks, volumes and `volumes_from` from this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_command"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_command"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "environment"
    )]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// A file (relative to the project directory) streamed to the task's stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar_string"
    )]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepsTask {
    /// Task names, or the built-ins `up`, `down`, `build`, `wait`.
    pub steps: Vec<String>,
}

/// Built-in step names usable in `steps:`.
pub const BUILTIN_STEPS: &[&str] = &["up", "down", "build", "wait"];
