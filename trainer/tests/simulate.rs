//! The replay simulator on synthetic traces whose answers are known.

use prewarm_trainer::simulate::{self, Forecasts, PolicyKind, SimulationConfig, Trace, replay};

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
    Trace { start: 0, demand, profiles: Vec::new() }
}

fn config(delays: Vec<usize>) -> SimulationConfig {
    SimulationConfig {
        unit_rpm: Some(10.0),
        delays,
        warmup_days: 14,
        policies: PolicyKind::ALL.to_vec(),
        calendar: Vec::new(),
        knobs: Vec::new(),
    }
}

#[test]
fn the_oracle_is_never_short_and_costs_the_least() {
    let trace = daily_trace(16);
    let report = simulate::simulate(&trace, &config(vec![5])).expect("simulate");
    let oracle = report.rows.iter().find(|r| r.outcome.policy == "oracle").expect("oracle row");
    assert_eq!(oracle.outcome.under_minutes, 0);
    assert_eq!(oracle.outcome.under_unit_minutes, 0.0);
    assert_eq!(oracle.outcome.scored_minutes, 2 * 1440);
    for row in &report.rows {
        assert!(
            row.outcome.cost_unit_hours >= oracle.outcome.cost_unit_hours,
            "{} costs {} < oracle {}",
            row.outcome.policy,
            row.outcome.cost_unit_hours,
            oracle.outcome.cost_unit_hours
        );
    }
    // Everyone else is judged against the same minutes and has ratios to both references.
    assert!(report.rows.iter().all(|r| r.outcome.scored_minutes == 2 * 1440 && r.cost_vs_oracle.is_some()));
    let hpa = report.rows.iter().find(|r| r.outcome.policy == "reactive-hpa").expect("hpa row");
    assert_eq!(hpa.cost_vs_hpa, Some(1.0));
    assert!(hpa.outcome.under_minutes > 0, "a reactive policy with a delay is short on the rising slope");
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
    let model = sim.model(&quiet, 5).expect("model");
    let (before, after) =
        (Forecasts::build(&quiet, &PolicyKind::ALL, &[]), Forecasts::build(&spiked, &PolicyKind::ALL, &[]));
    // The oracle sees the future and static-peak the scored window's peak by definition.
    for kind in [PolicyKind::ReactiveHpa, PolicyKind::SeasonalNaive7d, PolicyKind::AwsPredictive, PolicyKind::Prewarm] {
        let (quiet_targets, _) = replay(kind, None, &quiet, &model, &before);
        let (spiked_targets, _) = replay(kind, None, &spiked, &model, &after);
        // N(t) may use demand before t only: up to and including the spike's first minute,
        // nothing can differ.
        assert_eq!(quiet_targets[..=spike_at], spiked_targets[..=spike_at], "{kind:?} reacted early");
        if kind != PolicyKind::SeasonalNaive7d {
            assert!(
                spiked_targets[spike_at + 1] > quiet_targets[spike_at + 1],
                "{kind:?} did not see the spike one minute later"
            );
        }
    }
}

#[test]
fn a_longer_delay_leaves_reactive_scaling_shorter() {
    let trace = daily_trace(16);
    let sim = SimulationConfig { policies: vec![PolicyKind::ReactiveHpa], ..config(vec![1, 5, 15]) };
    let report = simulate::simulate(&trace, &sim).expect("simulate");
    let under: Vec<f64> = report
        .rows
        .iter()
        .filter(|r| r.outcome.policy == "reactive-hpa")
        .map(|r| r.outcome.under_unit_minutes)
        .collect();
    assert_eq!(under.len(), 3);
    assert!(under[0] < under[1] && under[1] < under[2], "under-provisioned unit-minutes by delay: {under:?}");
}

