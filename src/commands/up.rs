//! `stackctl up`: converge the stage to its stack file, then wait for health.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::cli::UpArgs;
use crate::converge::{self, ConvergeOptions};
use crate::engine::images::ImageIndex;
use crate::error::UsageError;
use crate::output::Mode;
use crate::plan::{self, Plan, PlanOptions};
use crate::stack::LoadedStack;

pub async fn run(ctx: &Context, args: &UpArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let engine = connect().await?;
    let timeout = Duration::from_secs(args.timeout);
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::lock::acquire(&loaded.project, &loaded.stage, timeout, &printer).await?)
    };
    let mut options = PlanOptions {
        services: args.services.clone(),
        build: args.build,
        remove_orphans: args.remove_orphans,
        ..Default::default()
    };
    let (observed, index) = tokio::try_join!(
        engine.observe(&loaded.stage, &loaded.project),
        engine.image_index()
    )?;
    let first = make_plan(&loaded, &index, &observed, &options)?;
    if args.dry_run {
        print_plan(ctx, &first);
        return Ok(0);
    }
    let progress = printer.progress();
    let result = async {
        let mut current = first;
        if current.builds().next().is_some() {
            options.built =
                converge::build_images(&engine, &loaded, &current, &progress, false).await?;
            let index = engine.image_index().await?;
            current = make_plan(&loaded, &index, &observed, &options)?;
        }
        let converge_options = ConvergeOptions {
            wait: !args.no_wait,
            timeout,
        };
        converge::execute(&engine, &loaded, &current, &converge_options, &progress).await?;
        if !options.built.is_empty() {
            // The images the builds replaced, now that the containers use the new ones (R12).
            engine
                .remove_replaced_images(&loaded.stage, &loaded.project)
                .await?;
        }
        Ok(())
    }
    .await;
    progress.summary("up", result.is_ok());
    result.map(|()| 0).map_err(|err| mask_error(&printer, err))
}

/// Failures carry log lines and health output from containers: mask the stage's secrets in
/// them, keeping the errors whose type decides the exit code.
fn mask_error(printer: &crate::output::Printer, err: anyhow::Error) -> anyhow::Error {
    if err.downcast_ref::<crate::error::Interrupted>().is_some()
        || err.downcast_ref::<UsageError>().is_some()
    {
        return err;
    }
    let text = format!("{err:#}");
    let masked = printer.mask(&text);
    if masked == text {
        err
    } else {
        anyhow::anyhow!(masked)
    }
}

fn make_plan(
    loaded: &LoadedStack,
    index: &ImageIndex,
    observed: &plan::Observed,
    options: &PlanOptions,
) -> Result<Plan> {
    let images = resolve_images(loaded, index);
    plan::plan(loaded, &images, observed, options).map_err(|unknown| {
        let known: Vec<&str> = loaded.stack.services.keys().map(String::as_str).collect();
        UsageError::new(format!("no service `{}` in this stack", unknown.0))
            .with_hint(format!("services: {}", known.join(", ")))
            .into()
    })
}

/// The IDs of every image the stack refers to that the engine has.
pub fn resolve_images(loaded: &LoadedStack, index: &ImageIndex) -> HashMap<String, String> {
    let mut refs: Vec<String> = loaded
        .stack
        .services
        .iter()
        .map(|(name, service)| crate::spec::service_image(loaded, name, service))
        .collect();
    refs.extend(
        loaded
            .stack
            .data_containers
            .keys()
            .map(|name| crate::spec::data_image(loaded, name)),
    );
    refs.into_iter()
        .filter_map(|r| index.resolve(&r).map(|id| (r, id)))
        .collect()
}

/// `up --dry-run`: the plan on stdout, as text or one JSON event per action.
fn print_plan(ctx: &Context, plan: &Plan) {
    let printer = &ctx.printer;
    if printer.mode == Mode::Json {
        for action in &plan.actions {
            let (kind, object, verb, reason) = action.describe();
            printer.plan_event(&object, kind, verb, &reason);
        }
        return;
    }
    if plan.actions.is_empty() {
        printer.data("nothing to do");
        return;
    }
    printer.data(&plan.to_string());
}
