//! Side-by-side benchmark of stackctl, docker-compose v1 and the floor (the fewest Engine API
//! calls that do the same work, made directly with ideal parallelism) on one stack file.
//!
//! ```text
//! cargo bench --bench compare                      # 7 runs; stdin and data: 5 runs of 1 GiB
//! cargo bench --bench compare -- --quick           # 1 run, 32 MiB, 2 MiB layers: checks the harness works
//! cargo bench --bench compare -- --update BENCHMARKS.md   # also rewrite the results there
//! cargo bench --bench compare -- --only config,editloop    # only these phases (not with --update)
//! cargo bench --bench compare -- --swarm --runs 3  # only the Swarm phase (swarm.rs)
//! ```
//!
//! Cargo builds the `stackctl` binary with the release settings for a bench, and the harness
//! runs that binary (`CARGO_BIN_EXE_stackctl`), never a debug build. Each tool gets its own
//! project name so they never touch each other's objects; everything is removed by label at
//! the end, on failure and on Ctrl-C. Times are never asserted: the harness fails only when a
//! tool or the harness itself does not do the work (a service not running after `up`, a
//! container left after `down`, a wrong byte count, an image missing after `pull` or from
//! the registry after `push`, a registry request made by a no-op `up`).
//!
//! The registry phase runs a local `docker-registry` (registry.rs) and the images it pulls
//! and pushes are built here, labelled with the run's id, and removed by that label at the
//! end (on failure and on Ctrl-C too), as the registry and its storage are.

mod editloop;
mod floor;
mod process;
mod registry;
mod remote;
mod swarm;

/// What the labs of the tests (tests/support/lab.rs for the ssh phase, tests/support/swarm.rs
/// for the Swarm phase) need of the tests' support module: the busybox fixture, which
/// `prepare` builds when it is missing.
mod support {
    pub fn machine_ready() {}

    pub fn busybox_image() -> &'static str {
        super::IMAGE
    }
}

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions,
};

use floor::Floor;
use process::{Outcome, Runner};
use registry::Registry;

/// The benchmark stack, read by all three.
const STACK: &str = include_str!("stack.yml");
/// stackctl's tasks for the one-off steps (Compose has no `tasks:`; it runs the same service
/// with `run --rm`).
const TASKS: &str = "
tasks:
  noop: { service: worker1, command: [\"true\"] }
  count: { service: worker1, command: [wc, -c] }
";
const IMAGE: &str = "stackctl-fixture/busybox:latest";
const TASK_SERVICE: &str = "worker1";
const STEP_TIMEOUT: Duration = Duration::from_secs(180);
const STDIN_TIMEOUT: Duration = Duration::from_secs(900);
/// The volume of the benchmark stack that the data phase fills, saves and loads.
const DATA_VOLUME: &str = "data";
const NOOP_REPEATS: usize = 3;
/// Images of the registry phase, per direction (pull, push): each `FROM` the busybox fixture
/// plus one layer of random bytes of its own.
const REGISTRY_IMAGES: usize = 3;
const RESULTS_START: &str = "<!-- bench:results:start -->";
const RESULTS_END: &str = "<!-- bench:results:end -->";

struct Options {
    runs: usize,
    /// Runs of the stdin step (each streams the whole file through every tool).
    stdin_runs: usize,
    stdin_mib: u64,
    /// Content of the data phase's volume (half random, half text).
    data_mib: u64,
    /// Size of each registry image's own layer.
    layer_mib: u64,
    /// Runs of the ssh phase (each tool: cold up, 3 no-op ups, down, purge).
    ssh_runs: usize,
    quick: bool,
    /// Run only the Swarm phase (swarm.rs).
    swarm: bool,
    update: Option<PathBuf>,
    verbose: bool,
    stackctl: PathBuf,
    /// The phases to run (`--only`); all of them by default.
    phases: Vec<Phase>,
}

/// A part of the benchmark that `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// cold up, no-op up, task, down, purge.
    Lifecycle,
    Config,
    Stdin,
    Data,
    Registry,
    /// The edit loop and the no-op `up` with a 10 000-file context.
    EditLoop,
    /// cold up, no-op up and down on an engine reached over ssh (remote.rs).
    Ssh,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Lifecycle,
        Phase::Config,
        Phase::Stdin,
        Phase::Data,
        Phase::Registry,
        Phase::EditLoop,
        Phase::Ssh,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Lifecycle => "lifecycle",
            Phase::Config => "config",
            Phase::Stdin => "stdin",
            Phase::Data => "data",
            Phase::Registry => "registry",
            Phase::EditLoop => "editloop",
            Phase::Ssh => "ssh",
        }
    }

    fn parse_list(text: &str) -> Result<Vec<Phase>> {
        text.split(',')
            .filter(|name| !name.trim().is_empty())
            .map(|name| {
                Phase::ALL
                    .into_iter()
                    .find(|p| p.name() == name.trim())
                    .with_context(|| {
                        let names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
                        format!(
                            "--only: unknown phase `{name}` (one of {})",
                            names.join(", ")
                        )
                    })
            })
            .collect()
    }
}

impl Options {
    /// Whether `phase` is one of the phases to run.
    fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    fn parse() -> Result<Options> {
        let quick_env =
            std::env::var("STACKCTL_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut options = Options {
            runs: 7,
            stdin_runs: 5,
            stdin_mib: 1024,
            data_mib: 1024,
            layer_mib: 24,
            ssh_runs: 3,
            quick: false,
            swarm: false,
            update: None,
            verbose: false,
            stackctl: PathBuf::from(env!("CARGO_BIN_EXE_stackctl")),
            phases: Phase::ALL.to_vec(),
        };
        let mut explicit_runs = None;
        let mut explicit_mib = None;
        let mut explicit_stdin_runs = None;
        let mut explicit_layer = None;
        let mut explicit_data = None;
        let mut explicit_ssh_runs = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                // Cargo passes `--bench` to every bench binary.
                "--bench" => {}
                "--quick" => options.quick = true,
                "--swarm" => options.swarm = true,
                "--verbose" | "-v" => options.verbose = true,
                "--runs" => explicit_runs = Some(value("--runs")?.parse().context("--runs")?),
                "--stdin-runs" => {
                    explicit_stdin_runs =
                        Some(value("--stdin-runs")?.parse().context("--stdin-runs")?)
                }
                "--stdin-mib" => {
                    explicit_mib = Some(value("--stdin-mib")?.parse().context("--stdin-mib")?)
                }
                "--data-mib" => {
                    explicit_data = Some(value("--data-mib")?.parse().context("--data-mib")?)
                }
                "--layer-mib" => {
                    explicit_layer = Some(value("--layer-mib")?.parse().context("--layer-mib")?)
                }
                "--ssh-runs" => {
                    explicit_ssh_runs = Some(value("--ssh-runs")?.parse().context("--ssh-runs")?)
                }
                "--update" => options.update = Some(PathBuf::from(value("--update")?)),
                "--stackctl" => options.stackctl = PathBuf::from(value("--stackctl")?),
                "--only" => options.phases = Phase::parse_list(&value("--only")?)?,
                "--help" | "-h" => {
                    println!(
                        "usage: cargo bench --bench compare -- [--quick] [--swarm] [--runs N] [--stdin-runs N] [--stdin-mib N] [--data-mib N] [--layer-mib N] [--ssh-runs N] [--update BENCHMARKS.md] [--stackctl PATH] [--only PHASE,…] [--verbose]\n  phases: lifecycle, config, stdin, data, registry, editloop, ssh (default: all)"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument `{other}` (try --help)"),
            }
        }
        if options.update.is_some() && options.phases.len() < Phase::ALL.len() {
            bail!("--update rewrites every result: it runs every phase (leave out --only)");
        }
        if options.quick || quick_env {
            options.quick = true;
            options.runs = 1;
            options.stdin_runs = 1;
            options.stdin_mib = 32;
            options.data_mib = 32;
            options.layer_mib = 2;
            options.ssh_runs = 1;
        }
        options.ssh_runs = explicit_ssh_runs.unwrap_or(options.ssh_runs).max(1);
        options.layer_mib = explicit_layer.unwrap_or(options.layer_mib).max(1);
        options.runs = explicit_runs.unwrap_or(options.runs).max(1);
        options.stdin_runs = explicit_stdin_runs
            .unwrap_or(options.stdin_runs.min(options.runs))
            .max(1);
        options.stdin_mib = explicit_mib.unwrap_or(options.stdin_mib).max(1);
        options.data_mib = explicit_data.unwrap_or(options.data_mib).max(2);
        Ok(options)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tool {
    Stackctl,
    Compose,
    Floor,
    /// `docker run -i --rm`, the reference for stdin throughput (and `docker run … tar` for
    /// a volume's data).
    DockerRun,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Stackctl => "stackctl",
            Tool::Compose => "docker-compose",
            Tool::Floor => "floor",
            Tool::DockerRun => "docker run -i",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    ColdUp,
    NoopUp,
    Down,
    Purge,
    Task,
    Stdin,
    Pull,
    Push,
    /// No-op `up` of the registry stack right after its images were pulled.
    RegistryNoopUp,
    /// `config` of a generated 100-service file.
    Config,
    /// A volume into a file, uncompressed (`data save --no-compress` / `tar c`).
    DataSave,
    /// A file into an empty volume (`data load` / `tar x`).
    DataLoad,
    /// `data save` with zstd (default level).
    DataSaveZstd,
    /// `data load` of the zstd archive.
    DataLoadZstd,
    /// Edit one line of a built service, then until it is healthy again (editloop.rs).
    EditLoop,
    /// No-op `up` with a 10 000-file build context (editloop.rs).
    NoopUpLargeContext,
    NoopUpLargeContextWalked,
    /// The lifecycle steps on the lab engine over ssh (remote.rs).
    SshColdUp,
    SshNoopUp,
    SshDown,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::ColdUp => "cold up",
            Step::NoopUp => "no-op up",
            Step::Down => "down",
            Step::Purge => "purge / down -v",
            Step::Task => "task round trip",
            Step::Stdin => "stdin",
            Step::Pull => "pull",
            Step::Push => "push",
            Step::RegistryNoopUp => "no-op up (pulled)",
            Step::Config => "config (100 svc)",
            Step::DataSave => "data save",
            Step::DataLoad => "data load",
            Step::DataSaveZstd => "data save zstd",
            Step::DataLoadZstd => "data load zstd",
            Step::EditLoop => "edit loop",
            Step::NoopUpLargeContext => "no-op up (10k ctx)",
            Step::NoopUpLargeContextWalked => "no-op up (10k ctx, walked)",
            Step::SshColdUp => "ssh cold up",
            Step::SshNoopUp => "ssh no-op up",
            Step::SshDown => "ssh down",
        }
    }
}

