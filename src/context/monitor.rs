//! Context monitors: a small background process per build context that watches the
//! context's directories with inotify and counts changes, so a no-op `up` learns that
//! nothing changed without walking the context.
//!
//! Walking a context of 10 000 files costs 10 000 `stat` calls at every `up`; with a
//! monitor, `up` asks it for a *token* (an instance number and a count of the changes it
//! has seen) over a unix socket instead. The digest of the build inputs is remembered with
//! the token it was computed under: when the monitor answers with the same token, nothing
//! in the context changed since, and the digest stands (`digest::of_build`).
//!
//! Why the answer can be trusted:
//! - The token is asked for *before* the walk that computes a digest, so a change made
//!   during the walk moves the count past the remembered token: the next `up` walks again.
//! - The kernel queues an inotify event inside the system call that changes the file, so
//!   once a write has returned, its event is waiting. The monitor reads every waiting event
//!   before it answers.
//! - Whatever the monitor cannot follow ends it: a lost event (queue overflow), the root
//!   removed or moved, `.dockerignore` changed (it decides which directories are watched),
//!   too many directories. `up` then starts a new one and walks once.
//! - Directories `.dockerignore` leaves out are not watched (nothing in them is sent); every
//!   event in a watched directory counts, even for a file the rules leave out (a needless
//!   walk, never a missed change).
//! - Network and shared file systems (NFS, SMB, FUSE, 9p, virtiofs) do not report changes
//!   made elsewhere: no monitor is started there.
//!
//! The monitor exits after [`IDLE`] without a question, when its context is removed, when
//! another monitor already answers for it or holds the lock beside the socket (one monitor
//! per context, however many `up`s start one at once), or when asked to stop (`end`: `down`
//! and `purge` of the last stage building from the context). It is started by `up` detached from the
//! terminal (its own process group, no standard streams). `STACKCTL_CONTEXT_MONITOR=off`
//! turns monitors off (`on` forces them); by default they are on except when `CI` is set:
//! a CI job's checkout is new each time, so a monitor could never help it and would outlive
//! the job's step.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::{context_ignore, Dockerignore};

/// The environment variable that turns monitors on or off.
pub const ENV: &str = "STACKCTL_CONTEXT_MONITOR";

/// The hidden first argument that makes the binary a monitor.
const ARG: &str = "__monitor-context";

/// A monitor nobody asked for this long exits.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// More directories than this are not watched (the kernel's default watch limit is 8 192
/// on older systems; a context this large is better walked).
const MAX_DIRS: usize = 8_000;

/// How long a question may take before the asker walks instead.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// What a monitor answers: which monitor (a new one starts from a new instance number), and
/// how many changes it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub instance: u64,
    pub generation: u64,
}

impl Token {
    fn parse(text: &str) -> Option<Token> {
        let mut words = text.split_whitespace();
        let instance = words.next()?.parse().ok()?;
        let generation = words.next()?.parse().ok()?;
        Some(Token {
            instance,
            generation,
        })
    }
}

/// Whether monitors are used (module docs).
pub fn enabled() -> bool {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match set(ENV).as_deref() {
        Some("on" | "1" | "true") => true,
        Some("off" | "0" | "false") => false,
        _ => set("CI").is_none_or(|v| v == "false" || v == "0"),
    }
}

/// Where the monitor of the context `root` listens.
pub fn socket_path(root: &Path) -> Option<PathBuf> {
    Some(super::digest::cache_dir()?.join(format!("{}.sock", super::digest::key(root))))
}

/// The token of the monitor of `root`, starting one when none answers. `None` when
/// monitors are off, or none can be started or asked: then the context is walked.
pub fn token(root: &Path) -> Option<Token> {
    if !cfg!(target_os = "linux") || !enabled() {
        return None;
    }
    let path = socket_path(root)?;
    if let Some(token) = ask(&path) {
        return Some(token);
    }
    start(root)?;
    ask(&path)
}

/// Ask the monitor listening at `path` for its token.
pub fn ask(path: &Path) -> Option<Token> {
    let mut stream = UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    stream.write_all(b"token\n").ok()?;
    let mut answer = String::new();
    stream.take(128).read_to_string(&mut answer).ok()?;
    Token::parse(&answer)
}

