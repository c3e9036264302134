//! Pure planning: what the stage should look like, from the loaded stack (and, for `up`, what
//! the target reports). No engine calls and no engine types: the executor (`apply`) runs
//! what is decided here through a target.
//!
//! - [`container`]: the spec of a service's or data container's container, and its hash.
//! - [`image`]: the images the stage builds, and their tags.
//! - [`objects`]: the stage's networks and volumes: names, labels, network specs.
//! - [`task`]: a one-off task's container (a service's spec, adjusted) and sequences.
//! - [`up`]: the `up` plan: ordered actions, each with its reason.
//! - [`restart`]: the `restart` plan, made from the `up` plan.
//! - [`watch`]: which `develop.watch` rules take a changed path, and what each service does.

pub mod container;
pub mod deploy;
pub mod image;
pub mod objects;
pub mod restart;
pub mod task;
pub mod up;
pub mod watch;

/// A loaded stack from YAML text, for the planners' unit tests.
#[cfg(test)]
pub(crate) fn test_stack(
    yaml: &str,
    project: &str,
    stage: &str,
    dir: &str,
) -> crate::stack::LoadedStack {
    let (value, marks) = crate::stack::load::parse(yaml).expect("valid YAML");
    let stack: crate::stack::Stack =
        crate::stack::load::from_value(value).expect("a valid test stack");
    crate::stack::LoadedStack {
        stack,
        project: project.into(),
        stage: stage.into(),
        dir: dir.into(),
        file: std::path::Path::new(dir).join(format!("stacks/{stage}.yml")),
        marks,
        ..Default::default()
    }
}
