//! The everyday commands with the real binary against the real engine: `restart`, `run`,
//! `ls`, `version`, `ps --json`, `logs --since/--until/-t`, and the stage ergonomics (the
//! project found from a subdirectory, the stage `init` remembers, `-e` winning over it).
//! Every test starts from the same fixture: a `db` with a healthcheck and an `api` that
//! waits for it to be healthy.

mod support;

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{busybox_image, docker, docker_ok, lines, TestStack};

/// The fixture stack: `db` becomes healthy after a moment, `api` waits for it, and prints
/// one line when it starts.
fn fixture_yaml() -> String {
    let image = busybox_image();
    format!(
        r#"
services:
  db:
    image: {image}
    init: true
    command: [sh, -c, "sleep 0.5; touch /tmp/ready; exec sleep 3600"]
    healthcheck: {{ test: [CMD, test, -f, /tmp/ready], interval: 300ms, retries: 30 }}
  api:
    image: {image}
    init: true
    command: [sh, -c, "echo api started; exec sleep 3600"]
    environment: {{ GREETING: hello }}
    depends_on:
      db: {{ condition: service_healthy }}
tasks:
  hello: {{ image: {image}, command: [echo, hi] }}
"#
    )
}

/// A project with the fixture stack on its stage; `up` it when `running`.
fn fixture(name: &str, running: bool) -> TestStack {
    let stack = TestStack::new(name);
    stack.stack(&fixture_yaml());
    if running {
        let output = stack.cmd().args(["up"]).output().expect("run up");
        assert!(
            output.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    stack
}

fn started_at(container: &str) -> String {
    docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", container])
        .trim()
        .to_string()
}

/// Seconds since midnight of an engine timestamp (`…T19:31:50.12Z`); one day is enough.
fn seconds(timestamp: &str) -> f64 {
    let time = timestamp.split('T').nth(1).expect("a timestamp");
    let parts: Vec<f64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.parse().expect("a number"))
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One JSON object per line of `text`.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The one-off containers `run` made on this stage (all states).
fn run_containers(stack: &TestStack) -> Vec<String> {
    stack
        .containers()
        .into_iter()
        .filter(|name| name.contains("--run-"))
        .collect()
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stackctl did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restart_restarts_every_service_in_dependency_order_and_waits_for_health() {
    let stack = fixture("restart", true);
    let (db, api) = (stack.container("db"), stack.container("api"));
    let (db_before, api_before) = (started_at(&db), started_at(&api));

    let output = stack
        .cmd()
        .args(["--json", "restart"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let (db_after, api_after) = (started_at(&db), started_at(&api));
    assert_ne!(db_before, db_after, "db restarted");
    assert_ne!(api_before, api_after, "api restarted");
    assert!(
        seconds(&api_after) > seconds(&db_after),
        "api {api_after} started after db {db_after}"
    );
    let events = json_lines(&stdout_of(&output));
    let summary = events.last().expect("a summary event");
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["action"], "restart");
    assert_eq!(summary["counts"]["restarted"], 2);
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &db]).trim(),
        "healthy",
        "restart waited for db's health"
    );

    // One service: only its container restarts; the one it depends on is left as it is.
    let output = stack.cmd().args(["restart", "api"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(started_at(&db), db_after, "db left alone");
    assert_ne!(started_at(&api), api_after, "api restarted again");
    assert!(
        stderr_of(&output).contains(&format!("service {api}: restarted")),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn restart_of_a_service_without_a_container_says_to_up_it() {
    let stack = fixture("restart-missing", false);
    let output = stack.cmd().args(["restart", "api"]).output().expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("no container to restart for `api`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: `stackctl up api` creates it"),
        "{stderr}"
    );
    assert!(stack.containers().is_empty(), "nothing created");
}

#[test]
fn run_and_exec_make_the_data_containers_they_take_volumes_from() {
    let stack = TestStack::new("runvf");
    stack.stack(&format!(
        "services:\n  app:\n    image: {image}\n    command: [sleep, \"60\"]\n    volumes_from: [store]\ndata_containers:\n  store:\n    image: {image}\n    volumes: [/store]\n  notes:\n    image: {image}\n    volumes: [/notes]\ntasks:\n  note:\n    image: {image}\n    volumes_from: [notes]\n    command: [sh, -c, \"echo noted >> /notes/log; cat /notes/log\"]\n",
        image = busybox_image()
    ));
    let write = stack
        .cmd()
        .args(["run", "app", "--", "sh", "-c", "echo kept > /store/file"])
        .output()
        .expect("run");
    assert_eq!(write.status.code(), Some(0), "{}", stderr_of(&write));
    assert_eq!(
        stack.containers(),
        vec![stack.container("store")],
        "the data container, not the service"
    );
    let read = stack
        .cmd()
        .args(["-q", "run", "app", "--", "cat", "/store/file"])
        .output()
        .expect("run");
    assert_eq!(read.status.code(), Some(0), "{}", stderr_of(&read));
    assert_eq!(
        stdout_of(&read),
        "kept\n",
        "the second run sees the first one's data"
    );
    // A task's own `volumes_from`, on `exec`.
    for expected in ["noted\n", "noted\nnoted\n"] {
        let note = stack
            .cmd()
            .args(["-q", "exec", "note"])
            .output()
            .expect("exec");
        assert_eq!(note.status.code(), Some(0), "{}", stderr_of(&note));
        assert_eq!(stdout_of(&note), expected);
    }
}

#[test]
fn run_gives_the_exit_code_streams_stdin_and_leaves_nothing() {
    let stack = fixture("run", false);
    // The service's environment, a command of our own, its exit code; with `--no-deps`, no
    // dependency started.
    let output = stack
        .cmd()
        .args([
            "run",
            "api",
            "--no-deps",
            "--",
            "sh",
            "-c",
            "echo $GREETING; exit 3",
        ])
        .write_stdin("")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "hello\n");
    assert!(
        stderr_of(&output).contains("run api: failed (exit 3, "),
        "{}",
        stderr_of(&output)
    );
    assert!(stack.containers().is_empty(), "--no-deps started nothing");
    // Piped input reaches the process.
    let output = stack
        .cmd()
        .args(["-q", "run", "api", "--no-deps", "--", "wc", "-c"])
        .write_stdin("twelve bytes")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output).trim(), "12");
    // What it depends on is brought up first, and healthy before it runs; with `--json`
    // stdout is the process's output alone (no events of that up), the event goes to stderr.
    let output = stack
        .cmd()
        .args(["--json", "run", "api", "--", "echo", "again"])
        .output()
        .expect("run");
    assert_eq!(stdout_of(&output), "again\n", "{}", stderr_of(&output));
    assert_eq!(
        docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &stack.container("db")
        ])
        .trim(),
        "healthy"
    );
    let event = json_lines(stderr_of(&output).lines().last().expect("event"))
        .pop()
        .expect("event");
    assert_eq!(event["kind"], "run");
    assert_eq!(event["action"], "run");
    assert_eq!(event["reason"], "exit 0");
    assert!(run_containers(&stack).is_empty(), "every run removed");
    assert_eq!(
        stack.containers(),
        vec![stack.container("db")],
        "only db was brought up"
    );

    let output = stack.cmd().args(["run", "nope"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("no service `nope`"));
}

