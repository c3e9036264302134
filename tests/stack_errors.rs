//! Broken stack files (tests/stacks/broken/*.yml) through the real `stackctl config`: each
//! exits 2 and reports every problem at its file, line and column (stderr snapshots). No
//! Docker engine is needed.

mod support;

use support::TestStack;

/// Run `config` on one corpus file; return stderr with the test's stage name replaced.
fn config_errors(name: &str) -> String {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/stacks/broken")
        .join(format!("{name}.yml"));
    let yaml = std::fs::read_to_string(&source).expect("read corpus file");
    let stack = TestStack::new(name);
    stack.stack(&yaml);
    let output = stack
        .cmd()
        .arg("config")
        .env_remove("STACKCTL_PROFILES")
        .output()
        .expect("run stackctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "`{name}` must be rejected with exit code 2; stderr:\n{stderr}"
    );
    assert!(stdout.is_empty(), "nothing on stdout: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(&stack.dir.display().to_string()),
        "paths are relative to the project directory: {stderr}"
    );
    stderr.replace(&stack.stage, "STAGE")
}

macro_rules! broken {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), config_errors(stringify!($name)));
            }
        )*
        /// Every file of the corpus has its test above.
        #[test]
        fn every_corpus_file_is_tested() {
            let listed = [$(stringify!($name)),*];
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stacks/broken");
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .expect("read corpus")
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yml").map(String::from))
                .collect();
            files.sort();
            let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(files, listed);
        }
    };
}

broken!(
    bad_duration,
    bad_interpolation,
    bad_port,
    compose_keys,
    cycle,
    dangling_depends_on,
    dangling_task_service,
    dangling_volumes_from,
    defect2_huge_numbers,
    defect3_port_mode,
    duplicate_key,
    inactive_profile,
    many_errors,
    typo_key,
    unset_required,
    tab_indent,
    unsupported_key,
    wrong_shapes,
    yaml_syntax,
    r3_alias_bomb,
    r3_merge_of_a_scalar,
    r3_second_document,
);

#[test]
fn a_missing_stack_file_says_how_to_create_it() {
    let stack = TestStack::new("missing-file");
    let output = stack.cmd().arg("config").output().expect("run stackctl");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&stack.stage, "STAGE");
    insta::assert_snapshot!(stderr, @r"
    error: cannot read stack file `stacks/STAGE.yml`: no such file
      hint: run `stackctl init --env STAGE` to create it
    ");
}

#[test]
fn a_bad_env_file_line_is_located() {
    let stack = TestStack::new("bad-env-file");
    stack.stack("services:\n  api:\n    image: busybox\n");
    stack.write(&format!(".env.{}", stack.stage), "A=1\n\nnot a pair\n");
    let output = stack.cmd().arg("config").output().expect("run stackctl");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&stack.stage, "STAGE");
    insta::assert_snapshot!(stderr, @"error: .env.STAGE:3:1: expected `KEY=VALUE`, found `not a pair`");
}

/// Run `config` (or other arguments) in `stack`; exit code and stderr (stage replaced).
fn run(stack: &TestStack, args: &[&str]) -> (Option<i32>, String) {
    let output = stack
        .cmd()
        .args(args)
        .env_remove("STACKCTL_PROFILES")
        .output()
        .expect("run stackctl");
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&stack.stage, "STAGE");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

