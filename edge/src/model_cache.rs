//! The published model, cached per isolate.
//!
//! KV key `current` holds the small pointer; region blobs live under `model/<hash>` and never
//! change. The pointer is re-read at most every `MODEL_CHECK_SECS`, in the background, one refresh
//! at a time. A new pointer is installed only together with decoded blobs for every region this
//! isolate serves, so a request sees the old model or the new one, never a mix; anything missing
//! or corrupt keeps the last good model and is counted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ContentHash, ModelPointer, POINTER_KEY, RegionModel, verify_blob};
use worker::KvStore;

use crate::geo::RequestOrigin;

pub const KV_BINDING: &str = "PREWARM_MODEL";

#[derive(Default)]
struct Cache {
    pointer: Option<Rc<ModelPointer>>,
    pointer_hash: Option<ContentHash>,
    regions: HashMap<String, Rc<RegionModel>>,
    checked_at: u64,
    loaded_at: Option<UnixSeconds>,
    refreshing: bool,
    decode_errors: u64,
    kv_errors: u64,
    last_error: Option<String>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// What the status endpoint reports about the model.
#[derive(Debug, Clone, Default)]
pub struct ModelStatus {
    pub version: Option<u32>,
    pub pointer_hash: Option<String>,
    pub regions_loaded: Vec<String>,
    pub loaded_at: Option<u64>,
    pub decode_errors: u64,
    pub kv_errors: u64,
    pub last_error: Option<String>,
}

pub fn status() -> ModelStatus {
    CACHE.with(|c| {
        let c = c.borrow();
        let mut regions_loaded: Vec<String> = c.regions.keys().cloned().collect();
        regions_loaded.sort();
        ModelStatus {
            version: c.pointer.as_ref().map(|p| p.version.0),
            pointer_hash: c.pointer_hash.map(|h| h.to_hex()),
            regions_loaded,
            loaded_at: c.loaded_at.map(|t| t.0),
            decode_errors: c.decode_errors,
            kv_errors: c.kv_errors,
            last_error: c.last_error.clone(),
        }
    })
}

/// The model for this request's region from the isolate's cache, without waiting: `None` when
/// KV must be read first (the isolate's first request, or its first for this region; the
/// caller then takes [`model_for`]), `Some(None)` when no model applies. A due refresh of the
/// pointer is started through `spawn` as in [`model_for`].
pub fn model_now(
    kv: impl Fn() -> Option<KvStore>,
    cache_ttl: u64,
    check_secs: u64,
    origin: &RequestOrigin,
    now: UnixSeconds,
    spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>),
) -> Option<Option<Rc<RegionModel>>> {
    let (pointer, refreshing, due) = CACHE.with(|c| {
        let c = c.borrow();
        (c.pointer.clone(), c.refreshing, now.0.saturating_sub(c.checked_at) >= check_secs)
    });
    let pointer = match pointer {
        None if refreshing => return Some(None),
        None => return None,
        Some(pointer) => pointer,
    };
    if due
        && !refreshing
        && let Some(kv) = kv()
    {
        begin_refresh();
        spawn(Box::pin(async move { refresh(&kv, cache_ttl, now).await }));
    }
    let region = pointer.region_for(origin.colo.as_deref(), origin.country.as_deref(), origin.continent.as_deref());
    if let Some(model) = CACHE.with(|c| c.borrow().regions.get(region).cloned()) {
        return Some(Some(model));
    }
    match pointer.entry(region) {
        Some(_) => None,
        None => Some(None),
    }
}

