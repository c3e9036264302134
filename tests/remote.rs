//! A stage on an engine reached only over ssh (tests/support/lab.rs: a second dockerd in its
//! own network namespace with an sshd beside it): the lifecycle through `engine.host`, the
//! lock kept on the engine against a stackctl on "another machine", an expired lease taken
//! over, a relative bind refused, an unreachable host failing fast with one line, and
//! BuildKit builds (their session an HTTP upgrade) through both ssh routes.

#[path = "support/lab.rs"]
mod lab;
mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{busybox_image, TestStack};

/// A test stage whose objects on the node are removed when it drops (failure too).
struct Remote {
    t: TestStack,
}

impl Drop for Remote {
    fn drop(&mut self) {
        lab::lab().cleanup_project(&self.t.project);
    }
}

impl Remote {
    fn new(name: &str) -> Remote {
        lab::lab();
        Remote {
            t: TestStack::new(name),
        }
    }

    /// stackctl on this stage, its ssh using the lab's key and known hosts.
    fn cmd(&self) -> Command {
        let mut cmd = self.t.std_cmd();
        cmd.env("STACKCTL_SSH_CONFIG", &lab::lab().ssh_config)
            .env("LAB_ADDRESS", &lab::lab().address);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run stackctl")
    }

    /// The lock container on the node exists.
    fn locked(&self) -> bool {
        let name = format!("stackctl-lock.{}.{}", self.t.project, self.t.stage);
        lab::lab()
            .docker(&["inspect", "--format", "{{.Id}}", &name])
            .status
            .success()
    }

