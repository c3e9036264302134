//! Stack files: the model, loading with source locations, interpolation and validation.
//!
//! `load()` is the one entry point: read the stage's files (`stacks/base.yml` +
//! `stacks/STAGE.yml`, `compose.yaml` + its override, or the `-f` files), parse each with
//! positions (`load`) and merge them by Compose's rules (`compose`), interpolate variables
//! (`interpolate`, with `.env`/`.env.STAGE` read by `envfile`), apply `include` and
//! `extends` (`compose`), check everything (`validate`), then resolve what consumers need
//! (`resolve`): environment filled in, env files merged, relative paths made absolute,
//! profiles applied. Every position names its file, so errors point into the right one.

pub mod compose;
pub mod envfile;
pub mod interpolate;
pub mod load;
pub mod model;
mod resolve;
pub mod validate;
pub mod value;

use std::fmt;
use std::path::PathBuf;

use crate::project::Project;
pub use interpolate::{Resolution, Source, Use};
pub use model::Stack;

/// A place in a stack file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in a stack file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackError {
    pub location: Option<Location>,
    pub message: String,
    pub hint: Option<String>,
}

impl StackError {
    pub fn new(location: Option<Location>, message: impl Into<String>) -> Self {
        StackError {
            location,
            message: message.into(),
            hint: None,
        }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in a stack file (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackErrors(pub Vec<StackError>);

impl fmt::Display for StackErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            let location = error.location.as_ref().map(|l| l as &dyn fmt::Display);
            let hints: Vec<String> = error.hint.iter().cloned().collect();
            f.write_str(&crate::error::render(
                location,
                &error.message,
                &hints,
                "  ",
            ))?;
        }
        if self.0.len() > 1 {
            writeln!(f, "{} problems found", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for StackErrors {}

impl StackErrors {
    /// Problems in file order (those without a position first).
    fn sorted(mut errors: Vec<StackError>) -> Self {
        errors.sort_by_key(|e| {
            e.location
                .as_ref()
                .map(|l| (l.file.clone(), l.line, l.column))
        });
        errors.dedup();
        StackErrors(errors)
    }
}

/// A stack file after interpolation and validation, with what is needed to act on it.
#[derive(Debug, Clone, Default)]
pub struct LoadedStack {
    /// The resolved stack: only the services active under the selected profiles; every
    /// relative path made absolute; environment filled in.
    pub stack: Stack,
    /// Project name: the stack's `name:`, else the project directory's name (sanitized).
    pub project: String,
    pub stage: String,
    /// The project directory (absolute); relative paths in the stack resolve against it.
    pub dir: PathBuf,
    /// The stack file (absolute).
    pub file: PathBuf,
    /// Values of secret-looking variables and environment entries, to mask in every output.
    pub secrets: Vec<String>,
    /// Every variable reference and environment entry filled from a variable, with where
    /// its value came from (`stackctl config --sources`).
    pub variables: Vec<Use>,
    /// Variables of `.env.STAGE` that the stack file never uses (often a typo on one side).
    pub unused_env: Vec<Use>,
    /// Services left out because none of their profiles is selected.
    pub inactive_services: Vec<String>,
    /// Positions of every key and value of the stack file.
    pub marks: load::Marks,
}

impl LoadedStack {
    /// Where a key of the stack file is written, by its YAML path
    /// (`["services", "api", "ports", "0"]`; list items by index). Falls back to the nearest
    /// enclosing key that has a position.
    pub fn locate(&self, path: &[&str]) -> Option<Location> {
        self.marks.key(path).map(|pos| self.location(pos))
    }

    /// Where the value at a YAML path starts.
    pub fn locate_value(&self, path: &[&str]) -> Option<Location> {
        self.marks.value(path).map(|pos| self.location(pos))
    }

    /// The stack file as shown to the user (relative to the project directory).
    pub fn file_display(&self) -> String {
        self.file
            .strip_prefix(&self.dir)
            .unwrap_or(&self.file)
            .display()
            .to_string()
    }

    fn location(&self, pos: load::Pos) -> Location {
        self.marks.location(pos, &self.file_display())
    }

    /// Warnings worth showing before acting: variables referenced but set nowhere (as
    /// Compose warns), and valueless `environment`/`args` entries left out when `.env.STAGE`
    /// has a close name (a likely typo).
    pub fn warnings(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let likely_typo = |name: &str| {
            validate::suggest(name, self.unused_env.iter().map(|e| e.name.as_str())).is_some()
        };
        self.variables
            .iter()
            .filter(|u| match u.resolution {
                Resolution::Unset => seen.insert(u.name.clone()),
                Resolution::LeftOut => likely_typo(&u.name) && seen.insert(u.name.clone()),
                _ => false,
            })
            .map(|u| {
                let at = self
                    .locate_value(&u.path.iter().map(String::as_str).collect::<Vec<_>>())
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                let close =
                    validate::suggest(&u.name, self.unused_env.iter().map(|e| e.name.as_str()));
                let hint = match (close, self.unused_env.first()) {
                    (
                        Some(close),
                        Some(Use {
                            resolution: Resolution::Set(source),
                            ..
                        }),
                    ) => {
                        let file = match source {
                            Source::EnvFile { file, .. } => file.as_str(),
                            _ => "the env file",
                        };
                        format!(" (`{file}` has `{close}`: a typo?)")
                    }
                    _ => String::new(),
                };
                let effect = if u.resolution == Resolution::LeftOut {
                    "the entry is left out"
                } else {
                    "using an empty string"
                };
                format!("variable `{}` is not set; {effect}{at}{hint}", u.name)
            })
            .collect()
    }
}

/// Does a variable or environment key look like it holds a secret?
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The largest stack or env file read (a stack file is a few kilobytes; this keeps a
/// runaway file, or a link to `/dev/zero`, from being read until memory runs out).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a stack or env file could not be read as text.
#[derive(Debug)]
pub(crate) enum ReadError {
    NotFound,
    /// Anything else, said for the user (located when the text is not UTF-8).
    Refused(StackError),
}

/// Read a stack or env file as UTF-8 text: a regular file (links followed) of at most
/// `MAX_FILE_BYTES`; invalid UTF-8 is reported at its line and column.
pub(crate) fn read_text(path: &std::path::Path, shown: &str) -> Result<String, ReadError> {
    use std::io::Read;
    let refused = |message: String| ReadError::Refused(StackError::new(None, message));
    let io_error = |e: std::io::Error| {
        let error = StackError::new(
            None,
            format!("cannot read `{shown}`: {}", crate::error::io_reason(&e)),
        );
        ReadError::Refused(match e.kind() {
            std::io::ErrorKind::PermissionDenied => error.with_hint(
                "make it readable for this user (`chmod u+r`), or run stackctl as its owner",
            ),
            _ => error,
        })
    };
    let too_big = || {
        refused(format!(
            "cannot read `{shown}`: it is larger than {} MiB; stack and env files are limited to that size",
            MAX_FILE_BYTES >> 20
        ))
    };
    if path == std::path::Path::new(crate::project::STDIN_FILE) {
        let bytes = stdin_stack_file()
            .map_err(|e| io_error(std::io::Error::new(e.kind(), e.to_string())))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_big());
        }
        return utf8_text(bytes.clone(), shown);
    }
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound),
        Err(e) => return Err(io_error(e)),
    };
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO (named pipe)"
        } else if file_type.is_char_device() || file_type.is_block_device() {
            "a device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        let error = StackError::new(
            None,
            format!(
                "cannot read `{shown}`: it is {kind}; stack and env files must be regular files"
            ),
        );
        return Err(ReadError::Refused(if file_type.is_dir() {
            error.with_hint("remove or rename that directory")
        } else {
            error
        }));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    utf8_text(bytes, shown)
}

