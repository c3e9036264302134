//! The only module that talks to the Docker engine. Every call goes through `Engine`, which
//! names the operation and the object in its errors ("create container `dev-app--api`: port
//! 5000 is already allocated") and treats a 404 as a state, not a failure.

use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

use crate::error::Hint;

pub mod archive;
pub mod attach;
pub mod build;
pub mod containers;
pub mod copy;
pub mod endpoint;
pub mod hooks;
pub mod images;
pub mod lease;
pub mod networks;
pub mod observe;
pub mod registry;
pub mod ssh;
pub mod stages;
pub mod swarm;
pub mod system;
pub mod task;
pub mod volumes;

/// A connected, version-negotiated client.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    /// The address tried, for messages (`unix:///var/run/docker.sock`, `tcp://host:2376`,
    /// `ssh://deploy@10.0.0.5`).
    pub address: String,
    /// Where the engine is and what chose it.
    pub endpoint: endpoint::Endpoint,
    /// The ssh connection of an `ssh://` engine, closed when the last clone goes.
    ssh: Option<std::sync::Arc<ssh::SshSession>>,
    /// The engine's address when it is not the local default: named in every error of its
    /// calls (`create container `x` on ssh://deploy@10.0.0.5: …`).
    name: Option<std::sync::Arc<str>>,
}

/// ` on ENGINE` for messages, or nothing for the local default engine.
fn on_engine(engine: &Option<std::sync::Arc<str>>) -> String {
    engine
        .as_ref()
        .map(|e| format!(" on {e}"))
        .unwrap_or_default()
}

/// An engine call that failed, naming the operation and the object.
#[derive(Debug, thiserror::Error)]
#[error("{operation} `{object}`{}: {message}", on_engine(.engine))]
pub struct EngineError {
    pub operation: String,
    pub object: String,
    pub message: String,
    /// The engine, when it is not the local default one.
    pub engine: Option<std::sync::Arc<str>>,
    /// HTTP status from the daemon, when there was one.
    pub status: Option<u16>,
    /// What the user can do about it (printed as `hint:` by the reporter).
    pub hint: Option<String>,
}

