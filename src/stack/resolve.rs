//! What a valid stack needs before anything acts on it: the project name, environment
//! entries without a value filled from the stage's variables, `env_file`s merged under
//! `environment`, relative paths made absolute against the project directory, services
//! outside the selected profiles set aside, and the values to mask collected.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use super::envfile;
use super::interpolate::{Resolution, Use, Variables};
use super::load::Marks;
use super::model::{
    Build, ContainerTask, DataContainer, MountKind, Service, Stack, Task, VolumeMount,
};
use super::{is_secret_key, LoadedStack, Location, StackError};
use crate::project::{sanitize_name, Project};

/// The longest project name (after sanitizing): with a stage and a service name of at most
/// 63 characters each, every derived name stays well within what the engine and the file
/// system accept (255).
pub const MAX_PROJECT_NAME: usize = 63;

/// What resolving every section reads, and the variable uses it records on the way.
struct Fill<'a> {
    dir: &'a Path,
    vars: &'a Variables,
    marks: &'a Marks,
    uses: Vec<Use>,
}

pub(super) fn resolve(
    mut loaded: LoadedStack,
    project: &Project,
    vars: &Variables,
    env_file: &[envfile::Entry],
) -> Result<LoadedStack, Vec<StackError>> {
    let mut errors: Vec<StackError> = name_project(&mut loaded, project).into_iter().collect();
    let marks = loaded.marks.clone();
    let mut fill = Fill {
        dir: &project.dir,
        vars,
        marks: &marks,
        uses: Vec::new(),
    };
    // Taken out so that `loaded` can still locate errors while the stack is changed.
    let mut stack = std::mem::take(&mut loaded.stack);
    for (name, service) in stack.services.iter_mut() {
        resolve_service(name, service, &loaded, project, &mut fill, &mut errors);
    }
    for (name, data) in stack.data_containers.iter_mut() {
        resolve_data_container(name, data, &mut fill);
    }
    for (name, task) in stack.tasks.iter_mut() {
        if let Task::Container(task) = task {
            resolve_task(name, task, &mut fill);
        }
    }
    let secret_values = read_file_sources(&mut stack, &loaded, project, vars, &mut errors);
    loaded.inactive_services = set_aside_inactive(&mut stack, &project.profiles);
    loaded.variables.extend(fill.uses);
    loaded.secrets = collect_secrets(&stack, env_file, vars, &loaded.variables);
    loaded.secrets.extend(secret_values);
    loaded.unused_env = unused_env(env_file, vars, &loaded.variables);
    loaded.stack = stack;
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// `env_file` with `format: raw`: every `KEY=VALUE` line as it is (blank lines and `#`
/// comments skipped; a line without `=` is left out).
fn raw_env_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.to_string()))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// `label_file`: labels from `KEY=VALUE` files, under the service's own `labels`.
fn read_label_files(
    name: &str,
    service: &mut super::model::Service,
    loaded: &LoadedStack,
    project: &Project,
    errors: &mut Vec<StackError>,
) {
    for (index, file) in service.label_file.iter_mut().enumerate() {
        let path = absolute(&project.dir, file);
        let at = loaded.locate_value(&["services", name, "label_file", &index.to_string()]);
        let shown = project.display_path(&path);
        match super::read_text(&path, &shown) {
            Ok(text) => match envfile::parse(&text) {
                Ok(entries) => {
                    for entry in entries {
                        service.labels.entry(entry.key).or_insert(entry.value);
                    }
                }
                Err(e) => errors.push(StackError::new(
                    Some(Location {
                        file: shown.clone(),
                        line: e.line,
                        column: 1,
                    }),
                    format!("{} (label file of service `{name}`)", e.message),
                )),
            },
            Err(super::ReadError::NotFound) => errors.push(
                StackError::new(
                    at,
                    format!("service `{name}`: cannot read label file `{file}`: no such file"),
                )
                .with_hint("paths in `label_file` are relative to the project directory"),
            ),
            Err(super::ReadError::Refused(error)) => errors.push(StackError {
                location: error.location.or(at),
                message: format!("service `{name}`: {}", error.message),
                hint: error.hint,
            }),
        }
        *file = path.display().to_string();
    }
}

