//! `stackctl init`: render `templates/stack.yml` → `stacks/STAGE.yml` and `templates/env` →
//! `.env.STAGE` (mode 0600), remember the stage for later commands (`.stackctl/stage`),
//! validate the result, then run the stack's `init` task.
//!
//! Placeholders: `{stage}`, `{project}` (the project directory's name), `{domain}` (default
//! `STAGE.localhost`), and `{secret}`, which becomes a fresh random secret at each
//! occurrence. Files that exist are kept unless `--force`. Without a `templates/` directory,
//! templates compiled into the binary scaffold a small PostgreSQL stack. A Compose project
//! (`compose.yaml`, no `stacks/`) keeps its files: only `templates/env` is rendered.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::{remember_stage, Context};
use crate::cli::InitArgs;
use crate::error::{exit, UsageError};
use crate::output::Mode;
use crate::stack::{self, LoadedStack};

const BUILTIN_STACK: &str = include_str!("../templates/stack.yml");
const BUILTIN_ENV: &str = include_str!("../templates/env");

/// Length of a generated `{secret}`.
pub const SECRET_LEN: usize = 32;

/// What `init` wrote or kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    /// Where the template came from (`templates/stack.yml` or `built-in`).
    pub template: String,
    pub written: bool,
    /// Variables of an existing env file given new values from the environment.
    pub updated: Vec<String>,
}

pub async fn run(ctx: &Context, args: &InitArgs) -> Result<i32> {
    let rendered = render(ctx, args)?;
    report(ctx, &rendered);
    let loaded = stack::load(&ctx.project)?;
    // Only a stage whose stack file is valid becomes the default.
    remember(ctx);
    if args.no_run {
        ctx.printer.status(&format!(
            "{} is valid; the `init` task was not run (--no-run)",
            ctx.project.display_path(&loaded.file)
        ));
        return Ok(exit::OK);
    }
    run_init_task(ctx, &loaded)
        .await
        .map_err(|err| with_offline_hint(ctx, err))
}

/// Make the stage the one later commands act on without `-e` (`.stackctl/stage`) when no
/// other stage with a stack file is remembered: a second stage made beside `dev` does not
/// silently become the one a later plain `purge --yes` removes (`stackctl use` switches).
/// Not being able to is worth a warning, not a failure: the files are there.
fn remember(ctx: &Context) {
    let project = &ctx.project;
    let previous = crate::project::remembered_stage(&project.dir)
        .ok()
        .flatten();
    if let Some(previous) = previous.as_deref() {
        let mut other = project.clone();
        other.stage = previous.to_string();
        if previous != project.stage && other.stack_files().main.is_file() {
            ctx.printer.status(&format!(
                "commands here still act on stage `{previous}` without `-e` (`stackctl use {}` switches)",
                project.stage
            ));
            return;
        }
    }
    remember_stage(ctx, previous.as_deref());
}

/// An `init` that could not pull an image the env file names (`DB_IMAGE=postgres:16-alpine`)
/// says how to go on without a registry: load an image, and give its name to `init`, which
/// writes it into the env file.
fn with_offline_hint(ctx: &Context, mut err: anyhow::Error) -> anyhow::Error {
    let env_file = ctx.project.env_file();
    let Some(env) = existing_text(&env_file) else {
        return err;
    };
    let shown = ctx.project.display_path(&env_file);
    let stage = &ctx.project.stage;
    let rewrite = |registry: &mut crate::registry::RegistryError, reference: &str| {
        let Some(key) = env
            .lines()
            .filter_map(assignment)
            .find(|(_, value)| *value == reference)
            .map(|(key, _)| key.to_string())
        else {
            return;
        };
        registry.hint = Some(format!(
            "without a registry, use an image this engine has (`docker image ls`, or `docker load < image.tar` first): `{key}=IMAGE stackctl init --env {stage}` writes it into {shown}"
        ));
    };
    let mut fix = |cause: &mut anyhow::Error| {
        if let Some(registry) = cause.downcast_mut::<crate::registry::RegistryError>() {
            let offline = matches!(
                registry.problem,
                crate::registry::Problem::Unreachable | crate::registry::Problem::NotFound
            );
            if offline {
                if let Some(reference) = registry.reference.clone() {
                    rewrite(registry, &reference);
                }
            }
        }
    };
    if let Some(several) = err.downcast_mut::<crate::error::Several>() {
        several.0.iter_mut().for_each(&mut fix);
    } else {
        fix(&mut err);
    }
    err
}

