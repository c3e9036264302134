//! Clear failures of `up`: a taken port, an unhealthy service, an unreachable daemon, a
//! missing external network, and the stage lock held by another process.

mod support;

use std::time::Duration;

use support::{busybox_image, TestStack};

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn port_already_allocated_names_service_and_port() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a free port");
    let port = listener.local_addr().unwrap().port();
    let t = TestStack::new("port");
    t.stack(&format!(
        r#"
services:
  web:
    image: {}
    command: [httpd, -f, -p, "8080"]
    ports: ["${{WEB_PORT:-{port}}}:8080"]
"#,
        busybox_image()
    ));
    let out = t.cmd().arg("up").assert().code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("port {port} is already allocated")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("service `web`, stacks/{}.yml:", t.stage)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: set WEB_PORT in .env.{}", t.stage)),
        "{stderr}"
    );
    drop(listener);
}

#[test]
fn unhealthy_service_shows_its_health_output_and_logs() {
    let t = TestStack::new("unhealthy");
    t.stack(&format!(
        r#"
services:
  db:
    image: {}
    init: true
    command: [sh, -c, "echo starting db with $$API_TOKEN; exec sleep 3600"]
    environment: {{ API_TOKEN: tok-3f9a7c21 }}
    healthcheck:
      test: [CMD, sh, -c, "echo not ready yet; exit 1"]
      interval: 500ms
      retries: 2
"#,
        busybox_image()
    ));
    let out = t.cmd().args(["up", "--timeout", "30"]).assert().code(1);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("service `db` is unhealthy"), "{stderr}");
    assert!(
        stderr.contains("last health check: exit 1: not ready yet"),
        "{stderr}"
    );
    // The log line is shown, with the secret value masked.
    assert!(stderr.contains("starting db with ****"), "{stderr}");
    assert!(!stderr.contains("tok-3f9a7c21"), "{stderr}");

    // --no-wait does not wait for health; --timeout bounds the wait.
    t.cmd().args(["up", "--no-wait"]).assert().success();
}

#[test]
fn unreachable_daemon_is_one_clear_error() {
    let t = TestStack::new("nodaemon");
    t.stack(&format!(
        "services:\n  a: {{ image: {} }}\n",
        busybox_image()
    ));
    let out = t
        .cmd()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .arg("up")
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with("error: cannot reach the Docker engine at unix:///nonexistent.sock"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_external_network_fails_with_a_hint() {
    let t = TestStack::new("extnet");
    t.stack(&format!(
        "services:\n  a:\n    image: {}\n    networks: [shared]\nnetworks:\n  shared: {{ external: true, name: {}-absent }}\n",
        busybox_image(),
        t.project
    ));
    let out = t.cmd().arg("up").assert().code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("external network `{}-absent`", t.project)),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: create it with `docker network create"),
        "{stderr}"
    );
    assert!(t.containers().is_empty());
}

#[test]
fn second_process_waits_for_the_stage_lock_then_gives_up() {
    let t = TestStack::new("lock");
    t.stack(&format!(
        r#"
services:
  slow:
    image: {}
    init: true
    command: [sh, -c, "sleep 4; touch /tmp/ready; exec sleep 3600"]
    healthcheck: {{ test: [CMD, sh, -c, "test -f /tmp/ready"], interval: 500ms, retries: 30 }}
"#,
        busybox_image()
    ));
    let mut first = t.std_cmd().arg("up").spawn().expect("start first up");
    std::thread::sleep(Duration::from_millis(1500));
    let out = t.cmd().args(["down", "--timeout", "1"]).assert().code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!(
            "waiting for another stackctl on stage `{}`",
            t.stage
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("another stackctl is still changing stage"),
        "{stderr}"
    );
    assert!(first.wait().expect("first up").success());
    // Once the first is done, the lock is free.
    t.cmd().args(["down", "--timeout", "5"]).assert().success();
}

fn interrupt(child: &std::process::Child) {
    // SAFETY: sending a signal to a child process we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

#[test]
fn interrupted_up_and_logs_follow_exit_130() {
    let t = TestStack::new("interrupt");
    t.stack(&format!(
        r#"
services:
  never:
    image: {}
    init: true
    command: [sh, -c, "echo waiting; exec sleep 3600"]
    healthcheck: {{ test: [CMD, sh, -c, "test -f /tmp/never"], interval: 500ms, retries: 100 }}
"#,
        busybox_image()
    ));
    let started = std::time::Instant::now();
    let mut up = t
        .std_cmd()
        .arg("up")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start up");
    std::thread::sleep(Duration::from_millis(2000));
    interrupt(&up);
    let status = up.wait().expect("wait for up");
    let mut up_stderr = String::new();
    {
        use std::io::Read;
        up.stderr
            .take()
            .unwrap()
            .read_to_string(&mut up_stderr)
            .unwrap();
    }
    assert_eq!(status.code(), Some(130), "{up_stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));

    let mut logs = t
        .std_cmd()
        .args(["logs", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start logs -f");
    std::thread::sleep(Duration::from_millis(1000));
    interrupt(&logs);
    let output = {
        let status = logs.wait().expect("wait for logs");
        let mut text = String::new();
        use std::io::Read;
        logs.stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status, text)
    };
    assert_eq!(output.0.code(), Some(130));
    assert!(output.1.contains("never | waiting"), "{}", output.1);
    // The next up converges from what was left: the container is there and running.
    t.cmd().args(["up", "--no-wait"]).assert().success();
}

#[test]
fn r18_ctrl_c_gives_up_waiting_for_a_stop_grace_period() {
    use std::io::BufRead;
    let t = TestStack::new("grace");
    // PID 1 `sleep` ignores SIGTERM: a stop waits the whole grace period, then kills.
    t.stack(&format!(
        "services:\n  slow: {{ image: {}, command: [sleep, \"3600\"], stop_grace_period: 60s }}\n",
        busybox_image()
    ));
    t.cmd().args(["up", "--no-wait"]).assert().success();
    let mut down = t
        .std_cmd()
        .arg("down")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start down");
    let (lines, seen) = std::sync::mpsc::channel::<String>();
    let stderr = down.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut transcript = Vec::new();
    while !transcript
        .iter()
        .any(|l: &String| l.ends_with(": stopping"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => transcript.push(line),
            Err(_) => {
                let _ = down.kill();
                panic!("`down` never started stopping: {transcript:?}");
            }
        }
    }
    let interrupted = std::time::Instant::now();
    interrupt(&down);
    let limit = interrupted + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = down.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > limit {
            let _ = down.kill();
            panic!("`down` still waits for the grace period after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert!(interrupted.elapsed() < Duration::from_secs(10));
}
