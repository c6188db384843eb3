//! The worker's configuration: vars from wrangler.toml and secrets, read once per isolate.

use prewarm_shared::Secret;
use prewarm_shared::state::{CookieKey, CookieKeys};
use worker::{Env, Url};

/// Everything the per-request path needs, parsed and validated.
#[derive(Debug, Clone)]
pub(crate) struct EdgeConfig {
    /// Where requests are forwarded (`ORIGIN_URL`).
    pub origin: Url,
    /// Where signals go (`TRAINER_URL`); signals are off when unset.
    pub trainer: Option<Url>,
    /// The HMAC key signals are signed with (`SIGNAL_KEY` secret, the trainer's
    /// `PREWARM_SIGNAL_KEY`): never sent, only its id and signatures are.
    pub signal_key: Secret,
    /// The signal queue (`SIGNAL_QUEUE` binding), when bound: batches go there and the queue
    /// handler delivers them with retries; otherwise they are POSTed directly.
    pub signal_queue: Option<worker::Queue>,
    /// `signal_key`'s public id, computed once (`x-prewarm-key-id`).
    pub signal_key_id: String,
    /// Salt for user hashes (`PREWARM_SALT` secret): only HMAC(salt, id) leaves the worker.
    pub salt: Secret,
    /// State-cookie keys (`COOKIE_SECRET`, `COOKIE_KEY_ID`, and optionally
    /// `COOKIE_SECRET_PREVIOUS` + `COOKIE_KEY_ID_PREVIOUS` during a rotation).
    pub cookie_keys: CookieKeys,
    /// How the model is read from KV: the pointer re-read (and a failed load retried) at most
    /// every `MODEL_CHECK_SECS` (default 30), KV's `cacheTtl` (`MODEL_CACHE_TTL`, default 60,
    /// KV's minimum), and the longest a request waits on a first load (`MODEL_LOAD_TIMEOUT_MS`,
    /// default 500).
    pub model_loading: crate::model_cache::Settings,
    /// Flush demand counts when this old (`SIGNAL_FLUSH_SECS`, default 10) ...
    pub signal_flush_secs: u64,
    /// ... or when this many items are pending (`SIGNAL_BATCH_MAX`, default 500).
    pub signal_batch_max: usize,
    /// Give up on a signal request after this long (`SIGNAL_TIMEOUT_MS`, default 3000).
    pub signal_timeout_ms: u64,
    /// At most this many signal requests in flight; more batches are dropped and counted
    /// (`SIGNAL_MAX_IN_FLIGHT`, default 4), so a black-holed trainer cannot pile up work.
    pub signal_max_in_flight: u32,
    /// At most one prewarm signal per region × profile × reason per window
    /// (`PREWARM_DEBOUNCE_SECS`, default 60).
    pub prewarm_debounce_secs: u64,
    /// A crossing of the alarm level is signalled only once the excess above the band has
    /// built up this much (`PREWARM_SIGNAL_EXCESS_SECS`, seconds at the alarm level's margin;
    /// default [`prewarm_shared::signal_rule::EXCESS_SECS`]): a noise spike does not persist,
    /// a crowd does.
    pub signal_excess_secs: u64,
    /// The share of a region's traffic one isolate sees (`EDGE_TRAFFIC_SHARE`, default 1.0):
    /// local counts are divided by it before comparing with the region's forecast. Above 1 for
    /// time-compressed replays and amplified load tests (the demo), where one isolate sees
    /// more than the region's real rate.
    pub edge_traffic_share: f32,
    /// A state cookie last seen longer ago is refused, and its cookie expires then
    /// (`STATE_MAX_AGE_DAYS`, default 30).
    pub state_max_age_secs: u64,
    /// Share of users whose anonymised state is sampled to the trainer (`STATE_SAMPLE_RATE`).
    pub state_sample_rate: f32,
    /// Test-only fault injection (`PREWARM_FAULT_INJECTION=1`): a request carrying
    /// `x-prewarm-fault: panic` panics inside prewarm code before its model is looked up;
    /// `panic-after-load` panics in the asynchronous handler after a model load from KV (the
    /// isolate's first request), where the panic traps in a microtask; `panic-after-forward`
    /// panics once the origin has answered (both paths).
    pub fault_injection: bool,
}

/// A configuration problem; the worker then passes requests through untouched.
#[derive(Debug, Clone)]
pub(crate) struct ConfigError(pub String);

/// A var or secret, if set and not blank.
pub(crate) fn text(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.trim().is_empty())
}

fn number<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> Result<T, ConfigError> {
    match text(env, name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError(format!("{name}={raw:?} is not a valid number"))),
    }
}

fn required(env: &Env, name: &str) -> Result<String, ConfigError> {
    text(env, name).ok_or_else(|| ConfigError(format!("{name} is not set (wrangler secret put {name})")))
}

