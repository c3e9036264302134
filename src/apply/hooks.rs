//! Lifecycle hooks, with Compose's names and meaning: a service's `pre_start` steps (each a
//! one-off container run to completion before the service's new container starts),
//! `post_start` commands (run inside the container right after it started) and `pre_stop`
//! commands (run inside it before every stop: `stop`, `down`, `purge`, a recreate).
//!
//! A failing `pre_start` step or `post_start` command fails the service; a failing
//! `pre_stop` command is a warning (the stop goes on). Each step or command is a line of the
//! live output and a `--json` event (kind `service`, action `pre_start` / `post_start` /
//! `pre_stop`). How a recreate keeps the old container serving until the steps passed is in
//! `apply::docker`.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Interrupt;
use crate::engine::hooks::{ExecHook, HookRun};
use crate::engine::Engine;
use crate::error::{Failure, Interrupted};
use crate::output::Progress;
use crate::plan::container::StepSpec;
use crate::stack::model::{env_list, ExecHookDef, Service};

/// A service's grace period when it sets none (Docker's default).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The bound on each `post_start` command of `start` (which has no `--timeout`).
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(300);

/// The bound on each `pre_stop` command: the service's `stop_grace_period`.
pub fn grace_period(service: &Service) -> Duration {
    service
        .stop_grace_period
        .map(|d| d.0)
        .unwrap_or(DEFAULT_GRACE)
}

/// The engine form of a `post_start` / `pre_stop` command.
pub fn exec_hook(def: &ExecHookDef) -> ExecHook {
    ExecHook {
        command: def.command.clone(),
        user: def.user.clone(),
        working_dir: def.working_dir.clone(),
        environment: env_list(&def.environment),
        privileged: def.privileged,
    }
}

/// One hook's line: `service NAME: pre_start 1/2 (task migrate) done (1.2s)`.
fn report(
    progress: Option<&Progress>,
    container: &str,
    action: &str,
    what: &str,
    status: &str,
    started: Instant,
) {
    if let Some(progress) = progress {
        progress.hook_event(
            container,
            action,
            what,
            status,
            started.elapsed().as_millis(),
        );
    }
}

