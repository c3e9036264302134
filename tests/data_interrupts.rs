//! Interrupt-safety of `stackctl data`, proved the way `up`'s is: SIGINT, SIGTERM and
//! SIGKILL sent to `data save`, `data load`, `data load --force` and `data copy` at every
//! phase line each prints (read from its stderr as it comes, never after a sleep). After
//! each, the stage serves again (after the next `up` for SIGKILL), its data is all old or
//! all new, and no staged copy, helper container or partial archive is left (after the
//! next command for SIGKILL).
//!
//! One project, four pairs of stages, one per command, run side by side; the data is two
//! marker files (one in the volume, one in the data container), so each run takes about
//! as long as the command itself.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{busybox_image, docker, docker_ok, TestStack};

fn stack_yaml() -> String {
    let image = busybox_image();
    format!(
        r#"
services:
  app:
    image: {image}
    init: true
    command: [sleep, "3600"]
    volumes: ["vol:/vol"]
    volumes_from: [store]
    stop_grace_period: 1s
    healthcheck: {{ test: [CMD, "true"], interval: 100ms, retries: 100 }}
volumes:
  vol: {{}}
data_containers:
  store:
    image: {image}
    volumes: [/store]
"#
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Signal {
    Int,
    Term,
    Kill,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// One command under test: the stage it changes (and, for copy, the one it reads).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Save,
    Load,
    LoadForce,
    Copy,
}

struct Stages<'a> {
    t: &'a TestStack,
    /// The stage the command changes (save: the one it reads).
    target: String,
    /// A copy's source.
    source: String,
    archive: std::path::PathBuf,
    family: Family,
}

fn app(t: &TestStack, stage: &str) -> String {
    format!("{stage}-{}--app", t.project)
}

fn state(t: &TestStack, stage: &str) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Health.Status}}",
        &app(t, stage),
    ])
    .trim()
    .to_string()
}

/// Write `value` into both marker files (`None`: remove them, emptying the volume and the
/// data container, which hold nothing else).
fn set_markers(t: &TestStack, stage: &str, value: Option<&str>) {
    let script = match value {
        Some(v) => format!("echo {v} > /vol/m && echo {v} > /store/m && sync"),
        None => "rm -f /vol/m /store/m && sync".to_string(),
    };
    docker_ok(&["exec", &app(t, stage), "sh", "-c", &script]);
}

/// The two markers, `-` for a missing one.
fn markers(t: &TestStack, stage: &str) -> (String, String) {
    let out = docker_ok(&[
        "exec",
        &app(t, stage),
        "sh",
        "-c",
        "cat /vol/m 2>/dev/null || echo -; cat /store/m 2>/dev/null || echo -",
    ]);
    let lines = support::lines(&out);
    (lines[0].clone(), lines[1].clone())
}

/// Staged copies, helper containers of this stage.
fn leftovers(t: &TestStack, stage: &str) -> Vec<String> {
    let filter = [
        "--filter".to_string(),
        format!("label=io.stackctl.project={}", t.project),
        "--filter".to_string(),
        format!("label=io.stackctl.stage={stage}"),
    ];
    let mut containers = vec![
        "ps".to_string(),
        "-a".into(),
        "--format".into(),
        "{{.Names}}".into(),
    ];
    containers.extend(filter.clone());
    let mut volumes = vec![
        "volume".to_string(),
        "ls".into(),
        "--format".into(),
        "{{.Name}}".into(),
    ];
    volumes.extend(filter);
    support::lines(&docker(&containers))
        .into_iter()
        .chain(support::lines(&docker(&volumes)))
        .filter(|o| {
            o.contains("-load-") || o.contains("--task-data") || o.contains("--data-commit")
        })
        .collect()
}

