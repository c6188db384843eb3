//! The HTTP API in-process (`tower::ServiceExt::oneshot`): auth, validation, limits, signals.

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use prewarm_shared::artifact::ModelVersion;
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::signals::{self, DemandCount, SignalBatch};
use prewarm_shared::{ProfileId, UnixSeconds};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::store::Store;
use prewarm_trainer::web::{AppState, router};
use tower::ServiceExt;

const INGEST: &str = "ingest-token-0123456789";
const SIGNAL: &str = "signal-key-0123456789";
const NOW: UnixSeconds = UnixSeconds(1_800_000_000);

fn fixed_clock() -> UnixSeconds {
    NOW
}

fn state() -> AppState {
    let config = TrainerConfig {
        // A data directory of its own: nothing published there.
        data_dir: std::env::temp_dir().join(format!("prewarm-api-test-{}", std::process::id())),
        ingest_token: Some(INGEST.into()),
        signal_key: Some(SIGNAL.into()),
        max_body_bytes: 64 * 1024,
        ..TrainerConfig::default()
    };
    AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), fixed_clock)
}

fn event(user: u8, time: u64) -> String {
    format!(
        r#"{{"time":{time},"user":"{}","region":"eu","path":"/watch/1","content_type":"video/mp4","user_agent":"Mozilla/5.0 (iPhone) Mobile","status":200,"bytes":1000,"duration_ms":12}}"#,
        format!("{user:02x}").repeat(32)
    )
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn post_events(token: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::post("/v1/events").header("content-type", "application/x-ndjson");
    match token {
        Some(token) => builder.header("authorization", format!("Bearer {token}")),
        None => builder,
    }
}

fn events_request(token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    post_events(token).body(Body::from(body)).expect("request")
}

fn count(state: &AppState) -> u64 {
    state.store.lock().expect("lock").count_events().expect("count")
}

#[tokio::test]
async fn a_batch_sent_again_under_its_id_is_acknowledged_and_stored_once() {
    let s = state();
    let body = || format!("{}\n{}\n", event(1, 1_700_000_000), event(2, 1_700_000_060)).into_bytes();
    let with_id = |id: &str| post_events(Some(INGEST)).header("x-prewarm-batch-id", id).body(Body::from(body()));
    for _ in 0..2 {
        let (status, report) = send(&s, with_id("42").expect("request")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["accepted"], 2);
    }
    assert_eq!(count(&s), 2, "the retry was stored again");
    // Another id, or none, is another batch.
    assert_eq!(send(&s, with_id("43").expect("request")).await.0, StatusCode::OK);
    assert_eq!(send(&s, events_request(Some(INGEST), body())).await.0, StatusCode::OK);
    assert_eq!(count(&s), 6);
    let (status, refused) = send(&s, with_id("-1").expect("request")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("x-prewarm-batch-id")), "{refused}");
    assert_eq!(count(&s), 6);
}

#[tokio::test]
async fn writes_without_the_right_token_get_401_and_store_nothing() {
    let s = state();
    for token in [None, Some("wrong-token-0123456789"), Some(SIGNAL)] {
        let (status, body) = send(&s, events_request(token, event(1, 1_700_000_000).into_bytes())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("bearer")));
    }
    let signal = Request::post("/v1/signals").body(Body::from("{}")).expect("request");
    assert_eq!(send(&s, signal).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&s), 0);
}

