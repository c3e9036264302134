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

/// A long-running service container.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
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
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "env_files"
    )]
    pub env_file: Vec<EnvFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "service_networks"
    )]
    pub networks: IndexMap<String, ServiceNetwork>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "depends_on"
    )]
    pub depends_on: IndexMap<String, Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar_string"
    )]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<DurationSpec>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_mem_limit"
    )]
    pub mem_limit: Option<ByteSize>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "extra_hosts"
    )]
    pub extra_hosts: Vec<String>,
    /// When `up` pulls the image (Compose's `pull_policy`); default `missing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// The engine name of the container, instead of `{stage}-{project}--{service}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Ports exposed (not published): `80`, `"8000-8010/udp"`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "expose"
    )]
    pub expose: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "file_refs"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "file_refs"
    )]
    pub configs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// `host`, `none`, `bridge`, `service:NAME` or `container:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub ulimits: IndexMap<String, Ulimit>,
    /// `SERVICE` or `SERVICE:ALIAS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// The number of containers (Compose's `scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `PATH` or `PATH:OPTIONS`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_size"
    )]
    pub shm_size: Option<ByteSize>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub sysctls: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub dns: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub dns_search: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub dns_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_size"
    )]
    pub mem_reservation: Option<ByteSize>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_int"
    )]
    pub pids_limit: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_int"
    )]
    pub cpu_shares: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar_string"
    )]
    pub cpuset: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_micros"
    )]
    pub cpu_quota: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_micros"
    )]
    pub cpu_period: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_micros"
    )]
    pub cpu_rt_period: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_micros"
    )]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_int"
    )]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kill_disable: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_int"
    )]
    pub mem_swappiness: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_swap"
    )]
    pub memswap_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub storage_opt: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<BlkioConfig>,
    /// Steps run to completion, each in its own container, after the service's new
    /// container is created and before it starts (Compose's `pre_start`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<PreStartStep>,
    /// Commands run in the container after stackctl starts it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<ExecHookDef>,
    /// Commands run in the container before stackctl stops it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<ExecHookDef>,
    /// GPUs: `all`, or a list of device requests.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "gpus"
    )]
    pub gpus: Vec<DeviceRequest>,
    /// Files of `KEY=VALUE` labels (relative to the project directory); `labels` wins.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub label_file: Vec<String>,
    /// Compose's `develop:` (the rules `stackctl watch` follows). Not part of the
    /// container: changing it recreates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<Develop>,
}

/// One `pre_start` step: a command in a container of its own (Compose's keys), or one of
/// the stack's container tasks (`task: NAME`, stackctl's addition).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreStartStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_command"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar_string"
    )]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "environment"
    )]
    pub environment: IndexMap<String, Option<String>>,
    /// Compose's per-replica switch, accepted: every step runs once per service, before
    /// its first replica starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_replica: Option<bool>,
}

/// The name the Compose-keys code gave [`ExecHookDef`].
pub type Hook = ExecHookDef;

/// A lifecycle hook (`post_start`, `pre_stop`): a command run inside the service's
/// container (Docker exec).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecHookDef {
    #[serde(default, deserialize_with = "command")]
    pub command: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar_string"
    )]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "environment"
    )]
    pub environment: IndexMap<String, Option<String>>,
}

/// `blkio_config`: block IO weight and limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlkioConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<ByteRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<ByteRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<IoRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<IoRate>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

/// A device and bytes per second (`rate: 10m`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ByteRate {
    pub path: String,
    pub rate: ByteSize,
}

/// A device and operations per second.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IoRate {
    pub path: String,
    pub rate: i64,
}

impl Service {
    /// How many containers the service runs: `scale`, else `deploy.replicas`, else 1.
    pub fn replicas(&self) -> u32 {
        self.scale
            .or_else(|| self.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }
}

/// One `env_file` entry: a path, and whether a missing file is an error (Compose's
/// `required`, true unless written `false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
    /// `format: raw`: each line `KEY=VALUE` taken as it is (no quotes removed).
    pub raw: bool,
}

impl Serialize for EnvFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.required && !self.raw {
            return serializer.serialize_str(&self.path);
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("path", &self.path)?;
        if !self.required {
            map.serialize_entry("required", &false)?;
        }
        if self.raw {
            map.serialize_entry("format", "raw")?;
        }
        map.end()
    }
}

fn env_files<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<EnvFile>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Long {
        path: String,
        #[serde(default = "yes")]
        required: bool,
        #[serde(default)]
        format: Option<String>,
    }
    let one = |value: Value| -> Result<EnvFile, D::Error> {
        match value {
            Value::String(path) => Ok(EnvFile {
                path,
                required: true,
                raw: false,
            }),
            Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                let raw = match long.format.as_deref() {
                    None => false,
                    Some("raw") => true,
                    Some(other) => {
                        return Err(de::Error::custom(format!(
                            "`format: {other}` is not an env file format (`raw`, or leave it out for the `.env` format)"
                        )))
                    }
                };
                Ok(EnvFile {
                    path: long.path,
                    required: long.required,
                    raw,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected an env file path or a map with `path`, found {}",
                describe(&other)
            ))),
        }
    };
    match Value::deserialize(deserializer)? {
        Value::Sequence(items) => items.into_iter().map(one).collect(),
        other => one(other).map(|f| vec![f]),
    }
}

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

/// A service's use of a secret or config: short (`NAME`) or long syntax.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileRef {
    pub source: String,
    /// Where it lands: an absolute path, or a name under `/run/secrets/` (secrets) or `/`
    /// (configs). `None`: the source's name there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// File mode bits (`0444` when not given); shown in octal.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "octal")]
    pub mode: Option<u32>,
}

fn octal<S: serde::Serializer>(mode: &Option<u32>, serializer: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(mode) => serializer.collect_str(&format_args!("0{mode:o}")),
        None => serializer.serialize_none(),
    }
}

