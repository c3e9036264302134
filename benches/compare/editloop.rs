//! The edit loop: a project like the starter (a `db` and an `api` built from their own
//! contexts on the busybox fixture, each with a healthcheck, and a `worker` on the plain
//! image), brought up once per tool; then per run, one line of the api's app is edited and
//! the time until the api is healthy again in a new container is measured: stackctl `up`
//! against `docker-compose up -d --build`. Compose v1 returns without waiting for health, so
//! for both tools the harness then polls the container's health the same way (stackctl's
//! `up` has already waited: its poll returns at once).
//!
//! Then stackctl alone: a no-op `up` of a service whose build context holds 10 000 files
//! (the build inputs' digest is computed at every `up`; its cache keeps that cheap).
//!
//! Every image built here carries the bench's image label and is removed with the registry
//! phase's images; containers, networks and volumes by the tools' labels.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{tool_run, Bench, Samples, Step, Tool, IMAGE, NOOP_REPEATS, STEP_TIMEOUT};

/// Files in the large build context.
pub const CONTEXT_FILES: usize = 10_000;

/// The edit-loop project's stack file for one tool (image names of its own).
fn stack(prefix: &str, label: &str) -> String {
    let (key, value) = label.split_once('=').unwrap_or((label, ""));
    format!(
        r#"services:
  db:
    build: {{ context: ./db, labels: {{ "{key}": "{value}" }} }}
    image: {prefix}/db:dev
    init: true
    healthcheck: {{ test: [CMD, test, -f, /tmp/ready], interval: 200ms, timeout: 1s, retries: 50 }}
  api:
    build: {{ context: ./api, labels: {{ "{key}": "{value}" }} }}
    image: {prefix}/api:dev
    init: true
    depends_on:
      db: {{ condition: service_healthy }}
    healthcheck: {{ test: [CMD, test, -f, /tmp/ready], interval: 200ms, timeout: 1s, retries: 50 }}
  worker:
    image: {IMAGE}
    command: [sleep, "86400"]
    init: true
    depends_on: [api]
"#
    )
}

/// The project's files: `db/` and `api/` build contexts with a small shell app each.
fn write_project(dir: &Path) -> Result<()> {
    for (service, lines) in [
        ("db", "VERSION=1\n"),
        ("api", "VERSION=1\nGREETING=hello\n"),
    ] {
        let context = dir.join(service);
        std::fs::create_dir_all(&context)?;
        std::fs::write(
            context.join("Dockerfile"),
            format!("FROM {IMAGE}\nCOPY app.sh /app/app.sh\nCMD [\"sh\", \"/app/app.sh\"]\n"),
        )?;
        std::fs::write(
            context.join("app.sh"),
            format!("{lines}echo \"{service} $VERSION\"\ntouch /tmp/ready\nexec sleep 86400\n"),
        )?;
    }
    Ok(())
}

struct Side {
    tool: Tool,
    dir: PathBuf,
    /// The api's container name.
    api: String,
}