/// The stack file given as `-f -`: standard input, read once (at most one byte over the
/// size limit, so the caller can refuse it) and kept for the process.
fn stdin_stack_file() -> Result<&'static Vec<u8>, &'static std::io::Error> {
    use std::io::Read;
    static STDIN: std::sync::OnceLock<std::io::Result<Vec<u8>>> = std::sync::OnceLock::new();
    STDIN
        .get_or_init(|| {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map(|_| bytes)
        })
        .as_ref()
}

/// Bytes as UTF-8 text; invalid UTF-8 and a NUL byte are reported at their line and column.
///
/// The YAML reader stops at a NUL byte as if the file ended there, and an env file would keep
/// it inside a value: a file cut short by a crash (zeros appended) or a stray NUL must not
/// be read as a shorter, valid file.
fn utf8_text(bytes: Vec<u8>, shown: &str) -> Result<String, ReadError> {
    let text = utf8_only(bytes, shown)?;
    match text.find('\0') {
        None => Ok(text),
        Some(at) => {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(ReadError::Refused(
                StackError::new(
                    Some(Location {
                        file: shown.to_string(),
                        line,
                        column,
                    }),
                    "the file contains a NUL byte",
                )
                .with_hint("stack and env files are text; remove the NUL bytes (a crash or an editor may have left them)"),
            ))
        }
    }
}

