//! `GET /__prewarm/status` and `GET /__prewarm/health`: what an operator checks first.

use std::cell::Cell;

use prewarm_shared::signals::tokens_match;
use serde_json::json;
use worker::js_sys::{self, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::{Request, Response, Result};

use crate::{model_cache, signals};

pub(crate) const PREFIX: &str = "/__prewarm/";
/// The JS entry counts panics here, outside Wasm memory, so the count survives the re-instantiation.
const PANICS_GLOBAL: &str = "__prewarm_panics";

#[derive(Default)]
struct Counters {
    requests: Cell<u64>,
    without_model: Cell<u64>,
    states_rejected: Cell<u64>,
    origin_errors: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
    static CONFIG_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn bump(f: impl Fn(&Counters) -> &Cell<u64>) {
    COUNTERS.with(|c| {
        let cell = f(c);
        cell.set(cell.get() + 1);
    });
}

pub(crate) fn count_request() {
    bump(|c| &c.requests);
}
pub(crate) fn count_without_model() {
    bump(|c| &c.without_model);
}
pub(crate) fn count_state_rejected() {
    bump(|c| &c.states_rejected);
}
pub(crate) fn count_origin_error() {
    bump(|c| &c.origin_errors);
}
pub(crate) fn set_config_error(error: Option<String>) {
    CONFIG_ERROR.with(|e| *e.borrow_mut() = error);
}

fn panics_caught() -> u64 {
    Reflect::get(&js_sys::global(), &JsValue::from_str(PANICS_GLOBAL)).ok().and_then(|v| v.as_f64()).unwrap_or(0.0)
        as u64
}

/// Answers `/__prewarm/*`; `status_token` guards both endpoints when set.
pub(crate) fn handle(req: &Request, path: &str, status_token: Option<&str>) -> Result<Response> {
    if let Some(token) = status_token {
        let presented = req.headers().get("authorization").ok().flatten().unwrap_or_default();
        let presented = presented.strip_prefix("Bearer ").unwrap_or("");
        if !tokens_match(presented.as_bytes(), token.as_bytes()) {
            return Response::error("missing or wrong bearer token for /__prewarm/", 401);
        }
    }
    let model = model_cache::status();
    let config_error = CONFIG_ERROR.with(|e| e.borrow().clone());
    match path.strip_prefix(PREFIX) {
        Some("health") => {
            let healthy = config_error.is_none();
            let body = json!({
                "ok": healthy,
                "model_loaded": model.version.is_some(),
                "config_error": config_error,
            });
            Ok(Response::from_json(&body)?.with_status(if healthy { 200 } else { 503 }))
        }
        Some("status") => {
            let signals = signals::counters();
            let (delivered, redelivered, retried) = crate::signal_queue::counters();
            let body = COUNTERS.with(|c| {
                json!({
                    "model": {
                        "version": model.version,
                        "pointer_hash": model.pointer_hash,
                        "regions_loaded": model.regions_loaded,
                        "loaded_at": model.loaded_at,
                        "last_error": model.last_error,
                    },
                    "config_error": config_error,
                    "counters": {
                        "requests": c.requests.get(),
                        "requests_without_model": c.without_model.get(),
                        "states_rejected": c.states_rejected.get(),
                        "origin_errors": c.origin_errors.get(),
                        "decode_errors": model.decode_errors,
                        "kv_errors": model.kv_errors,
                        "kv_reads": model.kv_reads,
                        "requests_counted": signals.requests_counted,
                        "signal_batches_sent": signals.batches_sent,
                        "signal_batches_failed": signals.batches_failed,
                        "signal_batches_dropped": signals.batches_dropped,
                        "signal_batches_queued": signals.batches_queued,
                        "queue_batches_delivered": delivered,
                        "queue_batches_already_stored": redelivered,
                        "queue_batches_retried": retried,
                        "prewarm_raised": signals.prewarm_raised,
                        "panics_caught": panics_caught(),
                    },
                })
            });
            Response::from_json(&body)
        }
        _ => Response::error("unknown /__prewarm/ endpoint: use status or health", 404),
    }
}
