//! One file per subcommand; `dispatch` resolves the project once and calls the right one.

pub mod build;
pub mod config;
pub mod cp;
pub mod data;
pub mod down;
pub mod exec;
pub mod init;
pub mod lock;
pub mod logs;
pub mod ls;
pub mod monitors;
pub mod oneoff;
pub mod ps;
pub mod pull;
pub mod purge;
pub mod push;
pub mod restart;
pub mod rollback;
pub mod run;
pub mod start;
pub mod stop;
pub mod top;
pub mod up;
pub mod use_stage;
pub mod version;
pub mod watch;

use std::time::Duration;

use anyhow::Result;

use crate::engine::endpoint::EngineChoice;
use clap::CommandFactory;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::{exit, UsageError};
use crate::output::Printer;
use crate::project::Project;

/// What every command gets: the resolved project and the printer.
#[derive(Clone)]
pub struct Context {
    pub project: Project,
    pub printer: Printer,
    pub global: crate::cli::GlobalArgs,
    /// The engine the command line names (`-H`, `--context`), if any.
    pub engine: EngineChoice,
}

pub async fn dispatch(cli: Cli) -> Result<i32> {
    // These two need no project, and print a script or a page: nothing to put in JSON.
    if cli.global.json && matches!(cli.command, Command::Completions(_) | Command::Man) {
        return Err(UsageError::new(
            "`--json` does not apply to `completions` or `man`: they print a script or a page",
        )
        .with_hint("leave out `--json`")
        .into());
    }
    let engine = EngineChoice::from_flags(cli.global.host.clone(), cli.global.context.clone())?;
    match &cli.command {
        Command::Completions(args) if args.dynamic => {
            let mut script = Vec::new();
            crate::complete::write_registration(args.shell, &mut script)?;
            write_stdout(&script)?;
            return Ok(exit::OK);
        }
        Command::Completions(args) => {
            let mut command = Cli::command();
            // Into memory first: clap's generator panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, "stackctl", &mut script);
            write_stdout(&script)?;
            return Ok(exit::OK);
        }
        // Needs no project either: it describes stackctl and the engine. In a project whose
        // stack file names an `engine.host`, that is the engine asked (a file that does not
        // load is no reason to fail here: the engine then comes from -H, DOCKER_HOST …).
        Command::Version => {
            let mut choice = engine.clone();
            if let Ok(project) = Project::resolve(&selection(&cli.global)) {
                if let Ok(loaded) = crate::stack::load(&project) {
                    choice = stack_engine(&engine, &project, &loaded);
                }
            }
            let printer = Printer::new(output_settings(&cli.global), "");
            return version::run(&printer, &choice).await;
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(exit::OK);
        }
        _ => {}
    }
    if let Command::Use(args) = &cli.command {
        return use_stage::run(&cli.global, args);
    }
    let project = Project::resolve(&selection(&cli.global))?;
    let printer = Printer::new(output_settings(&cli.global), &project.stage);
    let ctx = Context {
        project,
        printer,
        global: cli.global.clone(),
        engine,
    };
    run_command(&ctx, cli.command).await
}

/// Run one command in a resolved context: what `dispatch` does, and how one command runs
/// another (`run` brings up dependencies with `up`; a task's built-in steps `up`, `down`,
/// `build`) without one command file calling another.
pub(crate) async fn run_command(ctx: &Context, command: Command) -> Result<i32> {
    match command {
        Command::Build(args) => build::run(ctx.clone(), &args).await,
        Command::Exec(args) => exec::run(ctx, &args).await,
        Command::Config(args) => config::run(ctx, &args).await,
        Command::Init(args) => init::run(ctx, &args).await,
        Command::Up(args) => {
            let code = up::run(ctx, &args).await?;
            if args.watch && !args.dry_run {
                return watch::watch(ctx, &args.services, false).await;
            }
            Ok(code)
        }
        Command::Down(args) => down::run(ctx, &args).await,
        Command::Purge(args) => purge::run(ctx, &args).await,
        Command::Rollback(args) => rollback::run(ctx, &args).await,
        Command::Stop(args) => stop::run(ctx, &args).await,
        Command::Start(args) => start::run(ctx, &args).await,
        Command::Ps(args) => ps::run(ctx, &args).await,
        Command::Pull(args) => pull::run(ctx, &args).await,
        Command::Push(args) => push::run(ctx, &args).await,
        Command::Logs(args) => logs::run(ctx, &args).await,
        Command::Restart(args) => restart::run(ctx, &args).await,
        Command::Run(args) => run::run(ctx, &args).await,
        Command::Ls(args) => ls::run(ctx, &args).await,
        Command::Top(args) => top::run(ctx, &args).await,
        Command::Cp(args) => cp::run(ctx, &args).await,
        Command::Data(args) => data::run(ctx, &args).await,
        Command::Lock(args) => lock::run(ctx, &args).await,
        Command::Watch(args) => watch::watch(ctx, &args.services, true).await,
        Command::Completions(_) | Command::Man | Command::Version | Command::Use(_) => Ok(exit::OK),
    }
}

