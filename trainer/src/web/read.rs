//! The read endpoints: health, status, the plan, Prometheus metrics and the dashboard. Store
//! reads go through the read connections ([`crate::store::Readers`]), never the writer; all but
//! `/healthz` need the read token when one is configured.

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prewarm_shared::UnixSeconds;

use super::api::{AnyRoute, Health, Plan, ReadRefusals, Status};
use super::{AppError, AppState, auth, blocking, plan_now};
use crate::config::TrainerConfig;
use crate::store::StoreError;

/// `GET /healthz`: up, and the store answers (a total, no scan). Open to probes.
#[utoipa::path(get, path = "/healthz", tag = "read", responses(
        (status = 200, description = "Up; the store answers", body = Health),
        AnyRoute))]
pub(super) async fn healthz(State(state): State<AppState>) -> Result<Response, AppError> {
    let events = blocking(move || Ok(state.readers.read(|store| store.count_events())?)).await?;
    Ok(axum::Json(Health { ok: true, events }).into_response())
}

/// `GET /v1/status`: what is stored, what the edge has signalled, firing alerts, and the
/// published forecasts' skill and profile quality.
#[utoipa::path(get, path = "/v1/status", tag = "read", security(("read_token" = [])), responses(
        (status = 200, description = "What is stored and signalled, alerts, skill and quality", body = Status),
        ReadRefusals,
        AnyRoute))]
pub(super) async fn status(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    auth::require_read(request.headers(), &state.config)?;
    let config = state.config.clone();
    let readers = state.readers.clone();
    let counter = state.clone();
    let (events, edge, skill, quality) = blocking(move || {
        let pointer = crate::publish::DirPublisher::new(config.models_dir()).current().ok().flatten().map(|(p, _)| p);
        let (skill, quality) = (skill_of(&config, pointer.as_ref()), quality_of(&config, pointer.as_ref()));
        let (events, edge) = readers.read(|store| Ok((store.count_events()?, store.edge_summary()?)))?;
        Ok((counter.events_stored(events)?, edge, skill, quality))
    })
    .await?;
    let alerts = state.monitor.firing();
    let profile_quality = quality.into_iter().collect();
    Ok(axum::Json(Status { events, edge, alerts, forecast_skill: skill, profile_quality }).into_response())
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
#[utoipa::path(get, path = "/v1/plan", tag = "read", security(("read_token" = [])), responses(
        (status = 200, description = "The plan per region (empty before a model is published)", body = Plan),
        ReadRefusals,
        AnyRoute))]
pub(super) async fn get_plan(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    auth::require_read(request.headers(), &state.config)?;
    let now = (state.clock)();
    let view = blocking(move || Ok(plan_now(&state, now)?)).await?;
    Ok(axum::Json(Plan { regions: view.regions(), prewarm_signals_in_effect: view.signals_in_effect }).into_response())
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "read", security(("read_token" = [])), responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
        ReadRefusals,
        AnyRoute))]
pub(super) async fn metrics(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    auth::require_read(request.headers(), &state.config)?;
    let now = (state.clock)();
    let text = blocking(move || {
        let view = plan_now(&state, now)?;
        let minute = (now.0 / 60).saturating_sub(1);
        let (events, edge, counted) = state
            .readers
            .read(|store| Ok((store.count_events()?, store.edge_summary()?, store.demand_in_minute(minute)?)))?;
        let events = state.events_stored(events)?;
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
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /`: the dashboard.
#[utoipa::path(get, path = "/", tag = "read", security(("read_token" = [])), responses(
        (status = 200, description = "The dashboard page", body = String, content_type = "text/html"),
        ReadRefusals,
        AnyRoute))]
pub(super) async fn dashboard(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    auth::require_read(request.headers(), &state.config)?;
    let now = (state.clock)();
    let html = blocking(move || {
        let view = plan_now(&state, now)?;
        let versions = crate::publish::DirPublisher::new(state.config.models_dir())
            .versions()
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let (events_stored, edge, observed) = state.readers.read(|store| {
            let observed = view
                .models
                .iter()
                .map(|m| Ok((m.region.clone(), store.demand_by_minute(&m.region, m.forecast.start.0 / 60)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((store.count_events()?, store.edge_summary()?, observed))
        })?;
        let events_stored = state.events_stored(events_stored)?;
        let quality = quality_of(&state.config, view.pointer.as_ref());
        let publishing = crate::publish::DirPublisher::new(state.config.models_dir()).paused().ok().flatten();
        Ok(super::dashboard::render(&super::dashboard::DashboardData {
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
            publishing_paused: publishing,
        }))
    })
    .await?;
    Ok(axum::response::Html(html).into_response())
}
