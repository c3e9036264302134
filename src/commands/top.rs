//! `stackctl top [SERVICE…]`: the processes running in each service's container, as the
//! engine lists them (`ps -ef` columns); with `--json`, one object per service.

use anyhow::Result;
use serde::Serialize;

use super::{check_services, connect, load_stack, Context};
use crate::cli::TopArgs;
use crate::engine::copy::Processes;
use crate::output::Mode;

#[derive(Debug, Serialize)]
struct ServiceProcesses<'a> {
    service: &'a str,
    container: &'a str,
    #[serde(flatten)]
    processes: &'a Processes,
}

pub async fn run(ctx: &Context, args: &TopArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let wanted = check_services(&loaded, &args.services)?;
    let engine = connect(ctx, &loaded).await?;
    let observed = engine
        .observe_named(
            &loaded.stage,
            &loaded.project,
            &crate::plan::container::custom_names(&loaded),
        )
        .await?;
    let mut running = Vec::new();
    for service in &wanted {
        let name = crate::plan::container::container_name(&loaded, service);
        match observed.container(&name) {
            Some(c) if c.state == "running" => running.push((service.as_str(), name)),
            // Named ones that do not run are worth a word; in "all", silence.
            Some(c) if !args.services.is_empty() => {
                printer.warn(&format!("service `{service}` is {}", c.state))
            }
            None if !args.services.is_empty() => printer.warn_with_hint(
                &format!("service `{service}` has no container"),
                &format!("`stackctl up {service}` creates it"),
            ),
            _ => {}
        }
    }
    let listed = futures_util::future::try_join_all(
        running
            .iter()
            .map(|(_, container)| engine.processes(container)),
    )
    .await?;
    let mut blocks = Vec::new();
    for ((service, container), processes) in running.iter().zip(&listed) {
        if printer.mode == Mode::Json {
            printer.data(&serde_json::to_string(&ServiceProcesses {
                service,
                container,
                processes,
            })?);
        } else {
            blocks.push(format!("{service} ({container})\n{}", table(processes)));
        }
    }
    if !blocks.is_empty() {
        printer.data(&blocks.join("\n\n"));
    }
    Ok(0)
}

/// The titles and rows in aligned columns (the last one, the command, as it is).
fn table(processes: &Processes) -> String {
    let rows: Vec<&Vec<String>> = std::iter::once(&processes.titles)
        .chain(processes.processes.iter())
        .collect();
    let columns = processes.titles.len();
    let mut widths = vec![0usize; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 >= row.len() {
                    line.push_str(cell);
                } else {
                    let width = widths.get(i).copied().unwrap_or(0);
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
