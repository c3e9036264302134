//! stackctl: drive Docker for small data-oriented services from per-stage stack files.
//!
//! The data flows file → model → plan → apply → engine: `stack` loads and validates a stack
//! file, `plan` decides what the stage should look like (pure), `apply` runs a plan through a
//! target, `engine` is the only module that talks to Docker, and `commands` holds one short
//! file per subcommand.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod complete;
pub mod context;
pub mod data;
pub mod engine;
pub mod error;
pub mod interrupt;
pub mod lock;
pub mod names;
pub mod observed;
pub mod output;
pub mod plan;
pub mod project;
pub mod registry;
pub mod stack;
pub mod tty;

use std::io::Write;

use clap::Parser;

use crate::error::{exit, ExitWith, Hint, Interrupted, UsageError};

/// Parse the command line, run the command, and return the process exit code.
pub fn run() -> i32 {
    // A Tab in a shell with dynamic completion: print the names and exit.
    complete::answer_if_asked();
    // Started by `up` to watch a build context (context::monitor).
    #[cfg(target_os = "linux")]
    if let Some(code) = context::monitor::serve_if_asked() {
        return code;
    }
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
    if cli.global.no_color {
        // Before any thread starts: every colour decision reads NO_COLOR.
        std::env::set_var("NO_COLOR", "1");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return report(&anyhow::Error::new(err).context("cannot start the async runtime"));
        }
    };
    let quiet = cli.global.quiet;
    let grace = commands::grace(&cli.command);
    let result = runtime.block_on(async {
        interrupt::install();
        tokio::select! {
            result = commands::dispatch(cli) => result,
            () = interrupt::grace_expired(grace) => {
                if !quiet && !grace.is_zero() {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "warning: stopped waiting {}s after the interrupt: the engine did not answer; \
                         what was in flight may be left over (`stackctl down` removes it)",
                        grace.as_secs()
                    );
                }
                Err(Interrupted.into())
            }
        }
    });
    // Do not wait for blocking stdin readers still parked in the runtime.
    runtime.shutdown_background();
    interrupt::kill_groups();
    match result {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// The one place that prints an error: pick its exit code, print it (unless the user asked
/// for it: an interrupt exits 130 quietly, a task's own exit code was already reported).
fn report(err: &anyhow::Error) -> i32 {
    if let Some(ExitWith(code)) = err.downcast_ref::<ExitWith>() {
        return *code;
    }
    let engine_interrupted = err
        .chain()
        .filter_map(|cause| cause.downcast_ref::<engine::EngineError>())
        .any(engine::EngineError::is_interrupted);
    if err.downcast_ref::<Interrupted>().is_some() || engine_interrupted {
        return exit::INTERRUPTED;
    }
    if let Some(failed) = err.downcast_ref::<error::FailedWith>() {
        print_error(err);
        return failed.code;
    }
    let code = if err.downcast_ref::<UsageError>().is_some()
        || err.downcast_ref::<stack::StackErrors>().is_some()
    {
        exit::USAGE
    } else {
        exit::FAILURE
    };
    print_error(err);
    code
}

/// Print an error on stderr: `error: ` and its chain of causes on one line, then `hint: `
/// lines, every secret value of the stage masked. For a command that goes on after an
/// error (a build that fails next to another) as for the final one.
pub fn print_error(err: &anyhow::Error) {
    // Mask first: a secret cut in two by the bound would no longer be found.
    let text = bound_lines(&output::mask(&render_error(err)));
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// The longest line an error prints, in characters: an offending value of megabytes is
/// quoted only in part.
const MAX_LINE: usize = 2000;

/// Control characters shown escaped (`\x1b`, `\x07`, `\u{9b}`): an error may quote what
/// came from outside (an archive's manifest, a file name, an image label, the engine's
/// words), and a terminal must not take those bytes as commands (a title, colours, a
/// cleared screen). A tab stays a tab, a newline separates lines.
fn escape_controls(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cut every line longer than `MAX_LINE`, saying how much was left out; control characters
/// escaped.
fn bound_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(64 * 1024));
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let body = escape_controls(body);
        let body = body.as_ref();
        let count = body.chars().count();
        if count > MAX_LINE {
            out.extend(body.chars().take(MAX_LINE));
            out.push_str(&format!("… ({} more characters)", count - MAX_LINE));
        } else {
            out.push_str(body);
        }
        out.push_str(end);
    }
    out
}