/// The project and stage the global flags select.
pub(crate) fn selection(global: &GlobalArgs) -> crate::project::Selection {
    crate::project::Selection {
        directory: global.directory.clone(),
        files: global.files.clone(),
        env: global.env.clone(),
        profiles: global.profiles.clone(),
    }
}

/// What the global flags ask of the output.
pub(crate) fn output_settings(global: &GlobalArgs) -> crate::output::Settings {
    crate::output::Settings {
        json: global.json,
        quiet: global.quiet,
        verbose: global.verbose,
    }
}

/// How long a command may take to wind down after the first interrupt before it is stopped
/// where it is: nothing for one that only reads; enough for the calls in flight of one that
/// changes the stage (they take milliseconds on an engine that answers); enough to remove
/// the one-off container of `exec` and `init`.
pub fn grace(command: &Command) -> Duration {
    match command {
        Command::Config(_)
        | Command::Ps(_)
        | Command::Logs(_)
        | Command::Ls(_)
        | Command::Use(_)
        | Command::Top(_)
        | Command::Version
        | Command::Completions(_)
        | Command::Man => Duration::ZERO,
        Command::Exec(_) | Command::Init(_) | Command::Run(_) => Duration::from_secs(10),
        // Enough to swap what was checked in and start the stopped services again.
        Command::Data(_) => Duration::from_secs(120),
        // Enough to finish a restart under way (its stop, then its start).
        Command::Watch(_) => Duration::from_secs(60),
        Command::Build(_)
        | Command::Pull(_)
        | Command::Push(_)
        | Command::Up(_)
        | Command::Restart(_)
        | Command::Cp(_)
        | Command::Stop(_)
        | Command::Start(_)
        | Command::Down(_)
        | Command::Purge(_)
        | Command::Rollback(_)
        | Command::Lock(_) => Duration::from_secs(3),
    }
}

/// Write a whole script to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Load the stage's stack file, and a printer that masks its secrets.
pub fn load_stack(ctx: &Context) -> Result<(crate::stack::LoadedStack, Printer)> {
    let loaded = crate::stack::load(&ctx.project)?;
    let mut printer = ctx.printer.clone();
    printer.add_secrets(loaded.secrets.iter().cloned());
    Ok((loaded, printer))
}

/// The engine choice with the stack file's `engine.host` (after `-H`/`--context`, before
/// DOCKER_HOST).
pub fn stack_engine(
    choice: &EngineChoice,
    project: &Project,
    loaded: &crate::stack::LoadedStack,
) -> EngineChoice {
    choice.with_stack_host(
        loaded.stack.engine.as_ref().and_then(|e| e.host.clone()),
        &project.display_path(&loaded.file),
    )
}

/// The stage's engine: the command line's, else its stack file's, else the environment's.
pub fn endpoint(
    ctx: &Context,
    loaded: &crate::stack::LoadedStack,
) -> Result<crate::engine::endpoint::Endpoint> {
    Ok(stack_engine(&ctx.engine, &ctx.project, loaded).resolve()?)
}

/// Connect to the stage's engine (one clear line and exit 1 when it is unreachable).
pub async fn connect(
    ctx: &Context,
    loaded: &crate::stack::LoadedStack,
) -> Result<crate::engine::Engine> {
    crate::engine::Engine::connect(endpoint(ctx, loaded)?).await
}

