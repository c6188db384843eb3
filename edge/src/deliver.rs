//! Delivering a signal batch to the trainer: one signed `POST /v1/signals` with a timeout.
//! The key signs and is never sent; the request carries its id, the timestamp and the HMAC.

use futures_util::future::{Either, select};
use prewarm_shared::UnixSeconds;
use prewarm_shared::signals::{self, KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::config::EdgeConfig;

/// What the trainer made of a signal batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// 2xx: stored.
    Stored,
    /// 409: stored before (a redelivery); nothing to do.
    AlreadyStored,
    /// Any other answer, by status (429 and 5xx may pass; 4xx are the batch's or the key's fault).
    Refused(u16),
    /// No answer within the timeout.
    Unreachable,
}

impl Delivery {
    /// Whether the trainer holds the batch now.
    pub(crate) fn is_stored(self) -> bool {
        matches!(self, Self::Stored | Self::AlreadyStored)
    }
}

/// POSTs a batch's JSON to the trainer, signed at `signed_at` with the key (never sent).
pub(crate) async fn post(config: &EdgeConfig, trainer: &worker::Url, body: &[u8], signed_at: UnixSeconds) -> Delivery {
    let Ok(url) = trainer.join("/v1/signals") else {
        return Delivery::Unreachable;
    };
    let signature = signals::sign(config.signal_key.as_bytes(), signed_at, body);
    let headers = Headers::new();
    let ok_headers = headers.set("content-type", "application/json").is_ok()
        && headers.set(KEY_ID_HEADER, &config.signal_key_id).is_ok()
        && headers.set(TIMESTAMP_HEADER, &signed_at.0.to_string()).is_ok()
        && headers.set(SIGNATURE_HEADER, &signature).is_ok();
    if !ok_headers {
        return Delivery::Unreachable;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(worker::js_sys::Uint8Array::from(body).into()));
    let Ok(request) = Request::new_with_init(url.as_str(), &init) else {
        return Delivery::Unreachable;
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Box::pin(async move { Fetch::Request(request).send_with_signal(&signal).await });
    let timeout = Box::pin(Delay::from(std::time::Duration::from_millis(config.signal_timeout_ms)));
    match select(fetch, timeout).await {
        Either::Left((Ok(response), _)) => match response.status_code() {
            200..=299 => Delivery::Stored,
            409 => Delivery::AlreadyStored,
            status => Delivery::Refused(status),
        },
        Either::Left((Err(_), _)) => Delivery::Unreachable,
        Either::Right(((), _)) => {
            controller.abort();
            Delivery::Unreachable
        }
    }
}
