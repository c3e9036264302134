//! The only module that talks to the Docker engine. Every call goes through `Engine`, which
//! names the operation and the object in its errors ("create container `dev-app--api`: port
//! 5000 is already allocated") and treats a 404 as a state, not a failure.

use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

pub mod archive;
pub mod attach;
pub mod build;
pub mod containers;
pub mod context;
pub mod copy;
pub mod digest;
pub mod hooks;
pub mod images;
pub mod networks;
pub mod observe;
pub mod registry;
pub mod stages;
pub mod system;
pub mod task;
pub mod volumes;

/// A connected, version-negotiated client.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    /// The address tried, for messages (`unix:///var/run/docker.sock`, `tcp://host:2376`).
    pub address: String,
}

/// An engine call that failed, naming the operation and the object.
#[derive(Debug, thiserror::Error)]
#[error("{operation} `{object}`: {message}")]
pub struct EngineError {
    pub operation: String,
    pub object: String,
    pub message: String,
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

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The message of an `EngineError` for a call not made because of an interrupt.
const INTERRUPTED: &str = "interrupted";

/// `map_err` helper: `.map_err(op("start container", name))`.
pub(crate) fn op<'a>(
    operation: &'a str,
    object: &'a str,
) -> impl FnOnce(BollardError) -> EngineError + 'a {
    move |err| EngineError::new(operation, object, err)
}

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

/// Could not reach the daemon at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Docker engine at {address}: {reason}")]
pub struct Unreachable {
    pub address: String,
    pub reason: String,
    /// What to do about it (printed as `hint:`), fitting the reason.
    pub hint: String,
}

impl Unreachable {
    pub fn hint(&self) -> &str {
        &self.hint
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
    /// Connect through `DOCKER_HOST` (unix, tcp, TLS with `DOCKER_TLS_VERIFY`) or the local
    /// socket, check the daemon answers, and negotiate the API version. Ctrl-C ends the
    /// wait at once (`Interrupted`).
    pub async fn connect() -> anyhow::Result<Engine> {
        let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let address = host
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let default_hint = "start the Docker daemon, or point DOCKER_HOST at a running one";
        let unreachable = |reason: String, hint: String| Unreachable {
            address: address.clone(),
            reason,
            hint,
        };
        let docker = match &host {
            Some(_) => Docker::connect_with_defaults(),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| unreachable(e.to_string(), default_hint.to_string()))?
        .with_timeout(call_timeout());
        let negotiated = tokio::select! {
            negotiated = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()) => negotiated,
            _ = crate::interrupt::wait() => return Err(crate::error::Interrupted.into()),
        };
        let docker = negotiated
            .map_err(|_| {
                unreachable(
                    format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                    "the daemon accepted the connection but does not answer: restart it"
                        .to_string(),
                )
            })?
            .map_err(|e| {
                let (reason, hint) = connect_failure(&address, &e);
                unreachable(reason, hint)
            })?;
        Ok(Engine { docker, address })
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