/// The content of every top-level secret and config: a file (relative to the project
/// directory), a variable of the stage, or written inline. Returns the secrets' values read
/// from variables (masked in every output).
fn read_file_sources(
    stack: &mut super::model::Stack,
    loaded: &LoadedStack,
    project: &Project,
    vars: &Variables,
    errors: &mut Vec<StackError>,
) -> Vec<String> {
    let mut masked = Vec::new();
    for (section, defs) in [
        ("secrets", &mut stack.secrets),
        ("configs", &mut stack.configs),
    ] {
        for (name, def) in defs.iter_mut() {
            if let Some(file) = &def.file {
                let path = absolute(&project.dir, file);
                let at = loaded.locate_value(&[section, name, "file"]);
                match std::fs::read(&path) {
                    Ok(bytes) => def.data = Some(bytes),
                    Err(e) => errors.push(
                        StackError::new(
                            at,
                            format!(
                                "{section}.{name}: cannot read `{file}`: {}",
                                crate::error::io_reason(&e)
                            ),
                        )
                        .with_hint("paths in `file` are relative to the project directory"),
                    ),
                }
                def.file = Some(path.display().to_string());
            } else if let Some(variable) = &def.environment {
                match vars.get(variable) {
                    Some((value, _)) => {
                        if section == "secrets" && !value.is_empty() {
                            masked.push(value.clone());
                        }
                        def.data = Some(value.clone().into_bytes());
                    }
                    None => errors.push(
                        StackError::new(
                            loaded.locate_value(&[section, name, "environment"]),
                            format!("{section}.{name}: the variable `{variable}` is not set"),
                        )
                        .with_hint(format!(
                            "set it in the environment or in {}",
                            project.display_path(&project.env_file())
                        )),
                    ),
                }
            } else if let Some(content) = &def.content {
                def.data = Some(content.clone().into_bytes());
            }
        }
    }
    masked
}

/// Sets the project name: the stack's `name:`, else the directory's name, sanitized. Too
/// long a name is an error (and the sanitized name is still set, so later errors read well).
fn name_project(loaded: &mut LoadedStack, project: &Project) -> Option<StackError> {
    let name = loaded
        .stack
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| project.dir_name());
    loaded.project = sanitize_name(&name);
    let error = (loaded.project.len() > MAX_PROJECT_NAME).then(|| too_long_name(loaded));
    loaded.stack.name = Some(loaded.project.clone());
    error
}

/// Engine object and lock file names are built from the project name
/// (`{stage}-{project}--{service}`, `{project}-{stage}.lock`): refuse a long one here
/// rather than fail halfway through `up`.
fn too_long_name(loaded: &LoadedStack) -> StackError {
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
    })
}

/// A service's env files read and merged under its `environment`, the rest of its
/// environment and build arguments filled from variables, and its paths made absolute.
fn resolve_service(
    name: &str,
    service: &mut Service,
    loaded: &LoadedStack,
    project: &Project,
    fill: &mut Fill,
    errors: &mut Vec<StackError>,
) {
    read_label_files(name, service, loaded, project, errors);
    let from_files = read_env_files(
        name,
        &mut service.env_file,
        loaded,
        project,
        fill.vars,
        errors,
    );
    fill_environment(
        &mut service.environment,
        fill.vars,
        &mut fill.uses,
        &["services", name, "environment"],
        fill.marks,
    );
    merge_env_files(name, &mut service.environment, from_files, &mut fill.uses);
    fill_hook_environments(name, service, fill);
    if let Some(build) = &mut service.build {
        let base = ["services", name, "build"];
        resolve_build(
            build,
            fill.dir,
            fill.vars,
            &mut fill.uses,
            &base,
            fill.marks,
        );
    }
    absolute_mounts(&mut service.volumes, fill.dir);
}

