//! SVG plots of a replay: demand against each policy's ready capacity, and the cost against
//! under-provisioning frontier of a sweep. Plain SVG, so any browser shows them.

use std::fmt::Write;

use super::Row;

const COLOURS: [&str; 7] = ["#222222", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 420.0;
const MARGIN: f64 = 50.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str, y_max: f64) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{MARGIN}" y="20" font-size="14">{}</text>
<line x1="{MARGIN}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{b}" stroke="black"/>
<text x="{r}" y="{l}" text-anchor="end">{}</text>
<text x="10" y="{MARGIN}" transform="rotate(-90 10 {MARGIN})" text-anchor="end">{}</text>
<text x="{t}" y="{MARGIN}" text-anchor="end">{y_max:.1}</text>
"#,
        escape(title),
        escape(x_label),
        escape(y_label),
        b = HEIGHT - MARGIN,
        r = WIDTH - MARGIN,
        l = HEIGHT - 15.0,
        t = MARGIN - 4.0,
    );
}

fn polyline(out: &mut String, points: &[(f64, f64)], colour: &str, width: f64) {
    let mut d = String::with_capacity(points.len() * 12);
    for (x, y) in points {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(out, r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{d}"/>"#);
}

fn legend(out: &mut String, names: &[String], first_colour: usize) {
    for (i, name) in names.iter().enumerate() {
        let y = MARGIN + 16.0 * i as f64;
        let colour = COLOURS[(i + first_colour) % COLOURS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{colour}"/><text x="{tx}" y="{ty}">{}</text>"#,
            escape(name),
            x = WIDTH - MARGIN - 170.0,
            tx = WIDTH - MARGIN - 155.0,
            ty = y + 9.0,
        );
    }
}

/// Demand (in units) and each policy's ready units over `minutes`.
pub fn timeline(title: &str, demand_units: &[Option<f64>], ready: &[(String, Vec<u32>)]) -> String {
    let n = demand_units.len().max(2);
    let y_max = demand_units
        .iter()
        .flatten()
        .copied()
        .chain(ready.iter().flat_map(|(_, r)| r.iter().map(|&u| f64::from(u))))
        .fold(1.0, f64::max);
    let x = |i: usize| MARGIN + (WIDTH - 2.0 * MARGIN) * i as f64 / (n - 1) as f64;
    let y = |v: f64| HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * v / y_max;
    let mut out = String::new();
    frame(&mut out, title, "minutes", "units", y_max);
    let mut names = vec!["demand (units)".to_owned()];
    let mut segment = Vec::new();
    for (i, d) in demand_units.iter().enumerate() {
        match d {
            Some(d) => segment.push((x(i), y(*d))),
            // A missing minute breaks the line: it is not zero.
            None if !segment.is_empty() => polyline(&mut out, &std::mem::take(&mut segment), COLOURS[0], 1.0),
            None => {}
        }
    }
    polyline(&mut out, &segment, COLOURS[0], 1.0);
    for (k, (name, units)) in ready.iter().enumerate() {
        let points: Vec<(f64, f64)> = units.iter().enumerate().map(|(i, &u)| (x(i), y(f64::from(u)))).collect();
        polyline(&mut out, &points, COLOURS[(k + 1) % COLOURS.len()], 1.5);
        names.push(name.clone());
    }
    legend(&mut out, &names, 0);
    out.push_str("</svg>\n");
    out
}

/// Cost against under-provisioned unit-minutes, both as ratios to reactive-hpa at its
/// default, one line per policy through its knob values.
pub fn frontier(title: &str, rows: &[Row]) -> String {
    let mut policies: Vec<String> = Vec::new();
    for r in rows {
        if !policies.contains(&r.outcome.policy) {
            policies.push(r.outcome.policy.clone());
        }
    }
    let points = |p: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.outcome.policy == p)
            .filter_map(|r| Some((r.cost_vs_hpa?, r.under_unit_minutes_vs_hpa?)))
            .collect()
    };
    let all: Vec<(f64, f64)> = policies.iter().flat_map(|p| points(p)).collect();
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = all.iter().map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let x = |v: f64| MARGIN + (WIDTH - 2.0 * MARGIN) * v / x_max;
    let y = |v: f64| HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * v / y_max;
    let mut out = String::new();
    frame(&mut out, title, "cost / reactive-hpa cost", "under-provisioned unit-minutes / reactive-hpa's", y_max);
    let _ = writeln!(out, r#"<text x="{}" y="{}" text-anchor="end">{x_max:.2}</text>"#, WIDTH - MARGIN, HEIGHT - 32.0);
    for (k, p) in policies.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = points(p);
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let colour = COLOURS[(k + 1) % COLOURS.len()];
        let mapped: Vec<(f64, f64)> = pts.iter().map(|&(a, b)| (x(a), y(b))).collect();
        polyline(&mut out, &mapped, colour, 1.5);
        for (px, py) in mapped {
            let _ = writeln!(out, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{colour}"/>"#);
        }
    }
    legend(&mut out, &policies, 1);
    out.push_str("</svg>\n");
    out
}
