//! The one place that decides what reaches the user and how: live lines on a terminal
//! (`live`), plain lines off a terminal or under `CI`, JSON events with `--json`.
//!
//! stdout carries data (`config`, `ps`, task output, JSON events); progress and messages go
//! to stderr so they never mix into what a script captures.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

mod live;

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
    /// Why (a plan's reason, an error message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Counts by action, on the final summary event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<&'a std::collections::BTreeMap<String, usize>>,
}

/// What the command line asks of the output: JSON events (`--json`), only errors
/// (`--quiet`), more detail (`--verbose`, counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
}

#[derive(Debug, Clone)]
pub struct Printer {
    pub mode: Mode,
    pub quiet: bool,
    pub verbose: u8,
    pub color: bool,
    pub stage: String,
}

/// Values that must never be printed (the stage's secrets), longest first. Process-wide:
/// registered once the stack's variables are known, used by every message printed.
static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Register values to mask in every message from now on (secret values of the stage).
/// Values shorter than four characters are not masked: they would mask ordinary words.
pub fn register_secrets(values: impl IntoIterator<Item = String>) {
    let Ok(mut secrets) = SECRETS.write() else {
        return;
    };
    secrets.extend(values.into_iter().filter(|v| v.len() >= 4));
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
}

/// Replace every registered secret value in `text` by `****`.
pub fn mask(text: &str) -> String {
    let Ok(secrets) = SECRETS.read() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "****");
        }
    }
    out
}

impl Printer {
    pub fn new(global: Settings, stage: &str) -> Self {
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
            verbose: global.verbose,
            color,
            stage: stage.to_string(),
        }
    }

    /// Register values to mask in every message (secret values of the stage).
    pub fn add_secrets(&mut self, values: impl IntoIterator<Item = String>) {
        register_secrets(values);
    }

    /// Replace registered secret values in `text`.
    pub fn mask(&self, text: &str) -> String {
        mask(text)
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
                    reason: None,
                    counts: None,
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

    /// A warning with what to do about it on a `hint:` line.
    pub fn warn_with_hint(&self, message: &str, hint: &str) {
        self.warn(message);
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "hint: {}", self.mask(hint));
        }
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

/// Live progress of one command over many objects: one line per object on a terminal
/// (`live::Board`), plain lines off a terminal, JSON events with `--json`.
#[derive(Clone)]
pub struct Progress {
    printer: Printer,
    board: Option<std::sync::Arc<live::Board>>,
    started: std::time::Instant,
    counts: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
}

/// One object's line.
pub struct Line {
    progress: Progress,
    kind: String,
    object: String,
    board: Option<std::sync::Arc<live::Board>>,
    started: std::time::Instant,
    finished: bool,
}

impl Printer {
    /// Start reporting progress over several objects.
    pub fn progress(&self) -> Progress {
        let board = (self.mode == Mode::Live && !self.quiet).then(|| live::Board::new(self.color));
        Progress {
            printer: self.clone(),
            board,
            started: std::time::Instant::now(),
            counts: Default::default(),
        }
    }

    /// Print a JSON event with all its fields (`--json` only).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn json_event(
        &self,
        object: &str,
        kind: &str,
        action: &str,
        status: &str,
        elapsed_ms: u128,
        reason: Option<&str>,
        counts: Option<&std::collections::BTreeMap<String, usize>>,
    ) {
        let event = Event {
            ts: now_ms(),
            stage: &self.stage,
            object,
            kind,
            action,
            status,
            elapsed_ms,
            reason,
            counts,
        };
        let line = serde_json::to_string(&event).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.mask(&line));
    }
}

impl Progress {
    pub fn printer(&self) -> &Printer {
        &self.printer
    }

    /// A line for one object (`service`, `dev-app--api`).
    pub fn line(&self, kind: &str, object: &str) -> Line {
        if let Some(board) = &self.board {
            board.step(kind, object, "", false);
        }
        Line {
            progress: self.clone(),
            kind: kind.to_string(),
            object: object.to_string(),
            board: self.board.clone(),
            started: std::time::Instant::now(),
            finished: false,
        }
    }

