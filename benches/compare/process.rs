//! Running one command of a tool: wall time from spawn to exit, exit code, captured output,
//! and the child's own peak RSS (from `wait4`, so it is this child's, not a running maximum
//! over every child the harness has reaped).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What one command did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub elapsed: Duration,
    /// Exit code; 128 + signal when killed by a signal.
    pub code: i32,
    /// Peak resident set size of the child, in KiB.
    pub max_rss_kib: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The command's own words, for an error message.
    pub fn describe(&self) -> String {
        let stderr = tail(&self.stderr, 20);
        let stdout = tail(&self.stdout, 5);
        format!(
            "exit code {}\n--- stderr (last lines) ---\n{stderr}\n--- stdout (last lines) ---\n{stdout}",
            self.code
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs commands with their output in files under `scratch` (never pipes: a command that
/// writes a lot must not block on a full pipe while we wait for it).
pub struct Runner {
    scratch: PathBuf,
    pub verbose: bool,
}

impl Runner {
    pub fn new(scratch: &Path, verbose: bool) -> Runner {
        Runner {
            scratch: scratch.to_path_buf(),
            verbose,
        }
    }

    /// Run `command` to completion with stdin from `stdin` (or nothing), killing it after
    /// `timeout`.
    pub fn run(
        &self,
        command: &mut Command,
        stdin: Option<&Path>,
        timeout: Duration,
    ) -> Result<Outcome> {
        self.run_to(command, stdin, None, timeout)
    }

    /// `run`, with stdout written to `stdout` when given (then not read back: it may be
    /// large; `Outcome::stdout` is empty).
    pub fn run_to(
        &self,
        command: &mut Command,
        stdin: Option<&Path>,
        stdout_to: Option<&Path>,
        timeout: Duration,
    ) -> Result<Outcome> {
        let out_path = match stdout_to {
            Some(path) => path.to_path_buf(),
            None => self.scratch.join("stdout"),
        };
        let err_path = self.scratch.join("stderr");
        let stdout = File::create(&out_path).context("create stdout capture file")?;
        let stderr = File::create(&err_path).context("create stderr capture file")?;
        let stdin = match stdin {
            Some(path) => {
                Stdio::from(File::open(path).with_context(|| format!("open {}", path.display()))?)
            }
            None => Stdio::null(),
        };
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        let shown = format!("{command:?}");
        if self.verbose {
            eprintln!("    $ {shown}");
        }

        let start = Instant::now();
        let child = command.spawn().with_context(|| format!("start {shown}"))?;
        let pid = child.id() as libc::pid_t;
        // A watchdog kills a hung command; it is told when the command ended in time.
        let (done, finished) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: plain kill(2) on our own child, which has not been reaped yet
                // (the reaper is blocked in wait4 until it dies).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                true
            } else {
                false
            }
        });
        let (status, usage) = wait4(pid)?;
        let elapsed = start.elapsed();
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        // The child is reaped; dropping the handle neither waits nor kills.
        drop(child);

        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            -1
        };
        let outcome = Outcome {
            elapsed,
            code,
            max_rss_kib: usage.ru_maxrss,
            stdout: if stdout_to.is_some() {
                String::new()
            } else {
                std::fs::read_to_string(&out_path).unwrap_or_default()
            },
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        };
        if timed_out {
            bail!(
                "{shown} did not finish within {}s and was killed\n{}",
                timeout.as_secs(),
                outcome.describe()
            );
        }
        Ok(outcome)
    }
}

/// Reap `pid`, returning its wait status and resource usage.
fn wait4(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our child.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {err}");
        }
    }
}
