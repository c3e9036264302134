//! The per-stage lock: two stackctl processes never change one stage at once, on this
//! machine or on two machines driving one engine.
//!
//! Two locks, taken in this order: a file lock on this machine (cheap, below), then a lock
//! kept on the engine itself (`crate::engine::lease`): a container created and never started,
//! whose labels name the holder (host, pid, command, start time) and whose lease the holder
//! renews every third of `STACKCTL_LOCK_LEASE` (default 30 s) while it holds the lock. A
//! holder that died stops renewing; another stackctl that sees the lease unchanged for a
//! whole lease (measured on its own clock, so clocks of different machines need not agree)
//! takes it over. `stackctl lock status|release` shows or removes it.
//!
//! The file lock: an OS file lock (`flock`) on `$XDG_RUNTIME_DIR/stackctl/<project>-<stage>.lock`, or
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

use crate::engine::lease::{Claim, Holder, LockAttempt};
use crate::engine::Engine;
use crate::error::Failure;
use crate::output::Printer;

/// Held while the stage is being changed; released on drop (both locks).
#[derive(Debug)]
pub struct StageLock {
    // Dropped first: the engine lock is released before the file lock. None on an engine
    // of this machine, which only this machine's processes reach: the file lock is enough.
    _engine: Option<EngineLock>,
    _file: File,
    pub path: PathBuf,
}

/// The engine-side lock this process holds, renewed in the background.
struct EngineLock {
    engine: Engine,
    id: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EngineLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EngineLock({} on {})", self.id, self.engine.address)
    }
}

impl Drop for EngineLock {
    fn drop(&mut self) {
        self.renewer.abort();
        let engine = self.engine.clone();
        let id = self.id.clone();
        let release = async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), engine.remove_lock(&id)).await;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(|| handle.block_on(release));
            } else {
                handle.spawn(release);
            }
        }
    }
}

/// The lease of an engine lock: `STACKCTL_LOCK_LEASE` seconds, or 30.
pub fn lease() -> Duration {
    std::env::var("STACKCTL_LOCK_LEASE")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| (2..=3600).contains(&s))
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

/// This machine's name in lock labels: `STACKCTL_HOSTNAME`, else the host name.
pub fn host_name() -> String {
    if let Some(name) = std::env::var("STACKCTL_HOSTNAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return name.trim().to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if ok && !name.is_empty() {
        name
    } else {
        "unknown-host".to_string()
    }
}

/// The subcommands of stackctl, to name the one this process runs in a lock's holder (a test
/// of `commands` keeps the list equal to the command line's).
pub const SUBCOMMANDS: [&str; 26] = [
    "init",
    "config",
    "build",
    "up",
    "watch",
    "pull",
    "push",
    "restart",
    "stop",
    "start",
    "down",
    "purge",
    "rollback",
    "exec",
    "run",
    "logs",
    "ps",
    "top",
    "cp",
    "use",
    "ls",
    "version",
    "data",
    "lock",
    "completions",
    "man",
];

/// `stackctl SUBCOMMAND` of this process (no arguments: they may hold secrets).
fn command_name() -> String {
    let sub = std::env::args()
        .skip(1)
        .find(|a| SUBCOMMANDS.contains(&a.as_str()))
        .unwrap_or_default();
    format!("stackctl {sub}").trim_end().to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `HH:MM:SS UTC` of a Unix time, for "since".
pub fn clock(secs: u64) -> String {
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

/// Where the lock file of a stage lives.
pub fn lock_path(project: &str, stage: &str) -> PathBuf {
    runtime_dir().join(format!("{project}-{stage}.lock"))
}

/// stackctl's private directory for lock files and ssh control sockets:
/// `$XDG_RUNTIME_DIR/stackctl`, else `/tmp/stackctl-<uid>` (checked by `private_dir`).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("stackctl"),
        None => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("stackctl-{uid}"))
        }
    }
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

/// Take the stage's locks (this machine's, then the engine's), waiting up to `timeout` in
/// all for another stackctl to finish.
pub async fn acquire(
    engine: &Engine,
    project: &str,
    stage: &str,
    timeout: Duration,
    printer: &Printer,
) -> Result<StageLock> {
    let start = Instant::now();
    let (file, path) = acquire_file(project, stage, timeout, printer).await?;
    let left = timeout.saturating_sub(start.elapsed());
    let engine_lock = if engine.is_remote() {
        Some(acquire_engine(engine, project, stage, left, timeout, printer).await?)
    } else {
        None
    };
    Ok(StageLock {
        _engine: engine_lock,
        _file: file,
        path,
    })
}