#[tokio::test]
async fn each_line_is_validated_and_good_lines_are_stored() {
    let s = state();
    let body = format!("{}\n{{\"time\":1}}\n{}\nnot json\n", event(1, 1_700_000_000), event(2, 1_700_000_060));
    let (status, report) = send(&s, events_request(Some(INGEST), body.into_bytes())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["rejections"][0]["line"], 2);
    assert!(report["rejections"][0]["reason"].as_str().is_some_and(|r| r.contains("missing field")));
    assert_eq!(report["rejections"][1]["line"], 4);
    assert_eq!(count(&s), 2, "accepted lines are durable when the reply arrives");

    let (status, report) = send(&s, events_request(Some(INGEST), b"garbage\n".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(report["accepted"], 0);
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_bad_or_huge_ones_refused() {
    let s = state();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..50 {
        writeln!(gz, "{}", event(i, 1_700_000_000 + u64::from(i))).expect("write");
    }
    let request = |body: Vec<u8>, encoding: &str| {
        post_events(Some(INGEST)).header("content-encoding", encoding).body(Body::from(body)).expect("request")
    };
    let (status, report) = send(&s, request(gz.finish().expect("gzip"), "gzip")).await;
    assert_eq!((status, report["accepted"].as_u64()), (StatusCode::OK, Some(50)));

    let (status, body) = send(&s, request(b"not gzip".to_vec(), "gzip")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("gzip")));

    let (status, _) = send(&s, request(b"x".to_vec(), "br")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b'\n'; 10 * 1024 * 1024]).expect("write");
    let (status, _) = send(&s, request(bomb.finish().expect("gzip"), "gzip")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, _) = send(&s, events_request(Some(INGEST), vec![b' '; 100 * 1024])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(count(&s), 50);
}

/// A batch as the edge sends it: the key's id, the timestamp and the signature; never the key.
fn signed_signals(batch: &SignalBatch, at: UnixSeconds, key: &str) -> Request<Body> {
    let body = batch.to_json();
    Request::post("/v1/signals")
        .header(signals::KEY_ID_HEADER, signals::key_id(key.as_bytes()))
        .header(signals::TIMESTAMP_HEADER, at.0.to_string())
        .header(signals::SIGNATURE_HEADER, signals::sign(key.as_bytes(), at, &body))
        .body(Body::from(body))
        .expect("request")
}

#[tokio::test]
async fn signed_signals_are_stored_and_forged_or_replayed_ones_refused() {
    let s = state();
    let mut batch = SignalBatch::new(NOW, Some(ModelVersion(3)));
    batch.demand.push(DemandCount {
        region: "eu".into(),
        profile: ProfileId(2),
        minute: 30_000_000,
        requests: 7,
        bytes: 10,
    });
    let (status, body) = send(&s, signed_signals(&batch, NOW, SIGNAL)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut second = batch.clone();
    second.batch_id = 2;
    assert_eq!(send(&s, signed_signals(&second, NOW, SIGNAL)).await.0, StatusCode::ACCEPTED);
    let demand = s.store.lock().expect("lock").demand("eu", 2).expect("demand");
    assert_eq!(demand, vec![(30_000_000, 14)], "counts from two batches add up");

    // The same signed request again, inside the timestamp window: a replay.
    let (status, body) = send(&s, signed_signals(&batch, NOW, SIGNAL)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("replay")));
    let demand = s.store.lock().expect("lock").demand("eu", 2).expect("demand");
    assert_eq!(demand, vec![(30_000_000, 14)], "a replay adds nothing");

    // Replayed ten minutes later: the timestamp is outside the window.
    let old = UnixSeconds(NOW.0 - 600);
    let (status, body) = send(&s, signed_signals(&batch, old, SIGNAL)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("timestamp")));
    // The right key id, a signature made with another key.
    let mut forged = signed_signals(&batch, NOW, "another-key-0123456789");
    forged.headers_mut().insert(signals::KEY_ID_HEADER, signals::key_id(SIGNAL.as_bytes()).parse().expect("header"));
    assert_eq!(send(&s, forged).await.0, StatusCode::UNAUTHORIZED);
    // The key sent as a bearer token (as edges before key ids did) proves nothing.
    let bearer = Request::post("/v1/signals")
        .header("authorization", format!("Bearer {SIGNAL}"))
        .body(Body::from(batch.to_json()))
        .expect("request");
    assert_eq!(send(&s, bearer).await.0, StatusCode::UNAUTHORIZED);
    // Valid signature over a batch this build cannot read.
    let mut wrong = batch.clone();
    wrong.version = 99;
    let (status, body) = send(&s, signed_signals(&wrong, NOW, SIGNAL)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("version")));
}

