//! Anonymous volumes across recreations, with the real binary against the real engine: a
//! recreated container keeps the data of the one it replaces (an image's `VOLUME`, a
//! service's `volumes: [/path]`) on every replacement path — an edited environment, a rebuilt
//! image, the `pre_start` swap, a scale up and back — `up -V` renews them, `--dry-run` says
//! which, and `purge` leaves none of them behind.

mod support;

use std::collections::BTreeSet;

use support::{busybox_image, docker, docker_ok, TestStack};

/// Run `stackctl ARGS` with `V` set: exit code, stdout, stderr.
fn run(t: &TestStack, v: &str, args: &[&str]) -> (i32, String, String) {
    let output = t
        .cmd()
        .env("V", v)
        .args(args)
        .output()
        .expect("run stackctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn up(t: &TestStack, v: &str, args: &[&str]) -> String {
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    let (code, out, err) = run(t, v, &all);
    assert_eq!(code, 0, "up {args:?} failed:\n{out}\n{err}");
    format!("{out}{err}")
}

/// The content of `path` in `container`, or `None` when it cannot be read.
fn read(container: &str, path: &str) -> Option<String> {
    let output = std::process::Command::new("docker")
        .args(["exec", container, "cat", path])
        .output()
        .expect("docker exec");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The names of the volumes a container mounts.
fn volumes_of(container: &str) -> BTreeSet<String> {
    docker_ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
        container,
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

fn stack(scale: u32, pre_start: bool) -> String {
    let steps = if pre_start {
        "    pre_start:\n      - command: [sh, -c, \"test -f /marker\"]\n"
    } else {
        ""
    };
    format!(
        r#"
services:
  a:
    build: ./a
    image: anon-a:dev
    init: true
    stop_grace_period: 1s
    scale: {scale}
    environment:
      V: ${{V:-1}}
{steps}  b:
    image: {busybox}
    init: true
    stop_grace_period: 1s
    command: [sleep, "3600"]
    volumes: [/cache]
    environment:
      V: ${{V:-1}}
"#,
        busybox = busybox_image(),
    )
}

#[test]
fn recreations_keep_anonymous_volumes_and_renew_anon_volumes_empties_them() {
    let t = TestStack::new("anon-keep");
    t.write(
        "a/Dockerfile",
        &format!(
            "FROM {}\nVOLUME /data\nCOPY marker /marker\nCMD [\"sleep\", \"3600\"]\n",
            busybox_image()
        ),
    )
    .write("a/marker", "one\n")
    .stack(&stack(1, false));
    let a = t.container("a");
    let b = t.container("b");
    let mut seen: BTreeSet<String> = BTreeSet::new();

    up(&t, "1", &[]);
    docker_ok(&["exec", &a, "sh", "-c", "echo keep > /data/f"]);
    docker_ok(&["exec", &b, "sh", "-c", "echo kept > /cache/f"]);
    let a_volumes = volumes_of(&a);
    let b_volumes = volumes_of(&b);
    assert_eq!(
        (a_volumes.len(), b_volumes.len()),
        (1, 1),
        "one anonymous volume each"
    );
    seen.extend(a_volumes.iter().cloned());
    seen.extend(b_volumes.iter().cloned());

    // An edited environment variable.
    let plan = up(&t, "2", &["--dry-run"]);
    assert!(
        plan.contains("environment changed; keeps anonymous volume /data"),
        "{plan}"
    );
    assert!(
        plan.contains("environment changed; keeps anonymous volume /cache"),
        "{plan}"
    );
    let id_before = docker_ok(&["inspect", "--format", "{{.Id}}", &a]);
    up(&t, "2", &[]);
    assert_ne!(
        id_before,
        docker_ok(&["inspect", "--format", "{{.Id}}", &a]),
        "recreated"
    );
    assert_eq!(read(&a, "/data/f").as_deref(), Some("keep"), "env change");
    assert_eq!(read(&b, "/cache/f").as_deref(), Some("kept"), "env change");
    assert_eq!(volumes_of(&a), a_volumes, "the same volume, not a copy");
    assert_eq!(volumes_of(&b), b_volumes, "the same volume, not a copy");

    // A rebuilt image.
    t.write("a/marker", "two\n");
    let out = up(&t, "2", &[]);
    assert!(out.contains("build"), "the image is rebuilt:\n{out}");
    assert_eq!(read(&a, "/marker").as_deref(), Some("two"));
    assert_eq!(
        read(&a, "/data/f").as_deref(),
        Some("keep"),
        "image rebuild"
    );

    // The `pre_start` swap (`NAME--next` beside the old one).
    t.stack(&stack(1, true));
    let out = up(&t, "2", &[]);
    assert!(out.contains("pre_start"), "the steps ran:\n{out}");
    assert_eq!(
        read(&a, "/data/f").as_deref(),
        Some("keep"),
        "pre_start swap"
    );
    assert_eq!(volumes_of(&a), a_volumes, "the swap keeps the volume");

    // A scale from 1 to 2 and back.
    t.stack(&stack(2, true));
    up(&t, "2", &[]);
    let second = format!("{a}--2");
    seen.extend(volumes_of(&second));
    assert_eq!(read(&a, "/data/f").as_deref(), Some("keep"), "scaled to 2");
    assert_eq!(read(&second, "/data/f"), None, "a new replica has its own");
    t.stack(&stack(1, true));
    up(&t, "2", &[]);
    assert_eq!(read(&a, "/data/f").as_deref(), Some("keep"), "scaled back");
    assert_eq!(
        volumes_of(&a),
        a_volumes,
        "the first replica keeps its volume"
    );

    // `-V` asks for fresh ones, and says so first.
    let plan = up(&t, "3", &["-V", "--dry-run"]);
    assert!(
        plan.contains("renews anonymous volume /data (its data goes)"),
        "{plan}"
    );
    up(&t, "3", &["--renew-anon-volumes"]);
    assert_eq!(read(&a, "/data/f"), None, "-V empties /data");
    assert_eq!(read(&b, "/cache/f"), None, "-V empties /cache");
    seen.extend(volumes_of(&a));
    seen.extend(volumes_of(&b));

    let (code, out, err) = run(&t, "3", &["purge", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let left: Vec<String> = docker(&["volume", "ls", "-q"])
        .lines()
        .filter(|v| seen.contains(*v))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "purge left volumes behind: {left:?}");
}
