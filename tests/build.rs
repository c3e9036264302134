//! `stackctl build` against the real engine: `.dockerignore` applied as Docker does, build
//! args and labels reaching the image, failures reported with the failing step and leaving
//! nothing behind; with BuildKit (this engine's default) and with the classic builder
//! (`DOCKER_BUILDKIT=0`).

mod support;

use std::time::{Duration, Instant};

use predicates::prelude::*;
use support::{busybox_image, docker, docker_ok, lines, TestStack};

fn stack_with_api(t: &TestStack) {
    t.stack(
        "services:\n  api:\n    build:\n      context: api\n      args: { GREETING: hello, FROM_ENV: null }\n      labels: { team: data, note: 'say \"hi\" \\o/' }\n",
    );
}

#[test]
fn build_applies_dockerignore_args_and_labels_then_replaces_the_old_image() {
    let base = busybox_image();
    let t = TestStack::new("build-ok");
    stack_with_api(&t);
    t.write(
        "api/Dockerfile",
        &format!(
            "FROM {base}\nARG GREETING\nARG FROM_ENV\nCOPY . /ctx\nRUN echo \"$GREETING $FROM_ENV\" > /greeting\n"
        ),
    )
    .write(
        "api/.dockerignore",
        "# comment\n*.log\n**/*.tmp\nsecret\n!secret/public.txt\nnode_modules\n",
    )
    .write("api/app.py", "print('hi')\n")
    .write("api/app.log", "ignored at the root\n")
    .write("api/logs/keep.log", "kept: *.log is anchored at the root\n")
    .write("api/deep/dir/x.tmp", "ignored at any depth\n")
    .write("api/secret/private.key", "ignored\n")
    .write("api/secret/public.txt", "re-included\n")
    .write("api/node_modules/pkg/index.js", "ignored\n")
    .write("api/sub/node_modules/pkg/index.js", "kept: not at the root\n");

    t.cmd()
        .args(["build"])
        .env("FROM_ENV", "from-the-environment")
        .assert()
        .success()
        // BuildKit's steps: ARG and LABEL are no steps of their own.
        .stderr(predicate::str::contains("build api: [2/3] COPY . /ctx"))
        .stderr(predicate::str::contains(format!(
            "image {}/api:{}: built (",
            t.project, t.stage
        )));

    let tag = format!("{}/api:{}", t.project, t.stage);
    let files = docker_ok(&[
        "run",
        "--rm",
        &tag,
        "sh",
        "-c",
        "cd /ctx && find . -type f | sort",
    ]);
    assert_eq!(
        lines(&files),
        vec![
            "./.dockerignore",
            "./Dockerfile",
            "./app.py",
            "./logs/keep.log",
            "./secret/public.txt",
            "./sub/node_modules/pkg/index.js",
        ]
    );
    let greeting = docker_ok(&["run", "--rm", &tag, "cat", "/greeting"]);
    assert_eq!(greeting.trim(), "hello from-the-environment");

    let labels = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &tag,
    ]);
    let labels: serde_json::Value = serde_json::from_str(&labels).expect("labels JSON");
    // Image ownership under keys of its own: containers and images made from it inherit
    // them, and must not pass for the stage's (R9).
    assert_eq!(labels["io.stackctl.image.project"], t.project.as_str());
    assert_eq!(labels["io.stackctl.image.stage"], t.stage.as_str());
    assert_eq!(labels["io.stackctl.image.service"], "api");
    // The repository, not the tag: identical builds under two tags are one image.
    assert_eq!(
        labels["io.stackctl.image.repositories"],
        format!("{}/api", t.project).as_str()
    );
    assert!(labels.get("io.stackctl.image.tag").is_none(), "{labels}");
    assert!(labels.get("io.stackctl.project").is_none(), "{labels}");
    assert!(labels.get("io.stackctl.stage").is_none(), "{labels}");
    assert_eq!(labels["team"], "data");
    assert_eq!(labels["note"], r#"say "hi" \o/"#);

    // A rebuild that moves the tag removes the image it replaced (ours, now untagged).
    let old_id = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    t.write("api/app.py", "print('changed')\n");
    let out = t
        .cmd()
        .args(["--json", "build", "api"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let actions: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["object"].as_str().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default(),
                e["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            (tag.as_str(), "building", "started"),
            (tag.as_str(), "built", "done"),
            (t.stage.as_str(), "build", "done"),
        ]
    );
    assert!(events[1]["elapsed_ms"].as_u64().unwrap_or_default() > 0);
    let new_id = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_ne!(new_id, old_id);
    assert!(
        docker(&["image", "inspect", "--format", "{{.Id}}", old_id.trim()])
            .trim()
            .is_empty(),
        "the replaced image {old_id} is still there"
    );
}

#[test]
fn failing_step_exits_1_with_its_output_and_leaves_no_container() {
    let base = busybox_image();
    let t = TestStack::new("build-fail");
    let marker = format!("marker-{}", t.project);
    t.stack("services:\n  api:\n    build: api\n  broken:\n    build: broken\n  nobase:\n    build: nobase\n")
        .write(
            "api/Dockerfile",
            &format!("FROM {base}\nRUN echo {marker} && echo to-stderr >&2 && exit 7\n"),
        )
        .write("broken/Dockerfile", &format!("FROM {base}\nBOGUS instruction\n"))
        .write(
            "nobase/Dockerfile",
            &format!("ARG BASE=stackctl-fixture/absent-{}:1\nFROM $BASE\nRUN true\n", t.project),
        );

    let assert = t.cmd().args(["build", "api"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "error: build of image `{}/api:{}` failed at step 2/",
            t.project, t.stage
        )),
        "{stderr}"
    );
    assert!(stderr.contains("exit code: 7"), "{stderr}");
    assert!(stderr.contains(&format!("  | {marker}")), "{stderr}");
    assert!(stderr.contains("  | to-stderr"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "ANSI codes left in: {stderr:?}");

    // The classic builder: the same report from its own output, and the container of the
    // failing step removed (the step before is `FROM`: no cache image is left either).
    let assert = t
        .cmd()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "api"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "error: build of image `{}/api:{}` failed at step 2/3 `RUN echo {marker}",
            t.project, t.stage
        )),
        "{stderr}"
    );
    assert!(stderr.contains("returned a non-zero code: 7"), "{stderr}");
    assert!(stderr.contains(&format!("  | {marker}")), "{stderr}");
    assert!(stderr.contains("  | to-stderr"), "{stderr}");
    let leftovers: Vec<String> = lines(&docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Command}}",
    ]))
    .into_iter()
    .filter(|l| l.contains(&marker))
    .collect();
    assert!(
        leftovers.is_empty(),
        "intermediate containers left: {leftovers:?}"
    );

    t.cmd()
        .args(["build", "broken"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("`Dockerfile` is not valid"))
        .stderr(predicate::str::contains("unknown instruction: BOGUS"));

    t.cmd()
        .args(["build", "nobase"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "base image `stackctl-fixture/absent-{}:1` is not present locally",
            t.project
        )))
        .stderr(predicate::str::contains("hint: build or import"))
        .stderr(predicate::str::contains("`BASE`"));
}

