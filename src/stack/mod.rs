//! Stack files: the model, loading with source locations, interpolation and validation.

pub mod model;

use std::fmt;
use std::path::PathBuf;

use crate::project::Project;
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

/// Every problem found in a stack file (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackErrors(pub Vec<StackError>);

impl fmt::Display for StackErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            match &error.location {
                Some(location) => writeln!(f, "error: {location}: {}", error.message)?,
                None => writeln!(f, "error: {}", error.message)?,
            }
            if let Some(hint) = &error.hint {
                writeln!(f, "  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for StackErrors {}

/// A stack file after interpolation and validation, with what is needed to act on it.
#[derive(Debug, Clone)]
pub struct LoadedStack {
    pub stack: Stack,
    /// Project name: the stack's `name:`, else the project directory's name.
    pub project: String,
    pub stage: String,
    /// The project directory (absolute); relative paths in the stack resolve against it.
    pub dir: PathBuf,
    /// The stack file (absolute).
    pub file: PathBuf,
    /// Values of secret-looking variables, to mask in every output.
    pub secrets: Vec<String>,
}

impl LoadedStack {
    /// Where a key of the stack file is, by its YAML path (`["services", "api", "ports"]`).
    pub fn locate(&self, _path: &[&str]) -> Option<Location> {
        None
    }
}

/// Load, interpolate and validate the stack file of the project's stage.
pub fn load(project: &Project) -> Result<LoadedStack, StackErrors> {
    let file = project.stack_file();
    let text = std::fs::read_to_string(&file).map_err(|e| {
        StackErrors(vec![StackError {
            location: None,
            message: format!(
                "cannot read stack file `{}`: {e}",
                project.display_path(&file)
            ),
            hint: Some(format!(
                "run `stackctl init --env {}` to create it",
                project.stage
            )),
        }])
    })?;
    let stack: Stack = serde_yaml::from_str(&text).map_err(|e| {
        StackErrors(vec![StackError {
            location: None,
            message: e.to_string(),
            hint: None,
        }])
    })?;
    let name = stack.name.clone().unwrap_or_else(|| project.dir_name());
    Ok(LoadedStack {
        stack,
        project: crate::project::sanitize_name(&name),
        stage: project.stage.clone(),
        dir: project.dir.clone(),
        file,
        secrets: Vec::new(),
    })
}