fn file_refs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<FileRef>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Long {
        source: String,
        #[serde(default)]
        target: Option<String>,
        #[serde(default, deserialize_with = "opt_scalar_string")]
        uid: Option<String>,
        #[serde(default, deserialize_with = "opt_scalar_string")]
        gid: Option<String>,
        #[serde(default)]
        mode: Option<Scalar>,
    }
    let value = Value::deserialize(deserializer)?;
    let Value::Sequence(items) = value else {
        return Err(de::Error::custom(format!(
            "expected a list of names or of maps with `source`, found {}",
            describe(&value)
        )));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(source) => Ok(FileRef {
                source,
                ..Default::default()
            }),
            Value::Mapping(_) => {
                let long: Long = from_tree(item).map_err(de::Error::custom)?;
                let mode = long
                    .mode
                    .map(|m| file_mode(&m))
                    .transpose()
                    .map_err(de::Error::custom)?;
                for (key, id) in [("uid", &long.uid), ("gid", &long.gid)] {
                    if let Some(id) = id {
                        if id.parse::<u32>().is_err() {
                            return Err(de::Error::custom(format!(
                                "`{key}: {id}` must be a number (a user or group ID)"
                            )));
                        }
                    }
                }
                Ok(FileRef {
                    source: long.source,
                    target: long.target,
                    uid: long.uid,
                    gid: long.gid,
                    mode,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a name or a map with `source`, found {}",
                describe(&other)
            ))),
        })
        .collect()
}

/// A file mode: a number as YAML reads it (`0440` is octal in YAML 1.1, so it may arrive
/// as 288 or as the text `0440`); text is read as octal.
fn file_mode(mode: &Scalar) -> Result<u32, String> {
    let parsed = match mode {
        Scalar::Int(n) => u32::try_from(*n).ok(),
        Scalar::Str(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8).ok(),
        _ => None,
    };
    parsed.filter(|m| *m <= 0o7777).ok_or_else(|| {
        format!(
            "`mode` must be file mode bits like 0440, found {}",
            mode.describe()
        )
    })
}

/// One `ulimits` entry: a single number (soft = hard) or `{soft, hard}`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            soft: i64,
            hard: i64,
        }
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::Number(n) => match n.as_i64() {
                Some(limit) => Ok(Ulimit {
                    soft: limit,
                    hard: limit,
                }),
                None => Err(de::Error::custom("a ulimit is a whole number")),
            },
            Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                if long.soft > long.hard {
                    return Err(de::Error::custom(format!(
                        "the soft limit {} is above the hard limit {}",
                        long.soft, long.hard
                    )));
                }
                Ok(Ulimit {
                    soft: long.soft,
                    hard: long.hard,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a number or `{{soft, hard}}`, found {}",
                describe(&other)
            ))),
        }
    }
}

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
fn gpus<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<DeviceRequest>, D::Error> {
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

/// `logging:`: a log driver and its options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub options: IndexMap<String, String>,
}

/// A device mapping: `HOST[:CONTAINER[:PERMISSIONS]]` or the long form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub source: String,
    pub target: String,
    pub permissions: String,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.target, self.permissions)
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            source: String,
            #[serde(default)]
            target: Option<String>,
            #[serde(default)]
            permissions: Option<String>,
        }
        let (source, target, permissions) = match Value::deserialize(deserializer)? {
            Value::String(text) => {
                let mut parts = text.splitn(3, ':');
                let source = parts.next().unwrap_or_default().to_string();
                (
                    source,
                    parts.next().map(str::to_string),
                    parts.next().map(str::to_string),
                )
            }
            value @ Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                (long.source, long.target, long.permissions)
            }
            other => {
                return Err(de::Error::custom(format!(
                    "expected a device like \"/dev/fuse:/dev/fuse:rwm\", found {}",
                    describe(&other)
                )))
            }
        };
        if !source.starts_with('/') {
            return Err(de::Error::custom(format!(
                "the device `{source}` must be an absolute path (like /dev/fuse)"
            )));
        }
        let permissions = permissions.unwrap_or_else(|| "rwm".to_string());
        if permissions.is_empty() || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(de::Error::custom(format!(
                "device permissions `{permissions}` must be letters of `rwm`"
            )));
        }
        Ok(Device {
            target: target.unwrap_or_else(|| source.clone()),
            source,
            permissions,
        })
    }
}

/// `expose:`: port numbers or ranges, with an optional protocol.
fn expose<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items: Vec<Scalar> = Vec::deserialize(deserializer)?;
    items
        .into_iter()
        .map(|item| {
            let text = item
                .clone()
                .into_text()
                .ok_or_else(|| de::Error::custom("expected a port number"))?;
            let (ports, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
            let valid_port = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
            let ports_ok = match ports.split_once('-') {
                Some((low, high)) => {
                    valid_port(low)
                        && valid_port(high)
                        && low.parse::<u16>().ok() <= high.parse::<u16>().ok()
                }
                None => valid_port(ports),
            };
            if !ports_ok || !matches!(protocol, "tcp" | "udp" | "sctp") {
                return Err(de::Error::custom(format!(
                    "`{text}` is not a port to expose (like `80`, `8000-8010` or `53/udp`)"
                )));
            }
            Ok(format!("{ports}/{protocol}"))
        })
        .collect()
}

/// A whole number, also written as text (`"512"`).
fn opt_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Scalar::deserialize(deserializer)? {
        Scalar::Null => Ok(None),
        Scalar::Int(n) => Ok(Some(n)),
        Scalar::Str(s) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().ok()),
        other => Err(de::Error::custom(format!(
            "expected a whole number, found {}",
            other.describe()
        ))),
    }
}

/// Microseconds: a number, or a duration like `400ms` (`cpu_quota`, `cpu_rt_runtime` …).
fn opt_micros<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Scalar::deserialize(deserializer)? {
        Scalar::Null => Ok(None),
        Scalar::Int(n) => Ok(Some(n)),
        Scalar::Str(s) => match s.trim().parse::<i64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => DurationSpec::parse(&s)
                .map(|d| Some(d.0.as_micros().min(i64::MAX as u128) as i64))
                .map_err(de::Error::custom),
        },
        other => Err(de::Error::custom(format!(
            "expected microseconds or a duration like `400ms`, found {}",
            other.describe()
        ))),
    }
}

