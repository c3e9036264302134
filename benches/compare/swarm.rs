//! The Swarm phase (`--swarm`, run on its own): a three-node swarm (the lab of
//! tests/support/swarm.rs: three dockerd in network namespaces on a bridge, a registry on the
//! bridge), and one stack deployed by stackctl (`engine: { mode: swarm }`) and by
//! `docker stack deploy --detach=false` (the same services; the docker CLI reads the file
//! without the `engine:` block). Two steps, each tool on its own project:
//!
//! - deploy-to-converged: from nothing to every replica running (healthy);
//! - rolling update: a changed environment rolls the 3 replicas of `api`.
//!
//! Each tool's stack is removed (and its tasks awaited) between runs, untimed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[path = "../../tests/support/swarm.rs"]
mod lab;

fn services(registry: &str, greeting: &str) -> String {
    format!(
        r#"services:
  api:
    image: {registry}/bench/api:1
    environment:
      GREETING: {greeting}
    command: ["sh", "-c", "echo $$GREETING > /var/www/index.html; exec httpd -f -p 8080 -h /var/www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
    stop_signal: SIGKILL
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      update_config:
        order: start-first
        parallelism: 1
        delay: 0s
        monitor: 1s
  worker:
    image: {registry}/bench/api:1
    command: ["sh", "-c", "exec sleep 100000"]
    stop_signal: SIGKILL
    deploy:
      replicas: 2
      endpoint_mode: dnsrr
"#
    )
}

struct Tool {
    name: &'static str,
    dir: std::path::PathBuf,
    project: String,
}

fn run(command: &mut Command, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed())
}

impl Tool {
    fn write(&self, swarm: &lab::Swarm, greeting: &str) -> Result<()> {
        let body = services(&swarm.registry, greeting);
        if self.name == "stackctl" {
            std::fs::create_dir_all(self.dir.join("stacks"))?;
            std::fs::write(
                self.dir.join("stacks/bench.yml"),
                format!(
                    "name: {}\nengine:\n  host: {}\n  mode: swarm\n{body}",
                    self.project,
                    swarm.manager().socket
                ),
            )?;
        } else {
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(
                self.dir.join("docker-compose.yml"),
                format!("version: \"3.8\"\n{body}"),
            )?;
        }
        Ok(())
    }

    /// Deploy (or update) and wait until converged.
    fn deploy(&self, swarm: &lab::Swarm, stackctl: &Path) -> Result<Duration> {
        if self.name == "stackctl" {
            run(
                Command::new(stackctl)
                    .current_dir(&self.dir)
                    .env("STACKCTL_ENV", "bench")
                    .env("CI", "true")
                    .env("DOCKER_CONFIG", &swarm.docker_config)
                    .env_remove("DOCKER_HOST")
                    .args(["up", "--timeout", "120"]),
                "stackctl up",
            )
        } else {
            run(
                Command::new("docker")
                    .current_dir(&self.dir)
                    .env("DOCKER_HOST", &swarm.manager().socket)
                    .env("DOCKER_CONFIG", &swarm.docker_config)
                    .args([
                        "stack",
                        "deploy",
                        "--detach=false",
                        "--with-registry-auth",
                        "-c",
                        "docker-compose.yml",
                        &self.project,
                    ]),
                "docker stack deploy",
            )
        }
    }

    /// Remove the stack and wait until its tasks are gone (untimed).
    fn remove(&self, swarm: &lab::Swarm, stackctl: &Path) -> Result<()> {
        if self.name == "stackctl" {
            run(
                Command::new(stackctl)
                    .current_dir(&self.dir)
                    .env("STACKCTL_ENV", "bench")
                    .env("CI", "true")
                    .env("DOCKER_CONFIG", &swarm.docker_config)
                    .env_remove("DOCKER_HOST")
                    .args(["purge", "--yes"]),
                "stackctl purge",
            )?;
        } else {
            run(
                Command::new("docker")
                    .env("DOCKER_HOST", &swarm.manager().socket)
                    .args(["stack", "rm", &self.project]),
                "docker stack rm",
            )?;
        }
        // `docker stack rm` returns before anything is gone: wait for every task container.
        let deadline = Instant::now() + Duration::from_secs(60);
        let filter = if self.name == "stackctl" {
            format!("label=io.stackctl.project={}", self.project)
        } else {
            format!("label=com.docker.stack.namespace={}", self.project)
        };
        loop {
            let left: usize = (0..swarm.nodes.len())
                .map(|n| {
                    String::from_utf8_lossy(
                        &swarm
                            .docker_on(n, &["ps", "-aq", "--filter", &filter])
                            .stdout,
                    )
                    .lines()
                    .count()
                })
                .sum();
            let networks = String::from_utf8_lossy(
                &swarm
                    .docker(&["network", "ls", "-q", "--filter", &filter])
                    .stdout,
            )
            .lines()
            .count();
            if left == 0 && networks == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{}: {left} containers left 60s after removal", self.name);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64()
}

pub fn run_phase(runs: usize, stackctl: &Path) -> Result<()> {
    let swarm = lab::swarm();
    let scratch = tempfile::tempdir()?;
    swarm.push_image(
        "bench/api",
        "1",
        &format!("FROM {}\n", crate::support::busybox_image()),
    );
    let id = std::process::id();
    let tools = [
        Tool {
            name: "stackctl",
            dir: scratch.path().join("stackctl"),
            project: format!("swbench{id}s"),
        },
        Tool {
            name: "docker stack",
            dir: scratch.path().join("docker"),
            project: format!("swbench{id}d"),
        },
    ];
    let mut deploys: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    let mut updates: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    for run_index in 0..runs {
        for (i, tool) in tools.iter().enumerate() {
            tool.write(swarm, "hello")?;
            let deploy = tool.deploy(swarm, stackctl)?;
            tool.write(swarm, &format!("bonjour{run_index}"))?;
            let update = tool.deploy(swarm, stackctl)?;
            tool.remove(swarm, stackctl)?;
            eprintln!(
                "run {}: {}: deploy-to-converged {:.2}s, rolling update {:.2}s",
                run_index + 1,
                tool.name,
                deploy.as_secs_f64(),
                update.as_secs_f64()
            );
            deploys[i].push(deploy);
            updates[i].push(update);
        }
    }
    let (sd, dd) = (median(deploys[0].clone()), median(deploys[1].clone()));
    let (su, du) = (median(updates[0].clone()), median(updates[1].clone()));
    println!("Swarm, 3 nodes, api 3 replicas + worker 2 (medians of {runs} runs):");
    println!("| step | stackctl | docker stack deploy --detach=false | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| deploy to converged | {sd:.2}s | {dd:.2}s | {:.2}x |",
        sd / dd
    );
    println!(
        "| rolling update of 3 replicas | {su:.2}s | {du:.2}s | {:.2}x |",
        su / du
    );
    Ok(())
}
