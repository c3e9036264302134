//! `up` against the real engine: health-gated order, one-shot dependencies, the no-op second
//! run, and recreating exactly the service whose configuration changed.

mod support;

use support::{busybox_image, docker_ok, TestStack};

/// `docker inspect` one field of a container.
fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container])
        .trim()
        .to_string()
}

fn container_id(container: &str) -> String {
    inspect(container, "{{.Id}}")
}

/// Seconds since midnight of an engine timestamp: RFC 3339 (`…T19:31:50.12Z`) or Go's
/// default form (`2026-11-22 19:31:50.12 +0000 UTC`); one day is enough within a test.
fn seconds(timestamp: &str) -> f64 {
    let time = if timestamp.contains(' ') {
        timestamp.split_whitespace().nth(1)
    } else {
        timestamp.split('T').nth(1)
    }
    .unwrap_or_else(|| panic!("not a timestamp: {timestamp}"));
    let time = time.trim_end_matches('Z');
    let time = time.split(['+', '-']).next().unwrap_or(time);
    let parts: Vec<f64> = time
        .split(':')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a timestamp: {timestamp}"))
        })
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn dependent_starts_only_after_its_dependency_is_healthy_and_one_shot_completed() {
    let t = TestStack::new("order");
    let image = busybox_image();
    t.stack(&format!(
        r#"
services:
  db:
    image: {image}
    init: true
    command: [sh, -c, "sleep 1.5; touch /tmp/ready; exec sleep 3600"]
    healthcheck: {{ test: [CMD, sh, -c, "test -f /tmp/ready"], interval: 500ms, retries: 20 }}
  migrate:
    image: {image}
    command: [sh, -c, "sleep 1; echo migrated"]
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
    depends_on:
      db: {{ condition: service_healthy }}
      migrate: {{ condition: service_completed_successfully }}
"#
    ));
    t.cmd().arg("up").assert().success();

    let db = t.container("db");
    let api = t.container("api");
    let migrate = t.container("migrate");
    assert_eq!(inspect(&db, "{{.State.Health.Status}}"), "healthy");
    // The first passing health check of db ended before api started.
    let log = inspect(
        &db,
        "{{range .State.Health.Log}}{{.ExitCode}} {{.End}}\n{{end}}",
    );
    let first_ok = log
        .lines()
        .find(|l| l.starts_with("0 "))
        .map(|l| l[2..].to_string())
        .expect("db has a passing health check");
    let api_started = inspect(&api, "{{.State.StartedAt}}");
    assert!(
        seconds(&api_started) >= seconds(&first_ok),
        "api started at {api_started}, before db was healthy at {first_ok}"
    );
    // The one-shot finished with 0 before api started.
    assert_eq!(inspect(&migrate, "{{.State.ExitCode}}"), "0");
    let migrate_finished = inspect(&migrate, "{{.State.FinishedAt}}");
    assert!(
        seconds(&api_started) >= seconds(&migrate_finished),
        "api started at {api_started}, before migrate finished at {migrate_finished}"
    );

    // Nothing changed: a completed one-shot is current, nothing is recreated or re-run.
    let ids: Vec<String> = [&db, &api, &migrate]
        .iter()
        .map(|c| container_id(c))
        .collect();
    t.cmd().args(["up", "--dry-run"]).assert().success();
    let out = t.cmd().args(["--json", "up"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON event per line");
        if event["kind"] == "service" {
            assert_eq!(event["action"], "unchanged", "{line}");
        }
    }
    let after: Vec<String> = [&db, &api, &migrate]
        .iter()
        .map(|c| container_id(c))
        .collect();
    assert_eq!(ids, after);
    assert_eq!(inspect(&migrate, "{{.State.FinishedAt}}"), migrate_finished);
}

#[test]
fn failing_one_shot_dependency_fails_naming_it_with_its_logs() {
    let t = TestStack::new("oneshot");
    let image = busybox_image();
    t.stack(&format!(
        r#"
services:
  migrate:
    image: {image}
    command: [sh, -c, "echo no database here >&2; exit 3"]
  api:
    image: {image}
    command: [sleep, "3600"]
    depends_on: {{ migrate: {{ condition: service_completed_successfully }} }}
"#
    ));
    let out = t.cmd().arg("up").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("service `migrate` exited with code 3"),
        "{stderr}"
    );
    assert!(stderr.contains("no database here"), "{stderr}");
    // api was never created: it waits for migrate.
    assert!(
        !t.containers().contains(&t.container("api")),
        "{:?}",
        t.containers()
    );
}

