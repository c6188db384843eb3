//! The replay on traces whose answers are known: it runs the product's own stages, causally,
//! and the cluster it drives behaves as Kubernetes' HPA does.

use std::collections::BTreeMap;

use prewarm_shared::artifact::ModelVersion;
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::{UnixSeconds, fixtures};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::forecast::calendar::Occurrence;
use prewarm_trainer::plan::{self, Live};
use prewarm_trainer::simulate::cluster::{Behaviour, Hpa, Metrics};
use prewarm_trainer::simulate::pipeline::{self, Stages, Timeline};
use prewarm_trainer::simulate::store_trace::{self, Resource, StoreStages};
use prewarm_trainer::simulate::{PolicyKind, Report, SimulateError, SimulationConfig, Trace};
use prewarm_trainer::store::Store;
use prewarm_trainer::synth;

/// `days` of per-minute demand with a daily shape and deterministic noise: 30 requests a
/// minute at night, a ten-minute ramp at 08:00 to 170 by day, back down at 20:00.
fn daily_trace(days: usize) -> Trace {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let demand = (0..days * 1440)
        .map(|m| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 21) as f64 - 10.0;
            let minute_of_day = (m % 1440) as f64;
            let ramp = |at: f64| ((minute_of_day - at) / 10.0).clamp(0.0, 1.0);
            let level = 30.0 + 140.0 * (ramp(480.0) - ramp(1200.0));
            Some((level + noise).max(0.0))
        })
        .collect();
    Trace { start: 0, demand }
}

/// The default configuration, training every 6 hours (tests stay quick), scored from day 14.
fn config(delays: Vec<usize>) -> SimulationConfig {
    let trainer = TrainerConfig { train_interval_secs: 6 * 3600, ..TrainerConfig::default() };
    SimulationConfig { unit_rpm: Some(10.0), delays, trainer, ..SimulationConfig::default() }
}

fn replay(trace: &Trace, sim: &SimulationConfig) -> (Report, pipeline::ReadySeries) {
    pipeline::replay_trace(trace, sim, &|k| vec![sim.knob_of(k)], true).expect("replay")
}

fn ready_of<'a>(ready: &'a pipeline::ReadySeries, policy: &str, delay: usize) -> &'a [u32] {
    &ready.iter().find(|(p, d, _)| p == policy && *d == delay).expect(policy).2
}

#[test]
fn the_oracle_is_never_short_and_costs_the_least() {
    let trace = daily_trace(16);
    let (report, _) = replay(&trace, &config(vec![5]));
    let oracle = report.rows.iter().find(|r| r.outcome.policy == "oracle").expect("oracle row");
    assert_eq!(oracle.outcome.under_minutes, 0);
    assert_eq!(oracle.outcome.scored_minutes, 2 * 1440);
    for row in &report.rows {
        assert!(row.outcome.cost_unit_hours >= oracle.outcome.cost_unit_hours, "{}", row.outcome.policy);
    }
    let hpa = report.rows.iter().find(|r| r.outcome.policy == "reactive-hpa").expect("hpa row");
    assert_eq!(hpa.cost_vs_hpa, Some(1.0));
    assert!(hpa.outcome.under_minutes > 0, "a reactive policy with a delay is short on the rising slope");
    // The product trains on the replayed trace: at every 6 hours of the scored days and the one
    // before them.
    assert_eq!(report.trainings, 3 * 4);
    let prewarm = report.rows.iter().find(|r| r.outcome.policy == "prewarm").expect("prewarm row");
    assert!(
        prewarm.outcome.under_minutes < hpa.outcome.under_minutes / 2,
        "forecast ramps are provisioned ahead: {} vs {}",
        prewarm.outcome.under_minutes,
        hpa.outcome.under_minutes
    );
}

#[test]
fn no_policy_reacts_before_its_inputs_could_contain_a_planted_spike() {
    let quiet = daily_trace(16);
    let spike_at = 14 * 1440 + 600;
    let mut spiked = quiet.clone();
    for d in &mut spiked.demand[spike_at..spike_at + 20] {
        *d = Some(2_000.0);
    }
    let sim = config(vec![5]);
    let ((_, before), (_, after)) = (replay(&quiet, &sim), replay(&spiked, &sim));
    for policy in ["reactive-hpa", "seasonal-naive-7d", "aws-predictive", "prewarm", "prewarm-alone"] {
        let (q, s) = (ready_of(&before, policy, 5), ready_of(&after, policy, 5));
        // Capacity at minute t follows from demand before t: up to and including the spike's
        // first minute, nothing can differ — trainings, plans and HPA syncs alike.
        assert_eq!(q[..=spike_at], s[..=spike_at], "{policy} reacted early");
    }
    // The edge signals the spike and prewarm's target rises on the next minute's plan, ready
    // a delay later; a reactive HPA sees it in the next minute's utilisation.
    let (q, s) = (ready_of(&before, "prewarm", 5), ready_of(&after, "prewarm", 5));
    assert!(
        s[spike_at + 7] > q[spike_at + 7],
        "prewarm answered the spike: {} vs {}",
        s[spike_at + 7],
        q[spike_at + 7]
    );
}

