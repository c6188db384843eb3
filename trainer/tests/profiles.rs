//! Training on data with known kinds of users, retraining with drift, and real access logs.

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{CostSource, ModelVersion, ProfileRole};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::import::import_files;
use prewarm_trainer::profile::evaluate::adjusted_rand_index;
use prewarm_trainer::store::Store;
use prewarm_trainer::synth::{self, SynthUser};

/// 2024-01-01 00:00 UTC, a Monday.
const START: u64 = 1_704_067_200;
/// A training instant after every event of these tests (a stage sees the data before `now`).
const AFTER_ALL: UnixSeconds = UnixSeconds(START + 365 * 86_400);

fn store_with(events: &[prewarm_trainer::ingest::event::Event]) -> Store {
    let mut store = Store::in_memory().expect("store");
    store.insert_events(events).expect("insert");
    store
}

fn truth_and_found(users: &[SynthUser], region: &prewarm_trainer::model::TrainedRegion) -> (Vec<usize>, Vec<usize>) {
    let found: std::collections::HashMap<_, _> = region.user_profiles.iter().map(|(u, p)| (*u, p.0 as usize)).collect();
    users.iter().filter_map(|u| Some((u.kind, *found.get(&u.user)?))).unzip()
}

#[test]
fn training_recovers_the_true_kinds_and_picks_k() {
    let kinds = synth::standard_kinds();
    let (events, users) = synth::generate(&kinds, "eu", 60, 40, 4, START, 14, 7);
    let store = store_with(&events);
    let config = TrainerConfig::default();
    let trained = prewarm_trainer::train::train(
        &store,
        &config,
        &ClassificationRules::default(),
        &[],
        ModelVersion(1),
        AFTER_ALL,
    )
    .expect("trains");
    assert_eq!(trained.len(), 1);
    let region = &trained[0];
    assert_eq!(region.model.k(), kinds.len(), "k chosen by silhouette: {:?}", region.model.profiles);
    let (truth, found) = truth_and_found(&users, region);
    let ari = adjusted_rand_index(&truth, &found);
    assert!(ari > 0.9, "adjusted Rand index {ari}");
    let labels: Vec<&str> = region.model.profiles.iter().map(|p| p.label.as_str()).collect();
    assert!(labels.iter().any(|l| l.starts_with("mobile · video")), "{labels:?}");
    assert!(labels.iter().any(|l| l.starts_with("desktop · api")), "{labels:?}");
    // Costs are measured (the synthetic events carry cpu_ms) and differ by kind.
    let api = region.model.profiles.iter().find(|p| p.label.starts_with("desktop · api")).expect("api profile");
    let video = region.model.profiles.iter().find(|p| p.label.starts_with("mobile · video")).expect("video profile");
    assert_eq!(api.cost.cpu_ms.source, CostSource::Measured);
    assert!(api.cost.cpu_ms.median > 2.0 * video.cost.cpu_ms.median);
    assert!(video.cost.bytes.median > 100.0 * api.cost.bytes.median);
    region.model.validate().expect("publishable");
    // Automated clients are apart from the start; a newcomer is never defaulted to them.
    let automated = region.model.automated_profile().expect("the bots' own profile");
    assert_ne!(region.model.default_profile, automated);

    // Each profile has a day of forecasts, and the evening viewers' forecast peaks in the evening.
    let table = &region.model.forecast;
    assert_eq!(table.series.len(), kinds.len());
    assert!(
        table.series.iter().all(|s| s.expected.len() >= 288 && s.upper.iter().zip(&s.expected).all(|(u, e)| u >= e))
    );
    let video_forecast = table.series.iter().find(|s| s.profile == video.id).expect("video forecast");
    let peak_slot =
        (0..288).max_by(|&a, &b| video_forecast.expected[a].total_cmp(&video_forecast.expected[b])).expect("peak");
    let peak_utc_hour = ((table.start.0 + peak_slot as u64 * 300) % 86_400) / 3600;
    // 21:00 local at UTC+1 is 20:00 UTC; sessions last up to an hour or so.
    assert!((18..=22).contains(&peak_utc_hour), "video demand peaks at {peak_utc_hour}:00 UTC");
}

