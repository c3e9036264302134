//! `ssh://[user@]host[:port]`: the engine on another machine, reached through one ssh
//! connection per stackctl command.
//!
//! `open` logs in once: an OpenSSH control master (`ssh -M -S SOCKET`) whose own session runs
//! a short POSIX shell probe (`DOCKER_HOST`, `DOCKER_CONTEXT` and the current context there)
//! and then waits on its stdin. When the remote engine is a unix socket (`DOCKER_HOST=unix://…`,
//! or the default `/var/run/docker.sock` when no context is chosen there), that socket is
//! forwarded through the master (`ssh -O forward -L LOCAL:REMOTE`): every HTTP connection is
//! then a channel of the existing connection, one round trip, no remote process. Otherwise
//! (a tcp engine or a context there, a shell that is not POSIX, forwarding refused by the
//! server: `AllowStreamLocalForwarding no`), every HTTP connection is a `docker system
//! dial-stdio` session over the master, as the docker CLI does, with no new handshake either.
//! The user's ssh config, agent and known hosts apply as they do for `ssh` itself;
//! `STACKCTL_SSH_CONFIG` names another config file (`ssh -F`).
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

/// How the HTTP connections of a session reach the remote engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The engine's unix socket there (this path), forwarded through the master.
    Forward(String),
    /// A `docker system dial-stdio` session per connection; why the socket is not forwarded.
    DialStdio(String),
}

/// What the master's own session runs: one line of marker, then `DOCKER_HOST`,
/// `DOCKER_CONTEXT` and the `currentContext` of Docker's config there (what the docker CLI
/// there would use), then it waits on its stdin, so the session, and with it the master,
/// lasts as long as this process holds that stdin open.
const PROBE: &str = r#"printf '%s\n' stackctl-probe "${DOCKER_HOST-}" "${DOCKER_CONTEXT-}" "$(sed -n 's/.*"currentContext"[^"]*"\([^"]*\)".*/\1/p' "${DOCKER_CONFIG:-$HOME/.docker}/config.json" 2>/dev/null)"; exec cat >/dev/null"#;
const PROBE_MARKER: &str = "stackctl-probe";
/// The engine's socket when nothing there names another one.
const REMOTE_DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where the engine is on the remote host, from the probe's output (all of it, marker
/// first); `None` when the output is not the probe's (a login shell that is not POSIX).
pub fn route_from_probe(lines: &[String]) -> Option<Route> {
    if lines.first().map(|l| l.trim()) != Some(PROBE_MARKER) || lines.len() < 4 {
        return None;
    }
    let (host, context, current) = (lines[1].trim(), lines[2].trim(), lines[3].trim());
    if !host.is_empty() {
        return Some(match host.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') && !path.contains(':') => {
                Route::Forward(path.to_string())
            }
            _ => Route::DialStdio(format!("DOCKER_HOST there is `{host}`")),
        });
    }
    let context = if context.is_empty() { current } else { context };
    Some(if context.is_empty() || context == "default" {
        Route::Forward(REMOTE_DEFAULT_SOCKET.to_string())
    } else {
        Route::DialStdio(format!("the Docker context there is `{context}`"))
    })
}