#[test]
fn a_longer_delay_leaves_reactive_scaling_shorter() {
    let (report, _) = replay(&daily_trace(16), &config(vec![2, 15]));
    let hpa = |d: usize| {
        report
            .rows
            .iter()
            .find(|r| r.outcome.policy == "reactive-hpa" && r.outcome.delay == d)
            .expect("row")
            .outcome
            .under_minutes
    };
    assert!(hpa(15) > hpa(2), "{} vs {}", hpa(15), hpa(2));
}

#[test]
fn bad_configurations_are_errors() {
    let trace = daily_trace(16);
    let run = |sim: &SimulationConfig, t: &Trace| pipeline::replay_trace(t, sim, &|k| vec![sim.knob_of(k)], false);
    assert!(matches!(run(&config(vec![0]), &trace), Err(SimulateError::BadDelay(0))));
    let sim = SimulationConfig { unit_rpm: Some(-1.0), ..config(vec![5]) };
    assert!(matches!(run(&sim, &trace), Err(SimulateError::BadUnit(_))));
    let short = Trace { start: 0, demand: trace.demand[..10 * 1440].to_vec() };
    assert!(matches!(run(&config(vec![5]), &short), Err(SimulateError::TooShort { .. })));
    assert!("nonsense".parse::<PolicyKind>().is_err());
}

#[test]
fn the_hpa_takes_the_larger_of_the_floor_and_prewarms_metric_so_prewarm_never_has_less() {
    // For any state and inputs, the two-trigger HPA asks for at least what the floor alone
    // asks for: the guarantee behind "never less capacity than the floor".
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..5_000 {
        let (spec, ready) = (1 + next(50) as u32, 1 + next(50) as u32);
        let need = Some(next(8_000) as f64 / 100.0);
        let plan = Some(next(80) as u32);
        let floor =
            Hpa::new(Behaviour::default()).step(spec, ready, &Metrics { need, utilisation: &[0.85], units: &[] });
        let both =
            Hpa::new(Behaviour::default()).step(spec, ready, &Metrics { need, utilisation: &[0.85], units: &[plan] });
        assert!(both >= floor, "spec {spec} ready {ready} need {need:?} plan {plan:?}: {both} < {floor}");
    }
}

#[test]
fn a_calendar_lets_prewarm_provision_for_a_recurring_event_before_it_starts() {
    // A weekly two-hour launch at 14:00 triples demand: days 7 and 14 teach it, day 21 is the
    // test (the scored window is days 14 to 22).
    let mut trace = daily_trace(22);
    let launch = |day: u64| Occurrence {
        name: format!("launch {day}"),
        region: "all".into(),
        start: day * 86_400 + 14 * 3600,
        end: day * 86_400 + 16 * 3600,
        kind: "launch".into(),
        multiplier: None,
    };
    let calendar: Vec<Occurrence> = [7, 14, 21].into_iter().map(launch).collect();
    for e in &calendar {
        for d in &mut trace.demand[(e.start / 60) as usize..(e.end / 60) as usize] {
            *d = d.map(|v| v * 3.0);
        }
    }
    // Judged on the launch's first 15 minutes on day 21, before any reaction to it could be
    // ready: only a forecast that knew it was coming has the capacity there.
    let first = 21 * 1440 + 14 * 60;
    let short_at_start = |calendar: &[Occurrence]| -> f64 {
        let sim = SimulationConfig {
            calendar: calendar.to_vec(),
            policies: vec![PolicyKind::Prewarm],
            score_from: Some(20 * 86_400),
            ..config(vec![5])
        };
        let (_, ready) = replay(&trace, &sim);
        let ready = ready_of(&ready, "prewarm", 5);
        (first..first + 15).map(|t| (trace.demand[t].unwrap_or(0.0) / 10.0 - f64::from(ready[t])).max(0.0)).sum()
    };
    let (without, with) = (short_at_start(&[]), short_at_start(&calendar));
    assert!(without > 10.0, "without the calendar the launch's start is short by {without} unit-minutes");
    assert!(with < 0.1 * without, "with the calendar {with} unit-minutes short at the start, without {without}");
}

/// A store of synthetic users: 16 days of the standard kinds in two regions.
fn synthetic_events(days: u64) -> Vec<prewarm_trainer::ingest::event::Event> {
    let start = 1_704_067_200;
    let kinds = synth::standard_kinds();
    let (mut events, _) = synth::generate(&kinds, "eu", 60, 30, 4, start, days, 11);
    events.extend(synth::generate(&kinds, "us", -300, 30, 4, start, days, 12).0);
    events
}