#[test]
fn ids_stay_stable_when_the_same_population_drifts() {
    let kinds = synth::standard_kinds();
    let rules = ClassificationRules::default();
    let config = TrainerConfig::default();
    let (events, _) = synth::generate(&kinds, "eu", 60, 40, 4, START, 14, 1);
    let first = prewarm_trainer::train::train(&store_with(&events), &config, &rules, &[], ModelVersion(1), AFTER_ALL)
        .expect("first training");
    // A month later: the same kinds, other users, shifted hours and heavier sessions.
    let mut drifted = kinds.clone();
    for kind in &mut drifted {
        kind.hour.0 += 1.0;
        kind.session_requests.1 += kind.session_requests.1 / 4;
    }
    let (events, _) = synth::generate(&drifted, "eu", 60, 40, 4, START + 28 * 86_400, 14, 2);
    let previous = vec![first[0].model.clone()];
    let second =
        prewarm_trainer::train::train(&store_with(&events), &config, &rules, &previous, ModelVersion(2), AFTER_ALL)
            .expect("second training");
    let by_label = |r: &prewarm_trainer::model::TrainedRegion, prefix: &str| {
        r.model.profiles.iter().find(|p| p.label.starts_with(prefix)).map(|p| p.id)
    };
    for prefix in ["mobile · video", "desktop · api", "tablet", "automated"] {
        let before = by_label(&first[0], prefix).expect("before");
        assert_eq!(by_label(&second[0], prefix), Some(before), "{prefix} kept its id");
    }
    assert!(second[0].retired.is_empty());
}

#[test]
fn retraining_a_day_later_groups_the_same_users_the_same_way() {
    let kinds = synth::standard_kinds();
    let rules = ClassificationRules::default();
    let config = TrainerConfig::default();
    let (events, users) = synth::generate(&kinds, "eu", 60, 40, 4, START, 15, 3);
    let store = store_with(&events);
    let day14 = UnixSeconds(START + 14 * 86_400);
    let first = prewarm_trainer::train::train(&store, &config, &rules, &[], ModelVersion(1), day14).expect("trains");
    let previous = vec![first[0].model.clone()];
    let day15 = UnixSeconds(START + 15 * 86_400);
    let second =
        prewarm_trainer::train::train(&store, &config, &rules, &previous, ModelVersion(2), day15).expect("trains");
    let stability = second[0].quality.stability.expect("measured against the previous model");
    assert!(stability >= 0.9, "stability ARI {stability}");
    assert_eq!(first[0].quality.stability, None, "nothing to compare the first training with");
    let (truth, found) = truth_and_found(&users, &second[0]);
    let ari = adjusted_rand_index(&truth, &found);
    assert!(ari >= 0.9, "ARI against the true kinds {ari}");
}

