//! The context monitors of a stage that goes away (`down`, `purge`): those of its build
//! contexts that no other running stage of the project builds from are ended, so a monitor
//! does not outlive every stage that asks it (each holds an inotify instance, of which a
//! user has few).

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::context::monitor;
use crate::engine::Engine;
use crate::output::Printer;
use crate::project::Project;
use crate::stack::LoadedStack;

/// The build contexts of a stage (absolute directories).
fn contexts(loaded: &LoadedStack) -> BTreeSet<PathBuf> {
    crate::plan::image::stage_images(loaded)
        .into_iter()
        .map(|build| build.request.context)
        .collect()
}

/// End the monitors of `loaded`'s contexts that no other stage of the project with a
/// running container builds from. A stage whose stack file does not load counts as using
/// them all. Nothing here fails the command: what cannot be ended is left to its idle exit.
pub async fn end_unused(
    engine: &Engine,
    project: &Project,
    loaded: &LoadedStack,
    printer: &Printer,
) {
    let mine = contexts(loaded);
    let running: Vec<monitor::Running> = monitor::running()
        .into_iter()
        .filter(|m| mine.contains(&m.root))
        .collect();
    if running.is_empty() {
        return;
    }
    let Ok(stages) = engine.project_stages(&loaded.project).await else {
        return;
    };
    let mut used: BTreeSet<PathBuf> = BTreeSet::new();
    for (stage, objects) in &stages {
        if *stage == loaded.stage || !objects.containers.iter().any(|c| c.state == "running") {
            continue;
        }
        let mut other = project.clone();
        other.stage = stage.clone();
        match crate::stack::load(&other) {
            Ok(other) if other.project == loaded.project => used.extend(contexts(&other)),
            Ok(_) => {}
            Err(_) => return,
        }
    }
    for m in running.iter().filter(|m| !used.contains(&m.root)) {
        let root = m.root.clone();
        let ended = tokio::task::spawn_blocking(move || monitor::end(&root))
            .await
            .unwrap_or(false);
        if ended {
            printer.status(&format!(
                "ended the context monitor of `{}` (no running stage builds from it)",
                m.root.display()
            ));
        }
    }
}
