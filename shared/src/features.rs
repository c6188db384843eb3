//! The behaviour feature schema: what each number in a user's feature vector means.
//!
//! A model's centroids are only meaningful together with this schema, so its version and the
//! feature names travel inside every artifact. Shares that must sum to one leave their last
//! category implicit (`static` content, `desktop` device): a redundant dimension would only
//! add a direction k-means cannot use.

use serde::{Deserialize, Serialize};

use crate::classify::{Device, RequestClass};

/// Bumped whenever a feature is added, removed, reordered or re-encoded.
pub const FEATURE_SCHEMA_VERSION: u16 = 1;
/// Number of dimensions of a [`FeatureVector`].
pub const FEATURE_DIM: usize = 16;

/// One user's behaviour summary, in the units listed by [`FEATURES`].
pub type FeatureVector = [f32; FEATURE_DIM];

/// Seconds since the Unix epoch (UTC). Time is always passed in, never read from a clock here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixSeconds(pub u64);

impl UnixSeconds {
    /// The start of the minute this instant falls in, as minutes since the epoch.
    pub fn minute(self) -> u64 {
        self.0 / 60
    }
}

/// The five kinds of behaviour the product tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// How much and how broadly the site is used.
    AppUsage,
    /// What is fetched.
    Content,
    /// When.
    TimeOfWeek,
    /// On what.
    Device,
    /// Over what connection.
    Network,
}

/// Name, kind and unit of one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSpec {
    /// The feature's name in the schema.
    pub name: &'static str,
    /// Its kind (each kind weighs the same in distances).
    pub kind: FeatureKind,
    /// Its unit, for people.
    pub unit: &'static str,
}

/// Indices into a [`FeatureVector`].
pub mod index {
    /// ln(1 + requests per session).
    pub const REQUESTS_PER_SESSION: usize = 0;
    /// ln(1 + minutes per session).
    pub const SESSION_MINUTES: usize = 1;
    /// Distinct route classes used.
    pub const ROUTE_CLASSES_USED: usize = 2;
    /// Share of video requests.
    pub const CONTENT_VIDEO: usize = 3;
    /// Share of text requests.
    pub const CONTENT_TEXT: usize = 4;
    /// Share of interactive requests.
    pub const CONTENT_INTERACTIVE: usize = 5;
    /// Share of API requests.
    pub const CONTENT_API: usize = 6;
    /// Mean sin(2π local hour / 24) of the requests.
    pub const HOUR_SIN: usize = 7;
    /// Mean cos(2π local hour / 24) of the requests.
    pub const HOUR_COS: usize = 8;
    /// Mean sin(2π weekday / 7) of the requests.
    pub const WEEKDAY_SIN: usize = 9;
    /// Mean cos(2π weekday / 7) of the requests.
    pub const WEEKDAY_COS: usize = 10;
    /// Share of requests from a phone.
    pub const DEVICE_MOBILE: usize = 11;
    /// Share of requests from a tablet.
    pub const DEVICE_TABLET: usize = 12;
    /// Share of requests from automation.
    pub const DEVICE_BOT: usize = 13;
    /// Round-trip time bucket, 0..=5 ([`super::RTT_BUCKET_LIMITS_MS`]).
    pub const RTT_BUCKET: usize = 14;
    /// ln(1 + response bytes per second).
    pub const BYTES_PER_SECOND: usize = 15;
}

/// The schema, in vector order.
pub const FEATURES: [FeatureSpec; FEATURE_DIM] = {
    use FeatureKind::*;
    const fn spec(name: &'static str, kind: FeatureKind, unit: &'static str) -> FeatureSpec {
        FeatureSpec { name, kind, unit }
    }
    [
        spec("app.requests_per_session", AppUsage, "ln(1 + requests per session)"),
        spec("app.session_minutes", AppUsage, "ln(1 + minutes per session)"),
        spec("app.route_classes_used", AppUsage, "distinct route classes"),
        spec("content.video", Content, "share of requests"),
        spec("content.text", Content, "share of requests"),
        spec("content.interactive", Content, "share of requests"),
        spec("content.api", Content, "share of requests (static = 1 - others)"),
        spec("time.hour_sin", TimeOfWeek, "mean sin(2pi local hour / 24)"),
        spec("time.hour_cos", TimeOfWeek, "mean cos(2pi local hour / 24)"),
        spec("time.weekday_sin", TimeOfWeek, "mean sin(2pi weekday / 7)"),
        spec("time.weekday_cos", TimeOfWeek, "mean cos(2pi weekday / 7)"),
        spec("device.mobile", Device, "share of requests"),
        spec("device.tablet", Device, "share of requests"),
        spec("device.bot", Device, "share of requests (desktop = 1 - others)"),
        spec("network.rtt_bucket", Network, "RTT bucket 0..=5 (see RTT_BUCKET_LIMITS_MS)"),
        spec("network.bytes_per_second", Network, "ln(1 + response bytes per second)"),
    ]
};

