//! A seeded generator of behaviour events with ground truth: users of known kinds (devices,
//! content mixes, session lengths, hours), so training can be checked against the truth.
//! The demo's fuller generator (regions, trends, churn, events) builds on this.

use prewarm_shared::classify::{ClassificationRules, Device};
use prewarm_shared::signals::UserHash;

use crate::ingest::event::Event;

/// A small deterministic PRNG (SplitMix64): reproducible runs without a rand dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Normal(0, 1) by Box-Muller.
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// One kind of user: what it does, when, on what, and what it costs.
#[derive(Debug, Clone)]
pub struct UserKind {
    pub name: &'static str,
    pub device: Device,
    /// (path template, content type, share)
    pub requests: Vec<(&'static str, &'static str, f64)>,
    pub session_requests: (u32, u32),
    pub seconds_between_requests: u32,
    /// Preferred local hour and spread (hours).
    pub hour: (f64, f64),
    /// Sessions happen on these weekdays (0 = Monday).
    pub weekdays: &'static [u8],
    pub bytes: u64,
    pub duration_ms: f32,
    pub cpu_ms: f32,
    pub rtt_ms: u32,
}

/// The kinds the product is built around.
pub fn standard_kinds() -> Vec<UserKind> {
    vec![
        UserKind {
            name: "evening mobile video viewer",
            device: Device::Mobile,
            requests: vec![("/watch/{n}/segment.ts", "video/mp2t", 0.85), ("/", "text/html", 0.15)],
            session_requests: (20, 60),
            seconds_between_requests: 20,
            hour: (21.0, 1.5),
            weekdays: &[0, 1, 2, 3, 4, 5, 6],
            bytes: 1_500_000,
            duration_ms: 40.0,
            cpu_ms: 4.0,
            rtt_ms: 60,
        },
        UserKind {
            name: "office-hours desktop API user",
            device: Device::Desktop,
            requests: vec![("/api/v1/orders/{n}", "application/json", 0.9), ("/app/dashboard", "text/html", 0.1)],
            session_requests: (40, 120),
            seconds_between_requests: 30,
            hour: (11.0, 2.0),
            weekdays: &[0, 1, 2, 3, 4],
            bytes: 4_000,
            duration_ms: 35.0,
            cpu_ms: 12.0,
            rtt_ms: 15,
        },
        UserKind {
            name: "weekend tablet reader",
            device: Device::Tablet,
            requests: vec![("/articles/{n}", "text/html", 0.7), ("/images/{n}.jpg", "image/jpeg", 0.3)],
            session_requests: (5, 20),
            seconds_between_requests: 60,
            hour: (10.0, 2.5),
            weekdays: &[5, 6],
            bytes: 60_000,
            duration_ms: 20.0,
            cpu_ms: 2.0,
            rtt_ms: 40,
        },
        UserKind {
            name: "night crawler",
            device: Device::Bot,
            requests: vec![("/articles/{n}", "text/html", 0.8), ("/sitemap.xml", "application/xml", 0.2)],
            session_requests: (50, 200),
            seconds_between_requests: 2,
            hour: (3.0, 1.0),
            weekdays: &[0, 1, 2, 3, 4, 5, 6],
            bytes: 30_000,
            duration_ms: 15.0,
            cpu_ms: 3.0,
            rtt_ms: 5,
        },
    ]
}

/// A generated user: its hash, region and the index of its true kind.
#[derive(Debug, Clone)]
pub struct SynthUser {
    pub user: UserHash,
    pub region: String,
    pub kind: usize,
}

/// One generated request: the event and the raw request it came from.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    pub event: Event,
    pub path: String,
    pub content_type: &'static str,
}

