//! Commands racing each other on one stage, with the real binary against the real engine:
//! parallel tasks after `down` (one stage network, every task runs), `down` while a task
//! runs, a killed task, and a duplicate stage network left by an older version.

mod support;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use support::{busybox_image, docker, docker_ok, lines, TestStack};

/// IDs of the networks named exactly `name`.
fn networks_named(name: &str) -> Vec<String> {
    lines(&docker(&[
        "network",
        "ls",
        "--format",
        "{{.ID}} {{.Name}}",
        "--filter",
        &format!("name={name}"),
    ]))
    .into_iter()
    .filter_map(|line| {
        let (id, found) = line.split_once(' ')?;
        (found == name).then(|| id.to_string())
    })
    .collect()
}

/// Names of this stage's task containers (all states).
fn task_containers(t: &TestStack) -> Vec<String> {
    let mut args = vec![
        "ps".to_string(),
        "-a".into(),
        "--format".into(),
        "{{.Names}}".into(),
        "--filter".into(),
        "label=io.stackctl.role=task".into(),
    ];
    args.extend(t.filter());
    lines(&docker(&args))
}

/// Poll `condition` every 50 ms until it holds; fail naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child on every path (a failing assertion included).
struct Running(Option<Child>);

impl Running {
    fn wait(mut self, limit: Duration) -> Output {
        let mut child = self.0.take().expect("child");
        let deadline = Instant::now() + limit;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("stackctl did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(t: &TestStack, args: &[&str]) -> Running {
    let child = t
        .std_cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stackctl");
    Running(Some(child))
}

fn stack(name: &str) -> TestStack {
    let image = busybox_image();
    let t = TestStack::new(name);
    t.stack(&format!(
        r#"
services:
  api: {{ image: {image}, init: true, command: [sleep, "3600"] }}
tasks:
  hello: {{ image: {image}, command: [echo, hello] }}
  slow: {{ image: {image}, command: [sh, -c, "trap 'exit 0' TERM; sleep 120 & wait"] }}
"#
    ));
    t
}

/// Run `n` `exec hello` at once on a stage without network; every one must succeed and the
/// stage must end with exactly one network.
fn parallel_execs(t: &TestStack, n: usize) {
    let network = format!("{}-{}_default", t.stage, t.project);
    t.cmd().arg("down").assert().success();
    assert!(networks_named(&network).is_empty());
    let runs: Vec<Running> = (0..n).map(|_| spawn(t, &["exec", "hello"])).collect();
    for run in runs {
        let out = run.wait(Duration::from_secs(120));
        assert!(
            out.status.success(),
            "exec failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    }
    let found = networks_named(&network);
    assert_eq!(found.len(), 1, "networks named {network}: {found:?}");
}

#[test]
fn r6_concurrent_execs_after_down_make_one_network() {
    let t = stack("r6-pair");
    // Before the fix, 10 of 10 pairs made two networks.
    for _ in 0..3 {
        parallel_execs(&t, 2);
    }
    // And everything after works: no "ambiguous" network.
    t.cmd().arg("up").assert().success();
    t.cmd().arg("down").assert().success();
    assert!(networks_named(&format!("{}-{}_default", t.stage, t.project)).is_empty());
}

#[test]
fn r6_up_racing_exec_after_down_makes_one_network() {
    let t = stack("r6-up-exec");
    let network = format!("{}-{}_default", t.stage, t.project);
    for _ in 0..3 {
        t.cmd().arg("down").assert().success();
        let up = spawn(&t, &["up"]);
        let exec = spawn(&t, &["exec", "hello"]);
        for (what, run) in [("up", up), ("exec", exec)] {
            let out = run.wait(Duration::from_secs(120));
            assert!(
                out.status.success(),
                "{what} failed ({:?}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let found = networks_named(&network);
        assert_eq!(found.len(), 1, "networks named {network}: {found:?}");
    }
}

#[test]
fn r8_ten_parallel_execs_after_down_all_run() {
    let t = stack("r8-ten");
    parallel_execs(&t, 10);
}

/// Make a network through the API without `CheckDuplicate`, as an older stackctl did, so a
/// second one of the same name can exist.
fn create_unchecked_network(name: &str, project: &str, stage: &str) -> String {
    let body = format!(
        r#"{{"Name":"{name}","Driver":"bridge","Labels":{{"io.stackctl.project":"{project}","io.stackctl.stage":"{stage}","io.stackctl.role":"network"}}}}"#
    );
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            "/var/run/docker.sock",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            "http://localhost/networks/create",
        ])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("\"Id\""), "network create: {text}");
    text
}

#[test]
fn r6_duplicate_stage_network_is_repaired_and_removed_by_id() {
    let t = stack("r6-dup");
    let network = format!("{}-{}_default", t.stage, t.project);
    create_unchecked_network(&network, &t.project, &t.stage);
    create_unchecked_network(&network, &t.project, &t.stage);
    assert_eq!(networks_named(&network).len(), 2);

    // A task on the stage keeps the oldest copy and removes the empty one.
    let out = t.cmd().args(["exec", "hello"]).assert().success();
    assert_eq!(String::from_utf8_lossy(&out.get_output().stdout), "hello\n");
    assert_eq!(networks_named(&network).len(), 1);

    // `down` removes every copy, by ID.
    create_unchecked_network(&network, &t.project, &t.stage);
    assert_eq!(networks_named(&network).len(), 2);
    t.cmd().arg("down").assert().success();
    assert!(networks_named(&network).is_empty());

    // `up` repairs a duplicate too.
    create_unchecked_network(&network, &t.project, &t.stage);
    create_unchecked_network(&network, &t.project, &t.stage);
    t.cmd().arg("up").assert().success();
    assert_eq!(networks_named(&network).len(), 1);
    docker_ok(&["network", "inspect", &network]);
}

#[test]
fn r7_down_while_a_task_runs_removes_the_task_and_the_network() {
    let t = stack("r7-down");
    let network = format!("{}-{}_default", t.stage, t.project);
    t.cmd().arg("down").assert().success();
    let task = spawn(&t, &["exec", "slow"]);
    wait_until("task container running", Duration::from_secs(60), || {
        let mut args = vec![
            "ps".to_string(),
            "-q".into(),
            "--filter".into(),
            "label=io.stackctl.role=task".into(),
        ];
        args.extend(t.filter());
        !lines(&docker(&args)).is_empty()
    });
    let out = t.cmd().arg("down").output().expect("down");
    assert!(
        out.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(task_containers(&t).is_empty(), "{:?}", task_containers(&t));
    assert!(networks_named(&network).is_empty());
    // The task ends with its container (its own TERM trap exits 0); `exec` does not hang.
    task.wait(Duration::from_secs(60));
}

#[test]
fn r13_killed_exec_leaves_what_the_next_down_removes() {
    let t = stack("r13-kill");
    let network = format!("{}-{}_default", t.stage, t.project);
    t.cmd().arg("down").assert().success();
    let mut task = spawn(&t, &["exec", "slow"]);
    wait_until("task container running", Duration::from_secs(60), || {
        !task_containers(&t).is_empty()
    });
    // SIGKILL: stackctl gets no chance to clean up.
    let mut child = task.0.take().expect("child");
    child.kill().expect("kill stackctl");
    child.wait().expect("reap");
    assert_eq!(task_containers(&t).len(), 1);
    assert_eq!(networks_named(&network).len(), 1);

    t.cmd().arg("down").assert().success();
    assert!(task_containers(&t).is_empty(), "{:?}", task_containers(&t));
    assert!(networks_named(&network).is_empty());
}
