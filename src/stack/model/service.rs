//! A service: every key of `services.NAME`, its hooks, files, resources and `develop.watch`.

use super::*;

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

pub(super) fn env_files<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<EnvFile>, D::Error> {
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

pub(super) fn octal<S: serde::Serializer>(
    mode: &Option<u32>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match mode {
        Some(mode) => serializer.collect_str(&format_args!("0{mode:o}")),
        None => serializer.serialize_none(),
    }
}

pub(super) fn file_refs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<FileRef>, D::Error> {
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
pub(super) fn file_mode(mode: &Scalar) -> Result<u32, String> {
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
pub(super) fn expose<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
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
pub(super) fn opt_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
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
pub(super) fn opt_micros<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
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
pub(super) fn opt_swap<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
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
pub(super) fn opt_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ByteSize>, D::Error> {
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
pub(super) fn command_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    match opt_command(deserializer)? {
        Some(command) if !command.is_empty() => Ok(command),
        _ => Err(de::Error::custom("`command` must not be empty")),
    }
}
