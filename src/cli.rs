//! The command line, as clap definitions only: no logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCandidates;

/// Drive Docker for small data-oriented services from per-stage stack files.
///
/// A project holds `stacks/STAGE.yml` (services, data containers, tasks) and `.env.STAGE`,
/// or is a plain Compose project (`compose.yaml`, `.env`); stackctl converges the Docker
/// engine to it, runs one-off tasks, and removes exactly what it created.
#[derive(Debug, Parser)]
#[command(name = "stackctl", version, propagate_version = true, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  stackctl init --env dev          render stacks/dev.yml and .env.dev, then run the init task
  stackctl up                      converge the dev stage
  stackctl -e qa exec migrate      run the `migrate` task on the qa stage
  stackctl purge --yes             remove everything the stage owns";

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Project directory (the one holding `stacks/` or `compose.yaml`); default: the current
    /// directory or the nearest one above it that holds either (with `-f`, the first file's
    /// directory).
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// A stack file to read instead of `stacks/STAGE.yml` or `compose.yaml` (repeatable:
    /// later files merge onto earlier ones, as in Compose; default: the files `COMPOSE_FILE`
    /// names; `-` reads standard input). Give it before the command.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Stage to act on; the stack file is `stacks/STAGE.yml`. Default: the stage
    /// `stackctl init` made last in this project, else `dev`.
    #[arg(
        short = 'e',
        long = "env",
        global = true,
        value_name = "STAGE",
        env = "STACKCTL_ENV",
        add = ArgValueCandidates::new(crate::complete::stages)
    )]
    pub env: Option<String>,
    /// Activate the services of this profile (repeatable; or `STACKCTL_PROFILES=a,b`).
    #[arg(
        long = "profile",
        global = true,
        value_name = "NAME",
        env = "STACKCTL_PROFILES",
        value_delimiter = ','
    )]
    pub profiles: Vec<String>,
    /// Print one JSON event per line on stdout instead of progress.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// No colour in what stackctl prints (as NO_COLOR does; `logs` too).
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
    /// More detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The engine to drive: `ssh://USER@HOST[:PORT]`, `tcp://HOST:PORT`, `unix:///PATH`.
    /// Default: the stack file's `engine.host`, else DOCKER_HOST, else the Docker context,
    /// else the local socket.
    #[arg(short = 'H', long = "host", global = true, value_name = "URL")]
    pub host: Option<String>,
    /// The Docker context whose engine to drive (`docker context ls`); default: DOCKER_CONTEXT
    /// or the current context, when nothing above names an engine.
    #[arg(
        long = "context",
        global = true,
        value_name = "NAME",
        conflicts_with = "host"
    )]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render stacks/STAGE.yml and .env.STAGE from templates/, then run the `init` task.
    #[command(after_help = "Example:\n  stackctl init --env dev --domain dev.example.test")]
    Init(InitArgs),
    /// Print the resolved stack (after interpolation), or every problem in it.
    #[command(
        after_help = "Examples:\n  stackctl config\n  stackctl -e qa config --services\n  stackctl config --sources"
    )]
    Config(ConfigArgs),
    /// Build the stage's images.
    #[command(after_help = "Example:\n  stackctl build api --no-cache")]
    Build(BuildArgs),
    /// Create, recreate or start what differs from the stack file, then wait for health.
    // `-V` is `--renew-anon-volumes` here, as in Compose; `stackctl -V` prints the version.
    #[command(
        disable_version_flag = true,
        after_help = "Examples:\n  stackctl up\n  stackctl up --dry-run\n  stackctl up api --build --timeout 120\n  stackctl up -V"
    )]
    Up(UpArgs),
    /// Follow the services' `develop.watch` rules: sync, rebuild or restart as files change.
    #[command(
        after_help = "Examples:\n  stackctl watch\n  stackctl watch api\n  stackctl up --watch"
    )]
    Watch(WatchArgs),
    /// Pull the stage's images from their registries.
    #[command(after_help = "Examples:\n  stackctl pull\n  stackctl -e prod pull api")]
    Pull(PullArgs),
    /// Push the stage's built images to the registry their names hold.
    #[command(
        after_help = "Example:\n  stackctl build && stackctl push      (image: 127.0.0.1:5000/shop/api:1.2)"
    )]
    Push(PushArgs),
    /// Restart services in dependency order, waiting for health as `up` does.
    #[command(after_help = "Examples:\n  stackctl restart\n  stackctl restart api --no-wait")]
    Restart(RestartArgs),
    /// Suspend services; their containers are kept.
    #[command(after_help = "Example:\n  stackctl stop api")]
    Stop(ServicesArgs),
    /// Resume stopped services.
    #[command(after_help = "Example:\n  stackctl start api")]
    Start(ServicesArgs),
    /// Remove the stage's containers and network; keep volumes, data containers and images.
    #[command(after_help = "Example:\n  stackctl -e qa down")]
    Down(DownArgs),
    /// Remove everything the stage owns: containers, data containers, volumes, networks, images.
    #[command(
        after_help = "Examples:\n  stackctl -e ci-42 purge --yes\n  stackctl purge --stale 2h 'ci-*' --yes     every ci- stage untouched for 2 hours"
    )]
    Purge(PurgeArgs),
    /// Swarm stages: return services to the spec they had before their last update, and wait.
    #[command(after_help = "Example:\n  stackctl -e prod rollback api")]
    Rollback(RollbackArgs),
    /// Run a task in a fresh one-off container, or a command inside a running service.
    #[command(
        after_help = "Examples:\n  stackctl exec migrate\n  stackctl exec import < dump.sql     piped input replaces the task's stdin: file\n  stackctl exec postgres -- psql -U admin"
    )]
    Exec(ExecArgs),
    /// Run a one-off container from a service's definition, removed when it ends.
    #[command(
        after_help = "Examples:\n  stackctl run api -- python manage.py shell\n  stackctl run db -- pg_dump shop > dump.sql"
    )]
    Run(RunArgs),
    /// Show the services' logs, merged, each line prefixed with its service.
    #[command(after_help = "Example:\n  stackctl logs api -f --tail 50")]
    Logs(LogsArgs),
    /// Show state, health and ports of each service.
    #[command(after_help = "Examples:\n  stackctl ps\n  stackctl ps --json")]
    Ps(PsArgs),
    /// Show the processes running in the services' containers.
    #[command(after_help = "Examples:\n  stackctl top\n  stackctl top api --json")]
    Top(TopArgs),
    /// Copy files between a service's container and the local filesystem.
    #[command(
        after_help = "Examples:\n  stackctl cp api:/app/logs ./logs\n  stackctl cp ./fixtures/seed.sql db:/docker-entrypoint-initdb.d/\n  stackctl cp api:/etc/app.conf - > app.tar"
    )]
    Cp(CpArgs),
    /// Choose the stage commands here act on without `-e` (remembered in `.stackctl/stage`).
    #[command(
        after_help = "Examples:\n  stackctl use dev\n  stackctl use          print the stage commands act on, and why"
    )]
    Use(UseArgs),
    /// List the project's stages on this engine, and those that only have a stack file.
    #[command(
        after_help = "Examples:\n  stackctl ls\n  stackctl ls --json\n  stackctl ls 'ci-*' --stale 2h     what `purge --stale 2h 'ci-*'` would remove"
    )]
    Ls(LsArgs),
    /// Print stackctl's version and commit, the engine's version and API, and the host.
    #[command(after_help = "Examples:\n  stackctl version\n  stackctl version --json")]
    Version,
    /// Save, load and copy the stage's named volumes and data containers.
    #[command(
        after_help = "Examples:\n  stackctl data ls\n  stackctl data save -o dev.tar.zst\n  stackctl -e qa data load -i dev.tar.zst\n  stackctl -e qa data copy --from dev"
    )]
    Data(DataArgs),
    /// Show or release the stage's lock (on this machine and on the engine).
    #[command(
        after_help = "Examples:\n  stackctl -e prod lock status\n  stackctl -e prod lock release     when its holder is gone and you cannot wait for its lease"
    )]
    Lock(LockArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        visible_alias = "completion",
        after_help = "Examples:\n  stackctl completions bash > /etc/bash_completion.d/stackctl\n  source <(stackctl completions bash --dynamic)     also completes stage, service and task names"
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Domain written for `{domain}`; default `STAGE.localhost`.
    #[arg(long)]
    pub domain: Option<String>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Only render the files; do not run the `init` task.
    #[arg(long)]
    pub no_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// List the service names, one per line.
    #[arg(long)]
    pub services: bool,
    /// Show values of secret-looking keys instead of masking them.
    #[arg(long)]
    pub show_secrets: bool,
    /// Show every variable the stack file uses, its value and where it came from.
    #[arg(long, conflicts_with = "services")]
    pub sources: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Services to build (default: every service, data container and task with `build:`).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
    /// Build without the engine's layer cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Services to converge, with what they depend on (default: all).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
    /// Rebuild images even when they exist.
    #[arg(long)]
    pub build: bool,
    /// Do not wait for services to be running and healthy.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for health (and for the stage lock).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove containers of this stage whose service is no longer in the stack file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Give recreated containers new anonymous volumes instead of keeping the old ones' data.
    #[arg(short = 'V', long)]
    pub renew_anon_volumes: bool,
    /// Pull images: `always`, `missing` (when not on the engine) or `never`; replaces every
    /// service's `pull_policy`.
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<PullArg>,
    /// Then watch the services' `develop.watch` paths, as `stackctl watch` does.
    #[arg(long, conflicts_with = "dry_run")]
    pub watch: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Services whose `develop.watch` rules to follow (default: every service that has some).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
}