/// `memswap_limit`: a size, or -1 for unlimited swap.
fn opt_swap<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Scalar::deserialize(deserializer)? {
        Scalar::Null => Ok(None),
        Scalar::Int(n) if n == -1 || n > 0 => Ok(Some(n)),
        Scalar::Str(s) if s.trim() == "-1" => Ok(Some(-1)),
        Scalar::Str(s) => ByteSize::parse(&s)
            .map(|b| Some(b.0))
            .map_err(de::Error::custom),
        other => Err(de::Error::custom(format!(
            "expected a size like `1g` (or -1 for unlimited), found {}",
            other.describe()
        ))),
    }
}

/// A size like `shm_size: 256m` (bytes when a bare number).
fn opt_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ByteSize>, D::Error> {
    Option::<ByteSize>::deserialize(deserializer)
}

/// A service's `pull_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull when the image is not on the engine (the default).
    Missing,
    /// Pull at every `up`.
    Always,
    /// Never pull: a missing image is an error.
    Never,
    /// Build the image at every `up` (the service needs `build:`).
    Build,
    /// `daily`, `weekly`, `every_<duration>`: pull when the image is missing or was last
    /// pulled (or tagged) longer ago than this.
    Every(Duration),
}

impl PullPolicy {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "missing" | "if_not_present" => PullPolicy::Missing,
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "build" => PullPolicy::Build,
            "daily" => PullPolicy::Every(Self::DAY),
            "weekly" => PullPolicy::Every(Self::WEEK),
            other => {
                let Some(period) = other.strip_prefix("every_") else {
                    return Err(format!(
                        "unknown pull_policy `{}` (use missing, always, never, build, daily, weekly or every_<duration> like every_12h)",
                        other
                    ));
                };
                let period = DurationSpec::parse(period)
                    .map_err(|e| format!("`pull_policy: {other}`: {e}"))?;
                if period.0.is_zero() {
                    return Err(format!(
                        "`pull_policy: {other}` must be longer than zero (use `always` to pull at every `up`)"
                    ));
                }
                PullPolicy::Every(period.0)
            }
        })
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullPolicy::Missing => f.write_str("missing"),
            PullPolicy::Always => f.write_str("always"),
            PullPolicy::Never => f.write_str("never"),
            PullPolicy::Build => f.write_str("build"),
            PullPolicy::Every(d) if *d == Self::DAY => f.write_str("daily"),
            PullPolicy::Every(d) if *d == Self::WEEK => f.write_str("weekly"),
            PullPolicy::Every(d) => write!(f, "every_{}", DurationSpec(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for PullPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Str(text) => PullPolicy::parse(&text).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "expected a pull policy like `missing` or `daily`, found {}",
                other.describe()
            ))),
        }
    }
}

impl Serialize for PullPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// `build:` as a string (the context) or a map.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Build {
    pub context: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// A Dockerfile written in the stack file (instead of `dockerfile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// The network `RUN` steps use (`host`, `none`, `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// Pull the base images at every build.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(default = "dot")]
            context: String,
            #[serde(default)]
            dockerfile: Option<String>,
            #[serde(default, deserialize_with = "environment")]
            args: IndexMap<String, Option<String>>,
            #[serde(default)]
            target: Option<String>,
            #[serde(default, deserialize_with = "labels")]
            labels: IndexMap<String, String>,
            #[serde(default)]
            dockerfile_inline: Option<String>,
            #[serde(default)]
            cache_from: Vec<String>,
            #[serde(default)]
            network: Option<String>,
            #[serde(default, deserialize_with = "opt_size")]
            shm_size: Option<ByteSize>,
            #[serde(default)]
            no_cache: bool,
            #[serde(default)]
            pull: bool,
        }
        fn dot() -> String {
            ".".to_string()
        }
        // Untagged enums lose the inner error; match on the value so an unknown key inside
        // `build:` is reported precisely.
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::String(context) => Ok(Build {
                context,
                ..Default::default()
            }),
            Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                if long.shm_size.is_some_and(|s| s.0 > i64::from(i32::MAX)) {
                    return Err(de::Error::custom(
                        "the classic builder takes a `shm_size` below 2g",
                    ));
                }
                if long.dockerfile.is_some() && long.dockerfile_inline.is_some() {
                    return Err(de::Error::custom(
                        "give `dockerfile` or `dockerfile_inline`, not both",
                    ));
                }
                Ok(Build {
                    context: long.context,
                    dockerfile: long.dockerfile,
                    args: long.args,
                    target: long.target,
                    labels: long.labels,
                    dockerfile_inline: long.dockerfile_inline,
                    cache_from: long.cache_from,
                    network: long.network,
                    shm_size: long.shm_size,
                    no_cache: long.no_cache,
                    pull: long.pull,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a build context path or a map with `context`, found {}",
                describe(&other)
            ))),
        }
    }
}

/// One published port: `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]` or the long form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: String,
    /// The long form's `mode`: `host` or `ingress` (Swarm's routing mesh; validation
    /// refuses it on a single engine). `None` when not written.
    pub mode: Option<String>,
}

/// One mount of a service: `SOURCE:TARGET[:ro]`, `TARGET` (anonymous) or the long form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolumeMount {
    pub kind: MountKind,
    /// Volume name (named) or host path as written (bind); `None` for anonymous.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    /// More mode flags in the engine's bind syntax (`nocopy`, `z`, `rshared`), or for a
    /// tmpfs mount its options (`size=…`, `mode=…`).
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Named,
    Bind,
    Anonymous,
    Tmpfs,
}