/// Start a monitor of `root` and wait until it watches (it prints `ready`) or gives up.
fn start(root: &Path) -> Option<()> {
    let exe = std::env::current_exe().ok()?;
    let mut child = Command::new(exe)
        .arg(ARG)
        .arg(root)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C in the terminal does not reach it.
        .process_group(0)
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut line = String::new();
    // A monitor that cannot watch exits without a word: the read ends at EOF.
    let _ = BufReader::new(stdout).read_line(&mut line);
    // It keeps running alone; a monitor that already exited is reaped here.
    let _ = child.try_wait();
    (line.trim() == "ready").then_some(())
}

/// Run as a monitor when the command line asks for it (before anything else parses it):
/// returns the exit code then.
#[cfg(target_os = "linux")]
pub fn serve_if_asked() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(ARG)) {
        return None;
    }
    let root = PathBuf::from(args.next()?);
    let served = socket_path(&root)
        .ok_or_else(|| io::Error::other("no cache directory"))
        .and_then(|path| serve(&root, &path, IDLE, ready));
    Some(if served.is_ok() { 0 } else { 1 })
}

/// Watch `root` and answer questions on the socket `path` until idle for `idle`, or until
/// what is watched cannot be followed any more. Calls `ready` once it watches (or once it
/// finds another monitor answering there).
#[cfg(target_os = "linux")]
pub fn serve(
    root: &Path,
    path: &Path,
    idle: Duration,
    ready: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    if ask(path).is_some() {
        return ready();
    }
    if shared_file_system(root) {
        return Err(io::Error::other("a network or shared file system"));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // One monitor per context: the one holding the lock beside the socket. Another that
    // started at the same moment (parallel `up`s) leaves at once; its starter walks.
    let Some(_lock) = take_lock(&lock_path(path), root)? else {
        return ready();
    };
    let mut monitor = Monitor::new(root)?;
    let _ = fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let bound = fs::metadata(path)?.ino();
    listener.set_nonblocking(true)?;
    ready()?;
    let result = monitor.run(&listener, idle);
    // Removed only while it is still ours (a newer monitor may have taken the name).
    if fs::metadata(path).is_ok_and(|m| m.ino() == bound) {
        let _ = fs::remove_file(path);
    }
    result
}

/// The lock file beside a monitor's socket: held (`flock`) while the monitor runs, and
/// naming its process and context (`PID` and the root, one a line).
fn lock_path(socket: &Path) -> PathBuf {
    socket.with_extension("lock")
}

/// Take the lock at `path` and write this process and `root` into it; `None` when another
/// process holds it. The file is never removed: a new file under the name while the old
/// one is held would let two monitors run.
fn take_lock(path: &Path, root: &Path) -> io::Result<Option<fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Ok(None),
            _ => Err(err),
        };
    }
    file.set_len(0)?;
    write!(file, "{}\n{}\n", std::process::id(), root.display())?;
    Ok(Some(file))
}

/// A monitor that runs: its process and the context it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    pub root: PathBuf,
}

/// The monitor holding the lock at `path`, if one does.
fn holder(path: &Path) -> Option<Running> {
    let file = fs::File::open(path).ok()?;
    // SAFETY: flock on a descriptor this function owns (closing it releases the lock).
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None;
    }
    let mut text = String::new();
    (&file).take(8192).read_to_string(&mut text).ok()?;
    let (pid, root) = text.split_once('\n')?;
    Some(Running {
        pid: pid.trim().parse().ok()?,
        root: PathBuf::from(root.trim_end_matches('\n')),
    })
}

/// The monitors that run for this user, by context.
pub fn running() -> Vec<Running> {
    let Some(dir) = super::digest::cache_dir() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Running> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension() == Some(OsStr::new("lock")))
        .filter_map(|p| holder(&p))
        .collect();
    found.sort_by(|a, b| a.root.cmp(&b.root));
    found
}

