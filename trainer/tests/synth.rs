//! The synthetic workload's scenario: growth, users arriving during the history, and a weekly
//! event that multiplies one kind's demand in one region.

use std::collections::HashMap;

use prewarm_trainer::synth::{self, Scenario, SynthEvent};

/// 2024-01-01 00:00 UTC, a Monday.
const START: u64 = 1_704_067_200;

#[test]
fn growth_new_users_and_a_weekly_event_shape_the_history() {
    let kinds = synth::standard_kinds();
    let days = 28;
    // Saturdays at 20:00 UTC, 90 minutes, video viewers in eu four times as many.
    let starts: Vec<u64> = [5u64, 12, 19, 26].iter().map(|d| START + d * 86_400 + 20 * 3600).collect();
    let scenario = Scenario {
        growth_per_week: 0.2,
        new_users: 0.3,
        event: Some(SynthEvent { region: "eu".into(), kind: 0, starts: starts.clone(), minutes: 90, multiplier: 4.0 }),
    };
    let (requests, users) = synth::generate_scenario(&kinds, "eu", 60, 200, 9, START, days, 3, &scenario);
    let (plain, _) = synth::generate_scenario(&kinds, "eu", 60, 200, 9, START, days, 3, &Scenario::default());

    // Growth: the last week has clearly more requests than the first.
    let week = |rs: &[synth::SynthRequest], w: u64| {
        rs.iter().filter(|r| (START + w * 7 * 86_400..START + (w + 1) * 7 * 86_400).contains(&r.event.time)).count()
    };
    assert!(
        week(&requests, 3) as f64 > 1.4 * week(&requests, 0) as f64,
        "{} vs {}",
        week(&requests, 3),
        week(&requests, 0)
    );
    let flat = week(&plain, 3) as f64 / week(&plain, 0) as f64;
    assert!((0.8..1.25).contains(&flat), "without growth the weeks are alike: {flat}");

    // New users: about 30 % first appear after the first week.
    let mut first_seen: HashMap<_, u64> = HashMap::new();
    for r in &requests {
        let t = first_seen.entry(r.event.user).or_insert(u64::MAX);
        *t = (*t).min(r.event.time);
    }
    let late = users.iter().filter(|u| first_seen.get(&u.user).is_some_and(|t| *t > START + 7 * 86_400)).count();
    let share = late as f64 / users.len() as f64;
    assert!((0.1..0.4).contains(&share), "{share} of users arrive after the first week");

    // The event: video requests inside a window are several times those of the same window a
    // day earlier.
    let video = |rs: &[synth::SynthRequest], from: u64| {
        rs.iter().filter(|r| r.content_type == "video/mp2t" && (from..from + 90 * 60).contains(&r.event.time)).count()
    };
    for at in &starts {
        let (during, day_before) = (video(&requests, *at), video(&requests, at - 86_400));
        assert!(
            during as f64 > 2.5 * day_before.max(1) as f64,
            "{during} during the event vs {day_before} a day before"
        );
    }

    // A match at 03:00 local, when video viewers sleep, still draws more than twice their
    // normal evening: the multiplier is of the kind's peak, not of that hour.
    let night: Vec<u64> = [5u64, 12, 19, 26].iter().map(|d| START + d * 86_400 + 2 * 3600).collect();
    let scenario = Scenario {
        event: Some(SynthEvent { region: "eu".into(), kind: 0, starts: night.clone(), minutes: 90, multiplier: 4.0 }),
        ..Scenario::default()
    };
    let (requests, _) = synth::generate_scenario(&kinds, "eu", 60, 200, 9, START, days, 3, &scenario);
    for at in &night {
        // The evening window a day before: 20:00 UTC is 21:00 local, the viewers' peak.
        let evening = video(&requests, at - 86_400 + 18 * 3600);
        let during = video(&requests, *at);
        assert!(
            during as f64 > 2.0 * evening.max(1) as f64,
            "{during} during a night match vs {evening} on an evening"
        );
    }
}