/// Bind propagation modes the engine knows.
const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A fixed address on the network (its `ipam` must declare a subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Healthcheck {
    /// Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<DurationSpec>,
    /// How often to check during `start_period` (engine API 1.44 and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<DurationSpec>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

impl<'de> Deserialize<'de> for Healthcheck {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            test: Option<StringOrList>,
            #[serde(default)]
            interval: Option<DurationSpec>,
            #[serde(default)]
            timeout: Option<DurationSpec>,
            #[serde(default)]
            retries: Option<u32>,
            #[serde(default)]
            start_period: Option<DurationSpec>,
            #[serde(default)]
            start_interval: Option<DurationSpec>,
            #[serde(default)]
            disable: bool,
        }
        let raw = Raw::deserialize(deserializer)?;
        // The engine takes 0 (its default) or at least a millisecond.
        for (key, duration) in [
            ("interval", raw.interval),
            ("timeout", raw.timeout),
            ("start_period", raw.start_period),
            ("start_interval", raw.start_interval),
        ] {
            if let Some(DurationSpec(d)) = duration {
                if !d.is_zero() && d < Duration::from_millis(1) {
                    return Err(de::Error::custom(format!(
                        "`{key}: {d:?}` is too short: at least 1ms (or 0 for the engine's default)"
                    )));
                }
            }
        }
        let test = match raw.test {
            None => Vec::new(),
            // A string test runs through the shell, as in Compose.
            Some(StringOrList::One(s)) => vec!["CMD-SHELL".to_string(), s],
            Some(StringOrList::Many(list)) => list,
        };
        if let Some(first) = test.first() {
            if !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE") {
                return Err(de::Error::custom(format!(
                    "healthcheck test must start with CMD, CMD-SHELL or NONE, found `{first}`"
                )));
            }
        }
        Ok(Healthcheck {
            test,
            interval: raw.interval,
            timeout: raw.timeout,
            retries: raw.retries,
            start_period: raw.start_period,
            start_interval: raw.start_interval,
            disable: raw.disable,
        })
    }
}

/// `restart:` as Compose writes it: `no`, `always`, `on-failure[:N]` (at most N restarts),
/// `unless-stopped`. Displayed the same way (`on-failure:5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    OnFailure(Option<u32>),
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure(None),
            "unless-stopped" => RestartPolicy::UnlessStopped,
            other => match other.strip_prefix("on-failure:") {
                Some(count) => RestartPolicy::OnFailure(Some(count.parse().map_err(|_| {
                    format!(
                        "`{other}`: the number of restarts must be a whole number (0 to {})",
                        u32::MAX
                    )
                })?)),
                None => {
                    return Err(format!(
                        "`{other}` is not a restart policy (`no`, `always`, `on-failure[:N]` or `unless-stopped`)"
                    ))
                }
            },
        })
    }

    /// The engine's policy name (without the count).
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure(_) => "on-failure",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if let RestartPolicy::OnFailure(Some(count)) = self {
            write!(f, ":{count}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Str(text) => RestartPolicy::parse(&text).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "expected a restart policy (`no`, `always`, `on-failure[:N]` or `unless-stopped`), found {}",
                other.describe()
            ))),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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

/// A duration written the Compose way: `1s`, `1m30s`, `500ms`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// The longest duration accepted: what the engine's nanosecond fields hold (`i64`),
    /// about 292 years.
    pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

    fn too_long(text: &str) -> String {
        format!(
            "`{text}` is too long (at most {}h)",
            Self::MAX.as_secs() / 3600
        )
    }

    /// A number of seconds, range-checked.
    pub fn from_secs(seconds: u64) -> Result<Self, String> {
        let duration = Duration::from_secs(seconds);
        if duration > Self::MAX {
            return Err(Self::too_long(&format!("{seconds}s")));
        }
        Ok(DurationSpec(duration))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = 0f64;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| {
                    format!("`{text}` is missing a unit (use ms, s, m or h, like `1m30s`)")
                })?;
            if digits == 0 {
                return Err(format!(
                    "`{text}` is not a duration (use a number and a unit, like `1m30s`)"
                ));
            }
            let number: f64 = rest[..digits]
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| format!("`{text}` is not a duration (like `1m30s`)"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let seconds = match unit {
                "ns" => number / 1e9,
                "us" | "µs" => number / 1e6,
                "ms" => number / 1e3,
                "s" => number,
                "m" => number * 60.0,
                "h" => number * 3600.0,
                _ => {
                    return Err(format!(
                        "`{text}` has an unknown unit `{unit}` (use ms, s, m or h, like `1m30s`)"
                    ))
                }
            };
            total += seconds;
            if !total.is_finite() || total > Self::MAX.as_secs_f64() {
                return Err(Self::too_long(text));
            }
        }
        Duration::try_from_secs_f64(total)
            .ok()
            .filter(|d| *d <= Self::MAX)
            .map(DurationSpec)
            .ok_or_else(|| Self::too_long(text))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut secs = self.0.as_secs();
        let hours = secs / 3600;
        secs %= 3600;
        let minutes = secs / 60;
        secs %= 60;
        let mut out = String::new();
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        if secs > 0 || out.is_empty() {
            out.push_str(&format!("{secs}s"));
        }
        f.write_str(&out)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Int(seconds) if seconds >= 0 => {
                DurationSpec::from_secs(seconds as u64).map_err(de::Error::custom)
            }
            Scalar::Str(text) => DurationSpec::parse(&text).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "expected a duration like `1m30s`, found {}",
                other.describe()
            ))),
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// A memory size: bytes, or a number with `b`, `k`, `m`, `g` (as `mem_limit` in Compose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub i64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let digits_end = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(digits_end);
        if number.is_empty() || number.starts_with('.') {
            return Err(format!("`{text}` is not a size (like `512m` or `1g`)"));
        }
        let too_large = || format!("`{text}` is too large (at most 8589934591g)");
        // A fraction (`1.5g`, as Compose reads it) is rounded down to whole bytes.
        let (number, fraction): (i64, f64) = match number.split_once('.') {
            Some((whole, fraction)) => (
                whole.parse().map_err(|_| too_large())?,
                format!("0.{fraction}")
                    .parse()
                    .map_err(|_| format!("`{text}` is not a size (like `512m` or `1.5g`)"))?,
            ),
            None => (number.parse().map_err(|_| too_large())?, 0.0),
        };
        let factor: i64 = match unit.trim_end_matches('b') {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit (use b, k, m, g or t, like `512m`)"
                ))
            }
        };
        number
            .checked_mul(factor)
            .and_then(|bytes| bytes.checked_add((fraction * factor as f64) as i64))
            .map(ByteSize)
            .ok_or_else(too_large)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Int(bytes) if bytes > 0 => Ok(ByteSize(bytes)),
            Scalar::Str(text) => ByteSize::parse(&text).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "expected a size like `512m`, found {}",
                other.describe()
            ))),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

