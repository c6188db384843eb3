//! The HTTP API of `prewarm serve`. Handlers are thin: authenticate from the headers, read
//! the body (with the route's own limit) only then, call a function without HTTP in it, map
//! the result. One error type turns failures into precise statuses; a panicking handler is
//! answered 500, never a dropped connection.

pub mod api;
pub mod auth;
pub mod dashboard;
mod read;
mod serve;
mod write;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use prewarm_shared::signals;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::ingest::BodyError;
use crate::store::{Store, StoreError};

pub use crate::ingest::guard;
pub use crate::service::{AppState, PlanView, plan_now, system_clock};
pub use serve::serve;

/// `POST /v1/signals` bodies: a full batch ([`signals::MAX_ITEMS_PER_BATCH`] items) is well
/// under this.
pub const SIGNAL_BODY_LIMIT: usize = 1024 * 1024;
/// `POST /v1/rollback` bodies: a form with a version number and a token.
pub const ROLLBACK_BODY_LIMIT: usize = 4 * 1024;

/// Every way a request can fail, with its status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 401: no or wrong credentials.
    #[error("missing or invalid credentials (a bearer token, or a signal key id and signature)")]
    Unauthorized,
    /// 401: a signal's signature does not verify.
    #[error("{0}")]
    BadSignature(#[from] signals::SignatureError),
    /// 503: the endpoint needs a setting that is absent.
    #[error("this endpoint is disabled: {0} is not configured")]
    NotConfigured(&'static str),
    /// 415: an encoding other than identity or gzip.
    #[error("unsupported content encoding {0:?}: send identity or gzip")]
    UnsupportedEncoding(String),
    /// 415: a content type the endpoint does not take.
    #[error("unsupported content type {0:?}: send {1}")]
    UnsupportedType(String, &'static str),
    /// 400: a malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such endpoint.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// 404: no such kept version.
    #[error("{0}")]
    NoSuchVersion(String),
    /// 409: the action conflicts with the state (nothing to roll back to).
    #[error("{0}")]
    Conflict(String),
    /// 405.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 400 or 413: the body cannot be read or is too large.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// 400: a malformed signal batch.
    #[error("{0}")]
    BadSignals(#[from] signals::SignalError),
    /// 409: a batch already accepted.
    #[error("this batch was already received (the same signature or batch id: a retry or a replay): stored once")]
    Replayed,
    /// 429: over the per-source rate (seconds to wait).
    #[error("too many requests from this source: retry in {0:.1} s")]
    RateLimited(f64),
    /// 503 when the store is full or read-only, else 500.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// 500.
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
            AppError::NotFound(_) | AppError::NoSuchVersion(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Body(BodyError::BadGzip(_)) | AppError::BadSignals(_) => StatusCode::BAD_REQUEST,
            AppError::Replayed => StatusCode::CONFLICT,
            AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Store(StoreError::Full | StoreError::ReadOnly | StoreError::Backend(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Store(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, axum::Json(api::ErrorBody { error: self.to_string() })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let AppError::RateLimited(wait) = self
            && let Ok(value) = HeaderValue::from_str(&format!("{}", wait.ceil().max(1.0)))
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Reads a body of at most `limit` bytes: a declared length over it is refused before a byte
/// is read, a body that grows past it is cut off at the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, AppError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit }.into());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit }.into())
        }
        Err(e) => Err(AppError::BadRequest(format!("reading the request body: {e}"))),
    }
}

/// Runs store writes off the async runtime, on the writer.
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

/// Runs blocking read work (store reads through the readers, the models directory) off the
/// async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| AppError::Internal(e.to_string()))?
}

/// Headers every response carries: nothing here may be framed by another site (the dashboard
/// has a rollback form) or sniffed as another type.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// A handler that panicked: answered, logged, and the connection kept.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    AppError::Internal("the request handler failed unexpectedly".into()).into_response()
}

/// The router with its limits: per-route body limits (in the handlers, after
/// authentication) and [`guarded`]'s.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let routes = Router::new()
        .route("/v1/events", post(write::post_events))
        .route("/v1/signals", post(write::post_signals))
        .route("/v1/rollback", post(write::rollback))
        .route("/v1/resume", post(write::resume))
        .route("/healthz", get(read::healthz))
        .route("/v1/status", get(read::status))
        .route("/v1/plan", get(read::get_plan))
        .route("/metrics", get(read::metrics))
        .route("/", get(read::dashboard))
        .route("/openapi.json", get(api::openapi_json))
        .fallback(|uri: axum::http::Uri| async move { AppError::NotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed });
    guarded(routes, timeout).with_state(state)
}

/// What every route gets: a request timeout (408), a panic guard (500, the connection kept)
/// and the security headers.
pub fn guarded<S: Clone + Send + Sync + 'static>(routes: Router<S>, timeout: Duration) -> Router<S> {
    routes
        .layer(axum::middleware::map_response(security_headers))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::custom(panicked))
}