const THREE: &str = r#"
services:
  a:
    image: IMAGE
    init: true
    command: [sleep, "3600"]
    environment: { COLOUR: blue }
  b:
    image: IMAGE
    init: true
    command: [sleep, "3600"]
  c:
    image: IMAGE
    init: true
    command: [httpd, -f, -p, "8080"]
    ports: ["8080"]
"#;

fn ids(t: &TestStack) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .map(|s| container_id(&t.container(s)))
        .collect()
}

/// Which of a, b, c got a new container between two snapshots.
fn recreated(before: &[String], after: &[String]) -> Vec<&'static str> {
    ["a", "b", "c"]
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (x, y))| x != y)
        .map(|(s, _)| *s)
        .collect()
}

#[test]
fn second_up_changes_nothing_and_each_change_recreates_exactly_its_service() {
    let t = TestStack::new("recreate");
    let image = busybox_image();
    // A second image with another ID, labelled so the test's cleanup removes it.
    let alt = format!("{}/alt:1", t.project);
    let ctx = t.path("alt");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {image}\nLABEL variant=alt\n"),
    )
    .unwrap();
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &alt,
        "--label",
        &format!("io.stackctl.project={}", t.project),
        &ctx.to_string_lossy(),
    ]);

    let yaml = THREE.replace("IMAGE", image);
    t.stack(&yaml);
    t.cmd().arg("up").assert().success();
    let first = ids(&t);

    // Second run: nothing changes, and the JSON events say so, line by line.
    let out = t.cmd().args(["--json", "up"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for event in &events {
        for key in [
            "ts",
            "stage",
            "object",
            "kind",
            "action",
            "status",
            "elapsed_ms",
        ] {
            assert!(event.get(key).is_some(), "missing {key}: {event}");
        }
    }
    let services: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["kind"] == "service").collect();
    assert_eq!(services.len(), 3, "{stdout}");
    assert!(
        services.iter().all(|e| e["action"] == "unchanged"),
        "{stdout}"
    );
    assert_eq!(events.last().unwrap()["kind"], "summary");
    assert_eq!(ids(&t), first);

    let cases = [
        (
            "a",
            "environment",
            yaml.replace("COLOUR: blue", "COLOUR: green"),
        ),
        (
            "b",
            "command",
            yaml.replace(
                "    command: [sleep, \"3600\"]\n  c:",
                "    command: [sleep, \"3601\"]\n  c:",
            ),
        ),
        (
            "c",
            "ports",
            yaml.replace("ports: [\"8080\"]", "ports: [\"8080\", \"9090\"]"),
        ),
        (
            "a",
            "image",
            yaml.replacen(&format!("image: {image}"), &format!("image: {alt}"), 1),
        ),
    ];
    let mut current = first;
    for (service, field, changed) in cases {
        t.stack(&changed);
        let out = t.cmd().args(["up", "--dry-run"]).assert().success();
        let plan = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        let line = plan
            .lines()
            .find(|l| l.contains(&t.container(service)))
            .unwrap_or_else(|| panic!("no line for {service}: {plan}"));
        assert!(line.starts_with("recreate"), "{plan}");
        assert!(line.contains(&format!("{field} changed")), "{plan}");
        assert_eq!(
            plan.lines().filter(|l| l.starts_with("recreate")).count(),
            1,
            "{plan}"
        );
        assert_eq!(ids(&t), current, "--dry-run changed nothing");

        t.cmd().arg("up").assert().success();
        let now = ids(&t);
        assert_eq!(
            recreated(&current, &now),
            vec![service],
            "a change of {field}"
        );
        // Back to the original stack (recreating that service again) for the next case.
        t.stack(&yaml);
        t.cmd().arg("up").assert().success();
        current = ids(&t);
    }
}

