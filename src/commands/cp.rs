//! `stackctl cp SERVICE:PATH DEST` and `stackctl cp SRC SERVICE:PATH`: files and directories
//! between a service's container (running or stopped) and the local filesystem, through the
//! engine's archive API (so a remote engine works too), streamed in both directions: nothing
//! is held whole in memory. `-` as DEST writes the tar archive to stdout.
//!
//! Like `docker cp`: a destination that is an existing directory receives the source under
//! its own name; any other destination is the new name of the source. Local paths are
//! relative to the current directory; container paths to the container's `/`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{connect, load_stack, Context};
use crate::cli::CpArgs;
use crate::engine::copy::PathKind;
use crate::engine::Engine;
use crate::error::{Failure, Interrupted, UsageError};
use crate::output::{human_bytes, Mode};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    /// `-`: the tar archive on stdout.
    Stdout,
    Container {
        service: String,
        path: String,
    },
}

/// `SERVICE:PATH` is in a container; a path starting with `/` or `.`, or without `:`, is local
/// (`./a:b` names a local file with a colon).
fn parse(arg: &str) -> Location {
    if arg == "-" {
        return Location::Stdout;
    }
    if !arg.starts_with(['/', '.']) {
        if let Some((service, path)) = arg.split_once(':') {
            if !service.is_empty() {
                let path = if path.starts_with('/') {
                    path.to_string()
                } else {
                    format!("/{path}")
                };
                return Location::Container {
                    service: service.to_string(),
                    path,
                };
            }
        }
    }
    Location::Local(PathBuf::from(arg))
}

pub async fn run(ctx: &Context, args: &CpArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let (source, dest) = (parse(&args.source), parse(&args.dest));
    let (service, path, local, into_container) = match (source, dest) {
        (Location::Container { service, path }, Location::Local(local)) => {
            (service, path, Some(local), false)
        }
        (Location::Container { service, path }, Location::Stdout) => {
            if printer.mode == Mode::Json {
                return Err(UsageError::new(
                    "`--json` does not apply to `cp … -`: stdout carries the tar archive",
                )
                .with_hint("leave out `--json`")
                .into());
            }
            (service, path, None, false)
        }
        (Location::Local(local), Location::Container { service, path }) => {
            (service, path, Some(local), true)
        }
        _ => {
            return Err(UsageError::new(
                "`cp` copies between a service's container and here: one side is `SERVICE:PATH`, the other a local path",
            )
            .with_hint("stackctl cp api:/app/logs ./logs   or   stackctl cp ./seed.sql db:/tmp/")
            .into())
        }
    };
    super::check_services(&loaded, std::slice::from_ref(&service))?;
    let engine = connect(ctx, &loaded).await?;
    let container = crate::plan::container::container_name(&loaded, &service);
    if engine.container_running(&container).await?.is_none() {
        return Err(Failure::new(format!(
            "service `{service}` has no container on stage `{}`",
            loaded.stage
        ))
        .with_hint(format!("`stackctl up {service}` creates it"))
        .into());
    }
    let object = match &local {
        Some(local) if into_container => format!("{} to {service}:{path}", local.display()),
        Some(local) => format!("{service}:{path} to {}", local.display()),
        None => format!("{service}:{path} to stdout"),
    };
    let progress = printer.progress();
    let line = progress.line("copy", &object);
    line.step("copying");
    let result = match (local, into_container) {
        (Some(local), true) => copy_in(&engine, &container, &service, &local, &path).await,
        (Some(local), false) => copy_out(&engine, &container, &service, &path, &local).await,
        (None, _) => to_stdout(&engine, &container, &service, &path).await,
    };
    match result {
        Ok(bytes) => {
            line.done("copied", Some(&human_bytes(bytes)));
            Ok(0)
        }
        Err(err) if err.downcast_ref::<crate::error::ExitWith>().is_some() => Err(err),
        Err(err) => {
            line.fail("copy", &format!("{err:#}"));
            Err(err)
        }
    }
}

/// The path must exist in the container: a clear error naming it, not the engine's 404.
async fn check_exists(engine: &Engine, container: &str, service: &str, path: &str) -> Result<()> {
    if engine.path_kind(container, path).await?.is_none() {
        return Err(Failure::new(format!(
            "no `{path}` in the container of service `{service}`"
        ))
        .into());
    }
    Ok(())
}

/// The archive of `path` as raw tar on stdout.
async fn to_stdout(engine: &Engine, container: &str, service: &str, path: &str) -> Result<u64> {
    check_exists(engine, container, service, path).await?;
    let mut stream = engine.download(container, path);
    let mut out = tokio::io::stdout();
    let mut bytes = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = stream.next() => chunk,
            _ = crate::interrupt::wait() => return Err(Interrupted.into()),
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        let written = tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await;
        written.map_err(stdout_error)?;
    }
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(stdout_error)?;
    Ok(bytes)
}

/// A reader that went away (`stackctl cp api:/data - | head -c 10`) ends us as it would any
/// tool of a pipeline: exit 141, nothing more said.
fn stdout_error(err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        crate::error::ExitWith(crate::error::exit::BROKEN_PIPE).into()
    } else {
        anyhow::Error::new(err).context("write to stdout")
    }
}

