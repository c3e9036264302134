//! Pull and push against a real registry (Docker Distribution on loopback, basic auth):
//! `up` pulls what is missing with the credentials of Docker's own config (`auths`, or a
//! credential helper), `pull`, `push` checked through the registry's API, and the failures:
//! `pull_policy: never`, a wrong password, an unknown tag, a registry that is down.

mod reference;
#[path = "support/registry.rs"]
mod registry_lab;
mod support;

use std::time::{Duration, Instant};

use registry_lab::{basic, image_present, lab, Images, PASSWORD, USER};
use support::TestStack;

/// A Docker config directory of the test's own, with `config.json` holding `json`.
fn docker_config(stack: &TestStack, json: &str) -> std::path::PathBuf {
    let dir = stack.root.path().join("docker-config");
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::write(dir.join("config.json"), json).expect("write config.json");
    dir
}

fn auths(host: &str, password: &str) -> String {
    format!(
        "{{\"auths\": {{\"{host}\": {{\"auth\": \"{}\"}}}}}}",
        basic(USER, password)
    )
}

/// The output streams, checked to never hold the password.
fn run(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let output = cmd.output().expect("run stackctl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "password printed:\n{stdout}\n{stderr}"
    );
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

fn service_stack(image: &str, extra: &str) -> String {
    format!("services:\n  app:\n    image: {image}\n    command: [sleep, \"300\"]\n{extra}")
}

#[test]
fn up_pulls_a_missing_image_with_auths_credentials_once_and_noop_up_calls_no_registry() {
    let lab = lab();
    let stack = TestStack::new("pull-auths");
    let image = lab.seed(&stack.project, "1");
    let _images = Images(vec![image.clone()]);
    // Two services run the same image: one pull.
    stack.stack(&format!(
        "{}  other:\n    image: {image}\n    command: [sleep, \"300\"]\n",
        service_stack(&image, "")
    ));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));

    let (code, stdout, _) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["up", "--dry-run"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("pull       image    {image}  (missing)")),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["--json", "up"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(image_present(&image));
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pulled: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["action"] == "pulled" && e["status"] == "done")
        .collect();
    assert_eq!(pulled.len(), 1, "{stdout}");
    assert_eq!(pulled[0]["object"], image.as_str());
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "pulling" && e["status"] == "started"),
        "{stdout}"
    );

    // No-op: the image is present, so no registry call is made; a config whose password is
    // wrong would make any call fail.
    let wrong = docker_config(&stack, &auths(&lab.host, "wrong-password"));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &wrong).arg("up"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("pull"), "{stderr}");
}

#[test]
fn up_pulls_through_a_credential_helper_named_by_creds_store() {
    let lab = lab();
    let stack = TestStack::new("pull-helper");
    let image = lab.seed(&stack.project, "helper");
    let _images = Images(vec![image.clone()]);
    stack.stack(&service_stack(&image, ""));
    let bin = stack.root.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let helper = bin.join("docker-credential-stackctltest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            lab.host
        ),
    )
    .expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = docker_config(&stack, "{\"credsStore\": \"stackctltest\"}");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let (code, _, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .args(["-vv", "up"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("image {image}: pulled")),
        "{stderr}"
    );
    assert!(image_present(&image));
}

#[test]
fn pull_command_pulls_each_stage_image_once() {
    let lab = lab();
    let stack = TestStack::new("pull-cmd");
    let image = lab.seed(&stack.project, "2");
    let _images = Images(vec![image.clone()]);
    stack.stack(&format!(
        "{}data_containers:\n  files:\n    image: {image}\n    volumes: [/data]\n",
        service_stack(&image, "")
    ));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("pull"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches(": pulled").count(), 1, "{stderr}");
    assert!(image_present(&image));
    assert!(stack.containers().is_empty(), "pull creates no container");
}

#[test]
fn push_sends_the_built_image_to_its_registry() {
    let lab = lab();
    let stack = TestStack::new("push");
    let busybox = support::busybox_image();
    let repository = format!("{}/api", stack.project);
    let image = format!("{}/{repository}:v1", lab.host);
    let _images = Images(vec![image.clone()]);
    stack.write(
        "api/Dockerfile",
        &format!("FROM {busybox}\nRUN echo built > /built\n"),
    );
    stack.stack(&format!(
        "services:\n  api:\n    build: api\n    image: {image}\n    command: [sleep, \"300\"]\n"
    ));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("build"));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["--json", "push"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"action\":\"pushed\""), "{stdout}");
    assert_eq!(lab.tags(&repository), vec!["v1".to_string()]);
}

