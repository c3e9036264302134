//! One-off containers attached to our streams: what `exec TASK`, `run SERVICE` and a task's
//! steps share. Not a command: the helper its commands call (the image, volumes, networks
//! and data containers made first; the container removed on every path; our exit code the
//! process's own).

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};

use super::Context;
use crate::apply;
use crate::engine::attach::{End, Input, Outcome};
use crate::engine::Engine;
use crate::error::{exit, Interrupted, UsageError};
use crate::output::{now_ms, Event, Mode};
use crate::plan::task;
use crate::stack::LoadedStack;
use crate::tty::StdioKind;

/// The process's exit code as ours (0–255; anything odd is a failure).
pub(crate) fn exit_code(code: i64) -> i32 {
    match i32::try_from(code) {
        Ok(code) if (0..=255).contains(&code) => code,
        _ => exit::FAILURE,
    }
}

/// One line about a finished run: plain mode only (CI logs), or with `-v`; a JSON event on
/// stderr with `--json` (stdout is the process's output); nothing with `-q`.
pub(crate) fn report(
    ctx: &Context,
    (kind, action): (&str, &str),
    object: &str,
    status: &str,
    detail: &str,
    started: Instant,
) {
    let elapsed = started.elapsed();
    let printer = &ctx.printer;
    match printer.mode {
        Mode::Json => {
            let event = Event {
                ts: now_ms(),
                stage: &printer.stage,
                object,
                kind,
                action,
                status,
                elapsed_ms: elapsed.as_millis(),
                reason: Some(detail),
                counts: None,
            };
            if let Ok(line) = serde_json::to_string(&event) {
                let _ = writeln!(std::io::stderr().lock(), "{}", printer.mask(&line));
            }
        }
        Mode::Plain => printer.status(&format!(
            "{kind} {object}: {status} ({detail}, {:.1}s)",
            elapsed.as_secs_f64()
        )),
        Mode::Live if ctx.global.verbose > 0 => printer.status(&format!(
            "{kind} {object}: {status} ({detail}, {:.1}s)",
            elapsed.as_secs_f64()
        )),
        Mode::Live => {}
    }
}

/// What a run's end means for us: the exit code, or the interrupt.
pub(crate) fn finish(
    ctx: &Context,
    kind: &str,
    action: &str,
    object: &str,
    outcome: Outcome,
    started: Instant,
) -> Result<i32> {
    if let Some(problem) = outcome.input_error {
        ctx.printer.warn(&format!("{kind} `{object}`: {problem}"));
    }
    match outcome.end {
        End::Exited(code) => {
            let code = exit_code(code);
            let status = if code == 0 { "done" } else { "failed" };
            report(
                ctx,
                (kind, action),
                object,
                status,
                &format!("exit {code}"),
                started,
            );
            Ok(code)
        }
        End::Interrupted => Err(Interrupted.into()),
        End::BrokenPipe => {
            report(
                ctx,
                (kind, action),
                object,
                "stopped",
                "output closed",
                started,
            );
            Ok(exit::BROKEN_PIPE)
        }
    }
}

/// What a one-off container is for: a task (`exec TASK`) or a copy of a service (`run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneOff {
    Task,
    Run,
}

impl OneOff {
    /// The `kind` of its lines and JSON event.
    fn kind(self) -> &'static str {
        match self {
            OneOff::Task => "task",
            OneOff::Run => "run",
        }
    }

    /// The `action` of its JSON event.
    fn action(self) -> &'static str {
        match self {
            OneOff::Task => "exec",
            OneOff::Run => "run",
        }
    }
}

/// Run a planned one-off container attached to our streams (see [`task_input`]), the image,
/// volumes and networks it needs made first; it is removed on every path, an interrupt too.
pub async fn run_one_off(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    kind: OneOff,
    plan: &task::TaskPlan,
    caller_stdin: bool,
) -> Result<i32> {
    let name = plan.task.as_str();
    let (input, tty) = task_input(ctx, loaded, plan, caller_stdin).await?;
    let verbose = ctx.global.verbose > 0 && !ctx.global.quiet;
    make_data_containers(ctx, loaded, engine, &plan.data_containers).await?;
    apply::task::prepare(engine, loaded, plan, &ctx.printer, verbose).await?;
    crate::interrupt::check()?;
    let started = Instant::now();
    let outcome = match apply::task::run(engine, plan, input, tty).await {
        Ok(outcome) => outcome,
        Err(_) if crate::interrupt::requested() => {
            return Err(interrupted_task(ctx, kind, &plan.container.name));
        }
        Err(err) => return Err(err).with_context(|| format!("{} `{name}`", kind.kind())),
    };
    if outcome.end == End::Interrupted {
        return Err(interrupted_task(ctx, kind, &plan.container.name));
    }
    finish(ctx, kind.kind(), kind.action(), name, outcome, started)
}

