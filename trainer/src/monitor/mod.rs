//! Monitoring: counters, the alert rules evaluated in-process each actuation interval, and the
//! Prometheus exposition of both.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

mod gauges;

pub use gauges::{Gauges, SkillRow, skill_rows};
use serde::{Deserialize, Serialize};

/// `[alerts]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRules {
    /// A published region with no demand counts from the edge for this long is silent.
    pub silent_after_secs: u64,
    /// The edge still reporting an older model this long after a publish is stale (KV takes
    /// about a minute to propagate).
    pub stale_edge_after_secs: u64,
    /// This many above-band prewarm signals for a region within `window_secs`: demand keeps
    /// outrunning the plan's band (sustained under-provisioning).
    pub under_provisioned_signals: u64,
    /// The window `under_provisioned_signals` counts over.
    pub window_secs: u64,
    /// Consecutive failed webhook deliveries before actuation counts as failing.
    pub actuation_failures: u64,
    /// Live forecast skill: over this window, the published forecast's error against the
    /// edge's demand counts is compared with seasonal naive's (the counts a day earlier)…
    pub skill_window_secs: u64,
    /// …once this many forecast steps have both…
    pub skill_min_steps: usize,
    /// …and the alert fires when the forecast's error exceeds naive's times this.
    pub skill_tolerance: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            silent_after_secs: 900,
            stale_edge_after_secs: 600,
            under_provisioned_signals: 3,
            window_secs: 900,
            actuation_failures: 3,
            skill_window_secs: 6 * 3600,
            skill_min_steps: 36,
            skill_tolerance: 1.0,
        }
    }
}

/// What the rules look at, gathered from the store, the published model and the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// The evaluation's instant (Unix seconds).
    pub now: u64,
    /// The published model version, if any.
    pub published_version: Option<u32>,
    /// When it was published.
    pub published_at: Option<u64>,
    /// The regions it covers.
    pub published_regions: Vec<String>,
    /// The model version the edge last reported.
    pub edge_model_version: Option<u32>,
    /// The newest demand minute (Unix seconds) the edge reported, per region.
    pub last_demand: Vec<(String, u64)>,
    /// Above-band prewarm signals within the window, per region.
    pub above_band: Vec<(String, u64)>,
    /// Failed webhook deliveries in a row.
    pub actuation_consecutive_failures: u64,
    /// The published forecast against the edge's counts, per region.
    pub live_skill: Vec<LiveSkill>,
}

/// A region's forecast, judged live: mean absolute errors per forecast step of the published
/// forecast and of seasonal naive 1 d, against what the edge counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveSkill {
    /// The region judged.
    pub region: String,
    /// Forecast steps compared.
    pub steps: usize,
    /// The published forecast's mean absolute error per step.
    pub model_mae: f64,
    /// Seasonal naive 1 d's, on the same steps.
    pub naive_mae: f64,
}

/// Judges `model`'s forecast on the complete steps of the last `window_secs` that it covers
/// and that have edge counts from a day earlier. `demand` is the edge's (minute number,
/// requests) for the region, from at least a day before the window.
pub fn live_skill(
    model: &prewarm_shared::RegionModel,
    demand: &[(u64, u64)],
    now: u64,
    window_secs: u64,
) -> Option<LiveSkill> {
    let table = &model.forecast;
    let step = u64::from(table.step_secs.max(1));
    let mut per_step: BTreeMap<u64, f64> = BTreeMap::new();
    for (minute, requests) in demand {
        *per_step.entry(minute * 60 / step * step).or_default() += *requests as f64;
    }
    let first = *per_step.keys().next()?;
    let end = now / step * step;
    let (mut steps, mut model_error, mut naive_error) = (0usize, 0.0, 0.0);
    let mut at = end.saturating_sub(window_secs) / step * step;
    while at < end {
        let day_before = at.checked_sub(86_400);
        if let (Some(slot), Some(before)) = (table.slot(prewarm_shared::UnixSeconds(at)), day_before)
            && before >= first
        {
            let observed = per_step.get(&at).copied().unwrap_or(0.0);
            let forecast: f64 = table.series.iter().filter_map(|s| s.expected.get(slot)).map(|v| f64::from(*v)).sum();
            let naive = per_step.get(&before).copied().unwrap_or(0.0);
            steps += 1;
            model_error += (observed - forecast).abs();
            naive_error += (observed - naive).abs();
        }
        at += step;
    }
    (steps > 0).then(|| LiveSkill {
        region: model.region.clone(),
        steps,
        model_mae: model_error / steps as f64,
        naive_mae: naive_error / steps as f64,
    })
}

