//! `stackctl push [SERVICE…]`: push the images the stage builds to the registry their names
//! hold (`image: 127.0.0.1:5000/shop/api:1.2`), a few at a time.

use std::time::Instant;

use anyhow::Result;
use futures_util::StreamExt;

use super::{check_services, connect, load_stack, Context};
use crate::apply::docker::push_image;
use crate::apply::first_error;
use crate::cli::PushArgs;
use crate::error::{exit, Failure, Interrupted};
use crate::output::human_bytes;
use crate::plan::image::{self, ImageBuild, Owner};
use crate::registry::{owner_label, registry_of};
use crate::stack::{LoadedStack, StackError, StackErrors};

/// Pushes at once: one. The engine already uploads an image's layers in parallel and
/// compresses them on the CPU; measured on two cores, four 30 MB images took 13-15 s pushed
/// four at a time and 7.7-9.7 s one after the other.
const PARALLEL_PUSHES: usize = 1;

pub async fn run(ctx: &Context, args: &PushArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    crate::registry::check_references(&loaded)?;
    check_services(&loaded, &args.services)?;
    let builds = select(&loaded, &args.services)?;
    if builds.is_empty() {
        printer.status("nothing to push: no service, data container or task has `build:`");
        return Ok(exit::OK);
    }
    let engine = connect(ctx, &loaded).await?;
    let present = engine.image_index().await?;
    for build in &builds {
        if present.resolve(&build.request.tag).is_none() {
            return Err(Failure::new(format!(
                "image `{}` of {} is not built",
                build.request.tag,
                owner_label(&loaded, &build.name)
            ))
            .with_hint("run `stackctl build` first")
            .into());
        }
    }
    let progress = printer.progress();
    let pushes = futures_util::stream::iter(builds.iter().map(|build| {
        let progress = &progress;
        let loaded = &loaded;
        let engine = &engine;
        async move {
            crate::interrupt::check()?;
            let tag = &build.request.tag;
            let line = progress.line("image", tag);
            line.step("pushing");
            let last = std::sync::Mutex::new(Instant::now());
            let moved = |done: u64, total: u64| {
                if let Ok(mut last) = last.lock() {
                    if line.is_live() || last.elapsed().as_millis() >= 500 {
                        *last = Instant::now();
                        line.transfer("pushing", done, total);
                    }
                }
            };
            let owner = owner_label(loaded, &build.name);
            let result = tokio::select! {
                pushed = push_image(engine, tag, &owner, &moved) => pushed,
                _ = crate::interrupt::wait() => Err(Interrupted.into()),
            };
            match result {
                Ok(bytes) => {
                    line.done("pushed", Some(&human_bytes(bytes)));
                    Ok(())
                }
                Err(err) => {
                    line.fail("push", &format!("{err:#}"));
                    Err(err)
                }
            }
        }
    }))
    .buffer_unordered(PARALLEL_PUSHES)
    .collect::<Vec<Result<()>>>()
    .await;
    let result = first_error(pushes);
    progress.summary("push", result.is_ok());
    result.map(|()| exit::OK)
}

/// The builds to push: the named services' (all the stage's when none are named), one per
/// tag; each must name a registry, else every such entry is reported at its `image:` (or
/// `build:`) with exit 2.
fn select(loaded: &LoadedStack, services: &[String]) -> Result<Vec<ImageBuild>> {
    let mut builds: Vec<ImageBuild> = Vec::new();
    for build in image::stage_images(loaded) {
        let asked = services.is_empty()
            || (build.owner == Owner::Service && services.contains(&build.name));
        if asked && !builds.iter().any(|b| b.request.tag == build.request.tag) {
            builds.push(build);
        }
    }
    let errors: Vec<StackError> = builds
        .iter()
        .filter(|b| registry_of(&b.request.tag).is_none())
        .map(|b| {
            let section = b.owner.section();
            let at = loaded
                .locate_value(&[section, &b.name, "image"])
                .or_else(|| loaded.locate(&[section, &b.name, "build"]));
            StackError::new(
                at,
                format!(
                    "{} `{}` builds `{}`, whose name holds no registry to push to",
                    b.owner.noun(),
                    b.name,
                    b.request.tag
                ),
            )
            .with_hint(format!(
                "name the image after its registry: `image: 127.0.0.1:5000/{}`",
                b.request.tag
            ))
        })
        .collect();
    if !errors.is_empty() {
        return Err(StackErrors(errors).into());
    }
    Ok(builds)
}