/// The signal queue's binding name in wrangler.toml (`[[queues.producers]] binding`).
pub(crate) const SIGNAL_QUEUE_BINDING: &str = "SIGNAL_QUEUE";

/// Shortest accepted secret: a salt, cookie key or signal key shorter than this could be
/// guessed offline from what leaves the worker (hashes, signatures, cookies).
pub(crate) const MIN_SECRET_BYTES: usize = 16;

fn secret(env: &Env, name: &str) -> Result<Secret, ConfigError> {
    let value = required(env, name)?;
    if value.len() < MIN_SECRET_BYTES {
        return Err(ConfigError(format!(
            "{name} must be at least {MIN_SECRET_BYTES} bytes (wrangler secret put {name})"
        )));
    }
    Ok(Secret::from(value))
}

/// Signals carry demand and sampled states: over the Internet they go over TLS. Plain http is
/// accepted only for a trainer on this machine (`wrangler dev`, tests).
fn check_trainer_url(trainer: &Url) -> Result<(), ConfigError> {
    let host = trainer.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if trainer.scheme() == "https" || (trainer.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "TRAINER_URL={:?} must be https:// (http:// only for localhost or a loopback address)",
            trainer.as_str()
        )))
    }
}

impl EdgeConfig {
    pub(crate) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = |name: &str, raw: String| Url::parse(&raw).map_err(|e| ConfigError(format!("{name}: {e}")));
        let origin = url("ORIGIN_URL", required(env, "ORIGIN_URL")?)?;
        let trainer = text(env, "TRAINER_URL").map(|raw| url("TRAINER_URL", raw)).transpose()?;
        if let Some(trainer) = &trainer {
            check_trainer_url(trainer)?;
        }
        let signal_key = if trainer.is_some() { secret(env, "SIGNAL_KEY")? } else { Secret::from("") };
        let current =
            CookieKey::new(number(env, "COOKIE_KEY_ID", 1u8)?, secret(env, "COOKIE_SECRET")?.as_bytes().to_vec());
        let previous = match text(env, "COOKIE_SECRET_PREVIOUS") {
            Some(_) => {
                let id = number(env, "COOKIE_KEY_ID_PREVIOUS", 0u8)?;
                if id == current.id {
                    return Err(ConfigError(format!(
                        "COOKIE_KEY_ID_PREVIOUS equals COOKIE_KEY_ID ({id}): a rotation needs a new id"
                    )));
                }
                vec![CookieKey::new(id, secret(env, "COOKIE_SECRET_PREVIOUS")?.as_bytes().to_vec())]
            }
            None => Vec::new(),
        };
        let share: f32 = number(env, "EDGE_TRAFFIC_SHARE", 1.0)?;
        if !(share > 0.0 && share <= 1000.0) {
            return Err(ConfigError(format!("EDGE_TRAFFIC_SHARE={share} must be in (0, 1000]")));
        }
        Ok(Self {
            origin,
            trainer,
            signal_queue: env.queue(SIGNAL_QUEUE_BINDING).ok(),
            signal_key_id: prewarm_shared::signals::key_id(signal_key.as_bytes()),
            signal_key,
            salt: secret(env, "PREWARM_SALT")?,
            cookie_keys: CookieKeys { current, previous },
            model_loading: crate::model_cache::Settings {
                check_secs: number(env, "MODEL_CHECK_SECS", 30)?,
                cache_ttl: number(env, "MODEL_CACHE_TTL", 60)?,
                load_timeout: std::time::Duration::from_millis(number(env, "MODEL_LOAD_TIMEOUT_MS", 500)?),
            },
            signal_flush_secs: number(env, "SIGNAL_FLUSH_SECS", 10)?,
            signal_batch_max: number(env, "SIGNAL_BATCH_MAX", 500)?,
            signal_timeout_ms: number(env, "SIGNAL_TIMEOUT_MS", 3000)?,
            signal_max_in_flight: number(env, "SIGNAL_MAX_IN_FLIGHT", 4)?,
            prewarm_debounce_secs: number(env, "PREWARM_DEBOUNCE_SECS", 60)?,
            signal_excess_secs: number(env, "PREWARM_SIGNAL_EXCESS_SECS", prewarm_shared::signal_rule::EXCESS_SECS)?
                .min(3600),
            edge_traffic_share: share,
            state_max_age_secs: number(env, "STATE_MAX_AGE_DAYS", 30u64)?.clamp(1, 365) * 86_400,
            state_sample_rate: number(env, "STATE_SAMPLE_RATE", 0.05f32)?.clamp(0.0, 1.0),
            fault_injection: text(env, "PREWARM_FAULT_INJECTION").is_some_and(|v| v == "1"),
        })
    }
}
