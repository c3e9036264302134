//! `ssh://[user@]host[:port]`: the engine on another machine, reached the way the docker CLI
//! reaches it: `ssh … docker system dial-stdio` on the remote side, HTTP over its stdin and
//! stdout.
//!
//! One ssh connection per stackctl command: `open` starts an OpenSSH control master
//! (`ssh -M -N -S SOCKET`) and waits until it has logged in; every HTTP connection the client
//! opens is then a `dial-stdio` session multiplexed over that master (`ssh -S SOCKET …`), with
//! no new handshake. The user's ssh config, agent and known hosts apply as they do for
//! `ssh` itself; `STACKCTL_SSH_CONFIG` names another config file (`ssh -F`).
//!
//! bollard 0.21 has an `ssh` feature, but it starts a new ssh master (a full handshake) for
//! every HTTP connection, takes no config file and no connect timeout: hence this connector,
//! given to bollard as a custom transport.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Where an `ssh://` engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// Parse `ssh://[user@]host[:port]` (a trailing `/` is allowed; a path is not).
    pub fn parse(url: &str) -> Result<SshTarget, String> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("`{url}` does not start with ssh://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("`{url}`: an ssh engine address takes no path"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user.to_string()), hostport),
            None => (None, rest),
        };
        if user.as_deref() == Some("") {
            return Err(format!("`{url}`: empty user before `@`"));
        }
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            // [v6]:port
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: missing `]`"))?;
            (host.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("`{url}`: `{p}` is not a port"))?,
            ),
            None => None,
        };
        if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
            return Err(format!("`{url}`: `{host}` is not a host name"));
        }
        if user
            .as_deref()
            .is_some_and(|u| u.starts_with('-') || u.contains(char::is_whitespace))
        {
            return Err(format!("`{url}`: not a user name before `@`"));
        }
        Ok(SshTarget { user, host, port })
    }

    /// `ssh` arguments naming the destination (`-p PORT -l USER -- HOST`).
    fn destination_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(port) = self.port {
            args.extend(["-p".to_string(), port.to_string()]);
        }
        if let Some(user) = &self.user {
            args.extend(["-l".to_string(), user.clone()]);
        }
        args.push("--".to_string());
        args.push(self.host.clone());
        args
    }
}

/// The ssh control master of one command; stopped (and its directory removed) on drop.
pub struct SshSession {
    target: SshTarget,
    dir: PathBuf,
    control: PathBuf,
    master: std::sync::Mutex<Option<Child>>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshSession({:?})", self.target)
    }
}

/// Options every ssh invocation gets: the config file, when one is named.
fn common_args() -> Vec<String> {
    let mut args = Vec::new();
    if let Some(config) = std::env::var_os("STACKCTL_SSH_CONFIG").filter(|c| !c.is_empty()) {
        args.push("-F".to_string());
        args.push(config.to_string_lossy().into_owned());
    }
    args
}

/// The last meaningful line ssh wrote on stderr (`ssh: connect to host … : No route to host`).
fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.trim_end_matches('.').to_string())
}

/// Kill the child when this process dies, however it dies (the master would otherwise keep
/// the connection open forever).
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl with PR_SET_PDEATHSIG is async-signal-safe and only affects the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
}

