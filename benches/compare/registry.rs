//! The registry phase's registry: Debian's `docker-registry` (Docker Distribution 2.8, the
//! program of `registry:2`) on a free loopback port, no auth, filesystem storage in a
//! directory of the harness's scratch space, its access log (one line per HTTP request) in a
//! file so the harness can count requests. The engine treats 127.0.0.0/8 registries as
//! insecure, so plain HTTP works.
//!
//! The process gets PR_SET_PDEATHSIG (SIGKILL) and is spawned from the main thread, so it dies
//! with the harness however the harness ends; dropping the handle kills it too and removes
//! its storage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    dir: PathBuf,
    access_log: PathBuf,
    child: Child,
}

impl Registry {
    /// Start a registry with its config, storage and log under `dir` (created), and wait
    /// until `GET /v2/` answers.
    pub fn start(dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(dir.join("data"))
            .with_context(|| format!("create {}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free loopback port")?
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                dir.join("data").display()
            ),
        )?;
        let access_log = dir.join("access.log");
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&access_log)?)
            .stderr(std::fs::File::create(dir.join("error.log"))?);
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = command.spawn().context(
            "start docker-registry (the registry phase needs it; hint: apt-get install docker-registry)",
        )?;
        let mut registry = Registry {
            host,
            dir: dir.to_path_buf(),
            access_log,
            child,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    /// The process id, for the Ctrl-C handler.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Poll `GET /v2/` until it answers 200, with a deadline; fail at once if the process
    /// exited.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((status, _)) = http_get(&self.host, "/v2/") {
                if status == 200 {
                    return Ok(());
                }
                bail!("registry on {} answered {status} to GET /v2/", self.host);
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                bail!("docker-registry exited ({status}) before answering:\n{log}");
            }
            if Instant::now() >= deadline {
                bail!("registry on {} did not answer within 20 s", self.host);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// HTTP requests the registry has answered so far (lines of its access log).
    pub fn requests(&self) -> Result<usize> {
        Ok(std::fs::read_to_string(&self.access_log)
            .context("read the registry's access log")?
            .lines()
            .count())
    }

    /// Empty the storage (every repository and blob), so the next push uploads every layer
    /// and no blob can be mounted from another repository.
    pub fn wipe(&self) -> Result<()> {
        let docker = self.dir.join("data").join("docker");
        match std::fs::remove_dir_all(&docker) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err).with_context(|| format!("remove {}", docker.display())),
        }
    }

    /// Bytes of the blobs in the storage (what the pushes so far have uploaded).
    pub fn stored_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.dir.join("data/docker/registry/v2/blobs"))
    }

    /// The tags the registry holds for `repository` (`GET /v2/NAME/tags/list`).
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let Some((200, body)) = http_get(&self.host, &format!("/v2/{repository}/tags/list")) else {
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
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET over plain HTTP/1.0: the status and the body, or None when nothing answers.
fn http_get(host: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}