#[test]
fn up_service_converges_it_and_its_dependencies_only() {
    let t = TestStack::new("select");
    let image = busybox_image();
    t.stack(&format!(
        r#"
services:
  db: {{ image: {image}, init: true, command: [sleep, "3600"] }}
  api: {{ image: {image}, init: true, command: [sleep, "3600"], depends_on: [db] }}
  other: {{ image: {image}, init: true, command: [sleep, "3600"] }}
"#
    ));
    t.cmd().args(["up", "api"]).assert().success();
    let mut names = t.containers();
    names.sort();
    let mut expected = vec![t.container("api"), t.container("db")];
    expected.sort();
    assert_eq!(names, expected);
    let out = t.cmd().args(["up", "nope"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("no service `nope`"), "{stderr}");
    // stop/start keep the containers.
    let id = container_id(&t.container("api"));
    t.cmd().args(["stop", "api"]).assert().success();
    assert_eq!(inspect(&t.container("api"), "{{.State.Running}}"), "false");
    assert_eq!(inspect(&t.container("db"), "{{.State.Running}}"), "true");
    t.cmd().args(["start"]).assert().success();
    assert_eq!(inspect(&t.container("api"), "{{.State.Running}}"), "true");
    assert_eq!(container_id(&t.container("api")), id);
    // ps lists the services with their state.
    let out = t.cmd().args(["ps"]).assert().success();
    let table = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(
        table.contains("other") && table.contains("missing"),
        "{table}"
    );
    let out = t.cmd().args(["--json", "ps"]).assert().success();
    let rows = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let api_row = rows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON row"))
        .find(|r| r["service"] == "api")
        .expect("api row");
    assert_eq!(api_row["state"], "running");
}

#[test]
fn defect1_a_service_running_the_tag_another_service_builds_is_built_first() {
    let t = TestStack::new("shared-tag");
    let image = busybox_image();
    let tag = format!("{}/bb:dev", t.project);
    t.write(
        "db/Dockerfile",
        &format!("FROM {image}\nCMD [\"sleep\", \"3600\"]\n"),
    );
    // `api` (first in the file) and a data container run the tag that `db` builds.
    t.stack(&format!(
        r#"
services:
  api: {{ image: "{tag}", init: true }}
  db: {{ build: ./db, image: "{tag}", init: true }}
data_containers:
  files: {{ image: "{tag}", volumes: [/files] }}
tasks:
  check: {{ service: api, command: [echo, from-the-shared-tag] }}
"#
    ));
    let out = t.cmd().arg("up").assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains("is not on this engine"), "{stderr}");
    assert_eq!(inspect(&t.container("api"), "{{.State.Running}}"), "true");
    assert_eq!(inspect(&t.container("db"), "{{.State.Running}}"), "true");

    // exec (and init, which runs tasks the same way) builds the tag too when it is missing.
    t.cmd().arg("down").assert().success();
    docker_ok(&["rmi", "-f", &tag]);
    let out = t.cmd().args(["exec", "check"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(stdout.trim(), "from-the-shared-tag");
}

#[test]
fn defect4_a_failed_network_connect_leaves_no_container() {
    let t = TestStack::new("connect-fails");
    let image = busybox_image();
    // Joining the engine's `host` network after create is refused by the engine.
    t.stack(&format!(
        r#"
services:
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
    networks: [default, hostnet]
networks:
  hostnet: {{ external: true, name: host }}
"#
    ));
    let out = t.cmd().arg("up").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("connect to network `host`"), "{stderr}");
    assert!(
        t.containers().is_empty(),
        "a container that missed a network must not exist: {:?}",
        t.containers()
    );
}

#[test]
fn r4_a_half_made_container_of_the_stage_is_recreated_and_a_foreign_one_is_named() {
    let t = TestStack::new("half-made");
    let image = busybox_image();
    t.stack(&format!(
        "services:\n  api: {{ image: {image}, init: true, command: [sleep, \"3600\"] }}\n"
    ));
    // What a killed `up` can leave: the stage's labels, no config hash.
    let name = t.container("api");
    docker_ok(&[
        "create",
        "--name",
        &name,
        "--label",
        &format!("io.stackctl.project={}", t.project),
        "--label",
        &format!("io.stackctl.stage={}", t.stage),
        "--label",
        "io.stackctl.role=service",
        "--label",
        "io.stackctl.service=api",
        image,
        "sleep",
        "3600",
    ]);
    let half_made = container_id(&name);
    t.cmd().arg("up").assert().success();
    assert_ne!(container_id(&name), half_made, "recreated");
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert!(!inspect(
        &name,
        "{{index .Config.Labels \"io.stackctl.config-hash\"}}"
    )
    .is_empty());

    // A container that is not the stage's holding the name: named, left alone.
    t.cmd().arg("down").assert().success();
    /// Removes the unlabelled container (cleanup by labels cannot find it) on every path.
    struct Foreign(String);
    impl Drop for Foreign {
        fn drop(&mut self) {
            support::docker(&["rm", "-f", &self.0]);
        }
    }
    let foreign = Foreign(
        docker_ok(&["create", "--name", &name, image, "sleep", "3600"])
            .trim()
            .to_string(),
    );
    let out = t.cmd().arg("up").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("not this stage's"), "{stderr}");
    assert_eq!(
        container_id(&name),
        foreign.0,
        "the foreign container is left alone"
    );
}

