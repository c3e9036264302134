//! `stackctl watch [SERVICE…]` (and `up --watch`): follow the services' `develop.watch` rules
//! as Compose does. Files are watched with `notify`; a burst of changes (events closer than
//! `QUIET` apart, at most `LONGEST` in all) makes one action per service (`plan::watch`):
//!
//! - a sync copies the changed files into the running container in one upload through the
//!   engine's archive API (so a remote engine works too); files deleted here are removed in
//!   the container by a one-off exec of `rm -rf --` (the image needs an `rm`);
//! - `restart` restarts the service through the executor `restart` uses (health waited for);
//! - `sync+exec` runs its command in the container after the sync;
//! - `rebuild` rebuilds the service's image and recreates the service through the same path
//!   as `up` (the stage is locked for that time only).
//!
//! Each action prints one line (`api: synced 2 files (0.1s)`) or one JSON event (kind
//! `watch`). A failed action is reported and watching goes on. Ctrl-C stops watching with
//! exit 130 and leaves the stage running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;
use notify::{EventKind, RecursiveMode, Watcher};

use super::{check_services, connect, load_stack, Context};
use crate::apply::docker::DockerTarget;
use crate::apply::{self, ApplyOptions, Target};
use crate::context::{context_ignore, Dockerignore};
use crate::engine::hooks::ExecHook;
use crate::engine::Engine;
use crate::error::{Failure, Interrupted, UsageError};
use crate::output::{Mode, Printer};
use crate::plan::image::{stage_images, Owner};
use crate::plan::up::PlanOptions;
use crate::plan::watch::{self, Rule, ServiceWork};
use crate::stack::model::{env_list, WatchAction};
use crate::stack::LoadedStack;

/// Events closer than this are one burst.
const QUIET: Duration = Duration::from_millis(150);
/// A burst that goes on longer than this is acted on anyway.
const LONGEST: Duration = Duration::from_millis(1500);
/// Bound on the health wait after a rebuild or a restart.
const WAIT: Duration = Duration::from_secs(300);

