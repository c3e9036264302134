//! What a target reports of a stage, in neutral types: the engine fills them in, the planner
//! reads them. Neither side's own types appear here, so the arrows point one way
//! (`plan` → `observed` ← `engine`).

/// One container of the stage, as the engine's list reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedContainer {
    pub name: String,
    pub id: String,
    /// `io.stackctl.role`: service, data, task.
    pub role: String,
    /// `io.stackctl.service`: the service or data container it belongs to.
    pub service: Option<String>,
    /// `created`, `running`, `exited`, `paused`, …
    pub state: String,
    /// The engine's status text (`Up 3 minutes (healthy)`, `Exited (0) 2 seconds ago`).
    pub status: String,
    /// `starting`, `healthy`, `unhealthy` when the container has a healthcheck and runs.
    pub health: Option<String>,
    pub config_hash: Option<String>,
    /// The per-field hashes label (`names::CONFIG_FIELDS`).
    pub fields: Option<String>,
    pub image_id: String,
    /// Published ports as `host_ip:host_port->container_port/proto`.
    pub ports: Vec<String>,
    /// The networks it is attached to (engine names), sorted.
    pub networks: Vec<String>,
    /// Its volume mounts (named and anonymous; not binds nor tmpfs), as the list reports them.
    pub volumes: Vec<MountedVolume>,
    /// The anonymous volumes it took over from a container it replaced
    /// (`names::KEPT_VOLUMES`): removed after it.
    pub kept_volumes: Vec<String>,
}

/// A volume a container mounts: the engine's name of the volume and where it is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountedVolume {
    pub name: String,
    pub destination: String,
}

impl MountedVolume {
    /// True for a name the engine gives an anonymous volume (64 hexadecimal digits): a
    /// named volume of a stage never looks like it.
    pub fn is_anonymous_name(&self) -> bool {
        self.name.len() == 64 && self.name.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl ObservedContainer {
    /// The exit code in an `Exited (N) …` status.
    pub fn exit_code(&self) -> Option<i64> {
        let rest = self.status.strip_prefix("Exited (")?;
        rest.split(')').next()?.parse().ok()
    }
}

/// What the engine holds for one stage: one list call per kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
    /// Names of the stage's labelled networks.
    pub networks: Vec<String>,
    /// Names of the stage's labelled volumes.
    pub volumes: Vec<String>,
    /// The images the stack refers to that exist: reference → image ID.
    pub images: std::collections::HashMap<String, String>,
    /// For the images of services with a timed `pull_policy` (`daily`, `every_12h`) that
    /// exist: how long ago each was last pulled or tagged. Absent when unknown.
    pub image_ages: std::collections::HashMap<String, std::time::Duration>,
    /// Image reference → the digest of its build inputs recorded on it (images stackctl
    /// built).
    pub image_contexts: std::collections::HashMap<String, String>,
}

impl Observed {
    pub fn container(&self, name: &str) -> Option<&ObservedContainer> {
        self.containers.iter().find(|c| c.name == name)
    }
}
