//! An external feed over real HTTP on loopback: the query it sends, the points it returns, and
//! named errors for a failing or malformed feed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use prewarm_trainer::forecast::feeds::{Feed, FeedConfig, FeedError, HttpJsonFeed};

/// Answers each request with the next (status, body), recording request lines.
fn server(replies: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/weather", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut replies = replies.into_iter();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            record.lock().expect("lock").push(line.trim().to_owned());
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 0 && !header.trim().is_empty() {
                header.clear();
            }
            let (status, body) = replies.next().unwrap_or((500, ""));
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

fn feed(url: &str) -> HttpJsonFeed {
    HttpJsonFeed::new(FeedConfig { name: "weather".into(), url: url.to_owned(), timeout_secs: 5 })
}

#[test]
fn a_feed_is_fetched_for_the_asked_window_and_its_failures_are_named() {
    let (url, seen) = server(vec![
        (200, r#"{"points":[{"region":"eu","time":3600,"value":21.5},{"region":"all","time":7200,"value":19}]}"#),
        (503, "busy"),
        (200, r#"{"temperature": 20}"#),
    ]);
    let weather = feed(&url);
    let points = weather.fetch(0, 86_400).expect("points");
    assert_eq!(points.len(), 2);
    assert_eq!((points[0].region.as_str(), points[0].time, points[0].value), ("eu", 3600, 21.5));
    assert_eq!(seen.lock().expect("lock")[0], "GET /weather?from=0&to=86400 HTTP/1.1");

    let failing = weather.fetch(0, 1).expect_err("HTTP 503");
    assert!(matches!(failing, FeedError::Fetch { .. }));
    assert!(failing.to_string().contains("feed `weather`") && failing.to_string().contains("503"), "{failing}");
    let malformed = weather.fetch(0, 1).expect_err("not the format");
    assert!(matches!(malformed, FeedError::Format { .. }), "{malformed}");

    // Nothing listening: a fetch error, not a hang or a panic.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = format!("http://{}/x", closed.local_addr().expect("addr"));
    drop(closed);
    assert!(matches!(feed(&gone).fetch(0, 1), Err(FeedError::Fetch { .. })));
}

#[test]
fn training_asks_each_feed_for_its_history_and_horizon_and_survives_a_failing_one() {
    use prewarm_shared::UnixSeconds;
    use prewarm_shared::artifact::ModelVersion;
    use prewarm_shared::classify::ClassificationRules;
    use prewarm_trainer::config::TrainerConfig;
    use prewarm_trainer::store::Store;
    use prewarm_trainer::synth;

    const START: u64 = 1_704_067_200;
    let (events, _) = synth::generate(&synth::standard_kinds(), "eu", 60, 30, 4, START, 3, 5);
    let mut store = Store::in_memory().expect("store");
    store.insert_events(&events).expect("insert");
    let (ok_url, seen) = server(vec![(200, r#"{"points":[{"region":"eu","time":1704067200,"value":3}]}"#)]);
    let (down_url, _) = server(vec![(500, "down")]);
    let feed = |name: &str, url: &str| FeedConfig { name: name.into(), url: url.to_owned(), timeout_secs: 5 };
    let config =
        TrainerConfig { feeds: vec![feed("rain", &ok_url), feed("broken", &down_url)], ..TrainerConfig::default() };
    let now = UnixSeconds(START + 3 * 86_400);
    let trained =
        prewarm_trainer::train::train(&store, &config, &ClassificationRules::default(), &[], ModelVersion(1), now)
            .expect("a failing feed does not stop training");
    assert!(!trained.is_empty());
    let first = events.iter().map(|e| e.time).min().expect("events");
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        [format!("GET /weather?from={first}&to={} HTTP/1.1", now.0 + 2 * 86_400)],
        "from the first event to two days past now"
    );
}
