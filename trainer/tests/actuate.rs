//! Actuation against a real HTTP receiver on loopback: signed deliveries, retries with backoff,
//! and an alert that fires and reaches the webhook.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use prewarm_shared::UnixSeconds;
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::signals::{self, PrewarmReason, PrewarmRequest, SignalBatch};
use prewarm_shared::{ProfileId, artifact::ModelVersion};
use prewarm_trainer::actuate::{self, ActuateConfig, Webhook};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::store::Store;
use prewarm_trainer::web::AppState;

const SECRET: &str = "webhook-secret-0123456789";
const NOW: UnixSeconds = UnixSeconds(1_800_000_000);

#[derive(Debug, Clone)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Answers `statuses` in order (then 200), recording every request.
fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line); // request line
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim().split_once(':') {
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
            let length = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record.lock().expect("lock").push(Delivery { headers, body });
            let status = statuses.next().unwrap_or(200);
            let mut stream = reader.into_inner();
            let location = if (300..400).contains(&status) { "Location: /elsewhere\r\n" } else { "" };
            let _ = write!(stream, "HTTP/1.1 {status} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

fn fast() -> ActuateConfig {
    ActuateConfig { retries: 3, backoff_ms: 10, timeout_secs: 5, ..ActuateConfig::default() }
}

fn verified(d: &Delivery) -> serde_json::Value {
    signals::verify(SECRET.as_bytes(), d.header("x-prewarm-timestamp"), d.header("x-prewarm-signature"), &d.body, NOW)
        .expect("a valid signature over the body");
    serde_json::from_slice(&d.body).expect("JSON body")
}

#[test]
fn deliveries_are_signed_and_retried_until_the_receiver_takes_them() {
    let (url, seen) = receiver(vec![503, 429]);
    let hook = Webhook::new(&url, &SECRET.into(), &fast());
    let attempts = hook.deliver("plan", &serde_json::json!({ "kind": "plan", "units": 3 }), NOW).expect("delivered");
    assert_eq!(attempts, 3);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 3);
    assert_eq!(verified(&seen[2])["units"], 3);
    assert_eq!(seen[2].header("x-prewarm-event"), Some("plan"));

    // A receiver that refuses (4xx) is not retried; one that keeps failing exhausts retries.
    let (url, seen) = receiver(vec![400]);
    assert!(Webhook::new(&url, &SECRET.into(), &fast()).deliver("plan", &serde_json::json!({}), NOW).is_err());
    assert_eq!(seen.lock().expect("lock").len(), 1);
    let (url, seen) = receiver(vec![500; 10]);
    let err =
        Webhook::new(&url, &SECRET.into(), &fast()).deliver("plan", &serde_json::json!({}), NOW).expect_err("fails");
    assert!(err.to_string().contains("500") && err.to_string().contains("4 attempts"), "{err}");
    assert_eq!(seen.lock().expect("lock").len(), 4);
}

#[test]
fn a_redirect_is_refused_not_followed_and_the_url_key_never_shows() {
    let (url, seen) = receiver(vec![307]);
    let url = format!("{url}?key=hook-key-s3cret");
    let hook = Webhook::new(&url, &SECRET.into(), &fast());
    let err = hook.deliver("plan", &serde_json::json!({}), NOW).expect_err("a redirect is a refusal");
    assert!(err.to_string().contains("307"), "{err}");
    assert_eq!(seen.lock().expect("lock").len(), 1, "the redirect was not followed");
    let shown = format!("{err} {hook:?}");
    assert!(!shown.contains("hook-key-s3cret") && !shown.contains(SECRET), "{shown}");
}

fn now() -> UnixSeconds {
    NOW
}

#[test]
fn sustained_under_provisioning_fires_an_alert_that_reaches_the_webhook() {
    let (url, seen) = receiver(vec![]);
    let config = TrainerConfig {
        data_dir: std::env::temp_dir().join(format!("prewarm-actuate-test-{}", std::process::id())),
        ..TrainerConfig::default()
    };
    let state = AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), now);
    let hook = Webhook::new(&url, &SECRET.into(), &fast());

    // Quiet: nothing fires, nothing is sent (no model published: no plan to deliver).
    let report = actuate::cycle(&state, Some(&hook), NOW).expect("cycle");
    assert!(report.transitions.fired.is_empty() && report.plan_delivered.is_none());
    assert!(seen.lock().expect("lock").is_empty());

    // The edge reports demand above the band three times in the window.
    let mut batch = SignalBatch::new(NOW, Some(ModelVersion(1)));
    for minute in 0..3 {
        batch.prewarm.push(PrewarmRequest {
            region: "eu".into(),
            profile: ProfileId(1),
            minute: NOW.0 / 60 - minute,
            observed: 90.0,
            forecast_upper: 40.0,
            reason: PrewarmReason::AboveBand,
        });
    }
    state.store.lock().expect("lock").insert_signals(&batch, NOW.0 - 60, None).expect("signals");
    let report = actuate::cycle(&state, Some(&hook), NOW).expect("cycle");
    assert_eq!(report.transitions.fired.len(), 1);
    let deliveries = seen.lock().expect("lock").clone();
    assert_eq!(deliveries.len(), 1);
    let alert = verified(&deliveries[0]);
    assert_eq!(alert["kind"], "alert");
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["alert"]["name"], "sustained_under_provisioning");
    assert_eq!(alert["alert"]["region"], "eu");
    assert_eq!(state.monitor.firing().len(), 1, "listed for /v1/status and /metrics");

    // Still firing next cycle: not sent again. Once the window has passed: resolved, and sent.
    actuate::cycle(&state, Some(&hook), NOW).expect("cycle");
    assert_eq!(seen.lock().expect("lock").len(), 1);
    let later = UnixSeconds(NOW.0 + 3_600);
    let report = actuate::cycle(&state, Some(&hook), later).expect("cycle");
    assert_eq!(report.transitions.resolved.len(), 1);
    let deliveries = seen.lock().expect("lock").clone();
    let resolved: serde_json::Value = serde_json::from_slice(&deliveries[1].body).expect("JSON");
    assert_eq!(resolved["status"], "resolved");
}