/// The last lines of a hook's output, indented, for an error message.
fn last_lines(run: &HookRun) -> String {
    if run.last_lines.is_empty() {
        return "\n  (no output)".to_string();
    }
    let mut text = format!("\n  last {} lines of output:", run.last_lines.len());
    for line in &run.last_lines {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

/// Run a service's `pre_start` steps in order, each to completion; the first that fails
/// (non-zero exit, timeout, engine error) ends the run with an error naming the step, its
/// exit code and its last lines. `kept` says what happens to the service then (for the
/// hint). Each step container is removed whatever happens.
#[allow(clippy::too_many_arguments)]
pub async fn run_pre_start(
    engine: &Engine,
    service: &str,
    container: &str,
    steps: &[StepSpec],
    timeout: Duration,
    interrupt: &Interrupt,
    progress: Option<&Progress>,
    kept: &str,
) -> Result<()> {
    let total = steps.len();
    for (index, step) in steps.iter().enumerate() {
        interrupt.check()?;
        let what = format!("{}/{total} ({})", index + 1, step.label);
        let started = Instant::now();
        report(progress, container, "pre_start", &what, "started", started);
        let mut config = super::docker::container_config(&step.container);
        config.extras.privileged = step.privileged;
        // A step's own image (the service's is there already) is built (a task's `build:`)
        // or pulled when missing.
        if engine.image_id(&config.image).await?.is_none() {
            match &step.build {
                Some(build) => {
                    engine
                        .build_image(&super::docker::build_request(build)?, &|_| {})
                        .await?;
                }
                None => {
                    super::docker::pull_image(engine, &config.image, service, &|_, _| {}).await?;
                }
            }
        }
        let run = tokio::select! {
            run = engine.run_to_completion(&config, timeout) => run,
            _ = interrupt.wait() => {
                let _ = engine.remove_container(&config.name).await;
                return Err(Interrupted.into());
            }
        };
        let named = format!(
            "service `{service}`: pre_start step {} of {total} (`{}`)",
            index + 1,
            step.label
        );
        let hint = format!("{kept}; fix the step and run `stackctl up` again");
        let failure = match run {
            Ok(Some(run)) if run.exit_code == 0 => {
                report(progress, container, "pre_start", &what, "done", started);
                continue;
            }
            Ok(Some(run)) => Failure::new(format!(
                "{named} exited with code {}{}",
                run.exit_code,
                last_lines(&run)
            )),
            Ok(None) => Failure::new(format!(
                "{named} did not finish within {:.0}s",
                timeout.as_secs_f64()
            )),
            Err(err) => Failure::new(format!("{named} could not run: {err}")),
        };
        report(progress, container, "pre_start", &what, "failed", started);
        return Err(failure.with_hint(hint).into());
    }
    Ok(())
}

/// Run a service's `post_start` commands inside its container, in order; the first that
/// fails ends the run with an error naming it.
pub async fn run_post_start(
    engine: &Engine,
    service: &str,
    container: &str,
    hooks: &[ExecHookDef],
    timeout: Duration,
    progress: Option<&Progress>,
) -> Result<()> {
    let total = hooks.len();
    for (index, hook) in hooks.iter().enumerate() {
        let label = hook.command.join(" ");
        let what = format!("{}/{total} ({label})", index + 1);
        let started = Instant::now();
        report(progress, container, "post_start", &what, "started", started);
        let named = format!(
            "service `{service}`: post_start hook {} of {total} (`{label}`)",
            index + 1
        );
        let failure = match engine
            .exec_hook(container, &exec_hook(hook), Some(timeout))
            .await
        {
            Ok(Some(run)) if run.exit_code == 0 => {
                report(progress, container, "post_start", &what, "done", started);
                continue;
            }
            Ok(Some(run)) => Failure::new(format!(
                "{named} exited with code {}{}",
                run.exit_code,
                last_lines(&run)
            )),
            Ok(None) => Failure::new(format!(
                "{named} did not finish within {:.0}s",
                timeout.as_secs_f64()
            )),
            Err(err) => Failure::new(format!("{named} could not run: {err}")),
        };
        report(progress, container, "post_start", &what, "failed", started);
        return Err(failure
            .with_hint(format!(
                "the container is running; see `stackctl logs {service}`, fix the hook and run `stackctl up` again"
            ))
            .into());
    }
    Ok(())
}

/// Run a service's `pre_stop` commands inside its running container, each bounded by the
/// service's grace period. A failure or a timeout is a warning: the stop goes on.
pub async fn run_pre_stop(
    engine: &Engine,
    service_name: &str,
    service: &Service,
    container: &str,
    progress: Option<&Progress>,
) {
    let total = service.pre_stop.len();
    let grace = grace_period(service);
    for (index, hook) in service.pre_stop.iter().enumerate() {
        let label = hook.command.join(" ");
        let what = format!("{}/{total} ({label})", index + 1);
        let started = Instant::now();
        report(progress, container, "pre_stop", &what, "started", started);
        let problem = match engine
            .exec_hook(container, &exec_hook(hook), Some(grace))
            .await
        {
            Ok(Some(run)) if run.exit_code == 0 => {
                report(progress, container, "pre_stop", &what, "done", started);
                continue;
            }
            Ok(Some(run)) => format!("exited with code {}{}", run.exit_code, last_lines(&run)),
            Ok(None) => format!(
                "did not finish within the grace period ({:.0}s)",
                grace.as_secs_f64()
            ),
            Err(err) => format!("could not run: {err}"),
        };
        report(progress, container, "pre_stop", &what, "failed", started);
        let message = format!(
            "service `{service_name}`: pre_stop hook {} of {total} (`{label}`) {problem}; stopping anyway",
            index + 1
        );
        match progress {
            Some(progress) => progress.warn(&message, None),
            None => eprintln!("warning: {}", crate::output::mask(&message)),
        }
    }
}
