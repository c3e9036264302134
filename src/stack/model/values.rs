//! Durations and byte sizes as Compose writes them.

use super::*;

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
pub(super) fn checked_ip(ip: &str) -> Result<(), String> {
    ip.parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("`{ip}` is not an IP address (like `127.0.0.1` or `::1`)"))
}

/// The smallest memory limit the engine accepts (6 MiB).
pub const MIN_MEM_LIMIT: i64 = 6 << 20;

pub(super) fn opt_mem_limit<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ByteSize>, D::Error> {
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