#[test]
fn real_access_logs_import_and_train_into_labelled_costed_profiles() {
    let log = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/apache_logs/access.log.gz");
    assert!(log.exists(), "{} is missing", log.display());
    let config = TrainerConfig { salt: Some("test-salt".into()), ..TrainerConfig::default() };
    let rules = ClassificationRules::default();
    let mut store = Store::in_memory().expect("store");
    let summary = import_files(&[log], &mut store, &config, &rules, |_| {}).expect("imports");
    assert_eq!(summary.lines, 10_000);
    assert_eq!(summary.imported + summary.unparseable, 10_000);
    assert_eq!(store.count_events().expect("count"), summary.imported as u64);
    let trained =
        prewarm_trainer::train::train(&store, &config, &rules, &[], ModelVersion(1), AFTER_ALL).expect("trains");
    let region = &trained[0];
    assert!(region.users > 1_000, "{} users", region.users);
    assert!(region.model.k() >= 2);
    for p in &region.model.profiles {
        assert!(p.label.contains(" · "), "{}", p.label);
        // Logs carry sizes but no timings: bytes are measured, CPU declared, memory estimated.
        assert_eq!(p.cost.bytes.source, CostSource::Measured);
        assert_eq!(p.cost.cpu_ms.source, CostSource::Declared);
        assert_eq!(p.cost.memory_mb_s.source, CostSource::Estimated);
    }
    let labels: std::collections::HashSet<&str> = region.model.profiles.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels.len(), region.model.k(), "labels are unique");
    let shares: f32 = region.model.profiles.iter().map(|p| p.share_of_users).sum();
    assert!((shares - 1.0).abs() < 1e-3, "every user is in a profile");
    // Every visitor who read /robots.txt (180 requests in this log) is in the automated profile,
    // whatever User-Agent it sent.
    let readers: std::collections::HashSet<_> =
        store.events_by_user(None).expect("events").iter().filter(|e| e.robots_txt).map(|e| e.user).collect();
    assert!(readers.len() >= 10, "{} robots.txt readers", readers.len());
    let automated = region.model.profiles.iter().find(|p| p.role == ProfileRole::Automated).expect("automated").id;
    let misplaced: Vec<_> =
        region.user_profiles.iter().filter(|(u, p)| readers.contains(u) && *p != automated).collect();
    assert!(
        misplaced.is_empty(),
        "{} of {} robots.txt readers outside the automated profile",
        misplaced.len(),
        readers.len()
    );
}

#[test]
fn priorities_come_from_operator_rules_then_value_then_bots_with_their_reasons() {
    use prewarm_shared::artifact::PriorityClass;
    use prewarm_shared::classify::ContentClass;
    use prewarm_trainer::profile::priority::{PriorityConfig, PriorityRule};

    let kinds = synth::standard_kinds();
    let (mut events, _) = synth::generate(&kinds, "eu", 60, 40, 4, START, 14, 7);
    // API calls carry revenue: the value field of the events schema.
    for e in events.iter_mut().filter(|e| e.class.content == ContentClass::Api) {
        e.value = Some(2.0);
    }
    let store = store_with(&events);
    let config = TrainerConfig {
        priority: PriorityConfig {
            value_critical_per_request: Some(1.0),
            rules: vec![PriorityRule {
                route: None,
                content: Some("video".into()),
                label: None,
                min_share: 0.5,
                class: PriorityClass::Critical,
            }],
            ..PriorityConfig::default()
        },
        ..TrainerConfig::default()
    };
    let rules = ClassificationRules::default();
    let trained =
        prewarm_trainer::train::train(&store, &config, &rules, &[], ModelVersion(1), AFTER_ALL).expect("trains");
    let region = &trained[0];
    let find = |prefix: &str| {
        let p = region.model.profiles.iter().find(|p| p.label.starts_with(prefix)).expect(prefix);
        let why = region.profiles.get(&p.id).expect("a reason").priority_reason.clone();
        (p.priority, why)
    };
    let (video, why) = find("mobile · video");
    assert_eq!(video, PriorityClass::Critical);
    assert!(why.starts_with("rule 1: content `video` is"), "{why}");
    let (api, why) = find("desktop · api");
    assert_eq!(api, PriorityClass::Critical);
    assert!(why.starts_with("value "), "{why}");
    let (bots, why) = find("automated");
    assert_eq!(bots, PriorityClass::BestEffort);
    assert!(why.starts_with("automated clients"), "{why}");
    let (readers, why) = find("tablet");
    assert_eq!((readers, why.as_str()), (PriorityClass::Standard, "default"));

    // A rule naming a route class the classification rules lack is an error, not a silent no-op.
    let mut bad = config.clone();
    bad.priority.rules[0].route = Some("checkout".into());
    let err = prewarm_trainer::train::train(&store, &bad, &rules, &[], ModelVersion(1), AFTER_ALL)
        .expect_err("unknown route");
    assert!(err.to_string().contains("checkout"), "{err}");
}