/// The temporary files of saves to `archive`.
fn partial_files(archive: &std::path::Path) -> Vec<String> {
    let name = archive.file_name().expect("file name").to_string_lossy();
    let prefix = format!(".{name}.partial-");
    std::fs::read_dir(archive.parent().expect("parent"))
        .expect("read project dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

impl Stages<'_> {
    fn command(&self) -> std::process::Command {
        let mut cmd = self.t.std_cmd();
        cmd.env("STACKCTL_ENV", &self.target);
        match self.family {
            Family::Save => cmd.args(["data", "save", "-o"]).arg(&self.archive),
            Family::Load => cmd.args(["data", "load", "-i"]).arg(&self.archive),
            Family::LoadForce => cmd
                .args(["data", "load", "--force", "-i"])
                .arg(&self.archive),
            Family::Copy => cmd.args(["data", "copy", "--force", "--from", &self.source]),
        };
        cmd
    }

    /// The data the target holds before the command.
    fn old(&self) -> Option<&'static str> {
        match self.family {
            Family::Save => Some("new"),
            Family::Load => None,
            Family::LoadForce | Family::Copy => Some("old"),
        }
    }

    fn prepare(&self) {
        if self.family == Family::Save {
            let _ = std::fs::remove_file(&self.archive);
        }
        set_markers(self.t, &self.target, self.old());
    }

    fn up(&self, stage: &str) {
        let run = || {
            self.t
                .std_cmd()
                .env("STACKCTL_ENV", stage)
                .arg("up")
                .output()
                .expect("run up")
        };
        // RELIABILITY 1: a removal the killed command started is finished by the engine
        // after it died; the next `up` waits it out instead of failing on the name.
        let out = run();
        assert!(
            out.status.success(),
            "{:?}: `up` of {stage} after SIGKILL failed: {}",
            self.family,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A line with the lane's stage names taken out, the same in every lane.
    fn normalize(&self, line: &str) -> String {
        line.replace(&self.source, "{source}")
            .replace(&self.target, "{target}")
    }

    /// The stage serves, its data is all old or all new, nothing is left over.
    fn check(&self, what: &str, code: Option<i32>, err: &str) {
        let stages: Vec<&String> = if self.family == Family::Copy {
            vec![&self.target, &self.source]
        } else {
            vec![&self.target]
        };
        for stage in &stages {
            assert_eq!(
                state(self.t, stage),
                "running healthy",
                "{what}: stage {stage} does not serve\n{err}"
            );
            assert_eq!(
                leftovers(self.t, stage),
                Vec::<String>::new(),
                "{what}: leftovers on {stage}\n{err}"
            );
        }
        assert_eq!(
            partial_files(&self.archive),
            Vec::<String>::new(),
            "{what}: partial files\n{err}"
        );
        let (vol, store) = markers(self.t, &self.target);
        let old = self.old().unwrap_or("-");
        let all_old = vol == old && store == old;
        let all_new = vol == "new" && store == "new";
        assert!(
            all_old || all_new,
            "{what}: the data is mixed (volume {vol}, data container {store})\n{err}"
        );
        if code == Some(0) && self.family != Family::Save {
            assert!(all_new, "{what}: exit 0 but the data is old\n{err}");
        }
        if self.family == Family::Copy {
            assert_eq!(
                markers(self.t, &self.source),
                ("new".to_string(), "new".to_string()),
                "{what}: the copy's source changed\n{err}"
            );
        }
        if self.family == Family::Save && code == Some(0) {
            assert!(self.archive.exists(), "{what}: exit 0 and no archive");
        }
    }

    /// The phase lines of one whole run: the lines that start a step (those that end one
    /// carry its time, `(0.1s)`, and are followed at once by the next step's), and the
    /// checksum line of a load.
    fn phases(&self) -> Vec<String> {
        self.prepare();
        let out = self.command().output().expect("run stackctl");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{:?}: {err}", self.family);
        self.check(&format!("{:?} uninterrupted", self.family), Some(0), &err);
        let mut phases: Vec<String> = Vec::new();
        for line in err.lines() {
            let timed = line.ends_with("s)");
            let summary = line.starts_with("data ") && line.contains("`: ");
            let line = self.normalize(line);
            if !timed && !summary && !phases.contains(&line) {
                phases.push(line);
            }
        }
        assert!(
            phases.len() >= 3,
            "{:?}: too few phase lines: {err}",
            self.family
        );
        phases
    }

    /// Run the command, send `signal` when `phase` is printed, and check what is left.
    fn interrupt_at(&self, phase: &str, signal: Signal) {
        let what = format!("{:?} {signal:?} at `{phase}`", self.family);
        self.prepare();
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run stackctl");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = stderr.read_line(&mut line).expect("read stderr");
            assert!(n > 0, "{what}: the phase never came\n{seen}");
            seen.push_str(&line);
            if self.normalize(line.trim_end()) == phase {
                break;
            }
        }
        unsafe {
            libc::kill(child.id() as i32, signal.number());
        }
        // The rest of stderr: it ends when stackctl does.
        stderr.read_to_string(&mut seen).expect("read stderr");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "{what}: stackctl did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        let code = status.code();
        match signal {
            Signal::Kill => {
                assert_eq!(code, None, "{what}: {seen}");
                if self.family == Family::Copy {
                    self.up(&self.source);
                }
                self.up(&self.target);
                if self.family == Family::Save {
                    // The next save removes what the killed one left.
                    let out = self.command().output().expect("run save");
                    assert!(
                        out.status.success(),
                        "{what}: the next save failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            Signal::Int | Signal::Term => {
                assert!(
                    code == Some(130) || code == Some(0),
                    "{what}: exit {code:?}\n{seen}"
                );
            }
        }
        self.check(&what, code, &seen);
    }
}

impl Family {
    fn suffix(self) -> &'static str {
        match self {
            Family::Save => "s",
            Family::Load => "l",
            Family::LoadForce => "f",
            Family::Copy => "c",
        }
    }

    /// How many stage pairs share its runs: the long commands get more.
    fn lanes(self) -> usize {
        match self {
            Family::Save => 1,
            Family::Load | Family::LoadForce => 2,
            Family::Copy => 3,
        }
    }
}

fn lane<'a>(
    t: &'a TestStack,
    family: Family,
    lane: usize,
    archive: &std::path::Path,
) -> Stages<'a> {
    let target = format!("{}{}{lane}", t.stage, family.suffix());
    Stages {
        t,
        source: format!("{target}src"),
        archive: match family {
            Family::Save => t.path(&format!("saved-{target}.tar.zst")),
            _ => archive.to_path_buf(),
        },
        target,
        family,
    }
}