/// The entries of a service's `env_file`s, later files winning; each path is made absolute
/// in place. A file that cannot be read or parsed is an error located at its entry.
fn read_env_files(
    name: &str,
    files: &mut [super::model::EnvFile],
    loaded: &LoadedStack,
    project: &Project,
    vars: &Variables,
    errors: &mut Vec<StackError>,
) -> IndexMap<String, String> {
    let mut from_files: IndexMap<String, String> = IndexMap::new();
    for (index, entry) in files.iter_mut().enumerate() {
        let file = &entry.path;
        let path = absolute(&project.dir, file);
        let at = loaded.locate_value(&["services", name, "env_file", &index.to_string()]);
        let shown = project.display_path(&path);
        // Values interpolate the stage's variables and the lines above them, as in Compose;
        // `format: raw` takes each line as written.
        let raw = entry.raw;
        let parsed = super::read_text(&path, &shown).map(|text| {
            if raw {
                return Ok(raw_env_lines(&text)
                    .into_iter()
                    .map(|(key, value)| envfile::Entry {
                        key,
                        value,
                        line: 0,
                        literal: true,
                    })
                    .collect());
            }
            envfile::parse(&text).and_then(|mut entries| {
                envfile::expand(&mut entries, &mut vars.clone(), &shown).map(|()| entries)
            })
        });
        match parsed {
            Ok(parsed) => match parsed {
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
            // `required: false`: a missing file is left out, as in Compose.
            Err(super::ReadError::NotFound) if !entry.required => {}
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
        entry.path = path.display().to_string();
    }
    from_files
}

/// The `environment` of each `pre_start` step and `post_start` / `pre_stop` command: an
/// entry without a value takes the variable's, as in the service's own `environment`.
fn fill_hook_environments(name: &str, service: &mut Service, fill: &mut Fill) {
    let steps = service
        .pre_start
        .iter_mut()
        .map(|s| ("pre_start", &mut s.environment));
    let post = service
        .post_start
        .iter_mut()
        .map(|h| ("post_start", &mut h.environment));
    let pre = service
        .pre_stop
        .iter_mut()
        .map(|h| ("pre_stop", &mut h.environment));
    let mut counts = std::collections::HashMap::new();
    for (key, environment) in steps.chain(post).chain(pre) {
        let index: &mut usize = counts.entry(key).or_default();
        let at = index.to_string();
        *index += 1;
        fill_environment(
            environment,
            fill.vars,
            &mut fill.uses,
            &["services", name, key, &at, "environment"],
            fill.marks,
        );
    }
}

/// `environment` wins over the env files: the files' entries go first, and an entry left
/// without a value (no variable had it) takes the files' value instead.
fn merge_env_files(
    name: &str,
    environment: &mut IndexMap<String, Option<String>>,
    from_files: IndexMap<String, String>,
    uses: &mut Vec<Use>,
) {
    for (key, value) in environment.iter_mut() {
        if value.is_none() {
            if let Some(from_file) = from_files.get(key) {
                *value = Some(from_file.clone());
                // Not left out after all: the service's env file has it.
                uses.retain(|u| {
                    !(u.resolution == Resolution::LeftOut
                        && u.name == *key
                        && u.path.get(1).map(String::as_str) == Some(name))
                });
            }
        }
    }
    if !from_files.is_empty() {
        let mut merged: IndexMap<String, Option<String>> =
            from_files.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (key, value) in std::mem::take(environment) {
            merged.insert(key, value);
        }
        *environment = merged;
    }
}

fn resolve_data_container(name: &str, data: &mut DataContainer, fill: &mut Fill) {
    if let Some(build) = &mut data.build {
        let base = ["data_containers", name, "build"];
        resolve_build(
            build,
            fill.dir,
            fill.vars,
            &mut fill.uses,
            &base,
            fill.marks,
        );
    }
    absolute_mounts(&mut data.volumes, fill.dir);
}

fn resolve_task(name: &str, task: &mut ContainerTask, fill: &mut Fill) {
    fill_environment(
        &mut task.environment,
        fill.vars,
        &mut fill.uses,
        &["tasks", name, "environment"],
        fill.marks,
    );
    if let Some(build) = &mut task.build {
        let base = ["tasks", name, "build"];
        resolve_build(
            build,
            fill.dir,
            fill.vars,
            &mut fill.uses,
            &base,
            fill.marks,
        );
    }
    absolute_mounts(&mut task.volumes, fill.dir);
    if let Some(stdin) = &mut task.stdin {
        *stdin = absolute(fill.dir, stdin).display().to_string();
    }
}

/// Profiles: validation has checked every service; consumers see only the active ones.
/// Returns the names of the services set aside.
fn set_aside_inactive(stack: &mut Stack, selected: &[String]) -> Vec<String> {
    let (active, inactive): (IndexMap<_, _>, IndexMap<_, _>) = std::mem::take(&mut stack.services)
        .into_iter()
        .partition(|(_, service)| {
            service.profiles.is_empty() || service.profiles.iter().any(|p| selected.contains(p))
        });
    stack.services = active;
    inactive.into_keys().collect()
}

/// The values to mask: secret-looking variables of the stage (those in `.env.STAGE` and
/// those the stack uses), and secret-looking environment entries and build arguments of
/// the active services, tasks and data containers. Sorted, without duplicates or empties.
fn collect_secrets(
    stack: &Stack,
    env_file: &[envfile::Entry],
    vars: &Variables,
    variables: &[Use],
) -> Vec<String> {
    let mut secrets: Vec<String> = env_file
        .iter()
        .filter(|e| is_secret_key(&e.key))
        .map(|e| e.value.clone())
        .collect();
    for used in variables {
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
        for step in &service.pre_start {
            secret_values(&step.environment);
        }
        for hook in service.post_start.iter().chain(&service.pre_stop) {
            secret_values(&hook.environment);
        }
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
    secrets
}

/// Variables of `.env.STAGE` that the stack never uses. One overridden by the process
/// environment is left out: the file's line is not what counts.
fn unused_env(env_file: &[envfile::Entry], vars: &Variables, variables: &[Use]) -> Vec<Use> {
    env_file
        .iter()
        .filter(|entry| !variables.iter().any(|u| u.name == entry.key))
        .filter_map(|entry| {
            let (value, source) = vars.get(&entry.key)?;
            matches!(source, super::Source::EnvFile { line, .. } if *line == entry.line).then(
                || Use {
                    name: entry.key.clone(),
                    resolution: Resolution::Set(source.clone()),
                    value: value.clone(),
                    path: Vec::new(),
                },
            )
        })
        .collect()
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

    #[test]
    fn raw_env_files_keep_values_as_written() {
        let text = "# comment\nA=\"quoted\" value \nB=${NOT_INTERPOLATED}\n\nNOEQUALS\n C=x=y\n";
        assert_eq!(
            raw_env_lines(text),
            vec![
                ("A".to_string(), "\"quoted\" value ".to_string()),
                ("B".to_string(), "${NOT_INTERPOLATED}".to_string()),
                ("C".to_string(), "x=y".to_string()),
            ]
        );
    }
}
