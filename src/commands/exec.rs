//! `stackctl exec NAME [-- ARGS…]`: a container task in a fresh one-off container, a sequence
//! of steps, or a command inside a service's running container. The exit code is the
//! process's own; stackctl's own lines go to stderr only, so stdout is the process's output.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Context;
use crate::apply;
use crate::cli::ExecArgs;
use crate::engine::attach::{End, Input, Outcome};
use crate::engine::Engine;
use crate::error::{exit, Interrupted, UsageError};
use crate::output::{now_ms, Event, Mode};
use crate::plan::task::{self, Step};
use crate::stack::model::{ContainerTask, Task};
use crate::stack::LoadedStack;
use crate::tty::StdioKind;

/// Exit code when our stdout was closed by its reader (`stackctl exec dump | head`): what a
/// shell reports for a process killed by SIGPIPE (128 + 13). The task container is removed.
pub const BROKEN_PIPE: i32 = 141;

pub async fn run(ctx: &Context, args: &ExecArgs) -> Result<i32> {
    let loaded = crate::stack::load(&ctx.project)?;
    let mut printer = ctx.printer.clone();
    printer.add_secrets(loaded.secrets.clone());
    let ctx = Context {
        project: ctx.project.clone(),
        printer,
        global: ctx.global.clone(),
        engine: ctx.engine.clone(),
    };
    let name = args.name.as_str();
    let is_task = loaded.stack.tasks.contains_key(name);
    let is_service = loaded.stack.services.contains_key(name);
    if !is_task && !is_service {
        return Err(unknown_name(&loaded, name).into());
    }
    let engine = super::connect(&ctx, &loaded).await?;
    super::remote::check_binds(&engine, &loaded)?;
    run_name(&ctx, &loaded, &engine, name, &args.args).await
}

/// Run the task or service command `name`: what `exec` and `init` share.
pub async fn run_name(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    name: &str,
    args: &[String],
) -> Result<i32> {
    match loaded.stack.tasks.get(name) {
        Some(Task::Container(task)) => {
            run_container_task(ctx, loaded, engine, name, task, args, true).await
        }
        Some(Task::Steps(_)) => {
            if !args.is_empty() {
                return Err(UsageError::new(format!(
                    "task `{name}` is a sequence of steps; it takes no command"
                ))
                .with_hint(format!("run `stackctl exec {name}` without `-- …`"))
                .into());
            }
            run_sequence(ctx, loaded, engine, name).await
        }
        None if loaded.stack.services.contains_key(name) => {
            exec_in_service(ctx, loaded, engine, name, args).await
        }
        None => Err(unknown_name(loaded, name).into()),
    }
}

/// `stackctl init`: run the `init` task when the stack has one.
pub async fn run_init(ctx: &Context, loaded: &LoadedStack) -> Result<i32> {
    if !loaded.stack.tasks.contains_key("init") {
        ctx.printer.status(&format!(
            "no `init` task in {}: nothing to run",
            ctx.project.display_path(&loaded.file)
        ));
        return Ok(exit::OK);
    }
    let engine = super::connect(ctx, loaded).await?;
    run_name(ctx, loaded, &engine, "init", &[]).await
}

