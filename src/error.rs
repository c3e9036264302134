//! Errors that decide the exit code. Everything else is an `anyhow::Error` with context and
//! exits 1; `crate::run` prints the chain once.

use std::fmt;

/// Exit codes of stackctl (README: "Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INTERRUPTED: i32 = 130;
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

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UsageError {}

/// The operation was interrupted (Ctrl-C, SIGTERM). Exit code 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Exit with this code and print nothing more (a task's own exit code, already reported).
#[derive(Debug, thiserror::Error)]
#[error("exited with code {0}")]
pub struct ExitWith(pub i32);
