//! Image calls: resolve tags to IDs with one list call, list and remove the stage's built
//! images.

use std::collections::HashMap;

use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};

use super::{is_not_found, label_filters, Engine, EngineError};

/// Image tags known to the engine, and the IDs they point at.
#[derive(Debug, Clone, Default)]
pub struct ImageIndex {
    pub ids: HashMap<String, String>,
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
            .map_err(|err| EngineError::new("list", "images", err))?;
        let mut ids = HashMap::new();
        for image in images {
            for tag in image.repo_tags {
                if tag != "<none>:<none>" {
                    ids.insert(tag, image.id.clone());
                }
            }
        }
        Ok(ImageIndex { ids })
    }

    /// IDs and tags of images carrying every one of these labels.
    pub async fn labelled_images(
        &self,
        labels: &[String],
    ) -> Result<Vec<(String, Vec<String>)>, EngineError> {
        let options = ListImagesOptionsBuilder::default()
            .filters(&label_filters(labels))
            .build();
        let images = self
            .client()
            .list_images(Some(options))
            .await
            .map_err(|err| EngineError::new("list", "images", err))?;
        Ok(images.into_iter().map(|i| (i.id, i.repo_tags)).collect())
    }

    /// Remove an image by ID or tag (forced: every tag goes); a missing one is fine.
    pub async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        match self.client().remove_image(image, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(EngineError::new("remove image", image, err)),
        }
    }
}
