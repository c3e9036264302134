//! A second Docker engine reachable only over ssh, for tests/remote.rs: a `dockerd` in its
//! own network namespace (own data root, exec root, socket, vfs storage) and an `sshd` in
//! that namespace whose sessions get `DOCKER_HOST` pointing at that engine (`SetEnv`), root
//! logging in with a key generated here. `lab.sh` prepares and removes the network and the
//! files; the daemons are started here so they die with the test process (PR_SET_PDEATHSIG).
//!
//! One lab per test binary, named after the process id: started on first use, torn down at
//! exit (`atexit`), and labs left by test processes that are gone (killed) are swept at start.
#![allow(dead_code)]

// The benchmark harness includes both labs, so this file is a module of each.
#[allow(clippy::duplicate_mod)]
#[path = "daemon.rs"]
mod daemon;
use daemon::spawn_forever;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    /// The node's address on the lab bridge.
    pub address: String,
    /// `ssh://root@ADDRESS`
    pub url: String,
    /// `ssh://root@ADDRESS:2222`: an sshd that refuses socket forwarding
    /// (`AllowStreamLocalForwarding no`), so stackctl falls back to `docker system dial-stdio`.
    pub url_no_forward: String,
    /// `unix://…/docker.sock` of the node, for checks from the test side.
    pub socket: String,
    /// The ssh config stackctl's ssh uses (`STACKCTL_SSH_CONFIG`): key, known hosts.
    pub ssh_config: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lab.sh")
}

/// The shared lab, started on first use.
pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(start)
}

/// Labs whose test process is gone.
fn sweep_stale_labs() {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = name.strip_prefix("sclab-") {
            if pid.chars().all(|c| c.is_ascii_digit()) && !Path::new("/proc").join(pid).exists() {
                let _ = Command::new(script()).args(["down", pid]).status();
            }
        }
    }
}

extern "C" fn teardown() {
    let id = std::process::id().to_string();
    let _ = Command::new(script())
        .args(["down", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn start() -> Lab {
    sweep_stale_labs();
    let pid = std::process::id();
    let id = pid.to_string();
    // A /24 per test process; two labs at once only collide if their pids do modulo 200.
    let octet = 20 + pid % 200;
    let status = Command::new(script())
        .args(["up", &id, &octet.to_string()])
        .status()
        .expect("run tests/support/lab.sh");
    // SAFETY: registering a plain extern "C" function; it runs once at exit.
    unsafe {
        libc::atexit(teardown);
    }
    assert!(status.success(), "lab.sh up failed");
    let dir = PathBuf::from(format!("/tmp/stackctl-lab-{id}"));
    let address = format!("10.231.{octet}.2");
    let netns = format!("--net=/var/run/netns/sclab-{id}");
    let d = dir.display().to_string();
    spawn_forever(
        "nsenter",
        &[
            &netns,
            "dockerd",
            "--config-file",
            &format!("{d}/daemon.json"),
            "--data-root",
            &format!("{d}/data"),
            "--exec-root",
            &format!("{d}/exec"),
            "--pidfile",
            &format!("{d}/docker.pid"),
            "-H",
            &format!("unix://{d}/docker.sock"),
            "--cgroup-parent",
            &format!("/sclab-{id}"),
            "--storage-driver",
            "vfs",
        ],
        &dir.join("dockerd.log"),
    );
    spawn_forever(
        "nsenter",
        &[
            &netns,
            "/usr/sbin/sshd",
            "-f",
            &format!("{d}/sshd_config"),
            "-D",
            "-e",
        ],
        &dir.join("sshd.log"),
    );
    spawn_forever(
        "nsenter",
        &[
            &netns,
            "/usr/sbin/sshd",
            "-f",
            &format!("{d}/sshd_noforward_config"),
            "-D",
            "-e",
        ],
        &dir.join("sshd-noforward.log"),
    );
    let socket = format!("unix://{d}/docker.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new("docker")
            .args(["-H", &socket, "version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lab's dockerd did not answer within 60s: see {d}/dockerd.log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The busybox fixture, onto the node.
    let image = crate::support::busybox_image();
    let mut save = Command::new("docker")
        .args(["save", image])
        .env_remove("DOCKER_HOST")
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker save");
    let loaded = Command::new("docker")
        .args(["-H", &socket, "load", "-q"])
        .stdin(save.stdout.take().expect("save stdout"))
        .stdout(Stdio::null())
        .status()
        .expect("docker load");
    assert!(
        save.wait().is_ok_and(|s| s.success()),
        "docker save {image} failed"
    );
    assert!(loaded.success(), "loading {image} onto the lab failed");
    // sshd listens once it logged its line; wait until an ssh login works.
    let ssh_config = dir.join("ssh_config");
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ["22", "2222"] {
        loop {
            let ok = Command::new("ssh")
                .arg("-F")
                .arg(&ssh_config)
                .args(["-p", port, &format!("root@{address}"), "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the lab's sshd on port {port} did not let us in within 30s: see {d}/sshd*.log"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Lab {
        url: format!("ssh://root@{address}"),
        url_no_forward: format!("ssh://root@{address}:2222"),
        id,
        dir,
        address,
        socket,
        ssh_config,
    }
}

impl Lab {
    /// `docker` against the node (for checks and cleanup from the test side).
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run docker")
    }

    /// Remove everything of `project` on the node, and its stage locks.
    pub fn cleanup_project(&self, project: &str) {
        for filter in [
            format!("label=io.stackctl.project={project}"),
            format!("label=io.stackctl.lock.project={project}"),
        ] {
            let out = self.docker(&["ps", "-aq", "--filter", &filter]);
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                self.docker(&args);
            }
        }
        let filter = format!("label=io.stackctl.project={project}");
        for kind in ["volume", "network"] {
            let out = self.docker(&[kind, "ls", "-q", "--filter", &filter]);
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                self.docker(&[kind, "rm", name]);
            }
        }
        // Images built there carry their ownership under keys of their own.
        let filter = format!("label=io.stackctl.image.project={project}");
        let out = self.docker(&["images", "-q", "--filter", &filter]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            self.docker(&["rmi", "-f", id]);
        }
    }
}