/// `up --pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullArg {
    Always,
    Missing,
    Never,
}

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Services whose images to pull (default: every service and data container without
    /// `build:`).
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Services whose built images to push (default: every image the stage builds).
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    /// Services (default: all).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
    /// Seconds to wait for the stage lock.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// Services to restart (default: all); what they depend on is waited for, not restarted.
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
    /// Do not wait for services to be running and healthy.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for health (and for the stage lock).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The service whose definition the one-off container copies.
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub service: String,
    /// Do not bring up what the service depends on first.
    #[arg(long)]
    pub no_deps: bool,
    /// The command to run instead of the service's own.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only the stages whose name matches, `*` for any characters (`'ci-*'`).
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Only the stages on the engine whose containers and volumes are all older than this
    /// (`90m`, `2h`, `3d`): what `purge --stale` would remove.
    #[arg(long, value_name = "AGE")]
    pub stale: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Services (default: all that run).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// What to copy: `SERVICE:PATH` in a container, or a local path.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Where to: a local path (`-`: the tar archive on stdout), or `SERVICE:PATH`.
    #[arg(value_name = "DEST")]
    pub dest: String,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Seconds to wait for the stage lock.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// Services to roll back (default: all).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
    /// Do not wait for the rolled-back tasks to run.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the services to converge.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct UseArgs {
    /// The stage to remember (it needs a stack file); none: print the current one.
    #[arg(value_name = "STAGE", add = ArgValueCandidates::new(crate::complete::stages))]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Do not ask; required when not on a terminal.
    #[arg(short, long)]
    pub yes: bool,
    /// Remove instead every stage of the project (on the engine) whose containers and
    /// volumes are all older than this (`90m`, `2h`, `3d`), and whose name matches PATTERN.
    #[arg(long, value_name = "AGE")]
    pub stale: Option<String>,
    /// With `--stale`: the stages' names, `*` for any characters (`'ci-*'`); default: all.
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Seconds to wait for the stage lock.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// A task name, or a service name.
    #[arg(add = ArgValueCandidates::new(crate::complete::tasks_and_services))]
    pub name: String,
    /// For a task: replaces its command. For a service: the command to run in it.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Services (default: all).
    #[arg(add = ArgValueCandidates::new(crate::complete::services))]
    pub services: Vec<String>,
    /// Keep following new output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines from the end of each log.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Only lines since this time: a duration ago (`10m`), an RFC 3339 date
    /// (`2026-11-30T14:00:00Z`) or a Unix timestamp.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only lines before this time (same forms as `--since`).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Show the engine's timestamp (RFC 3339) before each line.
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {}

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DataCommand {
    /// Each named volume and data container of the stage: size, and which services use it.
    #[command(after_help = "Examples:\n  stackctl data ls\n  stackctl data ls --json")]
    Ls(DataLsArgs),
    /// Write the stage's volumes into one archive (stdout unless `-o`).
    #[command(
        after_help = "Examples:\n  stackctl data save -o backup.tar.zst\n  stackctl data save postgres_data --level 9 > db.tar.zst\n  stackctl data save --no-compress -o backup.tar"
    )]
    Save(DataSaveArgs),
    /// Restore an archive of `data save` into the stage (stdin unless `-i`).
    #[command(
        after_help = "Examples:\n  stackctl -e qa data load -i backup.tar.zst\n  stackctl data load --force < backup.tar.zst"
    )]
    Load(DataLoadArgs),
    /// Copy volumes from another stage of the project into this one, streamed.
    #[command(after_help = "Example:\n  stackctl -e qa data copy --from dev")]
    Copy(DataCopyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DataLsArgs {
    /// Volumes or data containers (default: all).
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DataSaveArgs {
    /// Volumes or data containers to save (default: all).
    pub names: Vec<String>,
    /// Write the archive to this file (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not compress the archive.
    #[arg(long, conflicts_with = "level")]
    pub no_compress: bool,
    /// zstd compression level, 1 (fast) to 19 (small).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Do not stop the services that mount the volumes while they are read.
    #[arg(long)]
    pub online: bool,
    /// Seconds to wait for the stage lock and for health when services start again.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct DataLoadArgs {
    /// Volumes or data containers of the archive to restore (default: all).
    pub names: Vec<String>,
    /// Read the archive from this file (default: stdin).
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Replace volumes that already hold data.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the stage lock and for health when services start again.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct DataCopyArgs {
    /// The stage to copy from.
    #[arg(long, value_name = "STAGE")]
    pub from: String,
    /// Volumes or data containers to copy (default: all).
    pub names: Vec<String>,
    /// Replace volumes of this stage that already hold data.
    #[arg(long)]
    pub force: bool,
    /// Do not stop the services of the source stage while their volumes are read.
    #[arg(long)]
    pub online: bool,
    /// Seconds to wait for the stage locks and for health when services start again.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = seconds())]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    #[command(subcommand)]
    pub action: LockAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LockAction {
    /// Who holds the stage's lock, since when, and whether its lease is still renewed.
    Status,
    /// Remove the stage's lock from the engine (its holder, if alive, is told it lost it).
    Release,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for.
    pub shell: clap_complete::Shell,
    /// A script that asks stackctl for the names as you type: stages, services, tasks.
    #[arg(long)]
    pub dynamic: bool,
}

/// The longest `--timeout` accepted: a year (a larger one would overflow deadline
/// arithmetic; nothing waits that long).
pub const MAX_TIMEOUT_SECONDS: u64 = 365 * 24 * 3600;

fn seconds() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(..=MAX_TIMEOUT_SECONDS)
}
