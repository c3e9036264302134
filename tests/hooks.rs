//! Lifecycle hooks (`pre_start`, `post_start`, `pre_stop`) with the real binary against the
//! real engine: steps in order and not again when nothing changed, a failing step that
//! leaves the old container serving, `pre_stop` on `down`, `post_start` in the running
//! container, a `task:` step, steps run once for a service with replicas.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{busybox_image, docker, docker_ok, TestStack};

fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container])
        .trim()
        .to_string()
}

/// Run `stackctl ARGS`: exit code, stdout, stderr.
fn run(t: &TestStack, args: &[&str]) -> (i32, String, String) {
    let output = t.cmd().args(args).output().expect("run stackctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Poll `check` until it returns true or `limit` passes.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ordered_stack(image: &str, second: &str) -> String {
    format!(
        r#"
services:
  app:
    image: {image}
    init: true
    command: [sh, -c, "cat /data/log; exec sleep 3600"]
    volumes: ["data:/data"]
    pre_start:
      - command: [sh, -c, "echo one >> /data/log"]
      - command: [sh, -c, "echo {second} >> /data/log"]
      - task: three
volumes:
  data: {{}}
tasks:
  three: {{ service: app, command: [sh, -c, "echo three >> /data/log"] }}
"#
    )
}

#[test]
fn pre_start_steps_run_in_order_before_the_start_and_not_again_when_unchanged() {
    let t = TestStack::new("pre-start-order");
    let image = busybox_image();
    t.stack(&ordered_stack(image, "two"));
    let name = t.container("app");

    let (_, plan, _) = run(&t, &["up", "--dry-run"]);
    assert!(
        plan.contains(&format!(
            "pre_start  service  {name}  (step 3: task three; the service is created)"
        )),
        "dry run names the steps and why: {plan}"
    );

    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "up: {err}");
    for line in [
        "pre_start 1/3 (sh -c echo one >> /data/log) done",
        "pre_start 3/3 (task three) done",
    ] {
        assert!(err.contains(line), "live line `{line}` in: {err}");
    }
    // The service's command printed the file when it started: every step ran before it.
    eventually(Duration::from_secs(10), "the service's output", || {
        docker(&["logs", &name]).contains("three")
    });
    assert_eq!(
        docker(&["logs", &name]).lines().collect::<Vec<_>>(),
        vec!["one", "two", "three"],
        "steps ran in order, all before the start"
    );
    let id = inspect(&name, "{{.Id}}");

    // Nothing changed: no step runs, the container is the same.
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "second up: {err}");
    assert!(
        !err.contains("pre_start"),
        "no step on an unchanged service: {err}"
    );
    assert_eq!(inspect(&name, "{{.Id}}"), id);
    let file = docker_ok(&["exec", &name, "cat", "/data/log"]);
    assert_eq!(file.lines().count(), 3, "no step ran again: {file}");

    // A changed step recreates the service and runs every step again.
    t.stack(&ordered_stack(image, "deux"));
    let (_, plan, _) = run(&t, &["up", "--dry-run", "--json"]);
    assert!(
        plan.lines()
            .any(|l| l.contains("\"action\":\"pre_start\"") && l.contains("service is recreated")),
        "dry run events: {plan}"
    );
    let (code, out, err) = run(&t, &["up", "--json"]);
    assert_eq!(code, 0, "up after a step changed: {err}");
    let done: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains("\"kind\":\"service\"")
                && l.contains("\"action\":\"pre_start\"")
                && l.contains("\"status\":\"done\"")
        })
        .collect();
    assert_eq!(done.len(), 3, "one done event per step: {out}");
    assert_ne!(inspect(&name, "{{.Id}}"), id, "recreated");
    let file = docker_ok(&["exec", &name, "cat", "/data/log"]);
    assert_eq!(
        file.lines().collect::<Vec<_>>(),
        vec!["one", "two", "three", "one", "deux", "three"]
    );
}

