//! `[profiles]` and `[costs]`: how profiles are found and how their requests are costed.

use prewarm_shared::artifact::CostSource;
use prewarm_shared::assign::DEFAULT_MIN_REQUESTS;
use prewarm_shared::classify::ContentClass;
use prewarm_shared::features::{FEATURES, FeatureKind};
use serde::Deserialize;

use crate::ingest::event::Event;

/// How profiles are found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// k is chosen in this range by silhouette (clustered profiles; the new-visitor and the
    /// automated profile come on top).
    pub k_min: usize,
    /// The largest k tried.
    pub k_max: usize,
    /// The smallest k whose silhouette is within this of the best one wins: a split must buy
    /// more separation than the silhouette's noise between near-equal candidates.
    pub k_tolerance: f64,
    /// `kmeans`, or `hierarchical` (agglomerative merging of k-means micro-clusters).
    pub method: ClusterMethod,
    /// A region with fewer users borrows the global profiles.
    pub min_users_per_region: usize,
    /// A region with more users is fitted on a uniform sample of this many (by user hash), so
    /// that training memory is bounded by the sample, not by the traffic; every user is still
    /// assigned, counted and costed.
    pub max_users_per_fit: usize,
    /// Points used to compute the silhouette of each candidate k.
    pub silhouette_sample: usize,
    /// k-means runs per k (the best inertia wins).
    pub runs: usize,
    /// Iterations per k-means run, at most.
    pub max_iterations: u64,
    /// Convergence when centroids move less than this share of the data's spread.
    pub relative_tolerance: f64,
    /// The seed of every random choice (repeatable trainings).
    pub seed: u64,
    /// Requests before a visitor leaves the new-visitor profile: the trainer clusters only
    /// visitors with at least this many, the edge assigns by distance only from then on.
    pub min_requests: u16,
    /// Hysteresis at the edge, in standardised units.
    pub hysteresis_margin: f32,
    /// A new centroid further than this (standardised units) from every old one gets a new id.
    pub max_match_distance: f32,
    /// How much each kind of feature counts in the distance (after standardisation each kind
    /// carries the same total weight whatever its number of features; these multiply that).
    pub weights: KindWeights,
    /// Behaviour that marks a visitor as automated even with a browser's User-Agent.
    pub automation: AutomationRules,
}

/// How clustered profiles are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMethod {
    /// k-means, k chosen by silhouette.
    Kmeans,
    /// Agglomerative merging of k-means micro-clusters.
    Hierarchical,
}

/// `[profiles.weights]`: one weight per kind of feature (default 1 each).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindWeights {
    /// Weight of usage features.
    pub usage: f64,
    /// Weight of content features.
    pub content: f64,
    /// Weight of time features.
    pub time: f64,
    /// Weight of device features.
    pub device: f64,
    /// Weight of network features.
    pub network: f64,
}

impl Default for KindWeights {
    fn default() -> Self {
        Self { usage: 1.0, content: 1.0, time: 1.0, device: 1.0, network: 1.0 }
    }
}

impl KindWeights {
    fn of(&self, kind: FeatureKind) -> f64 {
        match kind {
            FeatureKind::AppUsage => self.usage,
            FeatureKind::Content => self.content,
            FeatureKind::TimeOfWeek => self.time,
            FeatureKind::Device => self.device,
            FeatureKind::Network => self.network,
        }
    }

    /// The multiplier of each feature's standardised value: the kind's weight over the square
    /// root of the kind's number of features, so that a kind's share of the squared distance
    /// does not grow with how many numbers describe it.
    pub fn per_feature(&self) -> [f64; prewarm_shared::FEATURE_DIM] {
        let mut out = [0.0; prewarm_shared::FEATURE_DIM];
        for (o, spec) in out.iter_mut().zip(FEATURES.iter()) {
            let dims = FEATURES.iter().filter(|f| f.kind == spec.kind).count() as f64;
            *o = self.of(spec.kind) / dims.sqrt();
        }
        out
    }

