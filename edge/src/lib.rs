//! The prewarm edge worker. Per request: identify the visitor, find the region's model, fold
//! the request into the visitor's behaviour state, assign a profile, forward to the origin with
//! the profile tags, fold the response in, count the demand and signal the trainer.
//!
//! prewarm must never fail or slow a user's request: without configuration or a model the
//! request passes through tagged `default`; model loads and refreshes are cached per isolate
//! and refreshed in the background; signals are sent after the response, with timeouts.

mod config;
mod forward;
mod geo;
mod identify;
mod model_cache;
mod signals;
mod status;

use std::cell::RefCell;
use std::rc::Rc;

use prewarm_shared::assign::assign_profile;
use prewarm_shared::{ClassificationRules, Device, Observation, UnixSeconds};
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

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let facts = forward::RequestFacts::read(&req);
    let path_and_query = forward::path_and_query(&facts.url).ok_or("the request URL is not absolute")?;
    let path = forward::path_of(path_and_query);
    let config = config(&env);
    status::set_config_error(config.as_ref().err().map(|e| e.0.clone()));
    if path.starts_with(status::PREFIX) {
        // Guarded by `STATUS_TOKEN` when set; answered even when the rest of the config is broken.
        let req = Request::from(req);
        return status::handle(&req, path, config::text(&env, "STATUS_TOKEN").as_deref()).map(Into::into);
    }
    let Ok(config) = config else {
        return pass_through(&req, facts.cookie.as_deref(), &env, path_and_query).await;
    };
    status::count_request();
    let now = now();

    // identify
    let mut visitor = identify::identify(facts.cookie.as_deref(), &config.cookie_keys, now);
    if visitor.rejected_state.is_some() {
        status::count_state_rejected();
    }
    if config.fault_injection && facts.fault.as_deref() == Some("panic") {
        panic!("fault injection: x-prewarm-fault: panic");
    }

    // region and model
    let origin = geo::RequestOrigin::for_visitor(&req, &mut visitor.state, now);
    let kv = || env.kv(model_cache::KV_BINDING).ok();
    let model = model_cache::model_for(kv, config.model_cache_ttl, config.model_check_secs, &origin, now, |refresh| {
        ctx.wait_until(refresh)
    })
    .await;
    if model.is_none() {
        status::count_without_model();
    }

    // update the state with what is known before forwarding, then assign
    let default_rules = DEFAULT_RULES.with(Rc::clone);
    let rules = model.as_ref().map_or(&*default_rules, |m| &m.rules);
    let accept = facts.accept.as_deref();
    let (local_hour, local_weekday) = origin.local_time(now);
    let class = rules.classify(path, accept, None);
    visitor.state.observe_request(&Observation {
        at: now,
        local_hour,
        local_weekday,
        device: device_of(&facts.user_agent),
        class,
        rtt_ms: origin.rtt_ms,
        response_bytes: 0,
        response_ms: 0,
    });
    let tags = match &model {
        Some(model) => {
            let profile = assign_profile(model, &visitor.state, &visitor.state.features());
            visitor.state.profile = Some(profile);
            visitor.state.model_version = model.model_version;
            Tags {
                profile: profile.0.to_string(),
                region: model.region.clone(),
                model: model.model_version.0.to_string(),
            }
        }
        None => Tags { profile: DEFAULT_TAG.into(), region: DEFAULT_TAG.into(), model: "none".into() },
    };

    // forward
    let started = worker::js_sys::Date::now();
    let target = forward::target(&config.origin, path_and_query);
    let response = match forward::forward(&req, facts.cookie.as_deref(), &target, Some(&tags)).await {
        Ok(response) => response,
        Err(e) => {
            status::count_origin_error();
            return Response::error(format!("origin unreachable: {e}"), 502).map(Into::into);
        }
    };
    let response_ms = (worker::js_sys::Date::now() - started).max(0.0) as u32;

    // fold the response in, count, signal
    let (content_type, bytes) = forward::response_head(&response);
    let content = rules.classify(path, accept, content_type.as_deref()).content;
    // Without a length the rate is unknown, not zero.
    visitor.state.observe_response(content, bytes, if bytes > 0 { response_ms } else { 0 });
    if let (Some(model), Some(profile)) = (&model, visitor.state.profile) {
        let features = visitor.state.features();
        let served = signals::Served {
            model,
            profile,
            user: &|| visitor.user(&config.salt),
            requests_by_user: visitor.state.requests,
            features: &features,
            bytes,
            now,
        };
        if let Some(batch) = signals::record(&config, &served) {
            ctx.wait_until(signals::send(config.clone(), batch));
        }
    }
    forward::with_cookies(&response, &visitor.set_cookies(&config.cookie_keys))
}

/// Forwards untouched when prewarm itself cannot run (no or bad configuration).
async fn pass_through(
    req: &web_sys::Request,
    cookie: Option<&str>,
    env: &Env,
    path_and_query: &str,
) -> Result<web_sys::Response> {
    let origin = env.var("ORIGIN_URL").map(|v| v.to_string()).ok().and_then(|o| Url::parse(&o).ok());
    match origin {
        Some(origin) => forward::forward(req, cookie, &forward::target(&origin, path_and_query), None).await,
        None => Response::error("prewarm: ORIGIN_URL is not configured", 502).map(Into::into),
    }
}
