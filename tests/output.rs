//! What stackctl prints and how it exits, through the real binary: one error path (every
//! `error:`/`hint:` line from one reporter, secrets masked for every command), `--json` on
//! every command, quiet interrupts, the lock directory, empty stages, an engine that stops
//! answering, and the messages of files that cannot be read.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{busybox_image, TestStack};

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run(stack: &TestStack, args: &[&str]) -> Output {
    stack.cmd().args(args).output().expect("run stackctl")
}

fn interrupt(child: &Child) {
    // SAFETY: sending a signal to a child process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

/// Wait for a child with a deadline; kill it and fail when the deadline passes.
fn wait_with_deadline(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stackctl did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_all(reader: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut reader) = reader {
        let _ = reader.read_to_string(&mut text);
    }
    text
}

/// Poll `condition` every 20 ms until it holds; fail after `deadline`.
fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// One error path

#[test]
fn issue9_hint_is_its_own_line_after_one_error_line() {
    let t = TestStack::new("hintline");
    t.stack("services:\n  api: { image: busybox }\n");
    let out = run(&t, &["logs", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        "error: no service `nosuch` in this stack\nhint: services: api\n"
    );
}

/// Removes, when dropped, the dangling images whose last step is the instruction given: the
/// cache a failed build of a test leaves.
struct FailedBuildCache(&'static str);

impl Drop for FailedBuildCache {
    fn drop(&mut self) {
        let dangling = support::docker(&[
            "images",
            "--filter",
            "dangling=true",
            "--quiet",
            "--no-trunc",
        ]);
        for id in dangling.split_whitespace() {
            let step = support::docker(&[
                "image",
                "inspect",
                "--format",
                "{{json .ContainerConfig.Cmd}}",
                id,
            ]);
            if step.contains(self.0) {
                support::docker(&["image", "rm", id]);
            }
        }
    }
}

#[test]
fn issue9_failing_build_masks_the_secret_its_step_printed() {
    let base = busybox_image();
    let t = TestStack::new("buildmask");
    let secret = format!("tok-{}-value", t.stage);
    t.write(
        &format!(".env.{}", t.stage),
        &format!("API_TOKEN={secret}\n"),
    );
    t.write(
        "api/Dockerfile",
        &format!("FROM {base}\nARG API_TOKEN\nRUN echo \"token is $API_TOKEN\" && exit 3\n"),
    );
    t.stack("services:\n  api:\n    build: { context: api, args: [API_TOKEN] }\n");
    // A failed classic build (`DOCKER_BUILDKIT=0`, or an engine without BuildKit) leaves the
    // image of its `ARG` step behind (build cache, as with `docker build`; BuildKit keeps its
    // cache apart from the images); it is this test's, so it goes at the end, on failure too.
    let _cache = FailedBuildCache("ARG API_TOKEN");
    let out = run(&t, &["build"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("token is ****"), "{stderr}");
    assert!(!stderr.contains(&secret), "the secret leaked: {stderr}");
    assert!(!stdout_of(&out).contains(&secret));
}

#[test]
fn r14_validation_error_quoting_a_secret_masks_it() {
    let t = TestStack::new("r14");
    let secret = format!("pw-{}-x", t.stage);
    t.write(
        &format!(".env.{}", t.stage),
        &format!("DB_PASSWORD={secret}\n"),
    );
    t.stack("services:\n  db:\n    image: busybox\n    ports: [\"${DB_PASSWORD}\"]\n");
    for args in [&["config"][..], &["up"][..]] {
        let out = run(&t, args);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("`****`"), "{stderr}");
        assert!(!stderr.contains(&secret), "the secret leaked: {stderr}");
    }

    // A secret from the process environment that the stack file names, too.
    let secret = format!("proc{}tok", t.stage);
    t.stack("services:\n  db:\n    image: busybox\n    ports: [\"${OTHER_API_TOKEN}\"]\n");
    let out = t
        .cmd()
        .env("OTHER_API_TOKEN", &secret)
        .arg("config")
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains(&secret), "the secret leaked: {stderr}");
    assert!(stderr.contains("`****`"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Defect 6: config masks whole values and stays parseable

#[test]
fn defect6_config_masks_whole_values() {
    let t = TestStack::new("d6");
    t.write(
        &format!(".env.{}", t.stage),
        "DB_PASSWORD=postgres\nPRIMARY_URL=postgresql://app:postgres@primary/app\n",
    );
    t.stack(
        r#"
services:
  db:
    image: busybox
    command: run --password ${DB_PASSWORD}
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD}
      DATABASE_URL: postgresql://app:${DB_PASSWORD}@db/app
      REPLICA_URL: postgresql://replica/app
      PRIMARY: ${PRIMARY_URL}
      IMAGE: ${BASE_IMAGE:-postgres:16}
"#,
    );
    let out = run(&t, &["config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let yaml = stdout_of(&out);
    assert!(yaml.contains("POSTGRES_PASSWORD: '****'"), "{yaml}");
    assert!(yaml.contains("DATABASE_URL: '****'"), "{yaml}");
    assert!(
        yaml.contains("REPLICA_URL: postgresql://replica/app"),
        "a value without the secret is left whole: {yaml}"
    );
    assert!(!yaml.contains("****ql"), "{yaml}");
    assert!(
        yaml.contains("PRIMARY: '****'"),
        "a value from .env.STAGE that holds the password: {yaml}"
    );
    assert!(
        yaml.contains("IMAGE: postgres:16"),
        "a default in the stack file is not a secret: {yaml}"
    );
    assert!(yaml.contains("- '****'"), "{yaml}");

    // The output is a valid stack file: stackctl's own loader reads it back.
    let again = TestStack::new("d6-again");
    again.stack(&yaml);
    let out = run(&again, &["config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    // The JSON form masks the same whole values.
    let out = run(&t, &["--json", "config"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config --json");
    let env = &json["services"]["db"]["environment"];
    assert_eq!(env["DATABASE_URL"], "****");
    assert_eq!(env["REPLICA_URL"], "postgresql://replica/app");
}

// ---------------------------------------------------------------------------------------
// Defect 9: every command honours --json or refuses it

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn defect9_config_honours_json() {
    let t = TestStack::new("d9cfg");
    t.write(
        &format!(".env.{}", t.stage),
        "API_TOKEN=tok-abcdef\nPORT=81\n",
    );
    t.stack("services:\n  api:\n    image: busybox\n    environment: { API_TOKEN: \"${API_TOKEN}\", PORT: \"${PORT}\" }\n  db: { image: busybox }\n");
    let out = run(&t, &["--json", "config", "--services"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let names: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(names, serde_json::json!(["api", "db"]));

    let out = run(&t, &["--json", "config", "--sources"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let rows = json_lines(&stdout_of(&out));
    let token = rows
        .iter()
        .find(|r| r["variable"] == "API_TOKEN")
        .expect("API_TOKEN row");
    assert_eq!(token["value"], "****");
    assert!(token["used_at"].as_str().unwrap().contains(".yml:"));
    assert!(!stdout_of(&out).contains("tok-abcdef"));
    assert!(stderr_of(&out).is_empty(), "{}", stderr_of(&out));
}

#[test]
fn defect9_completions_and_man_refuse_json() {
    let t = TestStack::new("d9refuse");
    for args in [
        &["--json", "completions", "bash"][..],
        &["--json", "man"][..],
    ] {
        let out = run(&t, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stdout_of(&out).is_empty());
        assert!(
            stderr_of(&out).starts_with("error: `--json` does not apply"),
            "{}",
            stderr_of(&out)
        );
    }
}

/// (kind, action, status) of each event.
fn shape(events: &[serde_json::Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn defect9_build_and_up_send_the_same_events_and_logs_ps_honour_json() {
    let base = busybox_image();
    let t = TestStack::new("d9engine");
    t.write(
        "app/Dockerfile",
        &format!("FROM {base}\nRUN echo built > /built\n"),
    );
    t.stack(
        "services:\n  app:\n    build: app\n    init: true\n    command: [sh, -c, \"echo hello from app; exec sleep 3600\"]\n",
    );
    let out = run(&t, &["--json", "build"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let build = json_lines(&stdout_of(&out));
    let image_events = |events: &[serde_json::Value]| {
        shape(events)
            .into_iter()
            .filter(|(kind, _, _)| kind == "image")
            .collect::<Vec<_>>()
    };
    let expected = vec![
        (
            "image".to_string(),
            "building".to_string(),
            "started".to_string(),
        ),
        ("image".to_string(), "built".to_string(), "done".to_string()),
    ];
    assert_eq!(image_events(&build), expected);
    assert_eq!(
        shape(&build).last().unwrap(),
        &(
            "summary".to_string(),
            "build".to_string(),
            "done".to_string()
        )
    );

    let out = run(&t, &["--json", "up", "--build"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let up = json_lines(&stdout_of(&out));
    assert_eq!(image_events(&up), expected, "{up:?}");
    assert_eq!(
        shape(&up).last().unwrap(),
        &("summary".to_string(), "up".to_string(), "done".to_string())
    );
    for event in build.iter().chain(&up) {
        for field in [
            "ts",
            "stage",
            "object",
            "kind",
            "action",
            "status",
            "elapsed_ms",
        ] {
            assert!(event.get(field).is_some(), "`{field}` missing: {event}");
        }
    }

    wait_for("the app's first line", Duration::from_secs(20), || {
        stdout_of(&run(&t, &["logs"])).contains("hello from app")
    });
    let out = run(&t, &["--json", "logs"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let lines = json_lines(&stdout_of(&out));
    assert_eq!(lines[0]["service"], "app");
    assert_eq!(lines[0]["container"], t.container("app"));
    assert_eq!(lines[0]["line"], "hello from app");

    let out = run(&t, &["--json", "ps"]);
    let rows = json_lines(&stdout_of(&out));
    assert_eq!(rows[0]["service"], "app");
    assert_eq!(rows[0]["state"], "running");

    for (args, command) in [
        (&["--json", "stop"][..], "stop"),
        (&["--json", "start"][..], "start"),
        (&["--json", "down"][..], "down"),
        (&["--json", "purge", "--yes"][..], "purge"),
    ] {
        let out = run(&t, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr_of(&out));
        let events = json_lines(&stdout_of(&out));
        assert_eq!(
            shape(&events).last().unwrap(),
            &(
                "summary".to_string(),
                command.to_string(),
                "done".to_string()
            ),
            "{args:?}"
        );
    }
}

#[test]
fn defect9_init_honours_json() {
    let t = TestStack::new("d9init");
    let out = run(&t, &["--json", "init", "--no-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let events = json_lines(&stdout_of(&out));
    assert_eq!(
        shape(&events),
        vec![
            (
                "file".to_string(),
                "written".to_string(),
                "done".to_string()
            ),
            (
                "file".to_string(),
                "written".to_string(),
                "done".to_string()
            ),
        ]
    );
    assert!(stderr_of(&out).is_empty(), "{}", stderr_of(&out));
}

// ---------------------------------------------------------------------------------------
// Defect 10: an interrupt the user asked for exits 130 quietly

#[test]
fn defect10_interrupted_logs_follow_exits_130_quietly() {
    let t = TestStack::new("d10");
    t.stack(&format!(
        "services:\n  talk:\n    image: {}\n    init: true\n    command: [sh, -c, \"echo talking; exec sleep 3600\"]\n",
        busybox_image()
    ));
    let out = run(&t, &["up"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let mut logs = t
        .std_cmd()
        .args(["logs", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logs -f");
    // Interrupt once the first line is through: the stream is being followed.
    let mut stdout = BufReader::new(logs.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read a line");
    assert!(first.contains("talk | talking"), "{first}");
    interrupt(&logs);
    let status = wait_with_deadline(&mut logs, Duration::from_secs(5));
    let stderr = read_all(logs.stderr.take());
    assert_eq!(status.code(), Some(130));
    assert_eq!(stderr, "", "an interrupt asked for is quiet");
}

// ---------------------------------------------------------------------------------------
// R15: the lock directory

/// `stackctl down` with the lock directory under `tmp` (no XDG_RUNTIME_DIR), umask 000.
fn down_with_tmp(t: &TestStack, tmp: &Path) -> Output {
    let binary = assert_cmd::cargo::cargo_bin("stackctl");
    std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" down")
        .arg(binary)
        .current_dir(&t.dir)
        .env("STACKCTL_ENV", &t.stage)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env("TMPDIR", tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run stackctl down")
}

fn lock_dir(tmp: &Path) -> PathBuf {
    // SAFETY: getuid has no preconditions.
    tmp.join(format!("stackctl-{}", unsafe { libc::getuid() }))
}

#[test]
fn r15_lock_dir_is_private_whatever_the_umask() {
    let t = TestStack::new("r15mode");
    t.stack("services:\n  a: { image: busybox }\n");
    let tmp = tempfile::tempdir().unwrap();
    let out = down_with_tmp(&t, tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let dir = lock_dir(tmp.path());
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let lock = dir.join(format!("{}-{}.lock", t.project, t.stage));
    assert_eq!(std::fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn r15_lock_dir_of_another_user_or_through_a_symlink_is_refused() {
    let t = TestStack::new("r15refuse");
    t.stack("services:\n  a: { image: busybox }\n");

    // A symlink in its place, to a directory another user could read.
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, lock_dir(tmp.path())).unwrap();
    let out = down_with_tmp(&t, tmp.path());
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing lock directory"), "{stderr}");
    assert!(stderr.contains("it is a symlink"), "{stderr}");
    assert!(stderr.contains("\nhint: remove it"), "{stderr}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A directory owned by someone else (this test runs as root where it can chown).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = lock_dir(tmp.path());
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let out = down_with_tmp(&t, tmp.path());
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("it belongs to user 65534"), "{stderr}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}

// ---------------------------------------------------------------------------------------
// R16: an empty stage

#[test]
fn r16_empty_stage_flag_or_variable_exits_2() {
    let t = TestStack::new("r16");
    t.write("stacks/dev.yml", "services:\n  a: { image: busybox }\n");
    let out = run(&t, &["-e", "", "config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).starts_with("error: the stage is empty\nhint: "));
    let out = t
        .cmd()
        .env("STACKCTL_ENV", "")
        .arg("config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stdout_of(&out).is_empty(), "dev was not used");
}

// ---------------------------------------------------------------------------------------
// R17: an engine that answers the ping, then nothing

/// A Unix socket server posing as an engine: it answers `/_ping` and `/version` (when
/// `answers_ping`), and never answers anything else. Counts the requests it left hanging.
struct HangingEngine {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    hung: Arc<AtomicUsize>,
}

impl HangingEngine {
    fn start(answers_ping: bool) -> HangingEngine {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let hung = Arc::new(AtomicUsize::new(0));
        let counter = hung.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let counter = counter.clone();
                std::thread::spawn(move || serve(stream, answers_ping, &counter));
            }
        });
        HangingEngine {
            _dir: dir,
            socket,
            hung,
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

fn serve(stream: UnixStream, answers_ping: bool, hung: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let answer = if !answers_ping {
            None
        } else if path.ends_with("/_ping") {
            Some(("text/plain", "OK".to_string()))
        } else if path.ends_with("/version") {
            Some((
                "application/json",
                r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#.to_string(),
            ))
        } else {
            None
        };
        match answer {
            Some((kind, body)) => {
                let _ = write!(
                    writer,
                    "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => {
                hung.fetch_add(1, Ordering::SeqCst);
                // Never answer; keep the connection open until the client goes away.
                let mut sink = [0u8; 1024];
                while reader.read(&mut sink).unwrap_or(0) > 0 {}
                return;
            }
        }
    }
}

#[test]
fn r17_engine_call_that_hangs_is_bounded() {
    let engine = HangingEngine::start(true);
    let t = TestStack::new("r17bound");
    t.stack("services:\n  a: { image: busybox }\n");
    let started = Instant::now();
    let out = t
        .cmd()
        .env("DOCKER_HOST", engine.host())
        .env("STACKCTL_CALL_TIMEOUT", "2")
        .arg("ps")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer within 2s"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn r17_ctrl_c_ends_a_hanging_call_at_once() {
    let engine = HangingEngine::start(true);
    let t = TestStack::new("r17int");
    t.stack("services:\n  a: { image: busybox }\n");
    let mut ps = t
        .std_cmd()
        .env("DOCKER_HOST", engine.host())
        .arg("ps")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("a call left hanging", Duration::from_secs(10), || {
        engine.hung.load(Ordering::SeqCst) > 0
    });
    let sent = Instant::now();
    interrupt(&ps);
    let status = wait_with_deadline(&mut ps, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(read_all(ps.stderr.take()), "");
}

#[test]
fn r17_ctrl_c_on_a_changing_command_stops_after_its_grace() {
    let engine = HangingEngine::start(true);
    let t = TestStack::new("r17grace");
    t.stack("services:\n  a: { image: busybox }\n");
    let mut up = t
        .std_cmd()
        .env("DOCKER_HOST", engine.host())
        .arg("up")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("a call left hanging", Duration::from_secs(10), || {
        engine.hung.load(Ordering::SeqCst) > 0
    });
    let sent = Instant::now();
    interrupt(&up);
    let status = wait_with_deadline(&mut up, Duration::from_secs(10));
    let stderr = read_all(up.stderr.take());
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        stderr.contains("stopped waiting 3s after the interrupt"),
        "{stderr}"
    );
}

#[test]
fn r17_ctrl_c_ends_the_connect_wait_at_once() {
    let engine = HangingEngine::start(false);
    let t = TestStack::new("r17conn");
    t.stack("services:\n  a: { image: busybox }\n");
    let mut up = t
        .std_cmd()
        .env("DOCKER_HOST", engine.host())
        .arg("up")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the connect call", Duration::from_secs(10), || {
        engine.hung.load(Ordering::SeqCst) > 0
    });
    let sent = Instant::now();
    interrupt(&up);
    let status = wait_with_deadline(&mut up, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// R22: raw or misleading messages

#[test]
fn r22_unreadable_stack_file_gets_the_right_hint() {
    let t = TestStack::new("r22file");
    std::fs::create_dir_all(t.path(&format!("stacks/{}.yml", t.stage))).unwrap();
    let out = run(&t, &["config"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(": it is a directory"), "{stderr}");
    assert!(!stderr.contains("stackctl init"), "{stderr}");

    let t = TestStack::new("r22missing");
    let out = run(&t, &["config"]);
    assert!(
        stderr_of(&out).contains("no such file\n  hint: run `stackctl init"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn r22_directory_flag_on_a_file_says_it_is_not_a_directory() {
    let t = TestStack::new("r22dir");
    let file = t.path("plain-file");
    std::fs::write(&file, "").unwrap();
    let out = run(&t, &["-C", file.to_str().unwrap(), "config"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
    assert!(!stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn r22_refused_connection_names_the_engine_and_hints() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dead.sock");
    // A socket file nobody listens on: connecting to it is refused.
    drop(UnixListener::bind(&socket).unwrap());
    let t = TestStack::new("r22refused");
    t.stack("services:\n  a: { image: busybox }\n");
    let out = t
        .cmd()
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .arg("ps")
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: cannot reach the Docker engine at unix://{}: it refused the connection\nhint: is the Docker daemon running? Start it (`systemctl start docker`), or point DOCKER_HOST at a running one\n",
            socket.display()
        )
    );
}

// ---------------------------------------------------------------------------------------
// R23: init does not write through symlinks

#[test]
fn r23_init_refuses_a_symlinked_env_file() {
    let t = TestStack::new("r23");
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");
    // A dangling link: without the check, init would create the target with the secrets.
    std::os::unix::fs::symlink(&target, t.path(&format!(".env.{}", t.stage))).unwrap();
    let out = run(&t, &["init", "--no-run"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a symlink"), "{stderr}");
    assert!(!target.exists(), "init wrote through the link");

    // --force does not overwrite (or chmod) an existing target either.
    std::fs::write(&target, "KEEP=1\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&t, &["init", "--no-run", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "KEEP=1\n");
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o644);

    // The stack file it writes gets the same treatment.
    let t = TestStack::new("r23stack");
    let stack_target = outside.path().join("stack-target");
    std::os::unix::fs::symlink(&stack_target, t.path(&format!("stacks/{}.yml", t.stage))).unwrap();
    let out = run(&t, &["init", "--no-run", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("is a symlink"));
    assert!(!stack_target.exists(), "init wrote through the link");
}
