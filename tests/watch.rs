//! `stackctl watch` against the real engine: syncs land in the container within a second of
//! the save, a burst of saves is one action, deletions are removed, `sync+exec` runs its
//! command, `initial_sync` copies what changed before, `restart` restarts the container, a
//! rebuild recreates the service from a new image, Ctrl-C exits 130 and leaves the stage
//! running; bad `develop` keys are located errors.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use support::{busybox_image, docker, docker_ok, TestStack};

/// A project whose `api` builds from `api/` and watches it: `src/` synced to `/app/src`,
/// `conf/` synced with a command run after, `deps.txt` rebuilds.
fn project(name: &str) -> TestStack {
    let t = TestStack::new(name);
    let image = busybox_image();
    t.write(
        "api/Dockerfile",
        &format!("FROM {image}\nCOPY . /app\nCMD [\"sleep\", \"3600\"]\n"),
    );
    t.write("api/.dockerignore", "notes/\n");
    t.write("api/deps.txt", "one\n");
    t.write("api/src/hello.txt", "hello\n");
    t.write("api/conf/c.txt", "first\n");
    t.write("api/notes/n.txt", "not in the image\n");
    t.write("api/restart.txt", "1\n");
    t.stack(&format!(
        r#"
services:
  api:
    build: ./api
    image: "{project}/api:dev"
    init: true
    develop:
      watch:
        - path: ./api/src
          action: sync
          target: /app/src
          initial_sync: true
        - path: ./api/conf
          action: sync+exec
          target: /app/conf
          exec:
            command: [sh, -c, "cat /app/conf/c.txt > /tmp/seen"]
        - path: ./api/restart.txt
          action: restart
        - path: ./api
          action: rebuild
          ignore: [src/, conf/, restart.txt]
"#,
        project = t.project
    ));
    t.cmd().arg("up").assert().success();
    t
}

/// `stackctl watch --json` running, its JSON events on a channel.
struct Watching {
    child: Child,
    events: Receiver<serde_json::Value>,
}

impl Watching {
    /// `stackctl --json ARGS`, once its `watch` event says it watches (events of an `up`
    /// before it are skipped).
    fn start(t: &TestStack, args: &[&str]) -> Watching {
        let mut child = t
            .std_cmd()
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn stackctl watch");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line) {
                    if sender.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        let mut watching = Watching { child, events };
        loop {
            let event = watching.next(Duration::from_secs(30));
            if event["kind"] == "watch" && event["action"] == "watch" {
                assert_eq!(event["status"], "started", "{event}");
                return watching;
            }
        }
    }