    fn validate(&self) -> Result<(), String> {
        let all = [self.usage, self.content, self.time, self.device, self.network];
        if all.iter().any(|w| !w.is_finite() || *w < 0.0) || all.iter().all(|w| *w == 0.0) {
            return Err("profiles.weights must be finite, >= 0 and not all 0".into());
        }
        Ok(())
    }
}

/// `[profiles.automation]`: behaviour that only software shows. A User-Agent that names
/// automation (crawler, script, empty) decides on its own (`shared::assign::is_automated`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutomationRules {
    /// Requests at metronome-like intervals: at least this many…
    pub regular_min_requests: usize,
    /// …whose gaps (≥ 1 s on average) vary by less than this coefficient of variation.
    pub regular_max_cv: f64,
    /// A sustained rate no person keeps up: at least this many requests in every minute of a
    /// run of `sustained_minutes` consecutive minutes.
    pub sustained_per_minute: usize,
    /// The run of busy minutes that marks automation.
    pub sustained_minutes: usize,
    /// Pages without assets: a visitor who loaded at least this many pages (text) and not one
    /// asset (script, style, image) — browsers fetch them, crawlers and scripts do not. High,
    /// because a reader whose browser cached the assets loads pages alone too. 0: off.
    pub assetless_min_pages: usize,
    /// …judged only where the site serves its own assets: at least this share of the region's
    /// requests in the window are assets. Below it (assets on a CDN, an API) the rule stays off,
    /// so a log without assets never turns its readers into bots.
    pub assets_min_share: f64,
    /// A visitor who fetched `/robots.txt` is software: crawlers read it first, browsers never
    /// ask for it.
    pub robots_txt: bool,
}

impl Default for AutomationRules {
    fn default() -> Self {
        Self {
            regular_min_requests: 10,
            regular_max_cv: 0.1,
            sustained_per_minute: 30,
            sustained_minutes: 10,
            assetless_min_pages: 20,
            assets_min_share: 0.2,
            robots_txt: true,
        }
    }
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            k_min: 2,
            k_max: 8,
            k_tolerance: 0.02,
            method: ClusterMethod::Kmeans,
            min_users_per_region: 50,
            max_users_per_fit: 100_000,
            silhouette_sample: 2_000,
            runs: 3,
            max_iterations: 100,
            relative_tolerance: 1e-4,
            seed: 42,
            min_requests: DEFAULT_MIN_REQUESTS,
            hysteresis_margin: 0.25,
            max_match_distance: 2.0,
            weights: KindWeights::default(),
            automation: AutomationRules::default(),
        }
    }
}

impl ProfileConfig {
    /// Checks ranges and that the sections agree.
    pub fn validate(&self) -> Result<(), String> {
        // Two role profiles (new visitors, automated) come on top of the clustered ones.
        if self.k_min < 1 || self.k_min > self.k_max || self.k_max + 2 > prewarm_shared::artifact::MAX_PROFILES {
            return Err(format!("profiles.k_min {} .. k_max {} is not a valid range", self.k_min, self.k_max));
        }
        if self.runs == 0
            || self.max_iterations == 0
            || self.relative_tolerance.is_nan()
            || self.relative_tolerance <= 0.0
        {
            return Err("profiles.runs, max_iterations and relative_tolerance must be > 0".into());
        }
        if !(0.0..1.0).contains(&self.k_tolerance) {
            return Err(format!("profiles.k_tolerance {} must be in [0, 1)", self.k_tolerance));
        }
        if self.min_requests == 0 {
            return Err("profiles.min_requests must be at least 1".into());
        }
        self.weights.validate()
    }
}