#[tokio::test]
async fn signals_are_rate_limited_per_source_before_authentication() {
    let config = TrainerConfig { signal_rate_per_sec: 1.0, signal_burst: 3, ..(*state().config).clone() };
    let s = AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), fixed_clock);
    let from = |ip: [u8; 4], request: Request<Body>| {
        let mut request = request;
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((ip, 40_000))));
        request
    };
    let unauthenticated = || Request::post("/v1/signals").body(Body::from("{}")).expect("request");
    for _ in 0..3 {
        assert_eq!(send(&s, from([10, 0, 0, 1], unauthenticated())).await.0, StatusCode::UNAUTHORIZED);
    }
    let limited = router(s.clone()).oneshot(from([10, 0, 0, 1], unauthenticated())).await.expect("response");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get("retry-after").is_some());
    // Another source is not affected, and a valid batch from it is stored.
    let batch = SignalBatch::new(NOW, None);
    assert_eq!(send(&s, from([10, 0, 0, 2], signed_signals(&batch, NOW, SIGNAL))).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_rotated_out_key_still_signs_and_an_unknown_key_is_refused_before_its_body_is_read() {
    const OLD: &str = "old-signal-key-0123456789";
    let config = TrainerConfig { signal_key_previous: Some(OLD.into()), ..(*state().config).clone() };
    let s = AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), fixed_clock);
    let mut batch = SignalBatch::new(NOW, None);
    batch.batch_id = 7;
    assert_eq!(send(&s, signed_signals(&batch, NOW, OLD)).await.0, StatusCode::ACCEPTED);
    // An unknown key id with a body over the signal limit: 401, not 413 — nothing was read.
    let huge = vec![b' '; prewarm_trainer::web::SIGNAL_BODY_LIMIT + 1];
    let unknown = Request::post("/v1/signals")
        .header(signals::KEY_ID_HEADER, signals::key_id(b"somebody-elses-key-0123"))
        .header(signals::TIMESTAMP_HEADER, NOW.0.to_string())
        .body(Body::from(huge.clone()))
        .expect("request");
    assert_eq!(send(&s, unknown).await.0, StatusCode::UNAUTHORIZED);
    // A known key with the same body: the route's own limit.
    let mut known = signed_signals(&batch, NOW, SIGNAL);
    *known.body_mut() = Body::from(huge);
    assert_eq!(send(&s, known).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn health_reports_the_store() {
    let s = state();
    let (status, body) = send(&s, Request::get("/healthz").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"], 0);
}

#[tokio::test]
async fn status_reports_what_the_edge_signalled_and_plan_answers_without_a_model() {
    let s = state();
    let mut batch = SignalBatch::new(NOW, Some(ModelVersion(4)));
    batch.demand.push(DemandCount {
        region: "eu".into(),
        profile: ProfileId(1),
        minute: 30_000_000,
        requests: 9,
        bytes: 1,
    });
    batch.prewarm.push(signals::PrewarmRequest {
        region: "eu".into(),
        profile: ProfileId(1),
        minute: 30_000_000,
        observed: 50.0,
        forecast_upper: 10.0,
        reason: signals::PrewarmReason::AboveBand,
    });
    assert_eq!(send(&s, signed_signals(&batch, NOW, SIGNAL)).await.0, StatusCode::ACCEPTED);
    let (status, body) = send(&s, Request::get("/v1/status").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["edge"]["demand_requests"], 9);
    assert_eq!(body["edge"]["prewarm_signals"], serde_json::json!([["above_band", 1]]));
    assert_eq!(body["edge"]["edge_model_version"], 4);
    let (status, body) = send(&s, Request::get("/v1/plan").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["regions"], serde_json::json!([]), "nothing published in this data dir");
    assert_eq!(body["prewarm_signals_in_effect"], 1);

    // Publish a model whose forecast covers now: the plan has steps, and the surge raises them.
    let mut model = prewarm_shared::fixtures::region_model("eu");
    model.forecast.start = UnixSeconds(NOW.0 - 600);
    let (_, entries) = prewarm_shared::artifact::ModelBundle::encode(
        &[model],
        ModelVersion(1),
        NOW,
        "eu",
        prewarm_shared::fixtures::region_map(),
    )
    .expect("encode");
    let publisher = prewarm_trainer::publish::DirPublisher::new(s.config.models_dir());
    publisher.publish(&entries).expect("publish");
    let (_, body) = send(&s, Request::get("/v1/plan").body(Body::empty()).expect("request")).await;
    let steps = body["regions"][0]["steps"].as_array().expect("steps");
    assert!(!steps.is_empty());
    assert_eq!(steps[0]["at"], NOW.0, "the plan starts at the step holding now");
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}

#[tokio::test]
async fn metrics_expose_counters_and_alerts_in_prometheus_text() {
    let s = state();
    let body = format!("{}\n{}\nnot json", event(1, 1_700_000_000), event(2, 1_700_000_060));
    assert_eq!(send(&s, events_request(Some(INGEST), body.into_bytes())).await.0, StatusCode::OK);
    let response = router(s.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/plain")));
    let text =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(text.contains("\nprewarm_events_accepted_total 2\n"), "{text}");
    assert!(text.contains("\nprewarm_events_rejected_total 1\n"), "{text}");
    assert!(text.contains("\nprewarm_events_stored 2\n"), "{text}");
    let (_, status) = send(&s, Request::get("/v1/status").body(Body::empty()).expect("request")).await;
    assert_eq!(status["alerts"], serde_json::json!([]));
}

#[tokio::test]
async fn status_and_metrics_report_each_profiles_model_and_skill() {
    use prewarm_trainer::publish::DirPublisher;
    use prewarm_trainer::synth;
    // 16 days of the synthetic kinds: a week of past forecasts to score.
    let start = NOW.0 - 16 * 86_400;
    let (events, _) = synth::generate(&synth::standard_kinds(), "eu", 30, 40, 4, start, 16, 3);
    // A data directory of its own: other tests in this binary publish into state()'s.
    let config = TrainerConfig {
        data_dir: std::env::temp_dir().join(format!("prewarm-api-skill-test-{}", std::process::id())),
        ..TrainerConfig::default()
    };
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let s = AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), fixed_clock);
    s.store.lock().expect("lock").insert_events(&events).expect("insert");
    let run = {
        let store = s.store.lock().expect("lock");
        let publisher = DirPublisher::new(s.config.models_dir());
        let mut ledger = prewarm_trainer::forecast::ledger::Ledger::default();
        prewarm_trainer::train::train_and_publish(&store, &s.config, &s.rules, &publisher, NOW, &mut ledger)
            .expect("train")
    };
    let trained: Vec<(u16, String)> = run.regions[0]
        .profiles
        .iter()
        .filter_map(|(id, p)| Some((id.0, p.forecast.as_ref()?.series.method.name())))
        .collect();
    assert!(!trained.is_empty(), "profiles with history have a forecast report");

    let (status, body) = send(&s, Request::get("/v1/status").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    let rows = body["forecast_skill"].as_array().expect("forecast_skill");
    let mut listed: Vec<(u16, String)> =
        rows.iter().filter_map(|r| Some((r["profile"].as_u64()? as u16, r["method"].as_str()?.to_owned()))).collect();
    listed.sort();
    let mut expected = trained.clone();
    expected.sort();
    assert_eq!(listed, expected);
    for row in rows {
        assert_eq!(row["region"], "eu");
        // Every candidate scored over the past week, the published one among them.
        let candidates = row["candidates"].as_array().expect("candidates");
        assert!(candidates.len() >= 3, "{row}");
        assert!(candidates.iter().any(|c| c[0] == row["method"]), "{row}");
        assert!(row["reason"].as_str().is_some_and(|r| r.contains("MASE")), "{row}");
    }
    let response = router(s.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let text =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    let (first, method) = &trained[0];
    assert!(
        text.contains(&format!("prewarm_forecast_mase{{region=\"eu\",profile=\"{first}\",forecaster=\"{method}\"}}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "prewarm_forecast_model{{region=\"eu\",profile=\"{first}\",forecaster=\"{method}\"}} 1"
        )),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&s.config.data_dir);
}