pub fn phase(bench: &mut Bench, samples: &mut Samples) -> Result<()> {
    let id = std::process::id();
    let stage = format!("edit{id}");
    let compose_project = format!("stackctleditloop{id}");
    let stackctl_dir = bench.scratch.join("editloop");
    let compose_dir = bench.scratch.join("editloop-compose");
    std::fs::create_dir_all(stackctl_dir.join("stacks"))?;
    std::fs::create_dir_all(&compose_dir)?;
    write_project(&stackctl_dir)?;
    write_project(&compose_dir)?;
    std::fs::write(
        stackctl_dir.join(format!("stacks/{stage}.yml")),
        stack(&format!("editloop-stackctl{id}"), &bench.image_label),
    )?;
    std::fs::write(
        compose_dir.join("docker-compose.yml"),
        stack(&format!("editloop-compose{id}"), &bench.image_label),
    )?;
    let sides = [
        Side {
            tool: Tool::Stackctl,
            api: format!("{stage}-editloop--api"),
            dir: stackctl_dir.clone(),
        },
        Side {
            tool: Tool::Compose,
            api: format!("{compose_project}_api_1"),
            dir: compose_dir.clone(),
        },
    ];
    let command = |side: &Side| -> Command {
        match side.tool {
            Tool::Stackctl => {
                let mut cmd = Command::new(&bench.options.stackctl);
                cmd.arg("-C")
                    .arg(&side.dir)
                    .args(["-e", &stage, "up"])
                    .env("NO_COLOR", "1")
                    .env_remove("STACKCTL_ENV");
                cmd
            }
            _ => {
                let mut cmd = Command::new("docker-compose");
                cmd.arg("-p")
                    .arg(&compose_project)
                    .arg("-f")
                    .arg(side.dir.join("docker-compose.yml"))
                    .args(["--no-ansi", "up", "-d", "--build"]);
                cmd
            }
        }
    };
    eprintln!("edit loop: edit one line of the api, then until it is healthy again");
    for side in &sides {
        tool_run(bench, side.tool, &mut command(side), None, STEP_TIMEOUT)?;
        healthy_new(bench, &side.api, None)?;
    }
    let mut version = 1;
    for run in 0..bench.options.runs {
        version += 1;
        for k in 0..sides.len() {
            let side = &sides[(run + k) % sides.len()];
            let before = container_id(&side.api)?;
            let app = side.dir.join("api/app.sh");
            let text = std::fs::read_to_string(&app)?;
            let edited = text.replacen(
                &format!("VERSION={}", version - 1),
                &format!("VERSION={version}"),
                1,
            );
            std::fs::write(&app, edited)?;
            let started = Instant::now();
            tool_run(bench, side.tool, &mut command(side), None, STEP_TIMEOUT)?;
            healthy_new(bench, &side.api, Some(&before))?;
            samples.add(side.tool, Step::EditLoop, Some(started.elapsed()));
        }
    }
    large_context(bench, samples)
}

