//! One-off task containers, `exec` into services, and task sequences, with the real binary
//! against the real engine.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{busybox_image, docker, lines, TestStack};

/// Names of this stage's task containers (all states).
fn task_containers(stack: &TestStack) -> Vec<String> {
    let mut args = vec![
        "ps".to_string(),
        "-a".into(),
        "--format".into(),
        "{{.Names}}".into(),
        "--filter".into(),
        "label=io.stackctl.role=task".into(),
    ];
    args.extend(stack.filter());
    lines(&docker(&args))
}

/// Wait for `child` up to `limit`; kill it and fail if it does not exit.
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

fn stack_with_tasks(name: &str, tasks: &str) -> TestStack {
    let image = busybox_image();
    let stack = TestStack::new(name);
    stack.stack(&format!("tasks:\n{}", tasks.replace("IMAGE", image)));
    stack
}

#[test]
fn exit_code_and_streams_are_the_tasks_own() {
    let stack = stack_with_tasks(
        "exit-code",
        "  fail: { image: IMAGE, command: [sh, -c, 'echo out; echo err >&2; exit 7'] }\n",
    );
    let output = stack
        .cmd()
        .args(["exec", "fail"])
        .write_stdin("")
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(7),
        "stackctl exits with the task's code"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "out\n",
        "stdout only has the task's stdout"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|l| l == "err"),
        "task stderr on our stderr: {stderr:?}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("err"));
    assert!(
        stderr.contains("task fail: failed (exit 7, "),
        "status line: {stderr:?}"
    );
    assert!(task_containers(&stack).is_empty(), "task container removed");

    // -q: nothing of stackctl's own.
    let output = stack
        .cmd()
        .args(["-q", "exec", "fail"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");
}

#[test]
fn args_replace_the_command_and_stdin_file_is_streamed() {
    let stack = stack_with_tasks(
        "stdin-file",
        "  lines: { image: IMAGE, command: [wc, -l], stdin: data/three.txt }\n",
    );
    stack.write("data/three.txt", "a\nb\nc\n");
    let output = stack
        .cmd()
        .args(["-q", "exec", "lines"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");

    let output = stack
        .cmd()
        .args(["-q", "exec", "lines", "--", "wc", "-c"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "6");
}

#[test]
fn half_a_gigabyte_streams_through_in_constant_memory() {
    const TOTAL: u64 = 512 * 1024 * 1024;
    let stack = stack_with_tasks("big-pipe", "  count: { image: IMAGE, command: [wc, -c] }\n");
    let started = Instant::now();
    let mut child = stack
        .std_cmd()
        .args(["-q", "exec", "count"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stackctl");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        // A repeating pattern, generated as we go: nothing of this size exists on disk.
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let mut sent = 0u64;
        while sent < TOTAL {
            stdin.write_all(&block).expect("write to stackctl");
            sent += block.len() as u64;
        }
        sent
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).expect("read stdout");
        text
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // The peak RSS of stackctl itself: VmHWM of its own address space, sampled until it
    // exits (it only grows). wait4's ru_maxrss would carry the forking test process's size.
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) else {
                break; // a zombie: its memory is gone
            };
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_default();
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kib
    });
    let status = wait_with_deadline(&mut child, Duration::from_secs(300));
    let peak_kib = sampler.join().expect("sampler");
    let sent = writer.join().expect("writer");
    let text = reader.join().expect("reader");
    let errors = err_reader.join().expect("stderr reader");
    eprintln!(
        "streamed {sent} bytes in {:.1}s; stackctl peak RSS {} KiB ({:.1} MiB)",
        started.elapsed().as_secs_f64(),
        peak_kib,
        peak_kib as f64 / 1024.0
    );
    assert!(peak_kib > 0, "no memory sample of stackctl");
    assert_eq!(status.code(), Some(0), "stderr: {errors}");
    assert_eq!(text.trim(), TOTAL.to_string(), "every byte arrived");
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB is not under 64 MiB"
    );
    assert!(task_containers(&stack).is_empty());
}

fn interrupt_removes_the_container(name: &str, signal: libc::c_int) -> String {
    interrupt_task(name, "sleepy", signal)
}

/// Start `exec TASK` on a stack where `sleepy` sleeps, signal stackctl once the container
/// runs, and check it exits 130 with nothing left; returns its stderr.
fn interrupt_task(name: &str, task: &str, signal: libc::c_int) -> String {
    let stack = stack_with_tasks(
        name,
        "  sleepy: { image: IMAGE, command: [sleep, '600'] }
  after: { image: IMAGE, command: [echo, after] }
  both: { steps: [sleepy, after] }
",
    );
    let mut child = stack
        .std_cmd()
        .args(["exec", task])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stackctl");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = {
            let mut args = vec!["ps".to_string(), "-q".into()];
            args.extend(stack.filter());
            lines(&docker(&args))
        };
        if !running.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the task container never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(
        stderr.contains("removed task container"),
        "stderr: {stderr}"
    );
    assert!(task_containers(&stack).is_empty(), "no task container left");
    stderr
}