fn unknown_name(loaded: &LoadedStack, name: &str) -> UsageError {
    let tasks: Vec<&str> = loaded.stack.tasks.keys().map(String::as_str).collect();
    let services: Vec<&str> = loaded.stack.services.keys().map(String::as_str).collect();
    let error = UsageError::new(format!("`{name}` is neither a task nor a service"));
    let close = task::did_you_mean(name, tasks.iter().chain(services.iter()).copied());
    let list = |kind: &str, names: &[&str]| {
        if names.is_empty() {
            format!("no {kind}")
        } else {
            format!(
                "{kind}: {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    match close {
        Some(close) => error.with_hint(format!("did you mean `{close}`?")),
        None => error.with_hint(format!(
            "{}; {}",
            list("tasks", &tasks),
            list("services", &services)
        )),
    }
}

/// The process's exit code as ours (0–255; anything odd is a failure).
fn exit_code(code: i64) -> i32 {
    match i32::try_from(code) {
        Ok(code) if (0..=255).contains(&code) => code,
        _ => exit::FAILURE,
    }
}

/// One line about a finished run: plain mode only (CI logs), or with `-v`; a JSON event on
/// stderr with `--json` (stdout is the process's output); nothing with `-q`.
fn report(
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
fn finish(
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
            Ok(BROKEN_PIPE)
        }
    }
}

/// Run a container task in a fresh one-off container. `caller_stdin`: whether our own
/// stdin may feed it (not inside a sequence unless on a terminal: one input can't be split
/// between steps). Input piped or redirected to us replaces the task's `stdin:` file: what
/// the caller gives explicitly wins, and stderr says so.
async fn run_container_task(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    name: &str,
    task: &ContainerTask,
    args: &[String],
    caller_stdin: bool,
) -> Result<i32> {
    let plan = task::plan_container(loaded, name, task, args, &task::short_id())?;
    run_one_off(ctx, loaded, engine, OneOff::Task, &plan, caller_stdin).await
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
async fn make_data_containers(
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
    let plan = super::up::observe_and_plan(engine, &target, loaded, &mut options, true).await?;
    if plan.is_noop() {
        return Ok(());
    }
    let progress = ctx.printer.progress();
    let apply_options = apply::ApplyOptions::new(false, timeout);
    super::up::converge(
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
const DATA_TIMEOUT: u64 = 300;

/// What feeds the task's stdin, and whether it gets a TTY: input piped to us (when we may
/// read it), else its `stdin:` file, else our stdin as [`StdioKind`] decides.
async fn task_input(
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
async fn piped_input() -> Result<Option<Box<dyn std::io::Read + Send>>> {
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

fn interrupted_task(ctx: &Context, kind: OneOff, container: &str) -> anyhow::Error {
    let what = match kind {
        OneOff::Task => "task container",
        OneOff::Run => "one-off container",
    };
    ctx.printer
        .status(&format!("interrupted: removed {what} `{container}`"));
    Interrupted.into()
}

/// Docker exec inside the service's running container.
async fn exec_in_service(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    service: &str,
    args: &[String],
) -> Result<i32> {
    if args.is_empty() {
        return Err(UsageError::new(format!(
            "`{service}` is a service: give the command to run in it after `--`"
        ))
        .with_hint(format!("stackctl exec {service} -- sh"))
        .into());
    }
    let container = if super::swarm::is_swarm(loaded) {
        super::swarm::task_container_here(engine, loaded, service).await?
    } else {
        crate::plan::container::container_name(loaded, service)
    };
    let not_running = |what: &str| {
        anyhow::Error::from(
            crate::error::Failure::new(format!(
                "service `{service}` {what} on stage `{}`",
                loaded.stage
            ))
            .with_hint(format!("start it with `stackctl up {service}`")),
        )
    };
    match engine.container_running(&container).await? {
        None => return Err(not_running("has no container")),
        Some(false) => return Err(not_running("is not running")),
        Some(true) => {}
    }
    let kind = StdioKind::detect();
    let input = if kind.attach_stdin {
        Input::Stdin
    } else {
        Input::Detached
    };
    let started = Instant::now();
    let outcome = engine
        .exec_in(&container, args.to_vec(), input, kind.tty)
        .await
        .with_context(|| format!("service `{service}`"))?;
    finish(ctx, "service", "exec", service, outcome, started)
}

/// Run a sequence: each step in order, stopping at the first failure and naming it.
async fn run_sequence(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    name: &str,
) -> Result<i32> {
    let steps = task::flatten_steps(&loaded.stack, name)?;
    let total = steps.len();
    let label = |step: &Step| match step {
        Step::Builtin(s) | Step::Task(s) => s.clone(),
    };
    let started = Instant::now();
    for (index, step) in steps.iter().enumerate() {
        let position = format!("step {}/{total} `{}`", index + 1, label(step));
        if crate::interrupt::requested() {
            return Err(sequence_interrupted(ctx, name, &steps[index..]));
        }
        ctx.printer.status(&format!("task {name}: {position}"));
        let result = match step {
            Step::Builtin(builtin) => builtin_step(ctx, loaded, engine, builtin).await,
            Step::Task(task_name) => match loaded.stack.tasks.get(task_name) {
                Some(Task::Container(task)) => {
                    run_container_task(ctx, loaded, engine, task_name, task, &[], false).await
                }
                _ => Err(UsageError::new(format!("`{task_name}` is not a container task")).into()),
            },
        };
        match result {
            Ok(0) => {}
            Ok(code) => {
                return Err(crate::error::FailedWith {
                    code,
                    message: format!("task `{name}`: {position} failed with exit code {code}"),
                }
                .into());
            }
            Err(err) if err.downcast_ref::<Interrupted>().is_some() => {
                return Err(sequence_interrupted(ctx, name, &steps[index + 1..]));
            }
            Err(err) => return Err(err.context(format!("task `{name}`: {position} failed"))),
        }
    }
    report(
        ctx,
        ("task", "exec"),
        name,
        "done",
        &format!("{total} steps"),
        started,
    );
    Ok(exit::OK)
}

fn sequence_interrupted(ctx: &Context, name: &str, left: &[Step]) -> anyhow::Error {
    if !left.is_empty() {
        let names: Vec<String> = left
            .iter()
            .map(|s| match s {
                Step::Builtin(n) | Step::Task(n) => format!("`{n}`"),
            })
            .collect();
        ctx.printer.status(&format!(
            "task {name}: interrupted; steps not run: {}",
            names.join(", ")
        ));
    }
    Interrupted.into()
}

/// How long the built-in steps `up` and `wait` wait for health (as `up`'s default).
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// The built-in steps `up`, `down`, `build`, `wait`: what the command of that name does
/// (`wait`: until every service is healthy, or running when it has no healthcheck, and every
/// one-shot dependency has exited 0).
async fn builtin_step(
    ctx: &Context,
    loaded: &LoadedStack,
    engine: &Engine,
    step: &str,
) -> Result<i32> {
    match step {
        "up" => {
            let args = crate::cli::UpArgs {
                services: Vec::new(),
                build: false,
                no_wait: false,
                timeout: STEP_TIMEOUT.as_secs(),
                dry_run: false,
                remove_orphans: false,
                renew_anon_volumes: false,
                pull: None,
                watch: false,
            };
            super::up::run(ctx, &args).await
        }
        "down" => {
            let args = crate::cli::DownArgs {
                timeout: STEP_TIMEOUT.as_secs(),
            };
            super::down::run(ctx, &args).await
        }
        "build" => {
            let args = crate::cli::BuildArgs {
                services: Vec::new(),
                no_cache: false,
            };
            super::build::run(ctx.clone(), &args).await
        }
        "wait" => wait_for_services(loaded, engine).await.map(|()| exit::OK),
        other => Err(UsageError::new(format!("`{other}` is not a built-in step"))
            .with_hint("built-in steps: `up`, `down`, `build`, `wait`")
            .into()),
    }
}

async fn wait_for_services(loaded: &LoadedStack, engine: &Engine) -> Result<()> {
    apply::task::wait_for_stage(engine, loaded, Instant::now() + STEP_TIMEOUT).await
}
