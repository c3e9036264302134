//! Ctrl-C and SIGTERM for every long command. The first signal asks the work to stop
//! (`requested()` turns true and `wait()` resolves): no new work starts, in-flight calls
//! finish, one-off containers are removed, and the command exits 130. A second signal
//! exits at once with 130. A command that only reads (`ps`, `logs`, `config`) stops at once;
//! one that changes the stage gets a few seconds to finish the engine calls in flight, and
//! one that runs a one-off container a little longer to remove it (`grace`): an engine that
//! stopped answering never holds the user's terminal.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;

static COUNT: AtomicUsize = AtomicUsize::new(0);
static REQUESTED: AtomicBool = AtomicBool::new(false);
static CHANNEL: OnceLock<watch::Sender<bool>> = OnceLock::new();

fn channel() -> &'static watch::Sender<bool> {
    CHANNEL.get_or_init(|| watch::channel(false).0)
}

/// Process groups of helpers stackctl started (credential helpers): killed when it exits,
/// whatever the path, so nothing they started is left behind, reparented to init.
static GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Kill this process group when stackctl exits before it is forgotten.
pub fn register_group(group: i32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.push(group);
    }
}

/// The group ended on its own (or was killed): nothing to do for it at exit.
pub fn forget_group(group: i32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.retain(|&g| g != group);
    }
}

/// Processes stackctl started in its own process group (ssh, which may ask on the
/// terminal): killed with everything they started (a `ProxyCommand`) when stackctl exits.
static TREES: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Kill this process and its descendants when stackctl exits before it is forgotten.
pub fn register_tree(pid: i32) {
    if let Ok(mut trees) = TREES.lock() {
        trees.push(pid);
    }
}

/// The process was ended (`kill_tree`) or ended on its own.
pub fn forget_tree(pid: i32) {
    if let Ok(mut trees) = TREES.lock() {
        trees.retain(|&p| p != pid);
    }
}

/// Kill `pid` and every process descended from it (found by their parents in /proc),
/// the descendants first: killing the parent alone leaves them to init.
pub fn kill_tree(pid: i32) {
    let mut doomed = descendants(pid);
    doomed.reverse();
    doomed.push(pid);
    for process in doomed {
        // SAFETY: a signal to a process stackctl started, or one that process started.
        unsafe {
            libc::kill(process, libc::SIGKILL);
        }
    }
}

/// The processes descended from `pid`, parents before their children (Linux /proc; none
/// elsewhere).
fn descendants(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
            let after = stat.rsplit_once(')')?.1;
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(p, _)| *p),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// Kill every registered process group and tree (at exit).
pub fn kill_groups() {
    let groups = match GROUPS.lock() {
        Ok(mut groups) => std::mem::take(&mut *groups),
        Err(_) => return,
    };
    for group in groups {
        // SAFETY: a signal to a process group stackctl started and still owns.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    let trees = match TREES.lock() {
        Ok(mut trees) => std::mem::take(&mut *trees),
        Err(_) => return,
    };
    for pid in trees {
        kill_tree(pid);
    }
}

/// Start listening for SIGINT and SIGTERM. Call once, inside the runtime.
pub fn install() {
    let sender = channel();
    let _ = sender;
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if COUNT.fetch_add(1, Ordering::SeqCst) >= 1 {
                crate::tty::restore_now();
                kill_groups();
                eprintln!("interrupted again: exiting now");
                std::process::exit(crate::error::exit::INTERRUPTED);
            }
            REQUESTED.store(true, Ordering::SeqCst);
            // `send` stores nothing when no receiver exists yet; `send_replace` always does,
            // so a `wait()` that starts after the signal still sees it.
            channel().send_replace(true);
        }
    });
}

/// Resolves `grace` after the first interrupt.
pub async fn grace_expired(grace: Duration) {
    wait().await;
    tokio::time::sleep(grace).await;
}

/// True once the first interrupt arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Resolves when the first interrupt arrives (at once if it already has).
pub async fn wait() {
    let mut receiver = channel().subscribe();
    if requested() || *receiver.borrow() {
        return;
    }
    let _ = receiver.wait_for(|v| *v).await;
}

/// `Err(Interrupted)` once an interrupt arrived: call between steps of work.
pub fn check() -> Result<(), crate::error::Interrupted> {
    if requested() {
        Err(crate::error::Interrupted)
    } else {
        Ok(())
    }
}