#[test]
fn r2_deep_nesting_is_a_located_error_in_well_under_a_second() {
    let stack = TestStack::new("deep");
    stack.stack(&format!(
        "services:\n  api:\n    image: busybox\n    command: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    let started = std::time::Instant::now();
    let (code, stderr) = run(&stack, &["config"]);
    let elapsed = started.elapsed();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        elapsed < std::time::Duration::from_secs(1),
        "took {elapsed:?}"
    );
    insta::assert_snapshot!(stderr, @"error: stacks/STAGE.yml:4:269: invalid YAML: lists and maps nest more than 64 levels deep here");
}

#[test]
fn r3_invalid_utf8_is_located() {
    let stack = TestStack::new("utf8");
    let path = stack.path(&format!("stacks/{}.yml", stack.stage));
    std::fs::write(&path, b"services:\n  api:\n    image: caf\xe9\n").expect("write");
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @r"
    error: stacks/STAGE.yml:3:15: the file is not valid UTF-8 (byte 0xe9)
      hint: save the file as UTF-8
    ");
}

#[test]
fn r20_a_fifo_env_file_is_refused_not_waited_on() {
    let stack = TestStack::new("fifo");
    stack.stack("services:\n  api:\n    image: busybox\n");
    let fifo = stack.path(&format!(".env.{}", stack.stage));
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let mut child = stack
        .std_cmd()
        .arg("config")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stackctl");
    // A FIFO nobody writes to would block a reader forever: poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("`config` blocked on a FIFO .env file");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2));
    insta::assert_snapshot!(stderr.replace(&stack.stage, "STAGE"), @"error: cannot read `.env.STAGE`: it is a FIFO (named pipe); stack and env files must be regular files");
}

#[test]
fn r20_a_stack_file_linked_to_dev_zero_is_refused() {
    let stack = TestStack::new("devzero");
    let path = stack.path(&format!("stacks/{}.yml", stack.stage));
    std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @"error: cannot read `stacks/STAGE.yml`: it is a device; stack and env files must be regular files");
}

#[test]
fn r20_an_oversized_stack_file_is_refused() {
    let stack = TestStack::new("huge");
    let mut text = String::from("services:\n  api:\n    image: busybox\n");
    while text.len() <= 4 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    stack.stack(&text);
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @"error: cannot read `stacks/STAGE.yml`: it is larger than 4 MiB; stack and env files are limited to that size");
}

#[test]
fn r21_a_very_long_project_name_is_refused_by_config() {
    let stack = TestStack::new("longname");
    stack.stack(&format!(
        "name: {}\nservices:\n  api:\n    image: busybox\n  {}:\n    image: busybox\n",
        "p".repeat(245),
        "s".repeat(64)
    ));
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @r"
    error: stacks/STAGE.yml:5:3: `ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss` is not a valid name (in `services`)
      hint: names are at most 63 characters long (this one has 64)
    ");
    stack.stack(&format!(
        "name: {}\nservices:\n  api:\n    image: busybox\n",
        "p".repeat(245)
    ));
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @r"
    error: stacks/STAGE.yml:1:7: the project name (`name:`) is 245 characters long; at most 63 are allowed
      hint: choose a shorter `name:`
    ");
}

#[test]
fn r14_errors_quoting_a_value_do_not_print_secrets() {
    let stack = TestStack::new("secret-error");
    stack.stack(
        "services:\n  api:\n    image: busybox\n    ports: [\"${DB_PASSWORD}:80\"]\n    stop_grace_period: ${API_TOKEN}\n    environment:\n      SECRET_KEY: s3cr3t-literal\n    labels: [\"x=s3cr3t-literal\"]\n    cpus: [1]\n",
    );
    stack.write(
        &format!(".env.{}", stack.stage),
        "DB_PASSWORD=hunter2-pw\nAPI_TOKEN=tok-123456\n",
    );
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    for secret in ["hunter2-pw", "tok-123456"] {
        assert!(!stderr.contains(secret), "{stderr}");
    }
    insta::assert_snapshot!(stderr);
}

#[test]
fn r22_a_huge_value_is_quoted_shortened() {
    let stack = TestStack::new("huge-value");
    stack.stack(&format!(
        "services:\n  api:\n    image: busybox\n    stop_grace_period: {}\n",
        "9".repeat(1_000_000) + "x"
    ));
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    assert!(stderr.len() < 1000, "{} bytes", stderr.len());
    insta::assert_snapshot!(stderr);
}

