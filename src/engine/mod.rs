//! The only module that talks to the Docker engine. Every call goes through `Engine`, which
//! names the operation and the object in its errors ("create container `dev-app--api`: port
//! 5000 is already allocated") and treats a 404 as a state, not a failure.

use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

pub mod attach;
pub mod build;
pub mod containers;
pub mod context;
pub mod images;
pub mod networks;
pub mod observe;
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
}

impl EngineError {
    pub fn new(operation: &str, object: &str, err: BollardError) -> Self {
        let (status, message) = match &err {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => (Some(*status_code), message.trim().to_string()),
            BollardError::DockerStreamError { error } => (None, error.trim().to_string()),
            other => (None, other.to_string()),
        };
        EngineError {
            operation: operation.to_string(),
            object: object.to_string(),
            message,
            status,
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
        }
    }
}

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
#[error("cannot reach the Docker engine at {address}: {reason}\nhint: start the Docker daemon, or point DOCKER_HOST at a running one")]
pub struct Unreachable {
    pub address: String,
    pub reason: String,
}

impl Engine {
    /// Connect through `DOCKER_HOST` (unix, tcp, TLS with `DOCKER_TLS_VERIFY`) or the local
    /// socket, check the daemon answers, and negotiate the API version.
    pub async fn connect() -> Result<Engine, Unreachable> {
        let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let address = host
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let unreachable = |reason: String| Unreachable {
            address: address.clone(),
            reason,
        };
        let docker = match &host {
            Some(_) => Docker::connect_with_defaults(),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| unreachable(e.to_string()))?
        // Generous: the classic builder answers only after the whole context is uploaded.
        .with_timeout(Duration::from_secs(900));
        let docker = tokio::time::timeout(Duration::from_secs(15), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 15s".to_string()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, address })
    }

    /// The underlying client, for modules inside `engine`.
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }
}
