//! Compose files as they are written: a plain `compose.yaml` project (with `.env` and
//! `compose.override.yaml`), `-f` files merged by Compose's rules (`!reset`, `!override`),
//! `stacks/base.yml` under a stage's file, `include` and `extends` (errors located in the
//! file that holds them, cycles), YAML that PyYAML and Go read, `.env` interpolation, and
//! `init`'s secrets staying literal. Through the real binary; only
//! `plain_compose_project_goes_up_and_down` needs the Docker engine.

mod support;

use support::{busybox_image, docker_ok, TestStack};

/// A project without `stacks/` (what `TestStack::new` makes): a Compose project.
fn compose_project(name: &str) -> TestStack {
    let stack = TestStack::new(name);
    std::fs::remove_dir(stack.path("stacks")).expect("remove stacks/");
    stack
}

fn run(stack: &TestStack, args: &[&str]) -> std::process::Output {
    stack
        .cmd()
        .args(args)
        .env_remove("STACKCTL_PROFILES")
        .output()
        .expect("run stackctl")
}

/// `stackctl ARGS` must succeed; its stdout.
fn ok(stack: &TestStack, args: &[&str]) -> String {
    let output = run(stack, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stackctl {args:?} failed: {stderr}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `stackctl config` must fail with exit code 2; its stderr, the stage's name replaced.
fn config_errors(stack: &TestStack, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("config");
    let output = run(stack, &all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.replace(&stack.stage, "STAGE")
}

/// The resolved stack as JSON (`config --json --show-secrets`).
fn resolved(stack: &TestStack, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["config", "--json", "--show-secrets"]);
    serde_json::from_str(&ok(stack, &all)).expect("config --json")
}

#[test]
fn plain_compose_project_reads_dot_env_and_the_override_file() {
    let stack = compose_project("plain");
    stack.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox:${TAG:-1}\n    environment:\n      URL: ${URL}\n      MODE: base\n    ports: ['8080:80']\n    command: [sh, -c, 'sleep 1']\n",
    );
    stack.write(
        "compose.override.yaml",
        "services:\n  web:\n    environment:\n      MODE: override\n    ports: ['9090:90']\n    command: [sleep, '5']\n",
    );
    stack.write(".env", "TAG=1.36\nURL=http://base\n");
    // `.env.STAGE` still applies, over `.env`.
    stack.write(&format!(".env.{}", stack.stage), "URL=http://stage\n");
    let config = resolved(&stack, &[]);
    let web = &config["services"]["web"];
    assert_eq!(web["image"], "busybox:1.36");
    assert_eq!(web["environment"]["URL"], "http://stage");
    assert_eq!(web["environment"]["MODE"], "override");
    assert_eq!(web["ports"].as_array().map(Vec::len), Some(2), "{web}");
    assert_eq!(web["command"], serde_json::json!(["sleep", "5"]));
    assert_eq!(config["name"], stack.project.as_str());
}

#[test]
fn plain_compose_project_goes_up_and_down() {
    let stack = compose_project("plainup");
    let image = busybox_image();
    stack.write(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    init: true\n    command: [sh, -c, 'echo \"$$GREETING\" > /tmp/g; sleep 3600']\n    environment:\n      GREETING: ${{GREETING}}\n"
        ),
    );
    stack.write(".env", "WHO=compose\nGREETING=\"hello ${WHO}\"\n");
    ok(&stack, &["up"]);
    let container = stack.container("app");
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Running}}", &container]).trim(),
        "true"
    );
    assert_eq!(
        docker_ok(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.stackctl.stage\"}}",
            &container
        ])
        .trim(),
        stack.stage
    );
    let env = docker_ok(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &container,
    ]);
    assert!(env.lines().any(|l| l == "GREETING=hello compose"), "{env}");
    ok(&stack, &["down"]);
    assert!(stack.containers().is_empty(), "{:?}", stack.containers());
}

#[test]
fn f_files_merge_by_compose_rules_with_reset_and_override() {
    let stack = compose_project("fmerge");
    stack.write(
        "one.yml",
        "services:\n  api:\n    image: busybox\n    ports: ['8080:80']\n    volumes: ['data:/data', '/cache']\n    environment: [A=1, B=2]\n    labels: {team: a}\n    user: root\nvolumes:\n  data: {}\n  other: {}\n",
    );
    stack.write(
        "two.yml",
        "services:\n  api:\n    ports: !override ['8443:443']\n    volumes: ['other:/data']\n    environment:\n      A: !reset null\n      C: '3'\n    labels: !reset {}\n    user: !reset null\n",
    );
    // Files named by `-f` are the only ones read, in their order.
    stack.write("compose.yaml", "services: {ignored: {image: busybox}}\n");
    let config = resolved(&stack, &["-f", "one.yml", "-f", "two.yml"]);
    let services = config["services"].as_object().expect("services");
    assert_eq!(services.keys().collect::<Vec<_>>(), ["api"]);
    let api = &config["services"]["api"];
    assert_eq!(api["ports"].as_array().map(Vec::len), Some(1), "{api}");
    assert!(api["ports"][0].to_string().contains("443"), "{api}");
    assert_eq!(
        api["volumes"],
        serde_json::json!(["other:/data", "/cache"]),
        "the later file wins at `/data`"
    );
    assert_eq!(
        api["environment"],
        serde_json::json!({"B": "2", "C": "3"}),
        "{api}"
    );
    assert!(api
        .get("labels")
        .is_none_or(|l| l.as_object().is_none_or(|m| m.is_empty())));
    assert!(
        api.get("user").is_none_or(serde_json::Value::is_null),
        "{api}"
    );
}

