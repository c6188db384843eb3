//! A user's running behaviour summary and its signed cookie encoding.
//!
//! The edge has no database: everything it knows about a user travels in this cookie. The state
//! is a fixed set of exponentially decayed means plus a few counters, updated per request in
//! O(d) without allocating. The cookie is 76 bytes before base64: a 64-byte payload whose second
//! byte is the id of the key that signed it, and a 12-byte truncated HMAC-SHA256 over the payload.
//! The payload also remembers where the user was last seen from ([`GeoMemo`]), so that the edge
//! need not read `request.cf` on every request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::artifact::{ModelVersion, ProfileId};
use crate::classify::{ContentClass, Device};
use crate::features::{self, FEATURE_DIM, FeatureVector, Observation, UnixSeconds, index};

/// Bumped whenever the cookie layout or what its signature covers changes; older cookies are
/// then treated as new users. 3: the signature covers the id cookie.
pub const STATE_SCHEMA_VERSION: u8 = 3;
/// A state whose `last_seen` is this far past the verifier's clock is refused (clocks of
/// colos differ a little; more is a forgery or a replay from a broken clock).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;
/// The default maximum age of a state: the cookie's lifetime.
pub const DEFAULT_STATE_MAX_AGE_SECS: u64 = 30 * 86_400;
/// A gap longer than this starts a new session.
pub const SESSION_GAP_SECS: u64 = 30 * 60;
/// The slowest decay: a mean reflects roughly the last 32 requests.
pub const MIN_DECAY_ALPHA: f32 = 1.0 / 32.0;

const PAYLOAD_LEN: usize = 64;
/// Where the geo memo starts in the payload (after the means).
const GEO_AT: usize = 51;
const TAG_LEN: usize = 12;
/// Encoded length before base64.
pub const COOKIE_BYTES: usize = PAYLOAD_LEN + TAG_LEN;
const NO_PROFILE: u16 = u16::MAX;

/// The decayed means the state keeps, in storage order, with their ranges for quantisation.
/// The other features (requests per session, classes used) derive from counters.
#[derive(Clone, Copy)]
enum Mean {
    SessionMinutesLn,
    Video,
    Text,
    Interactive,
    Api,
    HourSin,
    HourCos,
    WeekdaySin,
    WeekdayCos,
    Mobile,
    Tablet,
    Bot,
    RttBucket,
    BytesPerSecondLn,
}
const MEANS: usize = 14;
const MEAN_RANGES: [(f32, f32); MEANS] = [
    (0.0, 10.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (-1.0, 1.0),
    (-1.0, 1.0),
    (-1.0, 1.0),
    (-1.0, 1.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (0.0, 5.0),
    (0.0, 25.0),
];

const FLAG_RTT_SEEN: u8 = 1;
const FLAG_RATE_SEEN: u8 = 2;

/// Why a cookie was not accepted. Every case means "treat the user as new".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum StateError {
    #[error("state cookie is not base64url")]
    /// Not base64url.
    NotBase64,
    #[error("state cookie is {found} bytes, expected {COOKIE_BYTES}")]
    /// The wrong length.
    WrongLength { found: usize },
    #[error("state cookie schema {found} is not {STATE_SCHEMA_VERSION}")]
    /// Another schema.
    UnknownSchema { found: u8 },
    #[error("state cookie was signed with key id {key_id}, which is not configured")]
    /// Signed with a key that is not configured.
    UnknownKey { key_id: u8 },
    #[error("state cookie signature does not verify")]
    /// The signature does not verify.
    BadSignature,
    #[error("state cookie holds inconsistent counters")]
    /// The counters contradict each other.
    Inconsistent,
    #[error("state cookie was last seen in the future")]
    /// Last seen in the future.
    FromTheFuture,
    #[error("state cookie is older than its maximum age")]
    /// Older than the maximum age.
    Expired,
}

/// What a state cookie is checked against besides its key: the id cookie it must sit beside,
/// the verifier's clock and the longest a state may go unseen.
#[derive(Clone, Copy, Debug)]
pub struct CookieCheck<'a> {
    /// The id cookie's value, which the signature covers.
    pub id: &'a str,
    /// The time the cookie is judged at.
    pub now: UnixSeconds,
    /// How old `last_seen` may be, in seconds.
    pub max_age_secs: u64,
}

