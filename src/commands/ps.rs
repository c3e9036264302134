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
    /// The task a one-off container runs (a leftover of `exec TASK`, `run` or `data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<String>,
}

/// The task a one-off container of this stage runs, read from its name
/// (`{stage}-{project}--task-{task}-{id}`, `…--run-{service}-{id}`): the container list
/// `ps` reads carries no task label, and the name is the stage's own (its role label says so).
fn task_of(stage: &str, project: &str, container: &str) -> Option<String> {
    let rest = container.strip_prefix(&names::container(stage, project, ""))?;
    let (kind, rest) = rest.split_once('-')?;
    let (task, _id) = rest.rsplit_once('-')?;
    match kind {
        "task" if !task.is_empty() => Some(task.to_string()),
        "run" if !task.is_empty() => Some(format!("run {task}")),
        _ => None,
    }
}

pub async fn run(ctx: &Context, _args: &PsArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if crate::apply::swarm::is_swarm(&loaded) {
        return crate::apply::swarm::ps(&super::endpoint(ctx, &loaded)?, &loaded, &printer).await;
    }
    let engine = connect(ctx, &loaded).await?;
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
            .map(|p| crate::apply::remote::port_at_host(&engine, p))
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
                task: None,
            },
            None => Row {
                service: service.clone(),
                container: name,
                role: names::role::SERVICE.to_string(),
                state: "missing".into(),
                health: String::new(),
                ports: Vec::new(),
                status: String::new(),
                task: None,
            },
        });
    }
    for c in &observed.containers {
        if rows.iter().any(|r| r.container == c.name) {
            continue;
        }
        let task = (c.role == names::role::TASK)
            .then(|| task_of(&loaded.stage, &loaded.project, &c.name))
            .flatten();
        rows.push(Row {
            service: c.service.clone().unwrap_or_default(),
            container: c.name.clone(),
            role: c.role.clone(),
            state: c.state.clone(),
            health: c.health.clone().unwrap_or_default(),
            ports: at_host(&c.ports),
            status: c.status.clone(),
            task,
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
            } else if let (true, Some(task)) = (r.service.is_empty(), &r.task) {
                format!("{task} ({})", r.role)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RELIABILITY 12: a leftover task container showed ` (task)` with no name.
    #[test]
    fn reliability12_a_task_container_is_named_by_its_task() {
        let task = names::task_container("qa", "shop", "db-migrate", "1a2b3c");
        assert_eq!(task_of("qa", "shop", &task).as_deref(), Some("db-migrate"));
        let run = names::run_container("qa", "shop", "api", "1a2b3c");
        assert_eq!(task_of("qa", "shop", &run).as_deref(), Some("run api"));
        assert_eq!(task_of("qa", "shop", "qa-shop--api"), None);
        assert_eq!(task_of("qa", "other", &task), None);
    }
}
