//! The ssh phase: the benchmark stack on an engine reached only over ssh, stackctl against
//! `DOCKER_HOST=ssh://… docker-compose`. The engine is the one the remote-engine tests use
//! (tests/support/lab.rs and lab.sh, shared as they are): a `dockerd` in a network namespace
//! of its own with an `sshd` beside it, started here and torn down when the harness exits
//! (also on failure and Ctrl-C). lab.rs loads the busybox fixture onto it (`docker save |
//! docker load`), the only image of the stack, so both tools start the same image and
//! nothing is pulled.
//!
//! Both tools get the address the same way, `DOCKER_HOST=ssh://root@ADDRESS`, and the lab's
//! key: stackctl through `STACKCTL_SSH_CONFIG` (the lab's ssh config), docker-compose through
//! a `HOME` of its own whose `.ssh/config` names the key (its ssh library reads
//! `~/.ssh/config` and `~/.ssh/known_hosts`). Compose runs with `COMPOSE_PARAMIKO_SSH=1`:
//! one ssh connection per command, a `docker system dial-stdio` session per HTTP connection.
//! (Its default, the `ssh` program, logs in again for every HTTP connection and was slower
//! still.)
//!
//! Per run, each tool in turn (rotating): cold `up`, three no-op `up`s, `down`, each
//! checked on the lab engine, then `purge` / `down -v` (not timed). The sshd's log is
//! counted around every command: each must have logged in exactly once.

#[path = "../../tests/support/lab.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{tool_run, Bench, Samples, State, Step, Tool, NOOP_REPEATS, STACK, STEP_TIMEOUT};

/// What the phase needs besides the bench: each tool's command and the lab engine.
struct Setup {
    url: String,
    socket: String,
    ssh_config: PathBuf,
    sshd_log: PathBuf,
    stage: String,
    compose_project: String,
    compose_home: PathBuf,
    /// ssh logins per command, per tool (from the sshd's log).
    logins: Vec<(Tool, usize)>,
}

/// The label filters of one tool's objects on the lab engine.
fn filters(bench: &Bench, setup: &Setup, tool: Tool) -> Vec<String> {
    match tool {
        Tool::Stackctl => vec![
            format!(
                "io.stackctl.project={}",
                bench
                    .stackctl_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            format!("io.stackctl.stage={}", setup.stage),
        ],
        _ => vec![format!(
            "com.docker.compose.project={}",
            setup.compose_project
        )],
    }
}

fn stackctl(bench: &Bench, setup: &Setup) -> Command {
    let mut cmd = Command::new(&bench.options.stackctl);
    cmd.arg("-C")
        .arg(&bench.stackctl_dir)
        .arg("-e")
        .arg(&setup.stage)
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", &setup.url)
        .env("STACKCTL_SSH_CONFIG", &setup.ssh_config)
        .env_remove("STACKCTL_ENV")
        .env_remove("DOCKER_CONTEXT");
    cmd
}

fn compose(bench: &Bench, setup: &Setup) -> Command {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-p")
        .arg(&setup.compose_project)
        .arg("-f")
        .arg(&bench.compose_file)
        .arg("--no-ansi")
        .env("DOCKER_HOST", &setup.url)
        .env("COMPOSE_PARAMIKO_SSH", "1")
        .env("HOME", &setup.compose_home)
        .env_remove("DOCKER_CONTEXT");
    cmd
}

/// Logins the lab's sshd has accepted so far.
fn logins(setup: &Setup) -> Result<usize> {
    let log = std::fs::read_to_string(&setup.sshd_log)
        .with_context(|| format!("read {}", setup.sshd_log.display()))?;
    Ok(log
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count())
}

/// Run one tool command against the lab engine; its time, and the logins it made.
fn run(bench: &Bench, setup: &mut Setup, tool: Tool, args: &[&str]) -> Result<Option<Duration>> {
    let mut cmd = match tool {
        Tool::Stackctl => stackctl(bench, setup),
        _ => compose(bench, setup),
    };
    cmd.args(args);
    let before = logins(setup)?;
    let out = tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?;
    // sshd writes its log line before the session starts; the command has ended since.
    let made = logins(setup)? - before;
    setup.logins.push((tool, made));
    if tool == Tool::Stackctl && made != 1 {
        bail!("stackctl {args:?} over ssh logged in {made} times, not once");
    }
    Ok(out.map(|o| o.elapsed))
}

fn expect(bench: &Bench, setup: &Setup, tool: Tool, state: State) -> Result<()> {
    let docker =
        bollard::Docker::connect_with_host(&setup.socket).context("connect to the lab engine")?;
    let filters = filters(bench, setup, tool);
    let counts = bench
        .runtime
        .block_on(super::count_objects_on(&docker, &filters))?;
    super::check_state(tool, state, &counts, bench.floor.container_count())
}

/// A `HOME` for docker-compose's ssh library: `.ssh/config` naming the lab's key, and the
/// lab's known hosts.
fn compose_home(scratch: &Path, lab: &lab::Lab) -> Result<PathBuf> {
    let home = scratch.join("compose-ssh-home");
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh)?;
    std::fs::write(
        ssh.join("config"),
        format!(
            "Host {}\n  IdentityFile {}\n",
            lab.address,
            lab.dir.join("id_ed25519").display()
        ),
    )?;
    let known = lab.dir.join("known_hosts");
    if known.exists() {
        std::fs::copy(&known, ssh.join("known_hosts"))?;
    }
    Ok(home)
}

