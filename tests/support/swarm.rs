//! A three-node Docker Swarm for tests/swarm.rs: three `dockerd` in network namespaces on a
//! lab bridge (own data root, exec root, socket, vfs storage, and a config file naming the
//! bridge's registry as insecure), node 1 initialises the swarm and the two others join it as
//! workers; Debian's `docker-registry` (basic auth) listens on the bridge address, port 5000,
//! so every node pulls from it. `swarm.sh` prepares and removes the network and the files;
//! the daemons and the registry are started here so they die with the test process
//! (PR_SET_PDEATHSIG).
//!
//! One swarm per test binary, named after the process id: started on first use, torn down at
//! exit (`atexit`); swarms left by test processes that are gone (killed) are swept at start.
#![allow(dead_code)]

// The benchmark harness includes both labs, so this file is a module of each.
#[allow(clippy::duplicate_mod)]
#[path = "daemon.rs"]
mod daemon;
use daemon::spawn_forever;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const USER: &str = "swarmuser";
/// A password that shows up nowhere unless something prints it.
pub const PASSWORD: &str = "Pw-5d1e0b7c-never-printed";

pub struct Node {
    /// The node's address on the lab bridge.
    pub address: String,
    /// `unix://…/docker.sock` of the node.
    pub socket: String,
    /// The node's swarm ID.
    pub id: String,
}

pub struct Swarm {
    pub id: String,
    pub dir: PathBuf,
    /// Node 1 is the manager; 2 and 3 are workers.
    pub nodes: Vec<Node>,
    /// `ADDRESS:5000` of the registry on the bridge.
    pub registry: String,
    /// A docker config directory logged in to the registry (`DOCKER_CONFIG`).
    pub docker_config: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/swarm.sh")
}

/// The shared swarm, started on first use.
pub fn swarm() -> &'static Swarm {
    static SWARM: OnceLock<Swarm> = OnceLock::new();
    SWARM.get_or_init(|| {
        crate::support::machine_ready();
        start()
    })
}