fn served_stack(image: &str, version: &str, step: &str) -> String {
    format!(
        r#"
services:
  web:
    image: {image}
    init: true
    environment: {{ VERSION: "{version}" }}
    command: [sh, -c, "mkdir -p /tmp/www && echo $$VERSION > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
{step}"#
    )
}

#[test]
fn a_failing_pre_start_step_keeps_the_old_container_serving_and_the_next_up_retries() {
    let t = TestStack::new("pre-start-fail");
    let image = busybox_image();
    let name = t.container("web");
    t.stack(&served_stack(image, "v1", ""));
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "first up: {err}");
    let fetch = |name: &str| {
        std::process::Command::new("docker")
            .args(["exec", name, "wget", "-q", "-O-", "http://127.0.0.1:8080/"])
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                )
            })
            .unwrap_or((false, String::new()))
    };
    eventually(Duration::from_secs(10), "v1 served", || {
        fetch(&name) == (true, "v1".to_string())
    });
    let old_id = inspect(&name, "{{.Id}}");

    // A request loop against the old container for the whole failing `up`.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let requests = {
        let (stop, served, failed, name) =
            (stop.clone(), served.clone(), failed.clone(), name.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if fetch(&name) == (true, "v1".to_string()) {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let broken = "    pre_start:\n      - command: [sh, -c, \"echo migrating; echo schema is broken >&2; sleep 1; exit 3\"]\n";
    t.stack(&served_stack(image, "v2", broken));
    let (code, _, err) = run(&t, &["up"]);
    stop.store(true, Ordering::SeqCst);
    requests.join().expect("request loop");
    assert_eq!(code, 1, "a failing step fails up: {err}");
    for part in [
        "service `web`: pre_start step 1 of 1 (`sh -c echo migrating; echo schema is broken >&2; sleep 1; exit 3`) exited with code 3",
        "schema is broken",
        "migrating",
        "the old container keeps running",
    ] {
        assert!(err.contains(part), "`{part}` in: {err}");
    }
    assert!(served.load(Ordering::SeqCst) > 0, "the loop made requests");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no request failed while up ran"
    );
    assert_eq!(
        inspect(&name, "{{.Id}}"),
        old_id,
        "the old container is the same"
    );
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(fetch(&name), (true, "v1".to_string()));
    assert_eq!(
        t.containers(),
        vec![name.clone()],
        "the new container and the step's are gone"
    );

    // Fixed: the next `up` runs the step, swaps and serves v2.
    let fixed = "    pre_start:\n      - command: [sh, -c, \"echo migrated\"]\n";
    t.stack(&served_stack(image, "v2", fixed));
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "up with the step fixed: {err}");
    assert!(
        err.contains("pre_start 1/1 (sh -c echo migrated) done"),
        "{err}"
    );
    assert_ne!(inspect(&name, "{{.Id}}"), old_id, "recreated");
    eventually(Duration::from_secs(10), "v2 served", || {
        fetch(&name) == (true, "v2".to_string())
    });
    assert_eq!(t.containers(), vec![name.clone()]);
}

fn exec_hooks_stack(image: &str, version: &str) -> String {
    format!(
        r#"
services:
  app:
    image: {image}
    init: true
    command: [sleep, "3600"]
    environment: {{ VERSION: "{version}" }}
    volumes: ["marks:/marks"]
    stop_grace_period: 1s
    post_start:
      - command: [sh, -c, "echo $$GREETING from $$(hostname) >> /tmp/post_start"]
        environment: [GREETING]
    pre_stop:
      - command: sh -c "echo bye from $$HOSTNAME >> /marks/pre_stop"
      - command: [sleep, "30"]
volumes:
  marks: {{}}
"#
    )
}

#[test]
fn post_start_runs_in_the_running_container_and_pre_stop_before_each_stop() {
    let t = TestStack::new("exec-hooks");
    let image = busybox_image();
    t.stack(&exec_hooks_stack(image, "1"));
    // A hook's `KEY` without a value takes the variable's value, as a service's does.
    t.write(&format!(".env.{}", t.stage), "GREETING=hello\n");
    let name = t.container("app");
    let volume = format!("{}-{}_marks", t.stage, t.project);
    let marks = || {
        docker_ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/marks"),
            image,
            "cat",
            "/marks/pre_stop",
        ])
    };
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "up: {err}");
    assert!(err.contains("post_start 1/1"), "post_start line: {err}");
    let first = inspect(&name, "{{.Config.Hostname}}");
    let marker = docker_ok(&["exec", &name, "cat", "/tmp/post_start"]);
    assert_eq!(
        marker.trim(),
        format!("hello from {first}"),
        "post_start ran inside the running container, with its environment"
    );

    // `stop` runs pre_stop (the second hook outlasts the grace period: a warning, the stop
    // goes on); `start` runs post_start again.
    let (code, _, err) = run(&t, &["stop"]);
    assert_eq!(code, 0, "stop: {err}");
    assert!(
        err.contains("pre_stop hook 2 of 2 (`sleep 30`) did not finish within the grace period (1s); stopping anyway"),
        "{err}"
    );
    assert_eq!(inspect(&name, "{{.State.Running}}"), "false");
    assert_eq!(marks().trim(), format!("bye from {first}"));
    let (code, _, err) = run(&t, &["start"]);
    assert_eq!(code, 0, "start: {err}");
    let marker = docker_ok(&["exec", &name, "cat", "/tmp/post_start"]);
    assert_eq!(
        marker.lines().count(),
        2,
        "post_start after start: {marker}"
    );

    // A recreate runs the old container's pre_stop.
    t.stack(&exec_hooks_stack(image, "2"));
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "up (recreate): {err}");
    let second = inspect(&name, "{{.Config.Hostname}}");
    assert_ne!(first, second);
    assert_eq!(marks().lines().count(), 2);

    let (code, _, err) = run(&t, &["down"]);
    assert_eq!(code, 0, "down: {err}");
    assert!(err.contains("pre_stop 1/2"), "pre_stop line: {err}");
    assert!(t.containers().is_empty(), "down removed the container");
    assert_eq!(
        marks().lines().collect::<Vec<_>>(),
        vec![
            format!("bye from {first}"),
            format!("bye from {first}"),
            format!("bye from {second}")
        ],
        "pre_stop ran in the container before each stop"
    );
}

