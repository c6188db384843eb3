//! Counting demand in the isolate and telling the trainer: batched demand counts and sampled
//! states, and immediate (debounced) prewarm requests. Sending never delays a response: batches
//! go out through `ctx.wait_until`, with a timeout and a cap on requests in flight; failures are
//! counted and dropped, never retried inline.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_util::future::{Either, select};
use prewarm_shared::artifact::{ModelVersion, RegionModel};
use prewarm_shared::signal_rule::{self, MinuteWindow};
use prewarm_shared::signals::{
    self, DemandCount, KEY_ID_HEADER, PrewarmReason, PrewarmRequest, SIGNATURE_HEADER, SampledState, SignalBatch,
    TIMESTAMP_HEADER, UserHash,
};
use prewarm_shared::{FeatureVector, ProfileId, UnixSeconds};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::config::EdgeConfig;

/// Sampled users contribute one state every this many requests.
const SAMPLE_EVERY_REQUESTS: u16 = 4;

type SliceKey = (String, ProfileId);

#[derive(Default)]
struct Aggregator {
    demand: HashMap<(String, ProfileId, u64), (u32, u64)>,
    prewarm: Vec<PrewarmRequest>,
    states: Vec<SampledState>,
    oldest: Option<u64>,
    last_prewarm: HashMap<(String, ProfileId, PrewarmReason), u64>,
    /// The last 60 seconds' requests per region × profile, kept across flushes: the alarm
    /// test needs a whole minute, not what arrived since the last batch went out.
    this_minute: HashMap<SliceKey, MinuteWindow>,
    model_version: Option<ModelVersion>,
    in_flight: u32,
    counters: SignalCounters,
}

/// Totals for the status endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct SignalCounters {
    pub batches_sent: u64,
    pub batches_failed: u64,
    pub batches_dropped: u64,
    pub prewarm_raised: u64,
}

thread_local! {
    static AGGREGATOR: RefCell<Aggregator> = RefCell::new(Aggregator::default());
}

pub fn counters() -> SignalCounters {
    AGGREGATOR.with(|a| a.borrow().counters)
}

/// One forwarded request, as the aggregator needs it.
pub struct Served<'a> {
    pub model: &'a RegionModel,
    pub profile: ProfileId,
    /// The user's hash, computed only for a sampled state.
    pub user: &'a dyn Fn() -> UserHash,
    pub requests_by_user: u16,
    pub features: &'a FeatureVector,
    pub bytes: u64,
    pub now: UnixSeconds,
}

impl Aggregator {
    fn debounced(&mut self, key: (String, ProfileId, PrewarmReason), now: UnixSeconds, window: u64) -> bool {
        let due = signal_rule::due(self.last_prewarm.get(&key).copied(), now, window);
        if due {
            self.last_prewarm.insert(key, now.0);
        }
        due
    }

    /// Queues a prewarm request unless one with the same reason went out within the window.
    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        reason: PrewarmReason,
        region: &str,
        profile: ProfileId,
        now: UnixSeconds,
        observed: f32,
        forecast_upper: f32,
        config: &EdgeConfig,
    ) {
        if self.debounced((region.to_owned(), profile, reason), now, config.prewarm_debounce_secs) {
            let minute = now.minute();
            self.prewarm.push(PrewarmRequest {
                region: region.to_owned(),
                profile,
                minute,
                observed,
                forecast_upper,
                reason,
            });
        }
    }

    fn pending(&self) -> usize {
        self.demand.len() + self.prewarm.len() + self.states.len()
    }
}

