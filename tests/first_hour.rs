//! The first hour of a new user, offline, as the README's Quick start walks it (issue 22):
//! `init`'s hint when the image cannot be pulled, a second `init` that writes the image it is
//! given into the existing `.env.STAGE` (keeping its password), a second stage that does not
//! silently become the remembered one, `stackctl use`, and `purge` that names what it removes,
//! works without the stage's stack file, and sweeps stale stages by name and age.

mod support;

use support::{busybox_image, on_terminal, stage_objects, TestStack};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn value_of(env: &str, key: &str) -> Option<String> {
    env.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

/// A service stack on the busybox image that runs until stopped.
fn sleeper() -> String {
    format!(
        "services:\n  web: {{ image: {}, command: [sleep, '3600'], volumes: ['cache:/cache'] }}\nvolumes:\n  cache: {{}}\n",
        busybox_image()
    )
}

#[test]
fn issue22_offline_init_hints_db_image_and_a_second_init_writes_it_keeping_the_password() {
    let stack = TestStack::new("offline-init");
    let env_path = stack.path(&format!(".env.{}", stack.stage));
    // An image no engine has and no registry is asked for successfully here.
    let missing = format!("stackctl-missing/{}:1", stack.project);
    let output = stack
        .cmd()
        .arg("init")
        .env("DB_IMAGE", &missing)
        .output()
        .expect("run");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`DB_IMAGE=IMAGE stackctl init --env {}` writes it into .env.{}",
            stack.stage, stack.stage
        )),
        "the hint gives the offline recipe: {stderr}"
    );
    let first = std::fs::read_to_string(&env_path).expect("env file");
    let password = value_of(&first, "DB_PASSWORD").expect("a password");

    // The recipe: the same `init` with an image this engine has.
    let image = busybox_image();
    let output = stack
        .cmd()
        .args(["init", "--no-run"])
        .env("DB_IMAGE", image)
        .output()
        .expect("run");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "wrote `DB_IMAGE` from the environment into .env.{} (its other values kept)",
            stack.stage
        )),
        "{stderr}"
    );
    let second = std::fs::read_to_string(&env_path).expect("env file");
    assert_eq!(value_of(&second, "DB_IMAGE").as_deref(), Some(image));
    assert_eq!(
        value_of(&second, "DB_PASSWORD"),
        Some(password.clone()),
        "never a new password"
    );
    // Later plain commands use it, without the variable.
    let output = stack.cmd().arg("config").output().expect("run");
    assert!(
        stdout_of(&output).contains(&format!("image: {image}")),
        "{}",
        stdout_of(&output)
    );
    // `--force` renders the files again, and still keeps the password the database has.
    let output = stack
        .cmd()
        .args(["init", "--no-run", "--force"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let forced = std::fs::read_to_string(&env_path).expect("env file");
    assert_eq!(value_of(&forced, "DB_PASSWORD"), Some(password));
}

#[test]
fn issue22_a_second_stage_from_init_is_not_remembered_until_use_chooses_it() {
    let stack = TestStack::new("use-stage");
    stack.write("templates/stack.yml", &sleeper());
    let (first, second) = (format!("{}a", stack.stage), format!("{}b", stack.stage));
    let run = |args: &[&str]| {
        let output = stack
            .cmd()
            .env_remove("STACKCTL_ENV")
            .args(args)
            .output()
            .expect("run");
        (output.status.code(), stdout_of(&output), stderr_of(&output))
    };
    let remembered = || std::fs::read_to_string(stack.path(".stackctl/stage")).expect("stage");
    let (code, _, stderr) = run(&["-e", &first, "init", "--no-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(remembered(), format!("{first}\n"), "the first stage is");
    let (code, _, stderr) = run(&["init", "--env", &second, "--no-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "commands here still act on stage `{first}` without `-e` (`stackctl use {second}` switches)"
        )),
        "{stderr}"
    );
    assert_eq!(remembered(), format!("{first}\n"), "a second one is not");
    let (code, stdout, stderr) = run(&["use"]);
    assert_eq!((code, stdout.trim()), (Some(0), first.as_str()), "{stderr}");
    assert!(
        stderr.contains("remembered in `.stackctl/stage`"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["use", &second]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("commands here now act on stage `{second}`")),
        "{stderr}"
    );
    assert_eq!(remembered(), format!("{second}\n"));
    let (_, stdout, _) = run(&["use"]);
    assert_eq!(stdout.trim(), second);

    let (code, _, stderr) = run(&["use", "nosuchstage"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("stage `nosuchstage` has no stack file `stacks/nosuchstage.yml`")
            && stderr.contains(&format!("stages with a stack file: `{first}`, `{second}`")),
        "{stderr}"
    );
    assert_eq!(remembered(), format!("{second}\n"), "unchanged");
}

#[test]
fn issue22_purge_asks_naming_the_stage_and_every_object_it_would_remove() {
    let stack = TestStack::new("purge-prompt");
    stack.stack(&sleeper());
    let output = stack.cmd().arg("up").output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    // No answer on the terminal: nothing is removed.
    let (transcript, code) = on_terminal(&stack, "purge", &[]);
    assert_eq!(code, 1, "{transcript}");
    for expected in [
        format!(
            "remove everything stage `{}` of `{}` owns?",
            stack.stage, stack.project
        ),
        format!("containers: {}", stack.container("web")),
        format!("volumes: {}-{}_cache", stack.stage, stack.project),
        format!("networks: {}-{}_default", stack.stage, stack.project),
        format!("purge stage `{}`? [y/N]", stack.stage),
        "nothing removed".to_string(),
    ] {
        assert!(transcript.contains(&expected), "{expected}: {transcript}");
    }
    assert_eq!(stack.containers(), [stack.container("web")]);
}

#[test]
fn issue22_purge_of_a_stage_without_its_stack_file_works_from_the_labels() {
    let stack = TestStack::new("purge-labels");
    stack.stack(&sleeper());
    let output = stack.cmd().arg("up").output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    // A fresh checkout: the stage's stack file was rendered on a runner that died.
    std::fs::remove_file(stack.path(&format!("stacks/{}.yml", stack.stage))).expect("rm");
    let output = stack.cmd().args(["purge", "--yes"]).output().expect("run");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no stack file `stacks/{}.yml`: purging stage `{}` of `{}` by the engine's labels",
            stack.stage, stack.stage, stack.project
        )),
        "{stderr}"
    );
    assert_eq!(
        stage_objects(&stack.project, &stack.stage),
        Vec::<String>::new()
    );
}

