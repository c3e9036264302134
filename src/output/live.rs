//! Live lines on a terminal: one row per object, in a stable order (by kind, then name),
//! redrawn in place while work goes on. Every row is a whole line ending in a newline,
//! never padded to the terminal's width, so the screen and a transcript of it (`script`)
//! read the same. An object that comes back (a service created, then waited on for health)
//! keeps its row: `service dev-shop--db: created, healthy (2.1s)`. Rows that are done
//! scroll off the top when there are more rows than the terminal has lines.

use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(120);

/// The rows of one command's progress, shared by its lines and the spinner's thread.
pub(crate) struct Board {
    state: Mutex<State>,
}

struct State {
    rows: Vec<Row>,
    /// Rows on screen below everything else, where the cursor comes back to redraw.
    drawn: usize,
    color: bool,
    tick: usize,
    finished: bool,
}

struct Row {
    kind: String,
    object: String,
    /// What happened to the object so far (`created`, `healthy`).
    done: Vec<String>,
    reason: Option<String>,
    started: Instant,
    now: Now,
}

enum Now {
    /// Working on a step, with a timer shown when `timer`.
    Active {
        step: String,
        since: Instant,
        timer: bool,
    },
    Done {
        elapsed: Duration,
    },
    Failed {
        action: String,
    },
}

/// Order of kinds on the board: what is built or created first comes first.
fn rank(kind: &str) -> usize {
    ["image", "network", "volume", "data", "service", "task"]
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(6)
}

impl Board {
    pub(crate) fn new(color: bool) -> Arc<Board> {
        let board = Arc::new(Board {
            state: Mutex::new(State {
                rows: Vec::new(),
                drawn: 0,
                color,
                tick: 0,
                finished: false,
            }),
        });
        let weak: Weak<Board> = Arc::downgrade(&board);
        std::thread::spawn(move || loop {
            std::thread::sleep(TICK);
            let Some(board) = weak.upgrade() else { return };
            let Ok(mut state) = board.state.lock() else {
                return;
            };
            if state.finished {
                return;
            }
            if state
                .rows
                .iter()
                .any(|r| matches!(r.now, Now::Active { .. }))
            {
                state.tick += 1;
                state.draw(None);
            }
        });
        board
    }

    fn with(&self, change: impl FnOnce(&mut State)) {
        if let Ok(mut state) = self.state.lock() {
            if !state.finished {
                change(&mut state);
            }
        }
    }

    /// The object's row starts (or restarts) a step.
    pub(crate) fn step(&self, kind: &str, object: &str, step: &str, timer: bool) {
        self.with(|state| {
            let row = state.row(kind, object);
            row.now = Now::Active {
                step: step.to_string(),
                since: Instant::now(),
                timer,
            };
            state.draw(None);
        });
    }

    /// Replace the text of the step in progress (a build's current line).
    pub(crate) fn detail(&self, kind: &str, object: &str, text: &str) {
        self.with(|state| {
            let row = state.row(kind, object);
            if let Now::Active { step, .. } = &mut row.now {
                *step = text.to_string();
            }
            state.draw(None);
        });
    }

    pub(crate) fn done(&self, kind: &str, object: &str, action: &str, reason: Option<&str>) {
        self.with(|state| {
            let row = state.row(kind, object);
            row.done.push(action.to_string());
            if let Some(reason) = reason {
                row.reason = Some(reason.to_string());
            }
            row.now = Now::Done {
                elapsed: row.started.elapsed(),
            };
            state.draw(None);
        });
    }

    pub(crate) fn fail(&self, kind: &str, object: &str, action: &str) {
        self.with(|state| {
            let row = state.row(kind, object);
            row.now = Now::Failed {
                action: action.to_string(),
            };
            state.draw(None);
        });
    }

    /// A step that leaves no record (a wait that is over): the row goes back to what it
    /// was, or away when nothing has happened to the object yet.
    pub(crate) fn clear(&self, kind: &str, object: &str) {
        self.with(|state| {
            if let Some(at) = state.find(kind, object) {
                if state.rows[at].done.is_empty() {
                    state.rows.remove(at);
                } else {
                    let row = &mut state.rows[at];
                    row.now = Now::Done {
                        elapsed: row.started.elapsed(),
                    };
                }
            }
            state.draw(None);
        });
    }

    /// A message above the rows.
    pub(crate) fn message(&self, text: &str) {
        let printed = self
            .state
            .lock()
            .map(|mut state| {
                if state.finished {
                    false
                } else {
                    state.draw(Some(text));
                    true
                }
            })
            .unwrap_or(false);
        if !printed {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    }

    /// The last frame: every row stays on screen as it is, nothing is redrawn after.
    pub(crate) fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            if !state.finished {
                state.draw(None);
                state.drawn = 0;
                state.rows.clear();
                state.finished = true;
            }
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.finish();
    }
}

impl State {
    fn find(&self, kind: &str, object: &str) -> Option<usize> {
        self.rows
            .iter()
            .position(|r| r.kind == kind && r.object == object)
    }

