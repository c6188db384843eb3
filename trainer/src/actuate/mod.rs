//! Actuation: the plan (and alerts) leave the trainer through a webhook, so any orchestrator
//! can act on them. Each delivery is JSON, signed like the edge's signals (HMAC-SHA256 of
//! `timestamp + "\n" + body` in `x-prewarm-signature`, the timestamp in `x-prewarm-timestamp`),
//! and retried with exponential backoff on connection errors, 429 and 5xx.

pub mod keda;

use std::time::Duration;

use prewarm_shared::signals::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use prewarm_shared::{Secret, UnixSeconds};

pub use crate::config::ActuateConfig;

/// Why a webhook delivery failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum ActuateError {
    /// The webhook kept answering with an error status.
    #[error("webhook {url}: HTTP {status} after {attempts} attempts")]
    Status { url: String, status: u16, attempts: u32 },
    /// The webhook could not be reached.
    #[error("webhook {url}: {message} after {attempts} attempts")]
    Transport { url: String, message: String, attempts: u32 },
    /// The webhook refused the delivery (a 4xx, not retried).
    #[error("webhook {url} refused the delivery: HTTP {status}")]
    Refused { url: String, status: u16 },
}

/// A webhook receiver of plans and alerts.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Where deliveries go (a `Secret`: its query may hold a key; `Debug` shows `shown`).
    url: Secret,
    /// How errors and logs name it ([`crate::outbound::redacted`]).
    shown: String,
    secret: Secret,
    retries: u32,
    backoff: Duration,
    agent: ureq::Agent,
}

impl Webhook {
    /// A webhook delivering to `url`, signing with `secret`.
    pub fn new(url: &str, secret: &Secret, config: &ActuateConfig) -> Self {
        Self {
            url: Secret::from(url),
            shown: crate::outbound::redacted(url),
            secret: secret.clone(),
            retries: config.retries,
            backoff: Duration::from_millis(config.backoff_ms),
            agent: crate::outbound::agent(Duration::from_secs(config.timeout_secs)),
        }
    }

    /// Delivers one signed JSON document of `kind` (`plan` or `alert`); returns the attempts
    /// it took. A 4xx other than 429 is the receiver refusing it: not retried.
    pub fn deliver(&self, kind: &str, body: &serde_json::Value, now: UnixSeconds) -> Result<u32, ActuateError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let signature = signals::sign(self.secret.as_bytes(), now, &bytes);
        let mut delay = self.backoff;
        let mut last = None;
        for attempt in 1..=self.retries + 1 {
            let sent = self
                .agent
                .post(self.url.expose())
                .header("content-type", "application/json")
                .header("x-prewarm-event", kind)
                .header(TIMESTAMP_HEADER, &now.0.to_string())
                .header(SIGNATURE_HEADER, &signature)
                .send(&bytes[..]);
            match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(attempt);
                    }
                    if status != 429 && status < 500 {
                        return Err(ActuateError::Refused { url: self.shown.clone(), status });
                    }
                    last = Some(ActuateError::Status { url: self.shown.clone(), status, attempts: attempt });
                }
                Err(e) => {
                    last = Some(ActuateError::Transport {
                        url: self.shown.clone(),
                        message: e.to_string(),
                        attempts: attempt,
                    })
                }
            }
            if attempt <= self.retries {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
        Err(last.unwrap_or(ActuateError::Transport {
            url: self.shown.clone(),
            message: "no attempt made".into(),
            attempts: 0,
        }))
    }
}

/// What one actuation cycle did.
#[derive(Debug, Default)]
pub struct CycleReport {
    /// The plan was delivered (or there was no webhook or no plan).
    pub plan_delivered: Option<bool>,
    /// Alerts that started and stopped firing.
    pub transitions: crate::monitor::Transitions,
}

/// One cycle, blocking: deliver the plan, evaluate the alert rules, deliver what fired or
/// resolved. Failures are counted (they feed the `actuation_failing` alert), never fatal.
pub fn cycle(
    state: &crate::service::AppState,
    webhook: Option<&Webhook>,
    now: UnixSeconds,
) -> Result<CycleReport, crate::service::ServiceError> {
    use crate::monitor::{Observations, evaluate};
    use std::sync::atomic::Ordering;

    let view = crate::service::plan_now(state, now)?;
    // What the KEDA scaler answers from until the next cycle.
    state.plan_cache.store(view.clone());
    let mut report = CycleReport::default();
    if let Some(hook) = webhook
        && !view.plans.is_empty()
        && !state.config.actuate.forecast_only
    {
        let regions = view.regions();
        let body = serde_json::json!({
            "kind": "plan",
            "at": now.0,
            "model_version": view.pointer.as_ref().map(|p| p.version.0),
            "regions": regions,
        });
        let delivered = hook.deliver("plan", &body, now);
        if let Err(e) = &delivered {
            tracing::warn!(error = %e, "plan delivery failed");
        }
        state.monitor.record_delivery(delivered.is_ok());
        report.plan_delivered = Some(delivered.is_ok());
    }
    let rules = &state.config.alerts;
    let (edge, last_demand, above_band, live_skill) = state.readers.read(|store| {
        // The window, and the day before it for the seasonal-naive baseline.
        let since_minute = now.0.saturating_sub(rules.skill_window_secs + 86_400) / 60;
        let mut live_skill = Vec::new();
        for model in &view.models {
            let demand = store.demand_by_minute(&model.region, since_minute)?;
            live_skill.extend(crate::monitor::live_skill(model, &demand, now.0, rules.skill_window_secs));
        }
        Ok((
            store.edge_summary()?,
            store.last_demand_by_region()?,
            store.prewarm_counts_since(now.0.saturating_sub(rules.window_secs), "above_band")?,
            live_skill,
        ))
    })?;
    let observations = Observations {
        now: now.0,
        published_version: view.pointer.as_ref().map(|p| p.version.0),
        published_at: view.pointer.as_ref().map(|p| p.created_at.0),
        published_regions: view.models.iter().map(|m| m.region.clone()).collect(),
        edge_model_version: edge.edge_model_version,
        last_demand,
        above_band,
        actuation_consecutive_failures: state.monitor.actuation_consecutive_failures.load(Ordering::Relaxed),
        live_skill,
    };
    report.transitions = state.monitor.update(evaluate(&observations, rules));
    if let Some(hook) = webhook {
        let changes = report.transitions.fired.iter().map(|a| ("firing", a));
        for (status, alert) in changes.chain(report.transitions.resolved.iter().map(|a| ("resolved", a))) {
            tracing::warn!(alert = alert.name, region = ?alert.region, status, "{}", alert.message);
            let body = serde_json::json!({ "kind": "alert", "status": status, "at": now.0, "alert": alert });
            let delivered = hook.deliver("alert", &body, now);
            if let Err(e) = &delivered {
                tracing::warn!(error = %e, "alert delivery failed");
            }
            state.monitor.record_delivery(delivered.is_ok());
        }
    }
    Ok(report)
}