/// A secret that signs state cookies, with the id that lets it be rotated.
#[derive(Clone)]
pub struct CookieKey {
    /// The key's id, carried in the cookie.
    pub id: u8,
    secret: Vec<u8>,
}

impl core::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl CookieKey {
    /// A key with its id and secret.
    pub fn new(id: u8, secret: impl Into<Vec<u8>>) -> Self {
        Self { id, secret: secret.into() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }
}

/// The signing key plus keys still accepted during a rotation's grace period.
#[derive(Clone, Debug)]
pub struct CookieKeys {
    /// The key new cookies are signed with.
    pub current: CookieKey,
    /// Keys still accepted (during a rotation).
    pub previous: Vec<CookieKey>,
}

impl CookieKeys {
    /// One key, nothing previous.
    pub fn single(key: CookieKey) -> Self {
        Self { current: key, previous: Vec::new() }
    }

    fn find(&self, id: u8) -> Option<&CookieKey> {
        core::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id)
    }
}

/// What the edge remembers about one user between requests.
#[derive(Clone, Debug, PartialEq)]
pub struct BehaviourState {
    /// Requests seen (saturating).
    pub requests: u16,
    /// Sessions started, including the current one (saturating).
    pub sessions: u16,
    /// When the current session started.
    pub session_start: UnixSeconds,
    /// When the user was last seen.
    pub last_seen: UnixSeconds,
    /// Bit i set when route class i was used.
    pub route_mask: u16,
    /// The profile the user was last assigned, and by which model.
    pub profile: Option<ProfileId>,
    /// The model that assignment came from.
    pub model_version: ModelVersion,
    flags: u8,
    means: [f32; MEANS],
    /// Where the user was last seen from; `None` until the edge has read it once.
    pub geo: Option<GeoMemo>,
}

/// Where a user was last seen from, as `request.cf` said: reading `request.cf` costs the
/// Workers runtime a JSON parse per request, so the edge reads it on a user's first request and
/// then only now and again (travel, daylight saving), and keeps it here meanwhile. Fields that
/// do not fit (not 3-letter colos, not 2-letter countries or continents) are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoMemo {
    colo: [u8; 3],
    country: [u8; 2],
    continent: [u8; 2],
    /// The user's UTC offset there, in minutes.
    pub utc_offset_minutes: i16,
    /// When `request.cf` was read.
    pub read_at: UnixSeconds,
}

/// `value` as exactly `N` ASCII alphanumerics, or zeros (absent).
fn code<const N: usize>(value: Option<&str>) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(v) = value
        && v.len() == N
        && v.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        out.copy_from_slice(v.as_bytes());
    }
    out
}

fn text<const N: usize>(code: &[u8; N]) -> Option<&str> {
    if code.iter().all(u8::is_ascii_alphanumeric) { core::str::from_utf8(code).ok() } else { None }
}

impl GeoMemo {
    /// A memo of what `request.cf` said.
    pub fn new(
        colo: Option<&str>,
        country: Option<&str>,
        continent: Option<&str>,
        utc_offset_minutes: i32,
        read_at: UnixSeconds,
    ) -> Self {
        Self {
            colo: code(colo),
            country: code(country),
            continent: code(continent),
            utc_offset_minutes: utc_offset_minutes.clamp(-14 * 60, 14 * 60) as i16,
            read_at,
        }
    }

    /// The colo code, if kept.
    pub fn colo(&self) -> Option<&str> {
        text(&self.colo)
    }

    /// The country code, if kept.
    pub fn country(&self) -> Option<&str> {
        text(&self.country)
    }