#[test]
fn bad_configurations_are_errors() {
    let trace = daily_trace(15);
    assert!(matches!(config(vec![0]).model(&trace, 0), Err(simulate::SimulateError::BadDelay(0))));
    let sim = SimulationConfig { unit_rpm: Some(-1.0), ..config(vec![5]) };
    assert!(matches!(sim.model(&trace, 5), Err(simulate::SimulateError::BadUnit(_))));
    let short = daily_trace(10);
    assert!(matches!(config(vec![5]).model(&short, 5), Err(simulate::SimulateError::TooShort { .. })));
    assert!("nonsense".parse::<PolicyKind>().is_err());
}

#[test]
fn a_calendar_lets_prewarm_provision_for_a_recurring_event_before_it_starts() {
    use prewarm_trainer::forecast::calendar::Occurrence;
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
    let sim = config(vec![5]);
    let model = sim.model(&trace, 5).expect("model");
    let first = (21 * 1440 + 14 * 60) as usize;
    let short_at_start = |calendar: &[Occurrence]| -> f64 {
        let forecasts = Forecasts::build(&trace, &[PolicyKind::Prewarm], calendar);
        let (_, ready) = replay(PolicyKind::Prewarm, None, &trace, &model, &forecasts);
        (first..first + 15)
            .map(|t| (trace.demand[t].unwrap_or(0.0) / model.unit_rpm - f64::from(ready[t])).max(0.0))
            .sum()
    };
    let (without, with) = (short_at_start(&[]), short_at_start(&calendar));
    assert!(without > 50.0, "without the calendar the launch's start is short by {without} unit-minutes");
    assert!(with < 0.1 * without, "with the calendar {with} unit-minutes short at the start, without {without}");
}

/// Two profiles with opposite days: `video` (a request costs 8) in the evening, `api` (cost 1)
/// in office hours; `days` of Unix-time request counts per minute, with deterministic noise.
fn two_profiles(days: u64) -> Vec<simulate::ProfilePoints> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 7) as f64 - 3.0
    };
    let day_shape = |minute: u64, peak_hour: f64| {
        let hour = (minute % 1440) as f64 / 60.0;
        let distance = ((hour - peak_hour + 12.0).rem_euclid(24.0) - 12.0).abs();
        5.0 + 40.0 * (-distance * distance / 8.0).exp()
    };
    let (mut video, mut api) = (Vec::new(), Vec::new());
    for m in 0..days * 1440 {
        video.push((m * 60, (day_shape(m, 21.0) + noise()).max(0.0).round()));
        api.push((m * 60, (day_shape(m, 11.0) + noise()).max(0.0).round()));
    }
    vec![("video".into(), 8.0, video), ("api".into(), 1.0, api)]
}

#[test]
fn a_profiled_trace_weighs_each_request_by_its_profile_cost() {
    let profiles = vec![
        ("a".to_owned(), 2.0, vec![(60, 3.0), (95, 1.0), (240, 5.0)]),
        ("b".to_owned(), 0.5, vec![(120, 4.0), (61, 2.0)]),
    ];
    let trace = Trace::from_profiles(&profiles).expect("trace");
    assert_eq!(trace.start, 60);
    // Minutes 60, 120, 180, 240: a gives 4, 0, 0, 5 requests; b 2, 4, 0, 0.
    assert_eq!(trace.demand, vec![Some(4.0 * 2.0 + 2.0 * 0.5), Some(4.0 * 0.5), Some(0.0), Some(10.0)]);
    assert_eq!(trace.profiles[0].requests, vec![Some(4.0), Some(0.0), Some(0.0), Some(5.0)]);
    assert_eq!(trace.profiles[1].requests, vec![Some(2.0), Some(4.0), Some(0.0), Some(0.0)]);
    let bad = vec![("c".to_owned(), f64::NAN, vec![(0, 1.0)])];
    assert!(matches!(Trace::from_profiles(&bad), Err(simulate::SimulateError::BadWeight { .. })));
    assert!(Trace::from_profiles(&[]).is_err());
}