/// `stackctl watch SERVICE…`: each service named must have rules. `up --watch SERVICE…`
/// (`each_named: false`) watches those of them (and every service when none is named) that
/// have some.
pub async fn watch(ctx: &Context, services: &[String], each_named: bool) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    crate::apply::swarm::refuse_watch(&loaded, if each_named { "watch" } else { "up --watch" })?;
    let wanted = check_services(&loaded, services)?;
    let rules = compile(&loaded, &wanted, each_named && !services.is_empty())?;
    let engine = connect(ctx, &loaded).await?;
    let names: BTreeSet<&str> = rules.iter().map(|r| r.service.as_str()).collect();
    for service in &names {
        let container = crate::names::container(&loaded.stage, &loaded.project, service);
        if engine.container_running(&container).await? != Some(true) {
            return Err(Failure::new(format!(
                "service `{service}` is not running on stage `{}`",
                loaded.stage
            ))
            .with_hint("`stackctl up --watch` starts the stage, then watches it")
            .into());
        }
    }

    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reading a file (our own syncs do) is no change.
        let counts = match event.kind {
            EventKind::Access(notify::event::AccessKind::Close(
                notify::event::AccessMode::Write,
            )) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        if counts {
            for path in event.paths {
                let _ = sender.send(path);
            }
        }
    })
    .map_err(|err| Failure::new(format!("cannot watch files: {err}")))?;
    let mut watched = BTreeSet::new();
    for rule in &rules {
        let (path, mode) = if rule.path.is_dir() {
            (rule.path.clone(), RecursiveMode::Recursive)
        } else {
            // A file is watched through its directory: editors replace files on save.
            let parent = rule.path.parent().unwrap_or(Path::new("/")).to_path_buf();
            (parent, RecursiveMode::NonRecursive)
        };
        if watched.insert(path.clone()) {
            watcher
                .watch(&path, mode)
                .map_err(|err| Failure::new(format!("cannot watch `{}`: {err}", path.display())))?;
        }
    }

    let out = Out {
        printer: printer.clone(),
    };
    for rule in rules.iter().filter(|r| r.initial_sync && r.action.syncs()) {
        let container = crate::names::container(&loaded.stage, &loaded.project, &rule.service);
        let started = Instant::now();
        let files = initial_files(rule);
        let result = engine.sync_files(&container, &files).await;
        out.result(
            &rule.service,
            "sync",
            started,
            result.map(|n| files_text(n, 0)).map_err(Into::into),
        );
    }
    let list: Vec<&str> = names.iter().copied().collect();
    let watching = format!("{} for {}", plural(watched.len(), "path"), list.join(", "));
    if printer.mode == Mode::Json {
        printer.json_event(
            &list.join(","),
            "watch",
            "watch",
            "started",
            0,
            Some(&watching),
            None,
        );
    } else {
        out.status(&format!("watching {watching} (Ctrl-C to stop)"));
    }

    let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        let deadline = match first {
            Some(first) => (last + QUIET).min(first + LONGEST),
            None => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            event = events.recv() => {
                let Some(path) = event else {
                    return Err(Failure::new("the file watcher stopped").into());
                };
                pending.insert(path);
                last = Instant::now();
                first.get_or_insert(last);
            }
            _ = tokio::time::sleep_until(deadline.into()), if first.is_some() => {
                first = None;
                let changed = std::mem::take(&mut pending);
                let works = watch::work(&rules, &changed);
                if works.is_empty() {
                    continue;
                }
                let acting = act(&engine, &loaded, works, &out);
                tokio::pin!(acting);
                tokio::select! {
                    () = &mut acting => {}
                    _ = crate::interrupt::wait() => {
                        // A restart under way finishes: the service runs again.
                        restarts::finish(acting).await;
                        return Err(Interrupted.into());
                    }
                }
            }
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        }
    }
}

/// The rules of the wanted services, with absolute paths and their ignore rules. A service
/// named on the command line must have some; with none named, the stage must have some.
fn compile(loaded: &LoadedStack, wanted: &[String], named: bool) -> Result<Vec<Rule>> {
    let images = stage_images(loaded);
    let mut rules = Vec::new();
    for name in wanted {
        let service = &loaded.stack.services[name];
        let develop = service.develop.as_ref().map(|d| d.watch.as_slice());
        let Some(develop) = develop.filter(|d| !d.is_empty()) else {
            if named {
                return Err(UsageError::new(format!(
                    "service `{name}` has no `develop.watch` rules"
                ))
                .with_hint("add `develop: {watch: [{path: ./src, action: sync, target: /app}]}` to the service (see `stackctl watch` in the manual: docs/src/commands.md#stackctl-watch)")
                .into());
            }
            continue;
        };
        let context = match &service.build {
            Some(_) => images
                .iter()
                .find(|b| b.owner == Owner::Service && b.name == *name)
                .map(|b| {
                    let root = canonical(&b.request.context);
                    let ignore = context_ignore(&root).unwrap_or_default();
                    (root, ignore)
                }),
            None => None,
        };
        for (index, rule) in develop.iter().enumerate() {
            let index_text = index.to_string();
            let at = |key: &str| {
                let mut path = vec!["services", name.as_str(), "develop", "watch"];
                path.push(&index_text);
                if !key.is_empty() {
                    path.push(key);
                }
                loaded
                    .locate_value(&path)
                    .map(|l| format!("{l}: "))
                    .unwrap_or_default()
            };
            if rule.action == WatchAction::Rebuild && service.build.is_none() {
                return Err(UsageError::new(format!(
                    "{}service `{name}`: `action: rebuild` needs a `build:` (the service runs a pulled image)",
                    at("action")
                ))
                .with_hint("use `sync` or `restart`, or give the service a `build:`")
                .into());
            }
            let path = loaded.dir.join(&rule.path);
            if !path.exists() {
                return Err(UsageError::new(format!(
                    "{}service `{name}`: watch path `{}` does not exist",
                    at("path"),
                    rule.path
                ))
                .with_hint("paths of `develop.watch` are relative to the project directory")
                .into());
            }
            let patterns = |list: &[String], key: &str| -> Result<Dockerignore> {
                Dockerignore::parse(&list.join("\n")).map_err(|err| {
                    UsageError::new(format!("{}service `{name}`: {err}", at(key))).into()
                })
            };
            rules.push(Rule {
                service: name.clone(),
                action: rule.action,
                path: canonical(&path),
                target: rule.target.clone(),
                ignore: patterns(&rule.ignore, "ignore")?,
                include: if rule.include.is_empty() {
                    None
                } else {
                    Some(patterns(&rule.include, "include")?)
                },
                context: context.clone(),
                exec: rule.exec.clone(),
                initial_sync: rule.initial_sync,
            });
        }
    }
    if rules.is_empty() {
        return Err(UsageError::new(format!(
            "no service of stage `{}` has `develop.watch` rules",
            loaded.stage
        ))
        .with_hint("add `develop: {watch: [{path: ./src, action: sync, target: /app}]}` to a service (see `stackctl watch` in the manual: docs/src/commands.md#stackctl-watch)")
        .into());
    }
    Ok(rules)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Every file a sync rule takes under its path, for `initial_sync`.
fn initial_files(rule: &Rule) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut stack = vec![rule.path.clone()];
    while let Some(path) = stack.pop() {
        let Some(rel) = rule.takes(&path) else {
            continue;
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            }
            Ok(_) => {
                if let Some(target) = rule.target_of(&rel) {
                    files.push((path, target));
                }
            }
            Err(_) => {}
        }
    }
    files
}