pub fn phase(bench: &mut Bench, samples: &mut Samples) -> Result<()> {
    eprintln!("ssh phase: starting the lab engine");
    let lab = lab::lab();
    let id = std::process::id();
    let stage = format!("ssh{id}");
    std::fs::write(
        bench
            .stackctl_dir
            .join("stacks")
            .join(format!("{stage}.yml")),
        STACK,
    )?;
    let mut setup = Setup {
        url: lab.url.clone(),
        socket: lab.socket.clone(),
        ssh_config: lab.ssh_config.clone(),
        sshd_log: lab.dir.join("sshd.log"),
        stage,
        compose_project: format!("stackctlbenchssh{id}"),
        compose_home: compose_home(&bench.scratch, lab)?,
        logins: Vec::new(),
    };
    let tools = [Tool::Stackctl, Tool::Compose];
    for run_index in 0..bench.options.ssh_runs {
        eprintln!("run {}/{} (ssh)", run_index + 1, bench.options.ssh_runs);
        for k in 0..tools.len() {
            let tool = tools[(run_index + k) % tools.len()];
            let (up, down, purge): (&[&str], &[&str], &[&str]) = match tool {
                Tool::Stackctl => (&["up"], &["down"], &["purge", "--yes"]),
                _ => (&["up", "-d"], &["down"], &["down", "-v"]),
            };
            expect(bench, &setup, tool, State::Gone)?;
            let cold = run(bench, &mut setup, tool, up)?;
            samples.add(tool, Step::SshColdUp, cold);
            expect(bench, &setup, tool, State::Up)?;
            for _ in 0..NOOP_REPEATS {
                let noop = run(bench, &mut setup, tool, up)?;
                samples.add(tool, Step::SshNoopUp, noop);
            }
            expect(bench, &setup, tool, State::Up)?;
            let down_time = run(bench, &mut setup, tool, down)?;
            samples.add(tool, Step::SshDown, down_time);
            expect(bench, &setup, tool, State::Down)?;
            run(bench, &mut setup, tool, purge)?;
            expect(bench, &setup, tool, State::Gone)?;
        }
    }
    for tool in tools {
        let made: Vec<usize> = setup
            .logins
            .iter()
            .filter(|(t, _)| *t == tool)
            .map(|(_, n)| *n)
            .collect();
        samples.ssh_logins.insert(
            tool,
            (
                made.iter().copied().min().unwrap_or(0),
                made.iter().copied().max().unwrap_or(0),
            ),
        );
    }
    Ok(())
}

/// The phase's rows of the results table.
pub fn rows(samples: &Samples, out: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    let secs = |tool, step| samples.median(tool, step).map(|d| d.as_secs_f64());
    let cell = |tool, step| match samples.median(tool, step) {
        Some(d) => super::fmt_duration(d),
        None => "—".to_string(),
    };
    for (step, label) in [
        (
            Step::SshColdUp,
            "cold `up` over ssh (until running/healthy)",
        ),
        (Step::SshNoopUp, "no-op `up` over ssh"),
        (Step::SshDown, "`down` over ssh"),
    ] {
        let (s, c) = (secs(Tool::Stackctl, step), secs(Tool::Compose, step));
        writeln!(
            out,
            "| {label} | {} | {} | — | {} | — | ≤ 0.8 × compose | {} |",
            cell(Tool::Stackctl, step),
            cell(Tool::Compose, step),
            super::ratio(s, c),
            super::verdict(s.zip(c).map(|(s, c)| s <= 0.8 * c)),
        )?;
    }
    let logins = |tool| match samples.ssh_logins.get(&tool) {
        Some((low, high)) if low == high => low.to_string(),
        Some((low, high)) => format!("{low}–{high}"),
        None => "—".to_string(),
    };
    writeln!(
        out,
        "| ssh logins per command (the sshd's log) | {} | {} | — | — | — | 1 | {} |",
        logins(Tool::Stackctl),
        logins(Tool::Compose),
        super::verdict(
            samples
                .ssh_logins
                .get(&Tool::Stackctl)
                .map(|&(low, high)| low == 1 && high == 1)
        ),
    )
}
