//! `stackctl purge`: remove everything the stage owns — containers, data containers,
//! volumes, networks, and the tags of the images it built (an image goes with its tag unless
//! another tag or a container keeps it). Nothing without the stage's labels is touched.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::apply;
use crate::cli::PurgeArgs;
use crate::error::UsageError;

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
    if super::swarm::is_swarm(&loaded) {
        return super::swarm::purge(ctx, args).await;
    }
    let engine = connect().await?;
    let _lock = crate::lock::acquire(
        &engine,
        &loaded.project,
        &loaded.stage,
        Duration::from_secs(args.timeout),
        &printer,
    )
    .await?;
    let stack_tags: Vec<String> = crate::plan::image::stage_images(&loaded)
        .into_iter()
        .map(|image| image.request.tag)
        .collect();
    let custom_names = crate::plan::container::custom_names(&loaded);
    let (observed, networks, images) = tokio::try_join!(
        engine.observe_named(&loaded.stage, &loaded.project, &custom_names),
        engine.stage_networks(&loaded.stage, &loaded.project),
        engine.stage_images(&loaded.stage, &loaded.project, &stack_tags),
    )?;
    // Only what stackctl made: the tag it gave (another tag, and the image under it, stay),
    // or an image a rebuild left without any tag.
    let images: Vec<_> = images
        .into_iter()
        .filter(|image| image.own_tag.is_some() || image.dangling)
        .collect();
    if !args.yes {
        let question = format!(
            "remove everything stage `{}` of `{}` owns: {} containers, {} volumes, {} networks, {} images? [y/N] ",
            loaded.stage,
            loaded.project,
            observed.containers.len(),
            observed.volumes.len(),
            networks.len(),
            images.len()
        );
        if !confirm(&question) {
            printer.status("nothing removed");
            return Ok(crate::error::exit::FAILURE);
        }
    }
    let progress = printer.progress();
    let result = async {
        apply::remove_containers(&engine, Some(&loaded), &observed.containers, &progress).await?;
        apply::remove_networks(
            &engine,
            &loaded.stage,
            &loaded.project,
            &networks,
            &progress,
        )
        .await?;
        for volume in &observed.volumes {
            crate::interrupt::check()?;
            let line = progress.line("volume", volume);
            line.step("removing");
            engine.remove_volume(volume).await?;
            line.done("removed", None);
        }
        for image in &images {
            crate::interrupt::check()?;
            let short = image.id.trim_start_matches("sha256:");
            let shown = image
                .own_tag
                .clone()
                .unwrap_or_else(|| short[..short.len().min(12)].to_string());
            let line = progress.line("image", &shown);
            line.step("removing");
            match &image.own_tag {
                Some(tag) => {
                    engine.remove_image_tag(tag).await?;
                    line.done("removed", None);
                }
                None if engine.remove_unused_image(&image.id).await? => line.done("removed", None),
                None => line.done("kept", Some("a container uses it")),
            }
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