    /// The object's row, made in its place in the order when it has none yet.
    fn row(&mut self, kind: &str, object: &str) -> &mut Row {
        let at = match self.find(kind, object) {
            Some(at) => at,
            None => {
                let key = (rank(kind), object);
                let at = self
                    .rows
                    .iter()
                    .position(|r| (rank(&r.kind), r.object.as_str()) > key)
                    .unwrap_or(self.rows.len());
                self.rows.insert(
                    at,
                    Row {
                        kind: kind.to_string(),
                        object: object.to_string(),
                        done: Vec::new(),
                        reason: None,
                        started: Instant::now(),
                        now: Now::Active {
                            step: String::new(),
                            since: Instant::now(),
                            timer: false,
                        },
                    },
                );
                at
            }
        };
        &mut self.rows[at]
    }

    /// Go back over the rows drawn last time, print `message` (if any), then every row.
    fn draw(&mut self, message: Option<&str>) {
        let (height, width) = crate::tty::stderr_size().unwrap_or((24, 80));
        let (height, width) = (height as usize, width as usize);
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        out.push_str("\r\x1b[J");
        if let Some(message) = message {
            out.push_str(message);
            out.push('\n');
        }
        // Rows that are done leave the board from the top once it outgrows the screen.
        let room = height.saturating_sub(2).max(1);
        while self.rows.len() > room && !matches!(self.rows[0].now, Now::Active { .. }) {
            let row = self.rows.remove(0);
            out.push_str(&row.text(self.tick, self.color, width));
            out.push('\n');
        }
        for row in &self.rows {
            out.push_str(&row.text(self.tick, self.color, width));
            out.push('\n');
        }
        self.drawn = self.rows.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

impl Row {
    /// The row as one line, cut to fit the terminal (never padded).
    fn text(&self, tick: usize, color: bool, width: usize) -> String {
        let paint = |code: &str, mark: &str| {
            if color {
                format!("\x1b[{code}m{mark}\x1b[0m")
            } else {
                mark.to_string()
            }
        };
        let so_far = self.done.join(", ");
        let (mark, detail) = match &self.now {
            Now::Active { step, since, timer } => {
                let mut text = so_far.clone();
                if !step.is_empty() {
                    if !text.is_empty() {
                        text.push_str(", ");
                    }
                    text.push_str(step);
                }
                if *timer {
                    text.push_str(&format!(" {}s", since.elapsed().as_secs()));
                }
                (SPINNER[tick % SPINNER.len()].to_string(), text)
            }
            Now::Done { elapsed } => {
                let reason = self
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                (
                    paint("32", "✔"),
                    format!("{so_far}{reason} ({:.1}s)", elapsed.as_secs_f64()),
                )
            }
            Now::Failed { action } => {
                let mut text = so_far.clone();
                if !text.is_empty() {
                    text.push_str(", ");
                }
                text.push_str(&format!("{action} failed"));
                (paint("31", "✘"), text)
            }
        };
        let detail = detail.replace(['\n', '\r'], " ");
        let plain = format!("{} {}: {}", self.kind, self.object, detail);
        // One column stays free: a line exactly as wide as the terminal wraps on some.
        let fit: String = plain
            .chars()
            .take(width.saturating_sub(3).max(10))
            .collect();
        format!("{mark} {}", fit.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, object: &str, done: &[&str], now: Now) -> Row {
        Row {
            kind: kind.into(),
            object: object.into(),
            done: done.iter().map(|d| d.to_string()).collect(),
            reason: None,
            started: Instant::now(),
            now,
        }
    }

    #[test]
    fn defect8_a_row_is_cut_to_the_terminal_never_padded() {
        let long = row(
            "service",
            "dev-a-very-long-project-name--api",
            &[],
            Now::Active {
                step: "waiting for `db` to be healthy".into(),
                since: Instant::now(),
                timer: false,
            },
        );
        let text = long.text(0, false, 40);
        assert!(text.chars().count() <= 40, "{text}");
        assert!(!text.ends_with(' '));
        let short = row(
            "network",
            "dev-a_default",
            &["created"],
            Now::Done {
                elapsed: Duration::from_millis(100),
            },
        );
        assert_eq!(
            short.text(0, false, 80),
            "✔ network dev-a_default: created (0.1s)"
        );
    }

    #[test]
    fn defect8_an_object_keeps_one_row_in_kind_then_name_order() {
        let mut state = State {
            rows: Vec::new(),
            drawn: 0,
            color: false,
            tick: 0,
            finished: false,
        };
        for (kind, object) in [
            ("service", "web"),
            ("network", "net"),
            ("service", "db"),
            ("image", "img"),
            ("service", "web"),
        ] {
            state.row(kind, object);
        }
        let order: Vec<&str> = state.rows.iter().map(|r| r.object.as_str()).collect();
        assert_eq!(order, ["img", "net", "db", "web"]);
    }
}
