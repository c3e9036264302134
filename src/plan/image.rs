//! What a stage builds: one [`ImageSpec`] per service, data container and container task
//! with `build:`. Pure: the stack in, the specs out (tags, absolute contexts, build args,
//! ownership labels); `build`, `up` and `exec` all use it, so an image is named in one place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::container::absolute_path;
use crate::names;
use crate::stack::model::{Build, Task};
use crate::stack::{LoadedStack, StackError, StackErrors};

/// What kind of stack entry an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Service,
    DataContainer,
    Task,
}

impl Owner {
    /// The stack file's section holding it.
    pub fn section(self) -> &'static str {
        match self {
            Owner::Service => "services",
            Owner::DataContainer => "data_containers",
            Owner::Task => "tasks",
        }
    }

    /// How messages name it (`service `api``).
    pub fn noun(self) -> &'static str {
        match self {
            Owner::Service => "service",
            Owner::DataContainer => "data container",
            Owner::Task => "task",
        }
    }
}

/// How to build one image, as plain data (the Docker target turns it into a build request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSpec {
    /// The build context directory (absolute).
    pub context: PathBuf,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    pub args: HashMap<String, String>,
    pub target: Option<String>,
    pub labels: HashMap<String, String>,
    /// The tag to give the image (`project/service:stage`, or the entry's `image:`).
    pub tag: String,
    pub no_cache: bool,
    /// A Dockerfile written in the stack file (sent instead of one from the context).
    pub dockerfile_inline: Option<String>,
    pub cache_from: Vec<String>,
    /// The network `RUN` steps use.
    pub network: Option<String>,
    pub shm_size: Option<i64>,
    /// Pull base images at every build.
    pub pull: bool,
    /// More tags for the same build: entries whose builds are identical (`app` and
    /// `app-cron` from one context) build once ([`merge_shared`]).
    pub also_tags: Vec<String>,
}

impl ImageSpec {
    /// Whether `other` builds the same image (it may tag it differently).
    pub fn same_build(&self, other: &ImageSpec) -> bool {
        let untagged = |spec: &ImageSpec| ImageSpec {
            tag: String::new(),
            also_tags: Vec::new(),
            ..spec.clone()
        };
        untagged(self) == untagged(other)
    }

    /// Every tag the build gives: `tag`, then `also_tags`.
    pub fn tags(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.tag).chain(self.also_tags.iter())
    }
}

/// One image the stage builds.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    pub owner: Owner,
    /// The service, data container or task name.
    pub name: String,
    pub request: ImageSpec,
}

/// The build of the image tagged `tag`, whichever entry of the stage builds it (a service
/// may run the image another service or a data container builds).
pub fn builder_of<'a>(builds: &'a [ImageBuild], tag: &str) -> Option<&'a ImageBuild> {
    builds.iter().find(|b| b.request.tag == tag)
}

/// Every image the stage builds, in stack order: services, data containers, then tasks.
/// Build args without a value take theirs from the process environment, or are dropped.
pub fn stage_images(loaded: &LoadedStack) -> Vec<ImageBuild> {
    stage_images_with(loaded, &|name| std::env::var(name).ok())
}