#[test]
fn defect3_depends_on_required_false_skips_an_inactive_dependency_with_a_warning() {
    let t = TestStack::new("optional-dep");
    let image = busybox_image();
    let stack = |required: &str| {
        format!(
            r#"
services:
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
    depends_on: {{ debug: {{ condition: service_started{required} }} }}
  debug: {{ image: {image}, profiles: [debug], command: [sleep, "3600"] }}
"#
        )
    };
    t.stack(&stack(", required: false"));
    let out = t.cmd().arg("up").assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("warning: service `api` starts without `debug`"),
        "{stderr}"
    );
    assert_eq!(t.containers(), vec![t.container("api")]);
    // Required (the default): still refused, with its location.
    t.stack(&stack(""));
    let out = t.cmd().arg("up").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("only in profile `debug`"), "{stderr}");
}

#[test]
fn defect3_depends_on_restart_true_restarts_the_dependent_when_its_dependency_is_recreated() {
    let t = TestStack::new("restart-dep");
    let image = busybox_image();
    let stack = |version: &str| {
        format!(
            r#"
services:
  db: {{ image: {image}, init: true, command: [sleep, "3600"], environment: {{ V: "{version}" }} }}
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
    depends_on: {{ db: {{ condition: service_started, restart: true }} }}
"#
        )
    };
    t.stack(&stack("1"));
    t.cmd().arg("up").assert().success();
    let api = t.container("api");
    let (id, started) = (container_id(&api), inspect(&api, "{{.State.StartedAt}}"));
    t.stack(&stack("2"));
    let out = t.cmd().arg("up").assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("restarted"), "{stderr}");
    assert_eq!(container_id(&api), id, "restarted, not recreated");
    assert_ne!(inspect(&api, "{{.State.StartedAt}}"), started);
    assert_eq!(inspect(&api, "{{.State.Running}}"), "true");
}
