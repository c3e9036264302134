//! The per-stage lock: two stackctl processes never change one stage at once.
//!
//! An OS file lock (`flock`) on `$XDG_RUNTIME_DIR/stackctl/<project>-<stage>.lock`, or
//! `/tmp/stackctl-<uid>/<project>-<stage>.lock` without `XDG_RUNTIME_DIR`. It is keyed by
//! the engine-side names (project and stage), so two checkouts of one project driving one
//! stage also exclude each other. The kernel drops the lock when the process ends, even when
//! it is killed, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::output::Printer;

/// Held while the stage is being changed; released on drop.
#[derive(Debug)]
pub struct StageLock {
    _file: File,
    pub path: PathBuf,
}

/// Where the lock file of a stage lives.
pub fn lock_path(project: &str, stage: &str) -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("stackctl"),
        None => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("stackctl-{uid}"))
        }
    };
    dir.join(format!("{project}-{stage}.lock"))
}

/// Take the stage's lock, waiting up to `timeout` for another stackctl to finish.
pub async fn acquire(
    project: &str,
    stage: &str,
    timeout: Duration,
    printer: &Printer,
) -> Result<StageLock> {
    let path = lock_path(project, stage);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create lock directory `{}`", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open lock file `{}`", path.display()))?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StageLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("lock `{}`", path.display()))
            }
        }
        if !told {
            printer.status(&format!("waiting for another stackctl on stage `{stage}`…"));
            told = true;
        }
        if start.elapsed() >= timeout {
            anyhow::bail!(
                "another stackctl is still changing stage `{stage}` after {}s\nhint: wait for it to finish, or raise --timeout",
                timeout.as_secs()
            );
        }
        crate::interrupt::check()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
