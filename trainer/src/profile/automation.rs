//! Automated clients by behaviour: what a crawler, a script or a monitor does that a person
//! does not, judged on all of a visitor's events in the training window. The User-Agent rule
//! (`shared::assign::is_automated`) is the one the edge applies too; this one is the trainer's
//! addition for software that sends a browser's User-Agent.

use prewarm_shared::classify::ContentClass;

use super::config::AutomationRules;
use crate::ingest::event::Event;

/// Whether one visitor's events (sorted by time) show automation. `site_serves_assets`: see
/// [`serves_assets`].
pub fn by_behaviour(events: &[&Event], rules: &AutomationRules, site_serves_assets: bool) -> bool {
    (rules.robots_txt && events.iter().any(|e| e.robots_txt))
        || metronome(events, rules)
        || sustained(events, rules)
        || (site_serves_assets && assetless(events, rules))
}

/// Whether a region's log carries its site's assets at all (`assets_min_share` of requests):
/// only then does a visitor who never fetched one stand out.
pub fn serves_assets<'a>(events: impl IntoIterator<Item = &'a Event>, rules: &AutomationRules) -> bool {
    let (mut assets, mut all) = (0usize, 0usize);
    for e in events {
        all += 1;
        assets += usize::from(e.class.content == ContentClass::Static);
    }
    all > 0 && assets as f64 >= rules.assets_min_share * all as f64
}

/// Many pages, not one asset: what a crawler or a script does and a browser cannot.
fn assetless(events: &[&Event], rules: &AutomationRules) -> bool {
    if rules.assetless_min_pages == 0 || events.iter().any(|e| e.class.content == ContentClass::Static) {
        return false;
    }
    events.iter().filter(|e| e.class.content == ContentClass::Text).count() >= rules.assetless_min_pages
}

/// Requests at intervals too regular for a person: a poller, a monitor, a scheduled script.
fn metronome(events: &[&Event], rules: &AutomationRules) -> bool {
    if events.len() < rules.regular_min_requests.max(3) {
        return false;
    }
    let gaps: Vec<f64> = events.windows(2).map(|w| w[1].time.saturating_sub(w[0].time) as f64).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    if mean < 1.0 {
        // Sub-second gaps are a page and its assets, not a schedule.
        return false;
    }
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
    sd / mean < rules.regular_max_cv
}

/// A rate kept up for longer than anyone reads: every minute of a long enough run busy.
fn sustained(events: &[&Event], rules: &AutomationRules) -> bool {
    if rules.sustained_minutes == 0 || events.len() < rules.sustained_per_minute * rules.sustained_minutes {
        return false;
    }
    // (minute, requests in it), in time order.
    let mut minutes: Vec<(u64, usize)> = Vec::new();
    for e in events {
        match minutes.last_mut() {
            Some((m, n)) if *m == e.time / 60 => *n += 1,
            _ => minutes.push((e.time / 60, 1)),
        }
    }
    let mut run = 0usize;
    let mut previous: Option<u64> = None;
    for (m, n) in minutes {
        let busy = n >= rules.sustained_per_minute;
        run = match (busy, previous) {
            (false, _) => 0,
            (true, Some(p)) if p + 1 == m && run > 0 => run + 1,
            (true, _) => 1,
        };
        if run >= rules.sustained_minutes {
            return true;
        }
        previous = Some(m);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::classify::{ContentClass, Device, RequestClass, RouteClass};

    fn at(times: &[u64]) -> Vec<Event> {
        times
            .iter()
            .map(|&time| Event {
                time,
                user: prewarm_shared::signals::UserHash([0; 32]),
                region: "eu".into(),
                class: RequestClass { route: RouteClass(0), content: ContentClass::Text },
                device: Device::Desktop,
                status: 200,
                bytes: 100,
                duration_ms: 0.0,
                rtt_ms: None,
                utc_offset_minutes: None,
                cpu_ms: None,
                memory_mb_s: None,
                value: None,
                robots_txt: false,
            })
            .collect()
    }

    fn judge(times: &[u64]) -> bool {
        let events = at(times);
        let refs: Vec<&Event> = events.iter().collect();
        by_behaviour(&refs, &AutomationRules::default(), false)
    }

    #[test]
    fn pages_without_a_single_asset_are_automated_only_where_the_site_serves_assets() {
        // Pages a minute apart, irregularly: a reader's pace, not a metronome.
        let rules = AutomationRules::default();
        let n = rules.assetless_min_pages as u64;
        let times: Vec<u64> = (0..n).map(|i| 1_000 + i * 60 + (i * i * 7) % 23).collect();
        let pages = at(&times);
        let refs: Vec<&Event> = pages.iter().collect();
        assert!(by_behaviour(&refs, &rules, true), "pages and no asset, on a site with assets");
        assert!(!by_behaviour(&refs, &rules, false), "a site whose assets are elsewhere");
        // The same reader with one stylesheet is a browser.
        let mut browser = pages.clone();
        browser[3].class.content = ContentClass::Static;
        let refs: Vec<&Event> = browser.iter().collect();
        assert!(!by_behaviour(&refs, &rules, true));
        // Fewer pages than the threshold prove nothing.
        let refs: Vec<&Event> = pages.iter().take(rules.assetless_min_pages - 1).collect();
        assert!(!by_behaviour(&refs, &rules, true));
        // Whether a site serves assets: by the share of its requests that are assets.
        assert!(!serves_assets(&pages, &rules));
        let mut mixed = pages.clone();
        let fifth = pages.len() / 5;
        mixed.iter_mut().take(fifth).for_each(|e| e.class.content = ContentClass::Static);
        assert!(serves_assets(&mixed, &rules), "one in five");
    }

    #[test]
    fn a_visitor_who_read_robots_txt_is_automated_unless_the_rule_is_off() {
        let mut pages = at(&[1_000, 1_300, 1_950]);
        let refs: Vec<&Event> = pages.iter().collect();
        assert!(!by_behaviour(&refs, &AutomationRules::default(), false), "three irregular pages");
        pages[1].robots_txt = true;
        let refs: Vec<&Event> = pages.iter().collect();
        assert!(by_behaviour(&refs, &AutomationRules::default(), false));
        let off = AutomationRules { robots_txt: false, ..AutomationRules::default() };
        assert!(!by_behaviour(&refs, &off, false));
    }

    #[test]
    fn a_poller_every_minute_is_automated_a_reader_is_not() {
        let poller: Vec<u64> = (0..30).map(|i| 1_000 + 60 * i).collect();
        assert!(judge(&poller));
        // A person: bursts of a page and its assets, then minutes of reading.
        let mut reader = Vec::new();
        for (i, pause) in [40u64, 310, 95, 600, 20, 180, 75, 900, 130, 55].iter().enumerate() {
            let start = reader.last().copied().unwrap_or(0) + pause;
            reader.extend((0..(i % 4 + 1) as u64).map(|a| start + a));
        }
        assert!(!judge(&reader));
    }

    #[test]
    fn ten_busy_minutes_in_a_row_are_automated_nine_are_not() {
        let busy = |minutes: u64| -> Vec<u64> {
            (0..minutes).flat_map(|m| (0..40u64).map(move |i| 6_000 + m * 60 + i)).collect()
        };
        assert!(judge(&busy(10)));
        assert!(!judge(&busy(9)));
        // Ten busy minutes with a quiet one between are two runs of five.
        let mut split = busy(5);
        split.extend(busy(5).iter().map(|t| t + 6 * 60));
        assert!(!judge(&split));
    }
}
