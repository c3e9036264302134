//! A login to an `ssh://` engine that hangs (here: a `ProxyCommand` that never speaks) is
//! bounded by `STACKCTL_SSH_TIMEOUT`, fails naming the host, and leaves nothing running:
//! neither ssh nor what it started, also when stackctl alone gets SIGINT while it waits.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::TestStack;

const HOST: &str = "stackctl-hang.invalid";

/// An ssh config whose ProxyCommand writes its pid to `pidfile`, says an SSH banner (past
/// ssh's own `ConnectTimeout`, which covers the banner) and then waits forever: the key
/// exchange never ends.
fn hanging_config(t: &TestStack, pidfile: &Path) -> std::path::PathBuf {
    let config = t.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host {HOST}\n  ProxyCommand sh -c 'echo $$ > {}; printf \"SSH-2.0-hang\\\\r\\\\n\"; exec sleep 300'\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n",
            pidfile.display()
        ),
    )
    .expect("write ssh config");
    config
}

/// The pid written in `pidfile`, once it is there.
fn wait_for_pid(pidfile: &Path, deadline: Instant) -> i32 {
    loop {
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the ProxyCommand never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is a live process (a zombie waiting for its reaper is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Whether `pid` ends within a few seconds (a SIGKILL takes effect a moment after it is
/// sent; a process nobody killed sleeps on for minutes).
fn ends(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Kill the ProxyCommand if the test fails with it alive.
struct Reap(Option<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(pid) = self.0.filter(|&pid| alive(pid)) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn a_hanging_ssh_login_fails_after_the_bound_naming_the_host_and_leaves_no_process() {
    let t = TestStack::new("sshhang");
    t.stack("services: {}\n");
    let pidfile = t.path("proxy.pid");
    let config = hanging_config(&t, &pidfile);
    let start = Instant::now();
    let out = t
        .cmd()
        .env("STACKCTL_SSH_CONFIG", &config)
        .env("STACKCTL_SSH_TIMEOUT", "1")
        .args(["-H", &format!("ssh://nobody@{HOST}"), "ps"])
        .output()
        .expect("run stackctl");
    let pid = wait_for_pid(&pidfile, Instant::now());
    let _reap = Reap(Some(pid));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "cannot reach the Docker engine at ssh://nobody@{HOST}: ssh to `{HOST}` did not log in within 1s"
        )),
        "{stderr}"
    );
    assert!(ends(pid), "the ProxyCommand outlived stackctl: {stderr}");
}

#[test]
fn sigint_to_stackctl_alone_while_ssh_logs_in_leaves_no_process() {
    let t = TestStack::new("sshint");
    t.stack("services: {}\n");
    let pidfile = t.path("proxy.pid");
    let config = hanging_config(&t, &pidfile);
    let mut child = t
        .std_cmd()
        .env("STACKCTL_SSH_CONFIG", &config)
        .env("STACKCTL_SSH_TIMEOUT", "60")
        .args(["-H", &format!("ssh://nobody@{HOST}"), "ps"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stackctl");
    let pid = wait_for_pid(&pidfile, Instant::now() + Duration::from_secs(30));
    let _reap = Reap(Some(pid));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(ends(pid), "the ProxyCommand outlived stackctl");
}
