//! The service core's periodic training, called as the scheduler calls it, with the clock
//! injected: what one tick prunes, trains and publishes.

use prewarm_shared::UnixSeconds;
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::forecast::ledger::Ledger;
use prewarm_trainer::publish::DirPublisher;
use prewarm_trainer::service::{AppState, training_tick};
use prewarm_trainer::store::Store;
use prewarm_trainer::synth;

/// 2024-01-01 00:00 UTC, a Monday.
const START: u64 = 1_704_067_200;
const DAY: u64 = 86_400;

fn fixed_clock() -> UnixSeconds {
    UnixSeconds(START + 15 * DAY)
}

#[test]
fn a_training_tick_prunes_past_retention_trains_and_publishes_the_next_version() {
    let dir = std::env::temp_dir().join(format!("prewarm-service-tick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let config = TrainerConfig { data_dir: dir.clone(), retention_days: 10, ..TrainerConfig::default() };
    let (events, _) = synth::generate(&synth::standard_kinds(), "eu", 60, 30, 4, START, 14, 7);
    let mut store = Store::open(&config.store_path()).expect("store");
    store.insert_events(&events).expect("insert");
    let before = store.count_events().expect("count");
    let state = AppState::new(config, store, ClassificationRules::default(), fixed_clock);
    let now = fixed_clock();

    let mut ledger = Ledger::default();
    let first = training_tick(&state, now, &mut ledger).expect("a tick");
    assert!(first.published);
    assert_eq!(first.version.0, 1);
    let after = state.store.lock().expect("store").count_events().expect("count");
    let kept = events.iter().filter(|e| e.time >= now.0 - 10 * DAY).count() as u64;
    assert!(after < before, "{before} events before, {after} after");
    assert_eq!(after, kept, "only the events of the last retention_days are kept");
    let (pointer, models) = DirPublisher::new(state.config.models_dir()).current().expect("read").expect("published");
    assert_eq!((pointer.version.0, models.len()), (1, 1));
    let aggregate = ("eu".to_owned(), prewarm_trainer::forecast::ledger::AGGREGATE);
    assert!(!ledger.entries(&aggregate).is_empty(), "the tick's forecasts joined the ledger for the next one");

    // The next tick, an hour on, trains again on what is left and keeps the ledger.
    let second = training_tick(&state, UnixSeconds(now.0 + 3_600), &mut ledger).expect("a second tick");
    assert!(second.version.0 >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}
