//! `down`, `purge` and stages side by side against the real engine: data survives `down`,
//! `purge` leaves nothing with the stage's labels and touches nothing else.

mod support;

use support::{busybox_image, docker, docker_ok, stage_objects, TestStack};

/// Removes a container the test created without stackctl's labels, on every path.
struct Bystander(String);

impl Drop for Bystander {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}

#[test]
fn data_survives_down_and_purge_removes_only_the_stage() {
    let t = TestStack::new("life");
    let image = busybox_image();
    let yaml = format!(
        r#"
services:
  db:
    image: {image}
    init: true
    command: [sleep, "3600"]
    volumes_from: [dbdata]
    volumes: ["cache:/cache"]
data_containers:
  dbdata:
    image: {image}
    volumes: [/data]
volumes:
  cache: {{}}
"#
    );
    t.stack(&yaml);
    // A second stage of the same project, side by side.
    let other = format!("{}b", t.stage);
    t.write(&format!("stacks/{other}.yml"), &yaml);
    let bystander = Bystander(format!("{}-bystander", t.project));
    docker_ok(&["create", "--name", &bystander.0, image, "true"]);

    t.cmd().arg("up").assert().success();
    t.cmd()
        .env("STACKCTL_ENV", &other)
        .arg("up")
        .assert()
        .success();
    let db = t.container("db");
    let other_db = format!("{other}-{}--db", t.project);
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Running}}", &other_db]).trim(),
        "true"
    );
    docker_ok(&[
        "exec",
        &db,
        "sh",
        "-c",
        "echo kept > /data/file; echo cached > /cache/file",
    ]);

    // down: containers and network go, the data container and the volume stay.
    t.cmd().arg("down").assert().success();
    let left = stage_objects(&t.project, &t.stage);
    let data = format!("{}-{}--dbdata", t.stage, t.project);
    let volume = format!("{}-{}_cache", t.stage, t.project);
    assert!(left.contains(&data), "{left:?}");
    assert!(left.contains(&volume), "{left:?}");
    assert!(!left.contains(&db), "{left:?}");
    assert!(!left.iter().any(|o| o.ends_with("_default")), "{left:?}");

    t.cmd().arg("up").assert().success();
    let read = docker_ok(&["exec", &db, "sh", "-c", "cat /data/file /cache/file"]);
    assert_eq!(read, "kept\ncached\n");

    // purge without --yes off a terminal refuses.
    let out = t.cmd().arg("purge").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(stage_objects(&t.project, &t.stage).contains(&db));

    t.cmd().args(["purge", "--yes"]).assert().success();
    assert_eq!(stage_objects(&t.project, &t.stage), Vec::<String>::new());
    // The other stage and the unlabelled container are untouched.
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Running}}", &other_db]).trim(),
        "true"
    );
    docker_ok(&["inspect", &bystander.0]);
    t.cmd()
        .env("STACKCTL_ENV", &other)
        .args(["purge", "--yes"])
        .assert()
        .success();
    assert_eq!(stage_objects(&t.project, &other), Vec::<String>::new());
}

#[test]
fn logs_merge_services_with_prefixes() {
    let t = TestStack::new("logs");
    let image = busybox_image();
    t.stack(&format!(
        r#"
services:
  one: {{ image: {image}, init: true, command: [sh, -c, "echo hello from one; exec sleep 3600"] }}
  two: {{ image: {image}, command: [sh, -c, "echo first; echo second"] }}
"#
    ));
    t.cmd().args(["up", "--no-wait"]).assert().success();
    // Give the processes a moment to write.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = t.cmd().args(["logs"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("one | hello from one"), "{stdout}");
    assert!(stdout.contains("two | first"), "{stdout}");
    assert!(stdout.contains("two | second"), "{stdout}");
    let out = t
        .cmd()
        .args(["logs", "two", "--tail", "1"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(stdout, "two | second\n");
}

/// Defect 7: `restart: on-failure:5` reaches the engine as the policy and its count.
#[test]
fn defect7_on_failure_count_reaches_the_engine() {
    let t = TestStack::new("restart");
    let image = busybox_image();
    t.stack(&format!(
        "services:\n  api: {{ image: {image}, init: true, restart: \"on-failure:5\", command: [sleep, \"3600\"] }}\n"
    ));
    t.cmd().args(["up", "--no-wait"]).assert().success();
    let policy = docker_ok(&[
        "inspect",
        "--format",
        "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        &t.container("api"),
    ]);
    assert_eq!(policy.trim(), "on-failure:5");
}
