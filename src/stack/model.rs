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
    pub data_containers: IndexMap<String, DataContainer>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub tasks: IndexMap<String, Task>,
}

impl Stack {
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
        deserialize_with = "string_or_list"
    )]
    pub env_file: Vec<String>,
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
    /// Compose's `develop:` (the rules `stackctl watch` follows). Not part of the
    /// container: changing it recreates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<Develop>,
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
                Ok(Build {
                    context: long.context,
                    dockerfile: long.dockerfile,
                    args: long.args,
                    target: long.target,
                    labels: long.labels,
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
}

/// One mount of a service: `SOURCE:TARGET[:ro]`, `TARGET` (anonymous) or the long form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolumeMount {
    pub kind: MountKind,
    /// Volume name (named) or host path as written (bind); `None` for anonymous.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Named,
    Bind,
    Anonymous,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
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
            disable: bool,
        }
        let raw = Raw::deserialize(deserializer)?;
        // The engine takes 0 (its default) or at least a millisecond.
        for (key, duration) in [
            ("interval", raw.interval),
            ("timeout", raw.timeout),
            ("start_period", raw.start_period),
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
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(digits_end);
        if number.is_empty() {
            return Err(format!("`{text}` is not a size (like `512m` or `1g`)"));
        }
        let too_large = || format!("`{text}` is too large (at most 8589934591g)");
        let number: i64 = number.parse().map_err(|_| too_large())?;
        let factor: i64 = match unit.trim_end_matches('b') {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit (use b, k, m or g, like `512m`)"
                ))
            }
        };
        number
            .checked_mul(factor)
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
        }
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::String(text) => PortMapping::parse(&text).map_err(de::Error::custom),
            Value::Number(n) => PortMapping::parse(&n.to_string()).map_err(de::Error::custom),
            Value::Mapping(_) => {
                let long: Long = from_tree(value).map_err(de::Error::custom)?;
                match long.mode.as_deref() {
                    // What a single engine does: the port is published on this host.
                    None | Some("host") => {}
                    Some("ingress") => {
                        return Err(de::Error::custom(
                            "port `mode: ingress` (the Swarm routing mesh) is not supported yet on a single engine; remove `mode` or write `mode: host`",
                        ))
                    }
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
        let read_only = match mode {
            None => false,
            Some(mode) => {
                let flags: Vec<&str> = mode.split(',').collect();
                for flag in &flags {
                    if !matches!(
                        *flag,
                        "ro" | "rw" | "z" | "Z" | "cached" | "delegated" | "consistent" | "nocopy"
                    ) {
                        return Err(format!(
                            "volume `{text}` has an unknown mode `{flag}` (use `ro` or `rw`)"
                        ));
                    }
                }
                flags.contains(&"ro")
            }
        };
        let kind = match source {
            None => MountKind::Anonymous,
            Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
                MountKind::Bind
            }
            Some(_) => MountKind::Named,
        };
        Ok(VolumeMount {
            kind,
            source: source.map(str::to_string),
            target: target.to_string(),
            read_only,
        })
    }
}

impl fmt::Display for VolumeMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}:")?;
        }
        write!(f, "{}", self.target)?;
        if self.read_only {
            write!(f, ":ro")?;
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
                    (other, _) => {
                        return Err(de::Error::custom(format!(
                            "mount type `{other}` is not supported yet (use `volume` or `bind`)"
                        )))
                    }
                };
                if !long.target.starts_with('/') {
                    return Err(de::Error::custom(format!(
                        "the container path `{}` must be absolute",
                        long.target
                    )));
                }
                Ok(VolumeMount {
                    kind,
                    source: long.source,
                    target: long.target,
                    read_only: long.read_only,
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
        serializer.serialize_str(&self.to_string())
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
