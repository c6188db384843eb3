//! The write endpoints: events, the edge's signals, rollback. Each authenticates (and, for
//! signals and rollback, rate-limits) from the headers before it reads the body.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prewarm_shared::signals::{self, SIGNATURE_HEADER, SignalBatch, TIMESTAMP_HEADER};

use super::api::{
    AdminRefusals, AnyRoute, ErrorBody, EventLineSchema, EventsRefused, ResumeForm, Resumed, RollbackForm, RolledBack,
    SignalCounts,
};
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

/// A client's batch id (`x-prewarm-batch-id`, a decimal u64): a batch sent again under the
/// same id (a retry after a lost answer) is acknowledged and stored once.
fn batch_id(headers: &axum::http::HeaderMap) -> Result<Option<u64>, AppError> {
    let Some(value) = headers.get("x-prewarm-batch-id") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| AppError::BadRequest("x-prewarm-batch-id must be a decimal number below 2^64".into()))
}

/// `POST /v1/events`: NDJSON (optionally gzip). Valid lines are committed before the reply.
#[utoipa::path(post, path = "/v1/events", tag = "write", security(("ingest_token" = [])),
    request_body(description = "One event per line (JSON); `Content-Encoding: gzip` accepted",
        content((EventLineSchema = "application/x-ndjson"), (EventLineSchema = "application/json"))),
    responses(
        (status = 200, description = "Some lines accepted (committed) and the rejected ones reported", body = IngestReport),
        (status = 400, description = "Every line rejected, or the body unreadable", body = EventsRefused),
        (status = 401, description = "No valid ingest token", body = ErrorBody),
        (status = 413, description = "The body (or its decompressed size) is over max_body_bytes", body = ErrorBody),
        (status = 415, description = "A content type or encoding other than the accepted ones", body = ErrorBody),
        (status = 503, description = "Ingest is not configured, or the store is full or read-only", body = ErrorBody),
        AnyRoute))]
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
    if report.accepted == 0 && report.rejected == 0 {
        return Err(AppError::BadRequest("the body holds no events (one JSON object per line)".into()));
    }
    if !events.is_empty() {
        let batch = batch_id(headers)?;
        match state.events.clone() {
            Some(store) => {
                tokio::task::spawn_blocking(move || {
                    let mut store = store.lock().map_err(|_| AppError::Internal("event store lock poisoned".into()))?;
                    store.insert_batch(batch, &events).map_err(AppError::from)
                })
                .await
                .map_err(|e| AppError::Internal(e.to_string()))??;
            }
            None => {
                with_store(&state, move |store| store.insert_events_once(batch, &events)).await?;
            }
        }
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
#[utoipa::path(post, path = "/v1/signals", tag = "write", security(("signal_key" = [])),
    request_body(description = "A signal batch from the edge (demand counts, prewarm signals, sampled states)",
        content((Object = "application/json"))),
    responses(
        (status = 202, description = "The batch is stored", body = SignalCounts),
        (status = 400, description = "A malformed batch, or a timestamp outside the window", body = ErrorBody),
        (status = 401, description = "An unknown key id or a signature that does not verify", body = ErrorBody),
        (status = 409, description = "This batch (its signature, or its batch id) was already received", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "A content type other than application/json", body = ErrorBody),
        (status = 429, description = "Too many batches from this source", body = ErrorBody),
        (status = 503, description = "No signal key configured, or the store is full or read-only", body = ErrorBody),
        AnyRoute))]
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
    let counts = SignalCounts { demand: batch.demand.len(), prewarm: batch.prewarm.len(), states: batch.states.len() };
    let fresh = with_store(&state, move |store| store.insert_signals(&batch, now.0, Some(&receipt))).await?;
    if !fresh {
        return Err(AppError::Replayed);
    }
    state.monitor.signal_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, axum::Json(counts)).into_response())
}

/// Decodes `application/x-www-form-urlencoded` (the dashboard's form, or a query string):
/// every pair must be `name=value` with valid escapes and UTF-8.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    let malformed = || AppError::BadRequest("malformed form: expected name=value pairs joined by &".into());
    let decode = |raw: &[u8]| -> Result<String, AppError> {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = raw.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).ok_or_else(malformed)?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|_| malformed())?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| malformed())
    };
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let at = pair.iter().position(|b| *b == b'=').ok_or_else(malformed)?;
            Ok((decode(&pair[..at])?, decode(&pair[at + 1..])?))
        })
        .collect()
}

