//! What the profile stage adds up per profile while it reads each user's events once more:
//! costs, the facts priorities are decided on, automation-User-Agent requests and requests per
//! minute. Each tally is bounded whatever the number of events: exact counts and sums, and the
//! quantiles of costs from a uniform sample of at most [`RESERVOIR`] values.

use std::collections::BTreeMap;

use prewarm_shared::artifact::{CostFigure, CostSource, ResourceCost};
use prewarm_shared::classify::{ClassificationRules, ContentClass, Device};

use super::config::CostConfig;
use super::priority::ProfileFacts;
use crate::ingest::event::Event;
use crate::synth::SplitMix;

/// Values kept per cost figure for its median and p90: below it they are exact.
pub const RESERVOIR: usize = 65_536;

/// A uniform sample of a stream of values (Vitter's algorithm R), seeded so that a training
/// is repeatable.
#[derive(Debug, Clone)]
struct Reservoir {
    values: Vec<f32>,
    seen: u64,
    sum: f64,
    rng: SplitMix,
}

impl Reservoir {
    fn new(seed: u64) -> Self {
        Self { values: Vec::new(), seen: 0, sum: 0.0, rng: SplitMix::new(seed ^ 0x9E37_79B9_7F4A_7C15) }
    }

    fn add(&mut self, value: f32) {
        self.seen += 1;
        self.sum += f64::from(value);
        if self.values.len() < RESERVOIR {
            self.values.push(value);
        } else {
            let slot = self.rng.next_u64() % self.seen;
            if let Some(v) = self.values.get_mut(slot as usize) {
                *v = value;
            }
        }
    }

    /// Mean over every value, median and p90 over the sample.
    fn figure(mut self, source: CostSource) -> CostFigure {
        self.values.sort_by(f32::total_cmp);
        let mean = self.sum / self.seen.max(1) as f64;
        CostFigure { mean: mean as f32, median: quantile(&self.values, 0.5), p90: quantile(&self.values, 0.9), source }
    }
}

fn quantile(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = (q * (sorted.len() - 1) as f32).round() as usize;
    sorted[pos.min(sorted.len() - 1)]
}

/// How many figures came from each source, in the order ties are broken (the last wins).
#[derive(Debug, Clone, Copy, Default)]
struct Sources([usize; 3]);

impl Sources {
    const ORDER: [CostSource; 3] = [CostSource::Declared, CostSource::Estimated, CostSource::Measured];

    fn add(&mut self, source: CostSource) {
        if let Some(i) = Self::ORDER.iter().position(|s| *s == source) {
            self.0[i] += 1;
        }
    }

    fn majority(self) -> CostSource {
        Self::ORDER.into_iter().zip(self.0).max_by_key(|(_, n)| *n).map_or(CostSource::Declared, |(s, _)| s)
    }
}

/// One profile's running tally.
#[derive(Debug, Clone)]
pub struct ProfileTally {
    cpu: Reservoir,
    cpu_sources: Sources,
    memory: Reservoir,
    memory_sources: Sources,
    /// Bytes as logged, and as declared per content class: which one counts is known only at
    /// the end (a log with no sizes at all says nothing about bytes).
    bytes_logged: Reservoir,
    bytes_declared: Reservoir,
    sized: bool,
    requests: u64,
    bots: u64,
    routes: Vec<u64>,
    contents: [u64; ContentClass::ALL.len()],
    value: f64,
    valued: u64,
    /// Requests per minute (Unix minute → requests): the profile's demand series.
    pub per_minute: BTreeMap<u64, u32>,
    /// Its first request (Unix seconds).
    pub first: Option<u64>,
    /// Its last request.
    pub last: Option<u64>,
}

impl ProfileTally {
    /// An empty tally; `seed` makes its cost samples repeatable.
    pub fn new(seed: u64) -> Self {
        Self {
            cpu: Reservoir::new(seed),
            cpu_sources: Sources::default(),
            memory: Reservoir::new(seed.wrapping_add(1)),
            memory_sources: Sources::default(),
            bytes_logged: Reservoir::new(seed.wrapping_add(2)),
            bytes_declared: Reservoir::new(seed.wrapping_add(3)),
            sized: false,
            requests: 0,
            bots: 0,
            routes: Vec::new(),
            contents: [0; ContentClass::ALL.len()],
            value: 0.0,
            valued: 0,
            per_minute: BTreeMap::new(),
            first: None,
            last: None,
        }
    }