#[test]
fn what_the_replay_provisions_is_what_the_products_plan_stage_returns() {
    // The replay's first training at instant T, on the events before T, against the product
    // on a store holding exactly those events, with the same configuration.
    let mut events = synthetic_events(16);
    events.sort_by(|a, b| a.user.cmp(&b.user).then(a.time.cmp(&b.time)));
    let rules = ClassificationRules::default();
    let trainer = TrainerConfig::default();
    let t = 1_704_067_200 + 15 * 86_400 + 10 * 3600;
    // No replay unit: the band is chosen in the plan's instances, as the product chooses it.
    let mut stages =
        StoreStages::new(&events, &trainer, &rules, Default::default(), Resource::Requests, Default::default());
    let replayed = stages.train(t).expect("the replay's stages");

    let mut store = Store::in_memory().expect("store");
    let before: Vec<_> = events.iter().filter(|e| e.time < t).cloned().collect();
    store.insert_events(&before).expect("insert");
    let product = prewarm_trainer::train::train(&store, &trainer, &rules, &[], ModelVersion(1), UnixSeconds(t))
        .expect("the product's stages");
    assert_eq!(product.len(), replayed.len());
    let sim = SimulationConfig { unit_rpm: Some(4.0), trainer: trainer.clone(), ..SimulationConfig::default() };
    for (mine, theirs) in replayed.iter().zip(&product) {
        let theirs = store_trace::for_planning(theirs.model.clone(), Resource::Requests);
        assert_eq!(mine.forecast, theirs.forecast, "region {}: the same forecast table", mine.region);
        for minutes in [0u64, 1, 17, 59] {
            let now = UnixSeconds(t + minutes * 60);
            let config = pipeline::replay_plan_config(&sim, 5, 4.0);
            let units = |m: &prewarm_shared::RegionModel| {
                let steps = plan::plan(m, &config, now, &Live::default());
                plan::desired_units(&steps, now, 300, u64::from(m.forecast.step_secs))
            };
            assert_eq!(units(mine), units(&theirs), "region {} at +{minutes} min", mine.region);
            assert!(units(mine).is_some_and(|u| u > 0));
        }
    }
}

#[test]
fn each_request_counts_as_the_edge_would_have_assigned_it_then() {
    // One model from the start; a user of the fixture's first profile makes 10 requests: the
    // first `min_requests − 1` count under the default profile, as at the edge.
    let model = fixtures::region_model("eu");
    let timeline = Timeline { trainings: vec![(0, vec![model.clone()])] };
    let kinds = synth::standard_kinds();
    let (mut events, _) = synth::generate(&kinds[..1], "eu", 60, 1, 1, 0, 1, 3);
    events.sort_by_key(|e| e.time);
    events.truncate(10);
    let config = TrainerConfig::default();
    let minutes = (events.last().map_or(0, |e| e.time) / 60 + 1) as usize;
    let regions = store_trace::regions(&events, &timeline, Resource::Requests, &config, 0, minutes);
    let live = &regions[0].live;
    let default = live.get(&model.default_profile.0).map_or(0.0, |c| c.iter().sum::<f64>());
    let first_minute_of = |profile: u16| live.get(&profile).and_then(|c| c.iter().position(|n| *n > 0.0));
    let min_requests = f64::from(model.assignment.min_requests);
    assert!(default >= min_requests - 1.0, "the first requests count under the default profile: {live:?}");
    let first_event_minute = (events[0].time / 60) as usize;
    assert_eq!(first_minute_of(model.default_profile.0), Some(first_event_minute));
    assert_eq!(live.values().map(|c| c.iter().sum::<f64>()).sum::<f64>(), 10.0, "every request counted once");
    // The demand is what the requests cost: here one each.
    assert_eq!(regions[0].trace.demand.iter().flatten().sum::<f64>(), 10.0);
}

#[test]
fn regions_are_replayed_apart_and_scored_together() {
    let events = synthetic_events(16);
    let sim = SimulationConfig {
        unit_rpm: Some(2.0),
        delays: vec![5],
        policies: vec![PolicyKind::Oracle, PolicyKind::ReactiveHpa, PolicyKind::Prewarm],
        trainer: TrainerConfig { train_interval_secs: 12 * 3600, ..TrainerConfig::default() },
        ..SimulationConfig::default()
    };
    let rules = ClassificationRules::default();
    let report =
        store_trace::replay_store(events, &sim, &rules, Resource::Requests, &|k| vec![sim.knob_of(k)]).expect("replay");
    assert_eq!(report.regions.len(), 2);
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for region in &report.regions {
        for row in &region.report.rows {
            let entry = sums.entry(row.outcome.policy.clone()).or_default();
            entry.0 += row.outcome.cost_unit_hours;
            entry.1 += row.outcome.under_minutes;
        }
    }
    for row in &report.total.rows {
        let (cost, under) = sums[&row.outcome.policy];
        assert!((row.outcome.cost_unit_hours - cost).abs() < 1e-6, "{}", row.outcome.policy);
        assert_eq!(row.outcome.under_minutes, under);
    }
}
