//! Anonymous volumes across recreations, with the real binary against the real engine: a
//! recreated container keeps the data of the one it replaces (an image's `VOLUME`, a
//! service's `volumes: [/path]`) on every replacement path — an edited environment, a rebuilt
//! image, the `pre_start` swap, a scale up and back — `up -V` renews them, `--dry-run` says
//! which, and `purge` leaves none of them behind, whatever ran before it (an interrupted
//! `data save`, a failed `pre_start`, a killed `up`, `data load --force`, `data copy`).

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file count the engine's volumes: one at a time.
static ENGINE_VOLUMES: Mutex<()> = Mutex::new(());

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
    let _one = ENGINE_VOLUMES.lock().unwrap_or_else(|e| e.into_inner());
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

/// Every volume on the engine.
fn engine_volumes() -> BTreeSet<String> {
    docker(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The volumes of every container of the stage.
fn stage_volumes(stage: &str) -> BTreeSet<String> {
    let filter = format!("label=io.stackctl.stage={stage}");
    docker(&["ps", "-aq", "--filter", &filter])
        .lines()
        .flat_map(volumes_of)
        .collect()
}

/// Run `stackctl ARGS` (with `env`) until a line of its standard error contains `line`, then
/// send it `signal`; its exit code (`None`: killed by the signal).
fn signal_at(
    t: &TestStack,
    env: &[(&str, &str)],
    args: &[&str],
    line: &str,
    signal: i32,
) -> Option<i32> {
    let mut child = t
        .std_cmd()
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stackctl");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    for text in std::io::BufReader::new(stderr).lines() {
        let text = text.expect("read stderr");
        seen.push_str(&text);
        seen.push('\n');
        if text.contains(line) {
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
            break;
        }
    }
    assert!(
        seen.contains(line),
        "no `{line}` line from {args:?}:\n{seen}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} did not end after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn data_stack() -> String {
    format!(
        r#"
services:
  a:
    build: ./a
    image: anon-a:dev
    init: true
    stop_grace_period: 1s
    environment:
      V: ${{V:-1}}
      FAIL: ${{FAIL:-0}}
    pre_start:
      - command: [sh, -c, "test \"$$FAIL\" != 1"]
  app:
    image: {busybox}
    init: true
    stop_grace_period: 1s
    command: [sleep, "3600"]
    volumes: ["vol:/vol", /scratch]
    volumes_from: [store]
    environment:
      V: ${{V:-1}}
volumes:
  vol: {{}}
data_containers:
  store:
    build: ./a
    image: anon-a:dev
    volumes: [/store]
"#,
        busybox = busybox_image(),
    )
}

#[test]
fn no_anonymous_volume_outlives_its_stage() {
    let _one = ENGINE_VOLUMES.lock().unwrap_or_else(|e| e.into_inner());
    let before = engine_volumes();
    let t = TestStack::new("anon-purge");
    let other = format!("{}b", t.stage);
    t.write(
        "a/Dockerfile",
        &format!(
            "FROM {}\nVOLUME /data\nCMD [\"sleep\", \"3600\"]\n",
            busybox_image()
        ),
    )
    .stack(&data_stack())
    .write(&format!("stacks/{other}.yml"), &data_stack());
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let ok = |args: &[&str], env: &[(&str, &str)]| {
        let output = t
            .cmd()
            .envs(env.iter().copied())
            .args(args)
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };

    ok(&["up"], &[]);
    docker_ok(&[
        "exec",
        &t.container("app"),
        "sh",
        "-c",
        "echo v > /vol/f; echo s > /store/f; echo x > /scratch/f",
    ]);
    docker_ok(&["exec", &t.container("a"), "sh", "-c", "echo d > /data/f"]);
    seen.extend(stage_volumes(&t.stage));

    // An interrupted save, while it stops the services.
    let code = signal_at(
        &t,
        &[],
        &["data", "save", "-o", "x.tar.zst"],
        "stopping",
        libc::SIGINT,
    );
    assert_eq!(code, Some(130));
    ok(&["up"], &[]);

    // A failed `pre_start` (the swap's new container goes, the old one serves).
    let (code, _, err) = run(&t, "1", &["up"]);
    assert_eq!(code, 0, "{err}");
    let output = t.cmd().env("FAIL", "1").arg("up").output().expect("run");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    seen.extend(stage_volumes(&t.stage));

    // A killed `up`, while it creates the recreated containers; the next one repairs.
    signal_at(&t, &[("V", "2")], &["up"], "creating", libc::SIGKILL);
    seen.extend(stage_volumes(&t.stage));
    ok(&["up"], &[("V", "2")]);
    assert_eq!(read(&t.container("a"), "/data/f").as_deref(), Some("d"));
    seen.extend(stage_volumes(&t.stage));

    // A save, then a load over the data (`--force`), then a copy into a second stage.
    ok(&["data", "save", "-o", "full.tar.zst"], &[("V", "2")]);
    ok(
        &["data", "load", "--force", "-i", "full.tar.zst"],
        &[("V", "2")],
    );
    seen.extend(stage_volumes(&t.stage));
    ok(&["up"], &[("V", "2"), ("STACKCTL_ENV", other.as_str())]);
    ok(
        &["data", "copy", "--from", t.stage.as_str(), "--force"],
        &[("V", "2"), ("STACKCTL_ENV", other.as_str())],
    );
    seen.extend(stage_volumes(&other));
    assert_eq!(
        read(&format!("{other}-{}--app", t.project), "/store/f").as_deref(),
        Some("s")
    );

    ok(&["purge", "--yes"], &[("V", "2")]);
    ok(
        &["purge", "--yes"],
        &[("V", "2"), ("STACKCTL_ENV", other.as_str())],
    );
    let after = engine_volumes();
    let left: Vec<&String> = seen.iter().filter(|v| after.contains(*v)).collect();
    assert!(left.is_empty(), "purge left the stages' volumes: {left:?}");
    // Nor any other volume that was not there before and that nothing mounts or owns.
    let strays: Vec<&String> = after
        .difference(&before)
        .filter(|v| {
            docker(&["ps", "-aq", "--filter", &format!("volume={v}")])
                .trim()
                .is_empty()
                && docker(&["volume", "inspect", "--format", "{{len .Labels}}", v]).trim() == "0"
        })
        .collect();
    assert!(
        strays.is_empty(),
        "volumes left that nothing owns: {strays:?}"
    );
}