/// The work of one burst, each service's at once.
async fn act(
    engine: &Engine,
    loaded: &LoadedStack,
    works: BTreeMap<String, ServiceWork>,
    out: &Out,
) {
    join_all(
        works
            .into_iter()
            .map(|(service, work)| act_on(engine, loaded, service, work, out)),
    )
    .await;
}

async fn act_on(
    engine: &Engine,
    loaded: &LoadedStack,
    service: String,
    work: ServiceWork,
    out: &Out,
) {
    let started = Instant::now();
    let container = crate::names::container(&loaded.stage, &loaded.project, &service);
    if work.rebuild {
        let changed = work
            .first_change
            .as_deref()
            .map(|p| shown(loaded, p))
            .unwrap_or_default();
        let result = rebuild(engine, loaded, &service, &changed).await;
        out.result(
            &service,
            "rebuild",
            started,
            result.map(|()| "rebuilt and recreated".to_string()),
        );
        return;
    }
    let mut done = Vec::new();
    if !work.syncs.is_empty() {
        let (present, gone): (Vec<_>, Vec<_>) = work
            .syncs
            .iter()
            .partition(|s| s.local.symlink_metadata().is_ok());
        let files: Vec<(PathBuf, String)> = present
            .iter()
            .map(|s| (s.local.clone(), s.target.clone()))
            .collect();
        let removed: Vec<String> = gone.iter().map(|s| s.target.clone()).collect();
        let result = sync(engine, &container, &files, &removed).await;
        match result {
            Ok(text) => done.push(text),
            Err(err) => {
                out.result(&service, "sync", started, Err(err));
                return;
            }
        }
    }
    if work.restart {
        if let Err(err) = restart(engine, loaded, &service).await {
            let action = if done.is_empty() {
                "restart"
            } else {
                "sync+restart"
            };
            out.result(&service, action, started, Err(err));
            return;
        }
        done.push("restarted".to_string());
    }
    for exec in &work.execs {
        let hook = ExecHook {
            command: exec.command.clone(),
            user: exec.user.clone(),
            working_dir: exec.working_dir.clone(),
            environment: env_list(&exec.environment),
            privileged: exec.privileged,
        };
        let result = engine
            .exec_hook(&container, &hook, None)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|run| {
                let run = run.unwrap_or_default();
                let code = run.exit_code;
                if code == 0 {
                    Ok(())
                } else {
                    let keep = run.last_lines.len().saturating_sub(5);
                    let tail = &run.last_lines[keep..];
                    Err(anyhow::anyhow!(
                        "`{}` exited with {code}{}",
                        exec.command.join(" "),
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", tail.join(" / "))
                        }
                    ))
                }
            });
        if let Err(err) = result {
            out.result(&service, "sync+exec", started, Err(err));
            return;
        }
        done.push(format!("ran `{}`", exec.command.join(" ")));
    }
    let action = match (work.syncs.is_empty(), work.restart, work.execs.is_empty()) {
        (false, true, _) => "sync+restart",
        (true, true, _) => "restart",
        (false, false, false) => "sync+exec",
        _ => "sync",
    };
    out.result(&service, action, started, Ok(join_and(&done)));
}

