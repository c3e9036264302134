//! What a valid stack needs before anything acts on it: the project name, environment
//! entries without a value filled from the stage's variables, `env_file`s merged under
//! `environment`, relative paths made absolute against the project directory, services
//! outside the selected profiles set aside, and the values to mask collected.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use super::envfile;
use super::interpolate::{Resolution, Use, Variables};
use super::load::Marks;
use super::model::{Build, MountKind, Task, VolumeMount};
use super::{is_secret_key, LoadedStack, Location, StackError};
use crate::project::{sanitize_name, Project};

/// The longest project name (after sanitizing): with a stage and a service name of at most
/// 63 characters each, every derived name stays well within what the engine and the file
/// system accept (255).
pub const MAX_PROJECT_NAME: usize = 63;

pub(super) fn resolve(
    mut loaded: LoadedStack,
    project: &Project,
    vars: &Variables,
    env_file: &[envfile::Entry],
) -> Result<LoadedStack, Vec<StackError>> {
    let dir = project.dir.clone();
    let mut errors = Vec::new();
    let name = loaded
        .stack
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| project.dir_name());
    loaded.project = sanitize_name(&name);
    if loaded.project.len() > MAX_PROJECT_NAME {
        // Engine object and lock file names are built from it (`{stage}-{project}--{service}`,
        // `{project}-{stage}.lock`): refuse it here rather than fail halfway through `up`.
        let from_file = loaded.stack.name.as_ref().is_some_and(|n| !n.is_empty());
        let location = if from_file {
            loaded.locate_value(&["name"])
        } else {
            None
        };
        let what = if from_file {
            "the project name (`name:`)"
        } else {
            "the project name (from the directory's name)"
        };
        errors.push(
            StackError::new(
                location,
                format!(
                    "{what} is {} characters long; at most {MAX_PROJECT_NAME} are allowed",
                    loaded.project.len()
                ),
            )
            .with_hint(if from_file {
                "choose a shorter `name:`"
            } else {
                "set a shorter `name:` in the stack file"
            }),
        );
    }
    loaded.stack.name = Some(loaded.project.clone());

    let mut uses = Vec::new();
    let marks = loaded.marks.clone();
    let mut stack = std::mem::take(&mut loaded.stack);
    for (name, service) in stack.services.iter_mut() {
        let base = ["services", name.as_str()];
        let mut from_files: IndexMap<String, String> = IndexMap::new();
        for (index, file) in service.env_file.iter_mut().enumerate() {
            let path = absolute(&dir, file);
            let at = loaded.locate_value(&[base[0], base[1], "env_file", &index.to_string()]);
            let shown = project.display_path(&path);
            match super::read_text(&path, &shown) {
                Ok(text) => match envfile::parse(&text) {
                    Ok(entries) => {
                        for entry in entries {
                            from_files.insert(entry.key, entry.value);
                        }
                    }
                    Err(e) => errors.push(StackError::new(
                        Some(Location {
                            file: project.display_path(&path),
                            line: e.line,
                            column: 1,
                        }),
                        format!("{} (env file of service `{name}`)", e.message),
                    )),
                },
                Err(super::ReadError::NotFound) => errors.push(
                    StackError::new(
                        at,
                        format!("service `{name}`: cannot read env file `{file}`: no such file"),
                    )
                    .with_hint("paths in `env_file` are relative to the project directory"),
                ),
                Err(super::ReadError::Refused(error)) => errors.push(StackError {
                    location: error.location.or(at),
                    message: format!("service `{name}`: {}", error.message),
                    hint: error.hint,
                }),
            }
            *file = path.display().to_string();
        }
        fill_environment(
            &mut service.environment,
            vars,
            &mut uses,
            &[base[0], base[1], "environment"],
            &marks,
        );
        for (key, value) in service.environment.iter_mut() {
            if value.is_none() {
                if let Some(from_file) = from_files.get(key) {
                    *value = Some(from_file.clone());
                    // Not left out after all: the service's env file has it.
                    uses.retain(|u| {
                        !(u.resolution == Resolution::LeftOut
                            && u.name == *key
                            && u.path.get(1) == Some(name))
                    });
                }
            }
        }
        if !from_files.is_empty() {
            let mut merged: IndexMap<String, Option<String>> =
                from_files.into_iter().map(|(k, v)| (k, Some(v))).collect();
            for (key, value) in std::mem::take(&mut service.environment) {
                merged.insert(key, value);
            }
            service.environment = merged;
        }
        if let Some(build) = &mut service.build {
            resolve_build(
                build,
                &dir,
                vars,
                &mut uses,
                &[base[0], base[1], "build"],
                &marks,
            );
        }
        absolute_mounts(&mut service.volumes, &dir);
    }
    for (name, data) in stack.data_containers.iter_mut() {
        if let Some(build) = &mut data.build {
            resolve_build(
                build,
                &dir,
                vars,
                &mut uses,
                &["data_containers", name, "build"],
                &marks,
            );
        }
        absolute_mounts(&mut data.volumes, &dir);
    }
    for (name, task) in stack.tasks.iter_mut() {
        if let Task::Container(task) = task {
            fill_environment(
                &mut task.environment,
                vars,
                &mut uses,
                &["tasks", name, "environment"],
                &marks,
            );
            if let Some(build) = &mut task.build {
                resolve_build(
                    build,
                    &dir,
                    vars,
                    &mut uses,
                    &["tasks", name, "build"],
                    &marks,
                );
            }
            absolute_mounts(&mut task.volumes, &dir);
            if let Some(stdin) = &mut task.stdin {
                *stdin = absolute(&dir, stdin).display().to_string();
            }
        }
    }

    // Profiles: validation has checked every service; consumers see the active ones.
    let selected = &project.profiles;
    let (active, inactive): (IndexMap<_, _>, IndexMap<_, _>) = std::mem::take(&mut stack.services)
        .into_iter()
        .partition(|(_, service)| {
            service.profiles.is_empty() || service.profiles.iter().any(|p| selected.contains(p))
        });
    stack.services = active;
    loaded.inactive_services = inactive.into_keys().collect();

    // Secrets: secret-looking variables of the stage, and secret-looking environment
    // entries and build arguments.
    let mut secrets: Vec<String> = env_file
        .iter()
        .filter(|e| is_secret_key(&e.key))
        .map(|e| e.value.clone())
        .collect();
    for used in loaded.variables.iter().chain(uses.iter()) {
        if is_secret_key(&used.name) {
            if let Some((value, _)) = vars.get(&used.name) {
                secrets.push(value.clone());
            }
        }
    }
    let mut secret_values = |env: &IndexMap<String, Option<String>>| {
        for (key, value) in env {
            if let (true, Some(value)) = (is_secret_key(key), value) {
                secrets.push(value.clone());
            }
        }
    };
    for service in stack.services.values() {
        secret_values(&service.environment);
        if let Some(build) = &service.build {
            secret_values(&build.args);
        }
    }
    for task in stack.tasks.values() {
        if let Task::Container(task) = task {
            secret_values(&task.environment);
            if let Some(build) = &task.build {
                secret_values(&build.args);
            }
        }
    }
    for data in stack.data_containers.values() {
        if let Some(build) = &data.build {
            secret_values(&build.args);
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets.sort();
    secrets.dedup();
    loaded.secrets = secrets;
    loaded.variables.extend(uses);
    loaded.unused_env = env_file
        .iter()
        .filter(|entry| !loaded.variables.iter().any(|u| u.name == entry.key))
        .filter_map(|entry| {
            let (value, source) = vars.get(&entry.key)?;
            // Overridden by the process environment: the file's line is not what counts.
            matches!(source, super::Source::EnvFile { line, .. } if *line == entry.line).then(
                || Use {
                    name: entry.key.clone(),
                    resolution: Resolution::Set(source.clone()),
                    value: value.clone(),
                    path: Vec::new(),
                },
            )
        })
        .collect();
    loaded.stack = stack;
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// `KEY` with no value takes the variable's value (Compose: from the environment; here
/// from every source of the stage, strongest first). A variable set nowhere stays unset.
fn fill_environment(
    env: &mut IndexMap<String, Option<String>>,
    vars: &Variables,
    uses: &mut Vec<Use>,
    base: &[&str],
    marks: &Marks,
) {
    for (index, (key, value)) in env.iter_mut().enumerate() {
        if value.is_some() {
            continue;
        }
        // The map form has the key in the path; the list form (`[KEY, …]`) its index.
        let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        path.push(key.clone());
        if !marks.has(&path) {
            path.pop();
            path.push(index.to_string());
        }
        match vars.get(key) {
            Some((found, source)) => {
                *value = Some(found.clone());
                uses.push(Use {
                    name: key.clone(),
                    resolution: Resolution::Set(source.clone()),
                    value: found.clone(),
                    path,
                });
            }
            None => uses.push(Use {
                name: key.clone(),
                resolution: Resolution::LeftOut,
                value: String::new(),
                path,
            }),
        }
    }
}

fn resolve_build(
    build: &mut Build,
    dir: &Path,
    vars: &Variables,
    uses: &mut Vec<Use>,
    base: &[&str],
    marks: &Marks,
) {
    // Remote contexts (git URLs) are passed through as written.
    if !build.context.contains("://") {
        build.context = absolute(dir, &build.context).display().to_string();
    }
    let mut at: Vec<&str> = base.to_vec();
    at.push("args");
    fill_environment(&mut build.args, vars, uses, &at, marks);
}

fn absolute_mounts(mounts: &mut [VolumeMount], dir: &Path) {
    for mount in mounts {
        if mount.kind == MountKind::Bind {
            if let Some(source) = &mut mount.source {
                *source = absolute(dir, source).display().to_string();
            }
        }
    }
}

/// `text` as an absolute path: `~/` is the home directory, relative paths are under `dir`;
/// `.` and `..` are resolved lexically (the path need not exist).
pub fn absolute(dir: &Path, text: &str) -> PathBuf {
    let joined = match text.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => dir.join(text),
        },
        None if text == "~" => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.to_path_buf()),
        None => dir.join(text),
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths() {
        let dir = Path::new("/p/proj");
        let cases = [
            (".", "/p/proj"),
            ("./logs", "/p/proj/logs"),
            ("a/../b", "/p/proj/b"),
            ("../shared/data", "/p/shared/data"),
            ("/abs/x", "/abs/x"),
        ];
        for (input, expected) in cases {
            assert_eq!(absolute(dir, input), PathBuf::from(expected), "{input}");
        }
    }
}
