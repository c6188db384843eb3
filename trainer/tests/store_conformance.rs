//! What every source of events the profile stage trains on must do (`store::UserEvents`), run
//! against each one this build has: events in memory, and the SQLite store streamed in user
//! order. A new backend passes the same checks before training may read it.

use std::collections::{BTreeMap, BTreeSet};

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::ModelVersion;
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::ingest::event::Event;
use prewarm_trainer::store::{EventStore, EventsBefore, InMemory, Store, UserEvents};
use prewarm_trainer::synth;

const START: u64 = 1_704_067_200;

/// Two regions of synthetic users, ordered by user then time as a source hands them out.
fn events() -> Vec<Event> {
    let kinds = synth::standard_kinds();
    let (mut events, _) = synth::generate(&kinds, "eu", 60, 12, 3, START, 7, 1);
    events.extend(synth::generate(&kinds, "us", -300, 8, 3, START, 7, 2).0);
    events.sort_by(|a, b| a.user.0.cmp(&b.user.0).then(a.time.cmp(&b.time)));
    events
}

/// The checks: every user once, each with all and only their events in time order; the users
/// per region and the first time as the events say.
fn conforms(name: &str, source: &dyn UserEvents, expected: &[Event]) {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    source
        .for_each_user(&mut |user| {
            assert!(!user.is_empty(), "{name}: an empty user");
            assert!(user.iter().all(|e| e.user == user[0].user), "{name}: two users in one visit");
            assert!(user.windows(2).all(|w| w[0].time <= w[1].time), "{name}: a user's events out of order");
            assert!(seen.insert(user[0].user), "{name}: a user visited twice");
            let own: Vec<&Event> = expected.iter().filter(|e| e.user == user[0].user).collect();
            assert_eq!(own.len(), user.len(), "{name}: a user's events missing or extra");
            total += user.len();
        })
        .expect("reads");
    assert_eq!(total, expected.len(), "{name}: events read");
    let mut per_region: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for e in expected {
        per_region.entry(e.region.clone()).or_default().insert(e.user);
    }
    let counted: BTreeMap<String, u64> = per_region.into_iter().map(|(r, u)| (r, u.len() as u64)).collect();
    assert_eq!(source.users_per_region().expect("counts"), counted, "{name}: users per region");
    assert_eq!(source.first_time().expect("first"), expected.iter().map(|e| e.time).min(), "{name}: first time");
}

#[test]
fn every_source_hands_out_each_users_events_once_in_order() {
    let events = events();
    conforms("in memory", &InMemory(&events), &events);
    let mut store = Store::in_memory().expect("store");
    // Inserted in another order than they are read.
    let mut shuffled = events.clone();
    shuffled.sort_by_key(|e| (e.time, e.region.clone()));
    store.insert_events(&shuffled).expect("insert");
    let everything = EventsBefore { store: &store, before: u64::MAX / 2 };
    conforms("sqlite", &everything, &events);
    // A cut in time: only what came before it, users with nothing before it absent.
    let cut = START + 3 * 86_400;
    let before: Vec<Event> = events.iter().filter(|e| e.time < cut).cloned().collect();
    conforms("sqlite, before a time", &EventsBefore { store: &store, before: cut }, &before);
}

/// The profile stage on one source, with the default settings, a week after the start.
fn fit(source: &dyn UserEvents) -> Vec<prewarm_trainer::profile::FittedRegion> {
    let config = TrainerConfig::default();
    prewarm_trainer::profile::fit(
        source,
        &config.profile_settings(),
        &ClassificationRules::default(),
        &[],
        ModelVersion(1),
        UnixSeconds(START + 8 * 86_400),
    )
    .expect("fits")
}