/// Connect to the engine the command line or the environment names, for a command that has
/// no stack file to read (`ls`, a `purge` from the labels alone).
pub async fn connect_without_stack(ctx: &Context) -> Result<crate::engine::Engine> {
    crate::engine::Engine::connect(ctx.engine.resolve()?).await
}

/// The policy `up --pull` gives every service.
pub(crate) fn pull_policy(arg: crate::cli::PullArg) -> crate::stack::model::PullPolicy {
    use crate::cli::PullArg;
    use crate::stack::model::PullPolicy;
    match arg {
        PullArg::Always => PullPolicy::Always,
        PullArg::Missing => PullPolicy::Missing,
        PullArg::Never => PullPolicy::Never,
    }
}

/// The service names asked for, checked against the stack; empty: all of them.
pub fn check_services(loaded: &crate::stack::LoadedStack, asked: &[String]) -> Result<Vec<String>> {
    for name in asked {
        if !loaded.stack.services.contains_key(name) {
            let known: Vec<&str> = loaded.stack.services.keys().map(String::as_str).collect();
            return Err(
                UsageError::new(format!("no service `{name}` in this stack"))
                    .with_hint(format!("services: {}", known.join(", ")))
                    .into(),
            );
        }
    }
    Ok(if asked.is_empty() {
        loaded.stack.services.keys().cloned().collect()
    } else {
        asked.to_vec()
    })
}

/// The service containers `stop`/`start` act on, with the stage locked while it is held.
pub struct ServiceSelection {
    pub loaded: crate::stack::LoadedStack,
    pub printer: Printer,
    pub engine: crate::engine::Engine,
    /// The services asked for (all when none were named).
    pub wanted: Vec<String>,
    /// Their existing containers.
    pub containers: Vec<crate::observed::ObservedContainer>,
    _lock: crate::lock::StageLock,
}

/// Load the stack, check the named services, lock the stage and list their containers.
pub async fn select_services(
    ctx: &Context,
    args: &crate::cli::ServicesArgs,
) -> Result<ServiceSelection> {
    let (loaded, printer) = load_stack(ctx)?;
    let wanted = check_services(&loaded, &args.services)?;
    let engine = connect(ctx, &loaded).await?;
    let lock = crate::lock::acquire(
        &engine,
        &loaded.project,
        &loaded.stage,
        std::time::Duration::from_secs(args.timeout),
        &printer,
    )
    .await?;
    let observed = engine
        .observe_named(
            &loaded.stage,
            &loaded.project,
            &crate::plan::container::custom_names(&loaded),
        )
        .await?;
    let containers = observed
        .containers
        .into_iter()
        .filter(|c| c.role == crate::names::role::SERVICE)
        .filter(|c| c.service.as_ref().is_some_and(|s| wanted.contains(s)))
        .collect();
    Ok(ServiceSelection {
        loaded,
        printer,
        engine,
        wanted,
        containers,
        _lock: lock,
    })
}

/// Remember the context's stage (`stackctl init`, `stackctl use`), saying so when it changes.
pub fn remember_stage(ctx: &Context, previous: Option<&str>) {
    let project = &ctx.project;
    match project.remember_stage() {
        Ok(()) if previous != Some(project.stage.as_str()) => ctx.printer.status(&format!(
            "commands here now act on stage `{}` without `-e` (remembered in `{}/stage`)",
            project.stage,
            crate::project::STATE_DIR
        )),
        Ok(()) => {}
        Err(e) => ctx.printer.warn(&format!(
            "cannot remember stage `{}` in `{}/stage`: {}",
            project.stage,
            crate::project::STATE_DIR,
            crate::error::io_reason(&e)
        )),
    }
}

/// `2h`, `90m`, `3d`, `1h30m`: the age of `--stale`.
pub fn parse_age(text: &str) -> Result<Duration, UsageError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        UsageError::new(format!("`{text}` is not a duration: {e}"))
            .with_hint("write it like `90m`, `2h` or `3d`")
    })
}

/// Shell-style matching with `*` (any characters) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn a_lock_names_every_subcommand_of_the_command_line() {
        let names: Vec<String> = super::Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, crate::lock::SUBCOMMANDS);
    }
}
