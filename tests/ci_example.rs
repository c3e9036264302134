//! The GitLab CI example is a working pipeline: every `stackctl` command in it parses with
//! the real command line, the stage is unique per pipeline, and `purge --yes` runs in
//! `after_script` (regression guard for a CI example that drifts from the CLI). The
//! integration job's lines run verbatim under `sh` (Debian's dash: no `pipefail`) against
//! the real engine, and the deploy job's setup writes its secrets into the job's directory.

mod support;

use std::collections::HashMap;
use std::path::Path;

use clap::Parser;
use stackctl::cli::{Cli, Command};

fn example() -> stackctl::stack::load::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ci/.gitlab-ci.yml");
    let text = std::fs::read_to_string(path).expect("read examples/ci/.gitlab-ci.yml");
    stackctl::stack::load::parse(&text).expect("valid YAML").0
}

/// The stackctl invocation of a script line, without shell pipes and redirections.
fn stackctl_args(line: &str) -> Option<Vec<String>> {
    let command = line.split(['|', '<', '>']).next()?.trim();
    let words = shell_words::split(command).expect("shell words");
    (words.first().map(String::as_str) == Some("stackctl")).then_some(words)
}

fn script(job: &stackctl::stack::load::Value, key: &str) -> Vec<String> {
    job[key]
        .as_sequence()
        .unwrap_or_else(|| panic!("job has `{key}`"))
        .iter()
        .map(|line| line.as_str().expect("a script line").to_string())
        .collect()
}

#[test]
fn every_stackctl_line_parses_and_the_stage_is_cleaned_up() {
    let ci = example();
    assert_eq!(
        ci["variables"]["STACKCTL_ENV"].as_str(),
        Some("ci-$CI_PIPELINE_ID"),
        "one stage per pipeline"
    );
    let job = &ci["integration"];
    let mut commands = Vec::new();
    for line in script(job, "script")
        .iter()
        .chain(script(job, "after_script").iter())
    {
        let Some(args) = stackctl_args(line) else {
            continue;
        };
        let cli =
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("`{line}` does not parse: {e}"));
        commands.push(cli);
    }
    let names: Vec<&str> = commands
        .iter()
        .map(|cli| match &cli.command {
            Command::Init(_) => "init",
            Command::Up(_) => "up",
            Command::Exec(args) => args.name.as_str(),
            Command::Purge(_) => "purge",
            _ => "other",
        })
        .collect();
    assert_eq!(names, ["init", "up", "init", "tests", "purge"]);
    // No pipe after a stackctl command: under `sh` without `pipefail` the pipe's status
    // would be the last command's, and a failed `up` would pass (issue 22).
    for line in script(job, "script") {
        if line.trim_start().starts_with("stackctl") {
            assert!(
                !line.contains('|'),
                "a pipe hides stackctl's exit code: {line}"
            );
        }
    }
    assert!(
        commands.iter().any(|cli| cli.global.json),
        "machine-readable events with --json"
    );
    let after = script(job, "after_script");
    let purge = after
        .iter()
        .filter_map(|line| stackctl_args(line))
        .map(|args| Cli::try_parse_from(&args).expect("parses"))
        .find_map(|cli| match cli.command {
            Command::Purge(args) => Some(args),
            _ => None,
        })
        .expect("purge in after_script");
    assert!(purge.yes, "purge never prompts in CI");
}

#[test]
fn the_deploy_job_builds_pushes_then_brings_prod_up_over_ssh() {
    let ci = example();
    let job = &ci["deploy"];
    assert_eq!(job["variables"]["STACKCTL_ENV"].as_str(), Some("prod"));
    let before = script(job, "before_script").join("\n");
    assert!(
        before.contains("SSH_PRIVATE_KEY"),
        "the key comes from a CI variable"
    );
    assert!(before.contains("known_hosts"), "the host key is pinned");
    let mut names = Vec::new();
    for line in script(job, "script") {
        let Some(args) = stackctl_args(&line) else {
            continue;
        };
        let cli =
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("`{line}` does not parse: {e}"));
        names.push(match cli.command {
            Command::Build(_) => "build",
            Command::Push(_) => "push",
            Command::Up(_) => "up",
            _ => "other",
        });
    }
    let order: Vec<&str> = names.into_iter().filter(|n| *n != "other").collect();
    assert_eq!(order, ["build", "push", "up"]);
}

/// GitLab's expansion of `$NAME` and `${NAME}` in a job's `variables:` values.
fn expand(value: &str, vars: &HashMap<String, String>) -> String {
    let mut out = value.to_string();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &vars[name])
            .replace(&format!("${name}"), &vars[name]);
    }
    out
}

/// The job's environment: `base`, then the pipeline's and the job's `variables:` expanded.
fn job_env(
    ci: &stackctl::stack::load::Value,
    job: &str,
    base: &[(&str, String)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for scope in [&ci["variables"], &ci[job]["variables"]] {
        if let Some(map) = scope.as_mapping() {
            for (key, value) in map {
                let value = expand(value.as_str().expect("a string variable"), &vars);
                vars.insert(key.as_str().to_string(), value);
            }
        }
    }
    vars
}

/// Run script lines as GitLab's shell executor does: each under `sh -c`, stopping at the
/// first that fails. The failed line and its exit code, if one did.
fn run_lines(
    lines: &[String],
    dir: &Path,
    env: &HashMap<String, String>,
) -> Option<(String, i32, String)> {
    let bin = assert_cmd::cargo::cargo_bin("stackctl");
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in lines {
        let output = std::process::Command::new("sh")
            .args(["-c", line])
            .current_dir(dir)
            .envs(env)
            .env("PATH", &path)
            .env("CI", "true")
            .env_remove("DOCKER_HOST")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run sh");
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            return Some((line.clone(), output.status.code().unwrap_or(-1), stderr));
        }
    }
    None
}

