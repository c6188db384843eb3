//! Publishing models: the directory publisher is the source of truth and archive; the same
//! entries then go to Workers KV (local, for `wrangler dev`, or the Cloudflare REST API).
//!
//! Every target gets immutable content-addressed blobs (`model/<hash>`) first and the `current`
//! pointer last, so an edge sees the old model or the new one, never a mix. An interrupted
//! publish leaves the previous pointer, which names blobs that are all still there.

pub mod diff;
pub mod kv_rest;
pub mod local_kv;

use std::path::{Path, PathBuf};

use prewarm_shared::artifact::{ArtifactError, KvEntry, ModelPointer, POINTER_KEY, RegionModel, verify_blob};

/// Pointer versions kept for rollback (and the blobs they name).
pub const KEPT_VERSIONS: usize = 10;
/// The marker of paused publishing, in the models directory (not a KV key).
const PAUSE_KEY: &str = "publishing-paused";

#[derive(Debug, thiserror::Error)]
/// Why publishing failed.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum PublishError {
    #[error("cannot write {path}: {source}")]
    /// A file could not be written.
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    /// A file could not be read.
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    /// A kept artifact is damaged.
    Artifact { path: PathBuf, source: ArtifactError },
    #[error("nothing has been published yet in {0}")]
    /// Nothing to read yet.
    NothingPublished(PathBuf),
    #[error("version {0} is not among the kept versions")]
    /// No such version to roll back to.
    UnknownVersion(u32),
    #[error("no version before {0} to roll back to")]
    /// Nothing before this version.
    NoEarlierVersion(u32),
    #[error("{target}: {message}")]
    /// A publishing target failed.
    Target { target: &'static str, message: String },
    #[error("publishing is paused ({0}): resume it with `prewarm publish --resume` or the dashboard")]
    /// Publishing is paused after a rollback.
    Paused(String),
}

#[cfg(feature = "object-store")]
pub mod object_store;

/// `[object_store]` in the configuration.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix` or `file:///absolute/path`.
    pub url: String,
    /// An S3-compatible endpoint (MinIO, R2, …); unset: AWS.
    pub endpoint: Option<String>,
    /// The bucket's region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Allow a plain-HTTP endpoint (a local MinIO).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Where published entries go. Every target takes the same entries in the same order: blobs
/// first, the pointer last.
pub trait Publisher {
    /// For messages: the directory, the local KV path or the namespace.
    fn target(&self) -> String;
    /// Writes the entries, blobs first, the pointer last.
    fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError>;
}

/// Where a published version goes beyond the models directory, decided once from the
/// configuration: Workers KV when `[kv]` is set, the `[object_store]` archive when it is set.
/// `prewarm publish`, the service's periodic training and the dashboard's rollback all push
/// through it, so a version and a rollback reach the same places.
#[derive(Default)]
pub struct Targets {
    targets: Vec<Box<dyn Publisher + Send + Sync>>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.targets.iter().map(|t| t.target())).finish()
    }
}

impl Targets {
    /// The configured targets: `[kv]` (the Cloudflare REST API) and `[object_store]`.
    pub fn from_config(
        kv: Option<&kv_rest::KvRestConfig>,
        object_store: Option<&ObjectStoreConfig>,
    ) -> Result<Self, PublishError> {
        let mut targets = Self::default();
        if let Some(kv) = kv {
            targets.push(Box::new(kv.clone()));
        }
        if let Some(settings) = object_store {
            targets.push(object_store_target(settings)?);
        }
        Ok(targets)
    }

    /// One more target (the local KV of `wrangler dev`, say).
    pub fn push(&mut self, target: Box<dyn Publisher + Send + Sync>) {
        self.targets.push(target);
    }

    /// Whether no target is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Writes `entries` (blobs first, the pointer last) to every target in order; stops at the
    /// first that fails. Returns the targets written, for messages.
    pub fn publish(&self, entries: &[KvEntry]) -> Result<Vec<String>, PublishError> {
        let mut written = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            target.publish(entries)?;
            written.push(target.target());
        }
        Ok(written)
    }
}

/// The `[object_store]` archive as a target (the `object-store` build feature).
#[cfg(feature = "object-store")]
pub fn object_store_target(settings: &ObjectStoreConfig) -> Result<Box<dyn Publisher + Send + Sync>, PublishError> {
    Ok(Box::new(object_store::ObjectStorePublisher::new(settings)?))
}

/// Without the `object-store` feature an `[object_store]` section cannot be served.
#[cfg(not(feature = "object-store"))]
pub fn object_store_target(_: &ObjectStoreConfig) -> Result<Box<dyn Publisher + Send + Sync>, PublishError> {
    Err(PublishError::Target {
        target: "object_store",
        message: "this prewarm was built without object_store support: build it with `--features object-store`".into(),
    })
}

impl Publisher for DirPublisher {
    fn target(&self) -> String {
        format!("the models directory {}", self.root.display())
    }
    fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        DirPublisher::publish(self, entries)
    }
}