#[test]
fn issue22_purge_stale_removes_the_matching_stages_older_than_the_age() {
    let stack = TestStack::new("purge-stale");
    let (old, kept) = (
        format!("{}-ci-1", stack.stage),
        format!("{}-qa", stack.stage),
    );
    for stage in [&old, &kept] {
        stack.write(&format!("stacks/{stage}.yml"), &sleeper());
        let output = stack.cmd().args(["-e", stage, "up"]).output().expect("run");
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        // Removed from the checkout: only the engine knows these stages now.
        std::fs::remove_file(stack.path(&format!("stacks/{stage}.yml"))).expect("rm");
    }
    let pattern = format!("{}-ci-*", stack.stage);
    // Nothing of this test is an hour old.
    let output = stack
        .cmd()
        .args(["purge", "--stale", "1h", &pattern, "--yes"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("is older than 1h"),
        "{}",
        stderr_of(&output)
    );
    assert!(!stage_objects(&stack.project, &old).is_empty());
    // `ls` makes the same selection: by name, and by age (0s: everything is old enough).
    let output = stack
        .cmd()
        .args(["--json", "ls", &pattern, "--stale", "0s"])
        .output()
        .expect("run");
    let stages: Vec<String> = stdout_of(&output)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("json");
            row["stage"].as_str().expect("stage").to_string()
        })
        .collect();
    assert_eq!(stages, std::slice::from_ref(&old), "{}", stderr_of(&output));
    let output = stack
        .cmd()
        .args(["purge", "--stale", "0s", &pattern, "--yes"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(stage_objects(&stack.project, &old), Vec::<String>::new());
    assert!(
        !stage_objects(&stack.project, &kept).is_empty(),
        "a stage the pattern does not match stays"
    );
}

#[test]
fn issue22_data_copy_to_a_stage_without_its_image_says_how_to_get_one() {
    let stack = TestStack::new("copy-noimage");
    let (dev, qa) = (format!("{}d", stack.stage), format!("{}q", stack.stage));
    let yaml = "services:\n  web: { image: \"${APP_IMAGE}\", command: [sleep, '3600'], volumes: ['cache:/cache'] }\nvolumes:\n  cache: {}\n";
    let missing = format!("stackctl-missing/{}:1", stack.project);
    for (stage, image) in [(&dev, busybox_image().to_string()), (&qa, missing.clone())] {
        stack.write(&format!("stacks/{stage}.yml"), yaml);
        stack.write(&format!(".env.{stage}"), &format!("APP_IMAGE={image}\n"));
    }
    let output = stack.cmd().args(["-e", &dev, "up"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let output = stack
        .cmd()
        .args(["-e", &qa, "data", "copy", "--from", &dev])
        .output()
        .expect("run");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("no image of stage `{qa}` is on this engine")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("the stage's images: `{missing}`"))
            && stderr.contains(&format!(
                "`APP_IMAGE=IMAGE stackctl init --env {qa} --no-run` writes it into .env.{qa}"
            )),
        "{stderr}"
    );
}

#[test]
fn issue22_the_watch_hint_points_at_a_section_of_the_manual_that_exists() {
    let stack = TestStack::new("watch-hint");
    stack.stack(&sleeper());
    let output = stack.cmd().arg("watch").output().expect("run");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("docs/src/commands.md#stackctl-watch"),
        "{stderr}"
    );
    let manual =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/commands.md"))
            .expect("manual");
    assert!(manual.lines().any(|l| l == "## stackctl watch"));
}
