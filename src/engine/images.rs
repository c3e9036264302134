//! Image calls: resolve tags to IDs with one list call, list the stage's built images (by
//! their own labels) and remove them by the exact tag stackctl gave them.

use std::collections::HashMap;

use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};

use super::{is_not_found, label_filters, Engine, EngineError};
use crate::names;

/// Image tags known to the engine, and the IDs they point at.
#[derive(Debug, Clone, Default)]
pub struct ImageIndex {
    pub ids: HashMap<String, String>,
    /// Tag → the digest of the build inputs stackctl recorded on the image (its label).
    pub contexts: HashMap<String, String>,
}

impl ImageIndex {
    /// The ID a reference resolves to (`busybox` is `busybox:latest`; an ID resolves to itself).
    pub fn resolve(&self, reference: &str) -> Option<String> {
        if let Some(id) = self.ids.get(reference) {
            return Some(id.clone());
        }
        let last = reference.rsplit('/').next().unwrap_or(reference);
        if !last.contains(':') && !reference.contains('@') {
            if let Some(id) = self.ids.get(&format!("{reference}:latest")) {
                return Some(id.clone());
            }
        }
        self.ids
            .values()
            .find(|id| {
                reference.len() >= 12
                    && (id.as_str() == reference
                        || id
                            .strip_prefix("sha256:")
                            .is_some_and(|h| h.starts_with(reference)))
            })
            .cloned()
    }
}

impl Engine {
    /// Every tagged image and its ID, in one list call.
    pub async fn image_index(&self) -> Result<ImageIndex, EngineError> {
        let images = self
            .client()
            .list_images(Some(ListImagesOptionsBuilder::default().build()))
            .await
            .map_err(|err| self.error("list", "images", err))?;
        let mut ids = HashMap::new();
        let mut contexts = HashMap::new();
        for image in images {
            let context = image.labels.get(names::image_label::CONTEXT);
            for tag in image.repo_tags {
                if tag != "<none>:<none>" {
                    if let Some(context) = context {
                        contexts.insert(tag.clone(), context.clone());
                    }
                    ids.insert(tag, image.id.clone());
                }
            }
        }
        Ok(ImageIndex { ids, contexts })
    }

    /// The images built for this stage (their own ownership labels), tagged or not; and
    /// images an older stackctl built under the container keys (`io.stackctl.role=image`),
    /// by one of `stack_tags` (the tags the stack builds) only: those keys are inherited by
    /// images built `FROM` them, so only a tag stackctl itself gives marks one as the stage's.
    pub async fn stage_images(
        &self,
        stage: &str,
        project: &str,
        stack_tags: &[String],
    ) -> Result<Vec<StageImage>, EngineError> {
        let mut images = self.list_stage_images(stage, project, false).await?;
        let mut legacy = names::stage_filter(stage, project);
        legacy.push(format!("{}={}", names::ROLE, "image"));
        let options = ListImagesOptionsBuilder::default()
            .filters(&label_filters(&legacy))
            .build();
        let old = self
            .client()
            .list_images(Some(options))
            .await
            .map_err(|err| self.error("list", "images", err))?;
        for image in old {
            if images.iter().any(|i| i.id == image.id) {
                continue;
            }
            if let Some(tag) = image.repo_tags.iter().find(|t| stack_tags.contains(t)) {
                images.push(StageImage {
                    id: image.id.clone(),
                    own_tags: vec![tag.clone()],
                    dangling: false,
                });
            }
        }
        Ok(images)
    }

    async fn list_stage_images(
        &self,
        stage: &str,
        project: &str,
        dangling_only: bool,
    ) -> Result<Vec<StageImage>, EngineError> {
        let mut filters = label_filters(&names::image_filter(stage, project));
        if dangling_only {
            filters.insert("dangling".to_string(), vec!["true".to_string()]);
        }
        let options = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self
            .client()
            .list_images(Some(options))
            .await
            .map_err(|err| self.error("list", "images", err))?;
        Ok(images
            .into_iter()
            .map(|image| {
                let tags: Vec<String> = image
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect();
                StageImage {
                    id: image.id,
                    own_tags: own_tags(&image.labels, &tags),
                    dangling: tags.is_empty(),
                }
            })
            .collect())
    }

    /// Remove the tag stackctl gave an image. Only that reference goes: another tag keeps
    /// the image, and so does a container using it (the engine keeps an image in use when
    /// a forced removal names a tag, not the ID).
    pub async fn remove_image_tag(&self, tag: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        match self.client().remove_image(tag, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(self.error("remove image", tag, err)),
        }
    }

    /// Remove an untagged image by ID unless something uses it (never forced). Returns
    /// whether it went.
    pub async fn remove_unused_image(&self, id: &str) -> Result<bool, EngineError> {
        let options = RemoveImageOptionsBuilder::default().force(false).build();
        match self.client().remove_image(id, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => {
                let err = self.error("remove image", id, err);
                if err.status == Some(409) {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Remove this stage's images that a rebuild left untagged and no container (of any
    /// stage) uses any more. Returns how many went.
    pub async fn remove_replaced_images(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<usize, EngineError> {
        let mut removed = 0;
        for image in self.list_stage_images(stage, project, true).await? {
            if image.dangling && self.remove_unused_image(&image.id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The tags of an image that stackctl gave it: those in the repositories its labels name
/// (or the one tag an older stackctl recorded). A tag added in another repository is not.
fn own_tags(labels: &HashMap<String, String>, tags: &[String]) -> Vec<String> {
    let repositories: Vec<&str> = labels
        .get(names::image_label::REPOSITORIES)
        .map(|r| r.split(',').filter(|r| !r.is_empty()).collect())
        .unwrap_or_default();
    let old = labels.get(names::image_label::TAG);
    tags.iter()
        .filter(|tag| {
            old == Some(*tag) || repositories.contains(&crate::registry::split_tag(tag).0)
        })
        .cloned()
        .collect()
}

/// An image built for a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageImage {
    pub id: String,
    /// The tags stackctl gave it that the image still carries.
    pub own_tags: Vec<String>,
    /// No tag at all (left behind by a rebuild).
    pub dangling: bool,
}
