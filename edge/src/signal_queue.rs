//! Signals through a Cloudflare Queue (the optional `SIGNAL_QUEUE` binding): the worker hands
//! each batch to the queue, and the same worker's queue handler delivers it to the trainer.
//! A batch the trainer cannot take now (down, overloaded, refusing) is retried by the queue
//! after its `retry_delay`, up to `max_retries`, then kept in the dead-letter queue; so an
//! outage of the trainer delays signals instead of losing them. Delivery is at least once: the
//! trainer stores a batch id once, and answers 409 to a redelivery, which counts as delivered.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use worker::wasm_bindgen::JsValue;
use worker::{MessageBatch, MessageExt, Queue, QueueContentType, RawMessageBuilder};

use crate::config::EdgeConfig;
use crate::deliver::{self, Delivery};

/// Cloudflare Queues take messages of up to 128 KB; a larger batch goes to the trainer directly.
const MAX_MESSAGE_BYTES: usize = 120 * 1024;

/// What this isolate's queue handler did, for the status endpoint.
#[derive(Default)]
struct Counters {
    delivered: Cell<u64>,
    redelivered: Cell<u64>,
    retried: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
    /// Fault injection only: messages delivered once and then handed back to the queue.
    static HANDED_BACK: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// The queue handler's totals: (delivered, of which already stored before, retried).
pub(crate) fn counters() -> (u64, u64, u64) {
    COUNTERS.with(|c| (c.delivered.get(), c.redelivered.get(), c.retried.get()))
}

/// Puts a batch's JSON on the queue; `false` when it is too large or the queue refused it
/// (the caller then sends it directly).
pub(crate) async fn enqueue(queue: &Queue, body: &[u8]) -> bool {
    if body.len() > MAX_MESSAGE_BYTES {
        return false;
    }
    let Ok(text) = std::str::from_utf8(body) else { return false };
    let message = RawMessageBuilder::new(JsValue::from_str(text)).build_with_content_type(QueueContentType::Text);
    queue.send_raw(message).await.is_ok()
}

/// Delivers a batch of queued signal batches to the trainer, one at a time, each signed now.
/// Whatever fails is retried by the queue; once the trainer is unreachable the rest of the
/// batch is retried without trying it. Never returns an error: workers-rs turns one into a
/// panic, which would trap the instance serving users' requests.
pub(crate) async fn deliver(batch: MessageBatch<String>, config: &EdgeConfig) {
    let Some(trainer) = config.trainer.as_ref() else {
        // Signals are off without TRAINER_URL: hold the batches (retries, then the DLQ).
        retry_all(&batch);
        return;
    };
    let mut reachable = true;
    for message in batch.raw_iter() {
        let body = message.body().as_string();
        let delivery = match (&body, reachable) {
            (Some(body), true) => deliver::post(config, trainer, body.as_bytes(), crate::now()).await,
            // Not a batch this worker queued: left to the queue's retries and dead-letter queue.
            (None, _) => Delivery::Refused(0),
            (_, false) => Delivery::Unreachable,
        };
        if delivery == Delivery::Unreachable {
            reachable = false;
        }
        if !delivery.is_stored() {
            message.retry();
            COUNTERS.with(|c| c.retried.set(c.retried.get() + 1));
            continue;
        }
        COUNTERS.with(|c| {
            c.delivered.set(c.delivered.get() + 1);
            if delivery == Delivery::AlreadyStored {
                c.redelivered.set(c.redelivered.get() + 1);
            }
        });
        if config.fault_injection && HANDED_BACK.with(|h| h.borrow_mut().insert(message.id())) {
            // Test-only: a delivered message handed back once, so the queue delivers it again
            // (what a consumer that dies before acknowledging does): the trainer must store it once.
            message.retry();
        } else {
            message.ack();
        }
    }
}

fn retry_all(batch: &MessageBatch<String>) {
    batch.retry_all();
    COUNTERS.with(|c| c.retried.set(c.retried.get() + batch.raw_iter().len() as u64));
}
