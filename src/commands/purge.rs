//! `stackctl purge`: remove everything carrying the stage's labels — containers, data
//! containers, volumes, networks and built images. Nothing without the labels is touched.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::apply;
use crate::cli::PurgeArgs;
use crate::error::UsageError;
use crate::names;

pub async fn run(ctx: &Context, args: &PurgeArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(UsageError::new(format!(
            "refusing to purge stage `{}` without confirmation: stdin is not a terminal",
            loaded.stage
        ))
        .with_hint("pass --yes to remove everything the stage owns")
        .into());
    }
    let engine = connect().await?;
    let _lock = crate::lock::acquire(
        &loaded.project,
        &loaded.stage,
        Duration::from_secs(args.timeout),
        &printer,
    )
    .await?;
    let observed = engine.observe(&loaded.stage, &loaded.project).await?;
    let images = engine
        .labelled_images(&names::stage_filter(&loaded.stage, &loaded.project))
        .await?;
    if !args.yes {
        let question = format!(
            "remove everything stage `{}` of `{}` owns: {} containers, {} volumes, {} networks, {} images? [y/N] ",
            loaded.stage,
            loaded.project,
            observed.containers.len(),
            observed.volumes.len(),
            observed.networks.len(),
            images.len()
        );
        if !confirm(&question) {
            printer.status("nothing removed");
            return Ok(crate::error::exit::FAILURE);
        }
    }
    let progress = printer.progress();
    let result = async {
        apply::remove_containers(&engine, &observed.containers, &progress).await?;
        apply::remove_networks(&engine, &observed.networks, &progress).await?;
        for volume in &observed.volumes {
            crate::interrupt::check()?;
            let line = progress.line("volume", volume);
            line.step("removing");
            engine.remove_volume(volume).await?;
            line.done("removed", None);
        }
        for (id, tags) in &images {
            crate::interrupt::check()?;
            let shown = tags.first().cloned().unwrap_or_else(|| id.clone());
            let line = progress.line("image", &shown);
            line.step("removing");
            engine.remove_image(id).await?;
            line.done("removed", None);
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    progress.summary("purge", result.is_ok());
    result.map(|()| 0)
}

/// Ask on the terminal; only `y`/`yes` confirms.
fn confirm(question: &str) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(question.as_bytes());
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
