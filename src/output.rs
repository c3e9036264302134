//! The one place that decides what reaches the user and how: live lines on a terminal
//! (indicatif), plain lines off a terminal or under `CI`, JSON events with `--json`.
//!
//! stdout carries data (`config`, `ps`, task output, JSON events); progress and messages go
//! to stderr so they never mix into what a script captures.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cli::GlobalArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A terminal: live lines.
    Live,
    /// Not a terminal, or `CI` set: one plain line per event.
    Plain,
    /// `--json`: one JSON object per line on stdout.
    Json,
}

/// One thing that happened to one object.
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    pub ts: u128,
    pub stage: &'a str,
    pub object: &'a str,
    pub kind: &'a str,
    pub action: &'a str,
    pub status: &'a str,
    pub elapsed_ms: u128,
}

#[derive(Debug, Clone)]
pub struct Printer {
    pub mode: Mode,
    pub quiet: bool,
    pub color: bool,
    pub stage: String,
    /// Values that must never be printed (secrets); replaced by `****`.
    secrets: Vec<String>,
}

impl Printer {
    pub fn new(global: &GlobalArgs, stage: &str) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        let mode = if global.json {
            Mode::Json
        } else if stderr_tty && !ci {
            Mode::Live
        } else {
            Mode::Plain
        };
        let color = stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer {
            mode,
            quiet: global.quiet,
            color,
            stage: stage.to_string(),
            secrets: Vec::new(),
        }
    }

    /// Register values to mask in every message (secret values of the stage).
    pub fn add_secrets(&mut self, values: impl IntoIterator<Item = String>) {
        self.secrets
            .extend(values.into_iter().filter(|v| v.len() >= 4));
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.secrets.dedup();
    }

    /// Replace registered secret values in `text`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "****");
            }
        }
        out
    }

    /// A status line about one object (`create container dev-app--api`), or its JSON event.
    pub fn event(&self, object: &str, kind: &str, action: &str, status: &str, elapsed_ms: u128) {
        match self.mode {
            Mode::Json => {
                let event = Event {
                    ts: now_ms(),
                    stage: &self.stage,
                    object,
                    kind,
                    action,
                    status,
                    elapsed_ms,
                };
                let line = serde_json::to_string(&event).unwrap_or_default();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", self.mask(&line));
            }
            _ if self.quiet => {}
            _ => {
                let line = if elapsed_ms > 0 {
                    format!(
                        "{kind} {object}: {action} {status} ({:.1}s)",
                        elapsed_ms as f64 / 1000.0
                    )
                } else {
                    format!("{kind} {object}: {action} {status}")
                };
                self.status(line.trim_end());
            }
        }
    }

    /// A progress or status message on stderr (silent with `--quiet` or `--json`).
    pub fn status(&self, message: &str) {
        if self.quiet || self.mode == Mode::Json {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", self.mask(message));
    }

    /// A warning on stderr (shown unless `--quiet`).
    pub fn warn(&self, message: &str) {
        if self.quiet {
            return;
        }
        let prefix = if self.color {
            "\x1b[33mwarning\x1b[0m"
        } else {
            "warning"
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{prefix}: {}", self.mask(message));
    }

    /// Data for stdout (what a script captures).
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }
}

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