#[test]
fn push_of_an_image_without_registry_names_the_service() {
    let stack = TestStack::new("push-noreg");
    stack.write("api/Dockerfile", "FROM scratch\n");
    stack.stack("services:\n  api:\n    build: api\n    image: shop/api:1\n");
    let (code, _, stderr) = run(stack.cmd().arg("push"));
    assert_eq!(code, 2, "{stderr}");
    let file = format!("stacks/{}.yml", stack.stage);
    assert!(
        stderr.contains(&format!(
            "{file}:4:12: service `api` builds `shop/api:1`, whose name holds no registry"
        )),
        "{stderr}"
    );
}

#[test]
fn pull_policy_never_with_a_missing_image_fails_without_pulling() {
    let lab = lab();
    let stack = TestStack::new("never");
    let image = lab.seed(&stack.project, "never");
    let _images = Images(vec![image.clone()]);
    stack.stack(&service_stack(&image, "    pull_policy: never\n"));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "image `{image}` of `app` is not on this engine and `pull_policy` is `never`"
        )),
        "{stderr}"
    );
    assert!(!image_present(&image));
    // `up --pull missing` overrides it.
    let (code, _, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["up", "--pull", "missing"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(image_present(&image));
}

#[test]
fn wrong_password_exits_1_naming_the_registry_with_a_login_hint() {
    let lab = lab();
    let stack = TestStack::new("wrongpw");
    let image = lab.seed(&stack.project, "1");
    let _images = Images(vec![image.clone()]);
    stack.stack(&service_stack(&image, ""));
    let wrong = "Wrong-4e1d-password";
    let config = docker_config(&stack, &auths(&lab.host, wrong));
    for json in [false, true] {
        let mut cmd = stack.cmd();
        cmd.env("DOCKER_CONFIG", &config);
        if json {
            cmd.arg("--json");
        }
        let (code, stdout, stderr) = run(cmd.args(["-vv", "up"]));
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "the registry `{}` refused the credentials",
                lab.host
            )),
            "{stderr}"
        );
        // The hint names the config file and its entry, not only a docker CLI the runner
        // may not have.
        let config = config.join("config.json");
        assert!(
            stderr.contains(&format!(
                "hint: the credentials come from `{}` (set DOCKER_CONFIG",
                config.display()
            )) && stderr.contains(&format!("`auths` entry for `{}`", lab.host)),
            "{stderr}"
        );
        assert!(
            !stdout.contains(wrong) && !stderr.contains(wrong),
            "{stdout}{stderr}"
        );
    }
    // Missing credentials: the same error.
    let empty = docker_config(&stack, "{}");
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &empty).arg("pull"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("`auths` entry for `{}`", lab.host))
            && stderr.contains(&format!("`docker login {}`", lab.host)),
        "{stderr}"
    );
}

#[test]
fn unknown_tag_names_the_image_the_service_and_its_line() {
    let lab = lab();
    let stack = TestStack::new("unknown-tag");
    lab.seed(&stack.project, "1");
    let image = format!("{}/{}:nosuchtag", lab.host, stack.project);
    stack.stack(&service_stack(&image, ""));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    assert_eq!(code, 1, "{stderr}");
    let file = format!("stacks/{}.yml", stack.stage);
    assert!(
        stderr.contains(&format!("pull `{image}` for service `app` ({file}:3:12): the registry `{}` has no such repository or tag", lab.host)),
        "{stderr}"
    );
}