    /// The continent code, if kept.
    pub fn continent(&self) -> Option<&str> {
        text(&self.continent)
    }
}

impl BehaviourState {
    /// A user never seen before.
    pub fn new(now: UnixSeconds) -> Self {
        Self {
            requests: 0,
            sessions: 0,
            session_start: now,
            last_seen: now,
            route_mask: 0,
            profile: None,
            model_version: ModelVersion(0),
            flags: 0,
            means: [0.0; MEANS],
            geo: None,
        }
    }

    /// Folds one request into the summary.
    pub fn observe(&mut self, o: &Observation) {
        self.observe_request(o);
        self.observe_response(o.class.content, o.response_bytes, o.response_ms);
    }

    /// The first half of [`observe`](Self::observe): what is known before the origin answers
    /// (time, device, route, RTT). `o.class.content` and the response fields are not used, so
    /// the edge can assign a profile before forwarding and fold the response in afterwards.
    pub fn observe_request(&mut self, o: &Observation) {
        if self.requests == 0 {
            self.sessions = 1;
            self.session_start = o.at;
        } else if o.at.0.saturating_sub(self.last_seen.0) > SESSION_GAP_SECS {
            let minutes = self.last_seen.0.saturating_sub(self.session_start.0) as f32 / 60.0;
            let completed = self.sessions.max(1);
            let alpha = (1.0 / f32::from(completed)).max(MIN_DECAY_ALPHA * 4.0);
            self.blend(Mean::SessionMinutesLn, minutes.ln_1p(), alpha);
            self.sessions = self.sessions.saturating_add(1);
            self.session_start = o.at;
        }
        self.requests = self.requests.saturating_add(1);
        self.last_seen = self.last_seen.max(o.at);
        self.route_mask |= 1u16.checked_shl(u32::from(o.class.route.0)).unwrap_or(0);

        let alpha = self.alpha();
        let is = |b: bool| if b { 1.0 } else { 0.0 };
        if o.local_hour.is_finite() {
            let (s, c) = features::cyclic(o.local_hour, 24.0);
            self.blend(Mean::HourSin, s, alpha);
            self.blend(Mean::HourCos, c, alpha);
        }
        let (s, c) = features::cyclic(f32::from(o.local_weekday % 7), 7.0);
        self.blend(Mean::WeekdaySin, s, alpha);
        self.blend(Mean::WeekdayCos, c, alpha);
        self.blend(Mean::Mobile, is(o.device == Device::Mobile), alpha);
        self.blend(Mean::Tablet, is(o.device == Device::Tablet), alpha);
        self.blend(Mean::Bot, is(o.device == Device::Bot), alpha);
        if let Some(rtt) = o.rtt_ms {
            self.blend_first(FLAG_RTT_SEEN, Mean::RttBucket, f32::from(features::rtt_bucket(rtt)), alpha);
        }
    }

    /// The second half of [`observe`](Self::observe): the content class (which may depend on the
    /// response's Content-Type) and the transfer rate. Call after `observe_request`.
    pub fn observe_response(&mut self, content: ContentClass, response_bytes: u64, response_ms: u32) {
        let alpha = self.alpha();
        let is = |b: bool| if b { 1.0 } else { 0.0 };
        self.blend(Mean::Video, is(content == ContentClass::Video), alpha);
        self.blend(Mean::Text, is(content == ContentClass::Text), alpha);
        self.blend(Mean::Interactive, is(content == ContentClass::Interactive), alpha);
        self.blend(Mean::Api, is(content == ContentClass::Api), alpha);
        if response_ms > 0 {
            let rate = response_bytes as f32 * 1000.0 / response_ms as f32;
            self.blend_first(FLAG_RATE_SEEN, Mean::BytesPerSecondLn, rate.ln_1p(), alpha);
        }
    }

