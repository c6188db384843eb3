use prewarm_shared::classify::{ContentClass, Device, RequestClass, RouteClass};
use prewarm_shared::signals::{DemandCount, PrewarmReason, PrewarmRequest, SampledState, SignalBatch, UserHash};
use prewarm_shared::{FEATURE_DIM, ProfileId, UnixSeconds};

use super::*;
use crate::ingest::event::Event;

fn event(user: u8, time: u64) -> Event {
    Event {
        time,
        user: UserHash([user; 32]),
        region: "eu".into(),
        class: RequestClass { route: RouteClass(0), content: ContentClass::Text },
        device: Device::Desktop,
        status: 200,
        bytes: 10,
        duration_ms: 1.0,
        rtt_ms: None,
        utc_offset_minutes: None,
        cpu_ms: None,
        memory_mb_s: None,
        value: None,
        robots_txt: false,
    }
}

fn batch(at: u64, requests: u32) -> SignalBatch {
    let mut b = SignalBatch::new(UnixSeconds(at), None);
    b.demand.push(DemandCount { region: "eu".into(), profile: ProfileId(1), minute: at / 60, requests, bytes: 0 });
    b.prewarm.push(PrewarmRequest {
        region: "eu".into(),
        profile: ProfileId(1),
        minute: at / 60,
        observed: 9.0,
        forecast_upper: 3.0,
        reason: PrewarmReason::AboveBand,
    });
    b.states.push(SampledState {
        user: UserHash([7; 32]),
        region: "eu".into(),
        profile: ProfileId(1),
        at: UnixSeconds(at),
        features: [0.0; FEATURE_DIM],
    });
    b
}

fn scanned(store: &Store, sql: &str) -> u64 {
    store.conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("count") as u64
}

#[test]
fn totals_follow_inserts_and_retention_prunes_every_table() {
    let mut store = Store::in_memory().expect("store");
    let day = 86_400;
    store.insert_events(&[event(1, 10 * day), event(2, 10 * day + 5), event(3, 20 * day)]).expect("events");
    store.insert_signals(&batch(10 * day, 5), 10 * day, None).expect("old batch");
    store.insert_signals(&batch(20 * day, 7), 20 * day, None).expect("new batch");
    let summary = store.edge_summary().expect("summary");
    assert_eq!(store.count_events().expect("count"), 3);
    assert_eq!((summary.demand_requests, summary.signal_batches, summary.sampled_states), (12, 2, 2));

    let pruned = store.prune(15 * day).expect("prune");
    assert_eq!(
        pruned,
        Pruned { events: 2, demand: 1, prewarm_signals: 1, sampled_states: 1, edge_reports: 1 },
        "every table with per-user or per-edge rows is pruned"
    );
    let summary = store.edge_summary().expect("summary");
    assert_eq!(store.count_events().expect("count"), scanned(&store, "SELECT COUNT(*) FROM events"));
    assert_eq!(store.count_events().expect("count"), 1);
    assert_eq!(summary.demand_requests, scanned(&store, "SELECT SUM(requests) FROM demand"));
    assert_eq!((summary.demand_requests, summary.signal_batches, summary.sampled_states), (7, 1, 1));
    assert_eq!(summary.prewarm_signals, vec![("above_band".to_owned(), 1)]);
}