/// Every measurement of one run of the harness.
#[derive(Default)]
struct Samples {
    times: HashMap<(Tool, Step), Vec<Duration>>,
    /// Steps a tool does not support yet (stackctl while it is being built).
    missing: Vec<(Tool, Step)>,
    /// Peak RSS (KiB) of each stdin run, per tool that is a process.
    rss: HashMap<Tool, Vec<i64>>,
    /// Peak RSS (KiB) of each data save and load, per tool.
    data_rss: HashMap<Tool, Vec<i64>>,
    /// Bytes of the uncompressed and the zstd archive of the data phase (stackctl's).
    data_archive: Option<(u64, u64)>,
    /// ssh logins per command of the ssh phase (fewest, most), per tool.
    ssh_logins: HashMap<Tool, (usize, usize)>,
}

impl Samples {
    fn add(&mut self, tool: Tool, step: Step, elapsed: Option<Duration>) {
        match elapsed {
            Some(elapsed) => {
                eprintln!(
                    "  {:<15} {:<16} {}",
                    tool.name(),
                    step.name(),
                    fmt_duration(elapsed)
                );
                self.times.entry((tool, step)).or_default().push(elapsed);
            }
            None => {
                if !self.missing.contains(&(tool, step)) {
                    eprintln!(
                        "  {:<15} {:<16} not supported yet",
                        tool.name(),
                        step.name()
                    );
                    self.missing.push((tool, step));
                }
            }
        }
    }

    fn median(&self, tool: Tool, step: Step) -> Option<Duration> {
        let mut times = self.times.get(&(tool, step))?.clone();
        if times.is_empty() {
            return None;
        }
        times.sort();
        let n = times.len();
        Some(if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2
        })
    }

    fn count(&self, tool: Tool, step: Step) -> usize {
        self.times.get(&(tool, step)).map_or(0, Vec::len)
    }
}

/// The engine objects of one tool, by label filter.
struct Owned {
    tool: Tool,
    filters: Vec<String>,
}

/// Everything a run needs.
struct Bench {
    options: Options,
    runtime: tokio::runtime::Runtime,
    runner: Runner,
    /// stackctl's project directory and stage.
    stackctl_dir: PathBuf,
    stage: String,
    /// docker-compose's project name and file.
    compose_project: String,
    compose_file: PathBuf,
    floor: Floor,
    stdin_file: PathBuf,
    owned: Vec<Owned>,
    task_serial: usize,
    scratch: PathBuf,
    /// `KEY=VALUE` label on every image the registry phase builds (pulled copies carry it).
    image_label: String,
    /// The registry phase's stacks; its registry (killed and removed on drop).
    reg: Option<RegistrySetup>,
    /// The registry's pid for the Ctrl-C handler (0: none).
    registry_pid: Arc<AtomicU32>,
}

/// The registry phase: the registry, the image references, and each tool's stack files.
struct RegistrySetup {
    registry: Registry,
    /// Exist only in the registry (pushed once in `prepare`) until a tool pulls them.
    pull_refs: Vec<String>,
    /// Built locally; each tool pushes them into an emptied registry.
    push_refs: Vec<String>,
    stackctl_dir: PathBuf,
    pull_stage: String,
    push_stage: String,
    compose_project: String,
    compose_pull_file: PathBuf,
    compose_push_file: PathBuf,
}

/// Remove every object of every tool, the registry phase's images, its registry and storage.
fn cleanup(bench: &mut Bench) {
    for owned in &bench.owned {
        if let Err(err) = bench.runtime.block_on(remove_all(&owned.filters)) {
            eprintln!("warning: cleanup of {} objects: {err:#}", owned.tool.name());
        }
    }
    bench.registry_pid.store(0, Ordering::SeqCst);
    drop(bench.reg.take());
    if let Err(err) = remove_labelled_images(&bench.image_label) {
        eprintln!("warning: cleanup of the registry phase's images: {err:#}");
    }
}

/// Remove every image carrying `label` (`KEY=VALUE`), whatever its tags.
fn remove_labelled_images(label: &str) -> Result<()> {
    let out = Command::new("docker")
        .args(["images", "-q", "--no-trunc", "--filter"])
        .arg(format!("label={label}"))
        .output()
        .context("run docker images")?;
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let status = Command::new("docker")
        .args(["rmi", "-f"])
        .args(&ids)
        .stdout(Stdio::null())
        .status()
        .context("run docker rmi")?;
    if !status.success() {
        bail!("docker rmi -f {} failed", ids.join(" "));
    }
    Ok(())
}

