//! `up` as a library: observe the stage beside the digests of its build inputs, plan, and
//! converge (builds, a fresh plan with the images built, the actions, then the removal of the
//! replaced images). `up`, `watch` and one-off containers' data containers all come this way.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;

use super::docker::DockerTarget;
use super::{ApplyOptions, Target};
use crate::context::digest::{self, ContextDigest, Inputs};
use crate::observed::Observed;
use crate::plan::image::ImageSpec;
use crate::plan::up::{self, Plan, PlanOptions};
use crate::stack::LoadedStack;

/// Observe the stage (and, with `check`, its networks and volumes) beside computing the
/// digests of the build inputs, and plan what `options` asks for; images whose inputs
/// changed are marked stale in `options`.
pub async fn observe_and_plan(
    engine: &crate::engine::Engine,
    target: &DockerTarget<'_>,
    loaded: &LoadedStack,
    options: &mut PlanOptions,
    check: bool,
) -> Result<Plan> {
    // The build inputs' digests are computed beside the observe (they read only files).
    let digests = context_digests(loaded);
    let (observed, digests) = if !check {
        tokio::try_join!(target.observe(), digests)?
    } else {
        // Checked beside the observe, not after it: no extra round trip on the critical path.
        let (observed, digests, ()) =
            tokio::try_join!(target.observe(), digests, check_existing(engine, loaded))?;
        (observed, digests)
    };
    for (tag, reason) in stale_images(loaded, &observed, digests) {
        options.stale.entry(tag).or_insert(reason);
    }
    make_plan(loaded, &observed, options)
}

/// Carry out `first` (planned by `observe_and_plan`): the builds, a fresh plan with the
/// images built, its actions, then the removal of the images the builds replaced.
pub async fn converge(
    engine: &crate::engine::Engine,
    target: &DockerTarget<'_>,
    loaded: &LoadedStack,
    first: Plan,
    mut options: PlanOptions,
    apply_options: &ApplyOptions,
    progress: &crate::output::Progress,
) -> Result<()> {
    let mut current = first;
    if current.fetches().next().is_some() {
        options.built =
            super::build_images(target, &current, apply_options, progress, false).await?;
        let observed = target.observe().await?;
        current = make_plan(loaded, &observed, &options)?;
    }
    super::execute(target, &current, apply_options, progress).await?;
    if !options.built.is_empty() {
        // The images the builds replaced, now that the containers use the new ones (R12).
        engine
            .remove_replaced_images(&loaded.stage, &loaded.project)
            .await?;
    }
    Ok(())
}

fn make_plan(loaded: &LoadedStack, observed: &Observed, options: &PlanOptions) -> Result<Plan> {
    up::plan(loaded, &observed.images, observed, options).map_err(|e| e.into_error(loaded))
}

/// The stage's existing networks and volumes: a driver the stack changed is named, and a
/// network name held twice (an older version's race) is repaired before anything uses it.
async fn check_existing(engine: &crate::engine::Engine, loaded: &LoadedStack) -> Result<()> {
    let networks = crate::plan::objects::networks(loaded)?;
    engine
        .check_networks(&loaded.stage, &loaded.project, &networks)
        .await?;
    engine
        .check_volume_drivers(&crate::plan::objects::volume_drivers(loaded))
        .await?;
    Ok(())
}

/// The digest of each stage build's inputs now, by image tag, with its context directory.
/// A context that cannot be read is left out: its build reports the problem.
pub async fn context_digests(
    loaded: &LoadedStack,
) -> Result<Vec<(String, PathBuf, ContextDigest)>> {
    let builds: Vec<ImageSpec> = crate::plan::image::stage_images(loaded)
        .into_iter()
        .map(|b| b.request)
        .collect();
    if builds.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tokio::task::spawn_blocking(move || {
        builds
            .into_iter()
            .filter_map(|build| {
                let digest = digest::of_build(&digest::BuildInputs {
                    root: &build.context,
                    dockerfile: build.dockerfile.as_deref(),
                    dockerfile_inline: build.dockerfile_inline.as_deref(),
                    inputs: Inputs {
                        args: &build.args,
                        target: build.target.as_deref(),
                    },
                })
                .ok()?;
                Some((build.tag, build.context, digest))
            })
            .collect()
    })
    .await?)
}

/// The images whose recorded inputs differ from today's, with the reason `up` gives.
pub fn stale_images(
    loaded: &LoadedStack,
    observed: &Observed,
    digests: Vec<(String, PathBuf, ContextDigest)>,
) -> HashMap<String, String> {
    // A file is named from the project directory (`api/app.py`), as the user sees it.
    let shown = |root: &PathBuf, entry: String| -> String {
        if entry.starts_with("build arg ") || entry.starts_with("Dockerfile ") {
            return entry;
        }
        match root.strip_prefix(&loaded.dir) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                format!("{}/{entry}", rel.to_string_lossy())
            }
            _ => entry,
        }
    };
    digests
        .into_iter()
        .filter(|(tag, _, _)| observed.images.contains_key(tag))
        .filter_map(|(tag, root, now)| {
            let reason = match observed.image_contexts.get(&tag) {
                Some(recorded) if *recorded == now.digest => return None,
                Some(recorded) => match digest::changed_entry(&root, recorded, &now) {
                    Some(entry) => format!("build context changed: {}", shown(&root, entry)),
                    None => "build context changed".to_string(),
                },
                None => "build inputs not recorded on the image".to_string(),
            };
            Some((tag, reason))
        })
        .collect()
}
