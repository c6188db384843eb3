//! Cloudflare Workers KV through its REST API: region blobs with the bulk write
//! (`PUT …/storage/kv/namespaces/{namespace}/bulk`, values base64-encoded), then the pointer with
//! a single-key write (`PUT …/values/current`), so an edge never sees a pointer to a missing
//! blob. Retries with backoff on 429 and 5xx; honours KV's documented limits.

use std::time::Duration;

use base64::Engine as _;
use prewarm_shared::artifact::{KV_VALUE_LIMIT, KvEntry, ModelPointer, POINTER_KEY, RegionModel, verify_blob};
use serde::Deserialize;

use super::PublishError;

/// Keys per bulk request (the API's limit is 10,000).
const BULK_KEYS: usize = 10_000;
/// Bytes per bulk request body (the API's limit is 100 MB).
const BULK_BYTES: usize = 90 * 1024 * 1024;

/// Where the namespace is and how to authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvRestConfig {
    /// The Cloudflare account.
    pub account_id: String,
    /// The Workers KV namespace the worker binds.
    pub namespace_id: String,
    /// An API token with "Workers KV Storage: Edit" (`PREWARM_CF_API_TOKEN`).
    #[serde(default)]
    pub api_token: Option<prewarm_shared::Secret>,
    /// Overridable for tests and proxies.
    #[serde(default = "default_base")]
    pub api_base: String,
    /// Retries of a failed write (rate limits, 5xx).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

fn default_base() -> String {
    "https://api.cloudflare.com/client/v4".into()
}

fn default_retries() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
struct ApiReply {
    success: bool,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

fn target(message: impl Into<String>) -> PublishError {
    PublishError::Target { target: "Workers KV", message: message.into() }
}

impl KvRestConfig {
    fn namespace_url(&self) -> String {
        format!(
            "{}/accounts/{}/storage/kv/namespaces/{}",
            self.api_base.trim_end_matches('/'),
            self.account_id,
            self.namespace_id
        )
    }

    /// The API token and an agent that reports HTTP errors as statuses, for reads and writes.
    fn client(&self) -> Result<(&str, ureq::Agent), PublishError> {
        let token = self.api_token.as_ref().ok_or_else(|| target("no API token (PREWARM_CF_API_TOKEN)"))?;
        Ok((token.expose(), crate::outbound::agent(Duration::from_secs(60))))
    }

