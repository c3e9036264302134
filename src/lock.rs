//! The per-stage lock: two stackctl processes never change one stage at once.
//!
//! An OS file lock (`flock`) on `$XDG_RUNTIME_DIR/stackctl/<project>-<stage>.lock`, or
//! `/tmp/stackctl-<uid>/<project>-<stage>.lock` without `XDG_RUNTIME_DIR`. It is keyed by
//! the engine-side names (project and stage), so two checkouts of one project driving one
//! stage also exclude each other. The kernel drops the lock when the process ends, even when
//! it is killed, so a crash never leaves a stale lock behind.
//!
//! `/tmp` is shared with every local user, so the directory is not trusted blindly: it is
//! created 0700 whatever the umask, a directory there that another user owns or a symlink
//! in its place is refused, and lock files are opened without following symlinks.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::Failure;
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

/// Make sure `dir` is a directory of ours that nobody else can write to: create it 0700
/// (whatever the umask), or check the one that exists: not a symlink, a directory, owned by
/// this user; a group- or world-accessible one of ours is made 0700.
pub fn private_dir(dir: &Path) -> Result<(), Failure> {
    let refuse = |why: String| {
        Failure::new(format!("refusing lock directory `{}`: {why}", dir.display())).with_hint(
            "remove it (another user or program may have put it there), or set XDG_RUNTIME_DIR to a private directory",
        )
    };
    if let Some(parent) = dir.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Failure::new(format!(
                    "cannot create `{}`: {}",
                    parent.display(),
                    crate::error::io_reason(&e)
                ))
            })?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Failure::new(format!(
                "cannot create lock directory `{}`: {}",
                dir.display(),
                crate::error::io_reason(&e)
            )))
        }
    }
    // Whether just made or found: look at the entry itself, never through a symlink.
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(crate::error::io_reason(&e)))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symlink".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(refuse(format!(
            "it belongs to user {}, not to this user ({uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| refuse(crate::error::io_reason(&e)))?;
    }
    Ok(())
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
        private_dir(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| {
            let reason = if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symlink".to_string()
            } else {
                crate::error::io_reason(&e)
            };
            Failure::new(format!(
                "cannot open lock file `{}`: {reason}",
                path.display()
            ))
            .with_hint(format!(
                "remove `{}`; stackctl creates it again",
                path.display()
            ))
        })?;
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
            return Err(crate::error::Failure::new(format!(
                "another stackctl is still changing stage `{stage}` after {}s",
                timeout.as_secs()
            ))
            .with_hint("wait for it to finish, or raise --timeout")
            .into());
        }
        crate::interrupt::check()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r15_lock_dir_through_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let link = root.path().join("stackctl-0");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = private_dir(&link).unwrap_err();
        assert!(err.message.contains("it is a symlink"), "{}", err.message);
    }

    #[test]
    fn r15_lock_dir_that_is_a_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("stackctl-0");
        std::fs::write(&file, "").unwrap();
        let err = private_dir(&file).unwrap_err();
        assert!(err.message.contains("not a directory"), "{}", err.message);
    }

    #[test]
    fn r15_loose_lock_dir_of_ours_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("stackctl-0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