impl Publisher for local_kv::LocalKv {
    fn target(&self) -> String {
        format!("the local KV in {}", self.persist_to.display())
    }
    fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        local_kv::LocalKv::publish(self, entries)
    }
}

impl Publisher for kv_rest::KvRestConfig {
    fn target(&self) -> String {
        format!("Workers KV namespace {}", self.namespace_id)
    }
    fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        kv_rest::KvRestConfig::publish(self, entries)
    }
}

/// A directory laid out like the KV namespace (`current`, `model/<hash>`), plus
/// `versions/<n>` copies of every pointer for rollback.
#[derive(Debug, Clone)]
pub struct DirPublisher {
    root: PathBuf,
}

impl DirPublisher {
    /// A publisher rooted at `root` (`models/` of the data directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn version_path(&self, version: u32) -> PathBuf {
        self.root.join("versions").join(version.to_string())
    }

    /// Holds the directory's lock until dropped: publishing, rollback and resuming change
    /// `current` and the pause marker one at a time, across threads and processes (an
    /// advisory `flock` on `.lock`).
    fn lock(&self) -> Result<std::fs::File, PublishError> {
        let path = self.root.join(".lock");
        let write_error = |source| PublishError::Write { path: path.clone(), source };
        std::fs::create_dir_all(&self.root).map_err(write_error)?;
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(write_error)?;
        file.lock().map_err(write_error)?;
        Ok(file)
    }

    /// Why publishing is paused, if it is: a rollback pauses it, so that the next periodic
    /// training does not silently undo what the operator chose.
    pub fn paused(&self) -> Result<Option<String>, PublishError> {
        Ok(read(&self.path(PAUSE_KEY))?.map(|note| String::from_utf8_lossy(&note).into_owned()))
    }

    /// Lifts a pause; returns whether one was in effect.
    pub fn resume(&self) -> Result<bool, PublishError> {
        let _lock = self.lock()?;
        let path = self.path(PAUSE_KEY);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                sync_parent(&path).map_err(|source| PublishError::Write { path, source })?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(PublishError::Write { path, source }),
        }
    }

    /// Publishes a new version: blobs first (each atomically, by rename), then the pointer.
    /// Refused while publishing is paused.
    pub fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        let _lock = self.lock()?;
        if let Some(note) = self.paused()? {
            return Err(PublishError::Paused(note));
        }
        for entry in entries {
            let path = self.path(&entry.key);
            if entry.key == POINTER_KEY {
                let pointer = ModelPointer::from_artifact(&entry.value)
                    .map_err(|source| PublishError::Artifact { path: path.clone(), source })?;
                write_atomic(&self.version_path(pointer.version.0), &entry.value)?;
            } else if path.exists() {
                continue; // content-addressed: already there
            }
            write_atomic(&path, &entry.value)?;
        }
        self.prune()
    }

    /// Every entry of the current model, blobs first and the pointer last.
    pub fn current_entries(&self) -> Result<Vec<KvEntry>, PublishError> {
        let pointer_path = self.path(POINTER_KEY);
        let pointer_bytes = read(&pointer_path)?.ok_or_else(|| PublishError::NothingPublished(self.root.clone()))?;
        self.entries_for(pointer_bytes)
    }

    fn entries_for(&self, pointer_bytes: Vec<u8>) -> Result<Vec<KvEntry>, PublishError> {
        let pointer = ModelPointer::from_artifact(&pointer_bytes)
            .map_err(|source| PublishError::Artifact { path: self.path(POINTER_KEY), source })?;
        let mut entries = Vec::with_capacity(pointer.regions.len() + 1);
        for region in &pointer.regions {
            let key = region.hash.kv_key();
            let path = self.path(&key);
            let value = read(&path)?.ok_or_else(|| PublishError::Read {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "blob missing"),
            })?;
            verify_blob(region, &value).map_err(|source| PublishError::Artifact { path, source })?;
            entries.push(KvEntry { key, value });
        }
        entries.push(KvEntry { key: POINTER_KEY.to_owned(), value: pointer_bytes });
        Ok(entries)
    }

    /// The current pointer and the region models it names, if a model was published.
    pub fn current(&self) -> Result<Option<(ModelPointer, Vec<RegionModel>)>, PublishError> {
        match self.current_entries() {
            Ok(entries) => self.decode(&entries).map(Some),
            Err(PublishError::NothingPublished(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A kept version's pointer and region models (for `inspect --version` and `diff`).
    pub fn version(&self, version: u32) -> Result<(ModelPointer, Vec<RegionModel>), PublishError> {
        let pointer_bytes = read(&self.version_path(version))?.ok_or(PublishError::UnknownVersion(version))?;
        self.decode(&self.entries_for(pointer_bytes)?)
    }

    fn decode(&self, entries: &[KvEntry]) -> Result<(ModelPointer, Vec<RegionModel>), PublishError> {
        let (pointer_entry, blobs) =
            entries.split_last().ok_or_else(|| PublishError::NothingPublished(self.root.clone()))?;
        let pointer = ModelPointer::from_artifact(&pointer_entry.value)
            .map_err(|source| PublishError::Artifact { path: self.path(POINTER_KEY), source })?;
        let regions = blobs
            .iter()
            .map(|b| {
                RegionModel::from_artifact(&b.value)
                    .map_err(|source| PublishError::Artifact { path: self.path(&b.key), source })
            })
            .collect::<Result<_, _>>()?;
        Ok((pointer, regions))
    }

    /// Kept versions, oldest first.
    pub fn versions(&self) -> Result<Vec<u32>, PublishError> {
        let dir = self.root.join("versions");
        let mut versions: Vec<u32> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(PublishError::Read { path: dir, source }),
        };
        versions.sort_unstable();
        Ok(versions)
    }

    /// Points `current` back at a kept version (default: the one before the current), pauses
    /// publishing (until [`DirPublisher::resume`]), and returns the entries to push to other
    /// targets.
    pub fn rollback(&self, to: Option<u32>, now: u64) -> Result<Vec<KvEntry>, PublishError> {
        let _lock = self.lock()?;
        let current = self.current()?.ok_or_else(|| PublishError::NothingPublished(self.root.clone()))?.0.version.0;
        let versions = self.versions()?;
        let target = match to {
            Some(v) if versions.contains(&v) => v,
            Some(v) => return Err(PublishError::UnknownVersion(v)),
            None => *versions.iter().rev().find(|v| **v < current).ok_or(PublishError::NoEarlierVersion(current))?,
        };
        let pointer_bytes = read(&self.version_path(target))?.ok_or(PublishError::UnknownVersion(target))?;
        let entries = self.entries_for(pointer_bytes.clone())?;
        let note = format!("rolled back from version {current} to {target} at Unix time {now}");
        write_atomic(&self.path(PAUSE_KEY), note.as_bytes())?;
        write_atomic(&self.path(POINTER_KEY), &pointer_bytes)?;
        Ok(entries)
    }

    /// The next version number: one past every version ever kept.
    pub fn next_version(&self) -> Result<u32, PublishError> {
        Ok(self.versions()?.last().map_or(1, |v| v + 1))
    }

    /// Keeps the newest [`KEPT_VERSIONS`] pointers and the blobs they (and `current`) name.
    fn prune(&self) -> Result<(), PublishError> {
        let versions = self.versions()?;
        let (old, kept) = versions.split_at(versions.len().saturating_sub(KEPT_VERSIONS));
        for v in old {
            let _ = std::fs::remove_file(self.version_path(*v));
        }
        let mut live = std::collections::HashSet::new();
        let pointers = kept.iter().map(|v| self.version_path(*v)).chain([self.path(POINTER_KEY)]);
        for path in pointers {
            if let Some(bytes) = read(&path)?
                && let Ok(pointer) = ModelPointer::from_artifact(&bytes)
            {
                live.extend(pointer.regions.iter().map(|r| r.hash.kv_key()));
            }
        }
        if let Ok(blobs) = std::fs::read_dir(self.root.join("model")) {
            for blob in blobs.flatten() {
                let key = format!("model/{}", blob.file_name().to_string_lossy());
                if !live.contains(&key) {
                    let _ = std::fs::remove_file(blob.path());
                }
            }
        }
        Ok(())
    }

    /// Where versions are kept.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, PublishError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PublishError::Read { path: path.to_owned(), source }),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one: a temporary
/// file of this process's own (never shared with a concurrent writer), synced, renamed over
/// `path`, and the directory synced so the rename itself is on disk.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    static TEMPORARIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write_error = |source| PublishError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let n = TEMPORARIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::File::open(&tmp)?.sync_all());
    if let Err(source) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(source));
    }
    sync_parent(path).map_err(write_error)
}

