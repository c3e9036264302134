//! `stackctl exec NAME [-- ARGS…]`: a container task in a fresh one-off container, a sequence
//! of steps, or a command inside a service's running container. The exit code is the
//! process's own; stackctl's own lines go to stderr only, so stdout is the process's output.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::oneoff::{finish, report, run_one_off, OneOff};
use super::Context;
use crate::apply;
use crate::cli::ExecArgs;
use crate::engine::attach::Input;
use crate::engine::Engine;
use crate::error::{exit, Interrupted, UsageError};
use crate::plan::task::{self, Step};
use crate::stack::model::{ContainerTask, Task};
use crate::stack::LoadedStack;
use crate::tty::StdioKind;

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
    crate::apply::remote::check_binds(&engine, &loaded)?;
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
    let container = if crate::apply::swarm::is_swarm(loaded) {
        crate::apply::swarm::task_container_here(engine, loaded, service).await?
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
            Box::pin(super::run_command(ctx, crate::cli::Command::Up(args))).await
        }
        "down" => {
            let args = crate::cli::DownArgs {
                timeout: STEP_TIMEOUT.as_secs(),
            };
            Box::pin(super::run_command(ctx, crate::cli::Command::Down(args))).await
        }
        "build" => {
            let args = crate::cli::BuildArgs {
                services: Vec::new(),
                no_cache: false,
            };
            Box::pin(super::run_command(ctx, crate::cli::Command::Build(args))).await
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