    /// The next event, failing after `within`.
    fn next(&mut self, within: Duration) -> serde_json::Value {
        match self.events.recv_timeout(within) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => panic!("no watch event within {within:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!("stackctl watch ended: {status:?}")
            }
        }
    }

    fn interrupt(&mut self) -> Option<i32> {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "watch did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cat PATH` in the container (empty when it fails).
fn cat(t: &TestStack, path: &str) -> String {
    docker(&["exec", &t.container("api"), "cat", path])
}

/// Poll until `cat PATH` in the container gives `expected`: the time from `start` to the end
/// of the first poll that saw it (an upper bound of when it got there), or `None` once a poll
/// ends after `within` without seeing it.
fn until_content(
    t: &TestStack,
    path: &str,
    expected: &str,
    start: Instant,
    within: Duration,
) -> Option<Duration> {
    loop {
        let seen = cat(t, path) == expected;
        let elapsed = start.elapsed();
        if seen {
            return Some(elapsed);
        }
        if elapsed > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn inspect(what: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, what])
        .trim()
        .to_string()
}

#[test]
fn watch_syncs_within_a_second_bursts_once_removes_deletions_and_runs_sync_exec() {
    let t = project("watch-sync");
    // initial_sync: what changed before `watch` started is copied when it starts.
    t.write("api/src/early.txt", "saved before watch\n");
    let mut watching = Watching::start(&t, &["watch"]);
    assert_eq!(cat(&t, "/app/src/early.txt"), "saved before watch\n");

    // A save shows up inside the container within 1 s.
    t.write("api/src/hello.txt", "hello, edited\n");
    let saved = Instant::now();
    let took = until_content(
        &t,
        "/app/src/hello.txt",
        "hello, edited\n",
        saved,
        Duration::from_secs(5),
    )
    .expect("the edit reached the container");
    eprintln!("save → in the container: {took:?}");
    assert!(
        took <= Duration::from_secs(1),
        "the edit took {took:?} to reach the container"
    );
    let event = watching.next(Duration::from_secs(5));
    assert_eq!(event["object"], "api", "{event}");
    assert_eq!(event["action"], "sync", "{event}");
    assert_eq!(event["status"], "done", "{event}");
    assert_eq!(event["reason"], "synced 1 file", "{event}");

    // A burst of 20 saves of one file is one sync; a later save is the next one.
    for n in 1..=20 {
        t.write("api/src/burst.txt", &format!("save {n}\n"));
    }
    let event = watching.next(Duration::from_secs(5));
    assert_eq!(event["action"], "sync", "{event}");
    assert_eq!(event["reason"], "synced 1 file", "{event}");
    assert_eq!(cat(&t, "/app/src/burst.txt"), "save 20\n");
    t.write("api/src/marker.txt", "after the burst\n");
    let event = watching.next(Duration::from_secs(5));
    assert_eq!(event["reason"], "synced 1 file", "{event}");
    assert_eq!(cat(&t, "/app/src/marker.txt"), "after the burst\n");

    // A deleted file disappears in the container.
    std::fs::remove_file(t.path("api/src/hello.txt")).unwrap();
    let event = watching.next(Duration::from_secs(5));
    assert_eq!(event["reason"], "removed 1 file", "{event}");
    let gone = docker(&["exec", &t.container("api"), "ls", "/app/src"]);
    assert!(!gone.contains("hello.txt"), "{gone}");

    // sync+exec: the file is synced, then the command runs in the container.
    t.write("api/conf/c.txt", "second\n");
    let event = watching.next(Duration::from_secs(5));
    assert_eq!(event["action"], "sync+exec", "{event}");
    assert_eq!(event["status"], "done", "{event}");
    assert_eq!(cat(&t, "/tmp/seen"), "second\n");

    // Only syncs happened: the container is the one `up` made.
    assert_eq!(watching.interrupt(), Some(130));
}

#[test]
fn watch_rebuild_recreates_the_service_and_ctrl_c_leaves_the_stage_running() {
    let t = project("watch-rebuild");
    let container = t.container("api");
    let (id_before, image_before) = (
        inspect(&container, "{{.Id}}"),
        inspect(&container, "{{.Image}}"),
    );
    // `up --watch`: an `up` (nothing to do here), then the same watch.
    let mut watching = Watching::start(&t, &["up", "--watch"]);

    // A file the build context's .dockerignore leaves out changes nothing: with a synced
    // file saved after it, the next action is that sync (a rebuild would come first, or win).
    t.write("api/notes/n.txt", "still not in the image\n");
    t.write("api/src/after.txt", "synced\n");
    let event = watching.next(Duration::from_secs(5));
    assert_eq!(event["action"], "sync", "{event}");
    assert_eq!(event["reason"], "synced 1 file", "{event}");

    // restart: the same container, started again.
    let started_at = inspect(&container, "{{.State.StartedAt}}");
    t.write("api/restart.txt", "2\n");
    let event = watching.next(Duration::from_secs(30));
    assert_eq!(event["action"], "restart", "{event}");
    assert_eq!(event["reason"], "restarted", "{event}");
    assert_eq!(inspect(&container, "{{.Id}}"), id_before);
    assert_ne!(inspect(&container, "{{.State.StartedAt}}"), started_at);

    // deps.txt is in the image: a rebuild.
    t.write("api/deps.txt", "one\ntwo\n");
    let event = watching.next(Duration::from_secs(90));
    assert_eq!(event["action"], "rebuild", "{event}");
    assert_eq!(event["status"], "done", "{event}");
    assert_eq!(event["reason"], "rebuilt and recreated", "{event}");
    let (id_after, image_after) = (
        inspect(&container, "{{.Id}}"),
        inspect(&container, "{{.Image}}"),
    );
    assert_ne!(id_before, id_after, "a new container");
    assert_ne!(image_before, image_after, "from a new image");
    assert_eq!(cat(&t, "/app/deps.txt"), "one\ntwo\n");
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");

    // Ctrl-C: exit 130, the stage keeps running.
    assert_eq!(watching.interrupt(), Some(130));
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&container, "{{.Id}}"), id_after);
}

