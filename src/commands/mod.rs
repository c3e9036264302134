//! One file per subcommand; `dispatch` resolves the project once and calls the right one.

pub mod build;
pub mod config;
pub mod exec;
pub mod init;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::error::{exit, UsageError};
use crate::output::Printer;
use crate::project::Project;

/// What every command gets: the resolved project and the printer.
#[derive(Clone)]
pub struct Context {
    pub project: Project,
    pub printer: Printer,
    pub global: crate::cli::GlobalArgs,
}

pub async fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Completions(args) => {
            let mut command = Cli::command();
            clap_complete::generate(args.shell, &mut command, "stackctl", &mut std::io::stdout());
            return Ok(exit::OK);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(exit::OK);
        }
        _ => {}
    }
    let project = Project::resolve(&cli.global)?;
    let printer = Printer::new(&cli.global, &project.stage);
    let ctx = Context {
        project,
        printer,
        global: cli.global.clone(),
    };
    match cli.command {
        Command::Build(args) => build::run(ctx, &args).await,
        Command::Exec(args) => exec::run(&ctx, &args).await,
        Command::Config(args) => config::run(&ctx, &args).await,
        Command::Init(args) => init::run(&ctx, &args).await,
        other => not_yet(&ctx, &other),
    }
}

fn not_yet(_ctx: &Context, command: &Command) -> Result<i32> {
    Err(UsageError::new(format!(
        "`{}` is not implemented yet",
        command_name(command)
    ))
    .into())
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Init(_) => "init",
        Command::Config(_) => "config",
        Command::Build(_) => "build",
        Command::Up(_) => "up",
        Command::Stop(_) => "stop",
        Command::Start(_) => "start",
        Command::Down(_) => "down",
        Command::Purge(_) => "purge",
        Command::Exec(_) => "exec",
        Command::Logs(_) => "logs",
        Command::Ps(_) => "ps",
        Command::Completions(_) => "completions",
        Command::Man => "man",
    }
}
