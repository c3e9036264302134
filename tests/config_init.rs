//! `stackctl config` and `stackctl init` through the real binary: the resolved stack,
//! masking, profiles, where variables come from, rendering templates, and every command's
//! help. Only `init_runs_the_init_task` needs the Docker engine.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{busybox_image, TestStack};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Run `stackctl ARGS` in the test project and require exit code 0.
fn ok(stack: &TestStack, args: &[&str]) -> (String, String) {
    let output = stack
        .cmd()
        .args(args)
        .env_remove("STACKCTL_PROFILES")
        .output()
        .expect("run stackctl");
    assert_eq!(
        output.status.code(),
        Some(0),
        "stackctl {args:?} failed: {}",
        stderr_of(&output)
    );
    (stdout_of(&output), stderr_of(&output))
}

/// Replace what differs from run to run (directory, stage, project) with fixed words.
fn redact(stack: &TestStack, text: &str) -> String {
    text.replace(&stack.dir.display().to_string(), "[PROJECT_DIR]")
        .replace(&stack.stage, "STAGE")
        .replace(&stack.project, "PROJECT")
}

const VALID: &str = r#"
name: ${SHOP_NAME:-shop}
x-common: &common
  restart: unless-stopped
services:
  db:
    <<: *common
    image: "${DB_IMAGE:-postgres:16}"
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD}
      POSTGRES_DB: ${PROJECT}_${STAGE}
    volumes_from: ["db_data:ro"]
    volumes: ["cache:/cache", "./initdb:/docker-entrypoint-initdb.d:ro"]
    healthcheck: { test: "pg_isready", interval: 1s, retries: "${RETRIES:-30}" }
    x-note: extension keys are allowed
  api:
    build: { context: ./api, args: { API_KEY: "${API_KEY:-k-default-value}" } }
    depends_on: { db: { condition: service_healthy } }
    ports: ["127.0.0.1:${API_PORT:-5000}:5000", 9000]
    command: python app.py --secret ${DB_PASSWORD}
    environment: [MODE=dev, HOME_FROM_FILE]
    env_file: conf/api.env
    labels: { com.example.token: abcd1234 }
  debugger:
    image: busybox
    profiles: [debug]
    depends_on: [api]
volumes:
  cache: {}
data_containers:
  db_data:
    image: busybox
    volumes: [/var/lib/postgresql/data]
tasks:
  seed: { service: db, command: [psql, -f, /seed.sql], stdin: data/seed.sql }
  init: { steps: [up, seed] }
"#;

fn valid_stack(name: &str) -> TestStack {
    let stack = TestStack::new(name);
    stack.stack(VALID);
    stack.write(
        &format!(".env.{}", stack.stage),
        "# stage settings\nDB_PASSWORD=hunter2hunter2\nAPI_PORT=5001\nHOME_FROM_FILE=from-env-file\n",
    );
    stack.write(
        "conf/api.env",
        "MODE=from-env-file-loses\nEXTRA=from-api-env\n",
    );
    stack
}

#[test]
fn config_prints_the_resolved_stack() {
    let stack = valid_stack("config-resolved");
    let (stdout, stderr) = ok(&stack, &["config"]);
    assert!(
        !stdout.contains("hunter2hunter2"),
        "secrets are masked: {stdout}"
    );
    assert!(stderr.is_empty(), "no warnings: {stderr}");
    insta::assert_snapshot!(redact(&stack, &stdout));
    // No engine is needed: an unreachable daemon changes nothing.
    let output = stack
        .cmd()
        .arg("config")
        .env("DOCKER_HOST", "tcp://127.0.0.1:9")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), stdout);
}

#[test]
fn selecting_a_profile_brings_its_services_in() {
    let stack = TestStack::new("profiles");
    stack.stack(
        "services:\n  api:\n    image: busybox\n    depends_on: [debugger]\n    profiles: [debug]\n  debugger:\n    image: busybox\n    profiles: [debug, tools]\n  db:\n    image: busybox\n",
    );
    let (stdout, _) = ok(&stack, &["config", "--services"]);
    assert_eq!(stdout, "db\n", "profiled services are off by default");
    let (stdout, _) = ok(&stack, &["--profile", "tools", "config", "--services"]);
    assert_eq!(stdout, "debugger\ndb\n");
    let (stdout, _) = ok(&stack, &["--profile", "debug", "config", "--services"]);
    assert_eq!(stdout, "api\ndebugger\ndb\n");
}

