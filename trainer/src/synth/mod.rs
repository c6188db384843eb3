//! A seeded generator of behaviour events with ground truth: users of known kinds (devices,
//! content mixes, session lengths, hours), so training can be checked against the truth.
//! The demo's fuller generator (regions, trends, churn, events) builds on this.

pub mod trace;

use prewarm_shared::classify::{ClassificationRules, Device};
use prewarm_shared::signals::UserHash;

use crate::ingest::event::Event;

/// A small deterministic PRNG (SplitMix64): reproducible runs without a rand dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
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
    /// Uniform in `0..n` (0 when `n` is 0).
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
    /// The kind's name.
    pub name: &'static str,
    /// Its device.
    pub device: Device,
    /// (path template, content type, share)
    pub requests: Vec<(&'static str, &'static str, f64)>,
    /// Requests per session (min, max).
    pub session_requests: (u32, u32),
    /// Mean seconds between a session's requests.
    pub seconds_between_requests: u32,
    /// Preferred local hour and spread (hours).
    pub hour: (f64, f64),
    /// Sessions happen on these weekdays (0 = Monday).
    pub weekdays: &'static [u8],
    /// Mean response bytes.
    pub bytes: u64,
    /// Mean response time.
    pub duration_ms: f32,
    /// Mean CPU per request.
    pub cpu_ms: f32,
    /// Its TCP round-trip time.
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
    /// The user's hash.
    pub user: UserHash,
    /// Their region.
    pub region: String,
    /// Their kind (an index into the kinds generated from).
    pub kind: usize,
}

/// One generated request: the event and the raw request it came from.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    /// The event as stored.
    pub event: Event,
    /// The request path it came from.
    pub path: String,
    /// Its response's content type.
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
    generate_scenario(
        kinds,
        region,
        utc_offset_minutes,
        users_per_kind,
        sessions,
        start,
        days,
        seed,
        &Scenario::default(),
    )
}

/// What changes over the history beyond each kind's habits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// Sessions grow by this fraction per week (0.05: +5 % a week).
    pub growth_per_week: f64,
    /// This share of users arrive during the history (uniformly), not before it: churn in.
    pub new_users: f64,
    /// A recurring external event: extra sessions of one kind in one region.
    pub event: Option<SynthEvent>,
}

/// An event (a match, a launch) that multiplies one kind's sessions in one region while it
/// lasts; it recurs weekly, so past occurrences teach its effect.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthEvent {
    /// The region it happens in.
    pub region: String,
    /// The kind it multiplies.
    pub kind: usize,
    /// Unix seconds of each occurrence's start (past ones fall in the history).
    pub starts: Vec<u64>,
    /// How long each occurrence lasts.
    pub minutes: u64,
    /// Demand of the kind during the event, as a multiple of its normal peak (its evening, for
    /// video viewers), whatever the hour it falls at.
    pub multiplier: f64,
}

