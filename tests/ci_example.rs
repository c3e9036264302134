//! The GitLab CI example is a working pipeline: every `stackctl` command in it parses with
//! the real command line, the stage is unique per pipeline, and `purge --yes` runs in
//! `after_script` (regression guard for a CI example that drifts from the CLI).

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