#[test]
fn config_show_secrets_reveals_masked_values() {
    let stack = valid_stack("config-secrets");
    let (masked, _) = ok(&stack, &["config"]);
    for secret in ["hunter2hunter2", "k-default-value", "abcd1234"] {
        assert!(!masked.contains(secret), "`{secret}` masked: {masked}");
    }
    assert!(masked.contains("POSTGRES_PASSWORD: '****'"), "{masked}");
    assert!(
        masked.contains("- --secret\n    - '****'\n"),
        "secret inside a command: {masked}"
    );
    let (shown, _) = ok(&stack, &["config", "--show-secrets"]);
    assert!(
        shown.contains("POSTGRES_PASSWORD: hunter2hunter2"),
        "{shown}"
    );
    assert!(shown.contains("API_KEY: k-default-value"), "{shown}");
    assert!(shown.contains("com.example.token: abcd1234"), "{shown}");
}

#[test]
fn config_services_lists_the_active_services() {
    let stack = valid_stack("config-services");
    let (stdout, _) = ok(&stack, &["config", "--services"]);
    assert_eq!(stdout, "db\napi\n");
    let (stdout, _) = ok(&stack, &["--profile", "debug", "config", "--services"]);
    assert_eq!(stdout, "db\napi\ndebugger\n");
    let output = stack
        .cmd()
        .args(["config", "--services"])
        .env("STACKCTL_PROFILES", "other,debug")
        .output()
        .expect("run");
    assert_eq!(stdout_of(&output), "db\napi\ndebugger\n");
}

#[test]
fn process_environment_beats_env_file_beats_builtins() {
    let stack = TestStack::new("precedence");
    stack.stack(
        "services:\n  app:\n    image: busybox\n    environment:\n      A: ${STK_A}\n      B: ${STK_B}\n      C: ${STK_C:-default-c}\n      S: ${STAGE}\n      P: ${PROJECT}\n      OVER: ${STAGE_OVERRIDE_TEST:-none}\n",
    );
    stack.write(
        &format!(".env.{}", stack.stage),
        "STK_A=file-a\nSTK_B=file-b\nSTAGE_OVERRIDE_TEST=file\n",
    );
    let output = stack
        .cmd()
        .args(["config"])
        .env("STK_A", "env-a")
        .env_remove("STK_B")
        .env_remove("STK_C")
        .env_remove("STAGE")
        .env_remove("PROJECT")
        .env_remove("STAGE_OVERRIDE_TEST")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    for line in [
        "A: env-a",
        "B: file-b",
        "C: default-c",
        &format!("S: {}", stack.stage),
        &format!("P: {}", stack.project),
        "OVER: file",
    ] {
        assert!(stdout.contains(line), "`{line}` in:\n{stdout}");
    }
    // A process variable named like a built-in wins too: one order for every variable.
    let output = stack
        .cmd()
        .args(["config", "--sources"])
        .env("STK_A", "env-a")
        .env("STAGE", "from-process")
        .env_remove("STK_B")
        .env_remove("STK_C")
        .env_remove("PROJECT")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    // Columns are aligned to the longest value (which varies with the stage name): compare
    // the cells.
    let rows: Vec<String> = redact(&stack, &stdout_of(&output))
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    insta::assert_snapshot!(rows.join("\n"));
    assert!(
        stderr_of(&output).contains("strongest source first: process environment"),
        "the order is stated: {}",
        stderr_of(&output)
    );
}