fn main() {
    match main_inner() {
        Ok(()) => {}
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}

fn main_inner() -> Result<()> {
    let options = Options::parse()?;
    if options.swarm {
        return swarm::run_phase(options.runs.min(5), &options.stackctl);
    }
    let scratch_dir = tempfile::tempdir().context("create a scratch directory")?;
    let scratch = scratch_dir.path().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;

    let id = std::process::id();
    let stage = format!("bench{id}");
    let stackctl_dir = scratch.join("benchstack");
    std::fs::create_dir_all(stackctl_dir.join("stacks"))?;
    std::fs::write(
        stackctl_dir.join("stacks").join(format!("{stage}.yml")),
        format!("{STACK}{TASKS}"),
    )?;
    let compose_dir = scratch.join("compose");
    std::fs::create_dir_all(&compose_dir)?;
    let compose_file = compose_dir.join("docker-compose.yml");
    std::fs::write(&compose_file, STACK)?;
    let compose_project = format!("stackctlbench{id}");
    let floor_prefix = format!("stackctlbench{id}floor");
    let mut floor = Floor::new(STACK, &floor_prefix)?;
    floor.trace = options.verbose;

    let owned = vec![
        Owned {
            tool: Tool::Stackctl,
            filters: vec![
                "io.stackctl.project=benchstack".to_string(),
                format!("io.stackctl.stage={stage}"),
            ],
        },
        Owned {
            tool: Tool::Compose,
            filters: vec![format!("com.docker.compose.project={compose_project}")],
        },
        Owned {
            tool: Tool::Floor,
            filters: vec![floor.filter()],
        },
        // The registry phase's stack (its no-op `up`).
        Owned {
            tool: Tool::Stackctl,
            filters: vec![
                "io.stackctl.project=benchreg".to_string(),
                format!("io.stackctl.stage=pull{id}"),
            ],
        },
    ];
    let mut owned = owned;
    owned.extend(
        editloop::owned(id)
            .into_iter()
            .map(|(tool, filters)| Owned { tool, filters }),
    );

    let mut bench = Bench {
        runner: Runner::new(&scratch, options.verbose),
        options,
        runtime,
        stackctl_dir,
        stage,
        compose_project,
        compose_file,
        floor,
        stdin_file: scratch.join("stdin.bin"),
        owned,
        task_serial: 0,
        scratch: scratch.clone(),
        image_label: format!("io.stackctl.bench.registry={id}"),
        reg: None,
        registry_pid: Arc::new(AtomicU32::new(0)),
    };

    // Ctrl-C: remove what we created, then exit like an interrupted command.
    let interrupt_filters: Vec<Vec<String>> =
        bench.owned.iter().map(|o| o.filters.clone()).collect();
    let interrupt_pid = bench.registry_pid.clone();
    let interrupt_label = bench.image_label.clone();
    let interrupt_scratch = bench.scratch.clone();
    bench.runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: removing benchmark objects");
            let pid = interrupt_pid.load(Ordering::SeqCst);
            if pid != 0 {
                // SAFETY: plain kill(2) of the registry, our own child.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            for filters in &interrupt_filters {
                let _ = remove_all(filters).await;
            }
            let _ = remove_labelled_images(&interrupt_label);
            let _ = std::fs::remove_dir_all(&interrupt_scratch);
            std::process::exit(130);
        }
    });

    // Measure; whatever happens (error or panic), remove every object before going on.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepare(&mut bench).and_then(|()| measure(&mut bench))
    }));
    cleanup(&mut bench);
    let report = match result {
        Ok(report) => report?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let text = render(&bench, &report)?;
    println!("{text}");
    if let Some(path) = &bench.options.update {
        update_doc(path, &text)?;
        eprintln!("updated {}", path.display());
    }
    drop(scratch_dir);
    Ok(())
}

/// Check the tools, build the image if missing, write the stdin file, clear leftovers.
fn prepare(bench: &mut Bench) -> Result<()> {
    if !bench.options.stackctl.exists() {
        bail!(
            "stackctl binary `{}` not found",
            bench.options.stackctl.display()
        );
    }
    let compose = Command::new("docker-compose").arg("version").output();
    match compose {
        Ok(out) if out.status.success() => {}
        _ => bail!("docker-compose (v1) is not installed; hint: apt-get install docker-compose"),
    }
    ensure_image()?;
    if bench.options.runs(Phase::Stdin) {
        write_stdin_file(&bench.stdin_file, bench.options.stdin_mib)?;
    }
    for owned in &bench.owned {
        bench.runtime.block_on(remove_all(&owned.filters))?;
    }
    if bench.options.runs(Phase::Registry) {
        prepare_registry(bench)?;
    }
    Ok(())
}