/// Copy `files` in and remove `removed`; what was done (`synced 2 files, removed 1`).
async fn sync(
    engine: &Engine,
    container: &str,
    files: &[(PathBuf, String)],
    removed: &[String],
) -> Result<String> {
    let sent = engine.sync_files(container, files).await?;
    if !removed.is_empty() {
        let mut cmd = vec!["rm".to_string(), "-rf".to_string(), "--".to_string()];
        cmd.extend(removed.iter().cloned());
        let hook = ExecHook {
            command: cmd,
            ..Default::default()
        };
        let run = engine
            .exec_hook(container, &hook, None)
            .await?
            .unwrap_or_default();
        if run.exit_code != 0 {
            anyhow::bail!(
                "removing {} in the container failed ({}): {}",
                removed.join(" "),
                run.exit_code,
                run.last_lines.join("\n").trim()
            );
        }
    }
    Ok(files_text(sent, removed.len()))
}

fn files_text(sent: usize, removed: usize) -> String {
    match (sent, removed) {
        (sent, 0) => format!("synced {}", plural(sent, "file")),
        (0, removed) => format!("removed {}", plural(removed, "file")),
        (sent, removed) => format!("synced {}, removed {removed}", plural(sent, "file")),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A changed path as the user sees it: relative to the project directory.
fn shown(loaded: &LoadedStack, path: &Path) -> String {
    let dir = canonical(&loaded.dir);
    path.strip_prefix(&dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A printer that says nothing: the executor's own lines would bury the one line per
/// action; its errors come back as values and are printed by `Out`.
fn silent(stage: &str) -> Printer {
    Printer {
        mode: Mode::Plain,
        quiet: true,
        verbose: 0,
        color: false,
        stage: stage.to_string(),
    }
}

/// Rebuild the service's image (its inputs changed, whatever the digest says) and recreate
/// the service, as `up SERVICE` would, with the stage locked meanwhile.
async fn rebuild(
    engine: &Engine,
    loaded: &LoadedStack,
    service: &str,
    changed: &str,
) -> Result<()> {
    let quiet = silent(&loaded.stage);
    let _lock = crate::lock::acquire(engine, &loaded.project, &loaded.stage, WAIT, &quiet).await?;
    let mut options = PlanOptions {
        services: vec![service.to_string()],
        ..Default::default()
    };
    if let Some(build) = stage_images(loaded)
        .into_iter()
        .find(|b| b.owner == Owner::Service && b.name == service)
    {
        options.stale.insert(
            build.request.tag,
            format!("watched file changed: {changed}"),
        );
    }
    let target = DockerTarget::new(engine, loaded);
    let first = apply::up::observe_and_plan(engine, &target, loaded, &mut options, true).await?;
    let progress = quiet.progress();
    apply::up::converge(
        engine,
        &target,
        loaded,
        first,
        options,
        &ApplyOptions::new(true, WAIT),
        &progress,
    )
    .await
}

/// Restarts under way: an interrupt lets them finish (stopped, then started again) before
/// `watch` exits; only the wait for health after them is given up.
mod restarts {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    static UNDER_WAY: AtomicUsize = AtomicUsize::new(0);
    static ENDED: Notify = Notify::const_new();

    /// Counts one restart as under way while it lives.
    pub struct Guard;

    impl Guard {
        pub fn new() -> Guard {
            UNDER_WAY.fetch_add(1, Ordering::SeqCst);
            Guard
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            UNDER_WAY.fetch_sub(1, Ordering::SeqCst);
            ENDED.notify_waiters();
        }
    }

    /// Drive `acting` until no restart is under way (or it ends).
    pub async fn finish(mut acting: Pin<&mut impl Future<Output = ()>>) {
        loop {
            let ended = ENDED.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if UNDER_WAY.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::select! {
                () = &mut acting => return,
                () = ended => {}
            }
        }
    }
}

/// Restart the service's container through the executor `restart` uses, then wait for its
/// health. The stop and the start are not given up on an interrupt (`restarts`).
async fn restart(engine: &Engine, loaded: &LoadedStack, service: &str) -> Result<()> {
    let _under_way = restarts::Guard::new();
    let quiet = silent(&loaded.stage);
    let _lock = crate::lock::acquire(engine, &loaded.project, &loaded.stage, WAIT, &quiet).await?;
    let target = DockerTarget::new(engine, loaded);
    let observed = target.observe().await?;
    let wanted = vec![service.to_string()];
    let options = PlanOptions {
        services: wanted.clone(),
        ..Default::default()
    };
    let up_plan = crate::plan::up::plan(loaded, &observed.images, &observed, &options)
        .map_err(|e| e.into_error(loaded))?;
    let plan = crate::plan::restart::plan(up_plan, &wanted)
        .map_err(|_| Failure::new(format!("service `{service}` has no container to restart")))?;
    // A switch nobody turns on (its sender lives to the end of the restart).
    let (_never, shielded) = apply::Interrupt::switch();
    let mut target = target;
    target.interrupt = shielded.clone();
    let mut options = ApplyOptions::new(false, WAIT);
    options.interrupt = shielded;
    let containers: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|action| match action {
            crate::plan::up::Action::Service { spec, .. } => Some(spec.name.clone()),
            _ => None,
        })
        .collect();
    apply::execute(&target, &plan, &options, &quiet.progress()).await?;
    drop(_under_way);
    let deadline = Instant::now() + WAIT;
    for container in &containers {
        apply::docker::wait_healthy(engine, service, container, deadline).await?;
    }
    Ok(())
}

/// The one line (or JSON event) per action.
struct Out {
    printer: Printer,
}

impl Out {
    fn status(&self, text: &str) {
        self.printer.status(text);
    }

    fn result(&self, service: &str, action: &str, started: Instant, result: Result<String>) {
        let elapsed = started.elapsed();
        match (self.printer.mode, result) {
            (Mode::Json, Ok(text)) => self.printer.json_event(
                service,
                "watch",
                action,
                "done",
                elapsed.as_millis(),
                Some(&text),
                None,
            ),
            (Mode::Json, Err(err)) => self.printer.json_event(
                service,
                "watch",
                action,
                "failed",
                elapsed.as_millis(),
                Some(&format!("{err:#}")),
                None,
            ),
            (_, Ok(text)) => self.printer.status(&format!(
                "{service}: {text} ({:.1}s)",
                elapsed.as_secs_f64()
            )),
            (_, Err(err)) => self
                .printer
                .warn(&format!("{service}: {action} failed: {err:#}")),
        }
    }
}