fn form_value(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// An admin action's request, authenticated: rate-limited per source before the token is
/// checked (so it cannot be guessed at speed), the token as bearer or the form's `token`.
async fn admin(
    state: &AppState,
    request: Request,
) -> Result<(axum::http::request::Parts, Vec<(String, String)>), AppError> {
    let source = auth::client_key(peer(&request), request.headers(), &state.trusted_proxies);
    state.admin_rate.check(source, std::time::Instant::now()).map_err(AppError::RateLimited)?;
    let expected =
        state.config.admin_token.as_ref().ok_or(AppError::NotConfigured("admin_token (PREWARM_ADMIN_TOKEN)"))?;
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, ROLLBACK_BODY_LIMIT).await?;
    // A body that is not a form cannot carry the token: unauthenticated, not malformed.
    let form = parse_form(&body);
    let from_form = form.as_ref().ok().and_then(|f| form_value(f, "token"));
    let presented = auth::presented(&parts.headers).or(from_form);
    if !auth::matches(presented.as_deref(), expected) {
        return Err(AppError::Unauthorized);
    }
    Ok((parts, form?))
}

/// The dashboard's forms get a redirect back to the page; API clients get JSON.
fn answer(headers: &HeaderMap, json: impl serde::Serialize) -> Response {
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
#[utoipa::path(post, path = "/v1/rollback", tag = "admin", security(("admin_token" = [])),
    params(("version" = Option<u32>, Query, minimum = 1, maximum = 4294967295_u64,
        description = "The kept version to go back to (default: the one before); a version in the form wins")),
    request_body(content((Option<RollbackForm> = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Rolled back; publishing paused", body = RolledBack),
        (status = 404, description = "No such kept version", body = ErrorBody),
        (status = 409, description = "Nothing published, or no version before the current one", body = ErrorBody),
        AdminRefusals,
        AnyRoute))]
pub(super) async fn rollback(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, form) = admin(&state, request).await?;
    let query = parse_form(parts.uri.query().unwrap_or_default().as_bytes())?;
    let version = |from: &[(String, String)]| {
        form_value(from, "version")
            .map(|v| match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(AppError::BadRequest(format!("version {v:?} is not a version number (1 or more)"))),
            })
            .transpose()
    };
    // Both are checked; the form's wins (the dashboard's form posts to a plain URL).
    let (in_form, in_query) = (version(&form)?, version(&query)?);
    let version = in_form.or(in_query);
    let service = state.clone();
    let entries = tokio::task::spawn_blocking(move || crate::service::rollback(&service, version))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| {
            use crate::publish::PublishError as P;
            match e {
                crate::service::ServiceError::Publish(e @ P::UnknownVersion(_)) => {
                    AppError::NoSuchVersion(e.to_string())
                }
                crate::service::ServiceError::Publish(e @ (P::NothingPublished(_) | P::NoEarlierVersion(_))) => {
                    AppError::Conflict(e.to_string())
                }
                crate::service::ServiceError::Publish(e) => AppError::Internal(format!("rolling back: {e}")),
                other => AppError::Internal(format!("rolled back locally; pushing the rollback: {other}")),
            }
        })?;
    let pointer = entries.last().and_then(|e| prewarm_shared::ModelPointer::from_artifact(&e.value).ok());
    Ok(answer(&parts.headers, RolledBack { current_version: pointer.map(|p| p.version.0), publishing_paused: true }))
}

/// `POST /v1/resume`: lifts the pause a rollback put on publishing.
#[utoipa::path(post, path = "/v1/resume", tag = "admin", security(("admin_token" = [])),
    request_body(content((Option<ResumeForm> = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Publishing resumes", body = Resumed),
        AdminRefusals,
        AnyRoute))]
pub(super) async fn resume(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, _) = admin(&state, request).await?;
    let service = state.clone();
    let was_paused = tokio::task::spawn_blocking(move || crate::service::resume_publishing(&service))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(answer(&parts.headers, Resumed { resumed: was_paused }))
}
