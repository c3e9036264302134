//! `stackctl version`: stackctl's version and commit, then the engine's version and API and
//! the host it runs on; with `-v`, the context monitors that run (their process and
//! context). Needs no project. When the engine cannot be reached, stackctl's own part is
//! still printed before the error (exit 1).

use anyhow::Result;
use serde::Serialize;

use crate::engine::endpoint::EngineChoice;
use crate::engine::system::EngineVersion;
use crate::engine::Engine;
use crate::output::{human_bytes, Mode, Printer};

/// The commit stackctl was built from (`build.rs`); none for a build outside git.
pub const COMMIT: Option<&str> = option_env!("STACKCTL_COMMIT");

#[derive(Debug, Serialize)]
struct Client {
    version: &'static str,
    commit: Option<&'static str>,
    os: &'static str,
    arch: &'static str,
}

#[derive(Debug, Serialize)]
struct Versions<'a> {
    stackctl: Client,
    /// Where the engine is (`unix:///var/run/docker.sock`, `tcp://…`).
    host: &'a str,
    /// How an ssh engine is reached (the forwarded socket, or `dial-stdio` and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<String>,
    engine: Option<&'a EngineVersion>,
    /// The context monitors that run for this user.
    monitors: Vec<Monitor>,
}

#[derive(Debug, Serialize)]
struct Monitor {
    pid: u32,
    context: String,
}

pub async fn run(printer: &Printer, choice: &EngineChoice) -> Result<i32> {
    let client = Client {
        version: env!("CARGO_PKG_VERSION"),
        commit: COMMIT,
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    };
    let engine = match async { Engine::connect(choice.resolve()?).await }.await {
        Ok(engine) => engine
            .version()
            .await
            .map(|v| (engine.address.clone(), engine.transport(), v))
            .map_err(anyhow::Error::from),
        Err(err) => Err(err),
    };
    let (host, transport, found) = match &engine {
        Ok((address, transport, version)) => (address.clone(), transport.clone(), Some(version)),
        Err(_) => (
            choice
                .resolve()
                .map(|e| e.host)
                .unwrap_or_else(|_| crate::engine::endpoint::LOCAL.to_string()),
            None,
            None,
        ),
    };
    let versions = Versions {
        stackctl: client,
        host: &host,
        transport,
        engine: found,
        monitors: crate::context::monitor::running()
            .into_iter()
            .map(|m| Monitor {
                pid: m.pid,
                context: m.root.display().to_string(),
            })
            .collect(),
    };
    if printer.mode == Mode::Json {
        printer.data(&serde_json::to_string(&versions)?);
    } else {
        let mut out = text(&versions);
        if printer.verbose > 0 {
            out.push_str(&monitors_text(&versions.monitors));
        }
        printer.data(&out);
    }
    engine.map(|_| 0)
}

/// `monitors` lines: how many run, then one per monitor.
fn monitors_text(monitors: &[Monitor]) -> String {
    let mut out = format!("\nmonitors  {} context monitor(s) running", monitors.len());
    for m in monitors {
        out.push_str(&format!("\n          pid {}  {}", m.pid, m.context));
    }
    out
}

fn text(v: &Versions) -> String {
    let commit = v
        .stackctl
        .commit
        .map(|c| format!(" (commit {c})"))
        .unwrap_or_default();
    let mut out = format!(
        "stackctl  {}{commit}, {}/{}\n",
        v.stackctl.version, v.stackctl.os, v.stackctl.arch
    );
    match v.engine {
        Some(e) => {
            out.push_str(&format!(
                "engine    {}, API {} (minimum {}; stackctl speaks {})\n",
                e.version, e.api_version, e.min_api_version, e.negotiated_api_version
            ));
            out.push_str(&format!(
                "host      {} at {}: {}, {}/{}, kernel {}, {} CPUs, {} memory",
                e.host_name,
                v.host,
                e.operating_system,
                e.os,
                e.arch,
                e.kernel_version,
                e.cpus,
                human_bytes(e.memory_bytes.max(0) as u64)
            ));
            if let Some(transport) = &v.transport {
                out.push_str(&format!("\nvia       {transport}"));
            }
        }
        None => out.push_str(&format!("host      {} (not reachable)", v.host)),
    }
    out
}
