//! Compose keys that change a container, against the real engine: one stack brought up once
//! (`container_name`, secrets and configs, `read_only` with `tmpfs`, `ulimits`, `cap_*`,
//! `network_mode: service:X`), each checked with `docker inspect` or inside the container;
//! then replicas scaled up and down, and a container name another stage already holds.

mod support;

use support::{busybox_image, docker, docker_ok, lines, TestStack};

/// `docker inspect` one field of a container.
fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container])
        .trim()
        .to_string()
}

/// Run a command in a running container; its stdout, trimmed.
fn exec(container: &str, script: &str) -> String {
    docker_ok(&["exec", container, "sh", "-c", script])
        .trim()
        .to_string()
}

/// Whether a command in the container succeeds.
fn exec_succeeds(container: &str, script: &str) -> bool {
    std::process::Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn fixture(t: &TestStack) {
    let image = busybox_image();
    t.write("secrets/db_password.txt", "s3cret-from-file\n");
    t.write("meta/named.labels", "team=data\ntier=back\n");
    t.write(&format!(".env.{}", t.stage), "API_TOKEN=t0ken-from-env\n");
    t.stack(&format!(
        r#"
services:
  named:
    image: {image}
    container_name: ${{STAGE}}-named
    label_file: ./meta/named.labels
    labels: {{ tier: front }}
    init: true
    command: [sleep, "3600"]
  files:
    image: {image}
    init: true
    command: [sleep, "3600"]
    links: ["web:webalias"]
    secrets:
      - db_password
      - source: api_token
        target: token
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: app_conf
        target: /etc/app/app.conf
        mode: 0644
  locked:
    image: {image}
    init: true
    command: [sleep, "3600"]
    read_only: true
    tmpfs: ["/scratch:size=1m"]
    ulimits:
      nofile: {{ soft: 512, hard: 1024 }}
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE]
  web:
    image: {image}
    init: true
    command: [sh, -c, "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www"]
  sidecar:
    image: {image}
    init: true
    command: [sleep, "3600"]
    network_mode: service:web
secrets:
  db_password:
    file: ./secrets/db_password.txt
  api_token:
    environment: API_TOKEN
configs:
  app_conf:
    content: |
      listen = 8080
"#
    ));
}

