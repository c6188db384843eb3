//! The published model, cached per isolate.
//!
//! KV key `current` holds the small pointer; region blobs live under `model/<hash>` and never
//! change. The pointer is re-read at most every `MODEL_CHECK_SECS`, in the background, one refresh
//! at a time. A new pointer is installed only together with decoded blobs for every region this
//! isolate serves, so a request sees the old model or the new one, never a mix; anything missing
//! or corrupt keeps the last good model and is counted.
//!
//! A request waits on KV at most once per isolate (per region): the first look at the pointer
//! (or at a region's blob) waits up to `MODEL_LOAD_TIMEOUT_MS`, and a load that takes longer
//! goes on in the background while the request is served the default profile. A failed load is
//! remembered and retried in the background at most once per `MODEL_CHECK_SECS`: nothing
//! published, KV erroring or a corrupt blob never makes every request wait.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{Either, select};
use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ContentHash, ModelPointer, POINTER_KEY, RegionEntry, RegionModel, verify_blob};
use worker::{Delay, KvStore};

use crate::geo::RequestOrigin;

pub(crate) const KV_BINDING: &str = "PREWARM_MODEL";

/// A load left to the background gives up after this long (a KV that never answers would
/// otherwise hold the refresh slot for good).
const BACKGROUND_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A future handed to `ctx.wait_until`.
pub(crate) type Background = Pin<Box<dyn Future<Output = ()>>>;

/// How the cache reads KV (from the worker's configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// KV `cacheTtl` of reads (`MODEL_CACHE_TTL`).
    pub cache_ttl: u64,
    /// Pointer re-reads, and retries after a failure, at most this often (`MODEL_CHECK_SECS`).
    pub check_secs: u64,
    /// The longest a request waits on a first load (`MODEL_LOAD_TIMEOUT_MS`).
    pub load_timeout: Duration,
}

/// A region's blob load, while the region is not in the cache.
#[derive(Debug, Clone, Copy)]
struct RegionLoad {
    at: u64,
    in_flight: bool,
}

#[derive(Default)]
struct Cache {
    pointer: Option<Rc<ModelPointer>>,
    pointer_hash: Option<ContentHash>,
    regions: HashMap<String, Rc<RegionModel>>,
    /// When the pointer was last read or tried, and whether it ever was.
    checked_at: u64,
    attempted: bool,
    loaded_at: Option<UnixSeconds>,
    refreshing: bool,
    region_loads: HashMap<String, RegionLoad>,
    decode_errors: u64,
    kv_errors: u64,
    last_error: Option<String>,
    /// KV reads started, for the status endpoint (tests count them).
    kv_reads: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// What the status endpoint reports about the model.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelStatus {
    pub version: Option<u32>,
    pub pointer_hash: Option<String>,
    pub regions_loaded: Vec<String>,
    pub loaded_at: Option<u64>,
    pub decode_errors: u64,
    pub kv_errors: u64,
    pub kv_reads: u64,
    pub last_error: Option<String>,
}

pub(crate) fn status() -> ModelStatus {
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
            kv_reads: c.kv_reads,
            last_error: c.last_error.clone(),
        }
    })
}

/// The model for this request's region from the isolate's cache, without waiting: `None` when
/// this is the isolate's first look at the pointer (or at this region's blob) and the caller
/// may wait for it ([`model_for`]); `Some(None)` when no model applies now — nothing loaded
/// yet, a load in flight, or a failure within the last `check_secs` (a retry is started in the
/// background when due). A due refresh of the pointer is started through `spawn`.
pub(crate) fn model_now(
    kv: impl Fn() -> Option<KvStore>,
    settings: &Settings,
    origin: &RequestOrigin,
    now: UnixSeconds,
    spawn: &dyn Fn(Background),
) -> Option<Option<Rc<RegionModel>>> {
    let (pointer, refreshing, attempted, due) = CACHE.with(|c| {
        let c = c.borrow();
        (c.pointer.clone(), c.refreshing, c.attempted, now.0.saturating_sub(c.checked_at) >= settings.check_secs)
    });
    if due && !refreshing && (attempted || pointer.is_some()) {
        start_refresh(&kv, settings, now, spawn);
    }
    let pointer = match pointer {
        Some(pointer) => pointer,
        None if !attempted => return None,
        None => return Some(None),
    };
    let region = pointer.region_for(origin.colo.as_deref(), origin.country.as_deref(), origin.continent.as_deref());
    if let Some(model) = CACHE.with(|c| c.borrow().regions.get(region).cloned()) {
        return Some(Some(model));
    }
    let entry = pointer.entry(region)?.clone();
    match CACHE.with(|c| c.borrow().region_loads.get(region).copied()) {
        None => None,
        Some(load) if load.in_flight || now.0.saturating_sub(load.at) < settings.check_secs => Some(None),
        Some(_) => {
            if let Some(kv) = kv() {
                let load = load_region_into_cache(kv, settings.cache_ttl, pointer, entry, now);
                spawn(bounded(load, BACKGROUND_LOAD_TIMEOUT, |e| record_error(LoadError::Kv(e))));
            }
            Some(None)
        }
    }
}

