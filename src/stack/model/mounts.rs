//! Published ports and volume mounts, in their short and long Compose forms.

use super::*;

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
pub(super) const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

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
pub(super) fn container_path(path: &str) -> &str {
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

/// The long form of a volume entry, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongMount {
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

impl LongMount {
    /// The kind of mount its `type` and `source` make.
    fn mount_kind(&self) -> Result<MountKind, String> {
        match (self.kind.as_str(), &self.source) {
            ("volume", Some(_)) => Ok(MountKind::Named),
            ("volume", None) => Ok(MountKind::Anonymous),
            ("bind", Some(_)) => Ok(MountKind::Bind),
            ("bind", None) => Err("a bind mount needs `source`".into()),
            ("tmpfs", None) => Ok(MountKind::Tmpfs),
            ("tmpfs", Some(_)) => Err("a tmpfs mount has no `source`".into()),
            ("image" | "npipe" | "cluster", _) => Err(format!(
                "mount type `{}` is not supported yet (it needs a newer engine API than the 1.41 stackctl speaks; use `volume`, `bind` or `tmpfs`)",
                self.kind
            )),
            (other, _) => Err(format!(
                "`{other}` is not a mount type (`volume`, `bind` or `tmpfs`)"
            )),
        }
    }

    /// `bind:`, `volume:` and `tmpfs:` options only under their own type.
    fn check_options_fit(&self, kind: MountKind) -> Result<(), String> {
        let misplaced = [
            ("bind", self.bind.is_some(), MountKind::Bind),
            ("volume", self.volume.is_some(), MountKind::Named),
            ("tmpfs", self.tmpfs.is_some(), MountKind::Tmpfs),
        ];
        for (key, given, wanted) in misplaced {
            let fits =
                kind == wanted || (wanted == MountKind::Named && kind == MountKind::Anonymous);
            if given && !fits {
                return Err(format!(
                    "`{key}:` options need `type: {key}`, not `type: {}`",
                    self.kind
                ));
            }
        }
        Ok(())
    }

    /// The short form's flags the long form's options stand for.
    fn options(&self, kind: MountKind) -> Result<Vec<String>, String> {
        let mut options = Vec::new();
        if let Some(bind) = &self.bind {
            options.extend(bind.options()?);
        }
        if self.volume.as_ref().is_some_and(|v| v.nocopy) {
            if kind == MountKind::Anonymous {
                return Err("`volume.nocopy` needs a named volume (`source`)".into());
            }
            options.push("nocopy".to_string());
        }
        if let Some(tmpfs) = &self.tmpfs {
            if let Some(ByteSize(size)) = tmpfs.size {
                options.push(format!("size={size}"));
            }
            if let Some(mode) = &tmpfs.mode {
                options.push(format!("mode={:o}", file_mode(mode)?));
            }
        }
        if kind == MountKind::Tmpfs && self.read_only {
            options.insert(0, "ro".to_string());
        }
        Ok(options)
    }

    fn into_mount(self) -> Result<VolumeMount, String> {
        let kind = self.mount_kind()?;
        if !self.target.starts_with('/') {
            return Err(format!(
                "the container path `{}` must be absolute",
                self.target
            ));
        }
        self.check_options_fit(kind)?;
        let options = self.options(kind)?;
        Ok(VolumeMount {
            kind,
            target: container_path(&self.target).to_string(),
            source: self.source,
            read_only: self.read_only && kind != MountKind::Tmpfs,
            options,
        })
    }
}

impl BindOptions {
    fn options(&self) -> Result<Vec<String>, String> {
        let mut options = Vec::new();
        if let Some(propagation) = &self.propagation {
            if !PROPAGATIONS.contains(&propagation.as_str()) {
                return Err(format!(
                    "`{propagation}` is not a bind propagation ({})",
                    PROPAGATIONS.join(", ")
                ));
            }
            options.push(propagation.clone());
        }
        if self.create_host_path == Some(false) {
            return Err(
                "`bind.create_host_path: false` is not supported yet: stackctl's bind mounts let the engine create a missing host path; remove the key".into(),
            );
        }
        if let Some(selinux) = &self.selinux {
            if !matches!(selinux.as_str(), "z" | "Z") {
                return Err(format!(
                    "`selinux: {selinux}` must be `z` (shared) or `Z` (private)"
                ));
            }
            options.push(selinux.clone());
        }
        Ok(options)
    }
}

impl<'de> Deserialize<'de> for VolumeMount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::String(text) => VolumeMount::parse(&text).map_err(de::Error::custom),
            Value::Mapping(_) => {
                let long: LongMount = from_tree(value).map_err(de::Error::custom)?;
                long.into_mount().map_err(de::Error::custom)
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
