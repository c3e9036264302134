//! `stackctl ps`: state, health and ports of each service of the stage (and its data and
//! leftover task containers), as a table or, with `--json`, one JSON object per line.

use anyhow::Result;
use serde::Serialize;

use super::{connect, load_stack, Context};
use crate::cli::PsArgs;
use crate::names;
use crate::output::Mode;

#[derive(Debug, Serialize)]
struct Row {
    service: String,
    container: String,
    role: String,
    state: String,
    health: String,
    ports: Vec<String>,
    status: String,
}

pub async fn run(ctx: &Context, _args: &PsArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if super::swarm::is_swarm(&loaded) {
        return super::swarm::ps(ctx).await;
    }
    let engine = connect().await?;
    let observed = engine
        .observe_named(
            &loaded.stage,
            &loaded.project,
            &crate::plan::container::custom_names(&loaded),
        )
        .await?;
    if engine.is_remote() {
        printer.status(&format!("engine {}", engine.address));
    }
    let at_host = |ports: &[String]| -> Vec<String> {
        ports
            .iter()
            .map(|p| super::remote::port_at_host(&engine, p))
            .collect()
    };
    let mut rows: Vec<Row> = Vec::new();
    let replicas = loaded.stack.services.keys().flat_map(|service| {
        crate::plan::container::replica_names(&loaded, service)
            .into_iter()
            .map(move |name| (service, name))
    });
    for (service, name) in replicas {
        rows.push(match observed.container(&name) {
            Some(c) => Row {
                service: service.clone(),
                container: c.name.clone(),
                role: c.role.clone(),
                state: c.state.clone(),
                health: c.health.clone().unwrap_or_default(),
                ports: at_host(&c.ports),
                status: c.status.clone(),
            },
            None => Row {
                service: service.clone(),
                container: name,
                role: names::role::SERVICE.to_string(),
                state: "missing".into(),
                health: String::new(),
                ports: Vec::new(),
                status: String::new(),
            },
        });
    }
    for c in &observed.containers {
        if rows.iter().any(|r| r.container == c.name) {
            continue;
        }
        rows.push(Row {
            service: c.service.clone().unwrap_or_default(),
            container: c.name.clone(),
            role: c.role.clone(),
            state: c.state.clone(),
            health: c.health.clone().unwrap_or_default(),
            ports: at_host(&c.ports),
            status: c.status.clone(),
        });
    }
    if printer.mode == Mode::Json {
        for row in &rows {
            printer.data(&serde_json::to_string(row)?);
        }
        return Ok(0);
    }
    let header = ["SERVICE", "CONTAINER", "STATE", "HEALTH", "PORTS"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let service = if r.role == names::role::SERVICE || r.role.is_empty() {
                r.service.clone()
            } else {
                format!("{} ({})", r.service, r.role)
            };
            [
                service,
                r.container.clone(),
                r.state.clone(),
                if r.health.is_empty() {
                    "-".into()
                } else {
                    r.health.clone()
                },
                if r.ports.is_empty() {
                    "-".into()
                } else {
                    r.ports.join(", ")
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let format_row = |row: &[String]| {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        line.trim_end().to_string()
    };
    let mut out = format_row(&header.map(String::from));
    for row in &cells {
        out.push('\n');
        out.push_str(&format_row(row));
    }
    printer.data(&out);
    Ok(0)
}