/// Run the stack's `init` task when it has one, as `stackctl exec init` does (the stage's
/// secrets masked).
async fn run_init_task(ctx: &Context, loaded: &LoadedStack) -> Result<i32> {
    if !loaded.stack.tasks.contains_key("init") {
        ctx.printer.status(&format!(
            "no `init` task in {}: nothing to run",
            ctx.project.display_path(&loaded.file)
        ));
        return Ok(exit::OK);
    }
    let exec = crate::cli::ExecArgs {
        name: "init".to_string(),
        args: Vec::new(),
    };
    Box::pin(super::run_command(ctx, crate::cli::Command::Exec(exec))).await
}

/// Render the stack file and the env file of the stage from the templates.
pub fn render(ctx: &Context, args: &InitArgs) -> Result<Rendered> {
    let project = &ctx.project;
    let templates = project.dir.join("templates");
    if project.stack_files().compose {
        return render_env_only(ctx, args);
    }
    let (stack_template, env_template) = if templates.is_dir() {
        let stack_path = templates.join("stack.yml");
        let stack_text = std::fs::read_to_string(&stack_path).map_err(|e| {
            UsageError::new(format!(
                "cannot read `{}`: {e}",
                project.display_path(&stack_path)
            ))
            .with_hint("a project's `templates/` holds `stack.yml` (and optionally `env`); remove the directory to use the built-in templates")
        })?;
        let env_path = templates.join("env");
        let env = match std::fs::read_to_string(&env_path) {
            Ok(text) => Some((text, project.display_path(&env_path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(UsageError::new(format!(
                    "cannot read `{}`: {e}",
                    project.display_path(&env_path)
                ))
                .into())
            }
        };
        ((stack_text, project.display_path(&stack_path)), env)
    } else {
        (
            (BUILTIN_STACK.to_string(), "built-in".to_string()),
            Some((BUILTIN_ENV.to_string(), "built-in".to_string())),
        )
    };
    let domain = args
        .domain
        .clone()
        .unwrap_or_else(|| format!("{}.localhost", project.stage));
    let values = Placeholders {
        stage: &project.stage,
        project: &project.dir_name(),
        domain: &domain,
    };
    let mut files = Vec::new();
    let stack_file = project.stack_file();
    let text = values.render(&stack_template.0)?;
    let written = write_file(&stack_file, &text, None, args.force)?;
    files.push(RenderedFile {
        path: stack_file,
        template: stack_template.1,
        written,
        updated: Vec::new(),
    });
    if let Some((template, origin)) = env_template {
        files.push(render_env(ctx, args, &values, &template, origin)?);
    }
    Ok(Rendered { files })
}

/// Render `.env.STAGE`. A file that exists keeps its values (its secrets above all): only
/// the variables the process environment sets are written into it (`DB_IMAGE=… stackctl
/// init` after a first `init`). With `--force` it is rendered again, but a `{secret}` whose
/// variable the old file has keeps the old value: a database initialised with a password
/// keeps accepting it.
fn render_env(
    ctx: &Context,
    args: &InitArgs,
    values: &Placeholders,
    template: &str,
    origin: String,
) -> Result<RenderedFile> {
    let env_file = ctx.project.env_file();
    let existing = existing_text(&env_file);
    let lookup = |key: &str| std::env::var(key).ok();
    match existing {
        Some(old) if !args.force => {
            let rendered = values.render(template)?;
            let (text, updated) = updated_env(&old, &rendered, lookup);
            let written = if updated.is_empty() {
                false
            } else {
                write_file(&env_file, &text, Some(0o600), true)?
            };
            Ok(RenderedFile {
                path: env_file,
                template: origin,
                written: false,
                updated: if written { updated } else { Vec::new() },
            })
        }
        existing => {
            let template = match &existing {
                Some(old) => with_old_secrets(template, old),
                None => template.to_string(),
            };
            let text = kept_from_environment(ctx, &values.render(&template)?);
            let written = write_file(&env_file, &text, Some(0o600), args.force)?;
            Ok(RenderedFile {
                path: env_file,
                template: origin,
                written,
                updated: Vec::new(),
            })
        }
    }
}

/// The text of a regular file at `path`, when there is one (a symlink is refused later, when
/// writing).
fn existing_text(path: &Path) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => std::fs::read_to_string(path).ok(),
        _ => None,
    }
}

/// `KEY` of a `KEY=VALUE` line, and its value without quotes.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.trim_end_matches(['\n', '\r']).split_once('=')?;
    let key = key.trim();
    let valid = !key.is_empty()
        && !key.starts_with('#')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let value = value.trim();
    let unquoted = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
        .unwrap_or(value);
    valid.then_some((key, unquoted))
}