#[test]
fn compose_file_variable_names_the_files_when_no_f_is_given() {
    let stack = compose_project("composefile");
    stack.write("compose.yaml", "services: {ignored: {image: busybox}}\n");
    stack.write(
        "base.yml",
        "services:\n  api:\n    image: busybox\n    user: root\n",
    );
    stack.write("prod.yml", "services:\n  api:\n    user: nobody\n");
    let with_variable = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["config", "--json"]);
        let output = stack
            .cmd()
            .args(&all)
            .env("COMPOSE_FILE", "base.yml:prod.yml")
            .env_remove("COMPOSE_PATH_SEPARATOR")
            .output()
            .expect("run stackctl");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("config --json")
    };
    let config = with_variable(&[]);
    let services = config["services"].as_object().expect("services");
    assert_eq!(services.keys().collect::<Vec<_>>(), ["api"], "{config}");
    assert_eq!(
        config["services"]["api"]["user"], "nobody",
        "merged in order"
    );
    let config = with_variable(&["-f", "compose.yaml"]);
    assert!(
        config["services"].get("ignored").is_some(),
        "`-f` wins over COMPOSE_FILE: {config}"
    );
}

#[test]
fn f_dash_reads_the_stack_file_from_stdin() {
    let stack = compose_project("fdash");
    stack.write(
        "base.yml",
        "services:\n  api:\n    image: busybox\n    user: root\n",
    );
    let output = stack
        .cmd()
        .args(["-f", "base.yml", "-f", "-", "config", "--json"])
        .write_stdin("services:\n  api:\n    user: ${WHO}\n")
        .env("WHO", "nobody")
        .output()
        .expect("run stackctl");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(config["services"]["api"]["user"], "nobody", "{config}");
    let output = stack
        .cmd()
        .args(["-f", "-", "config"])
        .write_stdin("services:\n  api:\n    image: busybox\n    usr: root\n")
        .output()
        .expect("run stackctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("-:4:5: unknown key `usr`"), "{stderr}");
}

#[test]
fn f_file_errors_are_located_in_their_file() {
    let stack = compose_project("ferrors");
    stack.write("one.yml", "services:\n  api:\n    image: busybox\n");
    stack.write(
        "two.yml",
        "services:\n  api:\n    restart: sometimes\n    enviroment: {}\n",
    );
    let stderr = config_errors(&stack, &["-f", "one.yml", "-f", "two.yml"]);
    assert!(
        stderr.contains("error: two.yml:3:14: service `api`, `restart`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: two.yml:4:5: unknown key `enviroment`"),
        "{stderr}"
    );
    let missing = config_errors(&stack, &["-f", "one.yml", "-f", "nope.yml"]);
    assert!(
        missing.contains("cannot read stack file `nope.yml`: no such file"),
        "{missing}"
    );
}

#[test]
fn a_stage_file_builds_on_stacks_base_yml() {
    let stack = TestStack::new("basestage");
    stack.write(
        "stacks/base.yml",
        "services:\n  api:\n    image: busybox\n    environment: {LEVEL: info, SHARED: yes}\n    ports: ['8080:80']\n  db:\n    image: postgres\n",
    );
    stack.stack("services:\n  api:\n    environment: {LEVEL: debug}\n    ports: !reset []\n");
    let config = resolved(&stack, &[]);
    let api = &config["services"]["api"];
    assert_eq!(api["image"], "busybox");
    assert_eq!(api["environment"]["LEVEL"], "debug");
    assert_eq!(api["environment"]["SHARED"], "yes");
    assert!(api
        .get("ports")
        .is_none_or(|p| p.as_array().is_none_or(Vec::is_empty)));
    assert_eq!(config["services"]["db"]["image"], "postgres");
    // A problem in the shared file is reported there.
    stack.write(
        "stacks/base.yml",
        "services:\n  api:\n    image: busybox\n    restart: sometimes\n",
    );
    let stderr = config_errors(&stack, &[]);
    assert!(
        stderr.contains("error: stacks/base.yml:4:14: service `api`, `restart`"),
        "{stderr}"
    );
}

#[test]
fn include_and_extends_bring_in_services_with_their_paths_and_variables() {
    let stack = compose_project("incext");
    stack.write(
        "compose.yaml",
        "include:\n  - lib/compose.yaml\n  - path: [other/compose.yaml, other/more.yaml]\n    env_file: other/vars.env\nservices:\n  web:\n    extends: {file: shared/base.yml, service: base}\n    environment: {OWN: web}\n  worker:\n    extends: web\n    command: [sleep, '9']\n",
    );
    stack.write(
        "lib/compose.yaml",
        "services:\n  cache:\n    image: redis:${REDIS_TAG}\n    volumes: ['./data:/data']\n",
    );
    stack.write("lib/.env", "REDIS_TAG=7\n");
    stack.write(
        "other/compose.yaml",
        "services:\n  queue:\n    image: ${QUEUE_IMAGE}\n",
    );
    stack.write(
        "other/more.yaml",
        "services:\n  queue:\n    command: [run]\n",
    );
    stack.write("other/vars.env", "QUEUE_IMAGE=nats:2\n");
    stack.write(
        "shared/base.yml",
        "services:\n  base:\n    image: busybox\n    environment: {FROM: base}\n    volumes: ['./conf:/conf:ro']\n",
    );
    let config = resolved(&stack, &[]);
    let services = &config["services"];
    assert_eq!(services["cache"]["image"], "redis:7");
    let dir = stack.dir.display().to_string();
    assert_eq!(
        services["cache"]["volumes"][0],
        format!("{dir}/lib/data:/data"),
        "relative paths of an included file resolve against its directory"
    );
    assert_eq!(services["queue"]["image"], "nats:2");
    assert_eq!(services["queue"]["command"], serde_json::json!(["run"]));
    let web = &services["web"];
    assert_eq!(web["image"], "busybox");
    assert_eq!(
        web["environment"],
        serde_json::json!({"FROM": "base", "OWN": "web"})
    );
    assert_eq!(web["volumes"][0], format!("{dir}/shared/conf:/conf:ro"));
    assert_eq!(services["worker"]["image"], "busybox");
    assert_eq!(services["worker"]["environment"]["OWN"], "web");
    assert_eq!(
        services["worker"]["command"],
        serde_json::json!(["sleep", "9"])
    );
}

#[test]
fn include_and_extends_errors_are_located_in_the_right_file() {
    let stack = compose_project("incerr");
    stack.write(
        "compose.yaml",
        "include: [lib/compose.yaml]\nservices:\n  web:\n    extends: {file: base.yml, service: base}\n  api:\n    extends: {service: nothere}\n    image: busybox\n  cache:\n    image: busybox\n",
    );
    stack.write(
        "lib/compose.yaml",
        "services:\n  cache:\n    image: redis\n  queue:\n    image: nats\n    enviroment: {}\n",
    );
    stack.write(
        "base.yml",
        "services:\n  base:\n    image: busybox\n    restart: sometimes\n",
    );
    let stderr = config_errors(&stack, &[]);
    assert!(
        stderr.contains("error: compose.yaml:8:3: service `cache` is defined here and in an included file (lib/compose.yaml:2:3)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: lib/compose.yaml:6:5: unknown key `enviroment` in service `queue`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: base.yml:4:14: service `web`, `restart`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: compose.yaml:6:14: `extends`: no service `nothere` in this stack"),
        "{stderr}"
    );
    // A missing included file is reported at its entry.
    stack.write(
        "compose.yaml",
        "include:\n  - path: lib/none.yaml\nservices: {}\n",
    );
    let stderr = config_errors(&stack, &[]);
    assert!(
        stderr.contains(
            "error: compose.yaml:2:11: cannot read included file `lib/none.yaml`: no such file"
        ),
        "{stderr}"
    );
}

#[test]
fn include_and_extends_cycles_are_errors() {
    let stack = compose_project("cycles");
    stack.write(
        "compose.yaml",
        "include: [a/compose.yaml]\nservices:\n  one:\n    extends: two\n  two:\n    extends: {service: three}\n  three:\n    extends: one\n    image: busybox\n",
    );
    stack.write(
        "a/compose.yaml",
        "include: [../b/compose.yaml]\nservices: {}\n",
    );
    stack.write(
        "b/compose.yaml",
        "include: [../a/compose.yaml]\nservices: {}\n",
    );
    let stderr = config_errors(&stack, &[]);
    assert!(
        stderr.contains("error: b/compose.yaml:1:11: `include` cycle: a/compose.yaml -> b/compose.yaml -> a/compose.yaml"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`extends` cycle: one -> two -> three -> one"),
        "{stderr}"
    );
}

#[test]
fn yaml_that_pyyaml_and_go_accept_is_accepted() {
    let stack = TestStack::new("yamlfidelity");
    // The shape of getsentry/self-hosted's docker-compose.yml: a flow list closed at its
    // key's column, and merges nested in an anchored block merged elsewhere.
    stack.stack(
        "x-restart: &restart\n  restart: unless-stopped\nx-healthy: &healthy\n  condition: service_healthy\nx-defaults: &defaults\n  <<: *restart\n  image: busybox\n  depends_on: &deps\n    db:\n      <<: *healthy\nx-more: &more\n  <<: *defaults\n  depends_on:\n    <<: *deps\n    cache:\n      <<: *healthy\nservices:\n  db:\n    image: busybox\n    healthcheck:\n      test: [\n          \"CMD-SHELL\",\n          # a comment inside\n          \"true\",\n      ]\n  cache:\n    image: busybox\n    healthcheck: {test: [CMD, 'true']}\n  web:\n    <<: *more\n    command:\n      [\n        \"a\",\n        \"b\"\n      ]\n",
    );
    let config = resolved(&stack, &[]);
    let web = &config["services"]["web"];
    assert_eq!(web["restart"], "unless-stopped");
    assert_eq!(web["command"], serde_json::json!(["a", "b"]));
    assert_eq!(web["depends_on"]["db"]["condition"], "service_healthy");
    assert_eq!(web["depends_on"]["cache"]["condition"], "service_healthy");
    assert_eq!(
        config["services"]["db"]["healthcheck"]["test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
}

#[test]
fn dot_env_values_interpolate_earlier_variables_unless_single_quoted() {
    let stack = compose_project("dotenv");
    stack.write(
        "compose.yaml",
        "services:\n  api:\n    image: busybox\n    environment: {URL: '${URL}', LIT: '${LIT}', ESC: '${ESC}'}\n",
    );
    stack.write(
        ".env",
        "SCHEME=https\nHOST=db.example.test\nURL=${SCHEME}://${HOST}\nLIT='${HOST}$$x'\nESC=\"\\$HOST\"\n",
    );
    let config = resolved(&stack, &[]);
    let env = &config["services"]["api"]["environment"];
    assert_eq!(env["URL"], "https://db.example.test");
    assert_eq!(env["LIT"], "${HOST}$$x");
    assert_eq!(env["ESC"], "$HOST");
    // A `$` that starts nothing is located in the env file.
    stack.write(".env", "A=1\nB=x$\n");
    let stderr = config_errors(&stack, &[]);
    assert!(
        stderr.contains("error: .env:2:1: the value of `B`"),
        "{stderr}"
    );
}

#[test]
fn init_secrets_stay_literal() {
    let stack = TestStack::new("initsecret");
    stack.write(
        "templates/stack.yml",
        "services:\n  db:\n    image: busybox\n    environment: {DB_PASSWORD: '${DB_PASSWORD}'}\n",
    );
    stack.write(
        "templates/env",
        "DB_PASSWORD={secret}\nQUOTED=\"{secret}\"\n",
    );
    ok(&stack, &["init", "--no-run"]);
    let written =
        std::fs::read_to_string(stack.path(&format!(".env.{}", stack.stage))).expect("env file");
    let secret = written
        .lines()
        .find_map(|l| l.strip_prefix("DB_PASSWORD="))
        .expect("DB_PASSWORD line")
        .to_string();
    assert!(!secret.contains('$') && secret.chars().all(|c| c.is_ascii_alphanumeric()));
    let config = resolved(&stack, &[]);
    assert_eq!(
        config["services"]["db"]["environment"]["DB_PASSWORD"],
        secret
    );
}

#[test]
fn init_in_a_compose_project_keeps_its_compose_file() {
    let stack = compose_project("composeinit");
    stack.write(
        "compose.yaml",
        "services:\n  api:\n    image: busybox\n    environment: {TOKEN: '${TOKEN}'}\n",
    );
    stack.write("templates/env", "TOKEN={secret}\n");
    let output = run(&stack, &["init", "--no-run"]);
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&stack.stage, "STAGE");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        "`compose.yaml` is this project's stack file (a Compose project): no `stacks/STAGE.yml` written\nwrote .env.STAGE from `templates/env`\ncommands here now act on stage `STAGE` without `-e` (remembered in `.stackctl/stage`)\ncompose.yaml is valid; the `init` task was not run (--no-run)\n"
    );
    assert!(!stack.path("stacks").exists(), "no stacks/ made");
    let config = resolved(&stack, &[]);
    let token = &config["services"]["api"]["environment"]["TOKEN"];
    assert_eq!(token.as_str().map(str::len), Some(32), "{token}");
}