/// An alert firing: which rule, for which region, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// The rule's name (`stale_edge_model`, `region_silent`, …).
    pub name: &'static str,
    /// The region it concerns, if one.
    pub region: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

impl Alert {
    fn key(&self) -> String {
        format!("{}/{}", self.name, self.region.as_deref().unwrap_or(""))
    }
}

/// The alerts that hold now.
pub fn evaluate(o: &Observations, rules: &AlertRules) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if let (Some(published), Some(at)) = (o.published_version, o.published_at)
        && o.now.saturating_sub(at) > rules.stale_edge_after_secs
        && o.edge_model_version.is_some_and(|edge| edge < published)
    {
        alerts.push(Alert {
            name: "stale_edge_model",
            region: None,
            message: format!(
                "the edge reports model version {} but version {published} was published {} s ago",
                o.edge_model_version.unwrap_or(0),
                o.now.saturating_sub(at)
            ),
        });
    }
    for region in &o.published_regions {
        let last = o.last_demand.iter().find(|(r, _)| r == region).map(|(_, t)| *t);
        let quiet_for = last.map(|t| o.now.saturating_sub(t));
        // Only a region that has spoken can go silent: a fresh deployment is not an alert.
        if let Some(quiet) = quiet_for.filter(|q| *q > rules.silent_after_secs) {
            alerts.push(Alert {
                name: "region_silent",
                region: Some(region.clone()),
                message: format!("no demand counts from the edge for {quiet} s"),
            });
        }
    }
    for (region, count) in &o.above_band {
        if *count >= rules.under_provisioned_signals {
            alerts.push(Alert {
                name: "sustained_under_provisioning",
                region: Some(region.clone()),
                message: format!(
                    "{count} above-band prewarm signals in {} s: demand keeps outrunning the forecast band",
                    rules.window_secs
                ),
            });
        }
    }
    for skill in &o.live_skill {
        if skill.steps >= rules.skill_min_steps && skill.model_mae > skill.naive_mae * rules.skill_tolerance {
            alerts.push(Alert {
                name: "forecast_skill",
                region: Some(skill.region.clone()),
                message: format!(
                    "over the last {} steps the forecast missed the edge's counts by {:.1} requests per step, \
                     seasonal naive (a day earlier) by {:.1}: the forecast is worse than the baseline",
                    skill.steps, skill.model_mae, skill.naive_mae
                ),
            });
        }
    }
    if o.actuation_consecutive_failures >= rules.actuation_failures {
        alerts.push(Alert {
            name: "actuation_failing",
            region: None,
            message: format!("{} webhook deliveries in a row failed", o.actuation_consecutive_failures),
        });
    }
    alerts
}

/// Counters since start, and the alerts firing now.
#[derive(Debug, Default)]
pub struct Monitor {
    /// Events accepted by ingest.
    pub events_accepted: AtomicU64,
    /// Events refused.
    pub events_rejected: AtomicU64,
    /// Signal batches accepted.
    pub signal_batches: AtomicU64,
    /// Webhook deliveries that succeeded.
    pub actuation_ok: AtomicU64,
    /// Webhook deliveries that failed.
    pub actuation_failed: AtomicU64,
    /// Failed deliveries in a row.
    pub actuation_consecutive_failures: AtomicU64,
    firing: Mutex<BTreeMap<String, Alert>>,
}

/// What changed since the last evaluation.
#[derive(Debug, Default, PartialEq)]
pub struct Transitions {
    /// Alerts that started firing.
    pub fired: Vec<Alert>,
    /// Alerts that stopped.
    pub resolved: Vec<Alert>,
}