impl SshSession {
    /// Log in once (the control master) within `timeout`; the error is ssh's own last line.
    pub async fn open(target: SshTarget, timeout: Duration) -> Result<Arc<SshSession>, String> {
        let base = crate::lock::runtime_dir();
        crate::lock::private_dir(&base).map_err(|e| e.message)?;
        let dir = base.join(format!("ssh-{}-{}", std::process::id(), unique()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        let control = dir.join("control");
        let session = SshSession {
            target,
            dir,
            control,
            master: std::sync::Mutex::new(None),
        };
        let log = std::fs::File::create(session.dir.join("master.log"))
            .map_err(|e| format!("cannot create the ssh log: {e}"))?;
        let connect_timeout = timeout.as_secs().max(1);
        let mut command = Command::new("ssh");
        command
            .args(common_args())
            .args(["-M", "-N", "-S"])
            .arg(&session.control)
            .args([
                "-o",
                "ControlPersist=no",
                "-o",
                &format!("ConnectTimeout={connect_timeout}"),
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=4",
            ])
            .args(session.target.destination_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => "there is no `ssh` program on this machine".to_string(),
            _ => format!("cannot run ssh: {e}"),
        })?;
        *session.master.lock().expect("ssh master") = Some(child);
        let start = Instant::now();
        loop {
            if session.control.exists() {
                return Ok(Arc::new(session));
            }
            let exited = session
                .master
                .lock()
                .expect("ssh master")
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(last_line(&session.dir.join("master.log"))
                    .unwrap_or_else(|| format!("ssh ended ({status}) before logging in")));
            }
            if start.elapsed() >= timeout + Duration::from_secs(2) {
                return Err(format!("ssh did not log in within {}s", timeout.as_secs()));
            }
            crate::interrupt::check().map_err(|_| "interrupted".to_string())?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A new `docker system dial-stdio` session over the master.
    fn dial(&self) -> io::Result<SshStream> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dial.log"))?;
        let mut command = Command::new("ssh");
        command
            .args(common_args())
            .arg("-S")
            .arg(&self.control)
            .args(["-o", "ControlMaster=no", "-T"])
            .args(self.target.destination_args())
            .args(["docker", "system", "dial-stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("ssh has no stdout"))?;
        Ok(SshStream {
            _child: child,
            stdin,
            stdout,
        })
    }

    /// What the remote side said last when a session failed (`docker: not found`).
    pub fn dial_error(&self) -> Option<String> {
        last_line(&self.dir.join("dial.log"))
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if let Ok(mut master) = self.master.lock() {
            if let Some(mut child) = master.take() {
                let _ = child.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A short random suffix for private names.
fn unique() -> String {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One HTTP connection: the stdin and stdout of a `dial-stdio` session.
pub struct SshStream {
    _child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Half-close: closing ssh's stdin makes the remote side close its write half to the
    /// daemon, so an attached process sees end of input.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(stdin) = self.stdin.as_mut() {
            std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        self.stdin = None;
        Poll::Ready(Ok(()))
    }
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// The hyper connector: every connection is a new `dial-stdio` session.
#[derive(Clone)]
pub struct SshConnector {
    pub session: Arc<SshSession>,
}

impl tower_service::Service<hyper::Uri> for SshConnector {
    type Response = TokioIo<SshStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let dialed = self.session.dial().map(TokioIo::new);
        Box::pin(async move { dialed })
    }
}

/// A bollard client whose connections go through `session`.
pub fn client(session: Arc<SshSession>, timeout: Duration) -> Result<bollard::Docker, String> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(SshConnector { session });
    bollard::Docker::connect_with_custom_transport(
        move |request: bollard::BollardRequest| {
            let http = http.clone();
            async move {
                http.request(request)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some("http://remote-engine"),
        timeout.as_secs().max(1),
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_addresses_parse() {
        let t = SshTarget::parse("ssh://deploy@10.0.0.5").unwrap();
        assert_eq!(t.user.as_deref(), Some("deploy"));
        assert_eq!(t.host, "10.0.0.5");
        assert_eq!(t.port, None);
        let t = SshTarget::parse("ssh://host.example.com:2222/").unwrap();
        assert_eq!((t.user, t.port), (None, Some(2222)));
        let t = SshTarget::parse("ssh://root@[fd00::1]:22").unwrap();
        assert_eq!(t.host, "fd00::1");
        assert!(SshTarget::parse("ssh://deploy@host/path").is_err());
        assert!(SshTarget::parse("ssh://host:notaport").is_err());
        assert!(SshTarget::parse("ssh://-oProxyCommand=x").is_err());
        assert!(SshTarget::parse("ssh://@host").is_err());
    }

    #[test]
    fn destination_ends_the_options() {
        let t = SshTarget::parse("ssh://deploy@h:2200").unwrap();
        assert_eq!(
            t.destination_args(),
            ["-p", "2200", "-l", "deploy", "--", "h"]
        );
    }
}
