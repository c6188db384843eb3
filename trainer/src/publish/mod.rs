//! Publishing models. For now the directory publisher (the source of truth and archive); the
//! Workers KV publishers build on the same key layout: immutable blobs under `model/<hash>`,
//! the `current` pointer written last.

use std::path::{Path, PathBuf};

use prewarm_shared::artifact::{ArtifactError, KvEntry, ModelPointer, POINTER_KEY, RegionModel, verify_blob};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Artifact { path: PathBuf, source: ArtifactError },
}

/// A directory laid out like the KV namespace: `current` and `model/<hash>`.
#[derive(Debug, Clone)]
pub struct DirPublisher {
    root: PathBuf,
}

impl DirPublisher {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Writes blobs first (each atomically, by rename), then the pointer: a reader sees the old
    /// model or the new one.
    pub fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        for entry in entries {
            let path = self.path(&entry.key);
            if entry.key != POINTER_KEY && path.exists() {
                continue; // content-addressed: already there
            }
            write_atomic(&path, &entry.value)?;
        }
        Ok(())
    }

    /// The current pointer and the region blobs it names, if a model was published.
    pub fn current(&self) -> Result<Option<(ModelPointer, Vec<RegionModel>)>, PublishError> {
        let pointer_path = self.path(POINTER_KEY);
        let bytes = match std::fs::read(&pointer_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PublishError::Read { path: pointer_path, source }),
        };
        let pointer = ModelPointer::from_artifact(&bytes)
            .map_err(|source| PublishError::Artifact { path: pointer_path.clone(), source })?;
        let mut regions = Vec::with_capacity(pointer.regions.len());
        for entry in &pointer.regions {
            let path = self.path(&entry.hash.kv_key());
            let blob = std::fs::read(&path).map_err(|source| PublishError::Read { path: path.clone(), source })?;
            verify_blob(entry, &blob).map_err(|source| PublishError::Artifact { path: path.clone(), source })?;
            regions.push(RegionModel::from_artifact(&blob).map_err(|source| PublishError::Artifact { path, source })?);
        }
        Ok(Some((pointer, regions)))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let write_error = |source| PublishError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(write_error)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(write_error)?;
    std::fs::rename(&tmp, path).map_err(write_error)
}