/// Bytes as UTF-8 text; invalid UTF-8 is reported at its line and column.
fn utf8_only(bytes: Vec<u8>, shown: &str) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let before = String::from_utf8_lossy(valid);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let byte = e.as_bytes()[valid.len()];
        ReadError::Refused(
            StackError::new(
                Some(Location {
                    file: shown.to_string(),
                    line,
                    column,
                }),
                format!("the file is not valid UTF-8 (byte 0x{byte:02x})"),
            )
            .with_hint("save the file as UTF-8"),
        )
    })
}

/// Load, interpolate, validate and resolve the stack file of the project's stage.
///
/// Errors never show a secret: values of secret-looking variables (and secret-looking
/// entries written in the stack file) are masked in every message, and quoted values are
/// shortened (an 8 MB value does not make an 8 MB line).
pub fn load(project: &Project) -> Result<LoadedStack, StackErrors> {
    let mut secrets = Vec::new();
    load_stack(project, &mut secrets).map_err(|errors| errors.for_display(&secrets))
}

/// Values shorter than this are not masked in error messages: they would mask digits and
/// words of the message itself, and hide nothing worth hiding.
const MIN_MASKED_LEN: usize = 4;
/// Quoted values in messages are cut after this many characters.
pub const MAX_QUOTED_CHARS: usize = 80;

impl StackErrors {
    /// Secrets masked and quoted values bounded in every message and hint.
    pub fn for_display(self, secrets: &[String]) -> StackErrors {
        let mut secrets: Vec<&str> = secrets
            .iter()
            .map(String::as_str)
            .filter(|s| s.chars().count() >= MIN_MASKED_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let clean = |text: &str| {
            let mut text = text.to_string();
            for secret in &secrets {
                if text.contains(secret) {
                    text = text.replace(secret, "****");
                }
            }
            bound_quoted(&text)
        };
        StackErrors(
            self.0
                .into_iter()
                .map(|error| StackError {
                    location: error.location,
                    message: clean(&error.message),
                    hint: error.hint.as_deref().map(clean),
                })
                .collect(),
        )
    }
}

/// Each `quoted` part of a message cut to `MAX_QUOTED_CHARS` (with `…`), line breaks
/// shown as `\n`; the whole message cut to a few lines' worth.
pub fn bound_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    for (index, part) in text.split('`').enumerate() {
        if index > 0 {
            out.push('`');
        }
        if index % 2 == 1 {
            let shown: String = part.chars().take(MAX_QUOTED_CHARS).collect();
            out.push_str(&shown.replace('\n', "\\n").replace('\r', "\\r"));
            if part.chars().nth(MAX_QUOTED_CHARS).is_some() {
                out.push('…');
            }
        } else {
            out.push_str(part);
        }
        if out.len() > 2000 {
            let cut: String = out.chars().take(2000).collect();
            return cut + "…";
        }
    }
    out
}

/// Secret-looking entries written in the tree itself (`DB_PASSWORD: literal`).
fn literal_secrets(value: &load::Value, secrets: &mut Vec<String>) {
    match value {
        load::Value::Mapping(map) => {
            for (key, item) in map {
                match item.scalar_text() {
                    Some(text) if is_secret_key(key) => secrets.push(text),
                    _ => literal_secrets(item, secrets),
                }
            }
        }
        load::Value::Sequence(items) => {
            for item in items {
                // `KEY=VALUE` list entries.
                if let Some((key, text)) = item.as_str().and_then(|s| s.split_once('=')) {
                    if is_secret_key(key) {
                        secrets.push(text.to_string());
                    }
                }
                literal_secrets(item, secrets);
            }
        }
        _ => {}
    }
}

