//! The operator's page at `/`: regions and their profiles, forecast against observed demand
//! with the band, the plan, alerts, and published versions with a rollback form. Rendered on
//! the server as HTML with inline SVG: no script, no CDN, works offline.

use std::fmt::Write;

use prewarm_shared::RegionModel;

use crate::monitor::Alert;
use crate::plan::PlanStep;

/// Everything the page shows, gathered by the handler.
#[derive(Debug, Default)]
pub struct DashboardData {
    /// When the page was made (Unix seconds).
    pub now: u64,
    /// Events in the store.
    pub events_stored: u64,
    /// The published version.
    pub published_version: Option<u32>,
    /// When it was published.
    pub published_at: Option<u64>,
    /// Versions kept (rollback targets).
    pub versions: Vec<u32>,
    /// The published region models.
    pub models: Vec<RegionModel>,
    /// Each region's plan.
    pub plans: Vec<(String, Vec<PlanStep>)>,
    /// Requests the edge counted per minute (Unix minutes), per region.
    pub observed: Vec<(String, Vec<(u64, u64)>)>,
    /// Alerts firing.
    pub alerts: Vec<Alert>,
    /// The model version the edge last reported.
    pub edge_model_version: Option<u32>,
    /// The published version's profile quality per region (from its training report).
    pub quality: Vec<(String, crate::profile::quality::RegionQuality)>,
    /// Why publishing is paused (a rollback), if it is.
    pub publishing_paused: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn clock(unix: u64) -> String {
    format!("{:02}:{:02} UTC", unix / 3600 % 24, unix / 60 % 60)
}

/// Forecast (expected line, band up to the upper quantile) and observed demand per step.
fn demand_chart(model: &RegionModel, observed: &[(u64, u64)]) -> String {
    let table = &model.forecast;
    let slots = table.series.iter().map(|s| s.expected.len()).max().unwrap_or(0);
    if slots < 2 {
        return "<p>No forecast in this model.</p>".into();
    }
    let sum = |pick: fn(&prewarm_shared::artifact::ProfileForecast) -> &Vec<f32>| -> Vec<f64> {
        (0..slots)
            .map(|i| table.series.iter().map(|s| f64::from(pick(s).get(i).copied().unwrap_or(0.0))).sum())
            .collect()
    };
    let (expected, upper) = (sum(|s| &s.expected), sum(|s| &s.upper));
    let step_minutes = u64::from(table.step_secs / 60).max(1);
    let first_minute = table.start.0 / 60;
    let mut observed_steps: Vec<Option<f64>> = vec![None; slots];
    for &(minute, requests) in observed {
        if let Some(i) = minute.checked_sub(first_minute).map(|m| (m / step_minutes) as usize)
            && i < slots
        {
            *observed_steps[i].get_or_insert(0.0) += requests as f64;
        }
    }
    let y_max = upper.iter().chain(observed_steps.iter().flatten()).copied().fold(1.0, f64::max) * 1.1;
    let (w, h, m) = (720.0, 220.0, 40.0);
    let x = |i: usize| m + (w - 2.0 * m) * i as f64 / (slots - 1) as f64;
    let y = |v: f64| h - m - (h - 2.0 * m) * v / y_max;
    let points = |values: &[f64]| {
        values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect::<Vec<_>>()
    };
    let mut band = points(&upper);
    band.extend((0..slots).rev().map(|i| format!("{:.1},{:.1}", x(i), y(expected[i]))));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="forecast and observed demand for {region}">
<line x1="{m}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{m}" y1="{m}" x2="{m}" y2="{b}" stroke="#888"/>
<text x="{m}" y="{t}" font-size="11">{y_max:.0} req/step</text>
<text x="{m}" y="{l}" font-size="11">{start}</text><text x="{r}" y="{l}" font-size="11" text-anchor="end">+{hours} h</text>
<polygon class="band" points="{band}" fill="#9ecae1" fill-opacity="0.5"/>
<polyline class="expected" points="{expected}" fill="none" stroke="#08519c" stroke-width="1.5"/>
"##,
        region = escape(&model.region),
        b = h - m,
        r = w - m,
        t = m - 8.0,
        l = h - m + 16.0,
        start = clock(table.start.0),
        hours = slots as u64 * step_minutes / 60,
        band = band.join(" "),
        expected = points(&expected).join(" "),
    );
    let observed_points: Vec<String> =
        observed_steps.iter().enumerate().filter_map(|(i, v)| Some(format!("{:.1},{:.1}", x(i), y((*v)?)))).collect();
    if !observed_points.is_empty() {
        let _ = write!(
            svg,
            r##"<polyline class="observed" points="{}" fill="none" stroke="#d94801" stroke-width="2"/>"##,
            observed_points.join(" ")
        );
        for p in &observed_points {
            if let Some((cx, cy)) = p.split_once(',') {
                let _ = write!(svg, r##"<circle cx="{cx}" cy="{cy}" r="2" fill="#d94801"/>"##);
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn render(d: &DashboardData) -> String {
    let mut html = String::new();
    let version = d.published_version.map_or_else(|| "none".to_owned(), |v| v.to_string());
    let age =
        d.published_at.map_or_else(String::new, |at| format!(", built {} min ago", d.now.saturating_sub(at) / 60));
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prewarm</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; font-size: 0.9rem; }}
.alert {{ color: #a50f15; }} .ok {{ color: #006d2c; }}
.legend span {{ margin-right: 1rem; font-size: 0.85rem; }}
</style></head><body>
<h1>prewarm</h1>
<p>Model version <b id="model-version">{version}</b>{age}; the edge reports version {edge}; {events} events stored.</p>
"#,
        edge = d.edge_model_version.map_or_else(|| "none".to_owned(), |v| v.to_string()),
        events = d.events_stored,
    );
    html.push_str("<h2>Alerts</h2>\n");
    if d.alerts.is_empty() {
        html.push_str(r#"<p class="ok" id="alerts">No alert is firing.</p>"#);
    } else {
        html.push_str(r#"<ul id="alerts">"#);
        for a in &d.alerts {
            let _ = write!(
                html,
                r#"<li class="alert"><b>{}</b>{}: {}</li>"#,
                a.name,
                a.region.as_deref().map_or_else(String::new, |r| format!(" ({})", escape(r))),
                escape(&a.message)
            );
        }
        html.push_str("</ul>");
    }
    for model in &d.models {
        let _ = write!(html, "\n<section class=\"region\"><h2>Region {}</h2>\n", escape(&model.region));
        let quality = d.quality.iter().find(|(r, _)| *r == model.region).map(|(_, q)| q);
        if let Some(q) = quality {
            let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
            let _ = write!(
                html,
                "<p class=\"quality\">{}; stability (ARI vs the previous model) {}; cost spread {}×; bot requests in the automated profile {}</p>",
                escape(&q.k_reason),
                fmt(q.stability),
                fmt(q.cost_spread),
                fmt(q.bot_requests_in_automated)
            );
        }
        html.push_str("<table><tr><th>profile</th><th>label</th><th>role</th><th>users</th><th>purity (device / content)</th><th>priority</th><th>CPU ms / req</th><th>memory MB·s / req</th><th>bytes / req</th></tr>");
        for p in &model.profiles {
            let purity = quality
                .and_then(|q| q.profile(p.id))
                .map_or_else(|| "-".to_owned(), |x| format!("{:.2} / {:.2}", x.device_purity, x.content_purity));
            let _ = write!(
                html,
                "<tr><td>{}{}</td><td>{}</td><td>{:?}</td><td>{:.1} %</td><td>{purity}</td><td>{:?}</td><td>{:.2} ({:?})</td><td>{:.3} ({:?})</td><td>{:.0} ({:?})</td></tr>",
                p.id.0,
                if p.id == model.default_profile { " (default)" } else { "" },
                escape(&p.label),
                p.role,
                p.share_of_users * 100.0,
                p.priority,
                p.cost.cpu_ms.mean,
                p.cost.cpu_ms.source,
                p.cost.memory_mb_s.mean,
                p.cost.memory_mb_s.source,
                p.cost.bytes.mean,
                p.cost.bytes.source,
            );
        }
        html.push_str("</table>\n");
        html.push_str(r##"<p class="legend"><span style="color:#08519c">— forecast (expected)</span><span style="color:#6baed6">▇ band to the upper quantile</span><span style="color:#d94801">● observed at the edge</span></p>"##);
        let observed = d.observed.iter().find(|(r, _)| *r == model.region).map_or(&[][..], |(_, o)| o.as_slice());
        html.push_str(&demand_chart(model, observed));
        if let Some((_, steps)) = d.plans.iter().find(|(r, _)| *r == model.region) {
            html.push_str("\n<h3>Plan</h3><table><tr><th>ready at</th><th>units</th><th>required</th><th>critical / standard / best effort</th><th>budget bound</th></tr>");
            for s in steps.iter().take(12) {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td></tr>",
                    clock(s.at),
                    s.units,
                    s.required_units,
                    s.by_priority[0],
                    s.by_priority[1],
                    s.by_priority[2],
                    if s.budget_bound { "yes" } else { "no" }
                );
            }
            html.push_str("</table>");
        }
        html.push_str("</section>\n");
    }
    if d.models.is_empty() {
        html.push_str("<p>No model has been published yet: run <code>prewarm train</code>.</p>");
    }
    html.push_str("\n<h2>Published versions</h2><ul id=\"versions\">");
    for v in d.versions.iter().rev() {
        let current = if Some(*v) == d.published_version { " (current)" } else { "" };
        let _ = write!(html, "<li>version {v}{current}</li>");
    }
    html.push_str("</ul>");
    if let Some(note) = &d.publishing_paused {
        let _ = write!(
            html,
            r#"<p id="paused"><strong>Publishing is paused</strong>: {}. Trainings go on but publish nothing until resumed.</p>
<form method="post" action="/v1/resume">
<label>admin token <input name="token" type="password" autocomplete="current-password" required></label>
<button type="submit">Resume publishing</button>
</form>"#,
            escape(note)
        );
    }
    html.push_str(
        r#"
<form method="post" action="/v1/rollback">
<label>Roll back to version <input name="version" size="4" autocomplete="off" required></label>
<label>admin token <input name="token" type="password" autocomplete="current-password" required></label>
<button type="submit">Roll back</button>
</form>
</body></html>
"#,
    );
    html
}
