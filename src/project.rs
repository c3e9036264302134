//! Where a project lives and which stage is acted on: resolved once from flags and environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::UsageError;

/// The project directory and stage every command works on.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory holding `stacks/` (absolute).
    pub dir: PathBuf,
    /// The stage name (`dev`, `qa`, `ci-42`).
    pub stage: String,
    /// Selected profiles (`--profile`, `STACKCTL_PROFILES`): services with `profiles:` run
    /// only when one of theirs is selected.
    pub profiles: Vec<String>,
    /// Stack files given with `-f` (absolute), in merge order; empty: found in the project.
    pub files: Vec<PathBuf>,
}

/// The files a stage's stack is read from.
#[derive(Debug, Clone)]
pub struct StackFiles {
    /// In merge order (later files merge onto earlier ones).
    pub paths: Vec<PathBuf>,
    /// The stage's own file (what messages name): `stacks/STAGE.yml`, else the first file.
    pub main: PathBuf,
    /// A Compose project (`compose.yaml` or `-f`) rather than one with `stacks/`: `.env` is
    /// read under `.env.STAGE`.
    pub compose: bool,
}

/// The names Compose looks for, in its order of preference.
pub const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
/// Compose's override files, merged onto the file found.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// Where the command line says the project is and which stage it acts on (`-C`, `-f`, `-e`,
/// `--profile`); what it leaves out is found from the environment and the directory.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub directory: Option<PathBuf>,
    pub files: Vec<PathBuf>,
    pub env: Option<String>,
    pub profiles: Vec<String>,
}

impl Project {
    pub fn resolve(global: &Selection) -> Result<Self, UsageError> {
        let cwd = std::env::current_dir()
            .map_err(|e| UsageError::new(format!("cannot read the current directory: {e}")))?;
        let named = if global.files.is_empty() {
            compose_file_variable(
                std::env::var_os("COMPOSE_FILE"),
                std::env::var("COMPOSE_PATH_SEPARATOR").ok(),
            )
        } else {
            global.files.clone()
        };
        let files: Vec<PathBuf> = named
            .iter()
            .map(|f| {
                if f.as_os_str() == STDIN_FILE {
                    return f.clone();
                }
                let path = cwd.join(f);
                path.canonicalize().unwrap_or(path)
            })
            .collect();
        // As in Compose, the project directory is the first file's directory unless given.
        let dir = match (&global.directory, files.first()) {
            (Some(dir), _) if dir.is_absolute() => dir.clone(),
            (Some(dir), _) => cwd.join(dir),
            (None, Some(file)) if file.as_os_str() == STDIN_FILE => cwd,
            (None, Some(file)) => file.parent().map(Path::to_path_buf).unwrap_or(cwd),
            (None, None) => discover(&cwd),
        };
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(UsageError::new(format!(
                    "project directory `{}` is not a directory",
                    dir.display()
                ))
                .with_hint("`-C DIR` takes the directory that holds `stacks/`"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UsageError::new(format!(
                    "project directory `{}` does not exist",
                    dir.display()
                )))
            }
            Err(e) => {
                return Err(UsageError::new(format!(
                    "cannot use project directory `{}`: {}",
                    dir.display(),
                    crate::error::io_reason(&e)
                )))
            }
        }
        let dir = dir.canonicalize().unwrap_or(dir);
        let stage = stage_of(
            global.env.as_deref(),
            std::env::var_os("STACKCTL_ENV"),
            || remembered_stage(&dir),
        )?;
        let profiles = global
            .profiles
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Project {
            dir,
            stage,
            profiles,
            files,
        })
    }

    /// A project in `dir` on `stage`, with no profile selected.
    pub fn new(dir: impl Into<PathBuf>, stage: impl Into<String>) -> Self {
        Project {
            dir: dir.into(),
            stage: stage.into(),
            profiles: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The files the stage's stack is read from: the `-f` files; else, with `stacks/`,
    /// `stacks/base.yml` (when there is one) under `stacks/STAGE.yml`; else a Compose file
    /// (`compose.yaml` …) and its override (`compose.override.yaml` …); else
    /// `stacks/STAGE.yml` (which `init` writes).
    pub fn stack_files(&self) -> StackFiles {
        if !self.files.is_empty() {
            return StackFiles {
                paths: self.files.clone(),
                main: self.files[0].clone(),
                compose: true,
            };
        }
        let stage_file = self.stack_file();
        let stacks = self.dir.join("stacks");
        let compose = (!stacks.is_dir())
            .then(|| {
                COMPOSE_FILES
                    .iter()
                    .map(|name| self.dir.join(name))
                    .find(|path| path.is_file())
            })
            .flatten();
        match compose {
            Some(file) => {
                let mut paths = vec![file.clone()];
                paths.extend(
                    OVERRIDE_FILES
                        .iter()
                        .map(|name| self.dir.join(name))
                        .find(|path| path.is_file()),
                );
                StackFiles {
                    paths,
                    main: file,
                    compose: true,
                }
            }
            None => {
                let base = stacks.join("base.yml");
                let mut paths = Vec::new();
                if base.is_file() && base != stage_file {
                    paths.push(base);
                }
                paths.push(stage_file.clone());
                StackFiles {
                    paths,
                    main: stage_file,
                    compose: false,
                }
            }
        }
    }

    /// The env files the stage's variables come from, weakest first: `.env` (Compose
    /// projects only), then `.env.STAGE`.
    pub fn env_files(&self, compose: bool) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if compose {
            files.push(self.dir.join(".env"));
        }
        files.push(self.env_file());
        files
    }

    /// `stacks/STAGE.yml` under the project directory.
    pub fn stack_file(&self) -> PathBuf {
        self.dir.join("stacks").join(format!("{}.yml", self.stage))
    }

    /// `.env.STAGE` under the project directory.
    pub fn env_file(&self) -> PathBuf {
        self.dir.join(format!(".env.{}", self.stage))
    }

    /// The stages that have a stack file (`stacks/STAGE.yml`), sorted.
    pub fn stages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("stacks")) else {
            return Vec::new();
        };
        let mut stages: Vec<String> = entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let stage = name.strip_suffix(".yml")?;
                validate_stage(stage).is_ok().then(|| stage.to_string())
            })
            .collect();
        stages.sort();
        stages
    }

    /// Remember `stage` as the one later commands act on without `-e` (`stackctl init`).
    /// The directory ignores itself in git.
    pub fn remember_stage(&self) -> std::io::Result<()> {
        let dir = self.dir.join(STATE_DIR);
        std::fs::create_dir_all(&dir)?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(
                &ignore,
                "# stackctl's own state: not for version control\n*\n",
            )?;
        }
        std::fs::write(dir.join("stage"), format!("{}\n", self.stage))
    }

    /// The project directory's name, made fit for Docker object names.
    pub fn dir_name(&self) -> String {
        sanitize_name(
            self.dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("project"),
        )
    }

    /// A path as shown to the user: relative to the project directory when inside it.
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// The `-f` name of standard input, as in Compose (`envsubst < x.yml | stackctl -f - up`).
pub const STDIN_FILE: &str = "-";

