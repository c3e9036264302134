//! What a path in a container is (`stackctl cp`; the copies themselves go through the
//! archive calls of `engine::archive`, shared with `stackctl data`), and the processes a
//! container runs (`stackctl top`).

use bollard::query_parameters::{ContainerArchiveInfoOptionsBuilder, TopOptions};

use super::{is_not_found, Engine, EngineError};

/// What is at a path inside a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Directory,
    /// A file, a link or anything else that is not a directory.
    Other,
}

/// Go's `os.ModeDir`, as the engine reports a path's mode.
const MODE_DIR: u32 = 1 << 31;

/// A container's processes: the column titles and one row per process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Processes {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl Engine {
    /// What `path` is inside `container`: `None` when nothing is there.
    pub async fn path_kind(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<PathKind>, EngineError> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        match self
            .client()
            .get_container_archive_info(container, Some(options))
            .await
        {
            Ok(stat) if stat.file_mode & MODE_DIR != 0 => Ok(Some(PathKind::Directory)),
            Ok(_) => Ok(Some(PathKind::Other)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(EngineError::new(
                "look up",
                &format!("{container}:{path}"),
                err,
            )),
        }
    }

    /// The processes running in `container` (the engine's default `ps -ef` columns).
    pub async fn processes(&self, container: &str) -> Result<Processes, EngineError> {
        let top = self
            .client()
            .top_processes(container, None::<TopOptions>)
            .await
            .map_err(|err| EngineError::new("list processes of", container, err))?;
        Ok(Processes {
            titles: top.titles.unwrap_or_default(),
            processes: top.processes.unwrap_or_default(),
        })
    }
}
