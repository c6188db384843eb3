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
    Trace { start: 0, demand }
}

fn config(delays: Vec<usize>) -> SimulationConfig {
    SimulationConfig {
        unit_rpm: Some(10.0),
        delays,
        warmup_days: 14,
        policies: PolicyKind::ALL.to_vec(),
        calendar: Vec::new(),
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
    let run = |calendar: Vec<Occurrence>| {
        let sim = SimulationConfig { policies: vec![PolicyKind::Prewarm], calendar, ..config(vec![5]) };
        let report = simulate::simulate(&trace, &sim).expect("simulate");
        report.rows.into_iter().find(|r| r.outcome.policy == "prewarm").expect("prewarm row").outcome
    };
    let (without, with) = (run(Vec::new()), run(calendar));
    assert!(
        with.under_unit_minutes < 0.5 * without.under_unit_minutes,
        "with the calendar {} under-provisioned unit-minutes, without {}",
        with.under_unit_minutes,
        without.under_unit_minutes
    );
}