/// The model for this request's region, or `None` (then the request gets profile `default`).
/// `kv` is called only when KV must be read (getting the binding costs several crossings of
/// the Wasm boundary, and most requests are served from the cache); `spawn` runs the
/// background refresh (the caller hands it to `ctx.wait_until`).
pub async fn model_for(
    kv: impl Fn() -> Option<KvStore>,
    cache_ttl: u64,
    check_secs: u64,
    origin: &RequestOrigin,
    now: UnixSeconds,
    spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>),
) -> Option<Rc<RegionModel>> {
    if let Some(model) = model_now(&kv, cache_ttl, check_secs, origin, now, spawn) {
        return model;
    }
    // KV must be read first: the isolate's first pointer, or this region's first blob.
    let pointer = match CACHE.with(|c| c.borrow().pointer.clone()) {
        Some(pointer) => pointer,
        None => {
            let kv = kv()?;
            begin_refresh();
            refresh(&kv, cache_ttl, now).await;
            CACHE.with(|c| c.borrow().pointer.clone())?
        }
    };
    let region = pointer.region_for(origin.colo.as_deref(), origin.country.as_deref(), origin.continent.as_deref());
    if let Some(model) = CACHE.with(|c| c.borrow().regions.get(region).cloned()) {
        return Some(model);
    }
    // First request for this region in this isolate: load its blob now.
    let entry = pointer.entry(region)?;
    match load_region(&kv()?, cache_ttl, entry).await {
        Ok(model) => {
            let model = Rc::new(model);
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                // Install only if the pointer did not move meanwhile.
                if c.pointer.as_ref().is_some_and(|p| Rc::ptr_eq(p, &pointer)) {
                    c.regions.insert(region.to_owned(), model.clone());
                }
            });
            Some(model)
        }
        Err(e) => {
            record_error(e);
            None
        }
    }
}

fn begin_refresh() {
    CACHE.with(|c| c.borrow_mut().refreshing = true);
}

enum LoadError {
    Kv(String),
    Decode(String),
}

fn record_error(e: LoadError) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match e {
            LoadError::Kv(m) => {
                c.kv_errors += 1;
                c.last_error = Some(m);
            }
            LoadError::Decode(m) => {
                c.decode_errors += 1;
                c.last_error = Some(m);
            }
        }
    });
}

async fn get(kv: &KvStore, key: &str, cache_ttl: u64) -> Result<Vec<u8>, LoadError> {
    match kv.get(key).cache_ttl(cache_ttl).bytes().await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(LoadError::Kv(format!("KV key {key} is missing"))),
        Err(e) => Err(LoadError::Kv(format!("KV read of {key} failed: {e}"))),
    }
}

async fn load_region(
    kv: &KvStore,
    cache_ttl: u64,
    entry: &prewarm_shared::artifact::RegionEntry,
) -> Result<RegionModel, LoadError> {
    let key = entry.hash.kv_key();
    let bytes = get(kv, &key, cache_ttl).await?;
    verify_blob(entry, &bytes).map_err(|e| LoadError::Decode(format!("{key}: {e}")))?;
    let model = RegionModel::from_artifact(&bytes).map_err(|e| LoadError::Decode(format!("{key}: {e}")))?;
    if model.region != entry.region {
        return Err(LoadError::Decode(format!("{key} holds region {:?}, not {:?}", model.region, entry.region)));
    }
    Ok(model)
}

/// Re-reads the pointer and, when it moved, the blobs of every region this isolate serves.
async fn refresh(kv: &KvStore, cache_ttl: u64, now: UnixSeconds) {
    let outcome = try_refresh(kv, cache_ttl, now).await;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.refreshing = false;
        c.checked_at = now.0;
    });
    if let Err(e) = outcome {
        record_error(e);
    }
}

async fn try_refresh(kv: &KvStore, cache_ttl: u64, now: UnixSeconds) -> Result<(), LoadError> {
    let bytes = get(kv, POINTER_KEY, cache_ttl).await?;
    let hash = ContentHash::of(&bytes);
    let (unchanged, served) = CACHE.with(|c| {
        let c = c.borrow();
        (c.pointer_hash == Some(hash), c.regions.keys().cloned().collect::<Vec<_>>())
    });
    if unchanged {
        return Ok(());
    }
    let pointer = ModelPointer::from_artifact(&bytes).map_err(|e| LoadError::Decode(format!("pointer: {e}")))?;
    let mut regions = HashMap::with_capacity(served.len());
    for name in served {
        let Some(entry) = pointer.entry(&name) else { continue };
        // A region whose blob did not change keeps its decoded model: no KV read, no decode.
        let unchanged = CACHE.with(|c| {
            let c = c.borrow();
            let same_blob = c.pointer.as_ref().and_then(|p| p.entry(&name)).is_some_and(|old| old.hash == entry.hash);
            same_blob.then(|| c.regions.get(&name).cloned()).flatten()
        });
        let model = match unchanged {
            Some(model) => model,
            None => Rc::new(load_region(kv, cache_ttl, entry).await?),
        };
        regions.insert(name, model);
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.pointer = Some(Rc::new(pointer));
        c.pointer_hash = Some(hash);
        c.regions = regions;
        c.loaded_at = Some(now);
    });
    Ok(())
}
