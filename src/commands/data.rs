//! `stackctl data ls | save | load | copy`: a stage's named volumes and data containers
//! (the work is in `crate::data`; this file reads the flags, locks, and reports).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{connect, load_stack, Context};
use crate::cli::{DataArgs, DataCommand, DataCopyArgs, DataLoadArgs, DataLsArgs, DataSaveArgs};
use crate::data::format::{ArchiveWriter, BadArchive, Checksums, Msg};
use crate::data::{self, Helpers, RestoreOptions};
use crate::error::{Failure, UsageError};
use crate::output::Mode;

pub async fn run(ctx: &Context, args: &DataArgs) -> Result<i32> {
    match &args.command {
        DataCommand::Ls(args) => ls(ctx, args).await,
        DataCommand::Save(args) => save(ctx, args).await,
        DataCommand::Load(args) => load(ctx, args).await,
        DataCommand::Copy(args) => copy(ctx, args).await,
    }
}

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    kind: &'static str,
    /// The engine's volume or data container.
    object: String,
    path: String,
    exists: bool,
    /// Bytes of file content.
    size: Option<u64>,
    /// Files, directories and links in it (its top directory left out).
    entries: Option<u64>,
    used_by: Vec<String>,
}

async fn ls(ctx: &Context, args: &DataLsArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let whose = format!("stage `{}`", loaded.stage);
    let all = data::stage_items(&loaded);
    if all.is_empty() && args.names.is_empty() {
        printer.status(&format!("{whose} has no named volume or data container"));
        return Ok(0);
    }
    let items = data::select(&all, &args.names, &whose)?;
    let engine = connect(ctx, &loaded).await?;
    let sizes = data::measure_items(&engine, &loaded, &items).await?;
    let rows: Vec<Row> = items
        .iter()
        .zip(sizes)
        .map(|(item, sum)| Row {
            name: item.name.clone(),
            kind: match item.kind {
                data::format::Kind::Volume => "volume",
                data::format::Kind::Data => "data",
            },
            object: data::engine_object(&loaded, item),
            path: match item.kind {
                data::format::Kind::Volume => String::new(),
                data::format::Kind::Data => item.path.clone(),
            },
            exists: sum.is_some(),
            size: sum.as_ref().map(|s| s.content_bytes),
            entries: sum.as_ref().map(|s| s.entries.saturating_sub(1)),
            used_by: item
                .mounts
                .iter()
                .map(|m| format!("{}:{}", m.service, m.target))
                .collect(),
        })
        .collect();
    if printer.mode == Mode::Json {
        for row in &rows {
            printer.data(&serde_json::to_string(row)?);
        }
        return Ok(0);
    }
    let mut table = vec![[
        "NAME".to_string(),
        "KIND".into(),
        "PATH".into(),
        "SIZE".into(),
        "ENTRIES".into(),
        "USED BY".into(),
    ]];
    for row in &rows {
        table.push([
            row.name.clone(),
            row.kind.to_string(),
            row.path.clone(),
            row.size
                .map(crate::output::human_bytes)
                .unwrap_or_else(|| "missing".into()),
            row.entries.map(|e| e.to_string()).unwrap_or_default(),
            row.used_by.join(", "),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    printer.data(&text);
    Ok(0)
}

/// Where `save` writes: a file under a temporary name (renamed at the end, so a failed or
/// interrupted save leaves no half archive under the name asked for), or stdout.
struct Output {
    writer: Box<dyn Write + Send>,
    partial: Option<(PathBuf, PathBuf)>,
}

/// The temporary file of a save, removed when this drops (on every path out of `save`,
/// an interrupt's included) unless it was moved into place.
struct PartialFile(Option<PathBuf>);

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The temporary file name of a save of `name` by process `pid`.
fn partial_name(name: &str, pid: u32) -> String {
    format!(".{name}.partial-{pid}")
}

/// Remove the temporary files that saves to `path` killed before they could clean up left
/// beside it (`.NAME.partial-PID` whose process is gone); returns those removed.
fn remove_stale_partials(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = partial_name(&name, 0);
    let prefix = prefix.trim_end_matches('0');
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(prefix)
            .and_then(|pid| pid.parse::<i32>().ok())
            .filter(|&pid| pid > 0)
        else {
            continue;
        };
        if !process_alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Whether a process of this id exists (one of another user counts).
fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn open_output(path: Option<&Path>) -> Result<Output> {
    let Some(path) = path else {
        return Ok(Output {
            writer: Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            )),
            partial: None,
        });
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let partial = path.with_file_name(partial_name(&name, std::process::id()));
    let file = std::fs::File::create(&partial).map_err(|e| {
        Failure::new(format!(
            "cannot write `{}`: {}",
            path.display(),
            crate::error::io_reason(&e)
        ))
    })?;
    Ok(Output {
        writer: Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
        partial: Some((partial, path.to_path_buf())),
    })
}

fn write_error(err: std::io::Error, to: &str) -> anyhow::Error {
    Failure::new(format!(
        "cannot write the archive to {to}: {}",
        crate::error::io_reason(&err)
    ))
    .into()
}

async fn save(ctx: &Context, args: &DataSaveArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let whose = format!("stage `{}`", loaded.stage);
    let items = data::select(&data::stage_items(&loaded), &args.names, &whose)?;
    if args.output.is_none() {
        if std::io::stdout().is_terminal() {
            return Err(
                UsageError::new("refusing to write a binary archive to the terminal")
                    .with_hint("`-o FILE`, or redirect stdout (`> backup.tar.zst`)")
                    .into(),
            );
        }
        if printer.mode == Mode::Json {
            return Err(UsageError::new(
                "`--json` prints events on stdout, which carries the archive",
            )
            .with_hint("`-o FILE` writes the archive to a file")
            .into());
        }
    }
    let to = match &args.output {
        Some(path) => format!("`{}`", path.display()),
        None => "stdout".to_string(),
    };
    let level = (!args.no_compress).then_some(args.level);
    let engine = connect(ctx, &loaded).await?;
    let timeout = Duration::from_secs(args.timeout);
    let _lock =
        crate::lock::acquire(&engine, &loaded.project, &loaded.stage, timeout, &printer).await?;
    data::recover_dead_loads(&engine, &loaded, &printer).await?;
    if let Some(path) = &args.output {
        for stale in remove_stale_partials(path) {
            printer.status(&format!(
                "removed `{}`, left by a save that did not finish",
                stale.display()
            ));
        }
    }
    let output = open_output(args.output.as_deref())?;
    let partial = output.partial.clone();
    let mut partial_file = PartialFile(partial.as_ref().map(|(p, _)| p.clone()));
    let progress = printer.progress();
    let stopped = if args.online {
        Vec::new()
    } else {
        data::stop_users(&engine, &loaded, &data::users(&items), timeout, &progress).await?
    };
    let mut helpers = Helpers::new(&engine, &loaded);
    let result = async {
        let compression = if level.is_some() { "zstd" } else { "none" };
        let manifest = data::manifest(&loaded, &items, compression);
        let writer = std::cell::RefCell::new(
            ArchiveWriter::new(output.writer, level).map_err(|e| write_error(e, &to))?,
        );
        writer
            .borrow_mut()
            .manifest(&manifest)
            .map_err(|e| write_error(e, &to))?;
        let sink = |msg: Msg| {
            let result = match msg {
                Msg::Start(index) => {
                    writer.borrow_mut().start(&items[index].entry);
                    Ok(())
                }
                Msg::Data(data) => writer.borrow_mut().data(&data),
                Msg::End => writer.borrow_mut().end(),
                Msg::Manifest(_) | Msg::Trailer(_) => Ok(()),
            };
            let result = result.map_err(|e| write_error(e, &to));
            async move { result }
        };
        let sums = data::read_items(
            &engine,
            &loaded,
            &items,
            &mut helpers,
            &progress,
            ("saving", "saved"),
            sink,
        )
        .await?;
        let mut out = writer
            .into_inner()
            .finish(&Checksums { items: sums })
            .map_err(|e| write_error(e, &to))?;
        out.flush().map_err(|e| write_error(e, &to))?;
        drop(out);
        if let Some((partial, path)) = &partial {
            std::fs::rename(partial, path).map_err(|e| {
                Failure::new(format!(
                    "cannot move the archive into place at `{}`: {}",
                    path.display(),
                    crate::error::io_reason(&e)
                ))
            })?;
            partial_file.0 = None;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    drop(partial_file);
    let cleaned = helpers.remove_all().await;
    let started = data::start_again(&engine, &loaded, &stopped, timeout, &progress).await;
    let result = result.and(cleaned).and(started);
    progress.summary("data save", result.is_ok());
    result.map(|()| 0)
}

/// The archive's steps, read on a thread of their own from `input`.
fn spawn_reader(input: Box<dyn std::io::Read + Send>) -> mpsc::Receiver<Result<Msg, BadArchive>> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        data::format::read_archive(input, &mut |msg| tx.blocking_send(msg).is_ok());
    });
    rx
}

async fn load(ctx: &Context, args: &DataLoadArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let (input, source): (Box<dyn std::io::Read + Send>, String) = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                UsageError::new(format!(
                    "cannot read `{}`: {}",
                    path.display(),
                    crate::error::io_reason(&e)
                ))
            })?;
            (Box::new(file), format!("the archive `{}`", path.display()))
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(
                    UsageError::new("refusing to read an archive from the terminal")
                        .with_hint("`-i FILE`, or pipe the archive in (`< backup.tar.zst`)")
                        .into(),
                );
            }
            (
                Box::new(std::io::stdin()),
                "the archive on stdin".to_string(),
            )
        }
    };
    let engine = connect(ctx, &loaded).await?;
    let timeout = Duration::from_secs(args.timeout);
    let _lock =
        crate::lock::acquire(&engine, &loaded.project, &loaded.stage, timeout, &printer).await?;
    data::recover_dead_loads(&engine, &loaded, &printer).await?;
    let mut rx = spawn_reader(input);
    let first = tokio::select! {
        first = rx.recv() => first,
        _ = crate::interrupt::wait() => return Err(crate::error::Interrupted.into()),
    };
    let manifest = match first {
        Some(Ok(Msg::Manifest(manifest))) => manifest,
        Some(Err(bad)) => {
            return Err(Failure::new(format!("{source} is refused: {}", bad.0))
                .with_hint("give an archive written by `stackctl data save`")
                .into())
        }
        _ => {
            return Err(Failure::new(format!(
                "{source} is refused: it does not begin with a manifest"
            ))
            .into())
        }
    };
    if manifest.project != loaded.project {
        return Err(UsageError::new(format!(
            "{source} holds data of project `{}` (stage `{}`), not of `{}`",
            manifest.project, manifest.stage, loaded.project
        ))
        .with_hint("load it in that project's directory (`-C DIR`)")
        .into());
    }
    let stage_items = data::stage_items(&loaded);
    let known = data::item_names(&stage_items);
    for item in &manifest.items {
        if !stage_items
            .iter()
            .any(|i| i.name == item.name && i.kind == item.kind && i.path == item.path)
        {
            return Err(UsageError::new(format!(
                "{source} holds {} `{}` ({}), which stage `{}` does not have",
                item.kind.word(),
                item.name,
                item.path,
                loaded.stage
            ))
            .with_hint(format!(
                "stage `{}` has: {}; name the ones to load (`data load NAME…`) or add it to the stack file",
                loaded.stage,
                known.join(", ")
            ))
            .into());
        }
    }
    let in_archive = data::item_names(&manifest.items);
    for name in &args.names {
        if !in_archive.contains(name) {
            return Err(UsageError::new(format!("{source} holds no `{name}`"))
                .with_hint(format!("it holds: {}", in_archive.join(", ")))
                .into());
        }
    }
    let selected: Vec<bool> = manifest
        .items
        .iter()
        .map(|i| args.names.is_empty() || args.names.contains(&i.name))
        .collect();
    let progress = printer.progress();
    let options = RestoreOptions {
        force: args.force,
        timeout,
        source,
    };
    let result = data::restore(
        &engine,
        &loaded,
        &manifest,
        &selected,
        &mut rx,
        &options,
        &progress,
        || {},
    )
    .await;
    progress.summary("data load", result.is_ok());
    result.map(|()| 0)
}

