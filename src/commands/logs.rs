//! `stackctl logs [SERVICE…] [-f] [--tail N] [--since T]`: the services' output merged into
//! one stream, each line prefixed `service | ` (coloured on a terminal unless `NO_COLOR`).

use std::collections::HashMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use futures_util::stream::{select_all, StreamExt};

use super::{check_services, connect, load_stack, Context};
use crate::cli::LogsArgs;
use crate::error::{Interrupted, UsageError};
use crate::output::{log_prefix, Mode};
use crate::stack::model::DurationSpec;

pub async fn run(ctx: &Context, args: &LogsArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let wanted = check_services(&loaded, &args.services)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let engine = connect().await?;
    let observed = engine
        .observe_named(
            &loaded.stage,
            &loaded.project,
            &crate::plan::container::custom_names(&loaded),
        )
        .await?;
    let present: Vec<(String, String)> = wanted
        .iter()
        .flat_map(|service| {
            crate::plan::container::replica_names(&loaded, service)
                .into_iter()
                .filter(|name| observed.container(name).is_some())
                .map(|name| (service.clone(), name))
        })
        .collect();
    if present.is_empty() {
        printer.warn_with_hint(
            &format!("no service of stage `{}` has a container", loaded.stage),
            "`stackctl up` creates them",
        );
        return Ok(0);
    }
    let width = present.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let prefixes: HashMap<String, String> = present
        .iter()
        .enumerate()
        .map(|(i, (service, _))| (service.clone(), log_prefix(&printer, service, width, i)))
        .collect();
    let streams = present.iter().map(|(service, container)| {
        let service = service.clone();
        engine
            .log_stream(container, args.follow, args.tail, since)
            .map(move |item| (service.clone(), item))
            .boxed()
    });
    let mut merged = select_all(streams);
    // Output arrives in chunks; keep each service's partial last line until it ends.
    let mut partial: HashMap<String, Vec<u8>> = HashMap::new();
    let mut stdout = std::io::stdout().lock();
    let containers: HashMap<&str, &str> = present
        .iter()
        .map(|(service, container)| (service.as_str(), container.as_str()))
        .collect();
    let json = printer.mode == Mode::Json;
    let write_line = |service: &str, line: &[u8], out: &mut std::io::StdoutLock| {
        let text = printer.mask(&String::from_utf8_lossy(line));
        let text = text.trim_end_matches('\r');
        if json {
            let record = LogLine {
                service,
                container: containers.get(service).copied().unwrap_or_default(),
                line: text,
            };
            if let Ok(record) = serde_json::to_string(&record) {
                let _ = writeln!(out, "{record}");
            }
        } else {
            let _ = writeln!(out, "{}{}", prefixes[service], text);
        }
    };
    loop {
        let item = tokio::select! {
            item = merged.next() => item,
            _ = crate::interrupt::wait() => {
                let _ = stdout.flush();
                return Err(Interrupted.into());
            }
        };
        let Some((service, chunk)) = item else { break };
        let chunk = chunk?;
        let buffer = partial.entry(service.clone()).or_default();
        buffer.extend_from_slice(&chunk);
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            write_line(&service, &line[..line.len() - 1], &mut stdout);
        }
        let _ = stdout.flush();
    }
    for (service, rest) in partial {
        if !rest.is_empty() {
            write_line(&service, &rest, &mut stdout);
        }
    }
    Ok(0)
}

/// One line of output with `--json`: `{"service","container","line"}`.
#[derive(serde::Serialize)]
struct LogLine<'a> {
    service: &'a str,
    container: &'a str,
    line: &'a str,
}

/// `--since`: a duration ago (`10m`, `1h30m`) or a Unix timestamp.
fn parse_since(text: &str) -> Result<i32> {
    if let Ok(ts) = text.parse::<i32>() {
        return Ok(ts);
    }
    let ago = DurationSpec::parse(text).map_err(|e| {
        UsageError::new(format!("--since: {e}"))
            .with_hint("give a duration like `10m` or a Unix timestamp")
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Ok(now.saturating_sub(ago.0.as_secs()).min(i32::MAX as u64) as i32)
}
