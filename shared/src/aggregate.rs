//! What an edge isolate counts between two signal batches, and when a batch is due: demand per
//! region × profile × minute, prewarm requests (the [`crate::signal_rule`] crossing, debounced)
//! and a sample of behaviour states. The worker runs it on every request; the trainer's scale
//! simulation runs the very same code natively, so its figures are the worker's.

use std::collections::BTreeMap;

use crate::artifact::{ModelVersion, ProfileId, RegionModel};
use crate::features::{FeatureVector, UnixSeconds};
use crate::signal_rule::{self, SliceWatch, WatchSettings};
use crate::signals::{DemandCount, PrewarmReason, PrewarmRequest, SampledState, SignalBatch, UserHash};

/// Sampled users contribute one state every this many requests.
pub const SAMPLE_EVERY_REQUESTS: u16 = 4;

/// The worker's settings the aggregation reads (its `SIGNAL_*`, `PREWARM_DEBOUNCE_SECS`,
/// `PREWARM_SIGNAL_EXCESS_SECS`, `EDGE_TRAFFIC_SHARE` and `STATE_SAMPLE_RATE` variables).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateSettings {
    /// A batch goes out at the latest this long after its first item…
    pub flush_secs: u64,
    /// …or once it holds this many items.
    pub batch_max: usize,
    /// Prewarm requests of one region × profile and reason are at least this far apart.
    pub debounce_secs: u64,
    /// The signal rule's traffic share (of a region's, this isolate is taken to see) and the
    /// excess it needs.
    pub watch: WatchSettings,
    /// The share of users (by hash) whose states are sampled.
    pub state_sample_rate: f32,
}

impl Default for AggregateSettings {
    /// The worker's defaults.
    fn default() -> Self {
        Self {
            flush_secs: 10,
            batch_max: 500,
            debounce_secs: 60,
            watch: WatchSettings::default(),
            state_sample_rate: 0.05,
        }
    }
}

/// One forwarded request, as the aggregation needs it.
pub struct Served<'a> {
    /// The model the request was assigned with.
    pub model: &'a RegionModel,
    /// The profile it was assigned.
    pub profile: ProfileId,
    /// The user's hash, computed only for a sampled state.
    pub user: &'a dyn Fn() -> UserHash,
    /// Requests the visitor has made, this one included (every 4th may be sampled).
    pub requests_by_user: u16,
    /// The visitor's features after this request.
    pub features: &'a FeatureVector,
    /// Response bytes.
    pub bytes: u64,
    /// When it was served.
    pub now: UnixSeconds,
}

impl core::fmt::Debug for Served<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Served")
            .field("region", &self.model.region)
            .field("profile", &self.profile)
            .field("requests_by_user", &self.requests_by_user)
            .field("bytes", &self.bytes)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

type SliceKey = (String, ProfileId);

/// One isolate's counts since its last batch.
#[derive(Debug, Default)]
pub struct Aggregator {
    demand: BTreeMap<(String, ProfileId, u64), (u32, u64)>,
    prewarm: Vec<PrewarmRequest>,
    states: Vec<SampledState>,
    oldest: Option<u64>,
    last_prewarm: BTreeMap<(String, ProfileId, PrewarmReason), u64>,
    /// The last 60 seconds' requests per region × profile and the excess they have built above
    /// the band, kept across flushes: the rule needs a whole minute, not what arrived since the
    /// last batch went out.
    watched: BTreeMap<SliceKey, SliceWatch>,
    model_version: Option<ModelVersion>,
}

impl Aggregator {
    fn debounced(&mut self, key: (String, ProfileId, PrewarmReason), now: UnixSeconds, window: u64) -> bool {
        let due = signal_rule::due(self.last_prewarm.get(&key).copied(), now, window);
        if due {
            self.last_prewarm.insert(key, now.0);
        }
        due
    }

    fn pending(&self) -> usize {
        self.demand.len() + self.prewarm.len() + self.states.len()
    }

    /// Counts a request; true when a batch is due (a prewarm request, enough items, or age).
    pub fn record(&mut self, settings: &AggregateSettings, served: &Served<'_>) -> bool {
        let model = served.model;
        let now = served.now;
        let minute = now.minute();
        let entry = self.demand.entry((model.region.clone(), served.profile, minute)).or_default();
        entry.0 = entry.0.saturating_add(1);
        entry.1 = entry.1.saturating_add(served.bytes);
        // The worker's rule, shared with the replay: the last 60 seconds against the band and
        // the alarm level.
        let crossing = self.watched.entry((model.region.clone(), served.profile)).or_default().record(
            &model.forecast,
            served.profile,
            now,
            1,
            &settings.watch,
        );
        self.oldest.get_or_insert(now.0);
        self.model_version = Some(model.model_version);
        if let Some(c) = crossing
            && self.debounced(
                (model.region.clone(), served.profile, PrewarmReason::AboveBand),
                now,
                settings.debounce_secs,
            )
        {
            self.prewarm.push(PrewarmRequest {
                region: model.region.clone(),
                profile: served.profile,
                minute,
                observed: c.observed_per_step,
                forecast_upper: c.alarm,
                reason: PrewarmReason::AboveBand,
            });
        }
        let user = served.requests_by_user.is_multiple_of(SAMPLE_EVERY_REQUESTS).then(served.user);
        if let Some(user) = user.filter(|u| f32::from(u.0[0]) / 256.0 < settings.state_sample_rate) {
            self.states.push(SampledState {
                user,
                region: model.region.clone(),
                profile: served.profile,
                at: now,
                features: *served.features,
            });
        }
        !self.prewarm.is_empty()
            || self.pending() >= settings.batch_max
            || self.oldest.is_some_and(|t| now.0.saturating_sub(t) >= settings.flush_secs)
    }

    /// Everything counted since the last batch, as the next one; `batch_id` tells batches
    /// apart (the worker draws it).
    pub fn take(&mut self, now: UnixSeconds, batch_id: u64) -> SignalBatch {
        let mut batch = SignalBatch::new(now, self.model_version);
        batch.batch_id = batch_id;
        batch.demand = std::mem::take(&mut self.demand)
            .into_iter()
            .map(|((region, profile, minute), (requests, bytes))| DemandCount {
                region,
                profile,
                minute,
                requests,
                bytes,
            })
            .collect();
        batch.prewarm = std::mem::take(&mut self.prewarm);
        batch.states = std::mem::take(&mut self.states);
        self.oldest = None;
        // Old debounce and window entries are useless after a while; keep the maps small.
        if self.last_prewarm.len() > 4096 {
            self.last_prewarm.clear();
        }
        if self.watched.len() > 4096 {
            self.watched.clear();
        }
        batch
    }
}
