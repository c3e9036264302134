//! A real registry for the tests: Debian's `docker-registry` (Docker Distribution, the
//! program of `registry:2`) on a free loopback port, with htpasswd (bcrypt) basic auth and
//! its storage in a temporary directory. One lab per test binary; the registry dies with the
//! test process (PR_SET_PDEATHSIG), so none is ever left running.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{docker, docker_ok};

pub const USER: &str = "stackuser";
/// A password that shows up nowhere unless something prints it.
pub const PASSWORD: &str = "Pw-7f3c9a1e-never-printed";

pub struct Lab {
    /// `127.0.0.1:PORT`
    pub host: String,
    /// Holds the registry's storage and config; kept for the whole test run.
    _dir: PathBuf,
}

/// The shared registry, started on first use.
pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        crate::support::machine_ready();
        start()
    })
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Storage of labs whose test process is gone (a static is never dropped, so each run
/// removes what earlier runs left).
fn remove_stale_labs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("stackctl-registry-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn start() -> Lab {
    remove_stale_labs();
    let dir = std::env::temp_dir().join(format!("stackctl-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).expect("registry dir");
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .expect("run htpasswd (apt-get install apache2-utils)");
    assert!(htpasswd.status.success(), "htpasswd failed");
    std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: stackctl-test\n    path: {htpasswd}\n",
        data = dir.join("data").display(),
        htpasswd = dir.join("htpasswd").display(),
    );
    std::fs::write(dir.join("config.yml"), config).expect("write registry config");
    spawn_registry(&dir.join("config.yml"));
    wait_ready(&host);
    Lab { host, _dir: dir }
}

/// Start the registry from a thread that lives as long as the process: PR_SET_PDEATHSIG
/// fires when the spawning *thread* ends, and test threads end early.
fn spawn_registry(config: &Path) {
    let config = config.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let _ = tx.send(());
        let _child = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("registry thread");
}

/// Poll `GET /v2/` until the registry answers (401: auth is on), with a deadline.
fn wait_ready(host: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = http_status(host, "/v2/", None) {
            assert!(status == 401 || status == 200, "registry answered {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "registry on {host} did not answer in 20s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The HTTP status of a GET, or None when nothing answers.
fn http_status(host: &str, path: &str, auth: Option<&str>) -> Option<u16> {
    let (status, _) = http_get(host, path, auth)?;
    Some(status)
}

/// GET over plain HTTP/1.0; returns the status and the body.
fn http_get(host: &str, path: &str, auth: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Base64 of `user:password` (what `auths.*.auth` holds and basic auth sends).
pub fn basic(user: &str, password: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Lab {
    /// The tags the registry holds for a repository (`GET /v2/NAME/tags/list`).
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let auth = basic(USER, PASSWORD);
        let Some((200, body)) = http_get(
            &self.host,
            &format!("/v2/{repository}/tags/list"),
            Some(&auth),
        ) else {
            return Vec::new();
        };
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        value["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Push the busybox fixture as `HOST/REPOSITORY:TAG` with the docker CLI (logged in
    /// through a throwaway config), then remove the local tag: the image now exists only in
    /// the registry (busybox itself stays).
    pub fn seed(&self, repository: &str, tag: &str) -> String {
        self.seed_from(crate::support::busybox_image(), repository, tag)
    }

    /// `seed` with another local image as the source.
    pub fn seed_from(&self, source: &str, repository: &str, tag: &str) -> String {
        let reference = format!("{}/{repository}:{tag}", self.host);
        let config = tempfile::tempdir().expect("temp dir");
        let login = Command::new("docker")
            .env("DOCKER_CONFIG", config.path())
            .args(["login", "-u", USER, "--password-stdin", &self.host])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(PASSWORD.as_bytes())?;
                child.wait_with_output()
            })
            .expect("docker login");
        assert!(
            login.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&login.stderr)
        );
        docker_ok(&["tag", source, &reference]);
        let push = Command::new("docker")
            .env("DOCKER_CONFIG", config.path())
            .args(["push", &reference])
            .output()
            .expect("docker push");
        assert!(
            push.status.success(),
            "docker push: {}",
            String::from_utf8_lossy(&push.stderr)
        );
        docker_ok(&["rmi", &reference]);
        reference
    }
}

/// Removes, on drop, the image references a test pulled or tagged (only those).
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            docker(&["rmi", "-f", image]);
        }
    }
}

/// True when the engine has this reference.
pub fn image_present(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