/// A host address a port is published on: an IPv4 or IPv6 address.
fn checked_ip(ip: &str) -> Result<(), String> {
    ip.parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("`{ip}` is not an IP address (like `127.0.0.1` or `::1`)"))
}

/// The smallest memory limit the engine accepts (6 MiB).
pub const MIN_MEM_LIMIT: i64 = 6 << 20;

fn opt_mem_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ByteSize>, D::Error> {
    let size = Option::<ByteSize>::deserialize(deserializer)?;
    if let Some(ByteSize(bytes)) = size {
        if bytes != 0 && bytes < MIN_MEM_LIMIT {
            return Err(de::Error::custom(format!(
                "a memory limit of {bytes} bytes is below the engine's minimum of 6m"
            )));
        }
    }
    Ok(size)
}

impl PortMapping {
    /// Parses the short syntax `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "use `HOST:CONTAINER`, `IP:HOST:CONTAINER` or `CONTAINER`, optionally with `/tcp` or `/udp`";
        let (spec, protocol) = match text.rsplit_once('/') {
            Some((spec, proto)) => (spec, proto.to_string()),
            None => (text, "tcp".to_string()),
        };
        if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!(
                "port `{text}` has an unknown protocol `{protocol}` (tcp, udp or sctp)"
            ));
        }
        // An IPv6 host address is written in brackets: `[::1]:8080:80`.
        let (host_ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
            let (ip, rest) = stripped
                .split_once("]:")
                .ok_or_else(|| format!("port `{text}` is not valid: {hint}"))?;
            (Some(ip.to_string()), rest.to_string())
        } else {
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.len() {
                1 | 2 => (None, spec.to_string()),
                3 => (
                    Some(parts[0].to_string()),
                    format!("{}:{}", parts[1], parts[2]),
                ),
                _ => return Err(format!("port `{text}` is not valid: {hint}")),
            }
        };
        let number = |s: &str| -> Result<u16, String> {
            if s.contains('-') {
                return Err(format!(
                    "port ranges like `{s}` are not supported yet; list each port"
                ));
            }
            match s.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!(
                    "port `{text}` is not valid: `{s}` is not a port number (1-65535); {hint}"
                )),
                Ok(n) => Ok(n),
            }
        };
        let (host_port, container_port) = match rest.split_once(':') {
            Some(("", container)) => (None, number(container)?),
            Some((host, container)) => (Some(number(host)?), number(container)?),
            None => (None, number(&rest)?),
        };
        Ok(PortMapping {
            host_ip: host_ip
                .filter(|ip| !ip.is_empty())
                .map(|ip| checked_ip(&ip).map(|_| ip))
                .transpose()?,
            host_port,
            container_port,
            protocol,
            mode: None,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = &self.host_ip {
            if ip.contains(':') {
                write!(f, "[{ip}]:")?;
            } else {
                write!(f, "{ip}:")?;
            }
        }
        if let Some(port) = self.host_port {
            write!(f, "{port}:")?;
        }
        write!(f, "{}", self.container_port)?;
        if self.protocol != "tcp" {
            write!(f, "/{}", self.protocol)?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PortMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            target: Scalar,
            #[serde(default)]
            published: Option<Scalar>,
            #[serde(default)]
            host_ip: Option<String>,
            #[serde(default)]
            protocol: Option<String>,
            #[serde(default)]
            mode: Option<String>,
            // Informational in Compose: no effect on the container.
            #[serde(default, rename = "name")]
            _name: Option<String>,
            #[serde(default, rename = "app_protocol")]
            _app_protocol: Option<String>,
        }
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::String(text) => PortMapping::parse(&text).map_err(de::Error::custom),
            Value::Number(n) => PortMapping::parse(&n.to_string()).map_err(de::Error::custom),
            Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                match long.mode.as_deref() {
                    // `ingress` is refused by validation unless the stage is on a Swarm.
                    None | Some("host") | Some("ingress") => {}
                    Some(other) => {
                        return Err(de::Error::custom(format!(
                            "`{other}` is not a port mode (`host`, or `ingress` under Swarm)"
                        )))
                    }
                }
                let port = |what: &str, scalar: Scalar| -> Result<u16, D::Error> {
                    let number = match &scalar {
                        Scalar::Int(n) => u16::try_from(*n).ok(),
                        Scalar::Str(s) => s.parse::<u16>().ok(),
                        _ => None,
                    };
                    number.filter(|n| *n > 0).ok_or_else(|| {
                        de::Error::custom(format!(
                            "{what} port must be a port number (1-65535), found {}",
                            scalar.describe()
                        ))
                    })
                };
                let container_port = port("the target", long.target)?;
                let host_port = long
                    .published
                    .filter(|p| *p != Scalar::Null)
                    .map(|p| port("the published", p))
                    .transpose()?;
                let protocol = long.protocol.unwrap_or_else(|| "tcp".into());
                if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(de::Error::custom(format!(
                        "`{protocol}` is not a protocol (tcp, udp or sctp)"
                    )));
                }
                Ok(PortMapping {
                    host_ip: long
                        .host_ip
                        .filter(|ip| !ip.is_empty())
                        .map(|ip| checked_ip(&ip).map(|_| ip))
                        .transpose()
                        .map_err(de::Error::custom)?,
                    host_port,
                    container_port,
                    protocol,
                    mode: long.mode,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a port like \"8080:80\", found {}",
                describe(&other)
            ))),
        }
    }
}