#[test]
fn sources_show_unused_env_file_variables_and_typos_warn() {
    let stack = TestStack::new("config-typo");
    stack.stack(
        "services:\n  app:\n    image: \"busybox:${STK_TAGG:-1}\"\n    environment: [STK_DB_PASWORD, STK_OPTIONAL]\n",
    );
    stack.write(
        &format!(".env.{}", stack.stage),
        "STK_TAG=2\nSTK_DB_PASSWORD=hunter2hunter2\n",
    );
    let output = stack
        .cmd()
        .args(["config", "--sources"])
        .env_remove("STK_TAGG")
        .env_remove("STK_DB_PASWORD")
        .env_remove("STK_OPTIONAL")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let rows: Vec<String> = redact(&stack, &stdout_of(&output))
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    insta::assert_snapshot!(rows.join("\n"), @r"
    VARIABLE | SOURCE | VALUE | USED AT
    STK_TAGG | default in the stack file | 1 | stacks/STAGE.yml:3:12
    STK_DB_PASWORD | not set (entry left out) | stacks/STAGE.yml:4:19
    STK_OPTIONAL | not set (entry left out) | stacks/STAGE.yml:4:35
    STK_TAG | .env.STAGE:1 | 2 | (not used by the stack file)
    STK_DB_PASSWORD | .env.STAGE:2 | **** | (not used by the stack file)
    ");
    let warnings: Vec<String> = redact(&stack, &stderr_of(&output))
        .lines()
        .filter(|l| l.starts_with("warning"))
        .map(String::from)
        .collect();
    assert_eq!(
        warnings,
        vec!["warning: variable `STK_DB_PASWORD` is not set; the entry is left out (stacks/STAGE.yml:4:19) (`.env.STAGE` has `STK_DB_PASSWORD`: a typo?)".to_string()],
        "only the likely typo warns"
    );
}

#[test]
fn environment_is_filled_and_env_files_merged() {
    let stack = valid_stack("config-environment");
    let (stdout, _) = ok(&stack, &["config", "--show-secrets"]);
    assert!(stdout.contains("HOME_FROM_FILE: from-env-file"), "{stdout}");
    assert!(stdout.contains("EXTRA: from-api-env"), "{stdout}");
    assert!(
        stdout.contains("MODE: dev"),
        "environment wins over env_file: {stdout}"
    );
    assert!(!stdout.contains("from-env-file-loses"), "{stdout}");
}

#[test]
fn unset_variables_warn() {
    let stack = TestStack::new("config-unset");
    stack.stack("services:\n  app:\n    image: busybox:${STK_UNSET_TAG}\n");
    let output = stack
        .cmd()
        .arg("config")
        .env_remove("STK_UNSET_TAG")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    let stderr = redact(&stack, &stderr_of(&output));
    insta::assert_snapshot!(stderr, @"warning: variable `STK_UNSET_TAG` is not set; using an empty string (stacks/STAGE.yml:3:12)");
}

const TEMPLATE_STACK: &str = "# stage {stage} of {project} at {domain}
services:
  app:
    image: IMAGE
    container_name: '{stage}-app'
    environment:
      PASSWORD: ${APP_PASSWORD}
      URL: https://{domain}/
tasks:
  hello: { image: IMAGE, command: [sh, -c, 'echo hello from {stage}'] }
  init: { steps: [hello] }
";
const TEMPLATE_ENV: &str = "APP_PASSWORD={secret}\nOTHER_SECRET={secret}\nDOMAIN={domain}\n";

fn templated(name: &str) -> TestStack {
    let stack = TestStack::new(name);
    stack.write(
        "templates/stack.yml",
        &TEMPLATE_STACK.replace("IMAGE", "busybox"),
    );
    stack.write("templates/env", TEMPLATE_ENV);
    stack
}

fn env_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn init_renders_the_templates() {
    let stack = templated("init-render");
    let (_, stderr) = ok(&stack, &["init", "--no-run", "--domain", "shop.test"]);
    insta::assert_snapshot!(redact(&stack, &stderr), @r"
    wrote stacks/STAGE.yml from `templates/stack.yml`
    wrote .env.STAGE from `templates/env`
    commands here now act on stage `STAGE` without `-e` (remembered in `.stackctl/stage`)
    stacks/STAGE.yml is valid; the `init` task was not run (--no-run)
    ");
    let rendered = std::fs::read_to_string(stack.path(&format!("stacks/{}.yml", stack.stage)))
        .expect("stack file");
    assert!(rendered.starts_with(&format!(
        "# stage {} of {} at shop.test\n",
        stack.stage, stack.project
    )));
    assert!(rendered.contains("URL: https://shop.test/"));
    // A container name keeps the stage, so that stages never share it.
    assert!(rendered.contains(&format!("container_name: '{}-app'", stack.stage)));
    let env_path = stack.path(&format!(".env.{}", stack.stage));
    assert_eq!(mode(&env_path), 0o600, ".env is private");
    let values = env_values(&std::fs::read_to_string(&env_path).expect("env file"));
    let (password, other) = (&values[0].1, &values[1].1);
    assert!(password.len() >= 24 && password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(other.len() >= 24 && other.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(password, other, "each {{secret}} is a fresh one");
    assert_eq!(values[2], ("DOMAIN".to_string(), "shop.test".to_string()));
    // A second project gets other secrets.
    let again = templated("init-render-again");
    ok(&again, &["init", "--no-run"]);
    let values_again = env_values(
        &std::fs::read_to_string(again.path(&format!(".env.{}", again.stage))).expect("env"),
    );
    assert_ne!(&values_again[0].1, password);
    assert_eq!(values_again[2].1, format!("{}.localhost", again.stage));
}

#[test]
fn init_keeps_existing_files_unless_forced() {
    let stack = templated("init-force");
    ok(&stack, &["init", "--no-run"]);
    let env_path = stack.path(&format!(".env.{}", stack.stage));
    let stack_path = stack.path(&format!("stacks/{}.yml", stack.stage));
    std::fs::write(&env_path, "APP_PASSWORD=mine\n").expect("edit env");
    std::fs::set_permissions(&env_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let edited = std::fs::read_to_string(&stack_path).expect("read") + "# my edit\n";
    std::fs::write(&stack_path, &edited).expect("edit stack");

    let (_, stderr) = ok(&stack, &["init", "--no-run"]);
    assert!(
        stderr.contains(&format!("kept .env.{}", stack.stage)),
        "{stderr}"
    );
    assert!(
        stderr.contains("--force"),
        "says how to overwrite: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&env_path).expect("read"),
        "APP_PASSWORD=mine\n"
    );
    assert_eq!(std::fs::read_to_string(&stack_path).expect("read"), edited);

    let (_, stderr) = ok(&stack, &["init", "--no-run", "--force"]);
    assert!(
        stderr.contains(&format!("wrote .env.{}", stack.stage)),
        "{stderr}"
    );
    // Rendered again, but a secret the old file has keeps its value (issue 22: a database
    // initialised with it keeps accepting it).
    let forced = std::fs::read_to_string(&env_path).expect("read");
    assert!(forced.starts_with("APP_PASSWORD=mine\n"), "{forced}");
    assert!(forced.contains("OTHER_SECRET="), "{forced}");
    assert!(!std::fs::read_to_string(&stack_path)
        .expect("read")
        .contains("# my edit"));
    assert_eq!(
        mode(&env_path),
        0o600,
        "an overwritten .env is private again"
    );
}

#[test]
fn init_without_templates_uses_the_built_in_ones() {
    let stack = TestStack::new("init-builtin");
    let (_, stderr) = ok(&stack, &["init", "--no-run"]);
    insta::assert_snapshot!(redact(&stack, &stderr), @r"
    wrote stacks/STAGE.yml from the built-in template
    wrote .env.STAGE from the built-in template
    commands here now act on stage `STAGE` without `-e` (remembered in `.stackctl/stage`)
    stacks/STAGE.yml is valid; the `init` task was not run (--no-run)
    ");
    assert_eq!(mode(&stack.path(&format!(".env.{}", stack.stage))), 0o600);
    let (services, _) = ok(&stack, &["config", "--services"]);
    assert_eq!(services, "db\n");
    let (config, _) = ok(&stack, &["config"]);
    assert!(config.contains("POSTGRES_PASSWORD: '****'"), "{config}");
    assert!(config.contains("init:"), "an init task: {config}");
}

#[test]
fn init_keeps_variables_the_environment_sets_in_the_env_file() {
    let stack = TestStack::new("init-kept");
    let output = stack
        .cmd()
        .args(["init", "--no-run"])
        .env("DB_IMAGE", "registry.example.com/team/pg:15")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("`DB_IMAGE` from the environment kept in"),
        "{}",
        stderr_of(&output)
    );
    // Later commands, without the variable, use the image `init` was given.
    let (config, _) = ok(&stack, &["config"]);
    assert!(
        config.contains("image: registry.example.com/team/pg:15"),
        "{config}"
    );
}

#[test]
fn init_reports_an_invalid_template() {
    let stack = TestStack::new("init-invalid");
    stack.write(
        "templates/stack.yml",
        "services:\n  app:\n    imag: busybox\n",
    );
    let output = stack
        .cmd()
        .args(["init", "--no-run"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(redact(&stack, &stderr_of(&output)), @r"
    wrote stacks/STAGE.yml from `templates/stack.yml`
    error: stacks/STAGE.yml:2:3: service `app` has neither `image` nor `build`
      hint: add `image: NAME` to run an image, or `build: DIR` to build one
    error: stacks/STAGE.yml:3:5: unknown key `imag` in service `app`
      hint: did you mean `image`?
    2 problems found
    ");
}

#[test]
fn init_runs_the_init_task() {
    let image = busybox_image();
    let stack = TestStack::new("init-run");
    stack.write(
        "templates/stack.yml",
        &TEMPLATE_STACK.replace("IMAGE", image),
    );
    stack.write("templates/env", TEMPLATE_ENV);
    let output = stack.cmd().arg("init").output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stdout_of(&output).contains(&format!("hello from {}", stack.stage)),
        "the init task ran: {}",
        stdout_of(&output)
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let stack = TestStack::new("help");
    let commands = [
        "init",
        "config",
        "build",
        "up",
        "stop",
        "start",
        "down",
        "purge",
        "exec",
        "logs",
        "ps",
        "completions",
    ];
    for command in commands {
        let output = stack.cmd().args([command, "--help"]).output().expect("run");
        assert_eq!(output.status.code(), Some(0), "{command} --help");
        let stdout = stdout_of(&output);
        assert!(
            stdout.contains("Example"),
            "`stackctl {command} --help` shows an example:\n{stdout}"
        );
    }
    let output = stack.cmd().arg("--help").output().expect("run");
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout_of(&output).contains("Examples"));
}