/// Cost proxies used when events do not carry measured costs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// CPU milliseconds per millisecond of request duration.
    pub cpu_ms_per_duration_ms: f32,
    /// Memory MB·s per request, plus per KB transferred.
    pub memory_mb_s_per_request: f32,
    /// Memory MB·s per KB transferred.
    pub memory_mb_s_per_kb: f32,
    /// `[costs.default]`: what a request costs when its event carries neither a cost nor a
    /// response time nor a size (access logs without `%D` and with `-` bytes).
    pub default: DeclaredCosts,
}

/// A declared cost per content class (`[costs.default.text]` etc.), marked `declared`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeclaredCosts {
    /// A video request.
    pub video: DeclaredCost,
    /// A text request.
    pub text: DeclaredCost,
    /// An interactive request.
    pub interactive: DeclaredCost,
    /// An API request.
    pub api: DeclaredCost,
    /// A static asset.
    #[serde(rename = "static")]
    pub static_assets: DeclaredCost,
}

/// CPU milliseconds and response bytes of one request of a content class.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCost {
    /// CPU milliseconds.
    pub cpu_ms: f32,
    /// Response bytes.
    pub bytes: f32,
}

impl Default for DeclaredCosts {
    /// Orders of magnitude of a typical dynamic site: a rendered page costs tens of CPU
    /// milliseconds, an API call somewhat less, a static file or a video segment served from
    /// disk about one. Declare your own: these only keep profiles apart by what they fetch.
    fn default() -> Self {
        let cost = |cpu_ms, bytes| DeclaredCost { cpu_ms, bytes };
        Self {
            video: cost(2.0, 1_000_000.0),
            text: cost(20.0, 30_000.0),
            interactive: cost(40.0, 10_000.0),
            api: cost(10.0, 5_000.0),
            static_assets: cost(1.0, 20_000.0),
        }
    }
}

impl DeclaredCosts {
    /// The declared cost of a content class.
    pub fn of(&self, content: ContentClass) -> DeclaredCost {
        match content {
            ContentClass::Video => self.video,
            ContentClass::Text => self.text,
            ContentClass::Interactive => self.interactive,
            ContentClass::Api => self.api,
            ContentClass::Static => self.static_assets,
        }
    }
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            cpu_ms_per_duration_ms: 0.3,
            memory_mb_s_per_request: 0.05,
            memory_mb_s_per_kb: 0.001,
            default: DeclaredCosts::default(),
        }
    }
}

impl CostConfig {
    /// Checks that every figure is finite and positive.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.default;
        let declared = [d.video, d.text, d.interactive, d.api, d.static_assets];
        let proxies = [self.cpu_ms_per_duration_ms, self.memory_mb_s_per_request, self.memory_mb_s_per_kb];
        let ok = |v: f32| v.is_finite() && v >= 0.0;
        if !proxies.into_iter().all(ok) {
            return Err("costs: proxies must be finite and >= 0".into());
        }
        if !declared.iter().all(|c| ok(c.bytes) && c.cpu_ms.is_finite() && c.cpu_ms > 0.0) {
            return Err("costs.default: every class needs cpu_ms > 0 and bytes >= 0".into());
        }
        Ok(())
    }

    /// CPU milliseconds of one request and where the figure comes from: measured, else the
    /// response time times the proxy, else the declared default of its content class.
    pub fn cpu_ms(&self, e: &Event) -> (f32, CostSource) {
        match e.cpu_ms {
            Some(cpu) => (cpu, CostSource::Measured),
            None if e.duration_ms > 0.0 => (e.duration_ms * self.cpu_ms_per_duration_ms, CostSource::Estimated),
            None => (self.default.of(e.class.content).cpu_ms, CostSource::Declared),
        }
    }

    /// Memory MB·s of one request: measured, else the per-request and per-KB proxies.
    pub fn memory_mb_s(&self, e: &Event) -> (f32, CostSource) {
        match e.memory_mb_s {
            Some(m) => (m, CostSource::Measured),
            None => (
                self.memory_mb_s_per_request + e.bytes as f32 / 1024.0 * self.memory_mb_s_per_kb,
                CostSource::Estimated,
            ),
        }
    }
}