    /// A message above the live lines (or a plain line on stderr).
    pub fn message(&self, text: &str) {
        if self.printer.quiet || self.printer.mode == Mode::Json {
            return;
        }
        match &self.board {
            Some(board) => board.message(&self.printer.mask(text)),
            None => self.printer.status(text),
        }
    }

    /// A warning above the live lines (or on stderr), with an optional hint line.
    pub fn warn(&self, message: &str, hint: Option<&str>) {
        if self.printer.quiet {
            return;
        }
        let mut text = format!("warning: {message}");
        if let Some(hint) = hint {
            text.push_str(&format!("\nhint: {hint}"));
        }
        match &self.board {
            Some(board) => board.message(&self.printer.mask(&text)),
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", self.printer.mask(&text));
            }
        }
    }

    /// A record of one object that needs no work (no live line).
    pub fn unchanged(&self, kind: &str, object: &str, reason: &str) {
        self.count("unchanged");
        match self.printer.mode {
            Mode::Json => {
                self.printer
                    .json_event(object, kind, "unchanged", "done", 0, Some(reason), None)
            }
            _ if self.printer.verbose_unchanged() => {
                self.message(&format!("{kind} {object}: unchanged ({reason})"))
            }
            _ => {}
        }
    }

    /// One lifecycle hook of a service's container (`action`: `pre_start`, `post_start`,
    /// `pre_stop`; `what`: `1/2 (task migrate)`; `status`: `started`, `done`, `failed`): a
    /// line above the live lines (or on stderr), or a JSON event. Only the end of a hook is
    /// printed as text; JSON gets its start too.
    pub fn hook_event(
        &self,
        container: &str,
        action: &str,
        what: &str,
        status: &str,
        elapsed_ms: u128,
    ) {
        match self.printer.mode {
            Mode::Json => self.printer.json_event(
                container,
                "service",
                action,
                status,
                elapsed_ms,
                Some(what),
                None,
            ),
            _ if status == "started" => {}
            _ => self.message(&format!(
                "service {container}: {action} {what} {status} ({:.1}s)",
                elapsed_ms as f64 / 1000.0
            )),
        }
    }

    fn count(&self, action: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(action.to_string()).or_default() += 1;
        }
    }

    /// The final summary: one line, or a `summary` JSON event.
    pub fn summary(&self, command: &str, ok: bool) {
        let elapsed = self.started.elapsed().as_millis();
        let counts = self.counts.lock().map(|c| c.clone()).unwrap_or_default();
        let status = if ok { "done" } else { "failed" };
        // The rows stay as they are; the summary goes below them.
        if let Some(board) = &self.board {
            board.finish();
        }
        match self.printer.mode {
            Mode::Json => self.printer.json_event(
                &self.printer.stage,
                "summary",
                command,
                status,
                elapsed,
                None,
                Some(&counts),
            ),
            _ => {
                if !ok {
                    return;
                }
                let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
                let detail = if parts.is_empty() {
                    "nothing to do".to_string()
                } else {
                    parts.join(", ")
                };
                self.message(&format!(
                    "{command} `{}`: {detail} in {:.1}s",
                    self.printer.stage,
                    elapsed as f64 / 1000.0
                ));
            }
        }
    }
}

impl Line {
    /// The object enters a step (`creating`, `starting`, `waiting for health`).
    pub fn step(&self, action: &str) {
        match (&self.board, self.progress.printer.mode) {
            (Some(board), _) => board.step(&self.kind, &self.object, action, false),
            (None, Mode::Json) => self.progress.printer.json_event(
                &self.object,
                &self.kind,
                action,
                "started",
                self.started.elapsed().as_millis(),
                None,
                None,
            ),
            (None, _) => self
                .progress
                .printer
                .status(&format!("{} {}: {action}", self.kind, self.object)),
        }
    }

    /// A step with an elapsed-time counter on the live line (`waiting for health 3s`).
    pub fn waiting(&self, action: &str) {
        match &self.board {
            Some(board) => board.step(&self.kind, &self.object, action, true),
            None => self.step(action),
        }
    }

