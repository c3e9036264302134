//! The seam between the executor and what it drives. The executor decides order,
//! parallelism, waits and interrupts; a target does one thing at a time when asked. The
//! Docker engine ([`super::docker::DockerTarget`]) is the first target; the unit tests drive
//! the executor against a fake one, without a daemon.

use std::time::Instant;

use anyhow::Result;

use crate::observed::Observed;
use crate::plan::image::ImageSpec;
use crate::plan::up::Action;

/// What a dependent waits for, or what `up` checks at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Healthy (or running, without a healthcheck).
    Healthy,
    /// Exited 0.
    Completed,
    /// Not exited with a failure right after it started.
    NotFailed,
}

/// Told each phase of an action as it begins (`stopping`, `creating`, `starting`); an error
/// (an interrupt) stops the action before that phase.
pub type Phase<'a> = &'a (dyn Fn(&'static str) -> Result<()> + Sync);

/// What the executor needs from the thing it converges. The futures run on the caller's task
/// (the executor joins them, it does not spawn), so they need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Target {
    /// What the target holds of the stage now, and the IDs of the images the stack uses.
    async fn observe(&self) -> Result<Observed>;

    /// Build one image; `output` gets each line of the build's output.
    async fn build(&self, image: &ImageSpec, output: &(dyn Fn(&str) + Send + Sync)) -> Result<()>;

    /// Pull one image from its registry; `progress` gets bytes done and total as they move.
    /// `owner` names who needs it, for messages. Returns the bytes transferred.
    async fn pull(
        &self,
        image: &str,
        owner: &str,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64>;

    /// Make one non-build action of a plan true: create a network or volume, check an
    /// external one, create a data container, create / recreate / start / restart a
    /// service's container, remove an orphan.
    async fn apply(&self, action: &Action, phase: Phase<'_>) -> Result<()>;

    /// Wait until `service` (its container `container`) meets `readiness`; fail naming it
    /// when it cannot any more or when `deadline` passes.
    async fn wait(
        &self,
        service: &str,
        container: &str,
        readiness: Readiness,
        deadline: Instant,
    ) -> Result<()>;
}