#[test]
fn unknown_service_and_missing_context_are_usage_errors() {
    let t = TestStack::new("build-usage");
    stack_with_api(&t);
    let assert = t.cmd().args(["build", "apii"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    insta::assert_snapshot!(stderr.replace(&t.stage, "STAGE"), @r"
    error: no service, data container or task `apii` in `stacks/STAGE.yml`
    hint: did you mean `api`?
    ");
    // The stack names a context that does not exist: a stack file mistake, before any
    // engine call.
    let assert = t.cmd().args(["build", "api"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    let stderr = stderr
        .replace(&t.dir.display().to_string(), "PROJECT")
        .replace(&t.stage, "STAGE");
    insta::assert_snapshot!(stderr, @r"
    error: stacks/STAGE.yml:3:5: service `api`: build context `api` is not a directory
      hint: `build:` paths are relative to the project directory `PROJECT`
    ");
}

#[test]
fn unreachable_daemon_is_one_clear_line() {
    let t = TestStack::new("build-nodaemon");
    stack_with_api(&t);
    t.write("api/Dockerfile", "FROM scratch\n");
    let assert = t
        .cmd()
        .args(["build"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: cannot reach the Docker engine at unix:///nonexistent.sock"),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 2, "{stderr}");
}

/// How many processes of this machine run a command line holding `marker`: a `RUN` step of
/// a BuildKit build is a process of the engine's machine, not a container (this engine is
/// local in the tests).
fn processes_with(marker: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}

#[test]
fn classic_builder_interrupt_stops_the_build_exits_130_and_leaves_no_container() {
    let base = busybox_image();
    let t = TestStack::new("build-interrupt");
    let marker = format!("marker-{}", t.project);
    t.stack("services:\n  slow:\n    build: slow\n").write(
        "slow/Dockerfile",
        &format!("FROM {base}\nRUN echo {marker} && sleep 60\n"),
    );
    let running = || {
        lines(&docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Command}}",
        ]))
        .into_iter()
        .filter(|l| l.contains(&marker))
        .count()
    };
    let mut child = t
        .std_cmd()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start stackctl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while running() == 0 {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the RUN step never started");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sending SIGINT to the child this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().expect("wait for stackctl");
    assert_eq!(status.code(), Some(130));
    let deadline = Instant::now() + Duration::from_secs(20);
    while running() > 0 {
        assert!(
            Instant::now() < deadline,
            "the build's container is still there after the interrupt"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn r18_interrupt_cancels_a_buildkit_build_that_up_runs_exits_130_and_leaves_nothing() {
    let base = busybox_image();
    let t = TestStack::new("up-build-interrupt");
    let marker = format!("marker-{}", t.project);
    // `sleep` first: the shell stays, its command line holding the marker.
    t.stack("services:\n  slow:\n    build: slow\n    command: [sleep, \"300\"]\n")
        .write(
            "slow/Dockerfile",
            &format!("FROM {base}\nRUN sleep 60; echo {marker}\n"),
        );
    let mut child = t
        .std_cmd()
        .args(["up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start stackctl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_with(&marker) == 0 {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the RUN step never started");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let interrupted = Instant::now();
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sending SIGINT to the child this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().expect("wait for stackctl");
    assert_eq!(status.code(), Some(130));
    assert!(
        interrupted.elapsed() < Duration::from_secs(15),
        "up waited for the build to end"
    );
    // The engine cancels the build: its step's process ends, no image is made.
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_with(&marker) > 0 {
        assert!(
            Instant::now() < deadline,
            "the build's RUN step still runs after the interrupt"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tag = format!("{}/slow:{}", t.project, t.stage);
    assert!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &tag])
            .trim()
            .is_empty(),
        "the interrupted build made {tag}"
    );
    assert!(
        t.containers().is_empty(),
        "nothing was created after the interrupt"
    );
    // The next `up` builds and starts the service.
    t.write(
        "slow/Dockerfile",
        &format!("FROM {base}\nRUN echo {marker}-done\n"),
    );
    t.cmd().args(["up"]).assert().success();
    assert_eq!(t.containers().len(), 1, "{:?}", t.containers());
}

#[test]
fn up_rebuilds_only_the_image_whose_context_changed_and_recreates_only_its_services() {
    let base = busybox_image();
    let t = TestStack::new("ctx-change");
    // Isolated cache of file hashes: the test sees a cold cache, then its own warm one.
    let cache = t.root.path().join("cache");
    for dir in ["api", "worker"] {
        t.write(
            &format!("{dir}/Dockerfile"),
            &format!("FROM {base}\nCOPY . /app\nCMD [\"sleep\", \"3600\"]\n"),
        )
        .write(&format!("{dir}/.dockerignore"), "*.log\n")
        .write(&format!("{dir}/app.py"), "print(1)\n");
    }
    t.stack(
        "services:\n  api:\n    build: ./api\n    init: true\n  worker:\n    build: ./worker\n    init: true\n",
    );
    let up = |args: &[&str]| {
        let out = t
            .cmd()
            .env("XDG_CACHE_HOME", &cache)
            // With context monitors (off by default where CI is set): after the first `up`,
            // a no-op `up` asks them instead of walking, and every edit must still be seen.
            .env("STACKCTL_CONTEXT_MONITOR", "on")
            .args(args)
            .output()
            .expect("run stackctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = up(&["up"]);
    assert_eq!(code, 0, "{stderr}");
    let ids = |service: &str| docker_ok(&["inspect", "--format", "{{.Id}}", &t.container(service)]);
    let (api, worker) = (ids("api"), ids("worker"));
    let old_image = docker_ok(&["inspect", "--format", "{{.Image}}", &t.container("api")]);

    // An ignored file changes nothing.
    t.write("api/debug.log", "noise\n");
    let (code, stdout, stderr) = up(&["up", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("build "), "{stdout}");

    // An edit to a file the image is built from: only that image, named with the file.
    t.write("api/app.py", "print(2)\n");
    let (code, stdout, stderr) = up(&["up", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(build context changed: api/app.py"),
        "{stdout}"
    );
    assert!(!stdout.contains("worker:"), "{stdout}");
    let (code, _, stderr) = up(&["up"]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(ids("api"), api, "api is recreated");
    assert_eq!(ids("worker"), worker, "worker is untouched");
    let new_image = docker_ok(&["inspect", "--format", "{{.Image}}", &t.container("api")]);
    assert_ne!(new_image, old_image);
    // The replaced image is gone: no container of any stage uses it.
    assert!(
        docker(&["image", "inspect", "--format", "{{.Id}}", old_image.trim()])
            .trim()
            .is_empty(),
        "the replaced image {old_image} is still there"
    );
    // And the next `up` is a no-op again.
    let (code, stdout, stderr) = up(&["up", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("build "), "{stdout}");

    // A monitor watches each context, and remembers the digest with its token.
    let monitors = |dir: &str| {
        let pattern = format!("__monitor-context {}$", t.dir.join(dir).display());
        pgrep(&pattern)
    };
    assert_eq!(monitors("api").len(), 1, "one monitor of api/");
    assert!(
        std::fs::read_dir(cache.join("stackctl/contexts"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".monitored")),
        "a digest is remembered with the monitor's token"
    );
    // An edit after that is seen through the monitor, and so is a new directory's file.
    t.write("worker/lib/util.py", "x = 1\n");
    let (code, stdout, stderr) = up(&["up", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(build context changed: worker/lib"),
        "{stdout}"
    );
    // A monitor ends with its context.
    std::fs::remove_dir_all(t.dir.join("worker")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !monitors("worker").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the monitor of worker/ is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(t.dir.join("api")).unwrap();
    while !monitors("api").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the monitor of api/ is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PIDs of processes whose command line matches `pattern` (`pgrep -f`).
fn pgrep(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("run pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn copy_sees_the_same_context_whichever_builder_runs_the_build() {
    let base = busybox_image();
    let t = TestStack::new("build-hidden");
    let dockerfile = format!("FROM {base}\nCOPY . /ctx\n");
    // `selfignored`: `.dockerignore` lists itself (BuildKit, which does not read it from an
    // upload: it is left out). `dfignored`: it lists the Dockerfile, and `inline` has none
    // on disk: both need the engine to hide the Dockerfile sent (the classic builder).
    t.stack(&format!(
        "services:\n  selfignored:\n    build: selfignored\n  dfignored:\n    build: dfignored\n  inline:\n    build:\n      context: inline\n      dockerfile_inline: |\n        FROM {base}\n        COPY . /ctx\n"
    ))
    .write("selfignored/Dockerfile", &dockerfile)
    .write("selfignored/.dockerignore", ".dockerignore\n*.log\n")
    .write("selfignored/app.py", "1\n")
    .write("selfignored/debug.log", "ignored\n")
    .write("dfignored/Dockerfile", &dockerfile)
    .write("dfignored/.dockerignore", "Dockerfile\n")
    .write("dfignored/app.py", "1\n")
    .write("inline/app.py", "1\n");
    let assert = t.cmd().args(["-v", "build"]).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for (service, builder) in [
        ("selfignored", "BuildKit"),
        ("dfignored", "classic"),
        ("inline", "classic"),
    ] {
        assert!(
            stderr.contains(&format!("build {service}: sending build context: "))
                && stderr
                    .lines()
                    .any(|l| l.starts_with(&format!("build {service}: sending"))
                        && l.ends_with(&format!("({builder} builder)"))),
            "{service} is not built by the {builder} builder: {stderr}"
        );
    }
    let files = |service: &str| {
        let tag = format!("{}/{service}:{}", t.project, t.stage);
        lines(&docker_ok(&[
            "run",
            "--rm",
            &tag,
            "sh",
            "-c",
            "cd /ctx && find . -type f | sort",
        ]))
    };
    assert_eq!(files("selfignored"), vec!["./Dockerfile", "./app.py"]);
    assert_eq!(files("dfignored"), vec!["./.dockerignore", "./app.py"]);
    assert_eq!(files("inline"), vec!["./app.py"]);
}

#[test]
fn a_docker_buildkit_that_is_not_a_boolean_is_a_usage_error() {
    let base = busybox_image();
    let t = TestStack::new("build-switch");
    t.stack("services:\n  api:\n    build: api\n")
        .write("api/Dockerfile", &format!("FROM {base}\n"));
    let assert = t
        .cmd()
        .env("DOCKER_BUILDKIT", "yes")
        .args(["build"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("error: DOCKER_BUILDKIT is `yes`, which is not a boolean"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: set DOCKER_BUILDKIT=0"), "{stderr}");
}

#[test]
fn shm_size_reaches_run_steps_through_the_classic_builder() {
    let base = busybox_image();
    let t = TestStack::new("build-shm");
    t.stack("services:\n  api:\n    build: { context: api, shm_size: 256m }\n")
        .write(
            "api/Dockerfile",
            &format!("FROM {base}\nRUN df -k /dev/shm | tail -1 | awk '{{print $2}}' > /shm\n"),
        );
    let assert = t.cmd().args(["-v", "build"]).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    // The engine's BuildKit ignores it (64 MB): the classic builder builds this one.
    assert!(stderr.contains("(classic builder)"), "{stderr}");
    let tag = format!("{}/api:{}", t.project, t.stage);
    let shm = docker_ok(&["run", "--rm", &tag, "cat", "/shm"]);
    assert_eq!(shm.trim(), "262144");
}

#[test]
fn target_builds_its_stage_with_buildkit_and_skips_the_others() {
    let base = busybox_image();
    let t = TestStack::new("build-target");
    t.stack(
        "services:\n  api:\n    build: { context: api, target: dev, network: none, labels: { team: data } }\n",
    )
    .write(
        "api/Dockerfile",
        &format!(
            "FROM {base} AS base\nRUN echo base > /stage\nFROM base AS dev\nRUN echo dev > /stage\nFROM base AS prod\nRUN echo prod > /stage\n"
        ),
    );
    let assert = t.cmd().args(["-v", "build"]).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("(BuildKit builder)"), "{stderr}");
    assert!(
        stderr.contains("build api: [dev 1/1] RUN echo dev > /stage"),
        "{stderr}"
    );
    // A stage the target does not need is not built.
    assert!(!stderr.contains("[prod "), "{stderr}");
    let tag = format!("{}/api:{}", t.project, t.stage);
    assert_eq!(
        docker_ok(&["run", "--rm", &tag, "cat", "/stage"]).trim(),
        "dev"
    );
    let team = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"team\"}} {{index .Config.Labels \"io.stackctl.image.stage\"}}",
        &tag,
    ]);
    assert_eq!(team.trim(), format!("data {}", t.stage));
}