async fn copy(ctx: &Context, args: &DataCopyArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if args.from == loaded.stage {
        return Err(UsageError::new(format!(
            "`--from {}` is this stage: copying a stage onto itself does nothing",
            args.from
        ))
        .with_hint("name another stage of the project, or `-e STAGE` for the target")
        .into());
    }
    let mut from_project = ctx.project.clone();
    from_project.stage = args.from.clone();
    if !from_project.stack_file().exists() {
        return Err(UsageError::new(format!(
            "stage `{}` has no stack file ({})",
            args.from,
            from_project.display_path(&from_project.stack_file())
        ))
        .with_hint("`--from` names a stage of this project (one of `stacks/*.yml`)")
        .into());
    }
    let source = crate::stack::load(&from_project)?;
    crate::output::register_secrets(source.secrets.iter().cloned());
    if source.project != loaded.project {
        return Err(UsageError::new(format!(
            "stage `{}` is of project `{}`, stage `{}` of `{}`",
            source.stage, source.project, loaded.stage, loaded.project
        ))
        .with_hint("both stack files must give the same `name:` (or none)")
        .into());
    }
    let target_items = data::stage_items(&loaded);
    let whose = format!("stage `{}`", loaded.stage);
    let items = data::select(&target_items, &args.names, &whose)?;
    let source_items = data::stage_items(&source);
    for item in &items {
        if !source_items
            .iter()
            .any(|i| i.name == item.name && i.kind == item.kind && i.path == item.path)
        {
            return Err(UsageError::new(format!(
                "stage `{}` has no {} `{}` ({}) to copy",
                source.stage,
                item.kind.word(),
                item.name,
                item.path
            ))
            .with_hint(format!(
                "it has: {}; name the ones to copy",
                data::item_names(&source_items).join(", ")
            ))
            .into());
        }
    }
    let engine = connect(ctx, &loaded).await?;
    let timeout = Duration::from_secs(args.timeout);
    // Both stages locked, always in the same order: two copies the other way round wait
    // instead of holding one lock each.
    let (first, second) = if source.stage < loaded.stage {
        (&source.stage, &loaded.stage)
    } else {
        (&loaded.stage, &source.stage)
    };
    let _first = crate::lock::acquire(&engine, &loaded.project, first, timeout, &printer).await?;
    let _second = crate::lock::acquire(&engine, &loaded.project, second, timeout, &printer).await?;
    data::recover_dead_loads(&engine, &source, &printer).await?;
    data::recover_dead_loads(&engine, &loaded, &printer).await?;
    let manifest = data::manifest(&source, &items, "none");
    let selected = vec![true; items.len()];
    let progress = printer.progress();
    let options = RestoreOptions {
        force: args.force,
        timeout,
        source: format!("the copy from stage `{}`", source.stage),
    };
    let (tx, mut rx) = mpsc::channel::<Result<Msg, BadArchive>>(8);
    let (go, wait_go) = tokio::sync::oneshot::channel::<()>();
    let produce = async {
        // Nothing is read (or stopped) on the source until the target is ready.
        if wait_go.await.is_err() {
            return Ok(());
        }
        let stopped = if args.online {
            Vec::new()
        } else {
            data::stop_users(&engine, &source, &data::users(&items), timeout, &progress).await?
        };
        let mut helpers = Helpers::new(&engine, &source);
        let sink = |msg: Msg| {
            let tx = tx.clone();
            async move {
                tx.send(Ok(msg))
                    .await
                    .map_err(|_| anyhow::anyhow!("the target stopped reading"))
            }
        };
        let read = data::read_items(
            &engine,
            &source,
            &items,
            &mut helpers,
            &progress,
            ("reading", "read"),
            sink,
        )
        .await;
        if let Ok(sums) = &read {
            let _ = tx
                .send(Ok(Msg::Trailer(Checksums {
                    items: sums.clone(),
                })))
                .await;
        }
        drop(tx);
        let cleaned = helpers.remove_all().await;
        let started = data::start_again(&engine, &source, &stopped, timeout, &progress).await;
        read.map(|_| ()).and(cleaned).and(started)
    };
    let restore = async {
        let result = data::restore(
            &engine,
            &loaded,
            &manifest,
            &selected,
            &mut rx,
            &options,
            &progress,
            move || {
                let _ = go.send(());
            },
        )
        .await;
        drop(rx);
        result
    };
    let (produced, restored) = tokio::join!(produce, restore);
    // The target's error says what happened to the target; the source's is reported when
    // the target has none (a source that failed shows on the target as a stream cut short).
    let result = match (restored, produced) {
        (Err(err), Err(source_err)) if is_cut_short(&err) => Err(source_err),
        (Err(err), _) => Err(err),
        (Ok(()), produced) => produced,
    };
    progress.summary("data copy", result.is_ok());
    result.map(|()| 0)
}

/// A restore that failed only because its stream ended early.
fn is_cut_short(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Failure>()
        .is_some_and(|f| f.message.contains("the stream ended before its checksums"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_partial_files_of_dead_saves_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("b.tar.zst");
        // A process that has ended: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        for pid in [dead, live] {
            std::fs::write(dir.path().join(partial_name("b.tar.zst", pid)), "x").unwrap();
        }
        std::fs::write(dir.path().join(partial_name("other.tar", dead)), "x").unwrap();
        let removed = remove_stale_partials(&archive);
        assert_eq!(
            removed,
            vec![dir.path().join(partial_name("b.tar.zst", dead))]
        );
        assert!(dir.path().join(partial_name("b.tar.zst", live)).exists());
        assert!(dir.path().join(partial_name("other.tar", dead)).exists());
    }
}