/// The ssh control master of one command; stopped (and its directory removed) on drop.
pub struct SshSession {
    target: SshTarget,
    dir: PathBuf,
    control: PathBuf,
    /// The local end of the forwarded engine socket.
    local: PathBuf,
    master: std::sync::Mutex<Option<Child>>,
    /// The master session's stdin: the probe's `cat` there ends when it closes.
    master_stdin: std::sync::Mutex<Option<ChildStdin>>,
    route: std::sync::Mutex<Route>,
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
    /// Then forward the engine's socket when the probe found one (see the module comment).
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
        let session = SshSession {
            target,
            control: dir.join("control"),
            local: dir.join("engine.sock"),
            dir,
            master: std::sync::Mutex::new(None),
            master_stdin: std::sync::Mutex::new(None),
            route: std::sync::Mutex::new(Route::DialStdio(String::new())),
        };
        let route = match session.start_master(timeout, true).await? {
            Some(Route::Forward(remote)) => match session.forward(&remote).await {
                Ok(()) => Route::Forward(remote),
                Err(why) => Route::DialStdio(why),
            },
            Some(route) => route,
            None => {
                // Logged in, but the login shell there did not run the probe: log in again,
                // plainly, and dial as the docker CLI does.
                session.stop_master();
                session.start_master(timeout, false).await?;
                Route::DialStdio("the login shell there did not run the probe".to_string())
            }
        };
        session.set_route(route);
        Ok(Arc::new(session))
    }

    /// Start the master and wait until it has logged in. With `probe`, its session runs
    /// `PROBE` and the answer is its route (`None`: logged in, but no probe answer).
    async fn start_master(&self, timeout: Duration, probe: bool) -> Result<Option<Route>, String> {
        let _ = std::fs::remove_file(&self.control);
        let log = std::fs::File::create(self.dir.join("master.log"))
            .map_err(|e| format!("cannot create the ssh log: {e}"))?;
        let connect_timeout = timeout.as_secs().max(1);
        let mut command = Command::new("ssh");
        command
            .args(common_args())
            .args(["-M", "-T", "-S"])
            .arg(&self.control)
            .args([
                "-o",
                "ControlPersist=no",
                "-o",
                &format!("ConnectTimeout={connect_timeout}"),
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=4",
            ]);
        if !probe {
            command.arg("-N");
        }
        command.args(self.target.destination_args());
        if probe {
            command
                .arg(PROBE)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
        } else {
            command.stdin(Stdio::null()).stdout(Stdio::null());
        }
        command.stderr(log).kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => "there is no `ssh` program on this machine".to_string(),
            _ => format!("cannot run ssh: {e}"),
        })?;
        // The probe's answer: its lines up to the fourth (or end of output); the rest of the
        // output (none is expected) is read and dropped until the master ends.
        let mut answer = None;
        if let Some(stdout) = child.stdout.take() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                let mut got = Vec::new();
                while got.len() < 4 {
                    match lines.next_line().await {
                        Ok(Some(line)) => got.push(line),
                        _ => break,
                    }
                }
                let _ = tx.send(got);
                while let Ok(Some(_)) = lines.next_line().await {}
            });
            answer = Some(rx);
        }
        // Killed with what it started (a ProxyCommand) on every way out.
        if let Some(pid) = child.id() {
            crate::interrupt::register_tree(pid as i32);
        }
        *self.master_stdin.lock().expect("ssh master") = child.stdin.take();
        *self.master.lock().expect("ssh master") = Some(child);
        let start = Instant::now();
        let mut logged_in = false;
        let mut probed: Option<Vec<String>> = None;
        loop {
            logged_in |= self.control.exists();
            if let Some(rx) = answer.as_mut() {
                match rx.try_recv() {
                    Ok(lines) => {
                        probed = Some(lines);
                        answer = None;
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        probed = Some(Vec::new());
                        answer = None;
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                }
            }
            if logged_in && (!probe || probed.is_some()) {
                return Ok(probed.and_then(|lines| route_from_probe(&lines)));
            }
            let exited = self
                .master
                .lock()
                .expect("ssh master")
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                if logged_in {
                    // It logged in, then its session ended: the probe did not run there.
                    return Ok(None);
                }
                return Err(last_line(&self.dir.join("master.log"))
                    .unwrap_or_else(|| format!("ssh ended ({status}) before logging in")));
            }
            if start.elapsed() >= timeout + Duration::from_secs(2) {
                return Err(format!(
                    "ssh to `{}` did not log in within {}s (STACKCTL_SSH_TIMEOUT)",
                    self.target.host,
                    timeout.as_secs()
                ));
            }
            // An interrupt drops this future (`Engine::connect`), and the session with it:
            // its drop kills ssh and what ssh started.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stop_master(&self) {
        self.master_stdin.lock().expect("ssh master").take();
        if let Some(mut child) = self.master.lock().expect("ssh master").take() {
            if let Some(pid) = child.id() {
                crate::interrupt::kill_tree(pid as i32);
                crate::interrupt::forget_tree(pid as i32);
            }
            let _ = child.start_kill();
        }
    }

    /// Forward the engine's socket there (`remote`) to `self.local` through the master.
    async fn forward(&self, remote: &str) -> Result<(), String> {
        let out = Command::new("ssh")
            .args(common_args())
            .arg("-S")
            .arg(&self.control)
            .args(["-O", "forward", "-L"])
            .arg(format!("{}:{remote}", self.local.display()))
            .args(self.target.destination_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run ssh -O forward: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let said = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "forwarding {remote} failed: {}",
                said.lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
            ))
        }
    }

    /// How connections reach the engine now.
    pub fn route(&self) -> Route {
        self.route.lock().expect("ssh route").clone()
    }

    fn set_route(&self, route: Route) {
        *self.route.lock().expect("ssh route") = route;
    }

    /// True while connections go through the forwarded socket.
    pub fn forwarding(&self) -> bool {
        matches!(self.route(), Route::Forward(_))
    }

    /// The forwarded socket did not carry a request (the server refused the channel:
    /// `AllowStreamLocalForwarding no`, or the socket there is not the engine's or not
    /// ours to open): dial `docker system dial-stdio` from now on, as the docker CLI does,
    /// whose errors say why.
    pub fn fall_back(&self, why: String) {
        self.set_route(Route::DialStdio(why));
    }

    /// A new `docker system dial-stdio` session over the master.
    fn dial(&self) -> io::Result<DialStream> {
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
        Ok(DialStream {
            _child: child,
            stdin,
            stdout,
        })
    }

    /// A new HTTP connection to the engine, by the session's route.
    pub(crate) async fn connect(&self) -> io::Result<SshStream> {
        if self.forwarding() {
            let stream = tokio::net::UnixStream::connect(&self.local).await?;
            return Ok(SshStream::Forwarded(stream));
        }
        self.dial().map(|d| SshStream::Dialed(Box::new(d)))
    }

    /// What the remote side said last when a session failed (`docker: not found`).
    pub fn dial_error(&self) -> Option<String> {
        last_line(&self.dir.join("dial.log"))
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        self.stop_master();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A short random suffix for private names.
fn unique() -> String {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One HTTP connection: a channel of the forwarded socket, or a `dial-stdio` session.
pub enum SshStream {
    Forwarded(tokio::net::UnixStream),
    Dialed(Box<DialStream>),
}

/// The stdin and stdout of a `dial-stdio` session.
pub struct DialStream {
    _child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl AsyncRead for SshStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SshStream::Forwarded(s) => Pin::new(s).poll_read(cx, buf),
            SshStream::Dialed(d) => Pin::new(&mut d.stdout).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SshStream::Forwarded(s) => Pin::new(s).poll_write(cx, buf),
            SshStream::Dialed(d) => match d.stdin.as_mut() {
                Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
                None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SshStream::Forwarded(s) => Pin::new(s).poll_flush(cx),
            SshStream::Dialed(d) => match d.stdin.as_mut() {
                Some(stdin) => Pin::new(stdin).poll_flush(cx),
                None => Poll::Ready(Ok(())),
            },
        }
    }

    /// Half-close, so an attached process sees end of input: on the forwarded socket ssh
    /// sends EOF on the channel and sshd shuts down its write half to the engine; closing a
    /// `dial-stdio` session's stdin makes the remote side do the same.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SshStream::Forwarded(s) => Pin::new(s).poll_shutdown(cx),
            SshStream::Dialed(d) => {
                if let Some(stdin) = d.stdin.as_mut() {
                    std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
                }
                d.stdin = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// The hyper connector: every connection is a new channel of the session.
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
        let session = self.session.clone();
        Box::pin(async move { session.connect().await.map(TokioIo::new) })
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

    fn probe(lines: &[&str]) -> Option<Route> {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        route_from_probe(&lines)
    }

    #[test]
    fn the_probe_names_the_socket_to_forward() {
        let forward = |p: &str| Some(Route::Forward(p.to_string()));
        assert_eq!(
            probe(&[PROBE_MARKER, "", "", ""]),
            forward("/var/run/docker.sock")
        );
        assert_eq!(
            probe(&[PROBE_MARKER, "", "", "default"]),
            forward("/var/run/docker.sock")
        );
        assert_eq!(
            probe(&[
                PROBE_MARKER,
                "unix:///run/user/1000/docker.sock",
                "",
                "rootless"
            ]),
            forward("/run/user/1000/docker.sock")
        );
        assert!(matches!(
            probe(&[PROBE_MARKER, "tcp://10.0.0.5:2376", "", ""]),
            Some(Route::DialStdio(why)) if why.contains("tcp://10.0.0.5:2376")
        ));
        assert!(matches!(
            probe(&[PROBE_MARKER, "", "", "rootless"]),
            Some(Route::DialStdio(why)) if why.contains("`rootless`")
        ));
        assert!(matches!(
            probe(&[PROBE_MARKER, "", "prod", "default"]),
            Some(Route::DialStdio(why)) if why.contains("`prod`")
        ));
        // Not the probe's answer: a shell that is not POSIX, or a banner.
        assert_eq!(probe(&["Unknown command", "", "", ""]), None);
        assert_eq!(probe(&[PROBE_MARKER, ""]), None);
        assert_eq!(probe(&[]), None);
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