impl Serialize for PortMapping {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// A container path without a trailing `/` (`/var/www/html/` is `/var/www/html`), as
/// Compose writes it.
fn container_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

impl VolumeMount {
    /// Parses the short syntax `SOURCE:TARGET[:MODE]` or `TARGET`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] => (None, *target, None),
            [source, target] => (Some(*source), *target, None),
            [source, target, mode] => (Some(*source), *target, Some(*mode)),
            _ => {
                return Err(format!(
                    "volume `{text}` is not valid: use `NAME:/path`, `./dir:/path`, `/path`, optionally with `:ro`"
                ))
            }
        };
        if !target.starts_with('/') {
            return Err(format!(
                "volume `{text}`: the container path `{target}` must be absolute"
            ));
        }
        let target = container_path(target);
        let mut read_only = false;
        let mut options = Vec::new();
        for flag in mode.into_iter().flat_map(|m| m.split(',')) {
            match flag {
                "ro" => read_only = true,
                // Consistency flags mean nothing on Linux (as in Compose).
                "rw" | "cached" | "delegated" | "consistent" => {}
                "z" | "Z" | "nocopy" => options.push(flag.to_string()),
                other if PROPAGATIONS.contains(&other) => options.push(other.to_string()),
                other => {
                    return Err(format!(
                        "volume `{text}` has an unknown mode `{other}` (use `ro` or `rw`)"
                    ))
                }
            }
        }
        let kind = match source {
            None => MountKind::Anonymous,
            Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
                MountKind::Bind
            }
            Some(_) => MountKind::Named,
        };
        if kind == MountKind::Anonymous && !options.is_empty() {
            return Err(format!(
                "volume `{text}`: an anonymous volume takes no mode flags but `ro`"
            ));
        }
        Ok(VolumeMount {
            kind,
            source: source.map(str::to_string),
            target: target.to_string(),
            read_only,
            options,
        })
    }
}

impl fmt::Display for VolumeMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == MountKind::Tmpfs {
            write!(f, "tmpfs:{}", self.target)?;
            if !self.options.is_empty() {
                write!(f, ":{}", self.options.join(","))?;
            }
            return Ok(());
        }
        if let Some(source) = &self.source {
            write!(f, "{source}:")?;
        }
        write!(f, "{}", self.target)?;
        let mut flags: Vec<&str> = Vec::new();
        if self.read_only {
            flags.push("ro");
        }
        flags.extend(self.options.iter().map(String::as_str));
        if !flags.is_empty() {
            write!(f, ":{}", flags.join(","))?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for VolumeMount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            source: Option<String>,
            target: String,
            #[serde(default)]
            read_only: bool,
            /// Means nothing on Linux (as in Compose).
            #[serde(default, rename = "consistency")]
            _consistency: Option<String>,
            #[serde(default)]
            bind: Option<BindOptions>,
            #[serde(default)]
            volume: Option<VolumeOptions>,
            #[serde(default)]
            tmpfs: Option<TmpfsOptions>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BindOptions {
            #[serde(default)]
            propagation: Option<String>,
            #[serde(default)]
            create_host_path: Option<bool>,
            #[serde(default)]
            selinux: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct VolumeOptions {
            #[serde(default)]
            nocopy: bool,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TmpfsOptions {
            #[serde(default, deserialize_with = "opt_size")]
            size: Option<ByteSize>,
            #[serde(default)]
            mode: Option<Scalar>,
        }
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::String(text) => VolumeMount::parse(&text).map_err(de::Error::custom),
            Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                let kind = match (long.kind.as_str(), &long.source) {
                    ("volume", Some(_)) => MountKind::Named,
                    ("volume", None) => MountKind::Anonymous,
                    ("bind", Some(_)) => MountKind::Bind,
                    ("bind", None) => return Err(de::Error::custom("a bind mount needs `source`")),
                    ("tmpfs", None) => MountKind::Tmpfs,
                    ("tmpfs", Some(_)) => {
                        return Err(de::Error::custom("a tmpfs mount has no `source`"))
                    }
                    ("image" | "npipe" | "cluster", _) => {
                        return Err(de::Error::custom(format!(
                            "mount type `{}` is not supported yet (it needs a newer engine API than the 1.41 stackctl speaks; use `volume`, `bind` or `tmpfs`)",
                            long.kind
                        )))
                    }
                    (other, _) => {
                        return Err(de::Error::custom(format!(
                            "`{other}` is not a mount type (`volume`, `bind` or `tmpfs`)"
                        )))
                    }
                };
                if !long.target.starts_with('/') {
                    return Err(de::Error::custom(format!(
                        "the container path `{}` must be absolute",
                        long.target
                    )));
                }
                let target = container_path(&long.target).to_string();
                let misplaced = [
                    ("bind", long.bind.is_some(), MountKind::Bind),
                    ("volume", long.volume.is_some(), MountKind::Named),
                    ("tmpfs", long.tmpfs.is_some(), MountKind::Tmpfs),
                ];
                for (key, given, wanted) in misplaced {
                    let fits = kind == wanted
                        || (wanted == MountKind::Named && kind == MountKind::Anonymous);
                    if given && !fits {
                        return Err(de::Error::custom(format!(
                            "`{key}:` options need `type: {key}`, not `type: {}`",
                            long.kind
                        )));
                    }
                }
                let mut options = Vec::new();
                if let Some(bind) = long.bind {
                    if let Some(propagation) = bind.propagation {
                        if !PROPAGATIONS.contains(&propagation.as_str()) {
                            return Err(de::Error::custom(format!(
                                "`{propagation}` is not a bind propagation ({})",
                                PROPAGATIONS.join(", ")
                            )));
                        }
                        options.push(propagation);
                    }
                    if bind.create_host_path == Some(false) {
                        return Err(de::Error::custom(
                            "`bind.create_host_path: false` is not supported yet: stackctl's bind mounts let the engine create a missing host path; remove the key",
                        ));
                    }
                    if let Some(selinux) = bind.selinux {
                        if !matches!(selinux.as_str(), "z" | "Z") {
                            return Err(de::Error::custom(format!(
                                "`selinux: {selinux}` must be `z` (shared) or `Z` (private)"
                            )));
                        }
                        options.push(selinux);
                    }
                }
                if long.volume.is_some_and(|v| v.nocopy) {
                    if kind == MountKind::Anonymous {
                        return Err(de::Error::custom(
                            "`volume.nocopy` needs a named volume (`source`)",
                        ));
                    }
                    options.push("nocopy".to_string());
                }
                if let Some(tmpfs) = long.tmpfs {
                    if let Some(ByteSize(size)) = tmpfs.size {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = tmpfs.mode {
                        let mode = file_mode(&mode).map_err(de::Error::custom)?;
                        options.push(format!("mode={mode:o}"));
                    }
                }
                if kind == MountKind::Tmpfs && long.read_only {
                    options.insert(0, "ro".to_string());
                }
                Ok(VolumeMount {
                    kind,
                    source: long.source,
                    target,
                    read_only: long.read_only && kind != MountKind::Tmpfs,
                    options,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a volume like \"data:/var/lib/data\", found {}",
                describe(&other)
            ))),
        }
    }
}