impl SynthRequest {
    /// The request as one line of `POST /v1/events`.
    pub fn to_ndjson(&self) -> String {
        let e = &self.event;
        serde_json::json!({
            "time": e.time,
            "user": e.user.to_hex(),
            "region": e.region,
            "path": self.path,
            "content_type": self.content_type,
            "device": e.device.name(),
            "status": e.status,
            "bytes": e.bytes,
            "duration_ms": e.duration_ms,
            "rtt_ms": e.rtt_ms,
            "utc_offset_minutes": e.utc_offset_minutes,
            "cpu_ms": e.cpu_ms,
        })
        .to_string()
    }
}

/// Events for `users_per_kind` users of each kind in one region over `days` days from `start`
/// (Unix seconds, a midnight UTC), with `sessions` sessions each. Times are local at `utc_offset`.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    kinds: &[UserKind],
    region: &str,
    utc_offset_minutes: i32,
    users_per_kind: usize,
    sessions: usize,
    start: u64,
    days: u64,
    seed: u64,
) -> (Vec<Event>, Vec<SynthUser>) {
    let (requests, users) =
        generate_requests(kinds, region, utc_offset_minutes, users_per_kind, sessions, start, days, seed);
    (requests.into_iter().map(|r| r.event).collect(), users)
}

/// Like [`generate`], keeping each request's path and content type.
#[allow(clippy::too_many_arguments)]
pub fn generate_requests(
    kinds: &[UserKind],
    region: &str,
    utc_offset_minutes: i32,
    users_per_kind: usize,
    sessions: usize,
    start: u64,
    days: u64,
    seed: u64,
) -> (Vec<SynthRequest>, Vec<SynthUser>) {
    let rules = ClassificationRules::default();
    let mut rng = SplitMix::new(seed);
    let mut events = Vec::new();
    let mut users = Vec::new();
    for (kind_index, kind) in kinds.iter().enumerate() {
        for u in 0..users_per_kind {
            let user = UserHash::derive(b"synth", format!("{region}/{kind_index}/{u}/{seed}").as_bytes());
            users.push(SynthUser { user, region: region.to_owned(), kind: kind_index });
            for _ in 0..sessions {
                // A day of the right weekday, at the kind's hour (local), jittered.
                let mut day = rng.below(days);
                for _ in 0..14 {
                    let weekday = ((start / 86_400 + day + 3) % 7) as u8;
                    if kind.weekdays.contains(&weekday) {
                        break;
                    }
                    day = (day + 1) % days.max(1);
                }
                let hour = (kind.hour.0 + kind.hour.1 * rng.normal()).rem_euclid(24.0);
                let local = start + day * 86_400 + (hour * 3600.0) as u64;
                let mut t = (local as i64 - i64::from(utc_offset_minutes) * 60).max(0) as u64;
                let span = kind.session_requests.1 - kind.session_requests.0 + 1;
                let n = kind.session_requests.0 + rng.below(u64::from(span)) as u32;
                for _ in 0..n {
                    let pick = rng.unit();
                    let mut acc = 0.0;
                    let (template, content_type, _) = kind
                        .requests
                        .iter()
                        .find(|(_, _, share)| {
                            acc += share;
                            pick < acc
                        })
                        .unwrap_or(&kind.requests[0]);
                    let path = template.replace("{n}", &rng.below(500).to_string());
                    let jitter = 0.5 + rng.unit();
                    let event = Event {
                        time: t,
                        user,
                        region: region.to_owned(),
                        class: rules.classify(&path, None, Some(content_type)),
                        device: kind.device,
                        status: 200,
                        bytes: (kind.bytes as f64 * jitter) as u64,
                        duration_ms: kind.duration_ms * jitter as f32,
                        rtt_ms: Some(kind.rtt_ms),
                        utc_offset_minutes: Some(utc_offset_minutes),
                        cpu_ms: Some(kind.cpu_ms * jitter as f32),
                        memory_mb_s: None,
                        value: None,
                    };
                    events.push(SynthRequest { event, path, content_type });
                    t += u64::from(kind.seconds_between_requests) / 2
                        + rng.below(u64::from(kind.seconds_between_requests));
                }
            }
        }
    }
    (events, users)
}