    /// Adds one request.
    pub fn add(&mut self, e: &Event, proxy: &CostConfig) {
        let (cpu, source) = proxy.cpu_ms(e);
        self.cpu.add(cpu);
        self.cpu_sources.add(source);
        let (memory, source) = proxy.memory_mb_s(e);
        self.memory.add(memory);
        self.memory_sources.add(source);
        self.bytes_logged.add(e.bytes as f32);
        self.bytes_declared.add(proxy.default.of(e.class.content).bytes);
        self.sized |= e.bytes > 0;
        self.requests += 1;
        self.bots += u64::from(e.device == Device::Bot);
        let route = usize::from(e.class.route.0);
        if self.routes.len() <= route {
            self.routes.resize(route + 1, 0);
        }
        self.routes[route] += 1;
        if let Some(i) = ContentClass::ALL.iter().position(|c| *c == e.class.content) {
            self.contents[i] += 1;
        }
        if let Some(v) = e.value {
            self.value += f64::from(v);
            self.valued += 1;
        }
        *self.per_minute.entry(e.time / 60).or_insert(0) += 1;
        self.first = Some(self.first.map_or(e.time, |f| f.min(e.time)));
        self.last = Some(self.last.map_or(e.time, |l| l.max(e.time)));
    }

    /// Requests with an automation User-Agent.
    pub fn bot_requests(&self) -> u64 {
        self.bots
    }

    /// Cost per request, never zero: measured where events carry it, else estimated from
    /// response times and sizes with the configured proxies, else the declared per-content
    /// defaults. Each figure says which source most of its requests came from.
    pub fn costs(&self) -> ResourceCost {
        let (bytes, source) = if self.sized {
            (self.bytes_logged.clone(), CostSource::Measured)
        } else {
            (self.bytes_declared.clone(), CostSource::Declared)
        };
        ResourceCost {
            cpu_ms: self.cpu.clone().figure(self.cpu_sources.majority()),
            memory_mb_s: self.memory.clone().figure(self.memory_sources.majority()),
            bytes: bytes.figure(source),
        }
    }

    /// The facts a priority is decided on. `centroid_bot_share` stands in for the bot share
    /// of a profile with no requests.
    pub fn facts(&self, label: &str, rules: &ClassificationRules, centroid_bot_share: f32) -> ProfileFacts {
        let total = self.requests.max(1) as f64;
        let share = |n: u64| n as f64 / total;
        ProfileFacts {
            label: label.to_owned(),
            route_shares: rules
                .route_classes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), share(self.routes.get(i).copied().unwrap_or(0))))
                .collect(),
            content_shares: ContentClass::ALL.into_iter().zip(self.contents).map(|(c, n)| (c, share(n))).collect(),
            bot_share: if self.requests == 0 { f64::from(centroid_bot_share) } else { share(self.bots) },
            automated: false,
            value_per_request: (self.valued > 0).then(|| self.value / total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::classify::{RequestClass, RouteClass};
    use prewarm_shared::signals::UserHash;

    fn event(time: u64, bytes: u64, duration_ms: f32) -> Event {
        Event {
            time,
            user: UserHash([1; 32]),
            region: "eu".into(),
            class: RequestClass { route: RouteClass(0), content: ContentClass::Text },
            device: Device::Desktop,
            status: 200,
            bytes,
            duration_ms,
            rtt_ms: None,
            utc_offset_minutes: None,
            cpu_ms: None,
            memory_mb_s: None,
            value: None,
            robots_txt: false,
        }
    }

    #[test]
    fn small_tallies_are_exact_and_sizes_fall_back_to_declared() {
        let proxy = CostConfig::default();
        let mut tally = ProfileTally::new(1);
        for (i, d) in [10.0, 20.0, 30.0, 40.0, 50.0].into_iter().enumerate() {
            tally.add(&event(600 + i as u64 * 30, 1000 * (i as u64 + 1), d), &proxy);
        }
        let costs = tally.costs();
        assert_eq!(costs.bytes.source, CostSource::Measured);
        assert_eq!((costs.bytes.mean, costs.bytes.median, costs.bytes.p90), (3000.0, 3000.0, 5000.0));
        assert_eq!(costs.cpu_ms.source, CostSource::Estimated);
        assert!((costs.cpu_ms.median - 30.0 * proxy.cpu_ms_per_duration_ms).abs() < 1e-4);
        assert_eq!(tally.per_minute.values().sum::<u32>(), 5);
        assert_eq!((tally.first, tally.last), (Some(600), Some(720)));
        let mut sizeless = ProfileTally::new(1);
        sizeless.add(&event(0, 0, 0.0), &proxy);
        assert_eq!(sizeless.costs().bytes.source, CostSource::Declared);
        assert!(sizeless.costs().bytes.mean > 0.0, "never zero");
    }

    #[test]
    fn a_large_tally_keeps_a_bounded_sample_and_exact_means() {
        let mut r = Reservoir::new(7);
        let n = 300_000; // 300 times 0..1000: mean 499.5
        for i in 0..n {
            r.add((i % 1000) as f32);
        }
        assert_eq!(r.values.len(), RESERVOIR);
        let figure = r.figure(CostSource::Measured);
        assert!((figure.mean - 499.5).abs() < 1e-3, "mean over every value: {}", figure.mean);
        // Quantiles from a uniform sample of 65,536: within a few units of the true 500 and 900.
        assert!((figure.median - 500.0).abs() < 10.0, "{}", figure.median);
        assert!((figure.p90 - 900.0).abs() < 10.0, "{}", figure.p90);
    }
}
