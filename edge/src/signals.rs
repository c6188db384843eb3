//! Counting demand in the isolate and telling the trainer: batched demand counts and sampled
//! states, and immediate (debounced) prewarm requests. Sending never delays a response: batches
//! go out through `ctx.wait_until`, with a timeout and a cap on requests in flight. Sent
//! directly, a failed batch is counted and dropped, never retried inline; with the
//! `SIGNAL_QUEUE` binding it goes to a Cloudflare Queue instead, and the queue's consumer
//! (`signal_queue`) delivers it with retries.

use std::cell::RefCell;
use std::rc::Rc;

pub(crate) use prewarm_shared::aggregate::Served;
use prewarm_shared::aggregate::{AggregateSettings, Aggregator};
use prewarm_shared::signal_rule::WatchSettings;
use prewarm_shared::signals::SignalBatch;

use crate::config::EdgeConfig;

/// The isolate's counts (`shared::aggregate`, the code the trainer's scale simulation runs)
/// and what sending adds: batches in flight and totals.
#[derive(Default)]
struct Isolate {
    counts: Aggregator,
    in_flight: u32,
    counters: SignalCounters,
}

/// Totals for the status endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SignalCounters {
    pub batches_sent: u64,
    /// Batches handed to the signal queue (its consumer counts deliveries).
    pub batches_queued: u64,
    pub batches_failed: u64,
    pub batches_dropped: u64,
    pub prewarm_raised: u64,
    /// Requests counted into demand (those served with a model and a profile).
    pub requests_counted: u64,
}

thread_local! {
    static AGGREGATOR: RefCell<Isolate> = RefCell::new(Isolate::default());
}

pub(crate) fn counters() -> SignalCounters {
    AGGREGATOR.with(|a| a.borrow().counters)
}

fn settings(config: &EdgeConfig) -> AggregateSettings {
    AggregateSettings {
        flush_secs: config.signal_flush_secs,
        batch_max: config.signal_batch_max,
        debounce_secs: config.prewarm_debounce_secs,
        watch: WatchSettings { traffic_share: config.edge_traffic_share, excess_secs: config.signal_excess_secs },
        state_sample_rate: config.state_sample_rate,
    }
}

/// Counts a request; returns a batch when one is due (a prewarm request, enough items, or age).
pub(crate) fn record(config: &EdgeConfig, served: &Served<'_>) -> Option<SignalBatch> {
    AGGREGATOR.with(|a| {
        let mut a = a.borrow_mut();
        a.counters.requests_counted += 1;
        if !a.counts.record(&settings(config), served) {
            return None;
        }
        // A nonce, not a secret: Math.random is enough to tell batches apart.
        // Never 0: the trainer deduplicates by a non-zero id (a queue delivers at least once).
        let batch_id = ((worker::js_sys::Math::random() * 9_007_199_254_740_992.0) as u64).max(1);
        let batch = a.counts.take(served.now, batch_id);
        a.counters.prewarm_raised += batch.prewarm.len() as u64;
        Some(batch)
    })
}

/// Sends a batch (run inside `ctx.wait_until`): to the signal queue when bound (falling back
/// to the trainer if the queue refuses it), else to the trainer, giving up after the timeout.
pub(crate) async fn send(config: Rc<EdgeConfig>, batch: SignalBatch) {
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
    let body = batch.to_json();
    let queued = match &config.signal_queue {
        Some(queue) => crate::signal_queue::enqueue(queue, &body).await,
        None => false,
    };
    let ok = queued || crate::deliver::post(&config, trainer, &body, batch.sent_at).await.is_stored();
    AGGREGATOR.with(|a| {
        let mut a = a.borrow_mut();
        a.in_flight = a.in_flight.saturating_sub(1);
        if queued {
            a.counters.batches_queued += 1;
        } else if ok {
            a.counters.batches_sent += 1;
        } else {
            a.counters.batches_failed += 1;
        }
    });
}