/// The busybox image (`FROM scratch` + Debian's static busybox), built once; the tag is the
/// cache, so nothing is built while a step is timed.
fn ensure_image() -> Result<()> {
    let exists = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        return Ok(());
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing; hint: apt-get install busybox-static");
    }
    let ctx = tempfile::tempdir()?;
    std::fs::copy(busybox, ctx.path().join("busybox"))?;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir -p /tmp /var/www && chmod 1777 /tmp\nCMD [\"sh\"]\n",
    )?;
    let out = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(ctx.path())
        .output()
        .context("run docker build")?;
    if !out.status.success() {
        bail!(
            "building {IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn write_stdin_file(path: &Path, mib: u64) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    // Not all zeros, so nothing along the way can shortcut it.
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(())
}

/// Start the registry, build the registry phase's images (the pull set is pushed once and
/// its local tags removed: those images then exist only in the registry), write the stack
/// files. Nothing here is timed.
fn prepare_registry(bench: &mut Bench) -> Result<()> {
    let registry = Registry::start(&bench.scratch.join("registry"))?;
    bench.registry_pid.store(registry.pid(), Ordering::SeqCst);
    let host = registry.host.clone();
    let id = std::process::id();
    let mut setup = RegistrySetup {
        registry,
        pull_refs: Vec::new(),
        push_refs: Vec::new(),
        stackctl_dir: bench.scratch.join("benchreg"),
        pull_stage: format!("pull{id}"),
        push_stage: format!("push{id}"),
        compose_project: format!("stackctlbenchreg{id}"),
        compose_pull_file: bench
            .scratch
            .join("compose-pull")
            .join("docker-compose.yml"),
        compose_push_file: bench
            .scratch
            .join("compose-push")
            .join("docker-compose.yml"),
    };
    let mut pull_stack = String::from("services:\n");
    let mut push_stack = String::from("services:\n");
    eprintln!(
        "registry phase: building {} images with a {} MiB layer each",
        2 * REGISTRY_IMAGES,
        bench.options.layer_mib
    );
    for n in 1..=REGISTRY_IMAGES {
        for (kind, stack) in [("pull", &mut pull_stack), ("push", &mut push_stack)] {
            let reference = format!("{host}/bench-{kind}-{n}:latest");
            let context = bench.scratch.join("images").join(format!("{kind}{n}"));
            build_random_image(
                &context,
                &reference,
                &bench.image_label,
                bench.options.layer_mib,
            )?;
            write!(
                stack,
                "  img{n}:\n    image: {reference}\n    command: [sleep, \"86400\"]\n    init: true\n"
            )?;
            if kind == "push" {
                writeln!(stack, "    build: {}", context.display())?;
                setup.push_refs.push(reference);
            } else {
                setup.pull_refs.push(reference);
            }
        }
    }
    for reference in &setup.pull_refs {
        docker_ok(&["push", reference])?;
        docker_ok(&["rmi", reference])?;
    }
    let stacks = setup.stackctl_dir.join("stacks");
    std::fs::create_dir_all(&stacks)?;
    std::fs::write(
        stacks.join(format!("{}.yml", setup.pull_stage)),
        &pull_stack,
    )?;
    std::fs::write(
        stacks.join(format!("{}.yml", setup.push_stage)),
        &push_stack,
    )?;
    for (file, stack) in [
        (&setup.compose_pull_file, &pull_stack),
        (&setup.compose_push_file, &push_stack),
    ] {
        std::fs::create_dir_all(file.parent().context("compose dir")?)?;
        std::fs::write(file, stack)?;
    }
    bench.reg = Some(setup);
    Ok(())
}

/// `FROM` the busybox fixture plus `mib` MiB of random bytes (a layer of its own that does
/// not compress), labelled so the cleanup finds it.
fn build_random_image(context: &Path, reference: &str, label: &str, mib: u64) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(context)?;
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL {label}\nCOPY blob /blob\n"),
    )?;
    // xorshift64*, seeded from the reference and the time: no two images share a byte run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for b in reference.bytes() {
        seed = seed.rotate_left(7) ^ u64::from(b);
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(context.join("blob"))?);
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        for word in chunk.chunks_mut(8) {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            word.copy_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    file.flush()?;
    drop(file);
    let out = Command::new("docker")
        .args(["build", "-q", "-t", reference])
        .arg(context)
        .output()
        .context("run docker build")?;
    if !out.status.success() {
        bail!(
            "building {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Run `docker ARGS…`, failing with its stderr.
fn docker_ok(args: &[&str]) -> Result<()> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("run docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// True when the engine has this reference.
fn image_present(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Report {
    samples: Samples,
    stdin_bytes: u64,
    /// Registry requests made by `up` of the registry stack after its images were pulled.
    noop_registry_requests: Option<usize>,
}

fn measure(bench: &mut Bench) -> Result<Report> {
    let mut samples = Samples::default();
    let tools = [Tool::Stackctl, Tool::Compose, Tool::Floor];
    let phases = bench.options.phases.clone();
    let runs = |phase| phases.contains(&phase);
    if runs(Phase::Lifecycle) {
        for run in 0..bench.options.runs {
            eprintln!("run {}/{} (lifecycle)", run + 1, bench.options.runs);
            // Rotate the order so no tool always runs first (warm caches, daemon state).
            for k in 0..tools.len() {
                let tool = tools[(run + k) % tools.len()];
                lifecycle(bench, tool, &mut samples)?;
            }
        }
    }
    if runs(Phase::Config) {
        config_phase(bench, &mut samples)?;
    }
    if runs(Phase::Stdin) {
        stdin_phase(bench, &mut samples)?;
    }
    if runs(Phase::Data) {
        data_phase(bench, &mut samples)?;
    }
    let mut noop_registry_requests = None;
    if runs(Phase::Registry) {
        noop_registry_requests = registry_phase(bench, &mut samples)?;
    }
    if runs(Phase::EditLoop) {
        editloop::phase(bench, &mut samples)?;
    }
    if runs(Phase::Ssh) {
        remote::phase(bench, &mut samples)?;
    }
    Ok(Report {
        samples,
        stdin_bytes: bench.options.stdin_mib * 1024 * 1024,
        noop_registry_requests,
    })
}

/// Services in the generated file of the `config` step.
const CONFIG_SERVICES: usize = 100;

/// A stack of `n` services of the kinds real files hold: image, command, environment with
/// interpolation, ports, a named volume, a healthcheck, labels and a dependency chain.
fn generated_stack(n: usize) -> String {
    let mut out = String::from("services:\n");
    for i in 0..n {
        let _ = write!(
            out,
            "  svc{i}:\n    image: {IMAGE}\n    command: [sh, -c, \"exec sleep 3600\"]\n    environment:\n      NAME: svc{i}\n      LEVEL: ${{LEVEL:-info}}\n      URL: http://svc{i}:8080/api\n    ports: [\"127.0.0.1:{}:8080\"]\n    volumes: [\"data{i}:/data\"]\n    healthcheck: {{ test: [CMD, \"true\"], interval: 5s, retries: 3 }}\n    labels: {{ tier: t{}, index: \"{i}\" }}\n",
            20000 + i,
            i % 3
        );
        if i > 0 {
            let _ = writeln!(out, "    depends_on: [svc{}]", i - 1);
        }
    }
    out.push_str("volumes:\n");
    for i in 0..n {
        let _ = writeln!(out, "  data{i}: {{}}");
    }
    out
}

/// `config` of a generated 100-service file, stackctl (its stack file for a stage of its
/// own) and docker-compose (the same file with `-f`), each run 5 times per run, alternating;
/// the output is thrown away. Nothing touches the engine.
fn config_phase(bench: &mut Bench, samples: &mut Samples) -> Result<()> {
    const STAGE: &str = "config-bench";
    let file = bench.stackctl_dir.join(format!("stacks/{STAGE}.yml"));
    std::fs::write(&file, generated_stack(CONFIG_SERVICES)).context("write the config stack")?;
    let result = (|| -> Result<()> {
        eprintln!("config of a {CONFIG_SERVICES}-service file");
        for _ in 0..bench.options.runs * 5 {
            for tool in [Tool::Stackctl, Tool::Compose] {
                let mut cmd = match tool {
                    Tool::Stackctl => {
                        let mut cmd = Command::new(&bench.options.stackctl);
                        cmd.arg("-C")
                            .arg(&bench.stackctl_dir)
                            .args(["-e", STAGE, "config"])
                            .env_remove("STACKCTL_ENV");
                        cmd
                    }
                    _ => {
                        let mut cmd = Command::new("docker-compose");
                        cmd.args(["-p", "stackctl-config-bench", "-f"])
                            .arg(&file)
                            .arg("config");
                        cmd
                    }
                };
                let started = std::time::Instant::now();
                let out = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .with_context(|| format!("run {}", tool.name()))?;
                let elapsed = started.elapsed();
                if !out.status.success() {
                    bail!(
                        "{} config of the generated file failed: {}",
                        tool.name(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                samples.add(tool, Step::Config, Some(elapsed));
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&file);
    result
}

/// Per run, each tool in turn (rotating): the pull set's local tags removed, then `pull`,
/// then every image checked present. Then stackctl's `up` of that stack (cold, then no-op)
/// with the registry's requests counted: it must make none. Then per run, each tool in
/// turn: the registry's storage emptied, then `push`, then every tag checked in the
/// registry. Returns the registry requests made by those `up`s.
fn registry_phase(bench: &mut Bench, samples: &mut Samples) -> Result<Option<usize>> {
    let tools = [Tool::Stackctl, Tool::Compose];
    let runs = bench.options.runs;
    let reg = bench.reg.as_ref().context("registry not prepared")?;
    let (pull_refs, push_refs) = (reg.pull_refs.clone(), reg.push_refs.clone());
    for run in 0..runs {
        eprintln!(
            "run {}/{runs} (registry pull, {REGISTRY_IMAGES} × {} MiB)",
            run + 1,
            bench.options.layer_mib
        );
        for k in 0..tools.len() {
            let tool = tools[(run + k) % tools.len()];
            for reference in &pull_refs {
                if image_present(reference) {
                    docker_ok(&["rmi", reference])?;
                }
                if image_present(reference) {
                    bail!("{reference} is still on the engine after docker rmi");
                }
            }
            let elapsed = registry_run(bench, tool, "pull")?;
            if elapsed.is_some() {
                for reference in &pull_refs {
                    if !image_present(reference) {
                        bail!("{}: {reference} is missing after pull", tool.name());
                    }
                }
            }
            samples.add(tool, Step::Pull, elapsed);
        }
    }

    // The images are present: `up` must not ask the registry anything.
    let mut requests = None;
    if pull_refs.iter().all(|r| image_present(r)) {
        let reg = bench.reg.as_ref().context("registry")?;
        let before = reg.registry.requests()?;
        // The pushes and pulls so far are in the log: a count of 0 below means something.
        if before == 0 {
            bail!("the registry's access log counted no request after the pulls");
        }
        let mut cmd = registry_stackctl_cmd(bench, false);
        cmd.arg("up");
        if tool_run(bench, Tool::Stackctl, &mut cmd, None, STEP_TIMEOUT)?.is_some() {
            for _ in 0..NOOP_REPEATS {
                let mut cmd = registry_stackctl_cmd(bench, false);
                cmd.arg("up");
                let out = tool_run(bench, Tool::Stackctl, &mut cmd, None, STEP_TIMEOUT)?;
                samples.add(Tool::Stackctl, Step::RegistryNoopUp, out.map(|o| o.elapsed));
            }
            let reg = bench.reg.as_ref().context("registry")?;
            let made = reg.registry.requests()? - before;
            if made > 0 {
                bail!("stackctl: `up` with every image present made {made} registry request(s)");
            }
            requests = Some(made);
            let mut cmd = registry_stackctl_cmd(bench, false);
            cmd.args(["purge", "--yes"]);
            tool_run(bench, Tool::Stackctl, &mut cmd, None, STEP_TIMEOUT)?;
        }
    }

    for run in 0..runs {
        eprintln!(
            "run {}/{runs} (registry push, {REGISTRY_IMAGES} × {} MiB)",
            run + 1,
            bench.options.layer_mib
        );
        for k in 0..tools.len() {
            let tool = tools[(run + k) % tools.len()];
            let reg = bench.reg.as_ref().context("registry")?;
            reg.registry.wipe()?;
            for reference in &push_refs {
                let repository = repository_of(reference);
                if !reg.registry.tags(repository).is_empty() {
                    bail!("{repository} is still in the registry after emptying its storage");
                }
            }
            let elapsed = registry_run(bench, tool, "push")?;
            if elapsed.is_some() {
                let reg = bench.reg.as_ref().context("registry")?;
                for reference in &push_refs {
                    let repository = repository_of(reference);
                    if !reg.registry.tags(repository).iter().any(|t| t == "latest") {
                        bail!(
                            "{}: {repository}:latest is not in the registry after push",
                            tool.name()
                        );
                    }
                }
                // Every random layer was uploaded (it does not compress), none mounted.
                let stored = reg.registry.stored_bytes();
                let expected = REGISTRY_IMAGES as u64 * bench.options.layer_mib * 1024 * 1024;
                if stored < expected {
                    bail!(
                        "{}: the registry holds {stored} bytes after push, expected at least {expected}",
                        tool.name()
                    );
                }
            }
            samples.add(tool, Step::Push, elapsed);
        }
    }
    Ok(requests)
}

/// `HOST/NAME:TAG` → `NAME`
fn repository_of(reference: &str) -> &str {
    let path = reference.split_once('/').map_or(reference, |(_, p)| p);
    path.rsplit_once(':').map_or(path, |(name, _)| name)
}

/// stackctl in the registry phase's project, on its pull or push stage.
fn registry_stackctl_cmd(bench: &Bench, push: bool) -> Command {
    let reg = bench.reg.as_ref().expect("registry prepared");
    let mut cmd = Command::new(&bench.options.stackctl);
    cmd.arg("-C")
        .arg(&reg.stackctl_dir)
        .arg("-e")
        .arg(if push {
            &reg.push_stage
        } else {
            &reg.pull_stage
        })
        .env("NO_COLOR", "1")
        .env_remove("STACKCTL_ENV");
    cmd
}

/// One timed `pull` or `push` of the registry stack.
fn registry_run(bench: &Bench, tool: Tool, verb: &str) -> Result<Option<Duration>> {
    let reg = bench.reg.as_ref().context("registry")?;
    let push = verb == "push";
    let mut cmd = match tool {
        Tool::Stackctl => registry_stackctl_cmd(bench, push),
        Tool::Compose => {
            let mut cmd = Command::new("docker-compose");
            cmd.arg("-p")
                .arg(&reg.compose_project)
                .arg("-f")
                .arg(if push {
                    &reg.compose_push_file
                } else {
                    &reg.compose_pull_file
                })
                .arg("--no-ansi");
            cmd
        }
        _ => bail!("{} has no {verb}", tool.name()),
    };
    cmd.arg(verb);
    Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| o.elapsed))
}

/// cold up → no-op up (×3) → task → down → up (untimed) → purge, each checked. A tool
/// without `up` (stackctl while it is being built) still has its task measured: a task
/// creates the stage's network and volume itself.
fn lifecycle(bench: &mut Bench, tool: Tool, samples: &mut Samples) -> Result<()> {
    expect_state(bench, tool, State::Gone)?;
    let cold = up(bench, tool)?;
    samples.add(tool, Step::ColdUp, cold);
    if cold.is_some() {
        expect_state(bench, tool, State::Up)?;
        for _ in 0..NOOP_REPEATS {
            let noop = up(bench, tool)?;
            samples.add(tool, Step::NoopUp, noop);
        }
        expect_state(bench, tool, State::Up)?;
    }
    let task = task(bench, tool)?;
    samples.add(tool, Step::Task, task.map(|(elapsed, _)| elapsed));
    if cold.is_none() {
        for step in [Step::NoopUp, Step::Down, Step::Purge] {
            samples.add(tool, step, None);
        }
        return force_clean(bench, tool);
    }
    let down_time = down(bench, tool, false)?;
    samples.add(tool, Step::Down, down_time);
    match down_time {
        Some(_) => expect_state(bench, tool, State::Down)?,
        None => force_clean(bench, tool)?,
    }
    up(bench, tool)?;
    expect_state(bench, tool, State::Up)?;
    let purge = down(bench, tool, true)?;
    samples.add(tool, Step::Purge, purge);
    match purge {
        Some(_) => expect_state(bench, tool, State::Gone)?,
        None => force_clean(bench, tool)?,
    }
    Ok(())
}

/// The stack up for each tool, then per run: stackctl `exec count`, `docker run -i --rm`,
/// the floor's attach, each fed the same file.
fn stdin_phase(bench: &mut Bench, samples: &mut Samples) -> Result<()> {
    let bytes = bench.options.stdin_mib * 1024 * 1024;
    // Up like a user would have it; without `up`, `exec` creates what the task needs.
    let stackctl_up = up(bench, Tool::Stackctl)?.is_some();
    bench.runtime.block_on(bench.floor.cold_up())?;
    for run in 0..bench.options.stdin_runs {
        eprintln!(
            "run {}/{} (stdin, {} MiB)",
            run + 1,
            bench.options.stdin_runs,
            bench.options.stdin_mib
        );
        let order = [Tool::Stackctl, Tool::DockerRun, Tool::Floor];
        for k in 0..order.len() {
            let tool = order[(run + k) % order.len()];
            let result = stdin_run(bench, tool)?;
            if let Some((_, counted, _)) = &result {
                if *counted != bytes {
                    bail!(
                        "{} counted {counted} bytes through stdin, expected {bytes}",
                        tool.name()
                    );
                }
            }
            if let Some((_, _, Some(rss))) = &result {
                samples.rss.entry(tool).or_default().push(*rss);
            }
            samples.add(tool, Step::Stdin, result.map(|(elapsed, _, _)| elapsed));
        }
    }
    if stackctl_up && down(bench, Tool::Stackctl, true)?.is_none() {
        force_clean(bench, Tool::Stackctl)?;
    }
    force_clean(bench, Tool::Stackctl)?;
    bench.runtime.block_on(bench.floor.down(true))?;
    Ok(())
}

/// (elapsed, bytes counted, peak RSS KiB)
fn stdin_run(bench: &mut Bench, tool: Tool) -> Result<Option<(Duration, u64, Option<i64>)>> {
    let parse = |out: &str, tool: Tool| -> Result<u64> {
        out.trim()
            .parse()
            .with_context(|| format!("{} printed `{}`, not a byte count", tool.name(), out.trim()))
    };
    match tool {
        Tool::Stackctl => {
            let file = bench.stdin_file.clone();
            let mut cmd = stackctl_cmd(bench);
            cmd.args(["exec", "count"]);
            let Some(out) = tool_run(bench, tool, &mut cmd, Some(&file), STDIN_TIMEOUT)? else {
                return Ok(None);
            };
            Ok(Some((
                out.elapsed,
                parse(&out.stdout, tool)?,
                Some(out.max_rss_kib),
            )))
        }
        Tool::DockerRun => {
            let file = bench.stdin_file.clone();
            let mut cmd = Command::new("docker");
            cmd.args(["run", "-i", "--rm", IMAGE, "wc", "-c"]);
            let out = tool_run(bench, tool, &mut cmd, Some(&file), STDIN_TIMEOUT)?
                .context("docker run")?;
            Ok(Some((
                out.elapsed,
                parse(&out.stdout, tool)?,
                Some(out.max_rss_kib),
            )))
        }
        Tool::Floor => {
            bench.task_serial += 1;
            let (elapsed, stdout) = bench.runtime.block_on(bench.floor.task(
                TASK_SERVICE,
                &["wc", "-c"],
                Some(&bench.stdin_file),
                bench.task_serial,
            ))?;
            Ok(Some((elapsed, parse(&stdout, tool)?, None)))
        }
        Tool::Compose => bail!("docker-compose is not measured for stdin"),
    }
}

/// The engine name of the data phase's volume (stackctl's stage).
fn data_volume(bench: &Bench) -> String {
    format!("{}-benchstack_{DATA_VOLUME}", bench.stage)
}

fn docker_quiet(args: &[&str]) -> Result<()> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("run docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Remove the data phase's volume, wherever it came from (stackctl's, labelled; or the one
/// `docker run -v` made); a missing one is fine.
fn remove_data_volume(bench: &Bench) -> Result<()> {
    let volume = data_volume(bench);
    let exists = Command::new("docker")
        .args(["volume", "inspect", &volume])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        docker_quiet(&["volume", "rm", &volume])?;
    }
    Ok(())
}

/// `data save` and `data load` of one volume (half random bytes, half text) against
/// `docker run --rm -v VOL:/d IMAGE tar c -C /d .` and `tar x`, with the stack down (no
/// service to stop, as for `docker run`); loads go into an empty volume (removed before
/// each). Then the zstd archive: its time both ways and its size.
fn data_phase(bench: &mut Bench, samples: &mut Samples) -> Result<()> {
    let mib = bench.options.data_mib;
    let volume = data_volume(bench);
    // The volume, made by `up` (labelled as the stage's), then the stack down: it stays.
    if up(bench, Tool::Stackctl)?.is_none() {
        return Ok(());
    }
    down(bench, Tool::Stackctl, false)?;
    let half = mib / 2;
    let fill = format!(
        "dd if=/dev/urandom of=/d/random.bin bs=1048576 count={half} 2>/dev/null \
         && yes 'stackctl data benchmark: a line of text, as a dump or a log holds them' \
            | head -c {} > /d/text.txt && mkdir -p /d/sub && echo small > /d/sub/small.txt",
        (mib - half) * 1024 * 1024
    );
    docker_quiet(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/d"),
        IMAGE,
        "sh",
        "-c",
        &fill,
    ])?;
    let content = mib * 1024 * 1024 + 6;
    let plain = bench.scratch.join("data.tar");
    let packed = bench.scratch.join("data.tar.zst");
    let docker_tar = bench.scratch.join("docker-data.tar");
    let at_least = |path: &Path, what: &str| -> Result<u64> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("{what}: no file {}", path.display()))?
            .len();
        if size < content {
            bail!("{what} wrote {size} bytes, less than the volume's {content}");
        }
        Ok(size)
    };
    for run in 0..bench.options.stdin_runs {
        eprintln!(
            "run {}/{} (data, {} MiB)",
            run + 1,
            bench.options.stdin_runs,
            mib
        );
        // Saves (the volume holds the data).
        let order = [Tool::Stackctl, Tool::DockerRun];
        for k in 0..order.len() {
            let tool = order[(run + k) % order.len()];
            let out = match tool {
                Tool::Stackctl => {
                    let mut cmd = stackctl_cmd(bench);
                    cmd.args(["data", "save", "--no-compress", "-o"])
                        .arg(&plain)
                        .arg(DATA_VOLUME);
                    tool_run(bench, tool, &mut cmd, None, STDIN_TIMEOUT)?
                }
                _ => {
                    let mut cmd = Command::new("docker");
                    cmd.args(["run", "--rm", "-v", &format!("{volume}:/d"), IMAGE])
                        .args(["tar", "c", "-C", "/d", "."]);
                    let out =
                        bench
                            .runner
                            .run_to(&mut cmd, None, Some(&docker_tar), STDIN_TIMEOUT)?;
                    if out.code != 0 {
                        bail!("docker run … tar c failed\n{}", out.describe());
                    }
                    Some(out)
                }
            };
            let Some(out) = out else {
                samples.add(tool, Step::DataSave, None);
                continue;
            };
            at_least(
                if tool == Tool::Stackctl {
                    &plain
                } else {
                    &docker_tar
                },
                tool.name(),
            )?;
            samples
                .data_rss
                .entry(tool)
                .or_default()
                .push(out.max_rss_kib);
            samples.add(tool, Step::DataSave, Some(out.elapsed));
        }
        let mut cmd = stackctl_cmd(bench);
        cmd.args(["data", "save", "-o"])
            .arg(&packed)
            .arg(DATA_VOLUME);
        if let Some(out) = tool_run(bench, Tool::Stackctl, &mut cmd, None, STDIN_TIMEOUT)? {
            samples
                .data_rss
                .entry(Tool::Stackctl)
                .or_default()
                .push(out.max_rss_kib);
            samples.add(Tool::Stackctl, Step::DataSaveZstd, Some(out.elapsed));
            let sizes = (
                std::fs::metadata(&plain).map(|m| m.len()).unwrap_or(0),
                std::fs::metadata(&packed).map(|m| m.len()).unwrap_or(0),
            );
            samples.data_archive = Some(sizes);
        }
        // Loads, each into an empty volume.
        for k in 0..order.len() {
            let tool = order[(run + k) % order.len()];
            remove_data_volume(bench)?;
            let out = match tool {
                Tool::Stackctl => {
                    let mut cmd = stackctl_cmd(bench);
                    cmd.args(["data", "load", "-i"]).arg(&plain);
                    tool_run(bench, tool, &mut cmd, None, STDIN_TIMEOUT)?
                }
                _ => {
                    let mut cmd = Command::new("docker");
                    cmd.args(["run", "-i", "--rm", "-v", &format!("{volume}:/d"), IMAGE])
                        .args(["tar", "x", "-C", "/d"]);
                    Some(
                        tool_run(bench, tool, &mut cmd, Some(&docker_tar), STDIN_TIMEOUT)?
                            .context("docker run … tar x")?,
                    )
                }
            };
            let Some(out) = out else {
                samples.add(tool, Step::DataLoad, None);
                continue;
            };
            samples
                .data_rss
                .entry(tool)
                .or_default()
                .push(out.max_rss_kib);
            samples.add(tool, Step::DataLoad, Some(out.elapsed));
        }
        remove_data_volume(bench)?;
        let mut cmd = stackctl_cmd(bench);
        cmd.args(["data", "load", "-i"]).arg(&packed);
        if let Some(out) = tool_run(bench, Tool::Stackctl, &mut cmd, None, STDIN_TIMEOUT)? {
            samples
                .data_rss
                .entry(Tool::Stackctl)
                .or_default()
                .push(out.max_rss_kib);
            samples.add(Tool::Stackctl, Step::DataLoadZstd, Some(out.elapsed));
        }
    }
    // What was loaded last is the volume's whole content (stackctl checked every checksum;
    // this checks the bytes arrived): measured by stackctl's own `data ls`.
    let mut cmd = stackctl_cmd(bench);
    cmd.args(["--json", "data", "ls", DATA_VOLUME]);
    if let Some(out) = tool_run(bench, Tool::Stackctl, &mut cmd, None, STEP_TIMEOUT)? {
        let row: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).context("data ls --json")?;
        if row["size"].as_u64() != Some(content) {
            bail!(
                "after data load the volume holds {} bytes, expected {content}",
                row["size"]
            );
        }
    }
    for path in [&plain, &packed, &docker_tar] {
        let _ = std::fs::remove_file(path);
    }
    remove_data_volume(bench)?;
    force_clean(bench, Tool::Stackctl)?;
    Ok(())
}

fn stackctl_cmd(bench: &Bench) -> Command {
    let mut cmd = Command::new(&bench.options.stackctl);
    cmd.arg("-C")
        .arg(&bench.stackctl_dir)
        .arg("-e")
        .arg(&bench.stage)
        .env("NO_COLOR", "1")
        .env_remove("STACKCTL_ENV");
    cmd
}

fn compose_cmd(bench: &Bench) -> Command {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-p")
        .arg(&bench.compose_project)
        .arg("-f")
        .arg(&bench.compose_file)
        .arg("--no-ansi");
    cmd
}

/// Run one tool command. `None` when stackctl says the command is not implemented yet; an
/// error when it fails otherwise.
fn tool_run(
    bench: &Bench,
    tool: Tool,
    cmd: &mut Command,
    stdin: Option<&Path>,
    timeout: Duration,
) -> Result<Option<Outcome>> {
    let out = bench.runner.run(cmd, stdin, timeout)?;
    if out.code == 0 {
        return Ok(Some(out));
    }
    if tool == Tool::Stackctl && out.code == 2 && out.stderr.contains("not implemented yet") {
        return Ok(None);
    }
    bail!("{} failed: {cmd:?}\n{}", tool.name(), out.describe())
}

fn up(bench: &mut Bench, tool: Tool) -> Result<Option<Duration>> {
    match tool {
        Tool::Stackctl => {
            let mut cmd = stackctl_cmd(bench);
            cmd.arg("up");
            Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| o.elapsed))
        }
        Tool::Compose => {
            let mut cmd = compose_cmd(bench);
            cmd.args(["up", "-d"]);
            Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| o.elapsed))
        }
        Tool::Floor => {
            // A second `up` of the floor is its no-op: everything exists and runs.
            let exists = bench
                .runtime
                .block_on(count_objects(&[bench.floor.filter()]))?
                .containers
                > 0;
            if exists {
                Ok(Some(bench.runtime.block_on(bench.floor.noop_up())?))
            } else {
                Ok(Some(bench.runtime.block_on(bench.floor.cold_up())?))
            }
        }
        Tool::DockerRun => bail!("docker run has no up"),
    }
}

fn down(bench: &mut Bench, tool: Tool, purge: bool) -> Result<Option<Duration>> {
    match tool {
        Tool::Stackctl => {
            let mut cmd = stackctl_cmd(bench);
            if purge {
                cmd.args(["purge", "--yes"]);
            } else {
                cmd.arg("down");
            }
            Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| o.elapsed))
        }
        Tool::Compose => {
            let mut cmd = compose_cmd(bench);
            cmd.arg("down");
            if purge {
                cmd.arg("-v");
            }
            Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| o.elapsed))
        }
        Tool::Floor => Ok(Some(bench.runtime.block_on(bench.floor.down(purge))?)),
        Tool::DockerRun => bail!("docker run has no down"),
    }
}

