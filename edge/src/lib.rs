//! The prewarm edge worker. Per request: identify the visitor, find the region's model, fold
//! the request into the visitor's behaviour state, assign a profile, forward to the origin with
//! the profile tags, fold the response in, count the demand and signal the trainer.
//!
//! prewarm must never fail or slow a user's request: without configuration or a model the
//! request passes through tagged `default`; model loads and refreshes are cached per isolate
//! and refreshed in the background; signals are sent after the response, with timeouts.

#![warn(missing_docs, unreachable_pub)]

mod config;
mod deliver;
mod forward;
mod geo;
mod host;
mod identify;
mod model_cache;
mod signal_queue;
mod signals;
mod status;

use std::cell::RefCell;
use std::rc::Rc;

use prewarm_shared::assign::assign_profile;
use prewarm_shared::{ClassificationRules, Device, Observation, RegionModel, UnixSeconds};
use worker::{Context, Env, Request, Response, Result, Url, event, web_sys};

use crate::config::EdgeConfig;
use crate::forward::Tags;

/// The tag a request gets when no model applies.
const DEFAULT_TAG: &str = "default";

thread_local! {
    static CONFIG: RefCell<Option<Rc<EdgeConfig>>> = const { RefCell::new(None) };
    /// Rules for requests served without a model; built once, not per request.
    static DEFAULT_RULES: Rc<ClassificationRules> = Rc::new(ClassificationRules::default());
    static DEVICES: RefCell<std::collections::HashMap<String, Device>> = RefCell::new(std::collections::HashMap::new());
}

/// User-Agent → device, remembered per isolate: classifying scans the agent for dozens of
/// markers, and an isolate sees few distinct agents many times.
fn device_of(user_agent: &str) -> Device {
    const MAX_AGENTS: usize = 1024;
    // Longer agents are classified every time: the cache holds at most 1024 × 256 bytes of
    // keys, whatever clients send.
    const MAX_CACHED_LEN: usize = 256;
    if user_agent.len() > MAX_CACHED_LEN {
        return Device::from_user_agent(user_agent);
    }
    DEVICES.with(|cache| {
        if let Some(device) = cache.borrow().get(user_agent) {
            return *device;
        }
        let device = Device::from_user_agent(user_agent);
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_AGENTS {
            cache.clear();
        }
        cache.insert(user_agent.to_owned(), device);
        device
    })
}

fn now() -> UnixSeconds {
    UnixSeconds((worker::js_sys::Date::now() / 1000.0) as u64)
}

/// The isolate's configuration, parsed on first use.
fn config(env: &Env) -> std::result::Result<Rc<EdgeConfig>, config::ConfigError> {
    if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(config);
    }
    let config = Rc::new(EdgeConfig::from_env(env)?);
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    Ok(config)
}

/// A request identified and located, before its model is known.
struct Begun {
    facts: host::RequestFacts,
    config: Rc<EdgeConfig>,
    visitor: identify::Visitor,
    origin: geo::RequestOrigin,
    now: UnixSeconds,
}

/// What the first look at a request decided.
enum Start {
    /// `/__prewarm/...`: answered by the status module.
    Status,
    /// No usable configuration: forwarded untouched.
    PassThrough(Box<host::RequestFacts>),
    Profile(Box<Begun>),
}

/// Reads the request, the configuration and the visitor (identity, state, location).
fn begin(req: &web_sys::Request, env: &Env) -> Result<Start> {
    let facts = host::RequestFacts::read(req);
    if !facts.is_absolute() {
        return Err("the request URL is not absolute".into());
    }
    let config = config(env);
    status::set_config_error(config.as_ref().err().map(|e| e.0.clone()));
    if facts.path().starts_with(status::PREFIX) {
        return Ok(Start::Status);
    }
    let Ok(config) = config else { return Ok(Start::PassThrough(Box::new(facts))) };
    let now = now();
    let mut visitor = identify::identify(facts.cookie.as_deref(), &config.cookie_keys, now, config.state_max_age_secs);
    if config.fault_injection && facts.fault.as_deref() == Some("panic") {
        panic!("fault injection: x-prewarm-fault: panic");
    }
    let origin = geo::RequestOrigin::for_visitor(req, &mut visitor.state, now);
    Ok(Start::Profile(Box::new(Begun { facts, config, visitor, origin, now })))
}