/// Swarms whose test process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("stackctl-swarm-") {
            if pid.chars().all(|c| c.is_ascii_digit()) && !Path::new("/proc").join(pid).exists() {
                let _ = Command::new(script()).args(["down", pid]).status();
            }
        }
    }
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(rest) = name.strip_prefix("swl-") {
            let pid = rest.split('-').next().unwrap_or("");
            if !pid.is_empty()
                && pid.chars().all(|c| c.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
            {
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

fn docker_at(socket: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(socket)
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run docker")
}

fn docker_ok_at(socket: &str, args: &[&str]) -> String {
    let out = docker_at(socket, args);
    assert!(
        out.status.success(),
        "docker -H {socket} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn start() -> Swarm {
    sweep_stale();
    let pid = std::process::id();
    let id = pid.to_string();
    // A /24 per test process; two swarms at once only collide if their pids do modulo 200.
    let octet = 20 + pid % 200;
    let net = format!("10.232.{octet}");
    let status = Command::new(script())
        .args(["up", &id, &octet.to_string()])
        .status()
        .expect("run tests/support/swarm.sh");
    // SAFETY: registering a plain extern "C" function; it runs once at exit.
    unsafe {
        libc::atexit(teardown);
    }
    assert!(status.success(), "swarm.sh up failed");
    let dir = PathBuf::from(format!("/tmp/stackctl-swarm-{id}"));
    let registry = format!("{net}.1:5000");
    start_registry(&dir, &registry);
    let mut sockets = Vec::new();
    for n in 1..=3 {
        let d = dir.join(n.to_string()).display().to_string();
        spawn_forever(
            "nsenter",
            &[
                &format!("--net=/var/run/netns/swl-{id}-{n}"),
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
                &format!("/swl-{id}-{n}"),
                "--storage-driver",
                "vfs",
            ],
            &dir.join(format!("{n}/dockerd.log")),
        );
        sockets.push(format!("unix://{d}/docker.sock"));
    }
    for socket in &sockets {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_at(socket, &["version", "--format", "{{.Server.Version}}"])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "a swarm node did not answer within 60s: see {}/N/dockerd.log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The busybox fixture, onto every node (test images are built FROM it).
    let image = crate::support::busybox_image();
    for socket in &sockets {
        load_image(image, socket);
    }
    let manager = &sockets[0];
    docker_ok_at(
        manager,
        &["swarm", "init", "--advertise-addr", &format!("{net}.2")],
    );
    let token = docker_ok_at(manager, &["swarm", "join-token", "-q", "worker"]);
    for (i, socket) in sockets.iter().enumerate().skip(1) {
        docker_ok_at(
            socket,
            &[
                "swarm",
                "join",
                "--advertise-addr",
                &format!("{net}.{}", i + 2),
                "--token",
                &token,
                &format!("{net}.2:2377"),
            ],
        );
    }
    let nodes: Vec<Node> = sockets
        .iter()
        .enumerate()
        .map(|(i, socket)| Node {
            address: format!("{net}.{}", i + 2),
            socket: socket.clone(),
            id: docker_ok_at(socket, &["info", "--format", "{{.Swarm.NodeID}}"]),
        })
        .collect();
    // Every node ready in the manager's eyes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = docker_ok_at(manager, &["node", "ls", "--format", "{{.Status}}"]);
        if out.lines().filter(|l| *l == "Ready").count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the swarm's nodes were not all ready within 60s: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let docker_config = dir.join("docker-config");
    std::fs::create_dir_all(&docker_config).expect("docker config dir");
    let mut login = Command::new("docker")
        .args([
            "-H",
            manager,
            "login",
            "-u",
            USER,
            "--password-stdin",
            &registry,
        ])
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONFIG", &docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker login");
    login
        .stdin
        .take()
        .expect("stdin")
        .write_all(PASSWORD.as_bytes())
        .expect("write password");
    let out = login.wait_with_output().expect("docker login");
    assert!(
        out.status.success(),
        "docker login {registry}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Swarm {
        id,
        dir,
        nodes,
        registry,
        docker_config,
    }
}

fn load_image(image: &str, socket: &str) {
    let mut save = Command::new("docker")
        .args(["save", image])
        .env_remove("DOCKER_HOST")
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker save");
    let loaded = Command::new("docker")
        .args(["-H", socket, "load", "-q"])
        .stdin(save.stdout.take().expect("save stdout"))
        .stdout(Stdio::null())
        .status()
        .expect("docker load");
    assert!(
        save.wait().is_ok_and(|s| s.success()),
        "docker save {image} failed"
    );
    assert!(loaded.success(), "loading {image} onto {socket} failed");
}

/// Debian's docker-registry on the bridge address with htpasswd auth; storage in the lab dir.
fn start_registry(dir: &Path, host: &str) {
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .expect("run htpasswd (apt-get install apache2-utils)");
    assert!(htpasswd.status.success(), "htpasswd failed");
    std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");
    std::fs::create_dir_all(dir.join("registry")).expect("registry dir");
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: stackctl-swarm\n    path: {htpasswd}\n",
        data = dir.join("registry").display(),
        htpasswd = dir.join("htpasswd").display(),
    );
    std::fs::write(dir.join("registry.yml"), config).expect("write registry config");
    let pid = spawn_forever(
        "docker-registry",
        &["serve", &dir.join("registry.yml").display().to_string()],
        &dir.join("registry.log"),
    );
    std::fs::write(dir.join("registry.pid"), pid.to_string()).expect("registry pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(host).is_err() {
        assert!(
            Instant::now() < deadline,
            "the swarm's registry on {host} did not listen within 20s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Swarm {
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// `docker` against the manager.
    pub fn docker(&self, args: &[&str]) -> Output {
        docker_at(&self.manager().socket, args)
    }

    /// `docker` against the manager; stdout, asserting success.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        docker_ok_at(&self.manager().socket, args)
    }

    /// `docker` against node `n` (0-based).
    pub fn docker_on(&self, n: usize, args: &[&str]) -> Output {
        docker_at(&self.nodes[n].socket, args)
    }

    /// Build a tiny image from a Dockerfile on the manager and push it to the lab registry
    /// as `REGISTRY/NAME:TAG`; returns the reference.
    pub fn push_image(&self, name: &str, tag: &str, dockerfile: &str) -> String {
        let reference = format!("{}/{name}:{tag}", self.registry);
        let mut build = Command::new("docker")
            .args([
                "-H",
                &self.manager().socket,
                "build",
                "-q",
                "-t",
                &reference,
                "-",
            ])
            .env_remove("DOCKER_HOST")
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build");
        build
            .stdin
            .take()
            .expect("stdin")
            .write_all(dockerfile.as_bytes())
            .expect("write Dockerfile");
        let out = build.wait_with_output().expect("docker build");
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("docker")
            .args(["-H", &self.manager().socket, "push", &reference])
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", &self.docker_config)
            .output()
            .expect("docker push");
        assert!(
            out.status.success(),
            "docker push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }

    /// Everything on the swarm labelled with `project`: services, tasks' containers on
    /// every node, networks, secrets, configs, volumes on every node.
    pub fn labelled(&self, project: &str) -> Vec<String> {
        let filter = format!("label=io.stackctl.project={project}");
        let mut found = Vec::new();
        for kind in ["service", "secret", "config"] {
            let out = self.docker(&[kind, "ls", "-q", "--filter", &filter]);
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                found.push(format!("{kind} {id}"));
            }
        }
        for n in 0..self.nodes.len() {
            for args in [
                vec!["ps", "-aq", "--filter", &filter],
                vec!["network", "ls", "-q", "--filter", &filter],
                vec!["volume", "ls", "-q", "--filter", &filter],
            ] {
                let out = self.docker_on(n, &args);
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    found.push(format!("node {} {} {id}", n + 1, args[0]));
                }
            }
        }
        found
    }

    /// Remove everything of `project` on the swarm (services first, then the rest).
    pub fn cleanup_project(&self, project: &str) {
        let filter = format!("label=io.stackctl.project={project}");
        for kind in ["service", "secret", "config"] {
            let out = self.docker(&[kind, "ls", "-q", "--filter", &filter]);
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let mut args = vec![kind, "rm"];
                args.extend(ids.iter().map(String::as_str));
                self.docker(&args);
            }
        }
        for n in 0..self.nodes.len() {
            let out = self.docker_on(n, &["ps", "-aq", "--filter", &filter]);
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                self.docker_on(n, &["rm", "-f", "-v", id]);
            }
        }
        for n in 0..self.nodes.len() {
            for kind in ["network", "volume"] {
                let out = self.docker_on(n, &[kind, "ls", "-q", "--filter", &filter]);
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    self.docker_on(n, &[kind, "rm", id]);
                }
            }
        }
    }
}
