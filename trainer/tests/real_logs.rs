//! Profiles on access logs as operators bring them: bots apart, one-request visitors in the
//! new-visitor profile, labels true to their centroids, costs never zero, and a k that does not
//! change with the salt.

use std::collections::HashMap;

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{CostSource, ModelVersion, ProfileRole};
use prewarm_shared::classify::{ClassificationRules, Device};
use prewarm_shared::signals::UserHash;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::import::{VisitorCache, event_from_log};
use prewarm_trainer::ingest::access_log;
use prewarm_trainer::ingest::event::Event;
use prewarm_trainer::model::TrainedRegion;
use prewarm_trainer::profile::describe;
use prewarm_trainer::profile::evaluate::adjusted_rand_index;
use prewarm_trainer::store::Store;

const AFTER_ALL: UnixSeconds = UnixSeconds(2_000_000_000);

fn apache_lines() -> Vec<String> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/apache_logs/access.log.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text).expect("gunzip");
    text.lines().map(str::to_owned).collect()
}

/// Imports log lines (as `prewarm import` turns them into events) and trains once.
fn train_on(lines: &[String], salt: &str) -> (Vec<Event>, TrainedRegion) {
    let config = TrainerConfig { salt: Some(salt.into()), ..TrainerConfig::default() };
    let rules = ClassificationRules::default();
    let mut cache = VisitorCache::default();
    let events: Vec<Event> = lines
        .iter()
        .filter_map(|l| access_log::parse(l).ok())
        .map(|l| event_from_log(&l, salt.as_bytes(), &config, &rules, &mut cache))
        .collect();
    let mut store = Store::in_memory().expect("store");
    store.insert_events(&events).expect("insert");
    let mut trained =
        prewarm_trainer::train::train(&store, &config, &rules, &[], ModelVersion(1), AFTER_ALL).expect("trains");
    assert_eq!(trained.len(), 1);
    (events, trained.remove(0))
}

fn role_of(region: &TrainedRegion, role: ProfileRole) -> Vec<prewarm_shared::ProfileId> {
    region.model.profiles.iter().filter(|p| p.role == role).map(|p| p.id).collect()
}

#[test]
fn on_a_real_log_bots_are_apart_humans_are_pure_and_costs_are_declared_not_zero() {
    let (events, region) = train_on(&apache_lines(), "test-salt");
    let q = &region.quality;
    // ≥ 95 % of the requests sent with an automation User-Agent are in the automated profile.
    let automated = role_of(&region, ProfileRole::Automated);
    assert_eq!(automated.len(), 1, "{:?}", region.model.profiles);
    let profile_of: HashMap<UserHash, _> = region.user_profiles.iter().copied().collect();
    let bots: Vec<&Event> = events.iter().filter(|e| e.device == Device::Bot).collect();
    let placed = bots.iter().filter(|e| profile_of.get(&e.user) == Some(&automated[0])).count();
    let share = placed as f64 / bots.len() as f64;
    assert!(share >= 0.95, "{placed} of {} bot requests in the automated profile", bots.len());
    assert!((q.bot_requests_in_automated.expect("reported") - share).abs() < 1e-9);
    for (i, p) in region.model.profiles.iter().enumerate() {
        let quality = q.profiles.iter().find(|x| x.id == p.id.0).expect("quality per profile");
        let centroid = region.model.raw_centroid(i).expect("centroid");
        // Labels are true to their centroids: a named device holds at least half the share.
        let device = describe::device_shares(&centroid);
        if let Some((name, share)) = device.iter().find(|(name, _)| p.label.starts_with(name)) {
            assert!(*share >= describe::DOMINANT_SHARE, "{}: {name} share {share}", p.label);
        }
        if p.role == ProfileRole::Clustered {
            assert!(quality.device_purity >= 0.8, "{}: device purity {}", p.label, quality.device_purity);
            assert!(!p.label.starts_with("desktop") || device[3].1 < 0.5, "{} is mostly bots", p.label);
        }
        // The log has sizes but no timings: bytes measured, CPU from the declared table, never 0.
        assert!(p.cost.cpu_ms.mean > 0.0 && p.cost.memory_mb_s.mean > 0.0, "{}: {:?}", p.label, p.cost);
        assert_eq!(p.cost.cpu_ms.source, CostSource::Declared, "{}", p.label);
        assert_eq!(p.cost.bytes.source, CostSource::Measured, "{}", p.label);
    }
    assert!(q.k_reason.starts_with("k = "), "{}", q.k_reason);
    // Most visitors of this log make one or two requests: they are the new-visitor profile,
    // which is also where the edge puts a newcomer.
    let new = role_of(&region, ProfileRole::NewVisitors);
    assert_eq!(new, vec![region.model.default_profile]);
}

#[test]
fn the_salt_changes_neither_k_nor_who_is_grouped_with_whom() {
    let lines = apache_lines();
    let salts = ["salt-one", "a-second-salt", "the third salt"];
    let runs: Vec<TrainedRegion> = salts.iter().map(|s| train_on(&lines, s).1).collect();
    let ks: Vec<usize> = runs.iter().map(|r| r.model.k()).collect();
    assert!(ks.iter().all(|k| *k == ks[0]), "k per salt: {ks:?}");
    // The same visitor (address + User-Agent) under each salt.
    let mut visitors: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| access_log::parse(l).ok())
        .map(|l| (l.client.to_owned(), l.user_agent.unwrap_or("").to_owned()))
        .collect();
    visitors.sort();
    visitors.dedup();
    let assignments: Vec<Vec<usize>> = salts
        .iter()
        .zip(&runs)
        .map(|(salt, run)| {
            let of: HashMap<UserHash, usize> = run.user_profiles.iter().map(|(u, p)| (*u, usize::from(p.0))).collect();
            visitors
                .iter()
                .map(|(client, ua)| {
                    let key = format!("{client}\n{ua}");
                    of.get(&UserHash::derive(salt.as_bytes(), key.as_bytes())).copied().unwrap_or(usize::MAX)
                })
                .collect()
        })
        .collect();
    assert!(assignments[0].iter().all(|p| *p != usize::MAX), "every visitor is in a profile");
    for other in &assignments[1..] {
        let ari = adjusted_rand_index(&assignments[0], other);
        assert!(ari >= 0.9, "ARI between salts {ari}");
    }
}

