//! A stage deployed to a three-node Docker Swarm (tests/support/swarm.rs: three dockerd in
//! network namespaces on a lab bridge, joined into one swarm, pulling from a registry with
//! auth on the bridge): the issue's check end to end, in one test (the lab is shared and a
//! swarm converges in seconds, not milliseconds), and the refusals of what cannot exist in a
//! Swarm, which need no engine.

mod support;
#[path = "support/swarm.rs"]
mod swarm_lab;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{busybox_image, TestStack};
use swarm_lab::{swarm, Swarm};

/// A test stage on the swarm whose objects (and a client container) are removed when it
/// drops, failure too.
struct Stage {
    t: TestStack,
    client: Option<String>,
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            swarm().docker(&["rm", "-f", &client]);
        }
        swarm().cleanup_project(&self.t.project);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Stage {
    fn run(&self, args: &[&str]) -> Output {
        let s = swarm();
        Command::new(assert_cmd::cargo::cargo_bin("stackctl"))
            .current_dir(&self.t.dir)
            .env("STACKCTL_ENV", &self.t.stage)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", &s.docker_config)
            .env_remove("DOCKER_HOST")
            .args(args)
            .output()
            .expect("run stackctl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "stackctl {args:?} exited {:?}:\n{}",
            out.status.code(),
            text(&out)
        );
        text(&out)
    }

    fn service(&self, name: &str) -> String {
        format!("{}-{}--{name}", self.t.stage, self.t.project)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        swarm().docker_ok(&[
            "service",
            "inspect",
            "--format",
            format,
            &self.service(name),
        ])
    }

    /// `format` of each task of a service wanted running, one line each.
    fn running(&self, name: &str, format: &str) -> Vec<String> {
        let ids = swarm().docker_ok(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &self.service(name),
        ]);
        let mut args = vec!["inspect", "--format", format];
        args.extend(ids.lines());
        swarm()
            .docker_ok(&args)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Tasks of a service wanted running: (node ID, state).
    fn running_tasks(&self, name: &str) -> Vec<(String, String)> {
        self.running(name, "{{.NodeID}} {{.Status.State}}")
            .into_iter()
            .map(|l| {
                let (node, state) = l.split_once(' ').unwrap_or((&l, ""));
                (node.to_string(), state.to_string())
            })
            .collect()
    }

    /// The images the tasks of a service wanted running run.
    fn running_images(&self, name: &str) -> Vec<String> {
        self.running(name, "{{.Spec.ContainerSpec.Image}}")
    }

    /// The states of every task of a service.
    fn task_states(&self, name: &str) -> Vec<String> {
        let ids = swarm().docker_ok(&["service", "ps", "-q", &self.service(name)]);
        let mut args = vec!["inspect", "--format", "{{.Status.State}}"];
        args.extend(ids.lines());
        swarm()
            .docker_ok(&args)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// What the [`Balancer`] saw.
#[derive(Debug, Default)]
struct Tally {
    /// `ADDRESS BODY` → answers.
    answers: BTreeMap<String, usize>,
    /// Health checks that found a node out (refused: no task listens; 404: draining).
    out: usize,
    /// Requests that failed once a node accepted them, or that no node took.
    failed: Vec<String>,
}

/// How often the [`Balancer`] checks a node's health; api drains for longer (1 s).
const HEALTH_EVERY: Duration = Duration::from_millis(200);

/// A client in front of the nodes' published ports, as a load balancer with health checks
/// is: it checks each node's `/health` every [`HEALTH_EVERY`] and sends each request to the
/// next node found healthy, moving on when one refuses the connection. api, stopped, takes
/// its `/health` away and serves on for a second before it exits (a drain), as services
/// behind such a balancer do. A request whose connection was accepted counts as failed
/// unless it comes back whole, `200` with a body; so does one that no node takes.
struct Balancer {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Balancer {
    fn start(nodes: Vec<String>, port: u16) -> Balancer {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut health: Vec<Option<(Instant, bool)>> = vec![None; nodes.len()];
                let mut next = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut outcome = Err("no node was healthy".to_string());
                    for _ in 0..nodes.len() {
                        let i = next % nodes.len();
                        next += 1;
                        let node = &nodes[i];
                        let healthy = match health[i] {
                            Some((at, healthy)) if at.elapsed() < HEALTH_EVERY => healthy,
                            _ => {
                                let ok =
                                    matches!(Self::get(node, port, "/health"), Ok(Some((200, _))));
                                health[i] = Some((Instant::now(), ok));
                                if !ok {
                                    tally.lock().unwrap().out += 1;
                                }
                                ok
                            }
                        };
                        if !healthy {
                            continue;
                        }
                        match Self::get(node, port, "/") {
                            Ok(Some((200, body))) if !body.is_empty() => {
                                outcome = Ok(format!("{node} {body}"));
                                break;
                            }
                            Ok(Some((status, body))) => {
                                outcome = Err(format!("{node}: {status} {body:?}"));
                                break;
                            }
                            // Refused: never accepted, so a balancer sends it elsewhere.
                            Ok(None) => health[i] = Some((Instant::now(), false)),
                            Err(e) => {
                                outcome = Err(e);
                                break;
                            }
                        }
                    }
                    let mut tally = tally.lock().unwrap();
                    match outcome {
                        Ok(answer) => *tally.answers.entry(answer).or_default() += 1,
                        Err(e) => tally.failed.push(e),
                    }
                    drop(tally);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Balancer {
            tally,
            stop,
            thread: Some(thread),
        }
    }

    /// One request: its status and body; `None` when the node refused the connection.
    fn get(node: &str, port: u16, path: &str) -> Result<Option<(u16, String)>, String> {
        let address: SocketAddr = format!("{node}:{port}").parse().expect("address");
        let mut stream = match TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
            Ok(stream) => stream,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => return Err(format!("{address}: connect: {e}")),
        };
        let timeout = Some(Duration::from_secs(3));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        let mut response = String::new();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .and_then(|()| stream.read_to_string(&mut response))
            .map_err(|e| format!("{address}{path}: accepted, then {e}"))?;
        let status = response
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{address}{path}: accepted, then {response:?}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.trim().to_string())
            .unwrap_or_default();
        Ok(Some((status, body)))
    }

    /// Answers with `body` from each of `nodes`.
    fn answered(&self, nodes: &[String], body: &str) -> bool {
        let tally = self.tally.lock().unwrap();
        nodes.iter().all(|n| {
            tally
                .answers
                .get(&format!("{n} {body}"))
                .is_some_and(|c| *c >= 3)
        })
    }

    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stack(s: &Swarm, t: &TestStack, greeting: &str, api_tag: &str, db_port: u16) -> String {
    format!(
        r#"engine:
  host: {host}
  mode: swarm
services:
  api:
    build: ./api
    image: {reg}/{project}/api:{api_tag}
    environment:
      GREETING: {greeting}
    command: ["sh", "-c", "echo serving $$GREETING; echo $$GREETING > /var/www/index.html; echo ok > /var/www/health; httpd -f -p 8080 -h /var/www & pid=$$!; trap 'rm /var/www/health; sleep 1; kill $$pid' TERM; wait $$pid; wait $$pid"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
    depends_on:
      db: {{ condition: service_started }}
    ports:
      - target: 8080
        published: {api_port}
        mode: host
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      placement:
        preferences:
          - spread: node.id
      update_config:
        monitor: 3s
        failure_action: rollback
  db:
    image: {reg}/{project}/db:1
    command: ["sh", "-c", "cp /run/secrets/db_password /data/pw; exec httpd -f -p 5432 -h /data"]
    # httpd as PID 1 ignores SIGTERM: no 10 s wait at each stop
    stop_grace_period: 1s
    volumes: [data:/data]
    secrets: [db_password]
    ports:
      - target: 5432
        published: {db_port}
        mode: host
    deploy:
      endpoint_mode: dnsrr
  agent:
    image: {reg}/{project}/db:1
    command: ["sh", "-c", "trap 'exit 0' TERM; cat /etc/agent.conf > /state/conf; while :; do sleep 1; done"]
    volumes: [state:/state]
    configs:
      - source: agent_conf
        target: /etc/agent.conf
    deploy:
      mode: global
      endpoint_mode: dnsrr
  seed:
    image: {reg}/{project}/db:1
    command: ["sh", "-c", "echo seeded"]
    deploy:
      mode: replicated-job
      replicas: 2
volumes:
  data: {{}}
  state: {{}}
secrets:
  db_password:
    file: ./db_password.txt
configs:
  agent_conf:
    file: ./agent.conf
tasks:
  migrate:
    image: {busybox}
    command: ["sh", "-c", "wc -c; wget -q -O- http://db:5432/pw"]
"#,
        host = s.manager().socket,
        reg = s.registry,
        project = t.project,
        busybox = busybox_image(),
        api_port = db_port + 1,
    )
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_stack_converges_rolls_rolls_back_and_goes_away_on_a_three_node_swarm() {
    let s = swarm();
    let t = TestStack::new("swarm");
    let mut stage = Stage { t, client: None };
    let t = &stage.t;
    let db_port = 20000 + (std::process::id() % 20000) as u16;
    t.write(
        "api/Dockerfile",
        &format!(
            "FROM {}\nCOPY version.txt /version.txt\nCMD [\"httpd\", \"-f\"]\n",
            busybox_image()
        ),
    );
    t.write("api/version.txt", "1\n");
    t.write("db_password.txt", "s3cret-db-pw");
    t.write("agent.conf", "agent-v1\n");
    s.push_image(
        &format!("{}/db", t.project),
        "1",
        &format!("FROM {}\n", busybox_image()),
    );
    t.stack(&stack(s, t, "hello", "1", db_port));

    // up converges and waits
    let out = stage.ok(&["up"]);
    assert!(out.contains("3/3 running"), "{out}");
    assert!(
        out.contains("node-local"),
        "the plan names the pinned volume: {out}"
    );
    let api = stage.running_tasks("api");
    assert_eq!(api.len(), 3, "{api:?}");
    assert!(api.iter().all(|(_, state)| state == "running"), "{api:?}");
    let mut nodes: Vec<&String> = api.iter().map(|(n, _)| n).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one api task per node: {api:?}");
    let image = stage.inspect("api", "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    assert!(
        image.contains("/api:1@sha256:"),
        "pinned to a digest: {image}"
    );
    let db = stage.running_tasks("db");
    assert_eq!(db.len(), 1, "{db:?}");
    assert_eq!(
        stage.inspect("db", "{{.Spec.TaskTemplate.Placement.Constraints}}"),
        format!("[node.id=={}]", s.manager().id)
    );
    // db's port is published on its node (the manager) and serves the secret
    let pw = poll("db's published port", Duration::from_secs(20), || {
        let out = Command::new("busybox")
            .args([
                "wget",
                "-q",
                "-O-",
                &format!("http://{}:{db_port}/pw", s.manager().address),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(pw, "s3cret-db-pw");

    // a global service runs one task per node, each with its own node-local volume
    assert!(out.contains("runs a task on every node"), "{out}");
    let agent = stage.running_tasks("agent");
    assert!(
        agent.iter().all(|(_, state)| state == "running"),
        "{agent:?}"
    );
    let mut nodes: Vec<&String> = agent.iter().map(|(n, _)| n).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!((agent.len(), nodes.len()), (3, 3), "{agent:?}");
    assert_eq!(
        stage.inspect("agent", "{{.Spec.TaskTemplate.Placement.Constraints}}"),
        "[]"
    );
    // a replicated job runs to completion, and up waited for it
    assert!(out.contains("2/2 complete"), "{out}");
    assert_eq!(stage.task_states("seed"), ["complete", "complete"]);
    // the config is mounted where the stack says
    let out = stage.ok(&["exec", "agent", "--", "cat", "/etc/agent.conf"]);
    assert!(out.contains("agent-v1"), "{out}");

    // ps lists the tasks per node; logs merges the service's tasks
    let out = stage.ok(&["ps"]);
    let api_rows: Vec<&str> = out.lines().filter(|l| l.contains(" api.")).collect();
    assert_eq!(api_rows.len(), 3, "{out}");
    for node in &s.nodes {
        assert!(
            api_rows
                .iter()
                .any(|r| r.starts_with(&format!("{} (", node.address))),
            "a task on {}: {out}",
            node.address
        );
    }
    let out = stage.ok(&["logs", "api"]);
    assert_eq!(out.matches("serving hello").count(), 3, "{out}");

    // a no-op up updates nothing
    let versions = |stage: &Stage, services: &[&str]| -> Vec<String> {
        services
            .iter()
            .map(|s| stage.inspect(s, "{{.Version.Index}}"))
            .collect()
    };
    let all = ["api", "db", "agent", "seed"];
    let before = versions(&stage, &all);
    let out = stage.ok(&["up"]);
    assert!(!out.contains("updated"), "{out}");
    assert_eq!(
        versions(&stage, &all),
        before,
        "a no-op up changed a service"
    );
    let out = stage.ok(&["up", "--dry-run"]);
    for service in all {
        assert!(
            out.contains(&format!("service {service}: unchanged")),
            "{out}"
        );
    }
    // `--json`: one event per planned action (here, one per service).
    let run = stage.run(&["up", "--dry-run", "--json"]);
    assert!(run.status.success(), "{}", text(&run));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(events.len(), all.len(), "{out}");
    for service in all {
        assert!(
            events
                .iter()
                .any(|e| e["object"] == service && e["action"] == "unchanged"),
            "{out}"
        );
    }

    // a file of api's build context changes: up rebuilds and pushes the image and rolls
    // api, and only api, to its new digest
    let old_image = stage.inspect("api", "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    let others = ["db", "agent", "seed"];
    let before = versions(&stage, &others);
    stage.t.write("api/version.txt", "2\n");
    let out = stage.ok(&["up", "--dry-run"]);
    let reason = "build context changed: api/version.txt";
    assert!(
        out.contains(&format!(
            "image {}/{}/api:1: build ({reason})",
            s.registry, stage.t.project
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("service api: update (image rebuilt: {reason})")),
        "{out}"
    );
    for service in others {
        assert!(
            out.contains(&format!("service {service}: unchanged")),
            "{out}"
        );
    }
    let out = stage.ok(&["up", "--timeout", "90"]);
    assert!(out.contains("built"), "{out}");
    let new_image = stage.inspect("api", "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    assert!(new_image.contains("/api:1@sha256:"), "{new_image}");
    assert_ne!(new_image, old_image, "api runs the rebuilt image");
    assert_eq!(stage.running_images("api"), [new_image.as_str(); 3]);
    assert_eq!(versions(&stage, &others), before, "only api rolled");

    // exec TASK streams stdin in and output out, on the manager, on the stage's network
    let input = stage.t.path("input.sql");
    std::fs::write(&input, "x".repeat(100_000)).expect("write input");
    let out = Command::new(assert_cmd::cargo::cargo_bin("stackctl"))
        .current_dir(&stage.t.dir)
        .env("STACKCTL_ENV", &stage.t.stage)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", &s.docker_config)
        .env_remove("DOCKER_HOST")
        .args(["exec", "migrate"])
        .stdin(std::fs::File::open(&input).expect("open input"))
        .output()
        .expect("stackctl exec");
    assert!(out.status.success(), "exec migrate: {}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("100000"), "{said}");
    assert!(
        said.contains("s3cret-db-pw"),
        "the task reached db over the overlay: {said}"
    );

    // exec SERVICE runs in a task's container on the manager (db is pinned there)
    let out = stage.ok(&["exec", "db", "--", "cat", "/data/pw"]);
    assert!(out.contains("s3cret-db-pw"), "{out}");

    // a changed env rolls api while two client loops see no failed request: one on the
    // overlay (by the service's name: Swarm takes a stopping task out of the name first),
    // and one in front of the nodes' published ports that sends requests only to nodes its
    // health checks find serving, as a load balancer does (api drains when stopped). api
    // publishes its port on each node (`mode: host`), so a new task cannot start on a node
    // before the old one is gone: api updates stop-first.
    let addresses: Vec<String> = s.nodes.iter().map(|n| n.address.clone()).collect();
    let balancer = Balancer::start(addresses.clone(), db_port + 1);
    let network = format!("{}-{}_default", stage.t.stage, stage.t.project);
    let client = format!("{}-client", stage.t.stage);
    s.docker_ok(&[
        "run",
        "-d",
        "--name",
        &client,
        "--network",
        &network,
        busybox_image(),
        "sh",
        "-c",
        "while true; do if wget -q -O- http://api:8080/ >/tmp/r 2>/dev/null; then echo ok $(cat /tmp/r); else echo fail; fi; sleep 0.05; done",
    ]);
    stage.client = Some(client.clone());
    let client_lines = |pattern: &str| {
        let out = s.docker(&["logs", &client]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(pattern))
            .count()
    };
    poll(
        "the client's first answers",
        Duration::from_secs(20),
        || (client_lines("ok hello") >= 5).then_some(()),
    );
    poll(
        "the balancer's first answers from every node",
        Duration::from_secs(20),
        || balancer.answered(&addresses, "hello").then_some(()),
    );
    stage.t.stack(&stack(s, &stage.t, "bonjour", "1", db_port));
    // and a changed config rolls the service that mounts it (agent)
    stage.t.write("agent.conf", "agent-v2\n");
    let before_api = stage.inspect("api", "{{.Version.Index}}");
    let before_db = stage.inspect("db", "{{.Version.Index}}");
    let before_agent = stage.inspect("agent", "{{.Version.Index}}");
    let out = stage.ok(&["up", "--timeout", "90"]);
    assert!(out.contains("updated"), "{out}");
    // with the fields that changed, as a recreated container is
    assert!(out.contains("environment changed"), "{out}");
    assert!(out.contains("secrets/configs changed"), "{out}");
    assert!(
        out.contains("no longer used"),
        "the old config is removed: {out}"
    );
    assert_ne!(stage.inspect("api", "{{.Version.Index}}"), before_api);
    assert_ne!(stage.inspect("agent", "{{.Version.Index}}"), before_agent);
    assert_eq!(
        stage.inspect("db", "{{.Version.Index}}"),
        before_db,
        "db did not change"
    );
    let out = stage.ok(&["exec", "agent", "--", "cat", "/etc/agent.conf"]);
    assert!(out.contains("agent-v2"), "{out}");
    assert_eq!(
        stage.inspect("api", "{{.Spec.UpdateConfig.Order}}"),
        "stop-first"
    );
    poll(
        "the client's answers from the new spec",
        Duration::from_secs(20),
        || (client_lines("ok bonjour") >= 5).then_some(()),
    );
    poll(
        "the balancer's answers from the new spec on every node",
        Duration::from_secs(20),
        || balancer.answered(&addresses, "bonjour").then_some(()),
    );
    let tally = balancer.finish();
    eprintln!(
        "balancer: {} answers, {} health checks found a node out, {} failed",
        tally.answers.values().sum::<usize>(),
        tally.out,
        tally.failed.len()
    );
    assert!(
        tally.failed.is_empty(),
        "failed requests through the published ports during the update: {tally:#?}"
    );
    let logs = text(&s.docker(&["logs", &client]));
    assert_eq!(
        client_lines("fail"),
        0,
        "failed requests during the update:\n{logs}"
    );
    s.docker(&["rm", "-f", &client]);
    stage.client = None;

    // rollback returns api to the spec before its last update, and waits for it
    let out = stage.ok(&["rollback", "api", "--timeout", "90"]);
    assert!(out.contains("3/3 running"), "{out}");
    let env = stage.inspect("api", "{{.Spec.TaskTemplate.ContainerSpec.Env}}");
    assert!(env.contains("GREETING=hello"), "{env}");

    // a tag pushed elsewhere: db stays on the digest it runs until `--pull always`
    let db_image = stage.inspect("db", "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    let db_version = stage.inspect("db", "{{.Version.Index}}");
    s.push_image(
        &format!("{}/db", stage.t.project),
        "1",
        &format!("FROM {}\nLABEL moved=1\n", busybox_image()),
    );
    let out = stage.ok(&["up", "--dry-run", "db"]);
    assert!(out.contains("service db: unchanged"), "{out}");
    stage.ok(&["up", "db"]);
    assert_eq!(stage.inspect("db", "{{.Version.Index}}"), db_version);
    let out = stage.ok(&["up", "--pull", "always", "--dry-run", "db"]);
    assert!(out.contains("service db: update"), "{out}");
    stage.ok(&["up", "--pull", "always", "db"]);
    let moved = stage.inspect("db", "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    assert!(moved.contains("/db:1@sha256:"), "{moved}");
    assert_ne!(moved, db_image, "db follows the moved tag");
    assert_eq!(stage.running_images("db"), [moved.as_str()]);

    // a broken image: the update fails, rolls back, and up exits 1 naming node and error
    stage.t.write(
        "api/Dockerfile",
        &format!(
            "FROM {}\nENTRYPOINT [\"sh\", \"-c\", \"echo broken image >&2; exit 3\", \"--\"]\n",
            busybox_image()
        ),
    );
    stage.t.stack(&stack(s, &stage.t, "bonjour", "2", db_port));
    let out = stage.run(&["up", "--timeout", "90"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert!(
        said.contains(&format!("on node {}", s.registry.replace(".1:5000", "."))),
        "{said}"
    );
    assert!(said.contains("non-zero exit (3)"), "{said}");
    assert!(
        said.contains("broken image"),
        "the task's last log lines: {said}"
    );
    let image = stage.inspect("api", "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    assert!(
        image.contains("/api:1@sha256:"),
        "rolled back to the old image: {image}"
    );
    assert_eq!(stage.running_tasks("api").len(), 3);

    // down removes services, tasks and networks, and waits for them
    let out = stage.ok(&["down"]);
    let filter = format!("label=io.stackctl.project={}", stage.t.project);
    assert_eq!(
        s.docker_ok(&["service", "ls", "-q", "--filter", &filter]),
        ""
    );
    // the workers' agents remove their task containers right after the tasks go; but for
    // the finished tasks of a removed job, which some engines keep (moby/moby#44312): then
    // down names the nodes holding their containers
    let seed = "label=io.stackctl.service=seed";
    let mut kept_on: Vec<usize> = Vec::new();
    for n in 0..3 {
        let seeds = poll(
            &format!("no container of the stage on node {} but seed's", n + 1),
            Duration::from_secs(15),
            || {
                let all = text(&s.docker_on(n, &["ps", "-aq", "--filter", &filter]));
                let seeds =
                    text(&s.docker_on(n, &["ps", "-aq", "--filter", &filter, "--filter", seed]));
                (all == seeds).then_some(seeds)
            },
        );
        if !seeds.trim().is_empty() {
            kept_on.push(n);
        }
    }
    let kept_line = |out: &str| {
        out.lines()
            .find(|l| l.contains("keeps the finished tasks of job `seed`"))
            .map(str::to_string)
    };
    if kept_on.is_empty() {
        assert_eq!(kept_line(&out), None, "{out}");
    } else {
        let line = kept_line(&out).unwrap_or_else(|| panic!("seed's tasks named: {out}"));
        for n in &kept_on {
            assert!(
                line.contains(&format!("{} (", s.nodes[*n].address)),
                "{out}"
            );
        }
    }
    assert_eq!(
        s.docker_ok(&["network", "ls", "-q", "--filter", &filter]),
        ""
    );
    // purge removes the rest: secrets, configs, the volumes (and kept containers) on the
    // manager; and names the global agent's volumes on the workers, which it cannot reach
    // (and seed's kept containers there)
    let out = stage.ok(&["purge", "--yes"]);
    let state = format!("{}-{}_state", stage.t.stage, stage.t.project);
    let volume_line = out
        .lines()
        .find(|l| l.contains(&format!("volume `{state}` is node-local on ")))
        .unwrap_or_else(|| panic!("the workers' volumes named: {out}"));
    for node in &s.nodes[1..] {
        assert!(
            volume_line.contains(&format!("{} (", node.address)),
            "{out}"
        );
    }
    let kept_workers: Vec<usize> = kept_on.iter().copied().filter(|n| *n > 0).collect();
    if !kept_workers.is_empty() {
        let line = kept_line(&out).unwrap_or_else(|| panic!("seed's tasks named: {out}"));
        for n in &kept_workers {
            assert!(
                line.contains(&format!("{} (", s.nodes[*n].address)),
                "{out}"
            );
        }
    }
    let mut expected: Vec<String> = Vec::new();
    for n in 1..3 {
        if kept_workers.contains(&n) {
            expected.push(format!("node {} ps", n + 1));
        }
        expected.push(format!("node {} volume", n + 1));
    }
    let left: Vec<String> = s
        .labelled(&stage.t.project)
        .iter()
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l.clone(), |(kind, _)| kind.to_string())
        })
        .collect();
    let mut dedup = left.clone();
    dedup.dedup();
    assert_eq!(dedup, expected, "{left:?}");
    for n in 1..3 {
        let out = s.docker_on(n, &["ps", "-aq", "--filter", &filter]);
        for id in text(&out).lines() {
            s.docker_on(n, &["rm", "-f", id]);
        }
        s.docker_on(n, &["volume", "rm", &state]);
    }
    assert_eq!(s.labelled(&stage.t.project), Vec::<String>::new());
}

#[test]
fn what_cannot_exist_in_a_swarm_is_refused_before_anything_changes() {
    let t = TestStack::new("swarm-refusals");
    t.stack(
        r#"engine:
  host: unix:///nonexistent/docker.sock
  mode: swarm
services:
  api:
    image: api:1
    volumes_from: [files]
  web:
    image: registry.example.com/shop/web:1
    network_mode: "service:api"
    deploy:
      mode: global
      placement:
        constraints: [node.role == manager]
      update_config:
        order: start-first
  worker:
    build: ./worker
data_containers:
  files:
    image: registry.example.com/shop/files:1
"#,
    );
    let out = t.cmd().arg("up").output().expect("stackctl up");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    let file = format!("stacks/{}.yml", t.stage);
    for (at, what) in [
        ("7:5", "`volumes_from` cannot be used in a Swarm"),
        ("6:12", "image `api:1` names no registry"),
        ("10:5", "`network_mode` cannot be used in a Swarm"),
        ("18:5", "service `worker` is built but has no `image:`"),
        ("19:1", "data containers cannot exist in a Swarm"),
    ] {
        assert!(said.contains(&format!("{file}:{at}: ")), "{at} in:\n{said}");
        assert!(said.contains(what), "{what} in:\n{said}");
    }
    // Swarm's own keys are accepted there (no error about deploy.* above), and refused
    // on one engine, where they mean nothing.
    assert!(!said.contains("placement"), "{said}");
    assert!(!said.contains("update_config"), "{said}");
    assert!(!said.contains("deploy.mode"), "{said}");
    assert!(!said.contains("nonexistent"), "nothing was reached: {said}");
    t.stack(
        r#"engine:
  mode: single
services:
  web:
    image: registry.example.com/shop/web:1
    deploy:
      placement:
        constraints: [node.role == manager]
"#,
    );
    let out = t.cmd().args(["config"]).output().expect("stackctl config");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("`engine: { mode: swarm }` deploys to a Swarm"),
        "{said}"
    );

    // `up --watch` and `watch` need one engine: refused before the manager is reached
    t.stack(
        r#"engine:
  host: unix:///nonexistent/docker.sock
  mode: swarm
services:
  web:
    image: registry.example.com/shop/web:1
    develop:
      watch:
        - path: ./web
          action: sync
          target: /app
"#,
    );
    for args in [&["up", "--watch"][..], &["watch"][..]] {
        let out = t.cmd().args(args).output().expect("stackctl");
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains(&format!("`{}` needs a single engine", args.join(" "))),
            "{said}"
        );
        assert!(!said.contains("nonexistent"), "nothing was reached: {said}");
    }
}