/// The lock kept on the engine: take it, wait for its holder, or take over an expired lease.
async fn acquire_engine(
    engine: &Engine,
    project: &str,
    stage: &str,
    timeout: Duration,
    asked: Duration,
    printer: &Printer,
) -> Result<EngineLock> {
    let lease = lease();
    let claim = Claim {
        host: host_name(),
        pid: std::process::id(),
        command: command_name(),
        since: now_secs(),
        lease_ms: lease.as_millis() as u64,
        machine: machine_id(),
    };
    let start = Instant::now();
    // The holder and lease counter last seen, and since when (our clock).
    let mut seen: Option<(String, Option<String>, Instant)> = None;
    let mut told: Option<String> = None;
    loop {
        let holder = match engine.try_lock(project, stage, &claim).await? {
            LockAttempt::Taken(id) => {
                // The guard exists before anything else can fail: the lock is never left
                // behind by an error here. The renewer writes its first lease at once.
                let renewer = tokio::spawn(renew(
                    engine.clone(),
                    id.clone(),
                    lease,
                    stage.to_string(),
                    printer.clone(),
                ));
                return Ok(EngineLock {
                    engine: engine.clone(),
                    id,
                    renewer,
                });
            }
            LockAttempt::Gone => {
                // Released between our create and our look: try again (not in a busy loop).
                crate::interrupt::check()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            LockAttempt::Held(holder) => holder,
        };
        let counter = engine.lock_lease(&holder.id).await?;
        let expired = holder_died_here(&holder, &claim)
            || match &seen {
                Some((id, last, at)) if *id == holder.id && *last == counter => {
                    at.elapsed() >= Duration::from_millis(holder.lease_ms.max(1000))
                }
                _ => {
                    seen = Some((holder.id.clone(), counter, Instant::now()));
                    false
                }
            };
        if expired {
            let why = if holder_died_here(&holder, &claim) {
                "that process is gone"
            } else {
                "its lease expired"
            };
            printer.status(&format!(
                "taking over the lock on stage `{stage}` from {}: {why}",
                holder.describe()
            ));
            engine.remove_lock(&holder.id).await?;
            seen = None;
            continue;
        }
        if told.as_deref() != Some(holder.id.as_str()) {
            printer.status(&format!(
                "waiting for {} that holds stage `{stage}` on {} since {}…",
                holder.describe(),
                engine.address,
                clock(holder.since)
            ));
            told = Some(holder.id.clone());
        }
        if start.elapsed() >= timeout {
            return Err(held_too_long(&holder, stage, engine, asked).into());
        }
        crate::interrupt::check()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A digest of `/etc/machine-id`: tells this machine from another of the same host name.
fn machine_id() -> String {
    use sha2::Digest;
    match std::fs::read_to_string("/etc/machine-id") {
        Ok(id) if !id.trim().is_empty() => sha2::Sha256::digest(id.trim().as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect(),
        _ => String::new(),
    }
}

/// The holder ran on this very machine (same host name and machine id) and its process is
/// gone: no need to wait for its lease.
fn holder_died_here(holder: &Holder, claim: &Claim) -> bool {
    if holder.host != claim.host || holder.machine.is_empty() || holder.machine != claim.machine {
        return false;
    }
    if holder.pid == 0 {
        return false;
    }
    // A pid reused by another process only makes us wait for the lease: the safe side.
    !Path::new(&format!("/proc/{}", holder.pid)).exists()
}

fn held_too_long(holder: &Holder, stage: &str, engine: &Engine, asked: Duration) -> Failure {
    Failure::new(format!(
        "stage `{stage}` is still locked by {} on {} (since {}) after {}s",
        holder.describe(),
        engine.address,
        clock(holder.since),
        asked.as_secs()
    ))
    .with_hint(
        "wait for it to finish, raise --timeout, or `stackctl lock release` if that process is gone",
    )
}

/// What a renewal writes: a counter (what waiters compare) and this machine's time in
/// milliseconds (what `lock status` shows).
fn lease_text(counter: u64) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{counter} {ms}")
}

/// Rewrite the lease counter every third of the lease until aborted.
async fn renew(engine: Engine, id: String, lease: Duration, stage: String, printer: Printer) {
    let mut counter: u64 = 0;
    loop {
        if counter > 0 {
            tokio::time::sleep(lease / 3).await;
        }
        counter += 1;
        match engine.renew_lock(&id, &lease_text(counter)).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                printer.warn(&format!(
                    "the lock on stage `{stage}` was released or taken over by another stackctl (`stackctl lock release`?)"
                ));
                return;
            }
            // A slow engine: try again at the next turn; the lease covers two misses.
            Err(_) => {}
        }
    }
}

/// Whether a stackctl on this machine holds the stage's file lock now.
pub fn local_holder(project: &str, stage: &str) -> bool {
    let path = lock_path(project, stage);
    let Ok(file) = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// This machine's file lock.
async fn acquire_file(
    project: &str,
    stage: &str,
    timeout: Duration,
    printer: &Printer,
) -> Result<(File, PathBuf)> {
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
            Ok(()) => return Ok((file, path)),
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
