//! Deserializers for Compose's "either form" keys (a string or a list, a list or a map).

use super::*;

/// A YAML scalar, kept as text for strings and as a number otherwise.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl Scalar {
    pub(super) fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("the string `{s}`"),
            Scalar::Int(n) => format!("the number {n}"),
            Scalar::Float(n) => format!("the number {}", crate::stack::value::Number::Float(*n)),
            Scalar::Bool(b) => format!("the boolean {b}"),
            Scalar::Null => "nothing (null)".into(),
        }
    }
    pub(super) fn into_text(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Int(n) => Some(n.to_string()),
            Scalar::Float(n) => Some(crate::stack::value::Number::Float(n).to_string()),
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

pub(super) fn scalar_from_value(value: Value) -> Result<Scalar, String> {
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
pub(super) enum StringOrList {
    One(String),
    Many(Vec<String>),
}

pub(super) fn string_or_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
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
pub(super) fn opt_command<'de, D: Deserializer<'de>>(
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

pub(super) fn command<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(opt_command(deserializer)?.unwrap_or_default())
}

pub(super) fn opt_scalar_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.into_text())
}

/// The most CPUs `cpus:` may ask for (the engine refuses more than the host has anyway).
pub const MAX_CPUS: f64 = 4096.0;

pub(super) fn opt_cpus<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
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
pub(super) fn environment<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, Option<String>>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    key_values(value).map_err(de::Error::custom)
}

pub(super) fn key_values(value: Value) -> Result<IndexMap<String, Option<String>>, String> {
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

pub(super) fn labels<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    let pairs = key_values(value).map_err(de::Error::custom)?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

pub(super) fn extra_hosts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
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

pub(super) fn service_networks<'de, D: Deserializer<'de>>(
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

pub(super) fn depends_on<'de, D: Deserializer<'de>>(
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

pub(super) fn yes() -> bool {
    true
}

pub(super) fn is_true(value: &bool) -> bool {
    *value
}