impl Serialize for VolumeMount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.kind != MountKind::Tmpfs {
            return serializer.serialize_str(&self.to_string());
        }
        // The short syntax has no tmpfs form: the long one, read back the same.
        let mut tmpfs: IndexMap<&str, Value> = IndexMap::new();
        let mut read_only = false;
        for option in &self.options {
            match option.split_once('=') {
                Some(("size", size)) => {
                    tmpfs.insert("size", Value::String(size.to_string()));
                }
                Some(("mode", mode)) => {
                    tmpfs.insert("mode", Value::String(format!("0{mode}")));
                }
                _ => read_only |= option == "ro",
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "tmpfs")?;
        map.serialize_entry("target", &self.target)?;
        if read_only {
            map.serialize_entry("read_only", &true)?;
        }
        if !tmpfs.is_empty() {
            map.serialize_entry("tmpfs", &tmpfs)?;
        }
        map.end()
    }
}

// ---- serde helpers for Compose's "either form" keys ----

/// A YAML scalar, kept as text for strings and as a number otherwise.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl Scalar {
    fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("the string `{s}`"),
            Scalar::Int(n) => format!("the number {n}"),
            Scalar::Float(n) => format!("the number {}", super::value::Number::Float(*n)),
            Scalar::Bool(b) => format!("the boolean {b}"),
            Scalar::Null => "nothing (null)".into(),
        }
    }
    fn into_text(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Int(n) => Some(n.to_string()),
            Scalar::Float(n) => Some(super::value::Number::Float(n).to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        scalar_from_value(value).map_err(de::Error::custom)
    }
}

fn scalar_from_value(value: Value) -> Result<Scalar, String> {
    match value {
        Value::String(s) => Ok(Scalar::Str(s)),
        Value::Bool(b) => Ok(Scalar::Bool(b)),
        Value::Null => Ok(Scalar::Null),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Scalar::Int(i))
            } else {
                Ok(Scalar::Float(n.as_f64()))
            }
        }
        other => Err(format!(
            "expected a single value, found {}",
            describe(&other)
        )),
    }
}

/// A human description of a YAML value's kind, for error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string `{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Sequence(items) => items
            .into_iter()
            .map(|item| {
                scalar_from_value(item)
                    .ok()
                    .and_then(Scalar::into_text)
                    .ok_or_else(|| de::Error::custom("expected a list of strings"))
            })
            .collect(),
        other => Err(de::Error::custom(format!(
            "expected a string or a list of strings, found {}",
            describe(&other)
        ))),
    }
}

/// `command:`/`entrypoint:` — a list, or a string split like a shell would.
fn opt_command<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value {
        Value::Null => Ok(None),
        Value::String(s) => shell_words::split(&s)
            .map(Some)
            .map_err(|e| de::Error::custom(format!("cannot split command `{s}`: {e}"))),
        Value::Sequence(items) => items
            .into_iter()
            .map(|item| {
                scalar_from_value(item)
                    .ok()
                    .and_then(Scalar::into_text)
                    .ok_or_else(|| {
                        de::Error::custom("expected a list of strings (each argument one item)")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(de::Error::custom(format!(
            "expected a command as a string or a list, found {}",
            describe(&other)
        ))),
    }
}

fn command<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(opt_command(deserializer)?.unwrap_or_default())
}

fn opt_scalar_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.into_text())
}

/// The most CPUs `cpus:` may ask for (the engine refuses more than the host has anyway).
pub const MAX_CPUS: f64 = 4096.0;

fn opt_cpus<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let in_range = |n: f64| n > 0.0 && n <= MAX_CPUS;
    let out_of_range = |n: &dyn fmt::Display| {
        de::Error::custom(format!(
            "{n} CPUs is out of range (more than 0, at most {MAX_CPUS})"
        ))
    };
    match Scalar::deserialize(deserializer)? {
        Scalar::Null => Ok(None),
        Scalar::Int(n) if in_range(n as f64) => Ok(Some(n as f64)),
        Scalar::Float(n) if in_range(n) => Ok(Some(n)),
        Scalar::Int(n) => Err(out_of_range(&n)),
        Scalar::Float(n) => Err(out_of_range(&n)),
        Scalar::Str(s) => match s.parse::<f64>() {
            Ok(n) if in_range(n) => Ok(Some(n)),
            Ok(n) if n.is_finite() => Err(out_of_range(&n)),
            _ => Err(de::Error::custom(format!(
                "`{s}` is not a number of CPUs (like 0.5 or 2)"
            ))),
        },
        other => Err(de::Error::custom(format!(
            "expected a number of CPUs (like 0.5), found {}",
            other.describe()
        ))),
    }
}

/// `environment:`/`args:` — a map (values may be null: taken from the process environment)
/// or a list of `KEY=VALUE` / `KEY`.
fn environment<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, Option<String>>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    key_values(value).map_err(de::Error::custom)
}

