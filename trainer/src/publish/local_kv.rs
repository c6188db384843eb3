//! The local Workers KV that `wrangler dev` reads: written through wrangler itself
//! (`wrangler kv key put --local --persist-to DIR`), so the format is always the one the
//! running worker expects.

use std::path::PathBuf;
use std::process::Command;

use prewarm_shared::artifact::{KvEntry, POINTER_KEY};

use super::PublishError;

/// Where and how to reach the local KV.
#[derive(Debug, Clone)]
pub struct LocalKv {
    /// The wrangler executable (e.g. `node_modules/.bin/wrangler`).
    pub wrangler: PathBuf,
    /// The wrangler configuration that declares the KV binding.
    pub config: PathBuf,
    /// The binding name (`PREWARM_MODEL`).
    pub binding: String,
    /// The same `--persist-to` directory `wrangler dev` uses.
    pub persist_to: PathBuf,
}

impl LocalKv {
    /// One key, from a file: `wrangler kv key put --path` is binary-safe (the bulk command's
    /// base64 values come back altered from the local store in wrangler 4.86).
    fn put(&self, entry: &KvEntry) -> Result<(), PublishError> {
        let file =
            std::env::temp_dir().join(format!("prewarm-kv-{}-{}", std::process::id(), entry.key.replace('/', "_")));
        std::fs::write(&file, &entry.value).map_err(|source| PublishError::Write { path: file.clone(), source })?;
        let output = Command::new(&self.wrangler)
            .args(["kv", "key", "put", "--local", "--binding", &self.binding, "--persist-to"])
            .arg(&self.persist_to)
            .arg("-c")
            .arg(&self.config)
            .arg(&entry.key)
            .arg("--path")
            .arg(&file)
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            .output();
        let _ = std::fs::remove_file(&file);
        let output = output.map_err(|e| PublishError::Target {
            target: "local KV",
            message: format!("cannot run {}: {e}", self.wrangler.display()),
        })?;
        if !output.status.success() {
            return Err(PublishError::Target {
                target: "local KV",
                message: format!(
                    "wrangler kv key put {} failed: {}",
                    entry.key,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    /// Blobs first, then the pointer.
    pub fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        let (pointer, blobs): (Vec<&KvEntry>, Vec<&KvEntry>) = entries.iter().partition(|e| e.key == POINTER_KEY);
        blobs.into_iter().chain(pointer).try_for_each(|e| self.put(e))
    }
}
