//! What every source of events the profile stage trains on must do (`store::UserEvents`), run
//! against each one this build has: events in memory, and the SQLite store streamed in user
//! order. A new backend passes the same checks before training may read it.

use std::collections::{BTreeMap, BTreeSet};

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::ModelVersion;
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::ingest::event::Event;
use prewarm_trainer::store::{EventsBefore, InMemory, Store, UserEvents};
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

#[test]
fn the_profile_stage_fits_the_same_profiles_from_every_source() {
    let events = events();
    let mut store = Store::in_memory().expect("store");
    store.insert_events(&events).expect("insert");
    let config = TrainerConfig::default();
    let fit = |source: &dyn UserEvents| {
        prewarm_trainer::profile::fit(
            source,
            &config.profile_settings(),
            &ClassificationRules::default(),
            &[],
            ModelVersion(1),
            UnixSeconds(START + 8 * 86_400),
        )
        .expect("fits")
    };
    let (memory, sqlite) = (fit(&InMemory(&events)), fit(&EventsBefore { store: &store, before: u64::MAX / 2 }));
    assert_eq!(memory.len(), sqlite.len());
    for (a, b) in memory.iter().zip(&sqlite) {
        assert_eq!(a.model, b.model, "region {}", a.model.region);
        assert_eq!(a.user_profiles, b.user_profiles);
        assert_eq!(a.users, b.users);
    }
}