/// The template with each `{secret}` line whose variable `old` has replaced by old's line.
fn with_old_secrets(template: &str, old: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    template
        .split_inclusive('\n')
        .map(|line| {
            let Some((key, _)) = assignment(line).filter(|_| line.contains("{secret}")) else {
                return line.to_string();
            };
            match old_lines
                .iter()
                .find(|old| assignment(old).is_some_and(|(k, _)| k == key))
            {
                Some(old) => format!(
                    "{old}{}",
                    &line[line.trim_end_matches(['\n', '\r']).len()..]
                ),
                None => line.to_string(),
            }
        })
        .collect()
}

/// An existing env file with the values `lookup` gives written in: its own variables, and
/// the rendered template's variables it lacks (appended). Only values that differ count.
fn updated_env(
    old: &str,
    rendered: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let (mut text, mut updated) = with_environment(old, &lookup);
    let has = |key: &str| {
        old.lines()
            .any(|l| assignment(l).is_some_and(|(k, _)| k == key))
    };
    let missing: String = rendered
        .lines()
        .filter_map(assignment)
        .filter(|(key, _)| !has(key))
        .map(|(key, _)| format!("{key}=\n"))
        .collect();
    let (appended, added) = with_environment(&missing, &lookup);
    if !added.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for line in appended.lines() {
            if assignment(line).is_some_and(|(key, _)| added.iter().any(|a| a == key)) {
                text.push_str(line);
                text.push('\n');
            }
        }
        updated.extend(added);
    }
    (text, updated)
}

/// A Compose project (`compose.yaml` and no `stacks/`, or `-f`) keeps its files as they are:
/// writing `stacks/STAGE.yml` would hide them. Only `templates/env` is rendered, when there
/// is one, to `.env.STAGE`.
fn render_env_only(ctx: &Context, args: &InitArgs) -> Result<Rendered> {
    let project = &ctx.project;
    let main = project.stack_files().main;
    ctx.printer.status(&format!(
        "`{}` is this project's stack file (a Compose project): no `stacks/{}.yml` written",
        project.display_path(&main),
        project.stage
    ));
    let env_path = project.dir.join("templates").join("env");
    let template = match std::fs::read_to_string(&env_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Rendered { files: Vec::new() })
        }
        Err(e) => {
            return Err(UsageError::new(format!(
                "cannot read `{}`: {e}",
                project.display_path(&env_path)
            ))
            .into())
        }
    };
    let domain = args
        .domain
        .clone()
        .unwrap_or_else(|| format!("{}.localhost", project.stage));
    let values = Placeholders {
        stage: &project.stage,
        project: &project.dir_name(),
        domain: &domain,
    };
    let origin = project.display_path(&env_path);
    Ok(Rendered {
        files: vec![render_env(ctx, args, &values, &template, origin)?],
    })
}

fn report(ctx: &Context, rendered: &Rendered) {
    for file in &rendered.files {
        let shown = ctx.project.display_path(&file.path);
        if ctx.printer.mode == Mode::Json {
            let action = if file.written {
                "written"
            } else if !file.updated.is_empty() {
                "updated"
            } else {
                "kept"
            };
            ctx.printer.event(&shown, "file", action, "done", 0);
        } else if file.written {
            let from = if file.template == "built-in" {
                "the built-in template".to_string()
            } else {
                format!("`{}`", file.template)
            };
            ctx.printer.status(&format!("wrote {shown} from {from}"));
        } else if !file.updated.is_empty() {
            ctx.printer.status(&format!(
                "wrote {} from the environment into {shown} (its other values kept)",
                file.updated
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            ctx.printer.status(&format!(
                "kept {shown}: it exists (`stackctl init --force` overwrites it)"
            ));
        }
    }
}

/// The rendered env file with each variable the process environment sets written with that
/// value: `DB_IMAGE=my/postgres stackctl init` makes a stage that keeps using `my/postgres`
/// (the environment only overrides the file while it is set). Names are reported, never
/// values (they may be secrets).
fn kept_from_environment(ctx: &Context, text: &str) -> String {
    let (text, kept) = with_environment(text, |key| std::env::var(key).ok());
    if !kept.is_empty() {
        ctx.printer.status(&format!(
            "{} from the environment kept in `{}`",
            kept.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            ctx.project.display_path(&ctx.project.env_file())
        ));
    }
    text
}

/// `KEY=VALUE` lines whose key `lookup` knows get its value (plain when it is made of safe
/// characters, else single-quoted, so it stays literal); a value with a `'` is left out, as
/// it cannot be written literally. The keys replaced, in order.
fn with_environment(text: &str, lookup: impl Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let key = body
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && !key.starts_with('#')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        let value = key.and_then(&lookup).filter(|value| !value.contains('\''));
        // A value the line already holds is no change.
        let value = value.filter(|value| assignment(body).map(|(_, v)| v) != Some(value));
        match (key, value) {
            (Some(key), Some(value)) => {
                let safe = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-./:@+,".contains(c));
                if safe {
                    out.push_str(&format!("{key}={value}"));
                } else {
                    out.push_str(&format!("{key}='{value}'"));
                }
                out.push_str(&line[body.len()..]);
                kept.push(key.to_string());
            }
            _ => out.push_str(line),
        }
    }
    (out, kept)
}

struct Placeholders<'a> {
    stage: &'a str,
    project: &'a str,
    domain: &'a str,
}