#[test]
fn compose_keys_reach_the_container() {
    let t = TestStack::new("keys");
    fixture(&t);
    let up = t.cmd().arg("up").output().expect("run up");
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "up failed: {stderr}");
    assert!(
        !stderr.contains("t0ken-from-env") && !stderr.contains("s3cret-from-file"),
        "no secret in the output: {stderr}"
    );

    // container_name: the engine name is the stack's, with the stage's labels.
    let named = format!("{}-named", t.stage);
    assert_eq!(inspect(&named, "{{.State.Running}}"), "true");
    assert_eq!(
        inspect(&named, "{{index .Config.Labels \"io.stackctl.service\"}}"),
        "named"
    );
    // label_file: its labels, under the service's own.
    assert_eq!(inspect(&named, "{{index .Config.Labels \"team\"}}"), "data");
    assert_eq!(
        inspect(&named, "{{index .Config.Labels \"tier\"}}"),
        "front"
    );
    let ps = t.cmd().arg("ps").output().expect("run ps");
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains(&named),
        "ps lists the named container"
    );

    // secrets and configs: content, path, mode and owner inside the container.
    let files = t.container("files");
    assert_eq!(
        exec(&files, "cat /run/secrets/db_password"),
        "s3cret-from-file"
    );
    assert_eq!(
        exec(&files, "stat -c '%a %u:%g' /run/secrets/db_password"),
        "444 0:0"
    );
    assert_eq!(exec(&files, "cat /run/secrets/token"), "t0ken-from-env");
    assert_eq!(
        exec(&files, "stat -c '%a %u:%g' /run/secrets/token"),
        "400 1000:1001"
    );
    assert_eq!(exec(&files, "cat /etc/app/app.conf"), "listen = 8080");
    assert_eq!(exec(&files, "stat -c '%a' /etc/app/app.conf"), "644");
    // Copied, not bind-mounted: nothing of the host is mounted there.
    assert_eq!(inspect(&files, "{{len .Mounts}}"), "0");

    // read_only with a tmpfs; ulimits; capabilities.
    let locked = t.container("locked");
    assert_eq!(inspect(&locked, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert!(
        !exec_succeeds(&locked, "touch /root-file"),
        "root fs is read-only"
    );
    assert!(
        exec_succeeds(&locked, "touch /scratch/file"),
        "tmpfs is writable"
    );
    assert!(
        exec(&locked, "grep ' /scratch ' /proc/mounts").starts_with("tmpfs /scratch tmpfs"),
        "/scratch is a tmpfs"
    );
    // The container's own process (PID 1) runs with the limits.
    let limits = exec(&locked, "grep 'Max open files' /proc/1/limits");
    assert_eq!(
        limits.split_whitespace().collect::<Vec<_>>(),
        ["Max", "open", "files", "512", "1024", "files"],
        "{limits}"
    );
    assert_eq!(inspect(&locked, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(
        inspect(&locked, "{{.HostConfig.CapAdd}}"),
        "[NET_BIND_SERVICE]"
    );
    // Only CAP_NET_BIND_SERVICE (bit 10) is left in the effective set.
    assert_eq!(
        exec(&locked, "grep CapEff /proc/self/status | cut -f2"),
        "0000000000000400"
    );

    // network_mode: service:web shares web's network namespace (its localhost).
    let sidecar = t.container("sidecar");
    let web_id = inspect(&t.container("web"), "{{.Id}}");
    assert_eq!(
        inspect(&sidecar, "{{.HostConfig.NetworkMode}}"),
        format!("container:{web_id}")
    );
    let mut served = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        served = docker(&[
            "exec",
            &sidecar,
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/index.html",
        ]);
        if served.trim() == "served" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(served.trim(), "served", "sidecar reaches web on localhost");
    // links: web answers under its alias too.
    assert_eq!(
        docker(&[
            "exec",
            &files,
            "wget",
            "-qO-",
            "http://webalias:8080/index.html"
        ])
        .trim(),
        "served"
    );

    // A second `up` changes nothing (the copied files and the names are stable).
    let again = t.cmd().args(["up", "--dry-run"]).output().expect("dry run");
    let plan = String::from_utf8_lossy(&again.stdout);
    assert!(
        !plan.contains("create") && !plan.contains("recreate") && !plan.contains("remove"),
        "second up is a no-op: {plan}"
    );

    // Changing a secret's content recreates exactly that service.
    t.write("secrets/db_password.txt", "rotated\n");
    let dry = t.cmd().args(["up", "--dry-run"]).output().expect("dry run");
    let plan = String::from_utf8_lossy(&dry.stdout);
    let changed: Vec<&str> = plan.lines().filter(|l| !l.contains("unchanged")).collect();
    assert_eq!(changed.len(), 1, "{plan}");
    assert!(
        changed[0].contains(&files) && changed[0].contains("secrets changed"),
        "{plan}"
    );
    t.cmd().arg("up").assert().success();
    assert_eq!(exec(&files, "cat /run/secrets/db_password"), "rotated");

    // `down` removes the named container too.
    t.cmd().arg("down").assert().success();
    assert!(t.containers().is_empty(), "{:?}", t.containers());
}

#[test]
fn replicas_scale_up_and_down() {
    let t = TestStack::new("replicas");
    let image = busybox_image();
    let stack = |replicas: u32| {
        format!(
            "services:\n  worker:\n    image: {image}\n    init: true\n    command: [sleep, \"3600\"]\n    deploy:\n      replicas: {replicas}\n      resources:\n        limits: {{ memory: 64m, pids: 32 }}\n"
        )
    };
    t.stack(&stack(3));
    t.cmd().arg("up").assert().success();
    let base = t.container("worker");
    let mut expected = vec![base.clone(), format!("{base}--2"), format!("{base}--3")];
    expected.sort();
    let mut running = t.containers();
    running.sort();
    assert_eq!(running, expected);
    for name in &expected {
        assert_eq!(inspect(name, "{{.State.Running}}"), "true");
        assert_eq!(inspect(name, "{{.HostConfig.Memory}}"), "67108864");
        assert_eq!(inspect(name, "{{.HostConfig.PidsLimit}}"), "32");
    }
    let first_id = inspect(&base, "{{.Id}}");

    t.stack(&stack(1));
    t.cmd().arg("up").assert().success();
    assert_eq!(t.containers(), vec![base.clone()]);
    assert_eq!(
        inspect(&base, "{{.Id}}"),
        first_id,
        "the first replica is kept"
    );
}

#[test]
fn a_container_name_held_by_another_stage_is_an_error_naming_both() {
    let image = busybox_image();
    let first = TestStack::new("holder");
    let shared = format!("{}-shared", first.stage);
    let stack = format!(
        "services:\n  db:\n    image: {image}\n    init: true\n    command: [sleep, \"3600\"]\n    container_name: {shared}\n"
    );
    first.stack(&stack);
    first.cmd().arg("up").assert().success();

    let second = TestStack::new("taker");
    second.stack(&stack);
    let output = second.cmd().arg("up").output().expect("run up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&shared), "{stderr}");
    assert!(
        stderr.contains(&format!("stage `{}`", first.stage))
            && stderr.contains(&format!("stage `{}`", second.stage)),
        "the error names both stages: {stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    // The holder is untouched.
    assert_eq!(
        lines(&docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("name=^{shared}$")
        ]))
        .len(),
        1
    );
}

#[test]
fn healthcheck_start_interval_needs_an_engine_that_knows_it() {
    let t = TestStack::new("interval");
    let image = busybox_image();
    t.stack(&format!(
        "services:\n  api:\n    image: {image}\n    init: true\n    command: [sleep, \"3600\"]\n    healthcheck:\n      test: [CMD, \"true\"]\n      interval: 1s\n      start_period: 5s\n      start_interval: 200ms\n"
    ));
    let api_version = docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    let (major, minor) = api_version
        .trim()
        .split_once('.')
        .map(|(a, b)| (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0)))
        .unwrap_or((0, 0));
    let output = t.cmd().arg("up").output().expect("run up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if (major, minor) >= (1, 44) {
        assert!(output.status.success(), "{stderr}");
        assert_eq!(
            inspect(&t.container("api"), "{{.Config.Healthcheck.StartInterval}}"),
            "200ms"
        );
    } else {
        // An older engine would ignore it: refused, naming the reason, nothing created.
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("`healthcheck.start_interval` needs engine API 1.44"),
            "{stderr}"
        );
        assert!(t.containers().is_empty(), "{:?}", t.containers());
    }
}

#[test]
fn network_ipam_fixed_addresses_and_volume_driver_opts() {
    let t = TestStack::new("ipam");
    let image = busybox_image();
    // A subnet of this process's own, so that parallel runs do not overlap.
    let octet = 64 + std::process::id() % 128;
    t.stack(&format!(
        r#"
services:
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
    networks:
      back:
        ipv4_address: 10.213.{octet}.10
    volumes: ["scratch:/scratch"]
networks:
  back:
    internal: true
    driver_opts: {{ com.docker.network.bridge.enable_icc: "true" }}
    ipam:
      config:
        - subnet: 10.213.{octet}.0/24
          gateway: 10.213.{octet}.1
volumes:
  scratch:
    driver_opts: {{ type: tmpfs, device: tmpfs, o: "size=1m" }}
"#
    ));
    let up = t.cmd().arg("up").output().expect("run up");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let network = format!("{}-{}_back", t.stage, t.project);
    assert_eq!(
        docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            &network
        ])
        .trim(),
        format!("true 10.213.{octet}.0/24 10.213.{octet}.1")
    );
    assert_eq!(
        inspect(
            &t.container("api"),
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}")
        ),
        format!("10.213.{octet}.10")
    );
    let volume = format!("{}-{}_scratch", t.stage, t.project);
    assert_eq!(
        docker_ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Options.type}} {{.Options.o}}",
            &volume
        ])
        .trim(),
        "tmpfs size=1m"
    );
    assert!(
        exec(&t.container("api"), "grep ' /scratch ' /proc/mounts")
            .starts_with("tmpfs /scratch tmpfs"),
        "the volume is a tmpfs"
    );
}

