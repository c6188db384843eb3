//! An `object_store` target (S3 and S3-compatible stores such as MinIO or R2, or a local
//! `file://` path) as the archive of published versions: the same keys as the KV
//! (`model/<hash>` blobs, then `current`) under a prefix, plus `versions/<n>` (each version's
//! pointer), so any version can be fetched back.
//!
//! Built with the `object-store` cargo feature. Credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`).

use std::sync::Arc;

use super::{ObjectStoreConfig, PublishError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use prewarm_shared::artifact::{KvEntry, ModelPointer, POINTER_KEY};

/// Publishes to one object store.
pub struct ObjectStorePublisher {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl std::fmt::Debug for ObjectStorePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorePublisher").field("url", &self.url).finish_non_exhaustive()
    }
}

fn target(message: impl std::fmt::Display) -> PublishError {
    PublishError::Target { target: "object store", message: message.to_string() }
}

impl ObjectStorePublisher {
    /// From the configuration and the process environment (credentials).
    pub fn new(config: &ObjectStoreConfig) -> Result<Self, PublishError> {
        let from_env =
            std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.to_ascii_lowercase(), v));
        Self::with_options(config, from_env.collect())
    }

    /// From the configuration and object_store options such as `aws_access_key_id`.
    pub fn with_options(config: &ObjectStoreConfig, mut options: Vec<(String, String)>) -> Result<Self, PublishError> {
        let url = url::Url::parse(&config.url).map_err(|e| target(format!("url {}: {e}", config.url)))?;
        options.push(("aws_region".into(), config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            options.push(("aws_endpoint".into(), endpoint.clone()));
        }
        if config.allow_http {
            options.push(("aws_allow_http".into(), "true".into()));
        }
        let (store, prefix) =
            object_store::parse_url_opts(&url, options).map_err(|e| target(format!("{}: {e}", config.url)))?;
        Ok(Self { store: Arc::from(store), prefix, url: config.url.clone() })
    }

    fn path(&self, key: &str) -> Path {
        key.split('/').fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// Runs object_store's async calls to completion from synchronous code: on the current
    /// runtime from a blocking task (`spawn_blocking`), else on a runtime of their own (a CLI
    /// command).
    fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, PublishError> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Ok(handle.block_on(work));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| target(format!("runtime: {e}")))?;
        Ok(runtime.block_on(work))
    }

    /// Blobs first (skipping those already there: content-addressed), then the version's
    /// pointer under `versions/<n>`, then `current`: a reader never sees a pointer to a blob
    /// that is not there yet.
    pub fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        let pointer = entries.iter().find(|e| e.key == POINTER_KEY).ok_or_else(|| target("no pointer to publish"))?;
        let version = ModelPointer::from_artifact(&pointer.value)
            .map_err(|e| target(format!("the pointer does not decode: {e}")))?
            .version;
        self.block_on(async {
            for entry in entries.iter().filter(|e| e.key != POINTER_KEY) {
                let path = self.path(&entry.key);
                if self.store.head(&path).await.is_ok() {
                    continue;
                }
                self.store.put(&path, entry.value.clone().into()).await.map_err(|e| target(format!("{path}: {e}")))?;
            }
            let versioned = self.path(&format!("versions/{}", version.0));
            self.store
                .put(&versioned, pointer.value.clone().into())
                .await
                .map_err(|e| target(format!("{versioned}: {e}")))?;
            let current = self.path(POINTER_KEY);
            self.store
                .put(&current, pointer.value.clone().into())
                .await
                .map_err(|e| target(format!("{current}: {e}")))?;
            Ok(())
        })?
    }

    /// The bytes stored under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let path = self.path(key);
        self.block_on(async {
            match self.store.get(&path).await {
                Ok(found) => found.bytes().await.map(|b| Some(b.to_vec())).map_err(|e| target(format!("{path}: {e}"))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(target(format!("{path}: {e}"))),
            }
        })?
    }

    /// The configured target (`s3://bucket/prefix` or `file://…`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl super::Publisher for ObjectStorePublisher {
    fn target(&self) -> String {
        format!("the object store {}", self.url)
    }
    fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        ObjectStorePublisher::publish(self, entries)
    }
}