#[test]
fn a_young_region_borrows_a_mature_regions_shape_in_its_own_local_time() {
    use prewarm_trainer::config::RegionConfig;
    let kinds = synth::standard_kinds();
    // eu (UTC+1) has three weeks; ap (UTC+9) opened 11 hours ago, local noon to 23:00.
    let (mut events, _) = synth::generate(&kinds, "eu", 60, 60, 4, START, 21, 7);
    let ap_day = START + 20 * 86_400;
    let (ap, _) = synth::generate(&kinds, "ap", 540, 60, 4, ap_day, 1, 8);
    events.extend(ap.into_iter().filter(|e| (ap_day + 3 * 3600..ap_day + 14 * 3600).contains(&e.time)));
    let store = store_with(&events);
    let region = |name: &str, offset| RegionConfig { name: name.into(), utc_offset_minutes: offset, cidrs: vec![] };
    let config = TrainerConfig { regions: vec![region("eu", 60), region("ap", 540)], ..TrainerConfig::default() };
    let now = UnixSeconds(START + 21 * 86_400);
    let trained =
        prewarm_trainer::train::train(&store, &config, &ClassificationRules::default(), &[], ModelVersion(1), now)
            .expect("trains");
    let find = |name: &str| trained.iter().find(|r| r.model.region == name).expect(name);
    let (eu, ap) = (find("eu"), find("ap"));
    assert!(eu.profiles.values().all(|p| p.forecast_note.is_none()), "a mature region forecasts from its own history");
    let video = |r: &prewarm_trainer::model::TrainedRegion| {
        let p = r.model.profiles.iter().find(|p| p.label.starts_with("mobile · video")).expect("video profile");
        let s = r.model.forecast.series.iter().find(|s| s.profile == p.id).expect("series");
        (p.id, s.expected.clone())
    };
    let ((ap_id, ap_video), (_, eu_video)) = (video(ap), video(eu));
    let note = ap.profiles[&ap_id].forecast_note.clone().expect("the video profile borrowed");
    assert!(note.contains("region eu") && note.contains("+480 min"), "{note}");
    // eu's shape, 8 hours later in UTC (the same local time), scaled by one factor.
    let ratios: Vec<f32> =
        (0..288).filter(|k| eu_video[(k + 96) % 288] > 1.0).map(|k| ap_video[k] / eu_video[(k + 96) % 288]).collect();
    let (lo, hi) = ratios.iter().fold((f32::MAX, f32::MIN), |(a, b), r| (a.min(*r), b.max(*r)));
    assert!(!ratios.is_empty() && hi - lo < 1e-3 * hi.max(1.0), "one scale factor: {lo}..{hi}");
    let peak = (0..288).max_by(|&a, &b| ap_video[a].total_cmp(&ap_video[b])).expect("peak");
    let peak_utc_hour = ((now.0 + peak as u64 * 300) % 86_400) / 3600;
    // 21:00 at UTC+9 is 12:00 UTC.
    assert!((10..=14).contains(&peak_utc_hour), "ap's video demand peaks at {peak_utc_hour}:00 UTC");
}