/// Everything decided before forwarding, kept until the origin answers.
struct Prepared {
    begun: Begun,
    model: Option<Rc<RegionModel>>,
    tags: Tags,
}

/// Folds what is known before forwarding into the state and assigns the profile.
fn assign(mut begun: Begun, model: Option<Rc<RegionModel>>) -> Prepared {
    status::count_request();
    if begun.visitor.rejected_state.is_some() {
        status::count_state_rejected();
    }
    if model.is_none() {
        status::count_without_model();
    }
    let default_rules = DEFAULT_RULES.with(Rc::clone);
    let rules = model.as_ref().map_or(&*default_rules, |m| &m.rules);
    let path = begun.facts.path();
    let (local_hour, local_weekday) = begun.origin.local_time(begun.now);
    let state = &mut begun.visitor.state;
    state.observe_request(&Observation {
        at: begun.now,
        local_hour,
        local_weekday,
        device: device_of(&begun.facts.user_agent),
        class: rules.classify(path, begun.facts.accept.as_deref(), None),
        rtt_ms: begun.origin.rtt_ms,
        response_bytes: 0,
        response_ms: 0,
    });
    let tags = match &model {
        Some(model) => {
            let profile = assign_profile(model, state, &state.features());
            state.profile = Some(profile);
            state.model_version = model.model_version;
            Tags {
                profile: profile.0.to_string(),
                region: model.region.clone(),
                model: model.model_version.0.to_string(),
            }
        }
        None => Tags { profile: DEFAULT_TAG.into(), region: DEFAULT_TAG.into(), model: "none".into() },
    };
    Prepared { begun, model, tags }
}

/// Folds the origin's answer in, counts the request (signalling through `ctx.wait_until` when
/// a batch is due) and returns the `Set-Cookie` values.
fn finish(prepared: Prepared, content_type: Option<&str>, bytes: u64, response_ms: u32, ctx: &Context) -> Vec<String> {
    let Prepared { mut begun, model, .. } = prepared;
    if begun.config.fault_injection && begun.facts.fault.as_deref() == Some("panic-after-forward") {
        panic!("fault injection: x-prewarm-fault: panic-after-forward");
    }
    let default_rules = DEFAULT_RULES.with(Rc::clone);
    let rules = model.as_ref().map_or(&*default_rules, |m| &m.rules);
    let path = begun.facts.path();
    let content = rules.classify(path, begun.facts.accept.as_deref(), content_type).content;
    let (visitor, config) = (&mut begun.visitor, &begun.config);
    // Without a length the rate is unknown, not zero.
    visitor.state.observe_response(content, bytes, if bytes > 0 { response_ms } else { 0 });
    if let (Some(model), Some(profile)) = (&model, visitor.state.profile) {
        let features = visitor.state.features();
        let served = signals::Served {
            model,
            profile,
            user: &|| visitor.user(config.salt.as_bytes()),
            requests_by_user: visitor.state.requests,
            features: &features,
            bytes,
            now: begun.now,
        };
        if let Some(batch) = signals::record(config, &served) {
            ctx.wait_until(signals::send(config.clone(), batch));
        }
    }
    visitor.set_cookies(&config.cookie_keys, config.state_max_age_secs)
}

/// The whole request, asynchronously: the path `edge/worker.mjs` takes when the synchronous one
/// cannot serve (status endpoints, no configuration, a model still to be loaded from KV).
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let begun = match begin(&req, &env)? {
        Start::Status => {
            // Guarded by `STATUS_TOKEN` when set; answered even when the rest of the config is broken.
            let req = Request::from(req);
            let path = req.path();
            return status::handle(&req, &path, config::text(&env, "STATUS_TOKEN").as_deref()).map(Into::into);
        }
        Start::PassThrough(facts) => return pass_through(&req, &facts, &env).await,
        Start::Profile(begun) => *begun,
    };
    let kv = || env.kv(model_cache::KV_BINDING).ok();
    let spawn = |load| ctx.wait_until(load);
    let model = model_cache::model_for(kv, &begun.config.model_loading, &begun.origin, begun.now, &spawn).await;
    if begun.config.fault_injection && begun.facts.fault.as_deref() == Some("panic-after-load") {
        panic!("fault injection: x-prewarm-fault: panic-after-load");
    }
    let prepared = assign(begun, model);
    let started = worker::js_sys::Date::now();
    let begun = &prepared.begun;
    let target = forward::target(&begun.config.origin, begun.facts.path_and_query());
    let response = match forward::forward(&req, &target, Some(&prepared.tags)).await {
        Ok(response) => response,
        Err(e) => {
            status::count_origin_error();
            return Response::error(format!("origin unreachable: {e}"), 502).map(Into::into);
        }
    };
    let response_ms = (worker::js_sys::Date::now() - started).max(0.0) as u32;
    let head = host::ResponseFacts::read(&response);
    let cookies = finish(prepared, head.content_type.as_deref(), head.length, response_ms, &ctx);
    forward::with_cookies(&response, &cookies)
}