impl Placeholders<'_> {
    /// Replace the placeholders; each `{secret}` gets its own fresh secret.
    fn render(&self, template: &str) -> Result<String> {
        let text = template
            .replace("{stage}", self.stage)
            .replace("{project}", self.project)
            .replace("{domain}", self.domain);
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find("{secret}") {
            out.push_str(&rest[..at]);
            out.push_str(&secret()?);
            rest = &rest[at + "{secret}".len()..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A fresh secret of `SECRET_LEN` letters and digits from the operating system's random
/// source (unbiased: bytes beyond the largest multiple of 62 are drawn again).
pub fn secret() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(SECRET_LEN);
    while out.len() < SECRET_LEN {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf)
            .map_err(|e| anyhow::anyhow!("cannot read the system's random source: {e}"))?;
        for byte in buf {
            if out.len() == SECRET_LEN {
                break;
            }
            if (byte as usize) < 62 * 4 {
                out.push(ALPHABET[byte as usize % 62] as char);
            }
        }
    }
    Ok(out)
}

/// Write `text` to `path` unless it exists and `force` is off; returns whether it wrote.
/// With `mode`, the file has exactly that mode afterwards, also when it was overwritten.
/// A symlink in its place is refused, dangling or not: writing through it would put the
/// stage's secrets wherever it points (and `--force` would chmod the target).
fn write_file(path: &Path, text: &str, mode: Option<u32>, force: bool) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| format!(" (to `{}`)", t.display()))
                .unwrap_or_default();
            return Err(UsageError::new(format!(
                "`{}` is a symlink{target}: stackctl does not write through it",
                path.display()
            ))
            .with_hint("remove the link, or replace it with the file itself")
            .into());
        }
        Ok(meta) if !meta.is_file() => {
            return Err(UsageError::new(format!(
                "`{}` exists and is not a regular file",
                path.display()
            ))
            .with_hint("remove or rename it, then run `stackctl init` again")
            .into());
        }
        Ok(_) if !force => return Ok(false),
        _ => {}
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A link made between the check above and this open is not followed either.
        options.custom_flags(libc::O_NOFOLLOW);
        if let Some(mode) = mode {
            options.mode(mode);
        }
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    // The mode given at creation does not apply to a file that already existed.
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of `{}`", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_distinct_secrets() {
        let values = Placeholders {
            stage: "qa",
            project: "shop",
            domain: "qa.localhost",
        };
        let text = values
            .render("{stage}-{project} {domain} {secret} {secret} {other}")
            .unwrap();
        let parts: Vec<&str> = text.split(' ').collect();
        assert_eq!(parts[0], "qa-shop");
        assert_eq!(parts[1], "qa.localhost");
        assert_eq!(parts[2].len(), SECRET_LEN);
        assert!(parts[2].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(parts[2], parts[3]);
        assert_eq!(parts[4], "{other}");
    }

    #[test]
    fn variables_set_at_init_are_kept_in_the_env_file() {
        let text =
            "# DB_IMAGE=commented\nDB_IMAGE=postgres:16-alpine\nDB_PORT=5432\nNOTE=x\nQUOTE=a\n";
        let lookup = |key: &str| match key {
            "DB_IMAGE" => Some("registry.example.com/pg:15".to_string()),
            "NOTE" => Some("two words $HOME".to_string()),
            "QUOTE" => Some("it's".to_string()),
            _ => None,
        };
        let (out, kept) = with_environment(text, lookup);
        assert_eq!(
            out,
            "# DB_IMAGE=commented\nDB_IMAGE=registry.example.com/pg:15\nDB_PORT=5432\nNOTE='two words $HOME'\nQUOTE=a\n"
        );
        assert_eq!(kept, ["DB_IMAGE", "NOTE"]);
    }
}
