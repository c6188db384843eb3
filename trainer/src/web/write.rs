//! The write endpoints: events, the edge's signals, rollback. Each authenticates (and, for
//! signals and rollback, rate-limits) from the headers before it reads the body.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prewarm_shared::signals::{self, SIGNATURE_HEADER, SignalBatch, TIMESTAMP_HEADER};
use serde_json::json;

use super::{AppError, AppState, ROLLBACK_BODY_LIMIT, SIGNAL_BODY_LIMIT, auth, read_body, with_store};
use crate::ingest::{self, IngestReport};
use crate::store::SignalReceipt;

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

/// The peer address (with `into_make_service_with_connect_info` or [`super::serve`]).
fn peer(request: &Request) -> Option<SocketAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)
}

/// `POST /v1/events`: NDJSON (optionally gzip). Valid lines are committed before the reply.
pub(super) async fn post_events(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    auth::require(headers, state.config.ingest_token.as_ref(), "ingest_token (PREWARM_INGEST_TOKEN)")?;
    check_content_type(
        headers,
        &["application/x-ndjson", "application/jsonl", "application/json", "text/plain"],
        "application/x-ndjson",
    )?;
    let limit = state.config.max_body_bytes;
    let body = decoded_body(headers, read_body(headers, body, limit).await?, limit)?;
    let (events, report): (_, IngestReport) = ingest::parse_ndjson(&body, &state.rules);
    if !events.is_empty() {
        with_store(&state, move |store| store.insert_events(&events)).await?;
    }
    state.monitor.events_accepted.fetch_add(report.accepted as u64, std::sync::atomic::Ordering::Relaxed);
    state.monitor.events_rejected.fetch_add(report.rejected as u64, std::sync::atomic::Ordering::Relaxed);
    let status = if report.accepted == 0 && report.rejected > 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(report)).into_response())
}

/// `POST /v1/signals`: the edge's batches. Limited per source first (so unauthenticated floods
/// are limited too); then the key id and the timestamp from the headers; then the body, whose
/// HMAC signature must verify under that key. A batch is stored once: its signature is
/// remembered in the store, across restarts, for as long as its timestamp could verify.
pub(super) async fn post_signals(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let source = auth::client_key(peer(&request), request.headers(), &state.trusted_proxies);
    state.signal_rate.check(source, std::time::Instant::now()).map_err(AppError::RateLimited)?;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let key = auth::signal_key(headers, &state.config)?;
    check_content_type(headers, &["application/json"], "application/json")?;
    let header_text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let now = (state.clock)();
    let signed_at = signals::fresh_timestamp(header_text(TIMESTAMP_HEADER), now)?;
    let body = read_body(headers, body, SIGNAL_BODY_LIMIT).await?;
    let signature = signals::verify_signature(key.as_bytes(), signed_at, header_text(SIGNATURE_HEADER), &body)?;
    let receipt = SignalReceipt { signature, signed_at: signed_at.0 };
    let batch = SignalBatch::from_json(&body)?;
    let counts = json!({
        "demand": batch.demand.len(),
        "prewarm": batch.prewarm.len(),
        "states": batch.states.len(),
    });
    let fresh = with_store(&state, move |store| store.insert_signals(&batch, now.0, Some(&receipt))).await?;
    if !fresh {
        return Err(AppError::Replayed);
    }
    state.monitor.signal_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, axum::Json(counts)).into_response())
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

/// An admin action's request, authenticated: rate-limited per source before the token is
/// checked (so it cannot be guessed at speed), the token as bearer or the form's `token`.
async fn admin(state: &AppState, request: Request) -> Result<(axum::http::request::Parts, Bytes), AppError> {
    let source = auth::client_key(peer(&request), request.headers(), &state.trusted_proxies);
    state.admin_rate.check(source, std::time::Instant::now()).map_err(AppError::RateLimited)?;
    let expected =
        state.config.admin_token.as_ref().ok_or(AppError::NotConfigured("admin_token (PREWARM_ADMIN_TOKEN)"))?;
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, ROLLBACK_BODY_LIMIT).await?;
    let presented = auth::presented(&parts.headers).or_else(|| form_field(&body, "token"));
    if !auth::matches(presented.as_deref(), expected) {
        return Err(AppError::Unauthorized);
    }
    Ok((parts, body))
}

/// The dashboard's forms get a redirect back to the page; API clients get JSON.
fn answer(headers: &HeaderMap, json: serde_json::Value) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
    } else {
        axum::Json(json).into_response()
    }
}

/// `POST /v1/rollback`: points `current` back at a kept version (`version` in the form or
/// the query) and pushes the entries to the configured targets (`publish::Targets`).
/// Publishing is then paused until `POST /v1/resume`.
pub(super) async fn rollback(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, body) = admin(&state, request).await?;
    let query = parts.uri.query().unwrap_or_default();
    let version = form_field(&body, "version")
        .or_else(|| form_field(query.as_bytes(), "version"))
        .map(|v| v.trim().parse::<u32>().map_err(|_| AppError::BadRequest(format!("version {v:?} is not a number"))))
        .transpose()?;
    let service = state.clone();
    let entries = tokio::task::spawn_blocking(move || crate::service::rollback(&service, version))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| match e {
            crate::service::ServiceError::Publish(e) => AppError::BadRequest(e.to_string()),
            other => AppError::Internal(format!("rolled back locally; pushing the rollback: {other}")),
        })?;
    let pointer = entries.last().and_then(|e| prewarm_shared::ModelPointer::from_artifact(&e.value).ok());
    Ok(answer(&parts.headers, json!({ "current_version": pointer.map(|p| p.version.0), "publishing_paused": true })))
}

/// `POST /v1/resume`: lifts the pause a rollback put on publishing.
pub(super) async fn resume(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, _) = admin(&state, request).await?;
    let service = state.clone();
    let was_paused = tokio::task::spawn_blocking(move || crate::service::resume_publishing(&service))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(answer(&parts.headers, json!({ "resumed": was_paused })))
}