/// A one-off `true` in a fresh container of the task's service: (elapsed, stdout).
fn task(bench: &mut Bench, tool: Tool) -> Result<Option<(Duration, String)>> {
    match tool {
        Tool::Stackctl => {
            let mut cmd = stackctl_cmd(bench);
            cmd.args(["exec", "noop"]);
            Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| (o.elapsed, o.stdout)))
        }
        Tool::Compose => {
            let mut cmd = compose_cmd(bench);
            cmd.args(["run", "--rm", "--no-deps", "-T", TASK_SERVICE, "true"]);
            Ok(tool_run(bench, tool, &mut cmd, None, STEP_TIMEOUT)?.map(|o| (o.elapsed, o.stdout)))
        }
        Tool::Floor => {
            bench.task_serial += 1;
            let serial = bench.task_serial;
            Ok(Some(bench.runtime.block_on(bench.floor.task(
                TASK_SERVICE,
                &["true"],
                None,
                serial,
            ))?))
        }
        Tool::DockerRun => bail!("docker run is only measured for stdin"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Every service running, and healthy where it has a healthcheck.
    Up,
    /// No containers, no network, the volume kept.
    Down,
    /// Nothing at all.
    Gone,
}

#[derive(Debug, Default)]
struct Counts {
    containers: usize,
    running: usize,
    unhealthy_or_starting: usize,
    networks: usize,
    volumes: usize,
}

