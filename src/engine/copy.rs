//! What a path in a container is (`stackctl cp`; the copies themselves go through the
//! archive calls of `engine::archive`, shared with `stackctl data`), the files `stackctl
//! watch` syncs, and the processes a container runs (`stackctl top`). Commands run inside
//! a container (the removals of `watch`, hooks) go through `engine::hooks`.

use bollard::query_parameters::{ContainerArchiveInfoOptionsBuilder, TopOptions};
use bytes::Bytes;

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
            Err(err) => Err(self.error("look up", &format!("{container}:{path}"), err)),
        }
    }

    /// Copy local files into `container`, each to its absolute path there, in one archive
    /// upload (missing parent directories are created). A local directory is copied with
    /// everything in it. Files keep their mode and modification time, owned by root. Returns
    /// how many files were sent; a local path that vanished meanwhile is skipped.
    pub async fn sync_files(
        &self,
        container: &str,
        files: &[(std::path::PathBuf, String)],
    ) -> Result<usize, EngineError> {
        let (tar, count) = sync_archive(files).map_err(|err| EngineError {
            operation: "copy into".into(),
            object: container.to_string(),
            message: err.to_string(),
            status: None,
            hint: None,
            engine: self.name(),
        })?;
        if count == 0 {
            return Ok(0);
        }
        let body =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(tar)) });
        self.upload(container, "/", body).await?;
        Ok(count)
    }

    /// The processes running in `container` (the engine's default `ps -ef` columns).
    pub async fn processes(&self, container: &str) -> Result<Processes, EngineError> {
        let top = self
            .client()
            .top_processes(container, None::<TopOptions>)
            .await
            .map_err(|err| self.error("list processes of", container, err))?;
        Ok(Processes {
            titles: top.titles.unwrap_or_default(),
            processes: top.processes.unwrap_or_default(),
        })
    }
}

/// A tar archive placing each local file (or directory, recursively) at its absolute path,
/// for an upload to `/`; and how many files it holds.
fn sync_archive(files: &[(std::path::PathBuf, String)]) -> std::io::Result<(Vec<u8>, usize)> {
    use std::os::unix::fs::MetadataExt;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut count = 0;
    let mut stack: Vec<(std::path::PathBuf, String)> = files.to_vec();
    while let Some((local, target)) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&local) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let name = target.trim_start_matches('/');
        if name.is_empty() {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, name, std::io::empty())?;
            for entry in std::fs::read_dir(&local)? {
                let entry = entry?;
                let child = format!(
                    "{}/{}",
                    target.trim_end_matches('/'),
                    entry.file_name().to_string_lossy()
                );
                stack.push((entry.path(), child));
            }
        } else if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let link = std::fs::read_link(&local)?;
            builder.append_link(&mut header, name, link)?;
            count += 1;
        } else if meta.is_file() {
            let file = match std::fs::File::open(&local) {
                Ok(file) => file,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            // The length now: a file still being written is sent as far as it is.
            let len = file.metadata()?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(len);
            builder.append_data(&mut header, name, std::io::Read::take(file, len))?;
            count += 1;
        }
    }
    Ok((builder.into_inner()?, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_archive_places_files_and_directories_at_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "print(1)\n").unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/b.py"), "x").unwrap();
        let files = vec![
            (dir.path().join("a.py"), "/app/a.py".to_string()),
            (dir.path().join("lib"), "/app/lib".to_string()),
            (dir.path().join("gone"), "/app/gone".to_string()),
        ];
        let (tar, count) = sync_archive(&files).unwrap();
        assert_eq!(count, 2);
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["app/a.py", "app/lib", "app/lib/b.py"]);
    }
}