/// `stage_images` with the environment given, for tests.
pub fn stage_images_with(
    loaded: &LoadedStack,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<ImageBuild> {
    let stack = &loaded.stack;
    let mut images = Vec::new();
    for (name, service) in &stack.services {
        if let Some(build) = &service.build {
            images.push(image_build(
                loaded,
                Owner::Service,
                name,
                service.image.as_deref(),
                build,
                env,
            ));
        }
    }
    for (name, data) in &stack.data_containers {
        if let Some(build) = &data.build {
            images.push(image_build(
                loaded,
                Owner::DataContainer,
                name,
                data.image.as_deref(),
                build,
                env,
            ));
        }
    }
    for (name, task) in &stack.tasks {
        if let Task::Container(task) = task {
            if let Some(build) = &task.build {
                images.push(image_build(
                    loaded,
                    Owner::Task,
                    name,
                    task.image.as_deref(),
                    build,
                    env,
                ));
            }
        }
    }
    // Entries whose builds are identical share their ownership labels, so that they build
    // one image (whichever of them builds it, and whatever it is tagged).
    let labelled: Vec<HashMap<String, String>> = images
        .iter()
        .map(|image| {
            let group: Vec<&ImageBuild> = images
                .iter()
                .filter(|other| other.request.same_build(&image.request))
                .collect();
            let mut services: Vec<String> = group.iter().map(|b| b.name.clone()).collect();
            services.sort();
            services.dedup();
            let mut repositories: Vec<String> = group
                .iter()
                .map(|b| crate::registry::split_tag(&b.request.tag).0.to_string())
                .collect();
            repositories.sort();
            repositories.dedup();
            names::image_labels(&loaded.stage, &loaded.project, &services, &repositories)
        })
        .collect();
    for (image, ours) in images.iter_mut().zip(labelled) {
        image.request.labels.extend(ours);
    }
    images
}

/// The builds with identical builds folded into the first of them: its `also_tags` get the
/// others' tags (a tag built twice is built once).
pub fn merge_shared(builds: Vec<ImageBuild>) -> Vec<ImageBuild> {
    let mut merged: Vec<ImageBuild> = Vec::new();
    for build in builds {
        if merged
            .iter()
            .any(|m| m.request.tags().any(|t| *t == build.request.tag))
        {
            continue;
        }
        match merged
            .iter_mut()
            .find(|m| m.request.same_build(&build.request))
        {
            Some(leader) => leader.request.also_tags.push(build.request.tag),
            None => merged.push(build),
        }
    }
    merged
}

/// Check that each build's context directory and Dockerfile exist, before any engine call:
/// a wrong path is a mistake in the stack file (exit 2), reported with its location.
pub fn check_sources(loaded: &LoadedStack, builds: &[ImageBuild]) -> Result<(), StackErrors> {
    let mut errors = Vec::new();
    for build in builds {
        let request = &build.request;
        let location = loaded.locate(&[build.owner.section(), &build.name, "build"]);
        let shown = |path: &Path| {
            path.strip_prefix(&loaded.dir)
                .unwrap_or(path)
                .display()
                .to_string()
        };
        let dockerfile = request.dockerfile.as_deref().unwrap_or("Dockerfile");
        let problem = if request.context.to_string_lossy().contains("://") {
            Some((
                format!(
                    "remote build context `{}` is not supported yet",
                    request.context.display()
                ),
                "clone it and point `context:` at the directory".to_string(),
            ))
        } else if !request.context.is_dir() {
            Some((
                format!(
                    "build context `{}` is not a directory",
                    shown(&request.context)
                ),
                format!(
                    "`build:` paths are relative to the project directory `{}`",
                    loaded.dir.display()
                ),
            ))
        } else if request.dockerfile_inline.is_none() && !request.context.join(dockerfile).is_file()
        {
            Some((
                format!(
                    "Dockerfile `{}` does not exist",
                    shown(&request.context.join(dockerfile))
                ),
                "set `dockerfile:` under `build:`; it is relative to the build context".to_string(),
            ))
        } else {
            None
        };
        if let Some((message, hint)) = problem {
            errors.push(StackError {
                location,
                message: format!("{} `{}`: {message}", build.owner.noun(), build.name),
                hint: Some(hint),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StackErrors(errors))
    }
}

/// The tag a built image gets: `image:` when given, else `{project}/{name}:{stage}`. A task
/// sharing its name with a service or data container gets `{project}/task-{name}:{stage}`
/// so the two images never take each other's tag.
pub fn image_tag(loaded: &LoadedStack, owner: Owner, name: &str, image: Option<&str>) -> String {
    if let Some(image) = image {
        return image.to_string();
    }
    let clashes = owner == Owner::Task
        && (loaded.stack.services.contains_key(name)
            || loaded.stack.data_containers.contains_key(name));
    if clashes {
        names::image(&loaded.stage, &loaded.project, &format!("task-{name}"))
    } else {
        names::image(&loaded.stage, &loaded.project, name)
    }
}

fn image_build(
    loaded: &LoadedStack,
    owner: Owner,
    name: &str,
    image: Option<&str>,
    build: &Build,
    env: &dyn Fn(&str) -> Option<String>,
) -> ImageBuild {
    let args = build
        .args
        .iter()
        .filter_map(|(key, value)| {
            value
                .clone()
                .or_else(|| env(key))
                .map(|value| (key.clone(), value))
        })
        .collect();
    // The ownership labels come in `stage_images_with`, once the shared builds are known.
    let labels: HashMap<String, String> = build
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let tag = image_tag(loaded, owner, name, image);
    ImageBuild {
        owner,
        name: name.to_string(),
        request: ImageSpec {
            // Remote contexts (URLs) are kept as written; `check_sources` refuses them.
            context: if build.context.contains("://") {
                PathBuf::from(&build.context)
            } else {
                absolute_path(&loaded.dir, &build.context)
            },
            dockerfile: build.dockerfile.clone(),
            args,
            target: build.target.clone(),
            labels,
            tag,
            no_cache: build.no_cache,
            dockerfile_inline: build.dockerfile_inline.clone(),
            cache_from: build.cache_from.clone(),
            network: build.network.clone(),
            shm_size: build.shm_size.map(|s| s.0),
            pull: build.pull,
            also_tags: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(yaml: &str) -> LoadedStack {
        crate::plan::test_stack(yaml, "shop", "qa", "/work/shop")
    }

    const STACK: &str = r#"
services:
  api:
    build:
      context: ./services/api/
      dockerfile: docker/Dockerfile.prod
      target: runtime
      args: { GREETING: hi, FROM_ENV: null, UNSET: null }
      labels: { team: data, io.stackctl.role: mine }
  db:
    image: fixture/db:15
    build: /abs/db
  redis:
    image: redis:7
data_containers:
  db_data:
    build: ../shared/datastore
tasks:
  api:
    build: tasks/api
    command: [echo]
  report:
    image: shop/report:custom
    build: tasks/report
    command: [echo]
  migrate:
    service: api
    command: [migrate]
  init:
    steps: [up, migrate]
"#;

    #[test]
    fn lists_every_build_with_its_tag_context_args_and_labels() {
        let env = |name: &str| (name == "FROM_ENV").then(|| "from-env".to_string());
        let images = stage_images_with(&loaded(STACK), &env);
        let summary: Vec<(Owner, &str, &str, String)> = images
            .iter()
            .map(|i| {
                (
                    i.owner,
                    i.name.as_str(),
                    i.request.tag.as_str(),
                    i.request.context.display().to_string(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    Owner::Service,
                    "api",
                    "shop/api:qa",
                    "/work/shop/services/api".to_string()
                ),
                (Owner::Service, "db", "fixture/db:15", "/abs/db".to_string()),
                (
                    Owner::DataContainer,
                    "db_data",
                    "shop/db_data:qa",
                    "/work/shared/datastore".to_string()
                ),
                (
                    Owner::Task,
                    "api",
                    "shop/task-api:qa",
                    "/work/shop/tasks/api".to_string()
                ),
                (
                    Owner::Task,
                    "report",
                    "shop/report:custom",
                    "/work/shop/tasks/report".to_string()
                ),
            ]
        );

        let api = &images[0].request;
        assert_eq!(api.dockerfile.as_deref(), Some("docker/Dockerfile.prod"));
        assert_eq!(api.target.as_deref(), Some("runtime"));
        assert_eq!(
            api.args,
            HashMap::from([
                ("GREETING".to_string(), "hi".to_string()),
                ("FROM_ENV".to_string(), "from-env".to_string()),
            ])
        );
        assert_eq!(
            api.labels,
            HashMap::from([
                ("team".to_string(), "data".to_string()),
                ("io.stackctl.role".to_string(), "mine".to_string()),
                ("io.stackctl.image.project".to_string(), "shop".to_string()),
                ("io.stackctl.image.stage".to_string(), "qa".to_string()),
                ("io.stackctl.image.service".to_string(), "api".to_string()),
                (
                    "io.stackctl.image.repositories".to_string(),
                    "shop/api".to_string()
                ),
            ])
        );
        assert!(!api.no_cache);
        assert_eq!(
            images[2].request.labels["io.stackctl.image.service"],
            "db_data"
        );
    }

    #[test]
    fn identical_builds_share_their_labels_and_build_once() {
        let stack = loaded(
            "services:\n  app:\n    image: reg/shop/app:abc\n    build: app\n  app-cron:\n    build: app\n  other:\n    build: { context: app, args: { X: y } }\n",
        );
        let images = stage_images(&stack);
        assert_eq!(
            images[0].request.labels["io.stackctl.image.service"],
            "app,app-cron"
        );
        assert_eq!(
            images[0].request.labels["io.stackctl.image.repositories"],
            "reg/shop/app,shop/app-cron"
        );
        assert!(images[0].request.same_build(&images[1].request));
        assert!(!images[0].request.same_build(&images[2].request));
        let merged = merge_shared(images);
        let tags: Vec<Vec<&String>> = merged.iter().map(|b| b.request.tags().collect()).collect();
        assert_eq!(
            tags,
            vec![
                vec!["reg/shop/app:abc", "shop/app-cron:qa"],
                vec!["shop/other:qa"]
            ]
        );
    }

    #[test]
    fn a_stack_without_builds_builds_nothing() {
        let images = stage_images(&loaded("services:\n  web:\n    image: nginx\n"));
        assert!(images.is_empty());
    }

    #[test]
    fn missing_contexts_and_dockerfiles_are_stack_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("api")).expect("mkdir");
        std::fs::write(dir.path().join("api/Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::create_dir_all(dir.path().join("nodockerfile")).expect("mkdir");
        let mut stack = loaded(
            "services:\n  api:\n    build: api\n  gone:\n    build: missing\n  bare:\n    build: nodockerfile\n  remote:\n    build: https://example.com/repo.git\n",
        );
        stack.dir = dir.path().to_path_buf();
        let builds = stage_images(&stack);
        let errors = check_sources(&stack, &builds).expect_err("three problems");
        let messages: Vec<&str> = errors.0.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "service `gone`: build context `missing` is not a directory",
                "service `bare`: Dockerfile `nodockerfile/Dockerfile` does not exist",
                "service `remote`: remote build context `https://example.com/repo.git` is not supported yet",
            ]
        );
        assert!(check_sources(&stack, &builds[..1]).is_ok());
    }

    #[test]
    fn contexts_resolve_lexically() {
        let dir = Path::new("/p/proj");
        assert_eq!(absolute_path(dir, "."), PathBuf::from("/p/proj"));
        assert_eq!(absolute_path(dir, "./a/../b/"), PathBuf::from("/p/proj/b"));
        assert_eq!(
            absolute_path(dir, "/elsewhere/x"),
            PathBuf::from("/elsewhere/x")
        );
    }
}
