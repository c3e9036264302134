//! Errors that decide the exit code or carry a hint. Everything else is an `anyhow::Error`
//! with context and exits 1. `crate::report` prints every error once, in one place: the
//! chain of messages on one `error:` line, then the hint on a `hint:` line, with the
//! stage's secrets masked.

use std::fmt;

/// Exit codes of stackctl (docs/src/exit-codes.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INTERRUPTED: i32 = 130;
    /// Our stdout was closed by its reader (`stackctl exec dump | head`): what a shell
    /// reports for a process killed by SIGPIPE (128 + 13).
    pub const BROKEN_PIPE: i32 = 141;
}

/// Bad usage: a wrong argument, an unknown service or task name. Exit code 2.
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    pub hint: Option<String>,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
            hint: None,
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The message only: the hint is a field, printed on its own line by the reporter.
impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// An operation that failed (exit code 1), with what the user can do about it.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The one way an error is written: `error: LOCATION: MESSAGE` (or `error: MESSAGE`), then
/// each hint on a `hint:` line, indented by `indent` (a problem of a stack file indents it
/// under its line). Each line ends in a newline.
pub fn render(
    location: Option<&dyn fmt::Display>,
    message: &str,
    hints: &[String],
    indent: &str,
) -> String {
    let mut out = match location {
        Some(location) => format!("error: {location}: {message}\n"),
        None => format!("error: {message}\n"),
    };
    for hint in hints {
        out.push_str(&format!("{indent}hint: {hint}\n"));
    }
    out
}

/// An operating system error in words, without Rust's `(os error N)` suffix.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// An error that says what the user can do about it. The reporter (`crate::report`)
/// prints the hint on its own `hint:` line; the message itself never carries it.
pub trait Hint {
    fn hint(&self) -> Option<String>;
}

impl Hint for UsageError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

impl Hint for Failure {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

/// Several failures of parallel work (builds, services); the reporter prints each one with
/// its own `error:` and `hint:` lines. Exit code 1.
#[derive(Debug)]
pub struct Several(pub Vec<anyhow::Error>);

impl fmt::Display for Several {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{err:#}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Several {}

/// The operation was interrupted (Ctrl-C, SIGTERM). Exit code 130, printed quietly: the user
/// asked for it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Exit with this code after printing `error: MESSAGE` (a step of a sequence that failed with
/// its own code).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FailedWith {
    pub code: i32,
    pub message: String,
}

/// Exit with this code and print nothing more (a task's own exit code, already reported).
#[derive(Debug, thiserror::Error)]
#[error("exited with code {0}")]
pub struct ExitWith(pub i32);