/// Syncs the directory holding `path`, so a rename or removal in it survives a power loss.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod targets_tests {
    use super::*;

    #[test]
    fn the_targets_are_what_the_configuration_names() {
        assert!(Targets::from_config(None, None).expect("none").is_empty());
        let kv = kv_rest::KvRestConfig {
            account_id: "acct".into(),
            namespace_id: "ns-123".into(),
            api_token: Some("token".into()),
            api_base: "http://127.0.0.1:9".into(),
            max_retries: 0,
        };
        let targets = Targets::from_config(Some(&kv), None).expect("kv");
        assert_eq!(targets.targets.len(), 1);
        assert!(targets.targets[0].target().contains("ns-123"), "{targets:?}");
        let archive = ObjectStoreConfig {
            url: "file:///tmp/prewarm-targets-test".into(),
            endpoint: None,
            region: "auto".into(),
            allow_http: false,
        };
        let with_archive = Targets::from_config(Some(&kv), Some(&archive));
        #[cfg(feature = "object-store")]
        {
            let names: Vec<String> = with_archive.expect("kv and archive").targets.iter().map(|t| t.target()).collect();
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(names[1].contains("file:///tmp/prewarm-targets-test"), "{names:?}");
        }
        #[cfg(not(feature = "object-store"))]
        {
            let error = with_archive.expect_err("no object-store feature");
            assert!(error.to_string().contains("--features object-store"), "{error}");
        }
    }
}