impl EngineError {
    pub fn new(operation: &str, object: &str, err: BollardError) -> Self {
        let (status, message) = match &err {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => (Some(*status_code), message.trim().to_string()),
            BollardError::DockerStreamError { error } => (None, error.trim().to_string()),
            BollardError::RequestTimeoutError => (
                None,
                format!(
                    "the engine did not answer within {}s (STACKCTL_CALL_TIMEOUT)",
                    call_timeout().as_secs()
                ),
            ),
            other => (None, other.to_string()),
        };
        EngineError {
            operation: operation.to_string(),
            object: object.to_string(),
            message,
            engine: None,
            status,
            hint: None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// An error that did not come from bollard (a stream that ended early, a timeout).
    pub fn other(operation: &str, object: &str, message: impl Into<String>) -> Self {
        EngineError {
            operation: operation.to_string(),
            object: object.to_string(),
            message: message.into(),
            engine: None,
            status: None,
            hint: None,
        }
    }

    /// The call was not made: the user interrupted. Reported like `crate::error::Interrupted`
    /// (exit 130, no error line).
    pub fn interrupted(operation: &str, object: &str) -> Self {
        Self::other(operation, object, INTERRUPTED)
    }

    pub fn is_interrupted(&self) -> bool {
        self.status.is_none() && self.message == INTERRUPTED
    }

    /// The same error, said of `engine` (None: the local default engine).
    pub fn on(mut self, engine: Option<std::sync::Arc<str>>) -> Self {
        self.engine = engine;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The hint given to the call, else the remedy for an engine message that has a known one.
impl Hint for EngineError {
    fn hint(&self) -> Option<String> {
        self.hint.clone().or_else(|| remedy(&self.message))
    }
}

/// What to do about an engine message that says a known lack: the daemon has no address
/// pool left for a new network (`no available address pool` from the Swarm allocator,
/// `could not find an available, non-overlapping IPv4 address pool` from a bridge).
fn remedy(message: &str) -> Option<String> {
    let pools = [
        "no available address pool",
        "non-overlapping ipv4 address pool",
    ];
    let lower = message.to_lowercase();
    pools.iter().any(|words| lower.contains(words)).then(|| {
        "the engine has no address pool left for another network: remove the networks \
         nothing uses (`docker network prune`), or give the engine more pools \
         (`default-address-pools` in its daemon.json)"
            .to_string()
    })
}

/// The message of an `EngineError` for a call not made because of an interrupt.
const INTERRUPTED: &str = "interrupted";

/// Label filters for list calls: every `key=value` given.
pub(crate) fn label_filters(labels: &[String]) -> std::collections::HashMap<String, Vec<String>> {
    std::collections::HashMap::from([("label".to_string(), labels.to_vec())])
}

/// True when bollard reports a 404 (the object does not exist).
pub fn is_not_found(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A time the engine gave, as RFC 3339 in UTC with nanoseconds (`2026-11-30T09:40:48.123450000Z`:
/// as text, such times sort in time order); empty for Go's zero time and anything before
/// 1970 (not a real date). The models hold times as `time::OffsetDateTime` (bollard's
/// `time` feature, which its BuildKit support needs).
pub(crate) fn rfc3339(time: impl Into<std::time::SystemTime>) -> String {
    let time: std::time::SystemTime = time.into();
    if time <= std::time::UNIX_EPOCH {
        return String::new();
    }
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Could not reach the daemon at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Docker engine at {address}: {reason}")]
pub struct Unreachable {
    pub address: String,
    pub reason: String,
    /// What to do about it (printed as `hint:`), fitting the reason.
    pub hint: String,
}

impl Hint for Unreachable {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// How long one ordinary engine call (inspect, list, create, start, remove) may take before
/// it fails. The engine answers these in milliseconds; a minute covers a loaded machine.
/// `STACKCTL_CALL_TIMEOUT` (seconds) changes it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a build request may take: the classic builder answers only after the whole
/// context is uploaded. Streams (build output, logs, attach) are not bounded once open.
const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(900);

/// How long `connect` waits for the daemon's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long ssh may take to log in to an `ssh://` engine: `STACKCTL_SSH_TIMEOUT` (seconds)
/// or 10 s.
fn ssh_connect_timeout() -> Duration {
    std::env::var("STACKCTL_SSH_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0 && s <= 3600)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(10))
}

/// The bound of one ordinary call: `STACKCTL_CALL_TIMEOUT` or `CALL_TIMEOUT`.
pub fn call_timeout() -> Duration {
    std::env::var("STACKCTL_CALL_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0 && s <= 86_400)
        .map(Duration::from_secs)
        .unwrap_or(CALL_TIMEOUT)
}

/// The reason and hint for a failed connection, from the operating system's error under
/// bollard's (`connection refused`, `no such file`), not the HTTP client's wording.
fn connect_failure(address: &str, err: &BollardError) -> (String, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            let socket = address.strip_prefix("unix://").unwrap_or(address);
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => (
                    "it refused the connection".to_string(),
                    "is the Docker daemon running? Start it (`systemctl start docker`), or point DOCKER_HOST at a running one".to_string(),
                ),
                std::io::ErrorKind::NotFound => (
                    format!("there is no socket at `{socket}`"),
                    "start the Docker daemon, or point DOCKER_HOST at a running one".to_string(),
                ),
                std::io::ErrorKind::PermissionDenied => (
                    format!("permission denied on `{socket}`"),
                    "add your user to the `docker` group (then log in again), or run as a user who may use the engine".to_string(),
                ),
                _ => (
                    io.to_string(),
                    "start the Docker daemon, or point DOCKER_HOST at a running one".to_string(),
                ),
            };
        }
        source = cause.source();
    }
    (
        err.to_string(),
        "start the Docker daemon, or point DOCKER_HOST at a running one".to_string(),
    )
}

impl Engine {
    /// The engine's address when it is not the local default (for messages).
    pub(crate) fn name(&self) -> Option<std::sync::Arc<str>> {
        self.name.clone()
    }

    /// A failed call of this engine, naming the operation, the object and the engine.
    pub(crate) fn error(&self, operation: &str, object: &str, err: BollardError) -> EngineError {
        EngineError {
            engine: self.name(),
            ..EngineError::new(operation, object, err)
        }
    }

    /// [`Engine::error`] for `map_err`.
    pub(crate) fn op<'a>(
        &'a self,
        operation: &'a str,
        object: &'a str,
    ) -> impl FnOnce(BollardError) -> EngineError + 'a {
        move |err| self.error(operation, object, err)
    }

    /// Connect to the engine at `endpoint` (see [`endpoint::EngineChoice`] for how a command
    /// chooses it): unix, tcp, TLS with `DOCKER_TLS_VERIFY`, or ssh. Check the daemon answers
    /// and negotiate the API version. Ctrl-C ends the wait at once (`Interrupted`).
    pub async fn connect(endpoint: endpoint::Endpoint) -> anyhow::Result<Engine> {
        let address = endpoint.host.clone();
        let default_hint = if endpoint.source == endpoint::DEFAULT_SOURCE {
            "start the Docker daemon, or point DOCKER_HOST at a running one".to_string()
        } else {
            format!(
                "start the Docker daemon there, or name another engine ({} chose this one)",
                endpoint.source
            )
        };
        let unreachable = |reason: String, hint: String| Unreachable {
            address: address.clone(),
            reason,
            hint,
        };
        let mut session = None;
        let docker = if address.starts_with("ssh://") {
            let target = ssh::SshTarget::parse(&address).map_err(|e| {
                crate::error::UsageError::new(format!("engine address {e} ({})", endpoint.source))
                    .with_hint("write it as ssh://USER@HOST or ssh://USER@HOST:PORT")
            })?;
            let ssh_hint = format!(
                "check that `ssh {}{}{}` works from here (key or agent, known_hosts, network)",
                target.port.map(|p| format!("-p {p} ")).unwrap_or_default(),
                target
                    .user
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default(),
                target.host
            );
            let opened = tokio::select! {
                opened = ssh::SshSession::open(target, ssh_connect_timeout()) => opened,
                _ = crate::interrupt::wait() => return Err(crate::error::Interrupted.into()),
            };
            let opened = opened.map_err(|reason| unreachable(reason, ssh_hint))?;
            session = Some(opened.clone());
            ssh::client(opened, call_timeout())
                .map_err(|reason| unreachable(reason, default_hint.clone()))?
        } else {
            Docker::connect_with_host(&address)
                .map_err(|e| unreachable(e.to_string(), default_hint.clone()))?
                .with_timeout(call_timeout())
        };
        let negotiate = |docker: Docker| async move {
            tokio::select! {
                negotiated = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()) => Ok(negotiated),
                _ = crate::interrupt::wait() => Err(crate::error::Interrupted),
            }
        };
        let mut negotiated = negotiate(docker.clone()).await?;
        if let (Ok(Err(_)), Some(session)) = (&negotiated, &session) {
            if let ssh::Route::Forward(socket) = session.route() {
                // The forwarded socket carried nothing: dial-stdio, whose errors say why.
                session.fall_back(format!(
                    "forwarding {socket} gave no answer: the server may refuse it (AllowStreamLocalForwarding)"
                ));
                negotiated = negotiate(docker).await?;
            }
        }
        let docker = negotiated
            .map_err(|_| {
                unreachable(
                    format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                    "the daemon accepted the connection but does not answer: restart it"
                        .to_string(),
                )
            })?
            .map_err(|e| match session.as_ref().and_then(|s| s.dial_error()) {
                Some(said) => unreachable(
                    format!("`docker system dial-stdio` there failed: {said}"),
                    "the ssh user needs the docker CLI on its PATH and access to the engine (the `docker` group)".to_string(),
                ),
                None if session.is_some() => unreachable(e.to_string(), default_hint.clone()),
                None => {
                    let (reason, hint) = connect_failure(&address, &e);
                    unreachable(reason, hint)
                }
            })?;
        // An engine other than the local default is named in every error of its calls.
        let name = (endpoint.source != endpoint::DEFAULT_SOURCE).then(|| address.as_str().into());
        Ok(Engine {
            name,
            docker,
            address,
            endpoint,
            ssh: session,
        })
    }

    /// How an ssh engine is reached (`version` says it); None for any other engine.
    pub fn transport(&self) -> Option<String> {
        self.ssh.as_ref().map(|session| match session.route() {
            ssh::Route::Forward(socket) => {
                format!("one ssh connection, the engine's socket {socket} there forwarded through it")
            }
            ssh::Route::DialStdio(why) => format!(
                "one ssh connection, a `docker system dial-stdio` session there per HTTP connection ({why})"
            ),
        })
    }

    /// True when the engine runs on another machine (bind-mount paths are that machine's).
    pub fn is_remote(&self) -> bool {
        self.endpoint.is_remote()
    }

    /// A client for calls that may take long before the engine answers (a build request).
    pub(crate) fn long_client(&self) -> Docker {
        self.docker.clone().with_timeout(LONG_CALL_TIMEOUT)
    }

    /// The underlying client, for modules inside `engine`.
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }
}