#[test]
fn a_batch_is_stored_once_per_signature_across_restarts() {
    let dir = std::env::temp_dir().join(format!("prewarm-receipts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("events.sqlite");
    let _ = std::fs::remove_file(&path);
    let now = 1_700_000_000;
    let receipt = SignalReceipt { signature: [9; 32], signed_at: now };
    {
        let mut store = Store::open(&path).expect("store");
        assert!(store.insert_signals(&batch(now, 4), now, Some(&receipt)).expect("first"));
        assert!(!store.insert_signals(&batch(now, 4), now + 1, Some(&receipt)).expect("again"));
    }
    let mut store = Store::open(&path).expect("reopened");
    assert!(!store.insert_signals(&batch(now, 4), now + 2, Some(&receipt)).expect("after a restart"));
    assert_eq!(store.edge_summary().expect("summary").demand_requests, 4, "counted once");
    let other = SignalReceipt { signature: [8; 32], signed_at: now };
    assert!(store.insert_signals(&batch(now, 4), now + 3, Some(&other)).expect("another batch"));
    // Receipts are forgotten once their timestamps could no longer verify.
    let later = now + 2 * prewarm_shared::signals::MAX_SIGNATURE_SKEW_SECS + 1;
    let third = SignalReceipt { signature: [7; 32], signed_at: later };
    assert!(store.insert_signals(&batch(later, 1), later, Some(&third)).expect("later"));
    assert_eq!(scanned(&store, "SELECT COUNT(*) FROM signal_receipts"), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_store_of_the_previous_schema_gets_its_totals_from_its_rows() {
    let mut store = Store::in_memory().expect("store");
    store.insert_events(&[event(1, 100), event(2, 200)]).expect("events");
    // As a store migrated before totals existed: rerun the migration on the rows.
    store
        .conn
        .execute_batch(
            "DROP TABLE totals; DROP TABLE signal_receipts; ALTER TABLE events DROP COLUMN robots_txt; \
             DROP TABLE signal_batches; DROP TABLE event_batches; PRAGMA user_version = 2;",
        )
        .expect("reset");
    for index in ["demand_minute", "prewarm_signals_received_at", "sampled_states_at", "edge_reports_received_at"] {
        store.conn.execute_batch(&format!("DROP INDEX {index};")).expect("drop index");
    }
    store.migrate().expect("migrates");
    assert_eq!(store.count_events().expect("count"), 2);
}

#[test]
fn the_robots_txt_flag_is_kept_and_older_stores_read_it_as_false() {
    let mut store = Store::in_memory().expect("store");
    let robots = Event { robots_txt: true, ..event(1, 100) };
    store.insert_events(&[robots, event(2, 200)]).expect("events");
    let read: Vec<(u64, bool)> =
        store.events_by_user(None).expect("read").iter().map(|e| (e.time, e.robots_txt)).collect();
    assert_eq!(read, [(100, true), (200, false)]);
    // A store from before the column: its events are kept and read as not robots.txt.
    store
        .conn
        .execute_batch(
            "ALTER TABLE events DROP COLUMN robots_txt; DROP TABLE signal_batches; DROP TABLE event_batches; \
             PRAGMA user_version = 3;",
        )
        .expect("reset");
    store.migrate().expect("migrates");
    assert!(store.events_by_user(None).expect("read").iter().all(|e| !e.robots_txt));
    assert_eq!(store.count_events().expect("count"), 2);
}

#[test]
fn a_batch_delivered_again_under_a_new_signature_counts_once_until_pruned() {
    let mut store = Store::in_memory().expect("store");
    let now = 1_700_000_000;
    let mut first = batch(now, 5);
    first.batch_id = 42;
    let signed = |signature: u8, at: u64| SignalReceipt { signature: [signature; 32], signed_at: at };
    assert!(store.insert_signals(&first, now, Some(&signed(1, now))).expect("first"));
    // A queue's retry: the same batch, signed again minutes later.
    let mut retry = first.clone();
    retry.sent_at = UnixSeconds(now + 600);
    assert!(!store.insert_signals(&retry, now + 600, Some(&signed(2, now + 600))).expect("retry"));
    assert_eq!(store.edge_summary().expect("summary").demand_requests, 5, "counted once");
    // Another batch id is another batch; id 0 (an older edge) is judged by signature alone.
    let mut other = first.clone();
    other.batch_id = 43;
    assert!(store.insert_signals(&other, now + 601, Some(&signed(3, now + 601))).expect("other"));
    let legacy = batch(now, 1);
    assert!(store.insert_signals(&legacy, now + 602, Some(&signed(4, now + 602))).expect("legacy"));
    assert!(store.insert_signals(&legacy, now + 603, Some(&signed(5, now + 603))).expect("legacy again"));
    // Batch ids go with the counts they added.
    store.prune(now + 1).expect("prune");
    assert_eq!(scanned(&store, "SELECT COUNT(*) FROM signal_batches"), 1, "the id received at now is pruned");
}
