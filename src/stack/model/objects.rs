//! The stack's top-level objects: secrets and configs, networks, volumes, data containers.

use super::*;

/// A top-level secret or config: where its content comes from (exactly one of `file`,
/// `environment`, `content`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileDef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The content, read while resolving (never printed).
    #[serde(skip)]
    pub data: Option<Vec<u8>>,
}

impl<'de> Deserialize<'de> for FileDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            file: Option<String>,
            #[serde(default)]
            environment: Option<String>,
            #[serde(default)]
            content: Option<String>,
            #[serde(default)]
            name: Option<String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let sources = [&raw.file, &raw.environment, &raw.content]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if sources != 1 {
            return Err(de::Error::custom(
                "give exactly one source: `file`, `environment` or `content`",
            ));
        }
        Ok(FileDef {
            file: raw.file,
            environment: raw.environment,
            content: raw.content,
            name: raw.name,
            data: None,
        })
    }
}

/// A top-level network.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// The engine's name for it (external networks, or to override the stage name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub driver_opts: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_ipv6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
}

/// A network's address management: a driver and its subnets.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub options: IndexMap<String, String>,
}

/// One address pool of a network.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub aux_addresses: IndexMap<String, String>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub driver_opts: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
}

/// A container that is created and never started; services mount its volumes with
/// `volumes_from`. `down` keeps it, `purge` removes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_command"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
}