fn key_values(value: Value) -> Result<IndexMap<String, Option<String>>, String> {
    let mut out = IndexMap::new();
    match value {
        Value::Null => {}
        Value::Mapping(map) => {
            for (key, val) in map {
                if key.is_empty() {
                    return Err("a key cannot be empty".into());
                }
                let val = scalar_from_value(val)
                    .map_err(|e| format!("`{key}`: {e}"))?
                    .into_text();
                out.insert(key, val);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                let text = scalar_from_value(item)?
                    .into_text()
                    .ok_or_else(|| "expected `KEY=VALUE` items".to_string())?;
                match text.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(text, None),
                };
            }
        }
        other => {
            return Err(format!(
                "expected a map or a list of `KEY=VALUE`, found {}",
                describe(&other)
            ))
        }
    }
    Ok(out)
}

fn labels<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    let pairs = key_values(value).map_err(de::Error::custom)?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn extra_hosts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value {
        Value::Sequence(_) => {
            let items: Vec<String> = from_tree(value).map_err(de::Error::custom)?;
            // Compose accepts `host=ip` too; Docker wants `host:ip`.
            Ok(items
                .into_iter()
                .map(|item| match item.split_once('=') {
                    Some((host, ip)) => format!("{host}:{ip}"),
                    None => item,
                })
                .collect())
        }
        Value::Mapping(_) => {
            let pairs = key_values(value).map_err(de::Error::custom)?;
            Ok(pairs
                .into_iter()
                .map(|(h, ip)| format!("{h}:{}", ip.unwrap_or_default()))
                .collect())
        }
        other => Err(de::Error::custom(format!(
            "expected a list of `host:ip`, found {}",
            describe(&other)
        ))),
    }
}

fn service_networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, ServiceNetwork>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value {
        Value::Sequence(_) => {
            let names: Vec<String> = from_tree(value).map_err(de::Error::custom)?;
            Ok(names
                .into_iter()
                .map(|n| (n, ServiceNetwork::default()))
                .collect())
        }
        Value::Mapping(map) => {
            let mut out = IndexMap::new();
            for (key, val) in map {
                let name = key;
                let net = if val.is_null() {
                    ServiceNetwork::default()
                } else {
                    from_tree(val)
                        .map_err(|e| de::Error::custom(format!("network `{name}`: {e}")))?
                };
                out.insert(name, net);
            }
            Ok(out)
        }
        other => Err(de::Error::custom(format!(
            "expected a list or map of networks, found {}",
            describe(&other)
        ))),
    }
}

fn depends_on<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, Dependency>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match value {
        Value::Sequence(_) => {
            let names: Vec<String> = from_tree(value).map_err(de::Error::custom)?;
            Ok(names
                .into_iter()
                .map(|n| {
                    (
                        n,
                        Dependency {
                            required: true,
                            ..Default::default()
                        },
                    )
                })
                .collect())
        }
        Value::Mapping(map) => {
            let mut out = IndexMap::new();
            for (key, val) in map {
                let name = key;
                let dep = if val.is_null() {
                    Dependency {
                        required: true,
                        ..Default::default()
                    }
                } else {
                    from_tree(val).map_err(|e| de::Error::custom(format!("`{name}`: {e}")))?
                };
                out.insert(name, dep);
            }
            Ok(out)
        }
        other => Err(de::Error::custom(format!(
            "expected a list of services or a map with conditions, found {}",
            describe(&other)
        ))),
    }
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Labels stackctl writes on every object it owns.
pub mod labels {
    pub const PROJECT: &str = "io.stackctl.project";
    pub const STAGE: &str = "io.stackctl.stage";
    pub const ROLE: &str = "io.stackctl.role";
    pub const SERVICE: &str = "io.stackctl.service";
    pub const CONFIG_HASH: &str = "io.stackctl.config-hash";
}

/// Order-independent environment as Docker wants it (`KEY=VALUE`), unset keys dropped.
pub fn env_list(env: &IndexMap<String, Option<String>>) -> Vec<String> {
    env.iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect()
}

/// A service's `develop:` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Develop {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchRule>,
}

/// One `develop.watch` rule: what to do when a file under `path` changes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchRule {
    /// A file or directory, relative to the project directory.
    pub path: String,
    pub action: WatchAction,
    /// Where `path` lands in the container (sync actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `.dockerignore`-style patterns, relative to `path`: changes there are ignored.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub ignore: Vec<String>,
    /// `.dockerignore`-style patterns, relative to `path`: when given, only changes there count.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub include: Vec<String>,
    /// Sync every file of `path` when `watch` starts (sync actions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub initial_sync: bool,
    /// The command `sync+exec` runs in the container after each sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<WatchExec>,
}

/// What a watch rule does with a change.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum WatchAction {
    /// Copy the changed files into the running container.
    #[serde(rename = "sync")]
    Sync,
    /// Rebuild the image and recreate the service.
    #[serde(rename = "rebuild")]
    Rebuild,
    /// Restart the service's container.
    #[serde(rename = "restart")]
    Restart,
    #[serde(rename = "sync+restart")]
    SyncRestart,
    #[serde(rename = "sync+exec")]
    SyncExec,
}

impl WatchAction {
    /// Whether the action copies files (and so needs a `target`).
    pub fn syncs(self) -> bool {
        matches!(
            self,
            WatchAction::Sync | WatchAction::SyncRestart | WatchAction::SyncExec
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WatchAction::Sync => "sync",
            WatchAction::Rebuild => "rebuild",
            WatchAction::Restart => "restart",
            WatchAction::SyncRestart => "sync+restart",
            WatchAction::SyncExec => "sync+exec",
        }
    }
}

/// `exec:` of a `sync+exec` rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchExec {
    #[serde(deserialize_with = "command_list")]
    pub command: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar_string"
    )]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "environment"
    )]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

/// A command as a list or as one string split like a shell would.
fn command_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    match opt_command(deserializer)? {
        Some(command) if !command.is_empty() => Ok(command),
        _ => Err(de::Error::custom("`command` must not be empty")),
    }
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