/// The signal queue's consumer (`[[queues.consumers]]` in wrangler.toml): delivers queued
/// signal batches to the trainer. Without a usable configuration the batches are retried.
#[event(queue)]
async fn queue(batch: worker::MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    match config(&env) {
        Ok(config) => signal_queue::deliver(batch, &config).await,
        Err(_) => batch.retry_all(),
    }
    Ok(())
}

/// Requests between `prewarm_prepare` and `prewarm_complete`, by token. Bounded: a request whose
/// origin never answers is forgotten after this many newer ones.
const MAX_PENDING: usize = 4096;

thread_local! {
    static PENDING: RefCell<(u32, std::collections::HashMap<u32, Prepared>)> =
        RefCell::new((0, std::collections::HashMap::new()));
}

/// The synchronous path, for `edge/worker.mjs`: everything before forwarding, without a Rust
/// future (futures cost more than the work here). Returns what JavaScript needs to forward
/// (a [`host::Plan`]), or `None` when the
/// asynchronous `fetch` must serve the request.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn prewarm_prepare(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> Option<String> {
    let ctx = Context::new(ctx);
    let Ok(Start::Profile(begun)) = begin(&req, &env) else { return None };
    let kv = || env.kv(model_cache::KV_BINDING).ok();
    let spawn = |load| ctx.wait_until(load);
    let model = model_cache::model_now(kv, &begun.config.model_loading, &begun.origin, begun.now, &spawn)?;
    let prepared = assign(*begun, model);
    let begun = &prepared.begun;
    let target = forward::target(&begun.config.origin, begun.facts.path_and_query());
    PENDING.with(|p| {
        let (next, pending) = &mut *p.borrow_mut();
        *next = next.wrapping_add(1);
        if pending.len() >= MAX_PENDING {
            pending.clear();
        }
        let token = *next;
        let tags = &prepared.tags;
        let plan =
            host::Plan { token, target: &target, profile: &tags.profile, region: &tags.region, model: &tags.model };
        let encoded = plan.encode();
        pending.insert(token, prepared);
        Some(encoded)
    })
}

/// The synchronous path's second half: the origin answered `response` after `response_ms`;
/// returns the `Set-Cookie` values, "\n"-separated (none for an unknown token).
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn prewarm_complete(
    token: u32,
    response: web_sys::Response,
    response_ms: u32,
    ctx: worker::worker_sys::Context,
) -> String {
    let Some(prepared) = PENDING.with(|p| p.borrow_mut().1.remove(&token)) else { return String::new() };
    let head = host::ResponseFacts::read(&response);
    host::encode_cookies(&finish(prepared, head.content_type.as_deref(), head.length, response_ms, &Context::new(ctx)))
}

/// The origin could not be reached for a prepared request.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn prewarm_abandon(token: u32) {
    PENDING.with(|p| p.borrow_mut().1.remove(&token));
    status::count_origin_error();
}

/// Forwards untouched when prewarm itself cannot run (no or bad configuration).
async fn pass_through(req: &web_sys::Request, facts: &host::RequestFacts, env: &Env) -> Result<web_sys::Response> {
    let origin = env.var("ORIGIN_URL").map(|v| v.to_string()).ok().and_then(|o| Url::parse(&o).ok());
    match origin {
        Some(origin) => forward::forward(req, &forward::target(&origin, facts.path_and_query()), None).await,
        None => Response::error("prewarm: ORIGIN_URL is not configured", 502).map(Into::into),
    }
}