/// stackctl's own state in a project directory (`.stackctl/stage`: the stage `init` made last).
pub const STATE_DIR: &str = ".stackctl";

/// The files that make a directory a project: `stacks/`, or a Compose file.
const MARKERS: [&str; 5] = [
    "stacks",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The project directory for a command run in `start`: the nearest directory from `start`
/// up that holds `stacks/` or a Compose file, else `start` itself (where `init` makes one).
pub fn discover(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|dir| {
            MARKERS.iter().any(|marker| {
                let path = dir.join(marker);
                if *marker == "stacks" {
                    path.is_dir()
                } else {
                    path.is_file()
                }
            })
        })
        .unwrap_or(start)
        .to_path_buf()
}

/// The files `COMPOSE_FILE` names, as Compose reads it when no `-f` is given: paths
/// separated by `COMPOSE_PATH_SEPARATOR` (default `:`), empty entries skipped.
fn compose_file_variable(value: Option<OsString>, separator: Option<String>) -> Vec<PathBuf> {
    let Some(value) = value else {
        return Vec::new();
    };
    let value = value.to_string_lossy();
    let separator = separator
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ":".to_string());
    value
        .split(separator.as_str())
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The stage remembered in `DIR/.stackctl/stage`, when there is one.
pub fn remembered_stage(dir: &Path) -> Result<Option<String>, UsageError> {
    let path = dir.join(STATE_DIR).join("stage");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => return Ok(None),
    };
    let stage = text.trim();
    if stage.is_empty() {
        return Ok(None);
    }
    validate_stage(stage).map_err(|e| {
        UsageError::new(format!("{} (remembered in `{STATE_DIR}/stage`)", e.message)).with_hint(
            format!(
            "remove `{STATE_DIR}/stage`, or run `stackctl init --env STAGE` to remember another"
        ),
        )
    })?;
    Ok(Some(stage.to_string()))
}