/// How long `end` waits for a monitor to let go of its lock.
const END_TIMEOUT: Duration = Duration::from_secs(5);

/// End the monitor of `root`, if one runs: it is asked to stop over its socket and has
/// ended when this returns true (its lock is free).
pub fn end(root: &Path) -> bool {
    let Some(socket) = socket_path(root) else {
        return false;
    };
    let lock = lock_path(&socket);
    if holder(&lock).is_none() {
        return false;
    }
    if let Ok(mut stream) = UnixStream::connect(&socket) {
        let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
        let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
        let _ = stream.write_all(b"stop\n");
        let mut answer = String::new();
        let _ = stream.take(64).read_to_string(&mut answer);
    }
    let deadline = Instant::now() + END_TIMEOUT;
    while holder(&lock).is_some() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Say `ready` to the `up` that started this monitor, and let go of standard output.
#[cfg(target_os = "linux")]
fn ready() -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    // Standard output is the starter's pipe: point it at /dev/null so nothing holds it.
    let null = fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: dup2 on two open descriptors; fd 1 is replaced atomically.
    if unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True on file systems whose changes made elsewhere inotify does not see.
#[cfg(target_os = "linux")]
fn shared_file_system(root: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(root.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: statfs fills the zeroed struct for a NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return true;
    }
    const SHARED: [i64; 7] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x6573_5546, // FUSE
        0x0102_1997, // 9p
        0x6a65_6a63, // virtiofs
    ];
    #[allow(clippy::unnecessary_cast)]
    let kind = stat.f_type as i64;
    SHARED.contains(&kind)
}

/// The events that can change what a walk of the context sees.
#[cfg(target_os = "linux")]
fn watch_mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
}

#[cfg(target_os = "linux")]
struct Monitor {
    root: PathBuf,
    inotify: Inotify,
    /// Watched directory → its path relative to the root (`""`: the root).
    dirs: HashMap<WatchDescriptor, String>,
    ignore: Dockerignore,
    instance: u64,
    generation: u64,
    buffer: Vec<u8>,
}

/// What a question asked of the monitor.
#[cfg(target_os = "linux")]
enum Asked {
    Token,
    /// `purge` or `down` ends it (`end`).
    Stop,
}

/// Why the monitor stops following its context.
#[cfg(target_os = "linux")]
struct Lost;

#[cfg(target_os = "linux")]
impl Monitor {
    fn new(root: &Path) -> io::Result<Monitor> {
        let ignore = context_ignore(root).map_err(io::Error::other)?;
        let mut instance = [0u8; 8];
        getrandom::fill(&mut instance).map_err(|e| io::Error::other(e.to_string()))?;
        let mut monitor = Monitor {
            root: root.to_path_buf(),
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            ignore,
            instance: u64::from_le_bytes(instance),
            generation: 0,
            buffer: vec![0; 64 * 1024],
        };
        monitor
            .watch_tree("")
            .map_err(|Lost| io::Error::other("too many directories to watch"))?;
        Ok(monitor)
    }