impl Monitor {
    /// Replaces the firing set; returns which alerts started and which ended.
    pub fn update(&self, now: Vec<Alert>) -> Transitions {
        let Ok(mut firing) = self.firing.lock() else { return Transitions::default() };
        let next: BTreeMap<String, Alert> = now.into_iter().map(|a| (a.key(), a)).collect();
        let fired = next.iter().filter(|(k, _)| !firing.contains_key(*k)).map(|(_, a)| a.clone()).collect();
        let resolved = firing.iter().filter(|(k, _)| !next.contains_key(*k)).map(|(_, a)| a.clone()).collect();
        *firing = next;
        Transitions { fired, resolved }
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing.lock().map(|f| f.values().cloned().collect()).unwrap_or_default()
    }

    /// Counts a webhook delivery.
    pub fn record_delivery(&self, ok: bool) {
        if ok {
            self.actuation_ok.fetch_add(1, Ordering::Relaxed);
            self.actuation_consecutive_failures.store(0, Ordering::Relaxed);
        } else {
            self.actuation_failed.fetch_add(1, Ordering::Relaxed);
            self.actuation_consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text exposition (version 0.0.4).
pub fn render(monitor: &Monitor, g: &Gauges) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let counter = |c: &AtomicU64| vec![(String::new(), c.load(Ordering::Relaxed) as f64)];
    metric(
        "prewarm_events_accepted_total",
        "counter",
        "Events accepted by POST /v1/events.",
        counter(&monitor.events_accepted),
    );
    metric("prewarm_events_rejected_total", "counter", "Event lines rejected.", counter(&monitor.events_rejected));
    metric(
        "prewarm_signal_batches_total",
        "counter",
        "Signal batches accepted from the edge.",
        counter(&monitor.signal_batches),
    );
    metric(
        "prewarm_actuation_deliveries_total",
        "counter",
        "Webhook deliveries that succeeded.",
        counter(&monitor.actuation_ok),
    );
    metric(
        "prewarm_actuation_failures_total",
        "counter",
        "Webhook deliveries that failed after retries.",
        counter(&monitor.actuation_failed),
    );
    metric("prewarm_events_stored", "gauge", "Events in the store.", vec![(String::new(), g.events_stored as f64)]);
    metric(
        "prewarm_edge_demand_requests_total",
        "counter",
        "Requests the edge counted.",
        vec![(String::new(), g.demand_requests as f64)],
    );
    metric(
        "prewarm_prewarm_signals_total",
        "counter",
        "Prewarm signals from the edge, by reason.",
        g.prewarm_signals.iter().map(|(r, n)| (format!("{{reason=\"{}\"}}", label(r)), *n as f64)).collect(),
    );
    let optional = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    metric(
        "prewarm_edge_model_version",
        "gauge",
        "Model version the edge last reported.",
        optional(g.edge_model_version.map(f64::from)),
    );
    metric(
        "prewarm_published_model_version",
        "gauge",
        "Current published model version.",
        optional(g.published_version.map(f64::from)),
    );
    metric(
        "prewarm_publish_age_seconds",
        "gauge",
        "Seconds since the current model was built.",
        optional(g.publish_age_secs.map(|s| s as f64)),
    );
    metric(
        "prewarm_signals_in_effect",
        "gauge",
        "Prewarm signals from the edge the plan still covers.",
        vec![(String::new(), g.signals_in_effect as f64)],
    );
    metric(
        "prewarm_planned_units",
        "gauge",
        "Units the plan wants ready at its next step.",
        g.planned_units.iter().map(|(r, u)| (format!("{{region=\"{}\"}}", label(r)), f64::from(*u))).collect(),
    );
    let skill_labels = |r: &SkillRow, forecaster: &str| {
        format!("{{region=\"{}\",profile=\"{}\",forecaster=\"{forecaster}\"}}", label(&r.region), r.profile)
    };
    metric(
        "prewarm_forecast_mase",
        "gauge",
        "Out-of-sample MASE of every candidate model over the recent origins (below 1 beats seasonal naive 1 d).",
        g.forecast_skill
            .iter()
            .flat_map(|r| r.candidates.iter().map(move |(name, mase)| (skill_labels(r, name), *mase)))
            .collect(),
    );
    metric(
        "prewarm_forecast_model",
        "gauge",
        "1 for the model each region × profile publishes (chosen by recent skill).",
        g.forecast_skill.iter().map(|r| (skill_labels(r, &r.method), 1.0)).collect(),
    );
    metric(
        "prewarm_forecast_band_quantile",
        "gauge",
        "The quantile of a minute's demand each region × profile's band covers (chosen on its record against a reactive HPA).",
        g.forecast_skill
            .iter()
            .map(|r| (format!("{{region=\"{}\",profile=\"{}\"}}", label(&r.region), r.profile), r.band_quantile))
            .collect(),
    );
    for (name, help, pick) in [
        ("prewarm_forecast_requests", "Forecast requests per step now (expected).", 1),
        ("prewarm_forecast_upper_requests", "Forecast requests per step now (upper band).", 2),
        ("prewarm_observed_requests", "Requests the edge counted in the last minute, per step.", 3),
    ] {
        metric(
            name,
            "gauge",
            help,
            g.demand_now
                .iter()
                .map(|(r, e, u, o)| (format!("{{region=\"{}\"}}", label(r)), [0.0, *e, *u, *o][pick]))
                .collect(),
        );
    }
    let per_region = |pick: fn(&crate::profile::quality::RegionQuality) -> Option<f64>| -> Vec<(String, f64)> {
        g.profile_quality.iter().filter_map(|(r, q)| Some((format!("{{region=\"{}\"}}", label(r)), pick(q)?))).collect()
    };
    metric(
        "prewarm_profile_stability",
        "gauge",
        "Adjusted Rand index between the previous and the current model's grouping of the visitors trained on.",
        per_region(|q| q.stability),
    );
    metric(
        "prewarm_profile_bot_capture",
        "gauge",
        "Share of automation User-Agent requests that fall in the region's automated profile.",
        per_region(|q| q.bot_requests_in_automated),
    );
    metric(
        "prewarm_profile_cost_spread",
        "gauge",
        "Highest over lowest mean CPU per request among the clustered profiles.",
        per_region(|q| q.cost_spread),
    );
    metric(
        "prewarm_profile_purity",
        "gauge",
        "Share of a profile's visitors whose own dominant class is the one its label names, by class kind.",
        g.profile_quality
            .iter()
            .flat_map(|(r, q)| {
                q.profiles.iter().flat_map(move |p| {
                    let labels =
                        |kind: &str| format!("{{region=\"{}\",profile=\"{}\",class=\"{kind}\"}}", label(r), p.id);
                    [(labels("device"), p.device_purity), (labels("content"), p.content_purity)]
                })
            })
            .collect(),
    );
    let firing = monitor.firing();
    metric(
        "prewarm_alerts_firing",
        "gauge",
        "Alerts firing now (1 per alert and region).",
        firing
            .iter()
            .map(|a| (format!("{{alert=\"{}\",region=\"{}\"}}", a.name, label(a.region.as_deref().unwrap_or(""))), 1.0))
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Observations {
        Observations {
            now: 10_000,
            published_version: Some(3),
            published_at: Some(9_900),
            published_regions: vec!["eu".into(), "us".into()],
            edge_model_version: Some(3),
            last_demand: vec![("eu".into(), 9_960), ("us".into(), 9_960)],
            above_band: vec![],
            actuation_consecutive_failures: 0,
            live_skill: vec![],
        }
    }

    #[test]
    fn a_forecast_worse_than_yesterdays_counts_fires_the_skill_alert() {
        let mut model = prewarm_shared::fixtures::region_model("eu");
        let now: u64 = 2_000_000_000 / 300 * 300;
        model.forecast.start = prewarm_shared::UnixSeconds(now - 6 * 3600);
        let forecast_at = |at: u64| -> f64 {
            let slot = model.forecast.slot(prewarm_shared::UnixSeconds(at)).expect("covered");
            model.forecast.series.iter().map(|s| f64::from(s.expected[slot])).sum()
        };
        // The edge counted exactly the forecast (spread over each step's 5 minutes), and a
        // day earlier something else: the forecast beats naive.
        let counts = |today: &dyn Fn(u64) -> f64, yesterday: &dyn Fn(u64) -> f64| -> Vec<(u64, u64)> {
            let mut out = Vec::new();
            for step in (now - 6 * 3600..now).step_by(300) {
                for (at, n) in [(step - 86_400, yesterday(step)), (step, today(step))] {
                    for m in 0..5 {
                        out.push((at / 60 + m, (n / 5.0).round() as u64));
                    }
                }
            }
            out.sort_unstable();
            out
        };
        let good = counts(&|at| forecast_at(at), &|at| forecast_at(at) * 2.0);
        let skill = live_skill(&model, &good, now, 6 * 3600).expect("judged");
        assert_eq!(skill.steps, 72);
        assert!(skill.model_mae < skill.naive_mae, "{skill:?}");
        let rules = AlertRules::default();
        let fired = |s: LiveSkill| evaluate(&Observations { live_skill: vec![s], ..quiet() }, &rules);
        assert!(fired(skill).is_empty());
        // Demand moved to half the forecast yesterday and stayed there: naive knows, the
        // forecast does not.
        let bad = counts(&|at| forecast_at(at) / 2.0, &|at| forecast_at(at) / 2.0);
        let skill = live_skill(&model, &bad, now, 6 * 3600).expect("judged");
        assert!(skill.model_mae > skill.naive_mae, "{skill:?}");
        let alerts = fired(skill.clone());
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].name, alerts[0].region.as_deref()), ("forecast_skill", Some("eu")));
        // Too few steps to judge: no alert.
        assert!(fired(LiveSkill { steps: 10, ..skill }).is_empty());
        // No counts from a day before: nothing to compare.
        let today_only: Vec<(u64, u64)> = bad.iter().copied().filter(|(m, _)| m * 60 >= now - 6 * 3600).collect();
        assert_eq!(live_skill(&model, &today_only, now, 6 * 3600), None);
    }