#[test]
fn a_failing_post_start_fails_up_naming_the_hook() {
    let t = TestStack::new("post-start-fail");
    let image = busybox_image();
    t.stack(&format!(
        r#"
services:
  app:
    image: {image}
    init: true
    command: [sleep, "3600"]
    post_start:
      - command: [sh, -c, "echo no warmup here; exit 4"]
"#
    ));
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("service `app`: post_start hook 1 of 1 (`sh -c echo no warmup here; exit 4`) exited with code 4"),
        "{err}"
    );
    assert!(err.contains("no warmup here"), "{err}");
}

#[test]
fn hooks_are_checked_at_their_place_in_the_stack_file() {
    let t = TestStack::new("hook-errors");
    t.stack(
        r#"services:
  app:
    image: busybox
    pre_start:
      - user: root
      - task: migrat
      - command: "true"
        colour: red
    post_start:
      - user: root
tasks:
  migrate: { service: app, command: "true" }
"#,
    );
    let (code, _, err) = run(&t, &["config"]);
    assert_eq!(code, 2, "{err}");
    let file = format!("stacks/{}.yml", t.stage);
    for part in [
        format!("{file}:5:13: `pre_start` item 1 of service `app` has none of `command`, `image` or `task`"),
        format!("{file}:6:15: service `app`: `pre_start` step 2 runs task `migrat`, which is not a task"),
        "did you mean `migrate`?".to_string(),
        "unknown key `colour` in `pre_start.2` of service `app`".to_string(),
        "`post_start` item 1 of service `app` has no `command`".to_string(),
    ] {
        assert!(err.contains(&part), "`{part}` in: {err}");
    }
}

#[test]
fn config_masks_secrets_in_hook_environments() {
    let t = TestStack::new("hook-secrets");
    t.stack(
        r#"services:
  app:
    image: busybox
    pre_start:
      - command: [migrate]
        environment: { DB_PASSWORD: s3cret-value }
    pre_stop:
      - command: [drain]
        environment: [API_TOKEN]
"#,
    );
    t.write(&format!(".env.{}", t.stage), "API_TOKEN=tok-123456\n");
    let (code, out, err) = run(&t, &["config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("s3cret-value") && !out.contains("tok-123456"),
        "{out}"
    );
    assert_eq!(out.matches("'****'").count(), 2, "{out}");
}

#[test]
fn with_replicas_the_steps_run_once_before_any_replica_starts() {
    let t = TestStack::new("pre-start-replicas");
    let image = busybox_image();
    t.stack(&format!(
        r#"
services:
  app:
    image: {image}
    init: true
    scale: 3
    command: [sh, -c, "cat /data/log; exec sleep 3600"]
    volumes: ["data:/data"]
    pre_start:
      - command: [sh, -c, "echo step >> /data/log"]
volumes:
  data: {{}}
"#
    ));
    let name = t.container("app");
    let (code, _, err) = run(&t, &["up"]);
    assert_eq!(code, 0, "up: {err}");
    assert!(err.contains("pre_start 1/1"), "the step is reported: {err}");
    let file = docker_ok(&["exec", &name, "cat", "/data/log"]);
    assert_eq!(file.lines().collect::<Vec<_>>(), vec!["step"], "one run");
    // Every replica printed the file when it started: the step had run before each.
    for replica in [name.clone(), format!("{name}--2"), format!("{name}--3")] {
        eventually(Duration::from_secs(10), "the replica's output", || {
            docker(&["logs", &replica]).contains("step")
        });
        assert_eq!(
            docker(&["logs", &replica]).lines().collect::<Vec<_>>(),
            vec!["step"],
            "{replica}"
        );
    }
}