/// Container → local: the engine's tar stream unpacked as it arrives.
async fn copy_out(
    engine: &Engine,
    container: &str,
    service: &str,
    path: &str,
    local: &Path,
) -> Result<u64> {
    check_exists(engine, container, service, path).await?;
    let into_dir = local.is_dir();
    if !into_dir {
        let parent = parent_of(local);
        if !parent.is_dir() {
            return Err(UsageError::new(format!(
                "cannot copy to `{}`: directory `{}` does not exist",
                local.display(),
                parent.display()
            ))
            .into());
        }
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    let target = local.to_path_buf();
    let unpacking = tokio::task::spawn_blocking(move || {
        unpack(
            ChannelReader {
                receiver,
                current: Bytes::new(),
            },
            &target,
            into_dir,
        )
    });
    let mut stream = engine.download(container, path);
    let feed = async move {
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            if sender.send(chunk).await.is_err() {
                break;
            }
        }
        Ok::<u64, anyhow::Error>(bytes)
    };
    // Either way the sender is gone after this, and the unpacking sees the end of its input.
    let fed = tokio::select! {
        fed = feed => fed,
        _ = crate::interrupt::wait() => Err(Interrupted.into()),
    };
    let unpacked = unpacking.await.map_err(|e| anyhow!(e))?;
    let bytes = fed?;
    unpacked.with_context(|| format!("unpack into `{}`", local.display()))?;
    Ok(bytes)
}

/// A path's directory (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Unpack a tar archive: into `dest` when it is a directory (the archive's top entry keeps
/// its name); else as `dest` itself, through a fresh directory beside it that is removed on
/// every path. The tar crate refuses entries that would land outside the directory.
fn unpack(reader: impl Read, dest: &Path, into_dir: bool) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_overwrite(true);
    if into_dir {
        archive.unpack(dest)?;
        return Ok(());
    }
    let scratch = parent_of(dest).join(format!(".stackctl-cp-{}", crate::plan::task::short_id()));
    std::fs::create_dir(&scratch).with_context(|| format!("create `{}`", scratch.display()))?;
    let result = (|| -> Result<()> {
        archive.unpack(&scratch)?;
        let entries: Vec<PathBuf> = std::fs::read_dir(&scratch)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        let [top] = entries.as_slice() else {
            return Err(anyhow!(
                "the archive has {} top entries, not one",
                entries.len()
            ));
        };
        if top.is_dir() && dest.exists() {
            return Err(UsageError::new(format!(
                "cannot copy a directory onto the file `{}`",
                dest.display()
            ))
            .into());
        }
        std::fs::rename(top, dest).with_context(|| format!("move into `{}`", dest.display()))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Reads what an async task sends through a channel (in a blocking thread).
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Local → container: a tar archive built as the engine reads it.
async fn copy_in(
    engine: &Engine,
    container: &str,
    service: &str,
    local: &Path,
    path: &str,
) -> Result<u64> {
    let meta = std::fs::metadata(local).map_err(|e| {
        UsageError::new(format!(
            "cannot copy `{}`: {}",
            local.display(),
            crate::error::io_reason(&e)
        ))
    })?;
    let local_name = std::fs::canonicalize(local)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        .ok_or_else(|| anyhow!("`{}` has no name to copy under", local.display()))?;
    let (dir, name) = match engine.path_kind(container, path).await? {
        Some(PathKind::Directory) => (path.to_string(), PathBuf::from(local_name)),
        Some(PathKind::Other) if meta.is_dir() => {
            return Err(UsageError::new(format!(
                "cannot copy the directory `{}` onto the file `{path}` of service `{service}`",
                local.display()
            ))
            .into())
        }
        _ if path.ends_with('/') => {
            return Err(Failure::new(format!(
                "no directory `{path}` in the container of service `{service}`"
            ))
            .into())
        }
        _ => {
            let at = Path::new(path);
            let dir = at
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "/".into());
            let name = at.file_name().map(PathBuf::from).unwrap_or_default();
            (dir, name)
        }
    };
    if engine.path_kind(container, &dir).await? != Some(PathKind::Directory) {
        return Err(Failure::new(format!(
            "no directory `{dir}` in the container of service `{service}`"
        ))
        .into());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let source = local.to_path_buf();
    let packing = tokio::task::spawn_blocking(move || -> Result<()> {
        let writer = ChannelWriter {
            sender,
            buffer: Vec::with_capacity(CHUNK),
            written: counter,
        };
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        if source.is_dir() {
            builder.append_dir_all(&name, &source)?;
        } else {
            builder.append_path_with_name(&source, &name)?;
        }
        builder.into_inner()?.flush()?;
        Ok(())
    });
    // The body owns the receiver: once the upload is over (done, failed or given up), the
    // channel is closed and the packing ends.
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), receiver))
    });
    let uploaded = tokio::select! {
        uploaded = engine.upload(container, &dir, body) => uploaded.map_err(anyhow::Error::from),
        _ = crate::interrupt::wait() => Err(Interrupted.into()),
    };
    let packed = packing.await.map_err(|e| anyhow!(e))?;
    uploaded?;
    packed.with_context(|| format!("read `{}`", local.display()))?;
    Ok(written.load(Ordering::SeqCst))
}

/// How much the tar writer gathers before sending a chunk.
const CHUNK: usize = 64 * 1024;

/// Writes into a channel in chunks (from a blocking thread), counting the bytes.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    written: Arc<AtomicU64>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        self.sender
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload ended"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue12_container_paths_are_service_colon_path_and_the_rest_is_local() {
        assert_eq!(
            parse("api:/app/logs"),
            Location::Container {
                service: "api".into(),
                path: "/app/logs".into()
            }
        );
        assert_eq!(
            parse("api:etc/x"),
            Location::Container {
                service: "api".into(),
                path: "/etc/x".into()
            }
        );
        assert_eq!(parse("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(parse("/tmp/a:b"), Location::Local("/tmp/a:b".into()));
        assert_eq!(parse("logs"), Location::Local("logs".into()));
        assert_eq!(parse(":x"), Location::Local(":x".into()));
        assert_eq!(parse("-"), Location::Stdout);
    }
}
