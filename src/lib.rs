//! stackctl: drive Docker for small data-oriented services from per-stage stack files.
//!
//! The data flows file → model → plan → apply → engine: `stack` loads and validates a stack
//! file, `plan` decides what the stage should look like (pure), `apply` runs a plan through a
//! target, `engine` is the only module that talks to Docker, and `commands` holds one short
//! file per subcommand.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod interrupt;
pub mod lock;
pub mod names;
pub mod observed;
pub mod output;
pub mod plan;
pub mod project;
pub mod stack;
pub mod tty;

use std::io::Write;

use clap::Parser;

use crate::error::{exit, ExitWith, Interrupted, UsageError};

/// Parse the command line, run the command, and return the process exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        interrupt::install();
        commands::dispatch(cli).await
    });
    // Do not wait for blocking stdin readers still parked in the runtime.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Print an error chain once, and pick its exit code.
fn report(err: &anyhow::Error) -> i32 {
    if let Some(ExitWith(code)) = err.downcast_ref::<ExitWith>() {
        return *code;
    }
    let code = if err.downcast_ref::<Interrupted>().is_some() {
        exit::INTERRUPTED
    } else if err.downcast_ref::<UsageError>().is_some()
        || err.downcast_ref::<stack::StackErrors>().is_some()
    {
        exit::USAGE
    } else {
        exit::FAILURE
    };
    let mut stderr = std::io::stderr().lock();
    if let Some(errors) = err.downcast_ref::<stack::StackErrors>() {
        let _ = write!(stderr, "{errors}");
        return code;
    }
    let mut message = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(&format!(": {cause}"));
        }
    }
    let _ = writeln!(stderr, "{message}");
    code
}