/// The model for this request's region, or `None` (then the request gets profile `default`).
/// `kv` is called only when KV must be read (getting the binding costs several crossings of
/// the Wasm boundary, and most requests are served from the cache); `spawn` runs background
/// loads (the caller hands them to `ctx.wait_until`). Waits for KV only on the isolate's first
/// look at the pointer or at this region, and for at most `settings.load_timeout`.
pub(crate) async fn model_for(
    kv: impl Fn() -> Option<KvStore>,
    settings: &Settings,
    origin: &RequestOrigin,
    now: UnixSeconds,
    spawn: &dyn Fn(Background),
) -> Option<Rc<RegionModel>> {
    if let Some(model) = model_now(&kv, settings, origin, now, spawn) {
        return model;
    }
    if CACHE.with(|c| c.borrow().pointer.is_none()) {
        let kv = kv()?;
        begin_refresh(now);
        let load: Background = Box::pin(refresh(kv, settings.cache_ttl, now));
        if !finished_within(load, settings.load_timeout, spawn).await {
            return None;
        }
    }
    let pointer = CACHE.with(|c| c.borrow().pointer.clone())?;
    let region = pointer.region_for(origin.colo.as_deref(), origin.country.as_deref(), origin.continent.as_deref());
    if let Some(model) = CACHE.with(|c| c.borrow().regions.get(region).cloned()) {
        return Some(model);
    }
    // The isolate's first request for this region: load its blob, waiting a bounded time.
    let entry = pointer.entry(region)?.clone();
    let region = region.to_owned();
    let load = load_region_into_cache(kv()?, settings.cache_ttl, pointer, entry, now);
    if !finished_within(load, settings.load_timeout, spawn).await {
        return None;
    }
    CACHE.with(|c| c.borrow().regions.get(&region).cloned())
}

/// Waits for `load` up to `timeout`; past it, hands the rest to the background (itself bounded)
/// and returns false.
async fn finished_within(load: Background, timeout: Duration, spawn: &dyn Fn(Background)) -> bool {
    match select(load, Box::pin(Delay::from(timeout))).await {
        Either::Left(((), _)) => true,
        Either::Right(((), load)) => {
            spawn(bounded(load, BACKGROUND_LOAD_TIMEOUT, |e| record_error(LoadError::Kv(e))));
            false
        }
    }
}

/// `load`, given up after `timeout` (then `on_timeout` is told why and every in-flight mark is
/// cleared, so the next check retries).
fn bounded(load: Background, timeout: Duration, on_timeout: fn(String)) -> Background {
    Box::pin(async move {
        if let Either::Right(_) = select(load, Box::pin(Delay::from(timeout))).await {
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                c.refreshing = false;
                c.region_loads.values_mut().for_each(|l| l.in_flight = false);
            });
            on_timeout(format!("KV did not answer within {} s", timeout.as_secs()));
        }
    })
}

/// Starts a background re-read of the pointer (one at a time).
fn start_refresh(kv: &impl Fn() -> Option<KvStore>, settings: &Settings, now: UnixSeconds, spawn: &dyn Fn(Background)) {
    let Some(kv) = kv() else { return };
    begin_refresh(now);
    spawn(bounded(Box::pin(refresh(kv, settings.cache_ttl, now)), BACKGROUND_LOAD_TIMEOUT, |e| {
        record_error(LoadError::Kv(e))
    }));
}

/// Loads a region's blob and installs it if the pointer did not move meanwhile; a failure is
/// remembered (retried after `check_secs`).
fn load_region_into_cache(
    kv: KvStore,
    cache_ttl: u64,
    pointer: Rc<ModelPointer>,
    entry: RegionEntry,
    now: UnixSeconds,
) -> Background {
    CACHE.with(|c| c.borrow_mut().region_loads.insert(entry.region.clone(), RegionLoad { at: now.0, in_flight: true }));
    Box::pin(async move {
        let loaded = load_region(&kv, cache_ttl, &entry).await;
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            match &loaded {
                Ok(_) => {
                    c.region_loads.remove(&entry.region);
                }
                Err(_) => {
                    c.region_loads.insert(entry.region.clone(), RegionLoad { at: now.0, in_flight: false });
                }
            }
        });
        match loaded {
            Ok(model) => CACHE.with(|c| {
                let mut c = c.borrow_mut();
                // Install only if the pointer did not move meanwhile.
                if c.pointer.as_ref().is_some_and(|p| Rc::ptr_eq(p, &pointer)) {
                    c.regions.insert(entry.region.clone(), Rc::new(model));
                }
            }),
            Err(e) => record_error(e),
        }
    })
}

fn begin_refresh(now: UnixSeconds) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.refreshing = true;
        c.attempted = true;
        c.checked_at = now.0;
    });
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
    CACHE.with(|c| c.borrow_mut().kv_reads += 1);
    match kv.get(key).cache_ttl(cache_ttl).bytes().await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(LoadError::Kv(format!("KV key {key} is missing"))),
        Err(e) => Err(LoadError::Kv(format!("KV read of {key} failed: {e}"))),
    }
}

async fn load_region(kv: &KvStore, cache_ttl: u64, entry: &RegionEntry) -> Result<RegionModel, LoadError> {
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
async fn refresh(kv: KvStore, cache_ttl: u64, now: UnixSeconds) {
    let outcome = try_refresh(&kv, cache_ttl, now).await;
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