#[test]
fn the_edges_counts_carry_a_profiles_series_past_the_last_event() {
    use prewarm_shared::signals::{DemandCount, SignalBatch};
    let kinds = synth::standard_kinds();
    let (all, _) = synth::generate(&kinds, "eu", 60, 40, 4, START, 16, 9);
    // Events reach the store for 15 days; the 16th is known only from the edge's counts.
    let cut = START + 15 * 86_400;
    let (events, edge_day): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e.time < cut);
    let mut store = store_with(&events);
    let config = TrainerConfig::default();
    let rules = ClassificationRules::default();
    let now = UnixSeconds(START + 16 * 86_400);
    let first = prewarm_trainer::train::train(&store, &config, &rules, &[], ModelVersion(1), now).expect("trains");
    let models: Vec<_> = first.iter().map(|r| r.model.clone()).collect();
    let api = models[0].profiles.iter().find(|p| p.label.starts_with("desktop · api")).expect("api").id;
    let api_users: std::collections::HashSet<_> =
        first[0].user_profiles.iter().filter(|(_, p)| *p == api).map(|(u, _)| *u).collect();
    // The next day's forecast requests of the profile.
    let level = |trained: &[prewarm_trainer::model::TrainedRegion]| -> f64 {
        let s = trained[0].model.forecast.of(api).expect("series");
        s.expected.iter().map(|v| f64::from(*v)).sum()
    };
    let before = level(&first);
    // On the 16th day the API users' demand tripled; the edge counted it per minute.
    let mut per_minute: std::collections::BTreeMap<u64, u32> = std::collections::BTreeMap::new();
    for e in edge_day.iter().filter(|e| api_users.contains(&e.user)) {
        *per_minute.entry(e.time / 60).or_default() += 3;
    }
    let mut batch = SignalBatch::new(now, Some(ModelVersion(1)));
    for (minute, requests) in per_minute {
        batch.demand.push(DemandCount { region: "eu".into(), profile: api, minute, requests, bytes: 0 });
    }
    store.insert_signals(&batch, now.0, None).expect("store the counts");
    let second = prewarm_trainer::train::train(&store, &config, &rules, &models, ModelVersion(2), now).expect("trains");
    let label = |trained: &[prewarm_trainer::model::TrainedRegion]| {
        trained[0].model.profiles.iter().find(|p| p.id == api).map(|p| p.label.clone())
    };
    assert_eq!(label(&second), label(&first), "stable ids");
    // Without the counts the 16th day is unknown (a gap, imputed from the week before); with
    // them, a day at three times the level: the forecast follows.
    let after = level(&second);
    assert!(after > 1.15 * before, "the API profile's forecast with the edge's counts: {after} vs {before}");
}