/// [`generate_requests`] under a scenario: growth, new users arriving, and an event's extra
/// sessions.
#[allow(clippy::too_many_arguments)]
pub fn generate_scenario(
    kinds: &[UserKind],
    region: &str,
    utc_offset_minutes: i32,
    users_per_kind: usize,
    sessions: usize,
    start: u64,
    days: u64,
    seed: u64,
    scenario: &Scenario,
) -> (Vec<SynthRequest>, Vec<SynthUser>) {
    let rules = ClassificationRules::default();
    let mut rng = SplitMix::new(seed);
    let mut events = Vec::new();
    let mut users = Vec::new();
    for (kind_index, kind) in kinds.iter().enumerate() {
        for u in 0..users_per_kind {
            let user = UserHash::derive(b"synth", format!("{region}/{kind_index}/{u}/{seed}").as_bytes());
            users.push(SynthUser { user, region: region.to_owned(), kind: kind_index });
            // Users arriving during the history start later; their sessions are as many.
            // (No draws when a feature is off: the default scenario's output stays as it was.)
            let joined =
                if scenario.new_users > 0.0 && rng.unit() < scenario.new_users { rng.below(days.max(1)) } else { 0 };
            let weight = |day: u64| (1.0 + scenario.growth_per_week).powf(day as f64 / 7.0);
            let heaviest = weight(days.saturating_sub(1));
            // The event's extra sessions for this kind: one per occurrence in the history, for
            // (multiplier − 1) of the kind's users (the rest were coming anyway).
            if let Some(event) = scenario.event.as_ref().filter(|e| e.region == region && e.kind == kind_index) {
                for &at in
                    event.starts.iter().filter(|&&at| at >= start + joined * 86_400 && at < start + days * 86_400)
                {
                    // On a normal day a user starts a session inside a window this long at the
                    // kind's peak hour with probability sessions / days × P(the kind's hour falls
                    // in it); the event adds (multiplier − 1) times that, spread over the window,
                    // whatever the hour: a match at midnight still draws an evening's crowd.
                    let hours = event.minutes as f64 / 60.0;
                    let sigma = kind.hour.1.max(0.1);
                    let within = normal_cdf(hours / 2.0 / sigma) - normal_cdf(-hours / 2.0 / sigma);
                    let share =
                        (event.multiplier - 1.0).max(0.0) * sessions as f64 / days.max(1) as f64 * within.max(0.0);
                    if rng.unit() < share.min(1.0) {
                        let t = at + rng.below(event.minutes.max(1) * 60);
                        session(kind, &rules, &mut rng, &mut events, user, region, utc_offset_minutes, t);
                    }
                }
            }
            for _ in 0..sessions {
                // A day of the right weekday (later days likelier under growth), at the kind's
                // hour (local), jittered.
                let mut day = joined + rng.below(days.saturating_sub(joined).max(1));
                if scenario.growth_per_week != 0.0 {
                    for _ in 0..8 {
                        if rng.unit() * heaviest <= weight(day) {
                            break;
                        }
                        day = joined + rng.below(days.saturating_sub(joined).max(1));
                    }
                }
                for _ in 0..14 {
                    let weekday = ((start / 86_400 + day + 3) % 7) as u8;
                    if kind.weekdays.contains(&weekday) {
                        break;
                    }
                    day = (day + 1) % days.max(1);
                }
                let hour = (kind.hour.0 + kind.hour.1 * rng.normal()).rem_euclid(24.0);
                let local = start + day * 86_400 + (hour * 3600.0) as u64;
                let t = (local as i64 - i64::from(utc_offset_minutes) * 60).max(0) as u64;
                session(kind, &rules, &mut rng, &mut events, user, region, utc_offset_minutes, t);
            }
        }
    }
    (events, users)
}

/// One session of `kind` starting at `t`.
#[allow(clippy::too_many_arguments)]
fn session(
    kind: &UserKind,
    rules: &ClassificationRules,
    rng: &mut SplitMix,
    events: &mut Vec<SynthRequest>,
    user: UserHash,
    region: &str,
    utc_offset_minutes: i32,
    start: u64,
) {
    let mut t = start;
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
            robots_txt: crate::ingest::event::is_robots_txt(&path),
        };
        events.push(SynthRequest { event, path, content_type });
        t += u64::from(kind.seconds_between_requests) / 2 + rng.below(u64::from(kind.seconds_between_requests));
    }
}

/// The standard normal CDF (Abramowitz and Stegun 7.1.26, error < 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 { 0.5 * (1.0 + erf) } else { 0.5 * (1.0 - erf) }
}

/// (year, month, day) of a day count since 1970-01-01 (the proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `2026-11-28T20:00:00Z`.
pub fn rfc3339(unix: u64) -> String {
    let (y, m, d) = civil((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

impl SynthRequest {
    /// The request as one line of the combined log format (the client address is derived from
    /// the user, the User-Agent from the device).
    pub fn to_combined_log(&self) -> String {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let e = &self.event;
        let (y, m, d) = civil((e.time / 86_400) as i64);
        let s = e.time % 86_400;
        let month = MONTHS[(m as usize).saturating_sub(1).min(11)];
        let ip = format!("10.{}.{}.{}", e.user.0[0], e.user.0[1], e.user.0[2]);
        let agent = match e.device {
            Device::Mobile => {
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
            }
            Device::Tablet => "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
            Device::Bot => "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Device::Desktop => {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
            }
        };
        format!(
            "{ip} - - [{d:02}/{month}/{y:04}:{:02}:{:02}:{:02} +0000] \"GET {} HTTP/1.1\" {} {} \"-\" \"{agent}\"",
            s / 3600,
            s % 3600 / 60,
            s % 60,
            self.path,
            e.status,
            e.bytes
        )
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn times_and_log_lines_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_896_900), "2026-11-28T20:15:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let (requests, _) = generate_requests(&standard_kinds(), "eu", 60, 2, 2, 1_704_067_200, 7, 1);
        for r in &requests {
            let line = r.to_combined_log();
            let parsed = crate::ingest::access_log::parse(&line).expect("our own log line parses");
            assert_eq!(parsed.time, r.event.time, "{line}");
            assert_eq!(crate::ingest::event::parse_rfc3339_utc(&rfc3339(r.event.time)), Some(r.event.time));
        }
    }
}