/// Upper bounds (exclusive) of the RTT buckets; at or above the last is bucket 5.
/// Buckets rather than raw milliseconds: RTT is noisy and a bucket is all a profile needs.
pub const RTT_BUCKET_LIMITS_MS: [u32; 5] = [20, 50, 100, 200, 400];

/// The RTT bucket of one measurement.
pub fn rtt_bucket(rtt_ms: u32) -> u8 {
    RTT_BUCKET_LIMITS_MS.iter().take_while(|&&limit| rtt_ms >= limit).count() as u8
}

/// The schema as data, for artifacts and their JSON views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// Bumped when a feature changes meaning.
    pub version: u16,
    /// The features' names, in order.
    pub names: Vec<String>,
}

impl FeatureSchema {
    /// The schema this build of prewarm speaks.
    pub fn current() -> Self {
        Self { version: FEATURE_SCHEMA_VERSION, names: FEATURES.iter().map(|f| f.name.to_owned()).collect() }
    }

    /// Whether vectors in this schema can be compared with vectors this build produces.
    pub fn is_current(&self) -> bool {
        self.version == FEATURE_SCHEMA_VERSION
            && self.names.len() == FEATURE_DIM
            && self.names.iter().zip(FEATURES.iter()).all(|(a, b)| a == b.name)
    }
}

/// A point on the unit circle for a cyclic quantity, so 23:00 sits next to 00:00 and Sunday
/// next to Monday.
pub fn cyclic(value: f32, period: f32) -> (f32, f32) {
    let angle = core::f32::consts::TAU * (value / period);
    (angle.sin(), angle.cos())
}

/// Local hour (fractional) and weekday (0 = Monday) of an instant at a fixed UTC offset.
pub fn local_time(at: UnixSeconds, utc_offset_minutes: i32) -> (f32, u8) {
    let local = at.0 as i64 + i64::from(utc_offset_minutes) * 60;
    let seconds_of_day = local.rem_euclid(86_400);
    let days = local.div_euclid(86_400);
    // 1970-01-01 was a Thursday (index 3 when Monday is 0).
    let weekday = (days + 3).rem_euclid(7) as u8;
    (seconds_of_day as f32 / 3600.0, weekday)
}

/// What the edge (or an importer) knows about one request once its response is back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// When the response came back.
    pub at: UnixSeconds,
    /// Local hour of day in `[0, 24)`.
    pub local_hour: f32,
    /// Local weekday, 0 = Monday .. 6 = Sunday.
    pub local_weekday: u8,
    /// The client's device class.
    pub device: Device,
    /// The request's classes.
    pub class: RequestClass,
    /// The client's TCP round-trip time, when the platform reports it.
    pub rtt_ms: Option<u32>,
    /// Response body bytes (0 when unknown).
    pub response_bytes: u64,
    /// Time from forwarding to the origin's response headers.
    pub response_ms: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: (f32, f32), b: (f32, f32)) -> f32 {
        ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
    }

    #[test]
    fn late_evening_is_close_to_midnight_and_far_from_noon() {
        let eleven_pm = cyclic(23.0, 24.0);
        let midnight = cyclic(0.0, 24.0);
        let noon = cyclic(12.0, 24.0);
        assert!(distance(eleven_pm, midnight) < 0.3);
        assert!(distance(eleven_pm, noon) > 1.8);
    }

    #[test]
    fn sunday_is_next_to_monday() {
        let sunday = cyclic(6.0, 7.0);
        let monday = cyclic(0.0, 7.0);
        let thursday = cyclic(3.0, 7.0);
        assert!(distance(sunday, monday) < distance(sunday, thursday) / 2.0);
    }

    #[test]
    fn local_time_handles_offsets_and_weekdays() {
        // 2024-01-01 00:30 UTC was a Monday.
        let at = UnixSeconds(1_704_069_000);
        assert_eq!(local_time(at, 0), (0.5, 0));
        // Same instant in New York (UTC-5) is Sunday 19:30.
        assert_eq!(local_time(at, -300), (19.5, 6));
        // And in Tokyo (UTC+9), Monday 09:30.
        assert_eq!(local_time(at, 540), (9.5, 0));
    }

    #[test]
    fn rtt_buckets_follow_the_limits() {
        assert_eq!(rtt_bucket(0), 0);
        assert_eq!(rtt_bucket(19), 0);
        assert_eq!(rtt_bucket(20), 1);
        assert_eq!(rtt_bucket(150), 3);
        assert_eq!(rtt_bucket(5_000), 5);
    }

    #[test]
    fn schema_names_are_unique_and_current() {
        let schema = FeatureSchema::current();
        assert!(schema.is_current());
        let mut names = schema.names.clone();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FEATURE_DIM);
        let mut stale = schema;
        stale.version += 1;
        assert!(!stale.is_current());
    }
}