const FAMILIES: [Family; 4] = [Family::Save, Family::Load, Family::LoadForce, Family::Copy];

#[test]
fn data_commands_interrupted_or_killed_at_every_phase_leave_the_stage_serving_and_whole() {
    let t = TestStack::new("datakill");
    let yaml = stack_yaml();
    let archive = t.path("new.tar.zst");
    let mut stages = Vec::new();
    for family in FAMILIES {
        for n in 0..family.lanes() {
            let lane = lane(&t, family, n, &archive);
            stages.push(lane.target.clone());
            if family == Family::Copy {
                stages.push(lane.source.clone());
            }
        }
    }
    for stage in &stages {
        t.write(&format!("stacks/{stage}.yml"), &yaml);
    }
    std::thread::scope(|scope| {
        for stage in &stages {
            let t = &t;
            scope.spawn(move || {
                let out = t
                    .std_cmd()
                    .env("STACKCTL_ENV", stage)
                    .arg("up")
                    .output()
                    .expect("up");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if stage.ends_with("src") {
                    set_markers(t, stage, Some("new"));
                }
            });
        }
    });
    // The new data: the archive, and what the save's stages hold.
    let save = lane(&t, Family::Save, 0, &archive);
    set_markers(&t, &save.target, Some("new"));
    let out = t
        .std_cmd()
        .env("STACKCTL_ENV", &save.target)
        .args(["data", "save", "-o"])
        .arg(&archive)
        .output()
        .expect("save");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let phases: Vec<Vec<String>> = std::thread::scope(|scope| {
        let running: Vec<_> = FAMILIES
            .map(|family| {
                let (t, archive) = (&t, &archive);
                scope.spawn(move || lane(t, family, 0, archive).phases())
            })
            .into_iter()
            .collect();
        running
            .into_iter()
            .map(|handle| handle.join().expect("phases"))
            .collect()
    });
    std::thread::scope(|scope| {
        for (family, phases) in FAMILIES.into_iter().zip(phases) {
            let jobs: Vec<(String, Signal)> = phases
                .iter()
                .flat_map(|p| [Signal::Int, Signal::Term, Signal::Kill].map(|s| (p.clone(), s)))
                .collect();
            eprintln!("{family:?}: {} phases, {} runs", phases.len(), jobs.len());
            for n in 0..family.lanes() {
                let (t, archive) = (&t, &archive);
                let mine: Vec<(String, Signal)> = jobs
                    .iter()
                    .skip(n)
                    .step_by(family.lanes())
                    .cloned()
                    .collect();
                scope.spawn(move || {
                    let stages = lane(t, family, n, archive);
                    if family == Family::Save && n > 0 {
                        set_markers(t, &stages.target, Some("new"));
                    }
                    for (phase, signal) in mine {
                        stages.interrupt_at(&phase, signal);
                    }
                });
            }
        }
    });
    eprintln!("interrupted every phase in {:.1?}", started.elapsed());
}