    /// Early requests weigh as a running mean; later ones decay exponentially.
    fn alpha(&self) -> f32 {
        (1.0 / f32::from(self.requests.max(1))).max(MIN_DECAY_ALPHA)
    }

    fn blend(&mut self, mean: Mean, value: f32, alpha: f32) {
        let (lo, hi) = MEAN_RANGES[mean as usize];
        let m = &mut self.means[mean as usize];
        *m = (*m + alpha * (value - *m)).clamp(lo, hi);
    }

    /// Like `blend`, but the first sample sets the mean: the signal may be absent for a while.
    fn blend_first(&mut self, flag: u8, mean: Mean, value: f32, alpha: f32) {
        let alpha = if self.flags & flag == 0 { 1.0 } else { alpha };
        self.flags |= flag;
        self.blend(mean, value, alpha);
    }

    /// The user's feature vector in the units of [`features::FEATURES`].
    pub fn features(&self) -> FeatureVector {
        let m = &self.means;
        let mut v = [0.0; FEATURE_DIM];
        let sessions = f32::from(self.sessions.max(1));
        v[index::REQUESTS_PER_SESSION] = (f32::from(self.requests) / sessions).ln_1p();
        v[index::SESSION_MINUTES] = if self.sessions > 1 {
            m[Mean::SessionMinutesLn as usize]
        } else {
            (self.last_seen.0.saturating_sub(self.session_start.0) as f32 / 60.0).ln_1p()
        };
        v[index::ROUTE_CLASSES_USED] = self.route_mask.count_ones() as f32;
        v[index::CONTENT_VIDEO] = m[Mean::Video as usize];
        v[index::CONTENT_TEXT] = m[Mean::Text as usize];
        v[index::CONTENT_INTERACTIVE] = m[Mean::Interactive as usize];
        v[index::CONTENT_API] = m[Mean::Api as usize];
        v[index::HOUR_SIN] = m[Mean::HourSin as usize];
        v[index::HOUR_COS] = m[Mean::HourCos as usize];
        v[index::WEEKDAY_SIN] = m[Mean::WeekdaySin as usize];
        v[index::WEEKDAY_COS] = m[Mean::WeekdayCos as usize];
        v[index::DEVICE_MOBILE] = m[Mean::Mobile as usize];
        v[index::DEVICE_TABLET] = m[Mean::Tablet as usize];
        v[index::DEVICE_BOT] = m[Mean::Bot as usize];
        v[index::RTT_BUCKET] = m[Mean::RttBucket as usize];
        v[index::BYTES_PER_SECOND] = m[Mean::BytesPerSecondLn as usize];
        v
    }