/// The data containers a one-off container takes volumes from, made (with their images and
/// volumes) when they are missing, as `up` makes them; nothing else is touched.
pub(crate) async fn make_data_containers(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    data: &[String],
) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let timeout = std::time::Duration::from_secs(DATA_TIMEOUT);
    let _lock = crate::lock::acquire(
        engine,
        &loaded.project,
        &loaded.stage,
        timeout,
        &ctx.printer,
    )
    .await?;
    let mut options = crate::plan::up::PlanOptions {
        only_data: data.to_vec(),
        ..Default::default()
    };
    let target = apply::docker::DockerTarget::new(engine, loaded);
    let plan = apply::up::observe_and_plan(engine, &target, loaded, &mut options, true).await?;
    if plan.is_noop() {
        return Ok(());
    }
    let progress = ctx.printer.progress();
    let apply_options = apply::ApplyOptions::new(false, timeout);
    apply::up::converge(
        engine,
        &target,
        loaded,
        plan,
        options,
        &apply_options,
        &progress,
    )
    .await
}

/// How long making a one-off container's data containers may take (a build, a pull, or
/// another stackctl holding the stage).
pub(crate) const DATA_TIMEOUT: u64 = 300;

/// What feeds the task's stdin, and whether it gets a TTY: input piped to us (when we may
/// read it), else its `stdin:` file, else our stdin as [`StdioKind`] decides.
pub(crate) async fn task_input(
    ctx: &Context,
    loaded: &LoadedStack,
    plan: &task::TaskPlan,
    caller_stdin: bool,
) -> Result<(Input, bool)> {
    let name = &plan.task;
    let piped = match &plan.stdin_file {
        Some(_) if caller_stdin => piped_input().await?,
        _ => None,
    };
    match (&plan.stdin_file, piped) {
        (Some(path), Some(reader)) => {
            ctx.printer.status(&format!(
                "task `{name}`: reading the input piped to stackctl instead of its `stdin:` file `{}`",
                ctx.project.display_path(path)
            ));
            Ok((Input::Reader(reader), false))
        }
        (Some(path), None) => {
            let file = std::fs::File::open(path).map_err(|e| {
                UsageError::new(format!(
                    "task `{name}`: cannot open its `stdin:` file `{}`: {e}",
                    ctx.project.display_path(path)
                ))
                .with_hint(format!(
                    "fix `stdin:` of task `{name}` in {}",
                    ctx.project.display_path(&loaded.file)
                ))
            })?;
            Ok((Input::File(file), false))
        }
        (None, _) => {
            let kind = StdioKind::detect();
            Ok(if kind.attach_stdin && (caller_stdin || kind.tty) {
                (Input::Stdin, kind.tty)
            } else {
                (Input::Detached, false)
            })
        }
    }
}

/// Input piped or redirected to us, when there is any: its first bytes are read here, so an
/// empty pipe or file (what a CI runner or a test harness often gives) does not count as
/// input and a task's `stdin:` file is used then.
pub(crate) async fn piped_input() -> Result<Option<Box<dyn std::io::Read + Send>>> {
    use std::io::Read;
    if !crate::tty::stdin_has_input() {
        return Ok(None);
    }
    let first = tokio::task::spawn_blocking(|| {
        let mut first = vec![0u8; 64 * 1024];
        let read = std::io::stdin().read(&mut first)?;
        first.truncate(read);
        Ok::<_, std::io::Error>(first)
    });
    let first = tokio::select! {
        read = first => read.map_err(|e| anyhow::anyhow!(e))?.context("read stdin")?,
        _ = crate::interrupt::wait() => return Err(Interrupted.into()),
    };
    if first.is_empty() {
        return Ok(None);
    }
    Ok(Some(Box::new(
        std::io::Cursor::new(first).chain(std::io::stdin()),
    )))
}

pub(crate) fn interrupted_task(ctx: &Context, kind: OneOff, container: &str) -> anyhow::Error {
    let what = match kind {
        OneOff::Task => "task container",
        OneOff::Run => "one-off container",
    };
    ctx.printer
        .status(&format!("interrupted: removed {what} `{container}`"));
    Interrupted.into()
}