/// The text `print_error` prints (unmasked), each line ending in a newline.
pub fn render_error(err: &anyhow::Error) -> String {
    if let Some(errors) = err.downcast_ref::<stack::StackErrors>() {
        return errors.to_string();
    }
    if let Some(several) = err.downcast_ref::<error::Several>() {
        return several.0.iter().map(render_error).collect();
    }
    let mut message = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if cause.is_empty() || message.contains(&cause) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&cause);
    }
    error::render(None, &message, &hints(err), "")
}

/// The hints of an error: of each cause in its chain, and of a `Failure` or `UsageError`
/// given as context (`.context(Failure::new(…).with_hint(…))`), outermost first, each once.
fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut hints: Vec<String> = Vec::new();
    let mut push = |hint: Option<String>| {
        if let Some(hint) = hint {
            if !hints.contains(&hint) {
                hints.push(hint);
            }
        }
    };
    push(err.downcast_ref::<error::Failure>().and_then(Hint::hint));
    push(err.downcast_ref::<UsageError>().and_then(Hint::hint));
    for cause in err.chain() {
        push(hint_of(cause));
    }
    hints
}

/// The hint a cause says of itself, when its type is one that says one (`error::Hint`).
fn hint_of(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    fn said<T: Hint + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Option<String>> {
        cause.downcast_ref::<T>().map(T::hint)
    }
    said::<UsageError>(cause)
        .or_else(|| said::<error::Failure>(cause))
        .or_else(|| said::<registry::RegistryError>(cause))
        .or_else(|| said::<engine::Unreachable>(cause))
        .or_else(|| said::<engine::build::BuildError>(cause))
        .or_else(|| said::<engine::EngineError>(cause))
        .or_else(|| said::<engine::networks::NetworkError>(cause))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect10_an_interrupt_exits_130_whatever_carries_it() {
        let plain = anyhow::Error::from(Interrupted);
        assert_eq!(report(&plain), exit::INTERRUPTED);
        let call = anyhow::Error::from(engine::EngineError::interrupted("create container", "x"))
            .context("task `t`");
        assert_eq!(report(&call), exit::INTERRUPTED);
    }

    /// RELIABILITY 5: an error quoting an archive's manifest printed its escape sequences raw
    /// (a terminal title, colours).
    #[test]
    fn reliability5_control_characters_in_an_error_are_escaped() {
        let text =
            bound_lines("error: project `\u{1b}]0;PWNED\u{7}\u{1b}[31m\r\u{9b}x`\tok\nhint: h\n");
        assert_eq!(
            text,
            "error: project `\\x1b]0;PWNED\\x07\\x1b[31m\\x0d\\u{9b}x`\tok\nhint: h\n"
        );
    }

    #[test]
    fn r22_an_error_line_is_bounded() {
        let long = "x".repeat(MAX_LINE + 500);
        let text = bound_lines(&format!("error: value `{long}`\nhint: short\n"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with("… (515 more characters)"),
            "{}",
            lines[0]
        );
        assert!(lines[0].chars().count() < MAX_LINE + 40);
        assert_eq!(lines[1], "hint: short");
    }

    #[test]
    fn an_exhausted_address_pool_is_reported_with_its_hint() {
        let err = anyhow::Error::from(engine::networks::NetworkError::from(
            engine::EngineError::other(
                "create network",
                "dev-app_default",
                "could not find an available, non-overlapping IPv4 address pool",
            ),
        ))
        .context("up `dev`");
        let text = render_error(&err);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("error: up `dev`: create network `dev-app_default`"));
        assert!(lines[1].starts_with("hint: the engine has no address pool left"));
    }

    #[test]
    fn issue9_hints_are_fields_printed_on_their_own_line() {
        let err = anyhow::Error::from(
            crate::error::Failure::new("external network `x` does not exist")
                .with_hint("create it"),
        )
        .context("up `dev`");
        assert_eq!(
            render_error(&err),
            "error: up `dev`: external network `x` does not exist\nhint: create it\n"
        );
        let several = anyhow::Error::from(crate::error::Several(vec![
            UsageError::new("one").with_hint("fix one").into(),
            anyhow::anyhow!("two"),
        ]));
        assert_eq!(
            render_error(&several),
            "error: one\nhint: fix one\nerror: two\n"
        );
    }
}