#[test]
fn a_log_in_the_operators_own_format_gives_costs_from_its_response_times() {
    use prewarm_trainer::ingest::access_log;
    // The reference log rewritten into two custom layouts that carry a response time where the
    // combined parser would never look: nginx with `$request_time` (seconds) in the middle,
    // Apache with `%D` (microseconds) first.
    let log = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/apache_logs/access.log.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&log).expect("log")),
        &mut text,
    )
    .expect("gunzip");
    let layouts = [
        (
            r#"$remote_addr [$time_local] $request_time "$request" $status $body_bytes_sent "$http_user_agent""#,
            (|l: &access_log::AccessLine<'_>, ms: u64, date: &str| {
                format!(
                    "{} [{date}] {}.{:03} \"{} {} HTTP/1.1\" {} {} \"{}\"",
                    l.client,
                    ms / 1000,
                    ms % 1000,
                    l.method,
                    l.path,
                    l.status,
                    l.bytes,
                    l.user_agent.unwrap_or("-")
                )
            }) as fn(&access_log::AccessLine<'_>, u64, &str) -> String,
        ),
        (r#"%D %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#, |l, ms, date| {
            format!(
                "{} {} - - [{date}] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
                ms * 1000,
                l.client,
                l.method,
                l.path,
                l.status,
                l.bytes,
                l.user_agent.unwrap_or("-")
            )
        }),
    ];
    for (format, write) in layouts {
        let dir = std::env::temp_dir().join(format!("prewarm-log-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("custom.log");
        let mut custom = String::new();
        let mut written = 0;
        for line in text.lines() {
            let Ok(l) = access_log::parse(line) else { continue };
            let date = &line[line.find('[').expect("[") + 1..line.find(']').expect("]")];
            // 5 ms plus one per 10 kB: bigger responses took longer.
            let ms = 5 + l.bytes / 10_000;
            custom.push_str(&write(&l, ms, date));
            custom.push('\n');
            written += 1;
        }
        std::fs::write(&path, custom).expect("write");
        let config = TrainerConfig {
            salt: Some("log-format-test-salt".into()),
            log_format: Some(format.into()),
            ..TrainerConfig::default()
        };
        config.validate().expect("the format compiles");
        let rules = ClassificationRules::default();
        let mut store = Store::in_memory().expect("store");
        let summary = import_files(&[&path], &mut store, &config, &rules, |_| {}).expect("imports");
        assert_eq!((summary.imported, summary.unparseable), (written, 0), "{format}");
        let trained =
            prewarm_trainer::train::train(&store, &config, &rules, &[], ModelVersion(1), AFTER_ALL).expect("trains");
        for p in &trained[0].model.profiles {
            // From the log's own response times, not the declared defaults.
            assert_eq!(p.cost.cpu_ms.source, CostSource::Estimated, "{format}: {}", p.label);
            assert!(p.cost.cpu_ms.mean >= 5.0 * 0.3 * 0.99, "{format}: {} {}", p.label, p.cost.cpu_ms.mean);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A source that counts how the profile stage reads it.
struct Counting<'a> {
    inner: prewarm_trainer::store::InMemory<'a>,
    passes: std::cell::Cell<usize>,
    largest_read: std::cell::Cell<usize>,
}

impl prewarm_trainer::store::UserEvents for Counting<'_> {
    fn for_each_user(
        &self,
        visit: &mut dyn FnMut(&[prewarm_trainer::ingest::event::Event]),
    ) -> Result<(), prewarm_trainer::store::StoreError> {
        self.passes.set(self.passes.get() + 1);
        self.inner.for_each_user(&mut |user| {
            self.largest_read.set(self.largest_read.get().max(user.len()));
            visit(user)
        })
    }
    fn users_per_region(&self) -> Result<std::collections::BTreeMap<String, u64>, prewarm_trainer::store::StoreError> {
        self.inner.users_per_region()
    }
    fn first_time(&self) -> Result<Option<u64>, prewarm_trainer::store::StoreError> {
        self.inner.first_time()
    }
}

#[test]
fn a_region_larger_than_the_fit_is_sampled_for_the_fit_and_every_user_is_still_profiled() {
    let kinds = synth::standard_kinds();
    let (mut events, users) = synth::generate(&kinds, "eu", 60, 40, 4, START, 14, 7);
    events.sort_by(|a, b| a.user.0.cmp(&b.user.0).then(a.time.cmp(&b.time)));
    let mut config = TrainerConfig::default();
    config.profiles.max_users_per_fit = 75;
    let source = Counting {
        inner: prewarm_trainer::store::InMemory(&events),
        passes: std::cell::Cell::new(0),
        largest_read: std::cell::Cell::new(0),
    };
    let fitted = prewarm_trainer::profile::fit(
        &source,
        &config.profile_settings(),
        &ClassificationRules::default(),
        &[],
        ModelVersion(1),
        AFTER_ALL,
    )
    .expect("fits");
    // Two passes, each handed one user's events at a time, never the window's.
    let most_of_one_user = users.iter().map(|u| events.iter().filter(|e| e.user == u.user).count()).max();
    assert_eq!(source.passes.get(), 2);
    assert_eq!(Some(source.largest_read.get()), most_of_one_user);
    assert!(source.largest_read.get() < events.len() / 10);
    // Every user is assigned and every request counted, though the fit saw a sample.
    let region = &fitted[0];
    assert!(users.len() > 2 * config.profiles.max_users_per_fit, "{} users", users.len());
    assert_eq!(region.users, users.len());
    assert_eq!(region.user_profiles.len(), users.len());
    assert!(region.quality.k_reason.contains("fitted on a uniform sample of"), "{}", region.quality.k_reason);
    let counted: u64 = region.profiles.values().flat_map(|p| p.per_minute.values()).map(|n| u64::from(*n)).sum();
    assert_eq!(counted, events.len() as u64);
    let shares: f32 = region.model.profiles.iter().map(|p| p.share_of_users).sum();
    assert!((shares - 1.0).abs() < 1e-3);
    // A sample of the well-separated kinds still finds them.
    let found: std::collections::HashMap<_, _> = region.user_profiles.iter().map(|(u, p)| (*u, p.0 as usize)).collect();
    let (truth, found): (Vec<usize>, Vec<usize>) =
        users.iter().filter_map(|u| Some((u.kind, *found.get(&u.user)?))).unzip();
    let ari = adjusted_rand_index(&truth, &found);
    assert!(ari > 0.8, "adjusted Rand index {ari} from a sample of {}", config.profiles.max_users_per_fit);
}