    /// Signs and encodes the state for a cookie value (base64url, no padding), bound to the
    /// visitor's `id` cookie value.
    pub fn to_cookie(&self, key: &CookieKey, id: &str) -> String {
        let mut buf = [0u8; COOKIE_BYTES];
        let p = &mut buf[..PAYLOAD_LEN];
        p[0] = STATE_SCHEMA_VERSION;
        p[1] = key.id;
        p[2..4].copy_from_slice(&self.requests.to_le_bytes());
        p[4..6].copy_from_slice(&self.sessions.to_le_bytes());
        p[6..10].copy_from_slice(&seconds_u32(self.session_start).to_le_bytes());
        p[10..14].copy_from_slice(&seconds_u32(self.last_seen).to_le_bytes());
        p[14..16].copy_from_slice(&self.route_mask.to_le_bytes());
        p[16..18].copy_from_slice(&self.profile.map_or(NO_PROFILE, |id| id.0).to_le_bytes());
        p[18..22].copy_from_slice(&self.model_version.0.to_le_bytes());
        p[22] = self.flags;
        for (i, (&value, &(lo, hi))) in self.means.iter().zip(MEAN_RANGES.iter()).enumerate() {
            let q = (((value - lo) / (hi - lo)).clamp(0.0, 1.0) * f32::from(u16::MAX)).round() as u16;
            p[23 + 2 * i..25 + 2 * i].copy_from_slice(&q.to_le_bytes());
        }
        if let Some(geo) = &self.geo {
            let g = &mut buf[GEO_AT..PAYLOAD_LEN];
            g[0..3].copy_from_slice(&geo.colo);
            g[3..5].copy_from_slice(&geo.country);
            g[5..7].copy_from_slice(&geo.continent);
            g[7..9].copy_from_slice(&geo.utc_offset_minutes.to_le_bytes());
            // A read time of 0 means "no memo"; a real one is never 0.
            g[9..13].copy_from_slice(&seconds_u32(geo.read_at).max(1).to_le_bytes());
        }
        let tag = signature(key, &buf[..PAYLOAD_LEN], id).finalize().into_bytes();
        buf[PAYLOAD_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Verifies and decodes a cookie value. Any error means the user is treated as new.
    pub fn from_cookie(value: &str, keys: &CookieKeys, check: &CookieCheck<'_>) -> Result<Self, StateError> {
        if value.len() > 2 * COOKIE_BYTES {
            return Err(StateError::WrongLength { found: value.len() * 3 / 4 });
        }
        let mut buf = [0u8; 2 * COOKIE_BYTES];
        let len = URL_SAFE_NO_PAD.decode_slice(value.trim(), &mut buf).map_err(|_| StateError::NotBase64)?;
        if len != COOKIE_BYTES {
            return Err(StateError::WrongLength { found: len });
        }
        let (payload, tag) = buf[..COOKIE_BYTES].split_at(PAYLOAD_LEN);
        if payload[0] != STATE_SCHEMA_VERSION {
            return Err(StateError::UnknownSchema { found: payload[0] });
        }
        let key = keys.find(payload[1]).ok_or(StateError::UnknownKey { key_id: payload[1] })?;
        signature(key, payload, check.id).verify_truncated_left(tag).map_err(|_| StateError::BadSignature)?;

        let u16_at = |i: usize| u16::from_le_bytes([payload[i], payload[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
        let mut means = [0.0; MEANS];
        for (i, (m, &(lo, hi))) in means.iter_mut().zip(MEAN_RANGES.iter()).enumerate() {
            *m = lo + f32::from(u16_at(23 + 2 * i)) / f32::from(u16::MAX) * (hi - lo);
        }
        let profile = u16_at(16);
        let state = Self {
            requests: u16_at(2),
            sessions: u16_at(4),
            session_start: UnixSeconds(u64::from(u32_at(6))),
            last_seen: UnixSeconds(u64::from(u32_at(10))),
            route_mask: u16_at(14),
            profile: (profile != NO_PROFILE).then_some(ProfileId(profile)),
            model_version: ModelVersion(u32_at(18)),
            flags: payload[22],
            means,
            geo: {
                let g = &payload[GEO_AT..PAYLOAD_LEN];
                let read_at = u32_at(GEO_AT + 9);
                (read_at != 0).then(|| GeoMemo {
                    colo: [g[0], g[1], g[2]],
                    country: [g[3], g[4]],
                    continent: [g[5], g[6]],
                    utc_offset_minutes: i16::from_le_bytes([g[7], g[8]]),
                    read_at: UnixSeconds(u64::from(read_at)),
                })
            },
        };
        if state.session_start > state.last_seen || state.sessions > state.requests {
            return Err(StateError::Inconsistent);
        }
        if state.last_seen.0 > check.now.0.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(StateError::FromTheFuture);
        }
        if check.now.0.saturating_sub(state.last_seen.0) > check.max_age_secs {
            return Err(StateError::Expired);
        }
        Ok(state)
    }
}

/// The MAC of a payload beside an id cookie (a fixed-length payload, then the id).
fn signature(key: &CookieKey, payload: &[u8], id: &str) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(payload);
    mac.update(id.as_bytes());
    mac
}

fn seconds_u32(at: UnixSeconds) -> u32 {
    u32::try_from(at.0).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