    #[test]
    fn each_rule_fires_on_its_condition_only() {
        let rules = AlertRules::default();
        assert!(evaluate(&quiet(), &rules).is_empty());
        let names = |o: &Observations| evaluate(o, &rules).iter().map(|a| a.name).collect::<Vec<_>>();

        let stale = Observations { edge_model_version: Some(2), ..quiet() };
        assert!(names(&stale).is_empty(), "a fresh publish has a minute to propagate");
        let stale = Observations { edge_model_version: Some(2), published_at: Some(1_000), ..quiet() };
        assert_eq!(names(&stale), ["stale_edge_model"]);

        let silent = Observations { last_demand: vec![("eu".into(), 1_000), ("us".into(), 9_960)], ..quiet() };
        let alerts = evaluate(&silent, &rules);
        assert_eq!((alerts.len(), alerts[0].name, alerts[0].region.as_deref()), (1, "region_silent", Some("eu")));

        let under = Observations { above_band: vec![("us".into(), 3), ("eu".into(), 2)], ..quiet() };
        assert_eq!(names(&under), ["sustained_under_provisioning"]);

        let failing = Observations { actuation_consecutive_failures: 3, ..quiet() };
        assert_eq!(names(&failing), ["actuation_failing"]);
    }

    #[test]
    fn transitions_report_what_started_and_ended() {
        let monitor = Monitor::default();
        let a = Alert { name: "region_silent", region: Some("eu".into()), message: "m".into() };
        let b = Alert { name: "actuation_failing", region: None, message: "m".into() };
        assert_eq!(monitor.update(vec![a.clone()]).fired, vec![a.clone()]);
        let t = monitor.update(vec![a.clone(), b.clone()]);
        assert_eq!((t.fired, t.resolved), (vec![b.clone()], vec![]));
        let t = monitor.update(vec![b.clone()]);
        assert_eq!((t.fired, t.resolved), (vec![], vec![a]));
        assert_eq!(monitor.firing(), vec![b]);
    }

    #[test]
    fn the_exposition_is_prometheus_text() {
        let monitor = Monitor::default();
        monitor.events_accepted.fetch_add(7, Ordering::Relaxed);
        monitor.update(vec![Alert { name: "region_silent", region: Some("e\"u".into()), message: "m".into() }]);
        let text = render(
            &monitor,
            &Gauges { planned_units: vec![("eu".into(), 4)], published_version: Some(2), ..Gauges::default() },
        );
        assert!(text.contains("# TYPE prewarm_events_accepted_total counter\nprewarm_events_accepted_total 7\n"));
        assert!(text.contains("prewarm_planned_units{region=\"eu\"} 4\n"));
        assert!(text.contains("prewarm_published_model_version 2\n"));
        assert!(text.contains("prewarm_alerts_firing{alert=\"region_silent\",region=\"e\\\"u\"} 1\n"));
        assert!(!text.contains("\nprewarm_edge_model_version "), "no sample for an unknown value");
    }
}