/// Counts a request; returns a batch when one is due (a prewarm request, enough items, or age).
pub fn record(config: &EdgeConfig, served: &Served<'_>) -> Option<SignalBatch> {
    AGGREGATOR.with(|a| {
        let mut a = a.borrow_mut();
        let model = served.model;
        let now = served.now;
        let minute = now.minute();
        let region = model.region.clone();
        let entry = a.demand.entry((region.clone(), served.profile, minute)).or_default();
        entry.0 = entry.0.saturating_add(1);
        entry.1 = entry.1.saturating_add(served.bytes);
        // The worker's rule, shared with the replay: the last 60 seconds against the alarm.
        let last_minute = a.this_minute.entry((region.clone(), served.profile)).or_default().record(now, 1);
        a.oldest.get_or_insert(now.0);
        a.model_version = Some(model.model_version);
        if let Some(c) =
            signal_rule::crossing(&model.forecast, served.profile, now, last_minute, config.edge_traffic_share)
        {
            a.raise(PrewarmReason::AboveBand, &region, served.profile, now, c.observed_per_step, c.alarm, config);
        }
        let user = served.requests_by_user.is_multiple_of(SAMPLE_EVERY_REQUESTS).then(served.user);
        if let Some(user) = user.filter(|u| f32::from(u.0[0]) / 256.0 < config.state_sample_rate) {
            a.states.push(SampledState { user, region, profile: served.profile, at: now, features: *served.features });
        }
        let due = !a.prewarm.is_empty()
            || a.pending() >= config.signal_batch_max
            || a.oldest.is_some_and(|t| now.0.saturating_sub(t) >= config.signal_flush_secs);
        due.then(|| take(&mut a, now))
    })
}

fn take(a: &mut Aggregator, now: UnixSeconds) -> SignalBatch {
    let mut batch = SignalBatch::new(now, a.model_version);
    // A nonce, not a secret: Math.random is enough to tell batches apart.
    batch.batch_id = (worker::js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
    batch.demand = a
        .demand
        .drain()
        .map(|((region, profile, minute), (requests, bytes))| DemandCount { region, profile, minute, requests, bytes })
        .collect();
    batch.prewarm = std::mem::take(&mut a.prewarm);
    batch.states = std::mem::take(&mut a.states);
    batch.prewarm.iter().for_each(|_| a.counters.prewarm_raised += 1);
    a.oldest = None;
    // Old debounce and window entries are useless after a while; keep the maps small.
    if a.last_prewarm.len() > 4096 {
        a.last_prewarm.clear();
    }
    if a.this_minute.len() > 4096 {
        a.this_minute.clear();
    }
    batch
}

/// Sends a batch (run inside `ctx.wait_until`). Gives up after the configured timeout.
pub async fn send(config: Rc<EdgeConfig>, batch: SignalBatch) {
    let Some(trainer) = config.trainer.as_ref() else {
        return;
    };
    let admitted = AGGREGATOR.with(|a| {
        let mut a = a.borrow_mut();
        if a.in_flight >= config.signal_max_in_flight {
            a.counters.batches_dropped += 1;
            false
        } else {
            a.in_flight += 1;
            true
        }
    });
    if !admitted {
        return;
    }
    let ok = post(&config, trainer, &batch).await;
    AGGREGATOR.with(|a| {
        let mut a = a.borrow_mut();
        a.in_flight = a.in_flight.saturating_sub(1);
        if ok {
            a.counters.batches_sent += 1;
        } else {
            a.counters.batches_failed += 1;
        }
    });
}

async fn post(config: &EdgeConfig, trainer: &worker::Url, batch: &SignalBatch) -> bool {
    let Ok(url) = trainer.join("/v1/signals") else {
        return false;
    };
    let body = batch.to_json();
    let signature = signals::sign(config.signal_key.as_bytes(), batch.sent_at, &body);
    let headers = Headers::new();
    let ok_headers = headers.set("content-type", "application/json").is_ok()
        && headers.set(KEY_ID_HEADER, &config.signal_key_id).is_ok()
        && headers.set(TIMESTAMP_HEADER, &batch.sent_at.0.to_string()).is_ok()
        && headers.set(SIGNATURE_HEADER, &signature).is_ok();
    if !ok_headers {
        return false;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(worker::js_sys::Uint8Array::from(&body[..]).into()));
    let Ok(request) = Request::new_with_init(url.as_str(), &init) else {
        return false;
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Box::pin(async move { Fetch::Request(request).send_with_signal(&signal).await });
    let timeout = Box::pin(Delay::from(std::time::Duration::from_millis(config.signal_timeout_ms)));
    match select(fetch, timeout).await {
        Either::Left((Ok(response), _)) => (200..300).contains(&response.status_code()),
        Either::Left((Err(_), _)) => false,
        Either::Right(((), _)) => {
            controller.abort();
            false
        }
    }
}