    /// One request with retries; `send` builds and sends it afresh each time.
    fn call(
        &self,
        what: &str,
        send: impl Fn(&ureq::Agent, &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(), PublishError> {
        let (token, agent) = self.client()?;
        let mut delay = Duration::from_millis(500);
        for attempt in 0..=self.max_retries {
            match send(&agent, token) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response.body_mut().read_to_string().unwrap_or_default();
                    if status == 429 || status >= 500 {
                        if attempt < self.max_retries {
                            std::thread::sleep(retry_after.unwrap_or(delay).min(Duration::from_secs(30)));
                            delay *= 2;
                            continue;
                        }
                        return Err(target(format!("{what}: HTTP {status} after {} attempts: {body}", attempt + 1)));
                    }
                    let reply: ApiReply = serde_json::from_str(&body)
                        .map_err(|e| target(format!("{what}: HTTP {status}, unreadable reply ({e}): {body}")))?;
                    if !(200..300).contains(&status) || !reply.success {
                        return Err(target(format!("{what}: HTTP {status}: {:?}", reply.errors)));
                    }
                    return Ok(());
                }
                Err(e) if attempt < self.max_retries => {
                    tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => return Err(target(format!("{what}: {e}"))),
            }
        }
        Err(target(format!("{what}: retries exhausted")))
    }

    /// Blobs (bulk, base64), then the pointer (one key, raw bytes).
    pub fn publish(&self, entries: &[KvEntry]) -> Result<(), PublishError> {
        if let Some(big) = entries.iter().find(|e| e.value.len() > KV_VALUE_LIMIT) {
            return Err(target(format!(
                "{} is {} bytes, over KV's {KV_VALUE_LIMIT}-byte value limit",
                big.key,
                big.value.len()
            )));
        }
        let (pointers, blobs): (Vec<&KvEntry>, Vec<&KvEntry>) = entries.iter().partition(|e| e.key == POINTER_KEY);
        let bulk_url = format!("{}/bulk", self.namespace_url());
        let mut batch: Vec<serde_json::Value> = Vec::new();
        let mut batch_bytes = 0;
        let flush = |batch: &mut Vec<serde_json::Value>| -> Result<(), PublishError> {
            if batch.is_empty() {
                return Ok(());
            }
            let body = serde_json::to_vec(&batch).map_err(|e| target(e.to_string()))?;
            self.call("bulk write", |agent, token| {
                agent
                    .put(&bulk_url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .send(&body[..])
            })?;
            batch.clear();
            Ok(())
        };
        for blob in blobs {
            let value = base64::engine::general_purpose::STANDARD.encode(&blob.value);
            if batch.len() == BULK_KEYS || batch_bytes + value.len() > BULK_BYTES {
                flush(&mut batch)?;
                batch_bytes = 0;
            }
            batch_bytes += value.len();
            batch.push(serde_json::json!({ "key": blob.key, "value": value, "base64": true }));
        }
        flush(&mut batch)?;
        for pointer in pointers {
            let url = format!("{}/values/{}", self.namespace_url(), pointer.key);
            self.call("pointer write", |agent, token| {
                agent
                    .put(&url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Content-Type", "application/octet-stream")
                    .send(&pointer.value[..])
            })?;
        }
        Ok(())
    }

    /// Reads one value (`GET …/values/{key}`): `None` when the key does not exist. Retries on
    /// 429, 5xx and connection errors like the writes.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let url = format!("{}/values/{key}", self.namespace_url());
        let (token, agent) = self.client()?;
        let mut delay = Duration::from_millis(500);
        for attempt in 0..=self.max_retries {
            let retry = match agent.get(&url).header("Authorization", &format!("Bearer {token}")).call() {
                Ok(mut response) => match response.status().as_u16() {
                    200 => {
                        let body = response.body_mut().with_config().limit(KV_VALUE_LIMIT as u64 + 1).read_to_vec();
                        return body.map(Some).map_err(|e| target(format!("read {key}: {e}")));
                    }
                    404 => return Ok(None),
                    status if status == 429 || status >= 500 => format!("HTTP {status}"),
                    status => return Err(target(format!("read {key}: HTTP {status}"))),
                },
                Err(e) => e.to_string(),
            };
            if attempt == self.max_retries {
                return Err(target(format!("read {key}: {retry} after {} attempts", attempt + 1)));
            }
            std::thread::sleep(delay);
            delay *= 2;
        }
        Err(target(format!("read {key}: retries exhausted")))
    }

    /// The model the edge would load now: the pointer, then each region blob it names, each
    /// checked against the pointer's hash.
    pub fn current(&self) -> Result<Option<(ModelPointer, Vec<RegionModel>)>, PublishError> {
        let Some(pointer_bytes) = self.get(POINTER_KEY)? else { return Ok(None) };
        let artifact = |key: &str, source| PublishError::Artifact { path: format!("kv:{key}").into(), source };
        let pointer = ModelPointer::from_artifact(&pointer_bytes).map_err(|e| artifact(POINTER_KEY, e))?;
        let mut models = Vec::with_capacity(pointer.regions.len());
        for region in &pointer.regions {
            let key = region.hash.kv_key();
            let blob = self.get(&key)?.ok_or_else(|| target(format!("{key} is named by the pointer but missing")))?;
            verify_blob(region, &blob).map_err(|e| artifact(&key, e))?;
            models.push(RegionModel::from_artifact(&blob).map_err(|e| artifact(&key, e))?);
        }
        Ok(Some((pointer, models)))
    }
}