/// A project shaped like the example's: templates with an `init` sequence and a `tests`
/// task; `healthy` says whether the service's health check can pass.
fn ci_project(name: &str, healthy: bool) -> support::TestStack {
    let stack = support::TestStack::new(name);
    let image = support::busybox_image();
    let check = if healthy { "true" } else { "false" };
    stack.write(
        "templates/stack.yml",
        &format!(
            r#"services:
  web:
    image: {image}
    command: [sleep, '3600']
    healthcheck: {{ test: [CMD, '{check}'], interval: 200ms, retries: 2 }}
tasks:
  seed: {{ service: web, command: [sh, -c, 'echo seeded > /tmp/seeded'] }}
  init: {{ steps: [up, seed] }}
  tests: {{ service: web, command: [sh, -c, 'echo ran 1 test; exit 0'] }}
"#
        ),
    );
    stack.write("templates/env", "SECRET={secret}\n");
    stack
}

#[test]
fn issue22_the_integration_job_runs_verbatim_under_sh_and_leaves_nothing() {
    let ci = example();
    let stack = ci_project("ci-verbatim", true);
    let env = job_env(
        &ci,
        "integration",
        &[("CI_PIPELINE_ID", stack.stage.clone())],
    );
    let stage = format!("ci-{}", stack.stage);
    assert_eq!(env["STACKCTL_ENV"], stage);
    let job = &ci["integration"];
    let failed = run_lines(&script(job, "script"), &stack.dir, &env);
    let after = run_lines(&script(job, "after_script"), &stack.dir, &env);
    assert_eq!(failed, None, "the job's script passes");
    assert_eq!(after, None, "after_script passes");
    // The artifact holds the events of `up`, ending with its summary.
    let events = std::fs::read_to_string(stack.path("up-events.jsonl")).expect("artifact");
    let last: serde_json::Value =
        serde_json::from_str(events.lines().last().expect("events")).expect("json");
    assert_eq!(last["stage"], stage.as_str(), "{events}");
    assert_eq!(
        support::stage_objects(&stack.project, &stage),
        Vec::<String>::new(),
        "purge removed the stage"
    );
}

#[test]
fn issue22_a_failing_up_fails_the_job_under_sh_without_pipefail() {
    let ci = example();
    let stack = ci_project("ci-upfails", false);
    let env = job_env(
        &ci,
        "integration",
        &[("CI_PIPELINE_ID", stack.stage.clone())],
    );
    let job = &ci["integration"];
    let failed = run_lines(&script(job, "script"), &stack.dir, &env);
    let (line, code, stderr) = failed.expect("the job fails");
    assert!(line.contains(" up "), "at the `up` line: {line}");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("web"), "names the service: {stderr}");
    assert_eq!(
        run_lines(&script(job, "after_script"), &stack.dir, &env),
        None
    );
    assert_eq!(
        support::stage_objects(&stack.project, &format!("ci-{}", stack.stage)),
        Vec::<String>::new()
    );
}

#[test]
fn issue22_the_deploy_job_keeps_its_key_and_credentials_in_the_job_directory() {
    let ci = example();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key-variable");
    std::fs::write(&key, "not a real key\n").expect("key");
    let project = dir.path().join("checkout");
    std::fs::create_dir_all(&project).expect("checkout");
    let env = job_env(
        &ci,
        "deploy",
        &[
            ("CI_PROJECT_DIR", project.display().to_string()),
            ("CI_COMMIT_SHORT_SHA", "abc1234".to_string()),
            ("SSH_PRIVATE_KEY", key.display().to_string()),
            ("SSH_KNOWN_HOSTS", "server ssh-ed25519 AAAA".to_string()),
            ("REGISTRY", "127.0.0.1:5999".to_string()),
            ("REGISTRY_USER", "deployer".to_string()),
            ("REGISTRY_PASSWORD", "pass-word".to_string()),
        ],
    );
    let jobdir = project.join(".job-secrets");
    assert_eq!(
        env["STACKCTL_SSH_CONFIG"],
        format!("{}/ssh_config", jobdir.display())
    );
    assert_eq!(env["DOCKER_CONFIG"], format!("{}/docker", jobdir.display()));
    let job = &ci["deploy"];
    assert_eq!(
        run_lines(&script(job, "before_script"), &project, &env),
        None
    );
    let ssh_config = std::fs::read_to_string(&env["STACKCTL_SSH_CONFIG"]).expect("ssh config");
    assert!(
        ssh_config.contains(&format!("IdentityFile {}/id_deploy", jobdir.display()))
            && ssh_config.contains("StrictHostKeyChecking yes"),
        "{ssh_config}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(jobdir.join("id_deploy"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = std::fs::read_to_string(jobdir.join("docker/config.json")).expect("config");
    let config: serde_json::Value = serde_json::from_str(&config).expect("json");
    assert!(
        config["auths"]["127.0.0.1:5999"]["auth"].is_string(),
        "{config}"
    );
    // The monolith's prod stage resolves with the job's variables (and a database password).
    let monolith = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/monolith");
    let output = assert_cmd::Command::cargo_bin("stackctl")
        .expect("binary")
        .current_dir(monolith)
        .envs(&env)
        .env("PROD_HOST", "server.invalid")
        .env("DB_PASSWORD", "pw")
        .args(["config"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("image: 127.0.0.1:5999/monolith/app:abc1234"),
        "{stdout}"
    );
    // after_script removes the job's secrets.
    assert_eq!(
        run_lines(&script(job, "after_script"), &project, &env),
        None
    );
    assert!(!jobdir.exists());
}