/// Read → parse → merge the files → read the stage's variables → interpolate → include
/// and extend → validate → resolve. Each step stops at its first kind of failure;
/// validation reports every problem it finds.
fn load_stack(project: &Project, secrets: &mut Vec<String>) -> Result<LoadedStack, StackErrors> {
    let layout = project.stack_files();
    let file = layout.main.clone();
    let shown = project.display_path(&file);
    let paths: Vec<(PathBuf, String)> = layout
        .paths
        .iter()
        .map(|path| (path.clone(), project.display_path(path)))
        .collect();
    let (mut root, marks, mut files) = compose::read_and_merge(&paths, &project.dir, |missing| {
        missing_stack_file(project, &layout, missing)
    })
    .map_err(StackErrors::sorted)?;
    let text = files.text.clone();
    let (entries, mut vars) = read_stage_variables(project, layout.compose)?;
    register_stage_secrets(&entries, &text);
    secrets.extend(stage_secrets(&vars, &text));
    literal_secrets(&root, secrets);

    let (mut uses, failures) = interpolate_stack(&mut root, &mut vars);
    let mut expand = compose::Expand {
        files: &mut files,
        vars: &vars,
        dir: &project.dir,
        errors: Vec::new(),
        uses: Vec::new(),
    };
    let (root, marks) = compose::expand(root, marks, &mut expand);
    let expand_errors = std::mem::take(&mut expand.errors);
    uses.append(&mut expand.uses);
    literal_secrets(&root, secrets);
    let stack = validate_stack(&root, &marks, &shown, project, failures, expand_errors)?;
    let loaded = LoadedStack {
        stack,
        project: String::new(),
        stage: project.stage.clone(),
        dir: project.dir.clone(),
        file,
        secrets: Vec::new(),
        variables: uses,
        inactive_services: Vec::new(),
        unused_env: Vec::new(),
        marks,
    };
    let loaded = resolve::resolve(loaded, project, &vars, &entries).map_err(StackErrors::sorted)?;
    crate::output::register_secrets(loaded.secrets.iter().cloned());
    Ok(loaded)
}

/// A stack file that is not there: the stage's own file suggests `init`; a `-f` file is
/// just missing.
fn missing_stack_file(
    project: &Project,
    layout: &crate::project::StackFiles,
    shown: &str,
) -> StackError {
    if !layout.compose && shown == project.display_path(&layout.main) {
        StackError::new(
            None,
            format!("cannot read stack file `{shown}`: no such file"),
        )
        .with_hint(if project.dir.join("stacks").is_dir() {
            missing_stack_hint(project)
        } else {
            format!(
                "run `stackctl init --env {}` to create it, or put a `compose.yaml` in the project directory",
                project.stage
            )
        })
    } else {
        StackError::new(
            None,
            format!("cannot read stack file `{shown}`: no such file"),
        )
    }
}

/// What to do when the stage has no stack file: create it, or pick a stage that has one.
fn missing_stack_hint(project: &Project) -> String {
    let create = format!("run `stackctl init --env {}` to create it", project.stage);
    let stages = project.stages();
    if stages.is_empty() {
        return create;
    }
    let listed: Vec<String> = stages.iter().map(|s| format!("`{s}`")).collect();
    format!(
        "stages with a stack file: {} (choose one with `-e STAGE`); or {create}",
        listed.join(", ")
    )
}

/// The YAML tree and the position of every key and value; a syntax error is located, with
/// a hint when its line holds a tab (the usual cause).
fn parse_stack(text: &str, shown: &str) -> Result<(load::Value, load::Marks), StackErrors> {
    load::parse(text).map_err(|e| {
        let mut error = StackError::new(
            e.pos.map(|p| Location {
                file: shown.to_string(),
                line: p.line,
                column: p.column,
            }),
            format!("invalid YAML: {}", e.message),
        );
        let line = e
            .pos
            .and_then(|p| text.lines().nth(p.line.saturating_sub(1)));
        if line.is_some_and(|l| l.contains('\t')) {
            error = error.with_hint("YAML indents with spaces; this line has a tab");
        }
        StackErrors(vec![error])
    })
}