#[test]
fn sigint_exits_130_and_removes_the_task_container() {
    interrupt_removes_the_container("sigint", libc::SIGINT);
}

#[test]
fn sigterm_exits_130_and_removes_the_task_container() {
    interrupt_removes_the_container("sigterm", libc::SIGTERM);
}

#[test]
fn an_interrupted_sequence_starts_no_further_step_and_says_which_did_not_run() {
    let stderr = interrupt_task("seq-int", "both", libc::SIGINT);
    assert!(
        stderr.contains("task both: interrupted; steps not run: `after`"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("step 2/2"),
        "the next step never started: {stderr}"
    );
}

#[test]
fn a_sequence_runs_in_order_and_stops_at_the_failing_step() {
    let stack = stack_with_tasks(
        "sequence",
        "  one: { image: IMAGE, command: [sh, -c, 'echo one >> /data/log'], volumes: ['work:/data'] }
  two: { image: IMAGE, command: [sh, -c, 'echo two >> /data/log'], volumes: ['work:/data'] }
  broken: { image: IMAGE, command: [sh, -c, 'exit 4'] }
  four: { image: IMAGE, command: [sh, -c, 'echo four >> /data/log'], volumes: ['work:/data'] }
  show: { image: IMAGE, command: [cat, /data/log], volumes: ['work:/data'] }
  init: { steps: [one, two, broken, four] }
volumes:
  work: {}
",
    );
    let output = stack.cmd().args(["exec", "init"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(4),
        "the failing step's code: {stderr}"
    );
    assert!(
        stderr.contains("error: task `init`: step 3/4 `broken` failed with exit code 4"),
        "names the step: {stderr}"
    );
    assert!(stderr.contains("task init: step 1/4 `one`"), "{stderr}");

    let output = stack
        .cmd()
        .args(["-q", "exec", "show"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "one\ntwo\n",
        "steps ran in order and none after the failure"
    );
    let volumes = {
        let mut args = vec!["volume".to_string(), "ls".into(), "-q".into()];
        args.extend(stack.filter());
        lines(&docker(&args))
    };
    assert_eq!(
        volumes,
        vec![format!("{}-{}_work", stack.stage, stack.project)],
        "labelled stage volume"
    );
    assert!(task_containers(&stack).is_empty());
}

#[test]
fn an_unknown_name_is_a_usage_error_with_a_suggestion() {
    let stack = stack_with_tasks("unknown", "  count: { image: IMAGE, command: [wc, -c] }\n");
    let output = stack.cmd().args(["exec", "cout"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stderr), @r"
    error: `cout` is neither a task nor a service
    hint: did you mean `count`?
    ");
}

#[test]
fn a_sequence_brings_services_up_and_tasks_reach_them_by_name_and_exec_runs_inside() {
    let image = busybox_image();
    let stack = TestStack::new("service-exec");
    stack.stack(&format!(
        "services:
  web:
    image: {image}
    command: [sh, -c, 'echo hello from web > /var/www/index.html; exec httpd -f -p 8080 -h /var/www']
    healthcheck: {{ test: [CMD, wget, -qO-, 'http://127.0.0.1:8080/'], interval: 1s, retries: 30 }}
tasks:
  fetch: {{ image: {image}, command: [wget, -qO-, 'http://web:8080/'] }}
  init: {{ steps: [up, wait, fetch] }}
"
    ));

    // Not running yet: a clear error with the hint.
    let output = stack
        .cmd()
        .args(["exec", "web", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("service `web` has no container"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: start it with `stackctl up web`"),
        "{stderr}"
    );

    // `up`, `wait` for health, then a task on the stage network reaches `web` by name.
    let output = stack.cmd().args(["exec", "init"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello from web\n",
        "{stderr}"
    );
    assert!(stderr.contains("task init: step 3/3 `fetch`"), "{stderr}");

    let output = stack
        .cmd()
        .args(["-q", "exec", "web", "--", "sh", "-c", "exit 3"])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(3),
        "exec returns the process's code"
    );

    let output = stack
        .cmd()
        .args(["-q", "exec", "web", "--", "wc", "-c"])
        .write_stdin("twelve bytes")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "12",
        "stdin reached the exec'd process"
    );
    assert!(task_containers(&stack).is_empty());
}

#[test]
fn on_a_terminal_the_task_gets_a_tty_of_our_size_and_the_terminal_is_restored() {
    // The size arrives by a resize right after start (API 1.41 has no size at create), so the
    // task looks after a moment.
    let stack = stack_with_tasks(
        "tty",
        "  term: { image: IMAGE, command: [sh, -c, 'tty; sleep 1; stty size; exit 5'] }\n",
    );
    let binary = assert_cmd::cargo::cargo_bin("stackctl");
    // `script` gives stackctl a pseudo-terminal for stdin and stdout.
    let inner = format!(
        "stty cols 91 rows 33; before=$(stty -g); '{}' exec term; echo \"rc=$?\"; \
         [ \"$before\" = \"$(stty -g)\" ] && echo restored",
        binary.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .current_dir(&stack.dir)
        .env("STACKCTL_ENV", &stack.stage)
        .env("NO_COLOR", "1")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run script(1)");
    // Keep our end of its input open (and silent) until it is done.
    let _input = child.stdin.take();
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    wait_with_deadline(&mut child, Duration::from_secs(60));
    let text = reader.join().expect("reader").replace('\r', "");
    assert!(
        text.contains("/dev/pts/"),
        "a TTY in the container: {text:?}"
    );
    assert!(text.contains("33 91\n"), "our terminal's size: {text:?}");
    assert!(text.contains("rc=5\n"), "the task's exit code: {text:?}");
    assert!(
        text.contains("restored\n"),
        "terminal settings restored: {text:?}"
    );
    assert!(task_containers(&stack).is_empty());
}

#[test]
fn init_renders_then_runs_the_init_sequence_and_names_the_failing_step() {
    let image = busybox_image();
    let stack = TestStack::new("init-run");
    stack.write("templates/env", "TOKEN={secret}\n");
    stack.write(
        "templates/stack.yml",
        &format!(
            "tasks:
  first: {{ image: {image}, command: [echo, 'first on {{stage}}'] }}
  second: {{ image: {image}, command: [echo, second] }}
  broken: {{ image: {image}, command: [sh, -c, 'exit 6'] }}
  never: {{ image: {image}, command: [echo, never] }}
  init: {{ steps: [first, second, broken, never] }}
"
        ),
    );

    // --no-run renders and validates only.
    let output = stack
        .cmd()
        .args(["init", "--no-run"])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
    assert!(stack.containers().is_empty(), "nothing ran");

    let output = stack.cmd().args(["init", "--force"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(6),
        "the failing step's code: {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("first on {}\nsecond\n", stack.stage),
        "steps in order, none after the failure"
    );
    assert!(
        stderr.contains("error: task `init`: step 3/4 `broken` failed with exit code 6"),
        "{stderr}"
    );
    assert!(task_containers(&stack).is_empty());
}

#[test]
fn init_without_an_init_task_says_so_and_succeeds() {
    let image = busybox_image();
    let stack = TestStack::new("init-none");
    stack.write("templates/env", "");
    stack.write(
        "templates/stack.yml",
        &format!("tasks:\n  other: {{ image: {image}, command: [echo, hi] }}\n"),
    );
    let output = stack.cmd().arg("init").output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no `init` task in stacks/"), "{stderr}");
    assert!(stack.containers().is_empty());
}

#[test]
fn a_closed_stdout_stops_the_task_removes_it_and_exits_141() {
    let stack = stack_with_tasks("epipe", "  flood: { image: IMAGE, command: [yes] }\n");
    let mut child = stack
        .std_cmd()
        .args(["exec", "flood"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stackctl");
    // Read a little, then close our end, as `| head -1` does.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).expect("some output");
    assert_eq!(&first, b"y\n");
    drop(stdout);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(141), "stderr: {stderr}");
    assert!(task_containers(&stack).is_empty(), "task container removed");
}

#[test]
fn with_json_stdout_stays_the_tasks_and_the_event_goes_to_stderr() {
    let stack = stack_with_tasks(
        "json",
        "  hello: { image: IMAGE, command: [echo, hello] }\n",
    );
    let output = stack
        .cmd()
        .args(["--json", "exec", "hello"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let event: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("an event line on stderr"))
            .expect("a JSON event");
    assert_eq!(event["object"], "hello");
    assert_eq!(event["kind"], "task");
    assert_eq!(event["status"], "done");
    assert_eq!(event["stage"], stack.stage.as_str());
}

#[test]
fn defect5_piped_input_replaces_the_tasks_stdin_file_and_says_so() {
    let stack = stack_with_tasks(
        "piped-wins",
        "  lines: { image: IMAGE, command: [wc, -l], stdin: data/three.txt }\n",
    );
    stack.write("data/three.txt", "a\nb\nc\n");
    let output = stack
        .cmd()
        .args(["exec", "lines"])
        .write_stdin("x\ny\n")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("instead of its `stdin:` file `data/three.txt`"),
        "{stderr}"
    );
    // Nothing piped (an empty pipe, as a CI runner gives): the file.
    let output = stack
        .cmd()
        .args(["-q", "exec", "lines"])
        .write_stdin("")
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
}

/// RELIABILITY 12: `ps` showed a leftover task container (here one a SIGKILLed `exec` left
/// running) with an empty service column, ` (task)`. It names the task.
#[test]
fn reliability12_ps_names_the_task_of_a_leftover_task_container() {
    let stack = stack_with_tasks(
        "ps-task",
        "  db-wait: { image: IMAGE, command: [sleep, '600'] }\n",
    );
    let mut child = stack
        .std_cmd()
        .args(["exec", "db-wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stackctl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while task_containers(&stack).is_empty()
        || lines(&docker(
            &[vec!["ps".to_string(), "-q".into()], stack.filter()].concat(),
        ))
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the task container never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert_eq!(task_containers(&stack).len(), 1, "the SIGKILL left it");
    let output = stack.cmd().arg("ps").output().expect("run ps");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.contains("--task-db-wait-"))
        .unwrap_or_else(|| panic!("no task row: {stdout}"));
    assert!(row.starts_with("db-wait (task) "), "{stdout}");
    let output = stack.cmd().args(["ps", "--json"]).output().expect("run ps");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""task":"db-wait""#), "{stdout}");
}