#[test]
fn run_interrupted_exits_130_and_removes_its_container() {
    let stack = fixture("run-sigint", false);
    let mut child = stack
        .std_cmd()
        .args(["run", "api", "--", "sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stackctl");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut args = vec!["ps".to_string(), "--format".into(), "{{.Names}}".into()];
        args.extend(stack.filter());
        if lines(&docker(&args))
            .iter()
            .any(|n| n.contains("--run-api-"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the run container never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("removed one-off container"), "{stderr}");
    assert!(run_containers(&stack).is_empty(), "no run container left");
}

#[test]
fn ls_lists_running_stopped_and_file_only_stages_and_marks_the_current_one() {
    let stack = fixture("ls", true);
    let other = format!("{}b", stack.stage);
    stack.write(&format!("stacks/{other}.yml"), &fixture_yaml());
    let output = stack.cmd().args(["ls", "--json"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let rows = json_lines(&stdout_of(&output));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = |stage: &str| {
        rows.iter()
            .find(|r| r["stage"] == stage)
            .unwrap_or_else(|| panic!("no row for {stage}: {rows:?}"))
            .clone()
    };
    let up = row(&stack.stage);
    assert_eq!(up["state"], "running");
    assert_eq!(
        (up["running"].as_u64(), up["services"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(up["current"], true);
    assert_eq!(up["file"], format!("stacks/{}.yml", stack.stage));
    let file_only = row(&other);
    assert_eq!(file_only["state"], "absent");
    assert_eq!(file_only["current"], false);
    assert_eq!(file_only["declared"], 2, "what its stack file declares");

    // A stage where one of two declared services has a container is partial.
    let output = stack
        .cmd()
        .args(["-e", &other, "up", "db"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let output = stack.cmd().args(["ls", "--json"]).output().expect("run");
    let rows = json_lines(&stdout_of(&output));
    let half = rows
        .iter()
        .find(|r| r["stage"] == other.as_str())
        .expect("row");
    assert_eq!(half["state"], "partial", "{half}");
    assert_eq!(
        (half["running"].as_u64(), half["services"].as_u64()),
        (Some(1), Some(1))
    );

    let output = stack.cmd().args(["stop", "api"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let output = stack.cmd().args(["ls"]).output().expect("run");
    let table = stdout_of(&output);
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{} ", stack.stage)))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("partial") && line.contains("1/2"), "{table}");
    assert!(line.contains("(current)"), "{table}");
    assert!(
        table.lines().next().unwrap_or("").starts_with("STAGE"),
        "{table}"
    );
}

#[test]
fn version_names_stackctl_and_the_engines_api() {
    let output = assert_cmd::Command::cargo_bin("stackctl")
        .expect("binary")
        .args(["version", "--json"])
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let version: serde_json::Value =
        serde_json::from_str(stdout_of(&output).trim()).expect("one JSON object");
    assert_eq!(version["stackctl"]["version"], env!("CARGO_PKG_VERSION"));
    let api = docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(version["engine"]["api_version"], api.trim());
    let engine = docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(version["engine"]["version"], engine.trim());
    assert!(version["host"].as_str().is_some_and(|h| !h.is_empty()));

    // An engine that is not there: stackctl's part, then the error.
    let output = assert_cmd::Command::cargo_bin("stackctl")
        .expect("binary")
        .args(["version"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout_of(&output).starts_with(&format!("stackctl  {}", env!("CARGO_PKG_VERSION"))));
    assert!(stderr_of(&output).contains("cannot reach the Docker engine"));
}

#[test]
fn ps_json_and_logs_with_dates_and_timestamps() {
    let stack = fixture("ps-logs", true);
    let output = stack.cmd().args(["ps", "--json"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let rows = json_lines(&stdout_of(&output));
    let api = rows
        .iter()
        .find(|r| r["service"] == "api")
        .expect("an api row");
    assert_eq!(api["container"], stack.container("api"));
    assert_eq!(api["state"], "running");
    let db = rows
        .iter()
        .find(|r| r["service"] == "db")
        .expect("a db row");
    assert_eq!(db["health"], "healthy");

    let logs = |args: &[&str]| {
        let output = stack.cmd().arg("logs").args(args).output().expect("run");
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        stdout_of(&output)
    };
    let past = "2000-01-01T00:00:00Z";
    let future = "2037-01-01T00:00:00+01:00";
    // `up` returns once api started; its first line may come a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !logs(&["api"]).contains("api | api started") {
        assert!(
            std::time::Instant::now() < deadline,
            "api printed nothing in 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(logs(&["api", "--since", past]).contains("api | api started"));
    assert_eq!(logs(&["api", "--since", future]), "", "nothing after 2037");
    assert_eq!(logs(&["api", "--until", past]), "", "nothing before 2000");
    let stamped = logs(&["api", "-t"]);
    let line = stamped.lines().next().expect("a line");
    let rest = line.strip_prefix("api | ").expect("prefix first");
    let (time, text) = rest.split_once(' ').expect("a timestamp, then the line");
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    assert_eq!(text, "api started");
    let json = json_lines(&logs(&["api", "-t", "--json"]));
    assert_eq!(json[0]["line"], "api started");
    assert!(json[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    let output = stack
        .cmd()
        .args(["logs", "--since", "2026-11-30T25:00:00Z"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("not an RFC 3339 date"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn the_project_is_found_from_a_subdirectory_and_dash_c_still_wins() {
    let stack = fixture("subdir", false);
    std::fs::create_dir_all(stack.path("api/src")).expect("mkdir");
    let output = stack
        .cmd()
        .current_dir(stack.path("api/src"))
        .args(["config", "--services"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "db\napi\n");
    // `-C` names the project directory as it is: no walking up from there.
    let output = stack
        .cmd()
        .current_dir(stack.path("api/src"))
        .args(["-C", ".", "config", "--services"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("cannot read stack file"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn after_init_commands_act_on_its_stage_and_e_and_the_variable_still_win() {
    let stack = TestStack::new("remembered");
    let image = busybox_image();
    stack.write(
        "templates/stack.yml",
        &format!("services:\n  web: {{ image: {image}, command: [sleep, '3600'] }}\n"),
    );
    let stage = format!("{}r", stack.stage);
    let output = stack
        .cmd()
        .env_remove("STACKCTL_ENV")
        .args(["-e", &stage, "init", "--no-run"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains(&format!("now act on stage `{stage}`")),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(
        std::fs::read_to_string(stack.path(".stackctl/stage")).expect("remembered"),
        format!("{stage}\n")
    );
    assert_eq!(
        std::fs::read_to_string(stack.path(".stackctl/.gitignore")).expect("ignored"),
        "# stackctl's own state: not for version control\n*\n"
    );

    // Without `-e` (from a subdirectory too): the remembered stage.
    std::fs::create_dir_all(stack.path("web")).expect("mkdir");
    let ps = |cmd: &mut assert_cmd::Command| {
        let output = cmd.args(["ps", "--json"]).output().expect("run");
        (output.status.code(), stdout_of(&output), stderr_of(&output))
    };
    let (code, stdout, stderr) = ps(stack
        .cmd()
        .env_remove("STACKCTL_ENV")
        .current_dir(stack.path("web")));
    assert_eq!(code, Some(0), "{stderr}");
    let rows = json_lines(&stdout);
    assert_eq!(
        rows[0]["container"],
        format!("{stage}-{}--web", stack.project)
    );
    let output = stack
        .cmd()
        .env_remove("STACKCTL_ENV")
        .args(["ls", "--json"])
        .output()
        .expect("run");
    let rows = json_lines(&stdout_of(&output));
    let row = rows
        .iter()
        .find(|r| r["stage"] == stage.as_str())
        .expect("row");
    assert_eq!(
        (row["current"].as_bool(), row["remembered"].as_bool()),
        (Some(true), Some(true))
    );

    // `-e` wins, and so does STACKCTL_ENV; the hint names the stages that exist.
    let mut flag = stack.cmd();
    flag.env_remove("STACKCTL_ENV").args(["-e", "elsewhere"]);
    let mut variable = stack.cmd();
    variable.env("STACKCTL_ENV", "elsewhere");
    for mut cmd in [flag, variable] {
        let (code, _, stderr) = ps(&mut cmd);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("cannot read stack file `stacks/elsewhere.yml`"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("hint: stages with a stack file: `{stage}`")),
            "{stderr}"
        );
    }
}

#[test]
fn completion_scripts_and_dynamic_names_of_stages_services_and_tasks() {
    let stack = fixture("complete", false);
    stack.write(&format!("stacks/{}b.yml", stack.stage), &fixture_yaml());
    std::fs::create_dir_all(stack.path("deep/er")).expect("mkdir");
    // What the shell asks on a Tab, as fish asks it: one candidate per line, then its help.
    let complete = |words: &[&str]| {
        let output = stack
            .cmd()
            .current_dir(stack.path("deep/er"))
            .env("STACKCTL_COMPLETE", "fish")
            .arg("--")
            .args(words)
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        stdout_of(&output)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .filter(|l| !l.starts_with('-'))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        complete(&["stackctl", "-e", ""]),
        vec![stack.stage.clone(), format!("{}b", stack.stage)]
    );
    assert_eq!(complete(&["stackctl", "restart", ""]), vec!["db", "api"]);
    assert_eq!(
        complete(&["stackctl", "exec", ""]),
        vec!["hello", "db", "api"]
    );

    for shell in ["bash", "zsh", "fish"] {
        for dynamic in [false, true] {
            let mut cmd = stack.cmd();
            cmd.args(["completion", shell]);
            if dynamic {
                cmd.arg("--dynamic");
            }
            let output = cmd.output().expect("run");
            assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
            let script = stdout_of(&output);
            assert!(script.contains("stackctl"), "{shell}: {script}");
            assert_eq!(
                script.contains("STACKCTL_COMPLETE"),
                dynamic,
                "{shell} dynamic={dynamic}"
            );
        }
    }
}

#[test]
fn top_lists_the_processes_of_each_running_service() {
    let stack = fixture("top", true);
    let output = stack.cmd().args(["top", "--json"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let rows = json_lines(&stdout_of(&output));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let api = rows.iter().find(|r| r["service"] == "api").expect("api");
    assert_eq!(api["container"], stack.container("api"));
    let titles = api["titles"].as_array().expect("titles");
    let command = titles
        .iter()
        .position(|t| t == "CMD" || t == "COMMAND")
        .expect("a command column");
    let commands: Vec<&str> = api["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p[command].as_str().unwrap_or(""))
        .collect();
    assert!(
        commands.iter().any(|c| c.contains("sleep 3600")),
        "{commands:?}"
    );
    let output = stack.cmd().args(["top", "db"]).output().expect("run");
    let text = stdout_of(&output);
    assert!(
        text.starts_with(&format!("db ({})\n", stack.container("db"))),
        "{text}"
    );
    assert!(text.contains("PID"), "{text}");
}

#[test]
fn cp_copies_files_and_directories_both_ways_through_the_archive_api() {
    let stack = fixture("cp", true);
    let local = tempfile::tempdir().expect("temp dir");
    let data = local.path().join("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("a.txt"), "alpha\n").expect("write");
    std::fs::write(data.join("sub/b.txt"), "beta\n").expect("write");
    let cp = |from: &str, to: &str| {
        let output = stack
            .cmd()
            .current_dir(local.path())
            .arg("-C")
            .arg(&stack.dir)
            .args(["cp", from, to])
            .output()
            .expect("run");
        (output.status.code(), stderr_of(&output))
    };
    let inside = |script: &str| {
        let output = stack
            .cmd()
            .args(["-q", "exec", "api", "--", "sh", "-c", script])
            .output()
            .expect("run");
        stdout_of(&output)
    };
    // Into an existing directory: under its own name; elsewhere: under the new name.
    assert_eq!(cp("data", "api:/tmp").0, Some(0));
    assert_eq!(cp("./data/a.txt", "api:/tmp/renamed.txt").0, Some(0));
    assert_eq!(
        inside("cat /tmp/data/a.txt /tmp/data/sub/b.txt /tmp/renamed.txt"),
        "alpha\nbeta\nalpha\n"
    );
    // Out again: a new name, and into an existing directory.
    assert_eq!(cp("api:/tmp/data", "back").0, Some(0));
    assert_eq!(
        std::fs::read_to_string(local.path().join("back/sub/b.txt")).expect("copied"),
        "beta\n"
    );
    assert_eq!(cp("api:/tmp/renamed.txt", ".").0, Some(0));
    assert_eq!(
        std::fs::read_to_string(local.path().join("renamed.txt")).expect("copied"),
        "alpha\n"
    );
    let leftovers: Vec<String> = std::fs::read_dir(local.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".stackctl-cp-"))
        .collect();
    assert!(leftovers.is_empty(), "scratch removed: {leftovers:?}");
    // The archive on stdout; a reader that stops early ends the copy with 141, as SIGPIPE.
    let output = stack
        .cmd()
        .args(["cp", "api:/tmp/data", "-"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let mut names: Vec<String> = tar::Archive::new(&output.stdout[..])
        .entries()
        .expect("a tar archive")
        .map(|e| {
            let entry = e.expect("an entry");
            let path = entry.path().expect("a path").display().to_string();
            path.trim_end_matches('/').to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["data", "data/a.txt", "data/sub", "data/sub/b.txt"]
    );
    let mut child = stack
        .std_cmd()
        .args(["cp", "api:/bin", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(141));
    // What is not there is named.
    let (code, stderr) = cp("api:/nope", "x");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no `/nope` in the container of service `api`"),
        "{stderr}"
    );
    let (code, stderr) = cp("data", "elsewhere");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("one side is `SERVICE:PATH`"), "{stderr}");
}