fn expect_state(bench: &Bench, tool: Tool, state: State) -> Result<()> {
    let filters = &bench
        .owned
        .iter()
        .find(|o| o.tool == tool)
        .context("owned")?
        .filters;
    let counts = bench.runtime.block_on(count_objects(filters))?;
    check_state(tool, state, &counts, bench.floor.container_count())
}

/// `counts` are those of `state` for a stack of `services` containers.
fn check_state(tool: Tool, state: State, counts: &Counts, services: usize) -> Result<()> {
    let ok = match state {
        State::Up => {
            counts.containers == services
                && counts.running == services
                && counts.unhealthy_or_starting == 0
                && counts.networks == 1
                && counts.volumes == 1
        }
        State::Down => counts.containers == 0 && counts.networks == 0 && counts.volumes == 1,
        State::Gone => counts.containers == 0 && counts.networks == 0 && counts.volumes == 0,
    };
    if !ok {
        bail!(
            "{}: expected the stack to be {state:?}, found {counts:?}",
            tool.name()
        );
    }
    Ok(())
}

/// Remove a tool's objects by label (after a step it does not support yet).
fn force_clean(bench: &Bench, tool: Tool) -> Result<()> {
    let filters = &bench
        .owned
        .iter()
        .find(|o| o.tool == tool)
        .context("owned")?
        .filters;
    bench.runtime.block_on(remove_all(filters))
}