/// A combined-format line at `time` from `client` for `path`, with `tail` after the User-Agent.
fn line(client: &str, time: u64, path: &str, ua: &str, bytes: &str, tail: &str) -> String {
    let t = time - 1_431_820_800; // seconds after 17/May/2015:00:00:00 +0000
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    format!(
        r#"{client} - - [17/May/2015:{h:02}:{m:02}:{s:02} +0000] "GET {path} HTTP/1.1" 200 {bytes} "-" "{ua}"{tail}"#
    )
}

const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36";
const MOBILE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";

#[test]
fn one_request_visitors_are_the_default_profile_and_heavy_users_get_their_own() {
    let day = 1_431_820_800;
    let mut lines = Vec::new();
    // 600 passers-by, one page each, through the day.
    for i in 0..600u64 {
        let ua = if i % 3 == 0 { MOBILE } else { DESKTOP };
        lines.push(line(&format!("10.1.{}.{}", i / 250, i % 250), day + 60 + i * 140, "/article", ua, "5000", ""));
    }
    // 80 heavy readers on desktops and 80 on phones, many pages with assets over the day.
    for i in 0..160u64 {
        let (client, ua) = (format!("10.9.{}.{}", i / 250, i % 250), if i < 80 { DESKTOP } else { MOBILE });
        for session in 0..3u64 {
            let start = day + 3_600 * (2 + session * 6) + i * 17;
            for r in 0..12u64 {
                let path = if r % 3 == 0 { "/article" } else { "/static/site.css" };
                lines.push(line(&client, start + r * 20, path, ua, "8000", ""));
            }
        }
    }
    let (_, region) = train_on(&lines, "salt");
    let new = role_of(&region, ProfileRole::NewVisitors);
    assert_eq!(new, vec![region.model.default_profile], "{:?}", region.model.profiles);
    let of: HashMap<UserHash, _> = region.user_profiles.iter().copied().collect();
    let hash = |client: &str, ua: &str| UserHash::derive(b"salt", format!("{client}\n{ua}").as_bytes());
    let passer_profiles: std::collections::HashSet<_> = (0..600u64)
        .map(|i| of[&hash(&format!("10.1.{}.{}", i / 250, i % 250), if i % 3 == 0 { MOBILE } else { DESKTOP })])
        .collect();
    assert_eq!(passer_profiles.into_iter().collect::<Vec<_>>(), new);
    let heavy = |i: u64| of[&hash(&format!("10.9.{}.{}", i / 250, i % 250), if i < 80 { DESKTOP } else { MOBILE })];
    let (desktop, mobile) = (heavy(0), heavy(80));
    assert!(desktop != mobile && !new.contains(&desktop) && !new.contains(&mobile));
    assert!((0..80).all(|i| heavy(i) == desktop) && (80..160).all(|i| heavy(i) == mobile));
    let label = |id| region.model.profiles.iter().find(|p| p.id == id).map(|p| p.label.clone()).unwrap_or_default();
    assert!(label(desktop).starts_with("desktop") && label(mobile).starts_with("mobile"));
    // Costs: declared per content class (no timings), so pages cost more than the assets' mix.
    let new_cost = region.model.profiles.iter().find(|p| p.id == new[0]).expect("new").cost;
    assert_eq!(new_cost.cpu_ms.source, CostSource::Declared);
    assert!(new_cost.cpu_ms.mean > 0.0);
}

#[test]
fn appended_response_times_give_costs_from_measured_times() {
    let day = 1_431_820_800;
    let mut lines = Vec::new();
    for i in 0..200u64 {
        let client = format!("10.2.0.{}", i % 100);
        // %D in microseconds: the second half of the users' requests are four times slower.
        let micros = if i % 100 < 50 { 10_000 } else { 40_000 };
        for r in 0..5u64 {
            let at = day + 300 * i + r * 30;
            lines.push(line(&client, at, "/article", DESKTOP, "-", &format!(" {micros}")));
        }
    }
    let (events, region) = train_on(&lines, "salt");
    assert!(events.iter().all(|e| e.duration_ms == 10.0 || e.duration_ms == 40.0));
    let config = TrainerConfig::default();
    let mean: f32 = events.iter().map(|e| e.duration_ms).sum::<f32>() / events.len() as f32;
    for p in &region.model.profiles {
        assert_eq!(p.cost.cpu_ms.source, CostSource::Estimated, "from the measured response times");
        assert!(p.cost.cpu_ms.mean > 0.0);
        // Sizes are `-` throughout: bytes come from the declared table.
        assert_eq!(p.cost.bytes.source, CostSource::Declared);
        assert!(p.cost.bytes.mean > 0.0);
    }
    let all_cpu: f32 = region.model.profiles.iter().map(|p| p.cost.cpu_ms.mean * p.share_of_users).sum();
    let expected = mean * config.costs.cpu_ms_per_duration_ms;
    assert!((all_cpu - expected).abs() < 0.05 * expected, "{all_cpu} vs {expected}");
}