/// Lowercase, keep `[a-z0-9_-]`, other characters become `-`.
pub fn sanitize_name(raw: &str) -> String {
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '-' || c == '_').to_string();
    if trimmed.is_empty() {
        "project".to_string()
    } else {
        trimmed
    }
}

/// The stage from `-e`/`--env` or `STACKCTL_ENV`, else the one `init` made last
/// (`remembered`), else `dev`. An empty one is a mistake (`-e "$STAGE"` with `STAGE`
/// unset), never a silent default: `purge --yes` would act on the wrong stage.
fn stage_of(
    flag: Option<&str>,
    variable: Option<std::ffi::OsString>,
    remembered: impl FnOnce() -> Result<Option<String>, UsageError>,
) -> Result<String, UsageError> {
    let empty = || {
        UsageError::new("the stage is empty")
            .with_hint("give `-e STAGE` (or set STACKCTL_ENV) to a stage name like `dev`, or leave both out for `dev`")
    };
    match flag {
        Some("") => Err(empty()),
        Some(stage) => {
            validate_stage(stage)?;
            Ok(stage.to_string())
        }
        // clap treats an empty STACKCTL_ENV as absent: look at it ourselves.
        None if variable.is_some_and(|v| v.is_empty()) => Err(empty()),
        // Read only now: a broken `.stackctl/stage` does not stand in the way of `-e`.
        None => Ok(remembered()?.unwrap_or_else(|| "dev".to_string())),
    }
}

fn validate_stage(stage: &str) -> Result<(), UsageError> {
    let ok = stage.len() <= 63
        && stage
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && stage
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!("stage `{stage}` is not a valid name"))
            .with_hint("use lowercase letters, digits, `-` and `_`, starting with a letter or digit (like `dev` or `ci-42`)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_empty_stage_is_a_usage_error() {
        let none = || Ok(None);
        assert!(stage_of(Some(""), None, none).is_err());
        assert!(stage_of(Some(""), Some("qa".into()), none).is_err());
        assert!(stage_of(None, Some("".into()), || Ok(Some("qa".into()))).is_err());
        assert_eq!(stage_of(None, None, none).unwrap(), "dev");
        assert_eq!(stage_of(Some("qa"), None, none).unwrap(), "qa");
    }

    #[test]
    fn issue12_the_flag_wins_over_the_remembered_stage_which_wins_over_dev() {
        assert_eq!(
            stage_of(None, None, || Ok(Some("qa".into()))).unwrap(),
            "qa"
        );
        let broken = || Err(UsageError::new("stage `Q A` is not a valid name"));
        assert_eq!(
            stage_of(Some("ci"), Some("ci".into()), broken).unwrap(),
            "ci",
            "a broken remembered stage does not stand in the way of `-e`"
        );
        assert!(stage_of(None, None, broken).is_err());
    }

    #[test]
    fn issue12_the_project_is_found_from_a_subdirectory() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("shop");
        std::fs::create_dir_all(project.join("stacks")).unwrap();
        std::fs::create_dir_all(project.join("api/src")).unwrap();
        assert_eq!(discover(&project.join("api/src")), project);
        assert_eq!(discover(&project), project);
        let compose = root.path().join("other");
        std::fs::create_dir_all(compose.join("web")).unwrap();
        std::fs::write(compose.join("compose.yaml"), "services: {}\n").unwrap();
        assert_eq!(discover(&compose.join("web")), compose);
        let lone = root.path().join("lone");
        std::fs::create_dir_all(&lone).unwrap();
        assert_eq!(
            discover(&lone),
            lone,
            "no project above: the directory itself"
        );
    }

    #[test]
    fn issue11_compose_file_names_files_split_by_its_separator() {
        assert!(compose_file_variable(None, None).is_empty());
        assert_eq!(
            compose_file_variable(Some("compose.yaml:compose.prod.yaml".into()), None),
            [
                PathBuf::from("compose.yaml"),
                PathBuf::from("compose.prod.yaml")
            ]
        );
        assert_eq!(
            compose_file_variable(Some("a.yml;;b.yml".into()), Some(";".into())),
            [PathBuf::from("a.yml"), PathBuf::from("b.yml")],
            "COMPOSE_PATH_SEPARATOR, empty entries skipped"
        );
        assert!(compose_file_variable(Some("".into()), None).is_empty());
    }
}