#[test]
fn registry_down_fails_in_bounded_time_naming_it() {
    let stack = TestStack::new("down-registry");
    let host = format!("127.0.0.1:{}", registry_lab::free_port());
    let image = format!("{host}/nothing/here:1");
    stack.stack(&service_stack(&image, ""));
    let config = docker_config(&stack, "{}");
    let started = Instant::now();
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    let took = started.elapsed();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("the registry `{host}` cannot be reached")),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn invalid_reference_and_bad_pull_policy_are_located_usage_errors() {
    let stack = TestStack::new("badref");
    let file = format!("stacks/{}.yml", stack.stage);
    stack.stack("services:\n  job:\n    image: busybox\n    pull_policy: every_soon\n");
    let (code, _, stderr) = run(stack.cmd().args(["up", "--dry-run"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:4:18: ")) && stderr.contains("every_soon"),
        "{stderr}"
    );
    stack.stack("services:\n  app:\n    image: Shop/API:1\n");
    for command in ["up", "pull", "push"] {
        let (code, _, stderr) = run(stack.cmd().arg(command));
        assert_eq!(code, 2, "{command}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{file}:3:12: service `app`: image `Shop/API:1` is not a valid reference"
            )),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn init_of_the_built_in_template_pulls_its_db_image_from_the_registry() {
    let source = reference::POSTGRES_BASE;
    reference::base_images();
    let lab = lab();
    let stack = TestStack::new("template");
    let image = lab.seed_from(source, &format!("{}/postgres", stack.project), "15");
    let _images = Images(vec![image.clone()]);
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let port = registry_lab::free_port().to_string();
    let (code, stdout, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .env("DB_IMAGE", &image)
        .env("DB_PORT", &port)
        .args(["init"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("image {image}: pulled")),
        "{stderr}"
    );
    let (code, _, stderr) = run(stack.cmd().args(["purge", "--yes"]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn build_pulls_a_private_from_base_with_the_configs_credentials() {
    let lab = lab();
    let stack = TestStack::new("from-base");
    let base = lab.seed(&stack.project, "base");
    let _images = Images(vec![base.clone()]);
    stack.write(
        "api/Dockerfile",
        "ARG BASE=none\nFROM ${BASE}\nRUN echo built > /built\n",
    );
    stack.stack(&format!(
        "services:\n  api:\n    build: {{ context: api, args: {{ BASE: \"{base}\" }} }}\n    command: [sleep, \"300\"]\n"
    ));
    // Without credentials the builder cannot pull the base: the registry wants a login.
    let empty = docker_config(&stack, "{}");
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &empty).arg("build"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("build"));
    assert_eq!(code, 0, "{stderr}");
    // BuildKit asked the session for the credentials and keeps the base in its own cache.
    let tag = format!("{}/api:{}", stack.project, stack.stage);
    let built = support::docker_ok(&["run", "--rm", &tag, "cat", "/built"]);
    assert_eq!(built.trim(), "built");
    // The classic builder gets them in the request, and pulls the base among the images.
    let (code, _, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .env("DOCKER_BUILDKIT", "0")
        .arg("build"));
    assert_eq!(code, 0, "{stderr}");
    assert!(image_present(&base));
}

#[test]
fn exec_pulls_a_tasks_missing_image() {
    let lab = lab();
    let stack = TestStack::new("exec-pull");
    let image = lab.seed(&stack.project, "task");
    let _images = Images(vec![image.clone()]);
    stack.stack(&format!(
        "services: {{}}\ntasks:\n  hello:\n    image: {image}\n    command: [echo, hello-from-the-registry]\n"
    ));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, stdout, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["exec", "hello"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hello-from-the-registry"), "{stdout}");
    assert!(
        stderr.contains(&format!("pulled image `{image}`")),
        "{stderr}"
    );
}

/// The engine's `LastTagTime` of an image: when it was last tagged (stackctl re-tags after
/// each pull).
fn last_tag_time(image: &str) -> String {
    support::docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Metadata.LastTagTime}}",
        image,
    ])
    .trim()
    .to_string()
}

#[test]
fn timed_pull_policy_pulls_again_only_once_its_period_has_passed() {
    let lab = lab();
    let stack = TestStack::new("timed");
    let image = lab.seed(&stack.project, "timed");
    let _images = Images(vec![image.clone()]);
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    stack.stack(&service_stack(&image, "    pull_policy: every_1h\n"));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("image {image}: pulled")),
        "{stderr}"
    );
    let first = last_tag_time(&image);

    // Pulled a moment ago, inside its hour: no registry call (a wrong password would fail).
    let wrong = docker_config(&stack, &auths(&lab.host, "wrong-password"));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &wrong).arg("up"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("pull"), "{stderr}");

    // A period already over by the time `up` looks: the dry run says why, `up` pulls again
    // and the engine's record of the pull moves on.
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    stack.stack(&service_stack(&image, "    pull_policy: every_1ms\n"));
    let (code, stdout, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["up", "--dry-run"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "pull       image    {image}  (pull_policy: every_1ms; last pulled "
        )),
        "{stdout}"
    );
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("image {image}: pulled")),
        "{stderr}"
    );
    let second = last_tag_time(&image);
    assert!(second > first, "LastTagTime {first} -> {second}");
    let (code, _, stderr) = run(stack.cmd().args(["down"]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_services_own_always_pulls_the_pushed_image_instead_of_building_it() {
    let lab = lab();
    let stack = TestStack::new("always-build");
    let image = lab.seed(&stack.project, "pushed");
    let _images = Images(vec![image.clone()]);
    // A build of this context would fail: only a pull can make `up` succeed.
    stack.write("api/Dockerfile", "FROM scratch\nRUN false\n");
    stack.stack(&service_stack(
        &image,
        "    build: ./api\n    pull_policy: always\n",
    ));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("image {image}: pulled")),
        "{stderr}"
    );
    assert!(!stderr.contains("built"), "{stderr}");
    let (code, _, stderr) = run(stack.cmd().args(["down"]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn exec_of_a_task_whose_service_never_pulls_fails_without_pulling() {
    let lab = lab();
    let stack = TestStack::new("exec-never");
    let image = lab.seed(&stack.project, "never");
    let _images = Images(vec![image.clone()]);
    stack.stack(&format!(
        "{}tasks:\n  hello:\n    service: app\n    command: [echo, hi]\n",
        service_stack(&image, "    pull_policy: never\n")
    ));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (code, _, stderr) = run(stack
        .cmd()
        .env("DOCKER_CONFIG", &config)
        .args(["exec", "hello"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "image `{image}` of task `hello` is not on this engine and its service's `pull_policy` is `never`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: pull it first"), "{stderr}");
    assert!(!image_present(&image));
}

#[test]
fn a_broken_docker_config_names_the_file_and_says_how_to_fix_it() {
    let lab = lab();
    let stack = TestStack::new("badconfig");
    let image = lab.seed(&stack.project, "1");
    let _images = Images(vec![image.clone()]);
    stack.stack(&service_stack(&image, ""));
    let config = docker_config(&stack, "{\"auths\": {");
    let (code, _, stderr) = run(stack.cmd().env("DOCKER_CONFIG", &config).arg("up"));
    assert_eq!(code, 1, "{stderr}");
    let file = config.join("config.json");
    assert!(
        stderr.contains(&format!(
            "cannot get the credentials for registry `{}` from {}",
            lab.host,
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: fix {}", file.display()))
            && stderr.contains(&format!("docker login {}", lab.host)),
        "{stderr}"
    );
    assert!(!image_present(&image));
}

#[test]
fn on_a_terminal_a_pull_is_one_live_line_with_bytes_then_its_size_and_time() {
    let lab = lab();
    let stack = TestStack::new("live-pull");
    // An image of its own (3 MB of random bytes) that leaves no layer behind on the engine,
    // so the pull moves bytes the engine counts.
    let blob: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ std::process::id() as u8)
        .collect();
    stack.write("blob/Dockerfile", "FROM scratch\nCOPY blob /blob\n");
    std::fs::write(stack.path("blob/blob"), &blob).expect("write blob");
    let local = format!("{}-blob:1", stack.project);
    support::docker_ok(&[
        "build",
        "-q",
        "-t",
        &local,
        &stack.path("blob").display().to_string(),
    ]);
    let image = lab.seed_from(&local, &stack.project, "live");
    support::docker_ok(&["rmi", &local]);
    let _images = Images(vec![image.clone()]);
    stack.stack(&format!("services:\n  app:\n    image: {image}\n"));
    let config = docker_config(&stack, &auths(&lab.host, PASSWORD));
    let (transcript, code) =
        support::on_terminal(&stack, "pull", &[("DOCKER_CONFIG", config.as_os_str())]);
    assert_eq!(code, 0, "{transcript}");
    assert!(!transcript.contains(PASSWORD));
    // The live line counts the bytes as the engine reports them …
    let counted = regex::Regex::new(&format!(
        r"image {}: pulling [0-9.]+ [kMG]?B / [0-9.]+ [kMG]?B",
        regex::escape(&image)
    ))
    .unwrap();
    assert!(counted.is_match(&transcript), "{transcript:?}");
    // … and ends as one finished line with the size and the time.
    let finished = regex::Regex::new(&format!(
        r"image {}: pulled \([0-9.]+ [kMG]?B\) \([0-9.]+s\)",
        regex::escape(&image)
    ))
    .unwrap();
    assert!(finished.is_match(&transcript), "{transcript:?}");
}

/// A credential helper `docker-credential-NAME` in a `bin/` of the test's own, its body
/// `script` (after `#!/bin/sh`), and the PATH that finds it first.
fn helper_on_path(stack: &TestStack, name: &str, script: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = stack.root.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let helper = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&helper, format!("#!/bin/sh\n{script}\n")).expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// PIDs of live processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Poll until `condition` holds; fail naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stack whose service `app` names an image of a registry nobody listens on, and whose
/// service `api` builds `FROM` another image of it: the credentials are looked up before
/// anything reaches the registry.
fn credential_stack(name: &str) -> (TestStack, String) {
    let stack = TestStack::new(name);
    let host = format!("127.0.0.1:{}", registry_lab::free_port());
    stack.write(
        "api/Dockerfile",
        &format!("FROM {host}/{}/base:1\nRUN true\n", stack.project),
    );
    stack.stack(&format!(
        "services:\n  app:\n    image: {host}/{}/app:1\n    command: [sleep, \"300\"]\n  api:\n    build: api\n    command: [sleep, \"300\"]\n",
        stack.project
    ));
    (stack, host)
}

/// RELIABILITY 8: a credential helper that never answers hung `push`, `pull` and `build`
/// forever, and a SIGINT to stackctl alone left it running. It is bounded (here 2 s through
/// `STACKCTL_CREDENTIAL_TIMEOUT`), the error names the helper and the config file, and the
/// helper and what it started are gone when stackctl exits, after a SIGINT too.
#[test]
fn reliability8_a_credential_helper_that_never_answers_is_bounded_and_killed() {
    let (stack, _host) = credential_stack("cred-hang");
    let helper = format!("hang{}", stack.stage);
    let path = helper_on_path(&stack, &helper, &format!("sh -c 'sleep 600; : {helper}'"));
    let config = docker_config(&stack, &format!("{{\"credsStore\": \"{helper}\"}}"));
    let config_file = config.join("config.json").display().to_string();
    for command in ["pull", "build"] {
        let started = Instant::now();
        let (code, _, stderr) = run(stack
            .cmd()
            .env("DOCKER_CONFIG", &config)
            .env("PATH", &path)
            .env("STACKCTL_CREDENTIAL_TIMEOUT", "2")
            .arg(command));
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "`docker-credential-{helper} get` did not answer within 2 s"
            )),
            "{command}: {stderr}"
        );
        assert!(stderr.contains(&config_file), "{command}: {stderr}");
        wait_until("the helper to be gone", Duration::from_secs(10), || {
            processes_with(&helper).is_empty()
        });
    }
    // SIGINT to stackctl's PID alone, while the helper is running.
    let mut child = stack
        .std_cmd()
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .arg("pull")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run stackctl");
    wait_until("the helper to start", Duration::from_secs(30), || {
        processes_with(&helper).len() >= 2
    });
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("stackctl did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    wait_until("no orphaned helper", Duration::from_secs(10), || {
        processes_with(&helper).is_empty()
    });
}

/// RELIABILITY 11: `build` went on without a word when `config.json` was not JSON or its
/// `credsStore` helper answered garbage (`pull` and `push` reported it). The same error now.
#[test]
fn reliability11_a_bad_docker_config_is_the_same_error_for_build_as_for_pull() {
    let (stack, _host) = credential_stack("cred-bad");
    let helper = format!("garbage{}", stack.stage);
    let path = helper_on_path(&stack, &helper, "echo garbage");
    let cases = [
        (
            "{ not json".to_string(),
            "is not valid JSON of Docker's config format",
        ),
        (
            format!("{{\"credsStore\": \"{helper}\"}}"),
            "is not the JSON Docker's protocol expects",
        ),
    ];
    for (json, expected) in cases {
        let config = docker_config(&stack, &json);
        for command in ["pull", "build"] {
            let (code, _, stderr) = run(stack
                .cmd()
                .env("DOCKER_CONFIG", &config)
                .env("PATH", &path)
                .arg(command));
            assert_eq!(code, 1, "{command}: {stderr}");
            assert!(
                stderr.contains("cannot get the credentials for registry"),
                "{command}: {stderr}"
            );
            assert!(stderr.contains(expected), "{command}: {stderr}");
        }
    }
}