#[test]
fn ctrl_c_during_a_restart_leaves_the_service_running() {
    let t = TestStack::new("watch-restart-int");
    let image = busybox_image();
    t.write("restart.txt", "1\n");
    // `sleep` as PID 1 ignores SIGTERM: the stop takes the whole grace period.
    t.stack(&format!(
        r#"
services:
  api:
    image: {image}
    command: [sleep, "3600"]
    stop_grace_period: 3s
    develop:
      watch:
        - path: ./restart.txt
          action: restart
"#
    ));
    t.cmd().arg("up").assert().success();
    let container = t.container("api");
    let started_at = inspect(&container, "{{.State.StartedAt}}");
    let mut watching = Watching::start(&t, &["watch"]);

    // The engine's `kill` event: the restart's stop is under way.
    let mut events = std::process::Command::new("docker")
        .args([
            "events",
            "--filter",
            &format!("container={container}"),
            "--filter",
            "event=kill",
            "--format",
            "{{.Action}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker events");
    let mut kills = BufReader::new(events.stdout.take().expect("stdout")).lines();
    t.write("restart.txt", "2\n");
    let kill = kills.next();
    let _ = events.kill();
    let _ = events.wait();
    assert!(matches!(kill, Some(Ok(_))), "no kill event: {kill:?}");

    assert_eq!(watching.interrupt(), Some(130));
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
    assert_ne!(inspect(&container, "{{.State.StartedAt}}"), started_at);
}

/// The files the process `pid` has open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn rebuilds_of_a_long_watch_leave_no_connection_open() {
    let t = project("watch-fds");
    let mut watching = Watching::start(&t, &["watch"]);
    let pid = watching.child.id();
    let mut rebuild = |n: usize| {
        t.write("api/deps.txt", &format!("{n}\n"));
        let event = watching.next(Duration::from_secs(90));
        assert_eq!(event["action"], "rebuild", "{event}");
        assert_eq!(event["status"], "done", "{event}");
    };
    rebuild(1);
    let after_one = open_files(pid);
    for n in 2..=5 {
        rebuild(n);
    }
    // Each BuildKit build has a session, on a connection of its own: it is closed when the
    // build ends (one idle connection more or less in the client's pool is not a leak).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = open_files(pid);
        if now <= after_one + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} files open after 5 rebuilds, {after_one} after the first"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(watching.interrupt(), Some(130));
}

#[test]
fn bad_develop_keys_are_located_errors() {
    let t = TestStack::new("watch-invalid");
    t.stack(
        r#"
services:
  api:
    image: busybox
    develop:
      watch:
        - path: ./src
          action: sync
        - path: ./src
          action: rebuld
          target: /app
        - path: ./src
          action: rebuild
          target: /app
          exec: {command: [true]}
        - path: ./src
          action: sync+exec
          target: /app
          exec: {comand: [true]}
      wacth: []
"#,
    );
    let out = t.cmd().arg("watch").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = format!("stacks/{}.yml", t.stage);
    for expected in [
        format!("{file}:7:15: watch rule 1 of `develop` of service `api`: `action: sync` needs a `target`"),
        format!("{file}:10:19: service `api`, `develop.watch.1.action`: `rebuld` is not one of `sync`, `rebuild`"),
        format!("{file}:14:11: watch rule 3 of `develop` of service `api`: `target` applies only to the sync actions"),
        format!("{file}:15:11: watch rule 3 of `develop` of service `api`: `exec` applies only to `action: sync+exec`"),
        format!("{file}:19:18: unknown key `comand`"),
        format!("{file}:20:7: unknown key `wacth`"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    // The unknown action is the rule's only problem (its `target` is not judged by it).
    assert!(!stderr.contains("watch rule 2"), "{stderr}");
}

#[test]
fn a_valid_develop_section_is_part_of_the_resolved_stack() {
    let t = TestStack::new("watch-config");
    t.stack(
        r#"
services:
  api:
    image: busybox
    develop:
      watch:
        - { path: ./src, action: sync+exec, target: /app, ignore: "*.pyc", initial_sync: true, exec: { command: "kill -HUP 1", user: root } }
        - { path: ./requirements.txt, action: rebuild }
"#,
    );
    let out = t.cmd().args(["config", "--json"]).output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rules = &config["services"]["api"]["develop"]["watch"];
    assert_eq!(rules[0]["action"], "sync+exec", "{rules}");
    assert_eq!(rules[0]["ignore"], serde_json::json!(["*.pyc"]), "{rules}");
    assert_eq!(rules[0]["initial_sync"], true, "{rules}");
    assert_eq!(
        rules[0]["exec"]["command"],
        serde_json::json!(["kill", "-HUP", "1"]),
        "{rules}"
    );
    assert_eq!(rules[1]["action"], "rebuild", "{rules}");

    // `watch` needs the paths to exist, and a `rebuild` a `build:`; both are located.
    let out = t.cmd().arg("watch").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = format!("stacks/{}.yml", t.stage);
    assert!(
        stderr.contains(&format!(
            "{file}:7:19: service `api`: watch path `./src` does not exist"
        )),
        "{stderr}"
    );
    t.write("src/app.py", "print(1)\n");
    let out = t.cmd().arg("watch").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{file}:8:47: service `api`: `action: rebuild` needs a `build:`"
        )),
        "{stderr}"
    );
}