    /// Output of a long step (a build's lines): only shown on the live line.
    pub fn detail(&self, text: &str) {
        if let Some(board) = &self.board {
            board.detail(
                &self.kind,
                &self.object,
                &self.progress.printer.mask(text.trim()),
            );
        }
    }

    /// The object is done: `action` is what happened (`created`, `recreated`, `started`).
    pub fn done(mut self, action: &str, reason: Option<&str>) {
        self.finished = true;
        self.progress.count(action);
        let elapsed = self.started.elapsed().as_millis();
        let reason_text = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        match (&self.board, self.progress.printer.mode) {
            (Some(board), _) => {
                let reason = reason.map(|r| self.progress.printer.mask(r));
                board.done(&self.kind, &self.object, action, reason.as_deref());
            }
            (None, Mode::Json) => self.progress.printer.json_event(
                &self.object,
                &self.kind,
                action,
                "done",
                elapsed,
                reason,
                None,
            ),
            (None, _) => self.progress.printer.status(&format!(
                "{} {}: {action}{reason_text} ({:.1}s)",
                self.kind,
                self.object,
                elapsed as f64 / 1000.0
            )),
        }
    }

    /// End the step without recording anything (a wait that is over).
    pub fn clear(mut self) {
        self.finished = true;
        if let Some(board) = &self.board {
            board.clear(&self.kind, &self.object);
        }
    }

    /// The object failed; the error itself is reported by the caller.
    pub fn fail(mut self, action: &str, message: &str) {
        self.finished = true;
        self.progress.count("failed");
        let elapsed = self.started.elapsed().as_millis();
        let first = message.lines().next().unwrap_or("");
        match (&self.board, self.progress.printer.mode) {
            (Some(board), _) => board.fail(&self.kind, &self.object, action),
            (None, Mode::Json) => self.progress.printer.json_event(
                &self.object,
                &self.kind,
                action,
                "failed",
                elapsed,
                Some(first),
                None,
            ),
            (None, _) => self
                .progress
                .printer
                .status(&format!("{} {}: {action} failed", self.kind, self.object)),
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(board) = &self.board {
                board.clear(&self.kind, &self.object);
            }
        }
    }
}

/// Colour a `service | ` prefix for `logs` (one of six colours by index), unless colour is off.
pub fn log_prefix(printer: &Printer, name: &str, width: usize, index: usize) -> String {
    let padded = format!("{name:<width$} | ");
    if !printer.color_stdout() {
        return padded;
    }
    const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];
    format!("\x1b[{}m{padded}\x1b[0m", COLOURS[index % COLOURS.len()])
}

impl Printer {
    /// Colour on stdout (for `logs`): a terminal and no `NO_COLOR`.
    pub fn color_stdout(&self) -> bool {
        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    }

    /// Plain mode shows unchanged objects only with `-v`.
    fn verbose_unchanged(&self) -> bool {
        self.verbose > 0
    }
}

impl Printer {
    /// One planned action as a JSON event (`up --dry-run --json`), status `planned`.
    pub fn plan_event(&self, object: &str, kind: &str, action: &str, reason: &str) {
        self.json_event(object, kind, action, "planned", 0, Some(reason), None);
    }
}

impl Line {
    /// True on a terminal (a live line to update as often as there is news).
    pub fn is_live(&self) -> bool {
        self.board.is_some()
    }

    /// Bytes moved by a pull or push: on the live line (`pulling 3.1 MB / 12.0 MB`), or a
    /// `progress` JSON event whose reason is `DONE/TOTAL bytes` (the caller throttles them).
    /// Nothing off a terminal: the start and done lines say enough.
    pub fn transfer(&self, action: &str, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        match (&self.board, self.progress.printer.mode) {
            (Some(board), _) => board.detail(
                &self.kind,
                &self.object,
                &format!("{action} {} / {}", human_bytes(done), human_bytes(total)),
            ),
            (None, Mode::Json) => self.progress.printer.json_event(
                &self.object,
                &self.kind,
                action,
                "progress",
                self.started.elapsed().as_millis(),
                Some(&format!("{done}/{total} bytes")),
                None,
            ),
            (None, _) => {}
        }
    }
}

/// A byte count as people read it (`512 B`, `3.4 MB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