#[test]
fn the_profile_stage_fits_the_same_profiles_from_every_source() {
    let events = events();
    let mut store = Store::in_memory().expect("store");
    store.insert_events(&events).expect("insert");
    let (memory, sqlite) = (fit(&InMemory(&events)), fit(&EventsBefore { store: &store, before: u64::MAX / 2 }));
    assert_eq!(memory.len(), sqlite.len());
    for (a, b) in memory.iter().zip(&sqlite) {
        assert_eq!(a.model, b.model, "region {}", a.model.region);
        assert_eq!(a.user_profiles, b.user_profiles);
        assert_eq!(a.users, b.users);
    }
}

/// What every [`EventStore`] backend must do: idempotent batches, the aggregates training and
/// status read, each user's events in order, and retention by whole days.
fn event_store_conforms(name: &str, store: &mut dyn EventStore) {
    let events = events();
    let (first, second) = events.split_at(events.len() / 2);
    assert_eq!(store.insert_batch(Some(1), first).expect("insert"), first.len(), "{name}");
    assert_eq!(store.insert_batch(Some(1), first).expect("retry"), 0, "{name}: a retried batch stored again");
    assert_eq!(store.insert_batch(None, second).expect("insert"), second.len(), "{name}");
    assert_eq!(store.event_count().expect("count"), events.len() as u64, "{name}: events counted");
    conforms(name, &EventsBefore { store: &*store, before: u64::from(u32::MAX) }, &events);
    let cut = START + 3 * 86_400;
    let before: Vec<Event> = events.iter().filter(|e| e.time < cut).cloned().collect();
    conforms(&format!("{name}, before a time"), &EventsBefore { store: &*store, before: cut }, &before);
    assert_eq!(store.latest_event_time().expect("latest"), events.iter().map(|e| e.time).max(), "{name}");
    let mut per_minute: BTreeMap<u64, u64> = BTreeMap::new();
    for e in &events {
        *per_minute.entry(e.time / 60 * 60).or_default() += 1;
    }
    assert_eq!(store.requests_per_minute().expect("per minute"), per_minute.into_iter().collect::<Vec<_>>(), "{name}");
    // Retention on a day boundary: exactly the days before it go.
    store.prune_events(cut).expect("prune");
    let kept: Vec<Event> = events.iter().filter(|e| e.time >= cut).cloned().collect();
    assert_eq!(store.event_count().expect("count"), kept.len() as u64, "{name}: after retention");
    conforms(&format!("{name}, after retention"), &EventsBefore { store: &*store, before: u64::from(u32::MAX) }, &kept);
}

#[test]
fn the_sqlite_store_conforms() {
    event_store_conforms("sqlite", &mut Store::in_memory().expect("store"));
}

#[cfg(feature = "clickhouse")]
#[path = "support/clickhouse_server.rs"]
mod clickhouse_server;

