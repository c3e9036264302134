//! Where the engine is, first match wins:
//!
//! 1. `-H/--host URL` or `--context NAME` on the command line (not both);
//! 2. the stack file's `engine: { host: URL }`;
//! 3. `DOCKER_HOST`;
//! 4. `DOCKER_CONTEXT`, else the `currentContext` of Docker's `config.json`
//!    (`$DOCKER_CONFIG`, default `~/.docker`); the context `default` is the local socket;
//! 5. the local socket, `unix:///var/run/docker.sock`.
//!
//! A command holds its choice as an [`EngineChoice`] value and hands the [`Endpoint`] it
//! resolves to `Engine::connect`.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::error::UsageError;

/// The local socket, when nothing else names an engine.
pub const LOCAL: &str = "unix:///var/run/docker.sock";

/// The `source` of the endpoint chosen when nothing names one.
pub const DEFAULT_SOURCE: &str = "default";

/// The engine address and what chose it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub source: String,
}

impl Endpoint {
    /// An engine on another machine: `ssh://`, or `tcp://`/`http(s)://` to a host that is not
    /// this one. Bind-mount paths name that machine's files.
    pub fn is_remote(&self) -> bool {
        if self.host.starts_with("ssh://") {
            return true;
        }
        match self.host_name() {
            Some(name) => !matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]"),
            None => false,
        }
    }

    /// The engine machine's name for published ports: the host of `ssh://`/`tcp://`;
    /// None for a local socket.
    pub fn host_name(&self) -> Option<String> {
        let rest = ["ssh://", "tcp://", "http://", "https://"]
            .iter()
            .find_map(|p| self.host.strip_prefix(p))?;
        let rest = rest.split('/').next().unwrap_or(rest);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = if let Some(inner) = rest.strip_prefix('[') {
            inner.split(']').next().unwrap_or(inner).to_string()
        } else {
            rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_string()
        };
        Some(host).filter(|h| !h.is_empty())
    }
}

/// How a command chooses its engine: the command line's `-H`/`--context` (checked once,
/// from the flags), the stack file's `engine.host` (once it is loaded), then the environment
/// and Docker's own configuration. A value the command holds: nothing here is global.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineChoice {
    flag_host: Option<String>,
    flag_context: Option<String>,
    stack_host: Option<(String, String)>,
}

impl EngineChoice {
    /// The command line's `-H` and `--context`.
    pub fn from_flags(host: Option<String>, context: Option<String>) -> Result<Self, UsageError> {
        if host.is_some() && context.is_some() {
            return Err(
                UsageError::new("`-H/--host` and `--context` both name the engine")
                    .with_hint("give only one of them"),
            );
        }
        Ok(EngineChoice {
            flag_host: host.filter(|h| !h.is_empty()),
            flag_context: context.filter(|c| !c.is_empty()),
            stack_host: None,
        })
    }

    /// The same, with the loaded stack's `engine.host` and the file it came from.
    pub fn with_stack_host(&self, host: Option<String>, file: &str) -> Self {
        EngineChoice {
            stack_host: host
                .filter(|h| !h.is_empty())
                .map(|h| (h, file.to_string())),
            ..self.clone()
        }
    }

    /// Where the engine is, by the order at the top of this module.
    pub fn resolve(&self) -> Result<Endpoint, UsageError> {
        resolve(self)
    }
}

/// Where the engine is, by the order above.
fn resolve(selection: &EngineChoice) -> Result<Endpoint, UsageError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(host) = &selection.flag_host {
        return Ok(endpoint(host, "-H"));
    }
    if let Some(name) = &selection.flag_context {
        return context(name, "--context");
    }
    if let Some((host, file)) = &selection.stack_host {
        return Ok(endpoint(host, &format!("engine.host in {file}")));
    }
    if let Some(host) = env("DOCKER_HOST") {
        return Ok(endpoint(&host, "DOCKER_HOST"));
    }
    if let Some(name) = env("DOCKER_CONTEXT") {
        return context(&name, "DOCKER_CONTEXT");
    }
    if let Some(name) = current_context() {
        return context(&name, "the current Docker context");
    }
    Ok(endpoint(LOCAL, DEFAULT_SOURCE))
}

fn endpoint(host: &str, source: &str) -> Endpoint {
    Endpoint {
        host: host.trim().to_string(),
        source: source.to_string(),
    }
}

/// Docker's configuration directory: `$DOCKER_CONFIG`, else `~/.docker`.
fn docker_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker"))
}

/// `currentContext` in `config.json`, unless it is `default`.
fn current_context() -> Option<String> {
    let file = docker_config_dir()?.join("config.json");
    let text = std::fs::read_to_string(file).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value
        .get("currentContext")
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .filter(|c| !c.is_empty() && c != "default")
}

/// The docker endpoint of context `name` (`contexts/meta/<sha256 of name>/meta.json`).
fn context(name: &str, source: &str) -> Result<Endpoint, UsageError> {
    if name == "default" {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| LOCAL.to_string());
        return Ok(endpoint(&host, &format!("context `default` ({source})")));
    }
    let Some(dir) = docker_config_dir() else {
        return Err(UsageError::new(format!(
            "no Docker context `{name}` ({source}): neither DOCKER_CONFIG nor HOME is set"
        )));
    };
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let meta = dir
        .join("contexts")
        .join("meta")
        .join(hex)
        .join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|_| {
        UsageError::new(format!("no Docker context `{name}` ({source})")).with_hint(format!(
            "`docker context ls` lists them; `docker context create {name} --docker host=ssh://user@host` makes one (looked in {})",
            dir.join("contexts").display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        UsageError::new(format!(
            "Docker context `{name}`: `{}` is not valid JSON: {e}",
            meta.display()
        ))
    })?;
    let host = value
        .pointer("/Endpoints/docker/Host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            UsageError::new(format!(
                "Docker context `{name}` has no docker endpoint host (`{}`)",
                meta.display()
            ))
        })?;
    Ok(endpoint(host, &format!("context `{name}` ({source})")))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_command_line_comes_before_the_stack_file() {
        let flags = EngineChoice::from_flags(Some("tcp://a:2375".into()), None).unwrap();
        let both = flags.with_stack_host(Some("ssh://deploy@b".into()), "stacks/prod.yml");
        assert_eq!(
            both.resolve().unwrap(),
            Endpoint {
                host: "tcp://a:2375".into(),
                source: "-H".into()
            }
        );
        let stack = EngineChoice::default()
            .with_stack_host(Some("ssh://deploy@b".into()), "stacks/prod.yml");
        assert_eq!(
            stack.resolve().unwrap(),
            Endpoint {
                host: "ssh://deploy@b".into(),
                source: "engine.host in stacks/prod.yml".into()
            }
        );
        assert!(EngineChoice::from_flags(Some("tcp://a:1".into()), Some("ctx".into())).is_err());
    }
    use super::*;

    fn at(host: &str) -> Endpoint {
        endpoint(host, "test")
    }

    #[test]
    fn remote_and_host_names() {
        assert!(!at(LOCAL).is_remote());
        assert_eq!(at(LOCAL).host_name(), None);
        assert!(at("ssh://deploy@10.0.0.5").is_remote());
        assert_eq!(
            at("ssh://deploy@10.0.0.5:2222").host_name().as_deref(),
            Some("10.0.0.5")
        );
        assert!(at("tcp://build.example.com:2376").is_remote());
        assert!(!at("tcp://127.0.0.1:2375").is_remote());
        assert_eq!(
            at("ssh://[fd00::1]:22").host_name().as_deref(),
            Some("fd00::1")
        );
    }
}