    /// Watch `rel` and every directory under it the walk of the context descends into.
    fn watch_tree(&mut self, rel: &str) -> Result<(), Lost> {
        let mut pending = vec![rel.to_string()];
        while let Some(dir) = pending.pop() {
            let path = self.root.join(&dir);
            let wd = match self.inotify.watches().add(&path, watch_mask()) {
                Ok(wd) => wd,
                // Gone already (its parent's event counted it), or not a directory.
                Err(_) if dir.is_empty() => return Err(Lost),
                Err(_) => continue,
            };
            self.dirs.insert(wd, dir.clone());
            if self.dirs.len() > MAX_DIRS {
                return Err(Lost);
            }
            let Ok(entries) = fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                // The directory entry's own type: no stat, symbolic links not followed.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if !self.ignore.excluded(&child) || self.ignore.must_descend(&child) {
                    pending.push(child);
                }
            }
        }
        Ok(())
    }

    /// Read every waiting event; `Err` when the context can no longer be followed.
    fn drain(&mut self) -> Result<(), Lost> {
        loop {
            let mut buffer = std::mem::take(&mut self.buffer);
            let events: Vec<(WatchDescriptor, EventMask, Option<String>)> =
                match self.inotify.read_events(&mut buffer) {
                    Ok(events) => events
                        .map(|e| {
                            let name = e.name.map(|n| n.to_string_lossy().into_owned());
                            (e.wd, e.mask, name)
                        })
                        .collect(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Vec::new(),
                    Err(_) => {
                        self.buffer = buffer;
                        return Err(Lost);
                    }
                };
            self.buffer = buffer;
            if events.is_empty() {
                return Ok(());
            }
            for (wd, mask, name) in events {
                self.event(wd, mask, name)?;
            }
        }
    }

    fn event(
        &mut self,
        wd: WatchDescriptor,
        mask: EventMask,
        name: Option<String>,
    ) -> Result<(), Lost> {
        if mask.contains(EventMask::Q_OVERFLOW) {
            return Err(Lost);
        }
        let Some(dir) = self.dirs.get(&wd).cloned() else {
            return Ok(());
        };
        if mask.contains(EventMask::IGNORED) {
            // The directory is gone: its parent's event counted that.
            self.dirs.remove(&wd);
            return if dir.is_empty() { Err(Lost) } else { Ok(()) };
        }
        if dir.is_empty() && mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
            return Err(Lost);
        }
        self.generation += 1;
        let Some(name) = name else {
            return Ok(());
        };
        if dir.is_empty() && name == ".dockerignore" {
            return Err(Lost);
        }
        if mask.contains(EventMask::ISDIR)
            && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
        {
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if !self.ignore.excluded(&rel) || self.ignore.must_descend(&rel) {
                self.watch_tree(&rel)?;
            }
        }
        Ok(())
    }

    /// Answer questions and follow events until idle or lost.
    fn run(&mut self, listener: &UnixListener, idle: Duration) -> io::Result<()> {
        let mut asked = Instant::now();
        loop {
            let left = idle.saturating_sub(asked.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.inotify.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            // SAFETY: poll on two valid descriptors in a stack array of the right length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if fds[0].revents != 0 && self.drain().is_err() {
                return Ok(());
            }
            if fds[1].revents != 0 {
                loop {
                    let stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    // Every event queued before the question is counted in the answer.
                    if self.drain().is_err() {
                        return Ok(());
                    }
                    asked = Instant::now();
                    if let Ok(Asked::Stop) = self.answer(stream) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn answer(&self, mut stream: UnixStream) -> io::Result<Asked> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        let mut line = String::new();
        BufReader::new((&stream).take(64)).read_line(&mut line)?;
        match line.trim() {
            "token" => writeln!(stream, "{} {}", self.instance, self.generation)?,
            "stop" => {
                writeln!(stream, "stopping")?;
                return Ok(Asked::Stop);
            }
            _ => {}
        }
        Ok(Asked::Token)
    }
}

#[cfg(target_os = "linux")]
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    /// A monitor of `root` on a thread, answering at `socket`; returns once it watches.
    fn running(root: &Path, socket: &Path, idle: Duration) -> JoinHandle<io::Result<()>> {
        let (tx, rx) = mpsc::channel();
        let (root, socket) = (root.to_path_buf(), socket.to_path_buf());
        let handle = std::thread::spawn(move || {
            serve(&root, &socket, idle, move || {
                let _ = tx.send(());
                Ok(())
            })
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the monitor is ready");
        handle
    }

    /// Waits until the monitor's thread ends (it must, by itself).
    fn ended(handle: JoinHandle<io::Result<()>>) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "the monitor did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().expect("no panic")
    }

    #[test]
    fn the_token_moves_with_every_change_the_context_walk_could_see_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
        fs::write(root.join(".dockerignore"), "node_modules\n").unwrap();
        fs::write(root.join("src/app.py"), "print(1)\n").unwrap();
        let socket = dir.path().join("m.sock");
        let monitor = running(&root, &socket, IDLE);
        let token = || ask(&socket).expect("the monitor answers");

        let first = token();
        assert_eq!(token(), first, "nothing changed: the same token");
        // Reading does not count.
        fs::read(root.join("src/app.py")).unwrap();
        assert_eq!(token(), first);
        // A directory `.dockerignore` leaves out is not watched.
        fs::write(root.join("node_modules/pkg/index.js"), "x").unwrap();
        assert_eq!(token(), first, "a change in an ignored directory");

        // An edit, seen as soon as the write returned.
        fs::write(root.join("src/app.py"), "print(2)\n").unwrap();
        let edited = token();
        assert_eq!(edited.instance, first.instance);
        assert!(edited.generation > first.generation);
        // A mode change.
        let mut perms = fs::metadata(root.join("src/app.py")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(root.join("src/app.py"), perms).unwrap();
        let chmodded = token();
        assert!(chmodded.generation > edited.generation);
        // A new directory is watched from then on.
        fs::create_dir_all(root.join("src/new/deeper")).unwrap();
        let created = token();
        assert!(created.generation > chmodded.generation);
        fs::write(root.join("src/new/deeper/x.py"), "x").unwrap();
        let nested = token();
        assert!(
            nested.generation > created.generation,
            "a write in a new directory"
        );
        // A rename counts too.
        fs::rename(root.join("src/new/deeper/x.py"), root.join("src/y.py")).unwrap();
        assert!(token().generation > nested.generation);

        // `.dockerignore` decides what is watched: a change ends the monitor.
        fs::write(root.join(".dockerignore"), "").unwrap();
        ended(monitor).unwrap();
        assert!(ask(&socket).is_none(), "nobody answers any more");
        assert!(!socket.exists(), "the socket is removed");
    }

    #[test]
    fn the_monitor_stops_when_its_context_is_removed_or_nobody_asks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        fs::create_dir_all(root.join("a/b")).unwrap();
        let socket = dir.path().join("m.sock");
        let monitor = running(&root, &socket, IDLE);
        assert!(ask(&socket).is_some());
        fs::remove_dir_all(&root).unwrap();
        ended(monitor).unwrap();
        assert!(!socket.exists());

        // Idle: no question for the idle time ends it.
        fs::create_dir_all(&root).unwrap();
        let started = Instant::now();
        let monitor = running(&root, &socket, Duration::from_millis(300));
        ended(monitor).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!socket.exists());
    }

    #[test]
    fn reliability9_a_monitor_that_loses_the_lock_exits_at_once_even_with_its_socket_gone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        fs::create_dir_all(&root).unwrap();
        let socket = dir.path().join("m.sock");
        let first = running(&root, &socket, IDLE);
        assert_eq!(
            holder(&lock_path(&socket)).map(|r| (r.pid, r.root)),
            Some((std::process::id(), root.clone()))
        );
        // The socket unlinked under it (what a racing start did before): the second cannot
        // ask the first, but the lock says it runs, and the second ends at once.
        fs::remove_file(&socket).unwrap();
        let second = running(&root, &socket, IDLE);
        ended(second).unwrap();
        assert!(!socket.exists(), "the loser bound a socket");
        fs::remove_dir_all(&root).unwrap();
        ended(first).unwrap();
        assert_eq!(holder(&lock_path(&socket)), None);
    }

    #[test]
    fn a_monitor_asked_to_stop_ends_and_frees_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        fs::create_dir_all(&root).unwrap();
        let socket = dir.path().join("m.sock");
        let monitor = running(&root, &socket, IDLE);
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.write_all(b"stop\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer.trim(), "stopping");
        ended(monitor).unwrap();
        assert!(!socket.exists());
        assert_eq!(holder(&lock_path(&socket)), None);
    }

    #[test]
    fn a_second_monitor_of_the_same_context_leaves_it_to_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        fs::create_dir_all(&root).unwrap();
        let socket = dir.path().join("m.sock");
        let first = running(&root, &socket, IDLE);
        let token = ask(&socket).unwrap();
        // The second says ready and returns at once: the first still answers.
        let second = running(&root, &socket, IDLE);
        ended(second).unwrap();
        assert_eq!(ask(&socket), Some(token));
        fs::remove_dir_all(&root).unwrap();
        ended(first).unwrap();
    }
}