#[cfg(feature = "clickhouse")]
mod clickhouse {
    use super::*;
    use crate::clickhouse_server::Server;
    use prewarm_trainer::import::import_files;
    use prewarm_trainer::store::clickhouse::{ClickHouseConfig, ClickHouseStore};
    use std::path::PathBuf;
    use std::time::Duration;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("prewarm-clickhouse-{name}-{}", std::process::id()))
    }

    #[test]
    #[ignore = "starts Debian's clickhouse-server: cargo xtask test runs it"]
    fn the_clickhouse_store_conforms() {
        let server = Server::start(&temp("conforms"));
        let mut store = ClickHouseStore::open(&server.config()).expect("connects");
        event_store_conforms("clickhouse", &mut store);
        // The profile stage fits the same profiles from ClickHouse as from SQLite.
        let mut fresh =
            ClickHouseStore::open(&ClickHouseConfig { database: "fit".into(), ..server.config() }).expect("connects");
        let events = events();
        fresh.insert_batch(None, &events).expect("insert");
        let mut sqlite = Store::in_memory().expect("store");
        sqlite.insert_events(&events).expect("insert");
        let (a, b) = (
            fit(&EventsBefore { store: &fresh, before: u64::from(u32::MAX) }),
            fit(&EventsBefore { store: &sqlite, before: u64::from(u32::MAX) }),
        );
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.model, b.model, "region {}", a.model.region);
        }
    }

    #[test]
    #[ignore = "starts Debian's clickhouse-server: cargo xtask test runs it"]
    fn a_real_log_imported_into_clickhouse_trains_the_model_it_trains_from_sqlite() {
        let server = Server::start(&temp("import"));
        let log = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/apache_logs/access.log.gz");
        let config = TrainerConfig { salt: Some("test-salt".into()), ..TrainerConfig::default() };
        let rules = ClassificationRules::default();
        let mut clickhouse = ClickHouseStore::open(&server.config()).expect("connects");
        let mut sqlite = Store::in_memory().expect("store");
        let into_clickhouse = import_files(&[&log], &mut clickhouse, &config, &rules, |_| {}).expect("imports");
        let into_sqlite = import_files(&[&log], &mut sqlite, &config, &rules, |_| {}).expect("imports");
        assert_eq!(into_clickhouse.imported, into_sqlite.imported);
        assert_eq!(clickhouse.event_count().expect("count"), into_sqlite.imported as u64);
        let now = UnixSeconds(u64::from(u32::MAX) - 1);
        let train = |events: &dyn EventStore| {
            let mut ledger = prewarm_trainer::forecast::ledger::Ledger::default();
            prewarm_trainer::train::train_from(&sqlite, events, &config, &rules, &[], ModelVersion(1), now, &mut ledger)
                .expect("trains")
        };
        let (from_clickhouse, from_sqlite) = (train(&clickhouse), train(&sqlite));
        assert_eq!(from_clickhouse.len(), from_sqlite.len());
        for (a, b) in from_clickhouse.iter().zip(&from_sqlite) {
            assert_eq!(a.model, b.model, "region {}", a.model.region);
            assert!(a.model.k() >= 2);
        }
    }

    #[test]
    #[ignore = "starts Debian's clickhouse-server: cargo xtask test runs it"]
    fn the_services_training_reads_clickhouse_on_its_own_connection_so_ingest_never_waits_for_it() {
        let server = Server::start(&temp("tick"));
        let data_dir = temp("tick-data");
        let config =
            TrainerConfig { data_dir: data_dir.clone(), clickhouse: Some(server.config()), ..Default::default() };
        let mut events = ClickHouseStore::open(&server.config()).expect("connects");
        let (synthetic, _) = synth::generate(&synth::standard_kinds(), "eu", 60, 30, 7, START, 7, 3);
        events.insert_batch(None, &synthetic).expect("inserts");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let state = prewarm_trainer::web::AppState::new(
            config,
            Store::open(&data_dir.join("events.sqlite")).expect("store"),
            ClassificationRules::default(),
            || UnixSeconds(START + 7 * 86_400),
        )
        .with_events(Box::new(events));
        // The writers' lock is held (as by an insert that takes long) for the whole training.
        let writers = state.events.as_ref().expect("event store").lock().expect("lock");
        let (done, finished) = std::sync::mpsc::channel();
        let trainer_state = state.clone();
        std::thread::spawn(move || {
            let mut ledger = prewarm_trainer::forecast::ledger::Ledger::default();
            let run =
                prewarm_trainer::service::training_tick(&trainer_state, UnixSeconds(START + 7 * 86_400), &mut ledger);
            let _ = done.send(run.map(|run| run.published).map_err(|e| e.to_string()));
        });
        // A liveness bound, not a speed target: the training takes seconds; blocked, it never ends.
        let run = finished.recv_timeout(Duration::from_secs(300));
        drop(writers);
        assert_eq!(run, Ok(Ok(true)), "the training waited for the ingest lock, or failed");
        let _ = std::fs::remove_dir_all(data_dir);
    }

    #[test]
    #[ignore = "starts Debian's clickhouse-server: cargo xtask test runs it"]
    fn the_server_ingests_into_clickhouse_answers_503_while_it_is_down_and_counts_a_retry_once() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;
        let mut server = Server::start(&temp("serve"));
        let token = "ingest-token-0123456789";
        let config = TrainerConfig {
            data_dir: temp("serve-data"),
            ingest_token: Some(token.into()),
            clickhouse: Some(server.config()),
            ..TrainerConfig::default()
        };
        let events = ClickHouseStore::open(&server.config()).expect("connects");
        let state = prewarm_trainer::web::AppState::new(
            config,
            Store::in_memory().expect("store"),
            ClassificationRules::default(),
            || UnixSeconds(START + 86_400),
        )
        .with_events(Box::new(events));
        let line = |user: u8, time: u64| {
            format!(
                r#"{{"time":{time},"user":"{}","region":"eu","path":"/watch/1","content_type":"video/mp4","user_agent":"Mozilla/5.0 (iPhone) Mobile","status":200,"bytes":1000,"duration_ms":12}}"#,
                format!("{user:02x}").repeat(32)
            )
        };
        let post = |id: u64| {
            let body = format!("{}\n{}\n", line(1, START + id), line(2, START + id + 60));
            Request::post("/v1/events")
                .header("content-type", "application/x-ndjson")
                .header("authorization", format!("Bearer {token}"))
                .header("x-prewarm-batch-id", id.to_string())
                .body(Body::from(body))
                .expect("request")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let status = |request: Request<Body>| -> StatusCode {
            let answer = runtime.block_on(prewarm_trainer::web::router(state.clone()).oneshot(request));
            answer.expect("answer").status()
        };
        let count = || state.events.as_ref().expect("events").lock().expect("lock").event_count().expect("count");
        assert_eq!(status(post(1)), StatusCode::OK);
        assert_eq!(status(post(1)), StatusCode::OK, "a retry is acknowledged");
        assert_eq!(count(), 2, "…and stored once");
        server.stop();
        assert_eq!(status(post(2)), StatusCode::SERVICE_UNAVAILABLE, "ClickHouse down: not acknowledged");
        server.restart();
        assert_eq!(status(post(2)), StatusCode::OK);
        assert_eq!(count(), 4, "every acknowledged event, once");
        // What the service reports is what ClickHouse holds.
        let status = runtime.block_on(async {
            use http_body_util::BodyExt;
            let request = Request::get("/v1/status").body(Body::empty()).expect("request");
            let answer = prewarm_trainer::web::router(state.clone()).oneshot(request).await.expect("answer");
            let bytes = answer.into_body().collect().await.expect("body").to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
        });
        assert_eq!(status["events"], 4, "{status}");
        // A server drops its state inside an async task when it shuts down: the store's own
        // runtime must not panic there.
        runtime.block_on(async move { drop(state) });
        let _ = std::fs::remove_dir_all(temp("serve-data"));
    }

    #[test]
    #[ignore = "starts Debian's clickhouse-server: cargo xtask test runs it"]
    fn with_clickhouse_down_nothing_is_acknowledged_and_nothing_acknowledged_is_lost() {
        let mut server = Server::start(&temp("down"));
        let events = events();
        let (first, second) = events.split_at(events.len() / 2);
        let mut store = ClickHouseStore::open(&server.config()).expect("connects");
        assert_eq!(store.insert_batch(Some(7), first).expect("acknowledged"), first.len());
        server.stop();
        let refused = store.insert_batch(Some(8), second);
        assert!(refused.is_err(), "an insert into a stopped server was acknowledged");
        server.restart();
        // The client retries the refused batch, and (its answer lost) the acknowledged one.
        assert_eq!(store.insert_batch(Some(8), second).expect("after the restart"), second.len());
        assert_eq!(store.insert_batch(Some(7), first).expect("a retry"), 0);
        assert_eq!(store.event_count().expect("count"), events.len() as u64, "every acknowledged event, once");
    }
}