#[test]
fn defect2_huge_durations_on_the_command_line_are_usage_errors() {
    let stack = TestStack::new("huge-flags");
    stack.stack("services:\n  api:\n    image: busybox\n");
    let (code, stderr) = run(&stack, &["logs", "--since", "99999999999999999999h"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("too long"), "{stderr}");
}

#[test]
fn r19_a_huge_timeout_is_a_usage_error_not_a_panic() {
    let stack = TestStack::new("huge-timeout");
    stack.stack("services:\n  api:\n    image: busybox\n");
    // Refused by the argument parser, before the engine is asked anything.
    let (code, stderr) = run(&stack, &["up", "--timeout", "9223372036854775807"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
}

#[test]
fn defect7_restart_on_failure_with_a_count_is_accepted() {
    let stack = TestStack::new("on-failure");
    stack.stack("services:\n  api:\n    image: busybox\n    restart: on-failure:5\n  db:\n    image: busybox\n    restart: on-failure\n");
    let output = stack.cmd().arg("config").output().expect("run stackctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("restart: on-failure:5\n"), "{stdout}");
    assert!(stdout.contains("restart: on-failure\n"), "{stdout}");
    stack.stack("services:\n  api:\n    image: busybox\n    restart: on-failure:many\n");
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @"error: stacks/STAGE.yml:4:14: service `api`, `restart`: `on-failure:many`: the number of restarts must be a whole number (0 to 4294967295)");
}

#[test]
fn r22_a_directory_as_stack_file_is_named_without_the_init_hint() {
    let stack = TestStack::new("dir-stack");
    std::fs::create_dir_all(stack.path(&format!("stacks/{}.yml", stack.stage))).expect("mkdir");
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr, @r"
    error: cannot read `stacks/STAGE.yml`: it is a directory; stack and env files must be regular files
      hint: remove or rename that directory
    ");
}

/// RELIABILITY 4: the YAML reader stopped at a NUL byte as if the file ended there (`config`
/// exited 0 with the image cut short and later services gone), and an env file kept it inside
/// a value. Every file a stack reads (the stack file, `.env.STAGE`, an included file, a `-f`
/// file) is refused with exit 2 at the NUL's line and column.
#[test]
fn reliability4_a_nul_byte_is_an_error_at_its_line_and_column() {
    let write = |stack: &TestStack, rel: &str, bytes: &[u8]| {
        std::fs::write(stack.path(rel), bytes).expect("write");
    };
    let stack = TestStack::new("nul-image");
    let rel = format!("stacks/{}.yml", stack.stage);
    write(
        &stack,
        &rel,
        b"services:\n  api:\n    image: bb:lat\0est\n  db:\n    image: busybox\n",
    );
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: stacks/STAGE.yml:3:18: the file contains a NUL byte\n"),
        "{stderr}"
    );

    let stack = TestStack::new("nul-line-start");
    let rel = format!("stacks/{}.yml", stack.stage);
    write(&stack, &rel, b"services:\n\0  api:\n    image: busybox\n");
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("stacks/STAGE.yml:2:1: the file contains a NUL byte"),
        "{stderr}"
    );

    let stack = TestStack::new("nul-zeros");
    let rel = format!("stacks/{}.yml", stack.stage);
    let mut bytes = b"services:\n  api:\n    image: busybox\n".to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    write(&stack, &rel, &bytes);
    let (code, stderr) = run(&stack, &["up", "--dry-run"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("stacks/STAGE.yml:4:1: the file contains a NUL byte"),
        "{stderr}"
    );

    let stack = TestStack::new("nul-env");
    stack.stack("services:\n  api:\n    image: busybox\n    environment: {A: $A}\n");
    write(&stack, &format!(".env.{}", stack.stage), b"B=1\nA=x\0y\n");
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(".env.STAGE:2:4: the file contains a NUL byte"),
        "{stderr}"
    );

    let stack = TestStack::new("nul-include");
    stack.stack("include: [lib/more.yml]\nservices:\n  api:\n    image: busybox\n");
    std::fs::create_dir_all(stack.path("lib")).expect("mkdir");
    write(
        &stack,
        "lib/more.yml",
        b"services:\n  db:\n    image: \0busybox\n",
    );
    let (code, stderr) = run(&stack, &["config"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("lib/more.yml:3:12: the file contains a NUL byte"),
        "{stderr}"
    );

    let stack = TestStack::new("nul-f");
    write(
        &stack,
        "other.yml",
        b"services:\n  api:\n    image: busybox\0\n",
    );
    let (code, stderr) = run(&stack, &["-f", "other.yml", "config"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("other.yml:3:19: the file contains a NUL byte"),
        "{stderr}"
    );
}