fn label_filter(filters: &[String]) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", filters.to_vec())])
}

async fn count_objects(filters: &[String]) -> Result<Counts> {
    count_objects_on(&floor::connect()?, filters).await
}

async fn count_objects_on(docker: &bollard::Docker, filters: &[String]) -> Result<Counts> {
    let filter = label_filter(filters);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await?;
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await?;
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await?
        .volumes
        .unwrap_or_default();
    let running = containers
        .iter()
        .filter(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
        .count();
    let unhealthy_or_starting = containers
        .iter()
        .filter(|c| {
            c.status
                .as_deref()
                .is_some_and(|s| s.contains("(health: starting)") || s.contains("(unhealthy)"))
        })
        .count();
    Ok(Counts {
        containers: containers.len(),
        running,
        unhealthy_or_starting,
        networks: networks.len(),
        volumes: volumes.len(),
    })
}

/// Remove every container, network and volume matching all `filters` (labels).
async fn remove_all(filters: &[String]) -> Result<()> {
    let docker = floor::connect()?;
    let filter = label_filter(filters);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await?;
    for id in containers.iter().filter_map(|c| c.id.as_deref()) {
        let _ = docker
            .remove_container(
                id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await;
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await?;
    for id in networks.iter().filter_map(|n| n.id.as_deref()) {
        let _ = docker.remove_network(id).await;
    }
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await?
        .volumes
        .unwrap_or_default();
    for volume in volumes {
        let _ = docker
            .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
            .await;
    }
    let left = count_objects(filters).await?;
    if left.containers + left.networks + left.volumes > 0 {
        bail!("could not remove everything labelled {filters:?}: {left:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Report

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// Bytes in MB (10^6), one decimal.
fn fmt_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".to_string(),
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "—",
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = command_output("uname", &["-r"]);
    format!("{model}, {cores} cores, {mem_gib:.0} GiB RAM, Linux {kernel}")
}

fn render(bench: &Bench, report: &Report) -> Result<String> {
    let samples = &report.samples;
    let engine = bench.runtime.block_on(async {
        let v = floor::connect()?.version().await?;
        Ok::<_, anyhow::Error>(format!(
            "Docker Engine {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    })?;
    let compose = command_output("docker-compose", &["version", "--short"]);
    let stackctl = command_output(&bench.options.stackctl.to_string_lossy(), &["--version"]);
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut flags = Vec::new();
    if bench.options.quick {
        flags.push("--quick".to_string());
    }
    if bench.options.phases.len() < Phase::ALL.len() {
        let names: Vec<&str> = bench.options.phases.iter().map(|p| p.name()).collect();
        flags.push(format!("--only {}", names.join(",")));
    }
    let command = if flags.is_empty() {
        "cargo bench --bench compare".to_string()
    } else {
        format!("cargo bench --bench compare -- {}", flags.join(" "))
    };

    let secs = |tool, step| samples.median(tool, step).map(|d| d.as_secs_f64());
    let cell = |tool, step| match samples.median(tool, step) {
        Some(d) => fmt_duration(d),
        None if samples.missing.contains(&(tool, step)) => "not supported yet".to_string(),
        None => "—".to_string(),
    };

    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut out = String::new();
    writeln!(out, "- Machine: {}", machine())?;
    writeln!(
        out,
        "- Engine: {engine}; docker-compose {compose}; {stackctl} ({profile} build, commit {commit})"
    )?;
    writeln!(out, "- Date: {date}")?;
    writeln!(
        out,
        "- Runs: {} per step, medians (no-op up: {} samples per run); stdin: {} runs of {} MiB; data: {} runs of {} MiB; registry: {} images of {} MiB each way; ssh: {} runs",
        bench.options.runs,
        NOOP_REPEATS,
        bench.options.stdin_runs,
        bench.options.stdin_mib,
        bench.options.stdin_runs,
        bench.options.data_mib,
        REGISTRY_IMAGES,
        bench.options.layer_mib,
        bench.options.ssh_runs
    )?;
    writeln!(out, "- Reproduce: `{command}`")?;
    writeln!(out)?;
    writeln!(
        out,
        "| step | stackctl | docker-compose | floor | stackctl / compose | stackctl / floor | target | |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|")?;

    let s = |step| secs(Tool::Stackctl, step);
    let c = |step| secs(Tool::Compose, step);
    let f = |step| secs(Tool::Floor, step);
    let rows: [(Step, &str, &str, Option<bool>); 5] = [
        (
            Step::ColdUp,
            "cold `up` (until running/healthy)",
            "≤ 1.10 × floor",
            s(Step::ColdUp)
                .zip(f(Step::ColdUp))
                .map(|(s, f)| s <= 1.10 * f),
        ),
        (
            Step::NoopUp,
            "no-op `up`",
            "≤ 25 ms and ≤ 1/20 × compose",
            s(Step::NoopUp)
                .zip(c(Step::NoopUp))
                .map(|(s, c)| s <= 0.025 && s <= c / 20.0),
        ),
        (
            Step::Down,
            "`down`",
            "≤ 1.15 × floor and ≤ 0.8 × compose",
            s(Step::Down)
                .zip(f(Step::Down))
                .zip(c(Step::Down))
                .map(|((s, f), c)| s <= 1.15 * f && s <= 0.8 * c),
        ),
        (Step::Purge, "`purge` / `down -v`", "—", None),
        (
            Step::Task,
            "task round trip (`exec` of `true` / `run --rm`)",
            "≤ 1.2 × floor",
            s(Step::Task).zip(f(Step::Task)).map(|(s, f)| s <= 1.2 * f),
        ),
    ];
    for (step, label, target, ok) in rows {
        writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {target} | {} |",
            cell(Tool::Stackctl, step),
            cell(Tool::Compose, step),
            cell(Tool::Floor, step),
            ratio(s(step), c(step)),
            ratio(s(step), f(step)),
            verdict(ok),
        )?;
    }

    // Throughput: bytes over the whole command (create, stream, exit, remove).
    let mb = report.stdin_bytes as f64 / 1e6;
    let rate = |tool| secs(tool, Step::Stdin).map(|t| mb / t);
    let rate_cell = |tool| match rate(tool) {
        Some(r) => format!("{r:.0} MB/s"),
        None if samples.missing.contains(&(tool, Step::Stdin)) => "not supported yet".to_string(),
        None => "—".to_string(),
    };
    let (sr, dr, fr) = (
        rate(Tool::Stackctl),
        rate(Tool::DockerRun),
        rate(Tool::Floor),
    );
    writeln!(
        out,
        "| stdin throughput, {} MiB through `wc -c` (compose column: `docker run -i --rm`) | {} | {} | {} | {} | {} | ≥ 0.95 × `docker run -i --rm` | {} |",
        bench.options.stdin_mib,
        rate_cell(Tool::Stackctl),
        rate_cell(Tool::DockerRun),
        rate_cell(Tool::Floor),
        ratio(sr, dr),
        ratio(sr, fr),
        verdict(sr.zip(dr).map(|(s, d)| s >= 0.95 * d)),
    )?;
    let peak = |tool| {
        samples
            .rss
            .get(&tool)
            .and_then(|v| v.iter().max().copied())
            .map(|kib| kib as f64 / 1024.0)
    };
    let mib_cell = |v: Option<f64>| v.map_or("—".to_string(), |m| format!("{m:.1} MiB"));
    writeln!(
        out,
        "| peak RSS while streaming stdin (compose column: the `docker` CLI) | {} | {} | — | {} | — | ≤ 32 MiB | {} |",
        mib_cell(peak(Tool::Stackctl)),
        mib_cell(peak(Tool::DockerRun)),
        ratio(peak(Tool::Stackctl), peak(Tool::DockerRun)),
        verdict(peak(Tool::Stackctl).map(|m| m <= 32.0)),
    )?;
    let data_mb = (bench.options.data_mib * 1024 * 1024) as f64 / 1e6;
    for (step, label, reference) in [
        (
            Step::DataSave,
            "`data save --no-compress` of a volume",
            "`docker run --rm -v VOL:/d IMAGE tar c -C /d . > file`",
        ),
        (
            Step::DataLoad,
            "`data load` into an empty volume",
            "`docker run -i --rm -v VOL:/d IMAGE tar x -C /d < file`",
        ),
    ] {
        let rate = |tool| secs(tool, step).map(|t| data_mb / t);
        let rate_cell = |tool| match rate(tool) {
            Some(r) => format!("{r:.0} MB/s ({})", cell(tool, step)),
            None if samples.missing.contains(&(tool, step)) => "not supported yet".to_string(),
            None => "—".to_string(),
        };
        let (sr, dr) = (rate(Tool::Stackctl), rate(Tool::DockerRun));
        writeln!(
            out,
            "| {label}, {} MiB (compose column: {reference}) | {} | {} | — | {} | — | ≥ 0.9 × `docker run … tar` | {} |",
            bench.options.data_mib,
            rate_cell(Tool::Stackctl),
            rate_cell(Tool::DockerRun),
            ratio(sr, dr),
            verdict(sr.zip(dr).map(|(s, d)| s >= 0.9 * d)),
        )?;
    }
    let data_peak = |tool| {
        samples
            .data_rss
            .get(&tool)
            .and_then(|v| v.iter().max().copied())
            .map(|kib| kib as f64 / 1024.0)
    };
    writeln!(
        out,
        "| peak RSS of `data save` / `load` (compose column: the `docker` CLI) | {} | {} | — | — | — | ≤ 32 MiB | {} |",
        mib_cell(data_peak(Tool::Stackctl)),
        mib_cell(data_peak(Tool::DockerRun)),
        verdict(data_peak(Tool::Stackctl).map(|m| m <= 32.0)),
    )?;
    let packed = match samples.data_archive {
        Some((plain, packed)) if plain > 0 => format!(
            "{} → {} ({:.0} %)",
            fmt_mb(plain),
            fmt_mb(packed),
            packed as f64 * 100.0 / plain as f64
        ),
        _ => "—".to_string(),
    };
    writeln!(
        out,
        "| zstd (level 3): `data save` / `data load` times; archive size (half random, half text) | {} / {}; {packed} | — | — | — | — | — | |",
        cell(Tool::Stackctl, Step::DataSaveZstd),
        cell(Tool::Stackctl, Step::DataLoadZstd),
    )?;
    let images = format!(
        "{REGISTRY_IMAGES} images × {} MiB own layer",
        bench.options.layer_mib
    );
    for (step, label) in [
        (
            Step::Pull,
            format!("`pull` from a local registry ({images})"),
        ),
        (
            Step::Push,
            format!("`push` to an emptied local registry ({images})"),
        ),
    ] {
        writeln!(
            out,
            "| {label} | {} | {} | — | {} | — | ≤ 1.0 × compose | {} |",
            cell(Tool::Stackctl, step),
            cell(Tool::Compose, step),
            ratio(s(step), c(step)),
            verdict(s(step).zip(c(step)).map(|(s, c)| s <= c)),
        )?;
    }
    writeln!(
        out,
        "| `config` of a {CONFIG_SERVICES}-service file | {} | {} | — | {} | — | ≤ 20 ms | {} |",
        cell(Tool::Stackctl, Step::Config),
        cell(Tool::Compose, Step::Config),
        ratio(s(Step::Config), c(Step::Config)),
        verdict(s(Step::Config).map(|s| s <= 0.020)),
    )?;
    writeln!(
        out,
        "| no-op `up` after `pull`: registry requests (access log) | {} ({}) | — | — | — | — | 0 requests | {} |",
        report
            .noop_registry_requests
            .map_or("—".to_string(), |n| n.to_string()),
        cell(Tool::Stackctl, Step::RegistryNoopUp),
        verdict(report.noop_registry_requests.map(|n| n == 0)),
    )?;
    editloop::rows(samples, &mut out)?;
    remote::rows(samples, &mut out)?;
    writeln!(out)?;
    let n = |tool, step| samples.count(tool, step);
    writeln!(
        out,
        "Samples: cold up {}/{}/{}, no-op up {}/{}/{}, task {}/{}/{}, stdin {}/{}/{} (stackctl/compose or docker/floor); data save {}/{}, load {}/{} (stackctl/docker); pull {}/{}, push {}/{}, no-op up after pull {}.",
        n(Tool::Stackctl, Step::ColdUp),
        n(Tool::Compose, Step::ColdUp),
        n(Tool::Floor, Step::ColdUp),
        n(Tool::Stackctl, Step::NoopUp),
        n(Tool::Compose, Step::NoopUp),
        n(Tool::Floor, Step::NoopUp),
        n(Tool::Stackctl, Step::Task),
        n(Tool::Compose, Step::Task),
        n(Tool::Floor, Step::Task),
        n(Tool::Stackctl, Step::Stdin),
        n(Tool::DockerRun, Step::Stdin),
        n(Tool::Floor, Step::Stdin),
        n(Tool::Stackctl, Step::DataSave),
        n(Tool::DockerRun, Step::DataSave),
        n(Tool::Stackctl, Step::DataLoad),
        n(Tool::DockerRun, Step::DataLoad),
        n(Tool::Stackctl, Step::Pull),
        n(Tool::Compose, Step::Pull),
        n(Tool::Stackctl, Step::Push),
        n(Tool::Compose, Step::Push),
        n(Tool::Stackctl, Step::RegistryNoopUp),
    )?;
    Ok(out)
}

/// Replace the results block of `path` (between the markers) with `text`.
fn update_doc(path: &Path, text: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let (Some(start), Some(end)) = (doc.find(RESULTS_START), doc.find(RESULTS_END)) else {
        bail!(
            "{} has no `{RESULTS_START}` … `{RESULTS_END}` block to update",
            path.display()
        );
    };
    let mut updated = String::new();
    updated.push_str(&doc[..start + RESULTS_START.len()]);
    updated.push('\n');
    updated.push_str(text.trim_end());
    updated.push('\n');
    updated.push_str(&doc[end..]);
    std::fs::write(path, updated).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
