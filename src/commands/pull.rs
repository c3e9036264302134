//! `stackctl pull [SERVICE…]`: pull the stage's images from their registries, a few at a
//! time, each image once however many services run it.

use anyhow::Result;

use super::{check_services, connect, load_stack, Context};
use crate::apply::docker::DockerTarget;
use crate::apply::{self, ApplyOptions};
use crate::cli::PullArgs;
use crate::error::exit;
use crate::plan::container;
use crate::plan::up::{Action, Plan};
use crate::registry::registry_of;
use crate::stack::model::PullPolicy;
use crate::stack::LoadedStack;

pub async fn run(ctx: &Context, args: &PullArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    crate::registry::check_references(&loaded)?;
    let wanted = check_services(&loaded, &args.services)?;
    let plan = Plan {
        actions: pulls(&loaded, &wanted, args.services.is_empty()),
        ..Default::default()
    };
    if plan.actions.is_empty() {
        printer.status(
            "nothing to pull: every image is built by the stage or has `pull_policy: never`",
        );
        return Ok(exit::OK);
    }
    let engine = connect(ctx, &loaded).await?;
    let target = DockerTarget::new(&engine, &loaded);
    let progress = printer.progress();
    let options = ApplyOptions::new(false, std::time::Duration::from_secs(3600));
    let result = apply::build_images(&target, &plan, &options, &progress, false).await;
    progress.summary("pull", result.is_ok());
    result.map(|_| exit::OK)
}

/// One pull per image the wanted services (and, for the whole stage, the data containers)
/// run: not the images the stage builds, unless their name holds a registry (built
/// elsewhere and pushed there); never the ones with `pull_policy: never` or `build`.
fn pulls(loaded: &LoadedStack, wanted: &[String], whole_stage: bool) -> Vec<Action> {
    let stack = &loaded.stack;
    let mut images: Vec<(String, String)> = Vec::new();
    for name in wanted {
        let service = &stack.services[name.as_str()];
        if matches!(
            service.pull_policy,
            Some(PullPolicy::Never) | Some(PullPolicy::Build)
        ) {
            continue;
        }
        let image = container::service_image(loaded, name, service);
        if service.build.is_some() && registry_of(&image).is_none() {
            continue;
        }
        images.push((name.clone(), image));
    }
    if whole_stage {
        for (name, data) in &stack.data_containers {
            if data.build.is_none() {
                images.push((name.clone(), container::data_image(loaded, name)));
            }
        }
    }
    let mut actions: Vec<Action> = Vec::new();
    for (owner, image) in images {
        if actions
            .iter()
            .any(|a| matches!(a, Action::Pull { image: i, .. } if *i == image))
        {
            continue;
        }
        actions.push(Action::Pull {
            owner,
            image,
            reason: "pull".into(),
        });
    }
    actions
}
