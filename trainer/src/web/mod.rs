//! The HTTP API of `prewarm serve`. Handlers are thin: authenticate, parse, call a function
//! without HTTP in it, map the result. One error type turns failures into precise statuses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prewarm_shared::UnixSeconds;
use prewarm_shared::signals::{self, SIGNATURE_HEADER, SignalBatch, TIMESTAMP_HEADER, tokens_match};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::TrainerConfig;
use crate::ingest::{self, BodyError, IngestReport};
use crate::store::{Store, StoreError};

pub mod dashboard;
pub use crate::ingest::guard;

pub use crate::service::{AppState, PlanView, plan_now, system_clock};

/// Every way a request can fail, with its status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadSignature(#[from] signals::SignatureError),
    #[error("this endpoint is disabled: {0} is not configured")]
    NotConfigured(&'static str),
    #[error("unsupported content encoding {0:?}: send identity or gzip")]
    UnsupportedEncoding(String),
    #[error("unsupported content type {0:?}: send {1}")]
    UnsupportedType(String, &'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("{0}")]
    BadSignals(#[from] signals::SignalError),
    #[error("this signed batch was already received (replay)")]
    Replayed,
    #[error("too many requests from this source: retry in {0:.1} s")]
    RateLimited(f64),
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::service::ServiceError> for AppError {
    fn from(e: crate::service::ServiceError) -> Self {
        match e {
            crate::service::ServiceError::Store(e) => AppError::Store(e),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::Unauthorized | AppError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            AppError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::UnsupportedEncoding(_) | AppError::UnsupportedType(..) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Body(BodyError::BadGzip(_)) | AppError::BadSignals(_) => StatusCode::BAD_REQUEST,
            AppError::Replayed => StatusCode::CONFLICT,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Store(StoreError::Full | StoreError::ReadOnly) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Store(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, axum::Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        if let AppError::RateLimited(wait) = self
            && let Ok(value) = header::HeaderValue::from_str(&format!("{}", wait.ceil().max(1.0)))
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn authorize(headers: &HeaderMap, expected: Option<&String>, name: &'static str) -> Result<(), AppError> {
    let expected = expected.ok_or(AppError::NotConfigured(name))?;
    match bearer(headers) {
        Some(token) if tokens_match(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(AppError::Unauthorized),
    }
}

fn decoded_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, AppError> {
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("identity") => Ok(body),
        Some("gzip") => Ok(ingest::gunzip(&body, limit)?.into()),
        Some(other) => Err(AppError::UnsupportedEncoding(other.to_owned())),
    }
}

/// A declared content type must be one of `allowed` (parameters such as charset aside); none
/// declared is accepted, as curl and many log shippers send none.
fn check_content_type(headers: &HeaderMap, allowed: &[&str], expected: &'static str) -> Result<(), AppError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if allowed.contains(&essence.as_str()) { Ok(()) } else { Err(AppError::UnsupportedType(text.to_owned(), expected)) }
}

/// Runs store work off the async runtime.
async fn with_store<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AppError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().map_err(|_| AppError::Internal("store lock poisoned".into()))?;
        work(&mut guard).map_err(AppError::from)
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?
}

/// `POST /v1/events`: NDJSON (optionally gzip). Valid lines are committed before the reply.
async fn post_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, AppError> {
    authorize(&headers, state.config.ingest_token.as_ref(), "ingest_token (PREWARM_INGEST_TOKEN)")?;
    check_content_type(
        &headers,
        &["application/x-ndjson", "application/jsonl", "application/json", "text/plain"],
        "application/x-ndjson",
    )?;
    let body = decoded_body(&headers, body, state.config.max_body_bytes)?;
    let (events, report): (_, IngestReport) = ingest::parse_ndjson(&body, &state.rules);
    if !events.is_empty() {
        with_store(&state, move |store| store.insert_events(&events)).await?;
    }
    state.monitor.events_accepted.fetch_add(report.accepted as u64, std::sync::atomic::Ordering::Relaxed);
    state.monitor.events_rejected.fetch_add(report.rejected as u64, std::sync::atomic::Ordering::Relaxed);
    let status = if report.accepted == 0 && report.rejected > 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(report)).into_response())
}

/// `POST /v1/signals`: the edge's batches, with its bearer token and HMAC signature; limited
/// per source address (before anything else, so unauthenticated floods are limited too) and
/// each signed batch accepted once.
async fn post_signals(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let source =
        extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
    state.signal_rate.check(source, std::time::Instant::now()).map_err(AppError::RateLimited)?;
    let token = state.config.signal_token.as_ref();
    authorize(&headers, token, "signal_token (PREWARM_SIGNAL_TOKEN)")?;
    check_content_type(&headers, &["application/json"], "application/json")?;
    let header_text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let now = (state.clock)();
    signals::verify(
        token.map_or(&[][..], |t| t.as_bytes()),
        header_text(TIMESTAMP_HEADER),
        header_text(SIGNATURE_HEADER),
        &body,
        now,
    )?;
    let (timestamp, signature) = (header_text(TIMESTAMP_HEADER), header_text(SIGNATURE_HEADER));
    let timestamp = timestamp.and_then(|t| t.trim().parse().ok()).unwrap_or(now.0);
    if !state.replays.first_sight(signature.unwrap_or(""), timestamp, now.0, 2 * signals::MAX_SIGNATURE_SKEW_SECS) {
        return Err(AppError::Replayed);
    }
    let batch = SignalBatch::from_json(&body)?;
    let counts = json!({
        "demand": batch.demand.len(),
        "prewarm": batch.prewarm.len(),
        "states": batch.states.len(),
    });
    with_store(&state, move |store| store.insert_signals(&batch, now.0)).await?;
    state.monitor.signal_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, axum::Json(counts)).into_response())
}

async fn healthz(State(state): State<AppState>) -> Result<Response, AppError> {
    let events = with_store(&state, |store| store.count_events()).await?;
    Ok(axum::Json(json!({ "ok": true, "events": events })).into_response())
}

/// `GET /v1/status`: what is stored, what the edge has signalled, firing alerts, and the
/// published forecasts' skill (with the profiles gated to seasonal naive).
async fn status(State(state): State<AppState>) -> Result<Response, AppError> {
    let config = state.config.clone();
    let (events, edge, skill, quality) = with_store(&state, move |store| {
        let pointer = crate::publish::DirPublisher::new(config.models_dir()).current().ok().flatten().map(|(p, _)| p);
        let (skill, quality) = (skill_of(&config, pointer.as_ref()), quality_of(&config, pointer.as_ref()));
        Ok((store.count_events()?, store.edge_summary()?, skill, quality))
    })
    .await?;
    let alerts = state.monitor.firing();
    let quality: serde_json::Map<String, serde_json::Value> =
        quality.into_iter().map(|(r, q)| (r, serde_json::to_value(q).unwrap_or_default())).collect();
    Ok(axum::Json(json!({
        "events": events,
        "edge": edge,
        "alerts": alerts,
        "forecast_skill": skill,
        "profile_quality": quality,
    }))
    .into_response())
}

/// Blocking: the published version's profile quality per region.
fn quality_of(
    config: &TrainerConfig,
    pointer: Option<&prewarm_shared::ModelPointer>,
) -> Vec<(String, crate::profile::quality::RegionQuality)> {
    let report = pointer.and_then(|p| crate::report::TrainingReport::read(&config.models_dir(), p.version));
    report.map(|r| r.regions.into_iter().map(|(name, r)| (name, r.quality)).collect()).unwrap_or_default()
}

/// Blocking: the published version's skill rows.
fn skill_of(config: &TrainerConfig, pointer: Option<&prewarm_shared::ModelPointer>) -> Vec<crate::monitor::SkillRow> {
    let report = pointer.and_then(|p| crate::report::TrainingReport::read(&config.models_dir(), p.version));
    crate::monitor::skill_rows(report.as_ref())
}

/// `GET /v1/plan`: the plan per region for the published model and recent prewarm signals.
async fn get_plan(State(state): State<AppState>) -> Result<Response, AppError> {
    let now = (state.clock)();
    let view = tokio::task::spawn_blocking(move || plan_now(&state, now))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let regions = view.regions_json();
    Ok(axum::Json(json!({ "regions": regions, "prewarm_signals_in_effect": view.signals_in_effect })).into_response())
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let now = (state.clock)();
    let text = tokio::task::spawn_blocking(move || -> Result<String, AppError> {
        let view = plan_now(&state, now)?;
        let minute = (now.0 / 60).saturating_sub(1);
        let (events, edge, counted) = {
            let store = state.store.lock().map_err(|_| AppError::Internal("store lock poisoned".into()))?;
            (store.count_events()?, store.edge_summary()?, store.demand_in_minute(minute)?)
        };
        let demand_now = view
            .models
            .iter()
            .map(|m| {
                let slot = m.forecast.slot(UnixSeconds(minute * 60));
                let (mut expected, mut upper) = (0.0, 0.0);
                for s in &m.forecast.series {
                    if let Some(i) = slot {
                        expected += f64::from(s.expected.get(i).copied().unwrap_or(0.0));
                        upper += f64::from(s.upper.get(i).copied().unwrap_or(0.0));
                    }
                }
                let per_step = f64::from(m.forecast.step_secs) / 60.0;
                let observed = counted.iter().find(|(r, _)| *r == m.region).map_or(0.0, |(_, n)| *n as f64 * per_step);
                (m.region.clone(), expected, upper, observed)
            })
            .collect();
        let gauges = crate::monitor::Gauges {
            events_stored: events,
            demand_requests: edge.demand_requests,
            prewarm_signals: edge.prewarm_signals,
            edge_model_version: edge.edge_model_version,
            published_version: view.pointer.as_ref().map(|p| p.version.0),
            publish_age_secs: view.pointer.as_ref().map(|p| now.0.saturating_sub(p.created_at.0)),
            planned_units: view
                .plans
                .iter()
                .filter_map(|(r, _)| Some((r.clone(), view.desired(r, None, view.at)?)))
                .collect(),
            demand_now,
            forecast_skill: skill_of(&state.config, view.pointer.as_ref()),
            profile_quality: quality_of(&state.config, view.pointer.as_ref()),
            signals_in_effect: view.signals_in_effect,
        };
        Ok(crate::monitor::render(&state.monitor, &gauges))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /`: the dashboard.
async fn dashboard(State(state): State<AppState>) -> Result<Response, AppError> {
    let now = (state.clock)();
    let html = tokio::task::spawn_blocking(move || -> Result<String, AppError> {
        let view = plan_now(&state, now)?;
        let versions = crate::publish::DirPublisher::new(state.config.models_dir())
            .versions()
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let (events_stored, edge, observed) = {
            let store = state.store.lock().map_err(|_| AppError::Internal("store lock poisoned".into()))?;
            let observed = view
                .models
                .iter()
                .map(|m| Ok((m.region.clone(), store.demand_by_minute(&m.region, m.forecast.start.0 / 60)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            (store.count_events()?, store.edge_summary()?, observed)
        };
        let quality = quality_of(&state.config, view.pointer.as_ref());
        Ok(dashboard::render(&dashboard::DashboardData {
            now: now.0,
            events_stored,
            published_version: view.pointer.as_ref().map(|p| p.version.0),
            published_at: view.pointer.as_ref().map(|p| p.created_at.0),
            versions,
            models: view.models,
            plans: view.plans,
            observed,
            alerts: state.monitor.firing(),
            edge_model_version: edge.edge_model_version,
            quality,
        }))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(axum::response::Html(html).into_response())
}

/// Decodes `application/x-www-form-urlencoded` (the dashboard's form).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = text.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `POST /v1/rollback`: points `current` back at a kept version (`version` in the form or
/// the query), with the admin token as bearer or as the form's `token`; pushes the entries to
/// the configured targets (`publish::Targets`). The form gets a redirect back to the page.
async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
    body: Bytes,
) -> Result<Response, AppError> {
    let expected =
        state.config.admin_token.as_ref().ok_or(AppError::NotConfigured("admin_token (PREWARM_ADMIN_TOKEN)"))?;
    let presented = bearer(&headers).map(str::to_owned).or_else(|| form_field(&body, "token"));
    if !presented.is_some_and(|t| tokens_match(t.as_bytes(), expected.as_bytes())) {
        return Err(AppError::Unauthorized);
    }
    let version = form_field(&body, "version")
        .or_else(|| form_field(query.0.unwrap_or_default().as_bytes(), "version"))
        .map(|v| v.trim().parse::<u32>().map_err(|_| AppError::BadRequest(format!("version {v:?} is not a number"))))
        .transpose()?;
    let config = state.config.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let entries = crate::publish::DirPublisher::new(config.models_dir())
            .rollback(version)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        crate::publish::Targets::from_config(config.kv.as_ref(), config.object_store.as_ref())
            .and_then(|targets| targets.publish(&entries))
            .map_err(|e| AppError::Internal(format!("rolled back locally; pushing the rollback: {e}")))?;
        Ok::<_, AppError>(entries)
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    let pointer = entries.last().and_then(|e| prewarm_shared::ModelPointer::from_artifact(&e.value).ok());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response());
    }
    Ok(axum::Json(json!({ "current_version": pointer.map(|p| p.version.0) })).into_response())
}

/// The router with its limits: body size (before decompression; gzip is bounded separately)
/// and a request timeout.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/signals", post(post_signals))
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/v1/plan", get(get_plan))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard))
        .route("/v1/rollback", post(rollback))
        .fallback(|uri: axum::http::Uri| async move { AppError::NotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .with_state(state)
}