    fn node_containers(&self) -> Vec<String> {
        let out = lab::lab().docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=io.stackctl.project={}", self.t.project),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait_locked(&self, holder: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.locked() {
            if let Ok(Some(status)) = holder.try_wait() {
                panic!("the holder ended ({status}) before it took the lock");
            }
            assert!(Instant::now() < deadline, "the lock was never taken");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn up_ps_exec_logs_down_purge_over_ssh_through_engine_host() {
    let r = Remote::new("lifecycle");
    let image = busybox_image();
    r.t.stack(&format!(
        r#"
engine:
  host: ssh://root@${{LAB_ADDRESS}}
services:
  web:
    image: {image}
    init: true
    command: [sh, -c, "echo hello-from-the-node; mkdir -p /www; echo hi > /www/index.html; exec httpd -f -p 80 -h /www"]
    ports: ["18080:80"]
    volumes: [data:/data]
    healthcheck: {{ test: [CMD, wget, -q, -O-, "http://127.0.0.1/"], interval: 500ms, retries: 20 }}
volumes:
  data: {{}}
tasks:
  count:
    image: {image}
    command: [sh, -c, "wc -c; echo to-stderr >&2; exit 3"]
"#
    ));
    let up = r.run(&["up"]);
    ok(&up, "up");
    assert!(
        r.node_containers().contains(&r.t.container("web")),
        "the service runs on the node: {:?}",
        r.node_containers()
    );
    // Not on this machine's engine.
    assert!(r.t.containers().is_empty(), "{:?}", r.t.containers());
    assert!(!r.locked(), "the lock is released after up");

    let ps = r.run(&["ps"]);
    ok(&ps, "ps");
    let address = &lab::lab().address;
    let stdout = text(&ps.stdout);
    assert!(stdout.contains("running"), "{stdout}");
    assert!(
        stdout.contains(&format!("{address}:18080->80/tcp")),
        "ports at the engine's host: {stdout}"
    );
    assert!(
        text(&ps.stderr).contains(&format!("ssh://root@{address}")),
        "ps names the engine: {}",
        text(&ps.stderr)
    );
    // `ls` asks the same engine: the stage is running there.
    let ls = r.run(&["ls", "--json"]);
    ok(&ls, "ls");
    assert!(
        text(&ls.stdout).lines().any(
            |line| line.contains(&format!("\"stage\":\"{}\"", r.t.stage))
                && line.contains("\"state\":\"running\"")
        ),
        "{}",
        text(&ls.stdout)
    );

    // stdin streamed over ssh; the task's exit code kept.
    let input = r.t.path("input.bin");
    std::fs::write(&input, vec![b'x'; 300_000]).unwrap();
    let exec = r
        .cmd()
        .args(["exec", "count"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(exec.status.code(), Some(3), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout).trim(), "300000");
    assert!(text(&exec.stderr).contains("to-stderr"));

    let logs = r.run(&["logs", "web"]);
    ok(&logs, "logs");
    assert!(
        text(&logs.stdout).contains("hello-from-the-node"),
        "{}",
        text(&logs.stdout)
    );

    // No -H: `version` asks the engine the stack file's `engine.host` names.
    let version = r.run(&["version"]);
    ok(&version, "version");
    assert!(
        text(&version.stdout).contains(&format!("at ssh://root@{address}")),
        "{}",
        text(&version.stdout)
    );
    // The engine's socket there is forwarded through the one ssh connection.
    assert!(
        text(&version.stdout).contains(&format!(
            "via       one ssh connection, the engine's socket {}/docker.sock there forwarded through it",
            lab::lab().dir.display()
        )),
        "{}",
        text(&version.stdout)
    );

    ok(&r.run(&["down"]), "down");
    assert!(r.node_containers().is_empty(), "{:?}", r.node_containers());
    let volume = format!("{}-{}_data", r.t.stage, r.t.project);
    assert!(lab::lab()
        .docker(&["volume", "inspect", &volume])
        .status
        .success());
    ok(&r.run(&["purge", "--yes"]), "purge");
    assert!(!lab::lab()
        .docker(&["volume", "inspect", &volume])
        .status
        .success());
}

#[test]
fn a_relative_bind_is_refused_on_a_remote_engine() {
    let r = Remote::new("relbind");
    let image = busybox_image();
    r.t.stack(&format!(
        "services:\n  api:\n    image: {image}\n    command: [sleep, \"60\"]\n    volumes:\n      - ./logs:/app/logs\nengine:\n  host: ssh://root@203.0.113.1\n"
    ));
    // -H comes before the stack file's engine.host (an address nothing answers on).
    let out = r.run(&["-H", &lab::lab().url, "up"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("stacks/{}.yml:6:9", r.t.stage)),
        "located: {stderr}"
    );
    assert!(
        stderr.contains(
            "service `api`: the bind mount `./logs:/app/logs` names a path on this machine"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("hint: use a named volume"), "{stderr}");
    assert!(
        stderr.contains(&format!("the engine is on {}", lab::lab().url)),
        "{stderr}"
    );
    assert!(r.node_containers().is_empty());
}

#[test]
fn an_sshd_that_refuses_forwarding_is_driven_through_dial_stdio() {
    let r = Remote::new("dialstdio");
    let image = busybox_image();
    r.t.stack(&format!(
        r#"
engine:
  host: ssh://root@${{LAB_ADDRESS}}:2222
services:
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
tasks:
  count:
    image: {image}
    command: [sh, -c, "wc -c; exit 4"]
"#
    ));
    let version = r.run(&["-H", &lab::lab().url_no_forward, "version"]);
    ok(&version, "version");
    let stdout = text(&version.stdout);
    assert!(
        stdout.contains(&format!("at {}", lab::lab().url_no_forward)),
        "{stdout}"
    );
    assert!(
        stdout.contains("via       one ssh connection, a `docker system dial-stdio` session there per HTTP connection (forwarding"),
        "{stdout}"
    );

    ok(&r.run(&["up"]), "up");
    assert!(
        r.node_containers().contains(&r.t.container("api")),
        "{:?}",
        r.node_containers()
    );
    // stdin streamed through a dial-stdio session, end of input passed on, exit code kept.
    let input = r.t.path("input.bin");
    std::fs::write(&input, vec![b'y'; 200_000]).unwrap();
    let exec = r
        .cmd()
        .args(["exec", "count"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(exec.status.code(), Some(4), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout).trim(), "200000");
    ok(&r.run(&["down"]), "down");
    assert!(r.node_containers().is_empty(), "{:?}", r.node_containers());
}

#[test]
fn a_buildkit_build_runs_over_ssh_through_the_forwarded_socket_and_dial_stdio() {
    let r = Remote::new("buildkit");
    let image = busybox_image();
    r.t.stack(
        "engine:\n  host: ssh://root@${LAB_ADDRESS}\nservices:\n  api:\n    build: api\n    command: [sleep, \"3600\"]\n",
    )
    .write(
        "api/Dockerfile",
        &format!("FROM {image}\nARG NOTE\nCOPY app.txt /app.txt\nRUN cat /app.txt && echo \"note=$NOTE\" >> /app.txt\n"),
    )
    .write("api/app.txt", "one\n");
    let tag = format!("{}/api:{}", r.t.project, r.t.stage);
    let content = || {
        let out = lab::lab().docker(&["run", "--rm", &tag, "cat", "/app.txt"]);
        text(&out.stdout)
    };
    // Forwarded socket: the step's output comes back through the session's stream.
    let build = r.run(&["-v", "build"]);
    ok(&build, "build");
    let stderr = text(&build.stderr);
    assert!(stderr.contains("(BuildKit builder)"), "{stderr}");
    assert!(
        stderr.contains("build api: [3/3] RUN cat /app.txt"),
        "{stderr}"
    );
    assert!(stderr.contains("build api: one"), "{stderr}");
    assert_eq!(content(), "one\nnote=\n");
    // dial-stdio: every HTTP connection, the session's upgrade too, is a session there.
    r.t.write("api/app.txt", "two\n");
    let build = r.run(&["-H", &lab::lab().url_no_forward, "-v", "build"]);
    ok(&build, "build through dial-stdio");
    assert!(text(&build.stderr).contains("(BuildKit builder)"));
    assert_eq!(content(), "two\nnote=\n");
    // A failing step is reported from the node's BuildKit as from a local one.
    r.t.write(
        "api/Dockerfile",
        &format!("FROM {image}\nRUN echo from-the-node && exit 5\n"),
    );
    let build = r.run(&["build"]);
    assert_eq!(build.status.code(), Some(1), "{}", text(&build.stderr));
    let stderr = text(&build.stderr);
    assert!(
        stderr.contains("failed at step 2/2 `RUN echo from-the-node && exit 5`"),
        "{stderr}"
    );
    assert!(stderr.contains("exit code: 5"), "{stderr}");
    assert!(stderr.contains("  | from-the-node"), "{stderr}");
}

/// A stack whose `up` holds the lock for a while: its service turns healthy after `secs`.
fn slow_stack(r: &Remote, secs: &str) {
    let image = busybox_image();
    r.t.stack(&format!(
        r#"
engine:
  host: ssh://root@${{LAB_ADDRESS}}
services:
  slow:
    image: {image}
    init: true
    command: [sh, -c, "sleep {secs}; touch /tmp/ready; exec sleep 3600"]
    healthcheck: {{ test: [CMD, test, -f, /tmp/ready], interval: 300ms, retries: 1000 }}
"#
    ));
}

#[test]
fn the_engine_lock_makes_a_stackctl_elsewhere_wait_then_proceed() {
    let r = Remote::new("lockwait");
    // The holder's `up` waits for health until the test says so (touches /tmp/ready).
    slow_stack(&r, "3600");
    // "Another machine": its own host name and its own runtime dir (no shared file lock).
    let other_runtime = tempfile::tempdir().unwrap();
    let mut holder = r
        .cmd()
        .args(["up", "--timeout", "300"])
        .env("STACKCTL_HOSTNAME", "other-machine")
        .env("XDG_RUNTIME_DIR", other_runtime.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    r.wait_locked(&mut holder);
    let holder_pid = holder.id();
    let status = r.run(&["lock", "status"]);
    ok(&status, "lock status");
    assert!(
        text(&status.stdout).contains(&format!(
            "held by other-machine (pid {holder_pid}, `stackctl up`)"
        )),
        "{}",
        text(&status.stdout)
    );
    let here_runtime = tempfile::tempdir().unwrap();
    let mut down = r
        .cmd()
        .args(["down"])
        .env("XDG_RUNTIME_DIR", here_runtime.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read down's stderr until it says it waits for the holder.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = down.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let expected = format!("waiting for other-machine (pid {holder_pid}, `stackctl up`)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(&expected) => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = down.kill();
                let _ = holder.kill();
                panic!(
                    "down never said it waits for the holder; it said:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
    // The holder creates its container and waits for health; down keeps waiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !r.node_containers().contains(&r.t.container("slow")) {
        assert!(
            Instant::now() < deadline,
            "the holder never created its container"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(status) = down.try_wait().unwrap() {
        let _ = holder.kill();
        panic!("down ended ({status}) while the holder held the lock");
    }
    // Let the holder's up finish; down then proceeds.
    // (The container may be created but not started yet: retry until it runs.)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let touched = lab::lab().docker(&["exec", &r.t.container("slow"), "touch", "/tmp/ready"]);
        if touched.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&touched.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    let up = holder.wait_with_output().unwrap();
    if !up.status.success() {
        let _ = down.kill();
    }
    ok(&up, "the holder's up");
    let down_status = down.wait().unwrap();
    let down_stderr = reader.join().unwrap();
    assert!(down_status.success(), "down: {down_stderr}");
    assert!(r.node_containers().is_empty(), "{:?}", r.node_containers());
    assert!(!r.locked());
}

#[test]
fn an_expired_lease_is_taken_over() {
    let r = Remote::new("lease");
    slow_stack(&r, "3600");
    let other_runtime = tempfile::tempdir().unwrap();
    let mut holder = r
        .cmd()
        .args(["up", "--timeout", "300"])
        .env("STACKCTL_HOSTNAME", "dead-machine")
        .env("STACKCTL_LOCK_LEASE", "2")
        .env("XDG_RUNTIME_DIR", other_runtime.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    r.wait_locked(&mut holder);
    let pid = holder.id();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let start = Instant::now();
    let down = r.run(&["down", "--timeout", "60"]);
    ok(&down, "down");
    let stderr = text(&down.stderr);
    assert!(
        stderr.contains(&format!(
            "taking over the lock on stage `{}` from dead-machine (pid {pid}, `stackctl up`): its lease expired",
            r.t.stage
        )),
        "{stderr}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert!(r.node_containers().is_empty());
    assert!(!r.locked());
}

#[test]
fn the_lock_times_out_naming_its_holder() {
    let r = Remote::new("locktimeout");
    slow_stack(&r, "3600");
    let other_runtime = tempfile::tempdir().unwrap();
    let mut holder = r
        .cmd()
        .args(["up", "--timeout", "300"])
        .env("STACKCTL_HOSTNAME", "busy-machine")
        .env("XDG_RUNTIME_DIR", other_runtime.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    r.wait_locked(&mut holder);
    let out = r.run(&["down", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is still locked by busy-machine") && stderr.contains("after 1s"),
        "{stderr}"
    );
    // The stuck case: release it by hand; the holder is told it lost it.
    ok(&r.run(&["lock", "release"]), "lock release");
    assert!(!r.locked());
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn an_unreachable_host_fails_fast_with_one_line() {
    let r = Remote::new("unreachable");
    r.t.stack(&format!(
        "services:\n  api:\n    image: {}\n",
        busybox_image()
    ));
    let lab = lab::lab();
    let prefix = lab.address.rsplit_once('.').unwrap().0;
    let host = format!("ssh://root@{prefix}.250");
    let start = Instant::now();
    let out = r.run(&["-H", &host, "ps"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(&format!(
            "error: cannot reach the Docker engine at {host}: ssh: connect to host"
        )),
        "{stderr}"
    );
}

#[test]
fn a_docker_context_names_the_engine() {
    use sha2::Digest;
    let r = Remote::new("context");
    let config = tempfile::tempdir().unwrap();
    let hash: String = sha2::Sha256::digest(b"lab")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = config.path().join("contexts/meta").join(hash);
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"lab","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{}","SkipTLSVerify":false}}}}}}"#,
            lab::lab().url
        ),
    )
    .unwrap();
    let expected = format!("at {}", lab::lab().url);
    // --context
    let out = r
        .cmd()
        .args(["--context", "lab", "version"])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    ok(&out, "version --context lab");
    assert!(
        text(&out.stdout).contains(&expected),
        "{}",
        text(&out.stdout)
    );
    // the current context of Docker's config
    std::fs::write(
        config.path().join("config.json"),
        r#"{"auths":{},"currentContext":"lab"}"#,
    )
    .unwrap();
    let out = r
        .cmd()
        .args(["version"])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    ok(&out, "version with currentContext");
    assert!(
        text(&out.stdout).contains(&expected),
        "{}",
        text(&out.stdout)
    );
    // DOCKER_HOST comes before the context; -H before everything.
    let out = r
        .cmd()
        .args(["version"])
        .env("DOCKER_CONFIG", config.path())
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .output()
        .unwrap();
    ok(&out, "version with DOCKER_HOST");
    assert!(
        text(&out.stdout).contains("at unix:///var/run/docker.sock"),
        "{}",
        text(&out.stdout)
    );
    // An unknown context is a usage error.
    let out = r
        .cmd()
        .args(["--context", "nope", "version"])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no Docker context `nope`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn engine_host_without_a_scheme_is_refused_where_it_is_written() {
    let t = TestStack::new("enginehost");
    t.stack("engine:\n  host: 10.0.0.5\nservices:\n  api:\n    image: x\n");
    let out = t.std_cmd().args(["config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "stacks/{}.yml:2:9: `engine.host` `10.0.0.5` has no known scheme",
            t.stage
        )),
        "{stderr}"
    );
}

#[test]
fn a_killed_holder_on_this_machine_is_taken_over_at_once() {
    let r = Remote::new("killedhere");
    slow_stack(&r, "3600");
    let mut holder = r
        .cmd()
        .args(["up", "--timeout", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    r.wait_locked(&mut holder);
    let pid = holder.id();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let start = Instant::now();
    let down = r.run(&["down"]);
    ok(&down, "down");
    assert!(
        text(&down.stderr).contains(&format!("(pid {pid}, `stackctl up`): that process is gone")),
        "{}",
        text(&down.stderr)
    );
    // No lease to wait for (30 s by default).
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}