#[test]
fn env_files_optional_and_raw() {
    let t = TestStack::new("envfiles");
    t.write("raw.env", "RAW=\"q\" ${X}\n# a comment\nPLAIN=1\n");
    t.stack(
        "services:\n  api:\n    image: busybox\n    env_file:\n      - { path: ./missing.env, required: false }\n      - { path: ./raw.env, format: raw }\n",
    );
    let output = t.cmd().arg("config").output().expect("run config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#"RAW: '"q" ${X}'"#), "{stdout}");
    assert!(stdout.contains("PLAIN: '1'"), "{stdout}");

    // Without `required: false`, a missing file is an error at its place.
    t.stack("services:\n  api:\n    image: busybox\n    env_file: [./missing.env]\n");
    let output = t.cmd().arg("config").output().expect("run config");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(":4:16:") && stderr.contains("no such file"),
        "{stderr}"
    );
}

#[test]
fn lifecycle_hooks_run_in_the_container() {
    let t = TestStack::new("hooks");
    let image = busybox_image();
    std::fs::create_dir_all(t.path("out")).expect("out dir");
    t.stack(&format!(
        r#"
services:
  api:
    image: {image}
    init: true
    command: [sleep, "3600"]
    volumes: ["./out:/out"]
    post_start:
      - command: [sh, -c, "echo $$GREETING > /tmp/started"]
        environment: {{ GREETING: hello }}
    pre_stop:
      - command: [sh, -c, "touch /out/stopped"]
"#
    ));
    t.cmd().arg("up").assert().success();
    assert_eq!(exec(&t.container("api"), "cat /tmp/started"), "hello");
    assert!(!t.path("out/stopped").exists());
    t.cmd().arg("down").assert().success();
    assert!(t.path("out/stopped").exists(), "pre_stop ran before down");

    // A failing post_start fails `up`, naming the hook and showing its output.
    t.stack(&format!(
        "services:\n  api:\n    image: {image}\n    init: true\n    command: [sleep, \"3600\"]\n    post_start:\n      - command: [sh, -c, \"echo not ready; exit 3\"]\n"
    ));
    let output = t.cmd().arg("up").output().expect("run up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("service `api`: post_start hook 1 of 1")
            && stderr.contains("exited with code 3")
            && stderr.contains("not ready"),
        "{stderr}"
    );
}
