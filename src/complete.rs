//! Names offered by dynamic shell completion (`stackctl completions SHELL --dynamic`): the
//! project's stages, and the services and tasks of the stage the next command would act on.
//! The shell runs stackctl with `STACKCTL_COMPLETE=SHELL` on each Tab; these run then, in the user's
//! current directory, and never fail: a project that cannot be read offers no names.

use clap_complete::engine::CompletionCandidate;

use crate::project::{self, Project};

/// The environment variable that turns a run of stackctl into a completion request.
pub const VARIABLE: &str = "STACKCTL_COMPLETE";

/// Answer a completion request and exit, when this run is one (`STACKCTL_COMPLETE=bash stackctl …`).
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(<crate::cli::Cli as clap::CommandFactory>::command)
        .var(VARIABLE)
        .complete();
}

/// Write the script that registers dynamic completion for `shell`.
pub fn write_registration(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Zsh => &Zsh,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::PowerShell => &Powershell,
        _ => &Bash,
    };
    completer.write_registration(VARIABLE, "stackctl", "stackctl", "stackctl", out)
}

/// The project of the current directory (walking up), on the stage a command would use.
fn current_project() -> Option<Project> {
    let cwd = std::env::current_dir().ok()?;
    let dir = project::discover(&cwd);
    let stage = std::env::var("STACKCTL_ENV")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| project::remembered_stage(&dir).ok().flatten())
        .unwrap_or_else(|| "dev".to_string());
    Some(Project::new(dir, stage))
}

/// The stages with a stack file.
pub fn stages() -> Vec<CompletionCandidate> {
    current_project()
        .map(|p| p.stages())
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The services of the current stage.
pub fn services() -> Vec<CompletionCandidate> {
    names(false)
}

/// The tasks, then the services, of the current stage (`exec` takes either).
pub fn tasks_and_services() -> Vec<CompletionCandidate> {
    names(true)
}

fn names(with_tasks: bool) -> Vec<CompletionCandidate> {
    let Some(project) = current_project() else {
        return Vec::new();
    };
    let Ok(loaded) = crate::stack::load(&project) else {
        return Vec::new();
    };
    let tasks = loaded
        .stack
        .tasks
        .keys()
        .filter(|_| with_tasks)
        .map(|name| CompletionCandidate::new(name).help(Some("task".into())));
    let services = loaded
        .stack
        .services
        .keys()
        .map(|name| CompletionCandidate::new(name).help(Some("service".into())));
    tasks.chain(services).collect()
}
