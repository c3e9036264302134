//! The stack model: typed values for one resolved stack file.
//!
//! These types are what the rest of stackctl sees after loading, interpolation and
//! validation. Every Compose key here means what it means in Compose; `data_containers`
//! and `tasks` are stackctl's own. Short and long Compose syntaxes (a string or a list,
//! a list or a map) are normalised while deserializing, so consumers see one shape.

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::value::Value;

mod deploy;
mod forms;
mod mounts;
mod objects;
mod service;
mod task;
mod values;

pub use deploy::*;
pub use forms::describe;
use forms::*;
pub use mounts::*;
pub use objects::*;
pub use service::*;
pub use task::*;
pub use values::*;

/// Read a typed value from a subtree (inside a custom deserializer).
fn from_tree<T: de::DeserializeOwned>(value: Value) -> Result<T, super::value::Error> {
    super::value::from_value(value)
}

/// One resolved stack file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// The project name; defaults to the project directory's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, NetworkDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub volumes: IndexMap<String, VolumeDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub secrets: IndexMap<String, FileDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub configs: IndexMap<String, FileDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub data_containers: IndexMap<String, DataContainer>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub tasks: IndexMap<String, Task>,
    /// Where the stage's engine is (`engine: { host: ssh://deploy@server }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineDef>,
}

/// The top-level `engine:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineDef {
    /// `ssh://USER@HOST[:PORT]`, `tcp://HOST:PORT`, `unix:///PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `single` (the default: containers on one engine) or `swarm` (services on the Swarm
    /// cluster whose manager `host` reaches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl EngineDef {
    /// Whether the stage is deployed to a Swarm cluster.
    pub fn is_swarm(&self) -> bool {
        self.mode.as_deref() == Some("swarm")
    }
}

impl Stack {
    /// Whether the stage is deployed to a Swarm cluster (`engine: { mode: swarm }`).
    pub fn is_swarm(&self) -> bool {
        self.engine.as_ref().is_some_and(EngineDef::is_swarm)
    }

    /// A stack straight from YAML text, without interpolation, validation or resolving
    /// (unit tests of the planners build their stacks this way).
    pub fn from_yaml_str(text: &str) -> Result<Stack, String> {
        super::load::from_yaml_str(text)
    }
}

/// Labels stackctl writes on every object it owns.
pub mod labels {
    pub const PROJECT: &str = "io.stackctl.project";
    pub const STAGE: &str = "io.stackctl.stage";
    pub const ROLE: &str = "io.stackctl.role";
    pub const SERVICE: &str = "io.stackctl.service";
    pub const CONFIG_HASH: &str = "io.stackctl.config-hash";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_compose_reads_them() {
        assert_eq!(ByteSize::parse("512m"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1.5G"), Ok(ByteSize(3 << 29)));
        assert_eq!(ByteSize::parse("2gb"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("1t"), Ok(ByteSize(1 << 40)));
        assert!(ByteSize::parse(".5g").is_err());
        assert!(ByteSize::parse("1.5x").is_err());
        assert!(ByteSize::parse("9999999999999g").is_err());
    }

    #[test]
    fn file_modes_in_octal_or_as_yaml_numbers() {
        assert_eq!(file_mode(&Scalar::Int(0o440)), Ok(0o440));
        assert_eq!(file_mode(&Scalar::Str("0440".into())), Ok(0o440));
        assert!(file_mode(&Scalar::Str("0999".into())).is_err());
        assert!(file_mode(&Scalar::Int(0o17777)).is_err());
    }
}