/// The entries of the stage's env files (`.env` for a Compose project, then `.env.STAGE`;
/// none when they do not exist), each value interpolated as Compose reads it, and the
/// variables they make with the process environment and the built-ins.
fn read_stage_variables(
    project: &Project,
    compose: bool,
) -> Result<(Vec<envfile::Entry>, interpolate::Variables), StackErrors> {
    let hint_file = if compose {
        ".env".to_string()
    } else {
        project.display_path(&project.env_file())
    };
    let dir_name = project.dir_name();
    let mut vars = interpolate::Variables::new(
        std::env::vars(),
        &[],
        &hint_file,
        &[("STAGE", &project.stage), ("PROJECT", &dir_name)],
    );
    let mut all = Vec::new();
    for env_path in project.env_files(compose) {
        let env_shown = project.display_path(&env_path);
        let located = |e: envfile::EnvFileError| {
            StackErrors(vec![StackError::new(
                Some(Location {
                    file: env_shown.clone(),
                    line: e.line,
                    column: 1,
                }),
                e.message,
            )])
        };
        match read_text(&env_path, &env_shown) {
            Ok(text) => {
                let mut entries = envfile::parse(&text).map_err(located)?;
                envfile::expand(&mut entries, &mut vars, &env_shown).map_err(located)?;
                all.extend(entries);
            }
            Err(ReadError::NotFound) => {}
            Err(ReadError::Refused(error)) => return Err(StackErrors(vec![error])),
        }
    }
    Ok((all, vars))
}

/// From here on every message masks the stage's secret-looking variables (of the env file,
/// and of the process environment when the stack file names them), also an error that
/// quotes one while the stack file is checked.
fn register_stage_secrets(entries: &[envfile::Entry], text: &str) {
    crate::output::register_secrets(
        entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .chain(std::env::vars().filter(|(key, _)| text.contains(key.as_str())))
            .filter(|(key, _)| is_secret_key(key))
            .map(|(_, value)| value)
            .collect::<Vec<_>>(),
    );
}

/// The env file's secret-looking variables, and the environment's when the stack file
/// names them (a `SOME_KEY=true` elsewhere must not mask every `true`).
fn stage_secrets(vars: &interpolate::Variables, text: &str) -> Vec<String> {
    vars.iter()
        .filter(|(name, (_, source))| {
            is_secret_key(name)
                && (!matches!(source, interpolate::Source::Process) || text.contains(name.as_str()))
        })
        .map(|(_, (value, _))| value.clone())
        .collect()
}

/// A failed interpolation: the YAML path of the value, and what went wrong.
type Failure = (Vec<String>, interpolate::Error);

/// Every `${…}` of the tree replaced; the variables used, and the values that failed.
/// `name:` goes first: `${PROJECT}` means the project name everywhere else.
fn interpolate_stack(
    root: &mut load::Value,
    vars: &mut interpolate::Variables,
) -> (Vec<interpolate::Use>, Vec<Failure>) {
    let mut uses = Vec::new();
    let mut failures = Vec::new();
    if let load::Value::Mapping(map) = root {
        if let Some(name) = map.get_mut("name") {
            let mut at = vec!["name".to_string()];
            interpolate::interpolate_tree(name, &mut at, vars, &mut uses, &mut failures);
            if let Some(name) = name.as_str().filter(|n| !n.is_empty()) {
                vars.set_builtin("PROJECT", &crate::project::sanitize_name(name));
            }
        }
        for (key, value) in map.iter_mut() {
            let key = interpolate::key_text(key);
            if key != "name" {
                interpolate::interpolate_tree(
                    value,
                    &mut vec![key],
                    vars,
                    &mut uses,
                    &mut failures,
                );
            }
        }
    }
    (uses, failures)
}

/// The typed stack, or every problem: the interpolation failures (located at their values)
/// and what validation finds elsewhere (it skips the values that failed, already reported).
fn validate_stack(
    root: &load::Value,
    marks: &load::Marks,
    shown: &str,
    project: &Project,
    failures: Vec<Failure>,
    mut errors: Vec<StackError>,
) -> Result<model::Stack, StackErrors> {
    errors.extend(failures.iter().map(|(path, err)| StackError {
        location: marks.value(path).map(|p| marks.location(p, shown)),
        message: err.message.clone(),
        hint: err.hint.clone(),
    }));
    let failed: Vec<Vec<String>> = failures.into_iter().map(|(path, _)| path).collect();
    let ctx = validate::Context {
        marks,
        file: shown,
        failed: &failed,
        profiles: &project.profiles,
    };
    let mut report = validate::Report::new(&ctx);
    let stack = validate::check(root, &mut report);
    errors.extend(report.errors);
    match stack {
        Some(stack) if errors.is_empty() => Ok(stack),
        _ => Err(StackErrors::sorted(errors)),
    }
}