/// The container's ID.
fn container_id(name: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", name])
        .output()
        .context("run docker inspect")?;
    if !out.status.success() {
        bail!("no container `{name}`");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Poll the engine until `name` is a container other than `before` and healthy.
fn healthy_new(bench: &Bench, name: &str, before: Option<&str>) -> Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    bench.runtime.block_on(async {
        let docker = super::floor::connect()?;
        loop {
            if let Ok(inspect) = docker
                .inspect_container(
                    name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            {
                let new = before.is_none_or(|b| inspect.id.as_deref() != Some(b));
                let healthy = inspect
                    .state
                    .and_then(|s| s.health)
                    .and_then(|h| h.status)
                    .is_some_and(|s| s == bollard::models::HealthStatusEnum::HEALTHY);
                if new && healthy {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("`{name}` was not healthy in a new container within {STEP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// stackctl's no-op `up` of a service with a 10 000-file build context.
fn large_context(bench: &mut Bench, samples: &mut Samples) -> Result<()> {
    let id = std::process::id();
    let stage = format!("ctx{id}");
    let dir = bench.scratch.join("benchctx");
    let context = dir.join("app");
    for d in 0..CONTEXT_FILES / 100 {
        let sub = context.join(format!("src/d{d:03}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..100 {
            std::fs::write(sub.join(format!("f{f:03}.txt")), format!("{d} {f}\n"))?;
        }
    }
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY src /src\nCMD [\"sleep\", \"86400\"]\n"),
    )?;
    std::fs::create_dir_all(dir.join("stacks"))?;
    let (key, value) = bench
        .image_label
        .split_once('=')
        .unwrap_or((&bench.image_label, ""));
    std::fs::write(
        dir.join(format!("stacks/{stage}.yml")),
        format!(
            "services:\n  app:\n    build: {{ context: ./app, labels: {{ \"{key}\": \"{value}\" }} }}\n    image: benchctx{id}/app:dev\n    init: true\n"
        ),
    )?;
    // `monitor`: with the context monitor (the default outside CI), or walking the context.
    let cmd = |monitor: bool| {
        let mut cmd = Command::new(&bench.options.stackctl);
        cmd.arg("-C")
            .arg(&dir)
            .args(["-e", &stage, "up"])
            .env("NO_COLOR", "1")
            .env(
                "STACKCTL_CONTEXT_MONITOR",
                if monitor { "on" } else { "off" },
            )
            .env_remove("STACKCTL_ENV");
        cmd
    };
    eprintln!("no-op up with a {CONTEXT_FILES}-file build context (context monitor, then walked)");
    // The cold `up` builds; the first no-ops fill the digest cache and start the monitor.
    for monitor in [false, true, true] {
        tool_run(bench, Tool::Stackctl, &mut cmd(monitor), None, STEP_TIMEOUT)?;
    }
    for run in 0..bench.options.runs * NOOP_REPEATS * 2 {
        let monitor = run % 2 == 0;
        let out = tool_run(bench, Tool::Stackctl, &mut cmd(monitor), None, STEP_TIMEOUT)?;
        if let Some(out) = &out {
            if !out.stderr.contains("nothing to do") && !out.stderr.contains("unchanged") {
                bail!("the no-op `up` did something:\n{}", out.describe());
            }
        }
        let step = if monitor {
            Step::NoopUpLargeContext
        } else {
            Step::NoopUpLargeContextWalked
        };
        samples.add(Tool::Stackctl, step, out.map(|o| o.elapsed));
    }
    // The monitor ends with its context.
    std::fs::remove_dir_all(&context)?;
    Ok(())
}

/// The two rows of the results table.
pub fn rows(samples: &Samples, out: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    let secs = |tool, step| samples.median(tool, step).map(|d| d.as_secs_f64());
    let cell = |tool, step| match samples.median(tool, step) {
        Some(d) => super::fmt_duration(d),
        None => "—".to_string(),
    };
    let (s, c) = (
        secs(Tool::Stackctl, Step::EditLoop),
        secs(Tool::Compose, Step::EditLoop),
    );
    writeln!(
        out,
        "| edit one line of the api → healthy again (stackctl `up` / `up -d --build` + health poll) | {} | {} | — | {} | — | ≤ 0.8 × compose | {} |",
        cell(Tool::Stackctl, Step::EditLoop),
        cell(Tool::Compose, Step::EditLoop),
        super::ratio(s, c),
        super::verdict(s.zip(c).map(|(s, c)| s <= 0.8 * c)),
    )?;
    let n = secs(Tool::Stackctl, Step::NoopUpLargeContext);
    writeln!(
        out,
        "| no-op `up` with a {CONTEXT_FILES}-file build context | {} | — | — | — | — | ≤ 25 ms | {} |",
        cell(Tool::Stackctl, Step::NoopUpLargeContext),
        super::verdict(n.map(|n| n <= 0.025)),
    )?;
    writeln!(
        out,
        "| the same, walking the context (`STACKCTL_CONTEXT_MONITOR=off`, as where `CI` is set) | {} | — | — | — | — | — | — |",
        cell(Tool::Stackctl, Step::NoopUpLargeContextWalked),
    )
}

/// The label filters of the objects this phase creates, for the bench's cleanup.
pub fn owned(id: u32) -> Vec<(Tool, Vec<String>)> {
    vec![
        (
            Tool::Stackctl,
            vec![
                "io.stackctl.project=editloop".to_string(),
                format!("io.stackctl.stage=edit{id}"),
            ],
        ),
        (
            Tool::Compose,
            vec![format!("com.docker.compose.project=stackctleditloop{id}")],
        ),
        (
            Tool::Stackctl,
            vec![
                "io.stackctl.project=benchctx".to_string(),
                format!("io.stackctl.stage=ctx{id}"),
            ],
        ),
    ]
}
