//! Support for the end-to-end tests of the reference systems (the starter and the
//! monolith): the offline base images, copying an example into a test project, free ports,
//! reading `.env.STAGE`, and a small HTTP client (curl) for the apps under test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const POSTGRES_BASE: &str = "stackctl-fixture/postgres:15";
pub const PYTHON_BASE: &str = "stackctl-fixture/python:3.11";
pub const REDIS_IMAGE: &str = "stackctl-fixture/redis:7";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build the offline base images once (the script skips tags that exist). It needs root:
/// run directly as root, through `sudo -n` otherwise.
pub fn base_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        crate::support::machine_ready();
        let script = repo().join("tests/fixtures/base-images.sh");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut cmd = if root {
            Command::new(&script)
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("-n").arg(&script);
            sudo
        };
        let output = cmd.output().expect("run tests/fixtures/base-images.sh");
        assert!(
            output.status.success(),
            "tests/fixtures/base-images.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// The environment that points the examples at the offline base images.
pub fn fixture_env() -> [(&'static str, &'static str); 3] {
    [
        ("POSTGRES_BASE", POSTGRES_BASE),
        ("PYTHON_BASE", PYTHON_BASE),
        ("REDIS_IMAGE", REDIS_IMAGE),
    ]
}

/// Copy a directory tree (files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create target dir");
    for entry in std::fs::read_dir(from).expect("read source dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A TCP port nobody listens on right now (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A value from an env file (`KEY=VALUE`, optionally quoted).
pub fn env_value(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).expect("read env file");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("{key} missing from {}", path.display()))
}

/// The host address the engine published a container port on (`127.0.0.1:49153`).
pub fn published(container: &str, port: u16) -> String {
    let out = super::support::docker_ok(&["port", container, &port.to_string()]);
    out.lines()
        .find(|l| l.starts_with("127.0.0.1:") || l.starts_with("0.0.0.0:"))
        .map(|l| l.replace("0.0.0.0:", "127.0.0.1:"))
        .unwrap_or_else(|| panic!("{container}: port {port} is not published: {out}"))
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines of the final response, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }
}

/// An HTTP request through curl.
pub struct Request {
    args: Vec<String>,
    url: String,
}

impl Request {
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    pub fn new(method: &str, url: &str) -> Request {
        Request {
            args: vec!["-X".into(), method.into()],
            url: url.into(),
        }
    }

    pub fn auth(mut self, user: &str, password: &str) -> Request {
        self.args.push("-u".into());
        self.args.push(format!("{user}:{password}"));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.args.push("-H".into());
        self.args.push(format!("{name}: {value}"));
        self
    }

    pub fn json(self, body: &serde_json::Value) -> Request {
        let mut request = self.header("Content-Type", "application/json");
        request.args.push("--data-binary".into());
        request.args.push(body.to_string());
        request
    }

    /// Send it; `None` when nothing answers (connection refused or reset).
    pub fn try_send(&self) -> Option<Response> {
        let dir = tempfile::tempdir().expect("temp dir");
        let headers = dir.path().join("headers");
        let body = dir.path().join("body");
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "15", "-D"])
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(&self.args)
            .arg(&self.url)
            .output()
            .expect("run curl");
        if !output.status.success() {
            return None;
        }
        let status: u16 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("curl status code");
        let raw = std::fs::read_to_string(&headers).unwrap_or_default();
        // Only the last response's header block (after any `100 Continue`).
        let block = raw
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()
            .unwrap_or("");
        let headers = block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Response {
            status,
            headers,
            body: std::fs::read_to_string(&body).unwrap_or_default(),
        })
    }

    pub fn send(&self) -> Response {
        self.try_send()
            .unwrap_or_else(|| panic!("no answer from {}", self.url))
    }
}

/// Poll `check` until it returns `Some`, or fail after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
