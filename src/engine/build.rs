//! Image builds: the context tarred with Docker's `.dockerignore` rules, streamed progress,
//! and the failing step's output on failure.

use std::collections::HashMap;
use std::path::PathBuf;

use super::Engine;

/// One image to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The build context directory (absolute).
    pub context: PathBuf,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    pub args: HashMap<String, String>,
    pub target: Option<String>,
    pub labels: HashMap<String, String>,
    /// The tag to give the image (`project/service:stage`, or the service's `image:`).
    pub tag: String,
    pub no_cache: bool,
}

impl Engine {
    /// Build an image and return its ID; `progress` receives each output line.
    pub async fn build_image(
        &self,
        request: &BuildRequest,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> anyhow::Result<String> {
        let _ = progress;
        anyhow::bail!(
            "build `{}`: building images is not implemented yet",
            request.tag
        )
    }
}
