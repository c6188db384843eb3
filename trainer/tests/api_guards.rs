//! The API's guards in-process: the read token, security headers, admin rate limits, rollback
//! pausing publishing, and a panicking handler answered instead of dropped.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ModelBundle, ModelVersion};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::publish::DirPublisher;
use prewarm_trainer::store::Store;
use prewarm_trainer::web::{AppState, guarded, router};
use tower::ServiceExt;

const READ: &str = "read-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const NOW: UnixSeconds = UnixSeconds(1_800_000_000);

fn fixed_clock() -> UnixSeconds {
    NOW
}

fn state(name: &str) -> AppState {
    let data_dir = std::env::temp_dir().join(format!("prewarm-guards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let config = TrainerConfig {
        data_dir,
        read_token: Some(READ.into()),
        admin_token: Some(ADMIN.into()),
        ..TrainerConfig::default()
    };
    AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), fixed_clock)
}

async fn status_of(state: &AppState, request: Request<Body>) -> StatusCode {
    router(state.clone()).oneshot(request).await.expect("response").status()
}

fn get(path: &str, authorization: Option<String>) -> Request<Body> {
    let builder = Request::get(path);
    let builder = match authorization {
        Some(value) => builder.header("authorization", value),
        None => builder,
    };
    builder.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn business_reads_need_the_read_token_and_health_does_not() {
    let s = state("read");
    for path in ["/v1/plan", "/v1/status", "/metrics", "/"] {
        assert_eq!(status_of(&s, get(path, None)).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(status_of(&s, get(path, Some("Bearer wrong".into()))).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(status_of(&s, get(path, Some(format!("Bearer {READ}")))).await, StatusCode::OK, "{path}");
        // A browser's prompt (and Prometheus' basic_auth) send Basic credentials.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("operator:{READ}"));
        assert_eq!(status_of(&s, get(path, Some(format!("Basic {basic}")))).await, StatusCode::OK, "{path}");
    }
    assert_eq!(status_of(&s, get("/healthz", None)).await, StatusCode::OK);
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}

#[tokio::test]
async fn no_response_may_be_framed_by_another_site() {
    let s = state("frames");
    let response = router(s.clone()).oneshot(get("/", Some(format!("Bearer {READ}")))).await.expect("response");
    assert_eq!(response.headers()["content-security-policy"], "frame-ancestors 'none'");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let missing = router(s.clone()).oneshot(get("/nowhere", None)).await.expect("response");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-frame-options"], "DENY");
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}

fn publish(publisher: &DirPublisher, version: u32) {
    let mut model = prewarm_shared::fixtures::region_model("eu");
    model.forecast.start = UnixSeconds(NOW.0 - 600);
    model.forecast.series[0].expected[0] += version as f32; // a different model each version
    let (_, entries) =
        ModelBundle::encode(&[model], ModelVersion(version), NOW, "eu", prewarm_shared::fixtures::region_map())
            .expect("encode");
    publisher.publish(&entries).expect("publish");
}

fn rollback(token: &str, version: Option<u32>) -> Request<Body> {
    let query = version.map_or_else(String::new, |v| format!("?version={v}"));
    Request::post(format!("/v1/rollback{query}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn a_rollback_pauses_publishing_until_resumed() {
    let s = state("pause");
    let publisher = DirPublisher::new(s.config.models_dir());
    publish(&publisher, 1);
    publish(&publisher, 2);
    assert_eq!(status_of(&s, rollback(ADMIN, Some(1))).await, StatusCode::OK);
    let current = || publisher.current().expect("read").expect("a model").0.version.0;
    assert_eq!(current(), 1);
    assert!(publisher.paused().expect("read").is_some_and(|note| note.contains("to 1")));
    // The next periodic training does not undo it: a new version is refused while paused.
    let mut model = prewarm_shared::fixtures::region_model("eu");
    model.forecast.series[0].expected[0] += 99.0;
    let (_, entries) =
        ModelBundle::encode(&[model], ModelVersion(3), NOW, "eu", prewarm_shared::fixtures::region_map())
            .expect("encode");
    let refused = publisher.publish(&entries).expect_err("paused");
    assert!(refused.to_string().contains("paused"), "{refused}");
    assert_eq!(current(), 1);
    // Resuming lifts it.
    let resume = |token: &str| {
        Request::post("/v1/resume")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(status_of(&s, resume("wrong-token-0123456789")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, resume(ADMIN)).await, StatusCode::OK);
    publisher.publish(&entries).expect("publishes again");
    assert_eq!(current(), 3);
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}

#[tokio::test]
async fn a_rollback_names_what_is_wrong_by_its_status() {
    let s = state("rollback-statuses");
    let form = |body: &'static str| {
        Request::post("/v1/rollback")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request")
    };
    // Nothing published yet: nothing to roll back (409).
    assert_eq!(status_of(&s, rollback(ADMIN, None)).await, StatusCode::CONFLICT);
    let publisher = DirPublisher::new(s.config.models_dir());
    publish(&publisher, 1);
    publish(&publisher, 2);
    // A version that was never kept (404), a body that is not a form, a version that is not a
    // number (400) — found by schemathesis, which took 400 for "valid but rejected".
    assert_eq!(status_of(&s, rollback(ADMIN, Some(77))).await, StatusCode::NOT_FOUND);
    assert_eq!(status_of(&s, form("AAA")).await, StatusCode::BAD_REQUEST);
    assert_eq!(status_of(&s, form("version=x")).await, StatusCode::BAD_REQUEST);
    assert_eq!(status_of(&s, form("version=1")).await, StatusCode::SEE_OTHER); // the form goes back to the dashboard
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}

#[tokio::test]
async fn an_empty_event_batch_is_refused() {
    let config = TrainerConfig { ingest_token: Some(ADMIN.into()), ..TrainerConfig::default() };
    let s = AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), fixed_clock);
    for body in ["", "\n \n"] {
        let request = Request::post("/v1/events")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::from(body))
            .expect("request");
        assert_eq!(status_of(&s, request).await, StatusCode::BAD_REQUEST, "{body:?}");
    }
}

#[tokio::test]
async fn admin_attempts_are_rate_limited_before_the_token_is_checked() {
    let s = state("admin-rate");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let mut request = rollback("guess-0123456789abcdef", None);
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([10, 0, 0, 7], 1))));
        statuses.push(status_of(&s, request).await);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 3, "{statuses:?}");
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_with_a_reason() {
    let app = guarded(
        axum::Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                let parts: Vec<&str> = "a".split(',').collect();
                parts[3].to_owned() // out of bounds, as an unchecked slice of input would be
            }),
        ),
        Duration::from_secs(5),
    );
    let response = app.oneshot(Request::get("/boom").body(Body::empty()).expect("request")).await.expect("response");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("internal error"));
}