#[test]
fn regions_are_replayed_apart_and_scored_together() {
    let east = Trace::from_profiles(&two_profiles(16)).expect("east");
    let mut west_profiles = two_profiles(16);
    west_profiles.truncate(1);
    let west = Trace::from_profiles(&west_profiles).expect("west");
    let sim = SimulationConfig { unit_rpm: None, ..config(vec![5, 15]) };
    let regions = vec![("east".to_owned(), east.clone()), ("west".to_owned(), west.clone())];
    let report = simulate::simulate_regions(&regions, &sim).expect("simulate");
    assert_eq!(report.regions.len(), 2);
    // Each region at its own C (its median / 10), exactly as a replay of that region alone.
    let alone = simulate::simulate(&west, &sim).expect("west alone");
    assert_eq!(report.regions[1].report.unit_rpm, alone.unit_rpm);
    assert!((alone.unit_rpm - west.median_minute() / 10.0).abs() < 1e-9);
    for row in &report.total.rows {
        let o = &row.outcome;
        let parts: Vec<&simulate::Row> = report
            .regions
            .iter()
            .flat_map(|r| &r.report.rows)
            .filter(|r| r.outcome.policy == o.policy && r.outcome.delay == o.delay)
            .collect();
        assert_eq!(parts.len(), 2, "{} at D = {}", o.policy, o.delay);
        let cost: f64 = parts.iter().map(|r| r.outcome.cost_unit_hours).sum();
        assert!((o.cost_unit_hours - cost).abs() < 1e-6);
        assert_eq!(o.under_minutes, parts.iter().map(|r| r.outcome.under_minutes).sum::<usize>());
        assert_eq!(o.scored_minutes, 2 * 2 * 1440);
        if o.policy == "oracle" {
            assert_eq!(o.under_minutes, 0);
        }
    }
    let hpa = |delay| {
        report.total.rows.iter().find(|r| r.outcome.policy == "reactive-hpa" && r.outcome.delay == delay).expect("hpa")
    };
    let prewarm =
        report.total.rows.iter().find(|r| r.outcome.policy == "prewarm" && r.outcome.delay == 5).expect("prewarm");
    let expected = prewarm.outcome.under_minutes as f64 / hpa(5).outcome.under_minutes as f64;
    assert_eq!(prewarm.under_minutes_vs_hpa, Some(expected));
    assert!(hpa(15).outcome.under_unit_minutes > hpa(5).outcome.under_unit_minutes);
    // Per-profile forecasts of a smooth daily shape keep prewarm ahead of reactive scaling.
    assert!(expected < 0.5, "prewarm under-provisioned {expected}× HPA's minutes");
}

#[test]
fn per_profile_prewarm_sees_a_spike_in_one_profile_only_after_it_happened() {
    let quiet = Trace::from_profiles(&two_profiles(16)).expect("trace");
    let spike_at = 14 * 1440 + 900;
    let mut spiked = quiet.clone();
    for t in spike_at..spike_at + 20 {
        // 150 more api requests, each weighing 1.
        spiked.profiles[1].requests[t] = spiked.profiles[1].requests[t].map(|r| r + 150.0);
        spiked.demand[t] = spiked.demand[t].map(|d| d + 150.0);
    }
    let sim = config(vec![5]);
    let model = sim.model(&quiet, 5).expect("model");
    let policies = [PolicyKind::Prewarm];
    let (before, after) = (Forecasts::build(&quiet, &policies, &[]), Forecasts::build(&spiked, &policies, &[]));
    let (quiet_targets, _) = replay(PolicyKind::Prewarm, None, &quiet, &model, &before);
    let (spiked_targets, _) = replay(PolicyKind::Prewarm, None, &spiked, &model, &after);
    assert_eq!(quiet_targets[..=spike_at], spiked_targets[..=spike_at], "prewarm reacted early");
    // The api profile ran far above its band: the edge's signal raises the plan next minute.
    assert!(spiked_targets[spike_at + 1] > quiet_targets[spike_at + 1]);
}
