//! What changes when the engine is on another machine: bind mounts name paths on *that*
//! machine, so one written relative to the project (`./logs`) or to the home directory
//! (`~/data`) here is refused; published ports are reached at the engine's host name.

use anyhow::Result;

use crate::engine::Engine;
use crate::error::UsageError;
use crate::stack::model::{MountKind, Task, VolumeMount};
use crate::stack::LoadedStack;

/// Refuse, on a remote engine, every bind mount whose source was written relative to the
/// project or the home directory (resolution made it an absolute path on this machine).
pub fn check_binds(engine: &Engine, loaded: &LoadedStack) -> Result<()> {
    if !engine.is_remote() {
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let local = |source: &str| {
        let path = std::path::Path::new(source);
        path.starts_with(&loaded.dir) || home.as_ref().is_some_and(|h| path.starts_with(h))
    };
    let mut found: Vec<(Vec<String>, String, String)> = Vec::new();
    // The path as the user wrote it, give or take: `./logs`, `~/data`.
    let as_written = |source: &str| {
        let path = std::path::Path::new(source);
        if let Ok(rest) = path.strip_prefix(&loaded.dir) {
            format!("./{}", rest.display())
        } else if let Some(rest) = home.as_ref().and_then(|h| path.strip_prefix(h).ok()) {
            format!("~/{}", rest.display())
        } else {
            source.to_string()
        }
    };
    let mut scan = |section: &str, name: &str, mounts: &[VolumeMount]| {
        for (i, mount) in mounts.iter().enumerate() {
            if mount.kind != MountKind::Bind {
                continue;
            }
            if let Some(source) = mount.source.as_deref().filter(|s| local(s)) {
                found.push((
                    vec![
                        section.to_string(),
                        name.to_string(),
                        "volumes".to_string(),
                        i.to_string(),
                    ],
                    format!("{} `{name}`", section.trim_end_matches('s')),
                    format!("{}:{}", as_written(source), mount.target),
                ));
            }
        }
    };
    for (name, service) in &loaded.stack.services {
        scan("services", name, &service.volumes);
    }
    for (name, data) in &loaded.stack.data_containers {
        scan("data_containers", name, &data.volumes);
    }
    for (name, task) in &loaded.stack.tasks {
        if let Task::Container(task) = task {
            scan("tasks", name, &task.volumes);
        }
    }
    let Some((path, what, mount)) = found.into_iter().next() else {
        return Ok(());
    };
    let at: Vec<&str> = path.iter().map(String::as_str).collect();
    let location = loaded
        .locate_value(&at)
        .map(|l| format!("{l}: "))
        .unwrap_or_default();
    Err(UsageError::new(format!(
        "{location}{what}: the bind mount `{mount}` names a path on this machine, but the engine is on {}",
        engine.address
    ))
    .with_hint(
        "use a named volume (`logs:/app/logs` and `volumes: { logs: {} }`), a `configs:` entry for files, or an absolute path that exists on the engine's host",
    )
    .into())
}

/// A published port as the user reaches it: `8080->80/tcp` on a remote engine becomes
/// `HOST:8080->80/tcp`.
pub fn port_at_host(engine: &Engine, port: &str) -> String {
    match engine.endpoint.host_name() {
        Some(host) if engine.is_remote() && port.contains("->") && !port.contains(':') => {
            format!("{host}:{port}")
        }
        _ => port.to_string(),
    }
}
