//! Where a request came from, as far as prewarm needs it: Cloudflare's `request.cf` (colo,
//! country, continent, timezone, TCP RTT) and the local time there. Never addresses. A
//! visitor's location is remembered in their signed state and re-read now and again.

use std::cell::RefCell;
use std::collections::HashMap;

use prewarm_shared::features::local_time;
use prewarm_shared::{BehaviourState, GeoMemo, UnixSeconds};
use worker::js_sys::{self, Array, Object, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};

use crate::host::CfFacts;

/// How long a timezone's UTC offset is reused before it is computed again (DST changes).
const OFFSET_CACHE_SECS: u64 = 15 * 60;

fn field(object: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(object, &JsValue::from_str(name)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// Read `request.cf` again after this long (travel, daylight saving)...
const GEO_REFRESH_SECS: u64 = 15 * 60;
/// ...and on every this-many-th request, for fresh RTT samples.
const GEO_REFRESH_REQUESTS: u16 = 16;

#[derive(Debug, Default, Clone)]
pub(crate) struct RequestOrigin {
    pub colo: Option<String>,
    pub country: Option<String>,
    pub continent: Option<String>,
    /// The visitor's UTC offset (0 when the timezone is unknown).
    pub utc_offset_minutes: i32,
    /// Only on the requests that read `request.cf`.
    pub rtt_ms: Option<u32>,
}

impl RequestOrigin {
    /// Where the visitor is: from the state's memo while it is recent, otherwise from
    /// `request.cf` (a JSON parse inside the runtime), remembered in the state for next time.
    pub(crate) fn for_visitor(
        request: &worker::web_sys::Request,
        state: &mut BehaviourState,
        now: UnixSeconds,
    ) -> Self {
        let recent = state.geo.filter(|g| {
            now.0.saturating_sub(g.read_at.0) < GEO_REFRESH_SECS && !state.requests.is_multiple_of(GEO_REFRESH_REQUESTS)
        });
        if let Some(memo) = recent {
            return Self {
                colo: memo.colo().map(str::to_owned),
                country: memo.country().map(str::to_owned),
                continent: memo.continent().map(str::to_owned),
                utc_offset_minutes: i32::from(memo.utc_offset_minutes),
                rtt_ms: None,
            };
        }
        let cf = CfFacts::read(request);
        let utc_offset_minutes = cf.timezone.as_deref().map_or(0, |tz| utc_offset_minutes(tz, now));
        state.geo = Some(GeoMemo::new(
            cf.colo.as_deref(),
            cf.country.as_deref(),
            cf.continent.as_deref(),
            utc_offset_minutes,
            now,
        ));
        Self { colo: cf.colo, country: cf.country, continent: cf.continent, utc_offset_minutes, rtt_ms: cf.rtt_ms }
    }

    /// Local hour and weekday of `now` where the visitor is.
    pub(crate) fn local_time(&self, now: UnixSeconds) -> (f32, u8) {
        local_time(now, self.utc_offset_minutes)
    }
}

thread_local! {
    static OFFSETS: RefCell<HashMap<String, (u64, i32)>> = RefCell::new(HashMap::new());
}

/// The UTC offset of an IANA timezone, through the runtime's `Intl` (no tz database in Wasm),
/// cached per isolate because building a formatter costs far more than the rest of a request.
fn utc_offset_minutes(timezone: &str, now: UnixSeconds) -> i32 {
    if let Some(offset) = OFFSETS.with(|c| c.borrow().get(timezone).filter(|(until, _)| *until > now.0).map(|e| e.1)) {
        return offset;
    }
    let offset = compute_offset(timezone, now).unwrap_or(0);
    OFFSETS.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() > 512 {
            cache.clear();
        }
        cache.insert(timezone.to_owned(), (now.0 + OFFSET_CACHE_SECS, offset));
    });
    offset
}

fn compute_offset(timezone: &str, now: UnixSeconds) -> Option<i32> {
    let options = Object::new();
    for (k, v) in [
        ("timeZone", timezone),
        ("hourCycle", "h23"),
        ("year", "numeric"),
        ("month", "numeric"),
        ("day", "numeric"),
        ("hour", "numeric"),
        ("minute", "numeric"),
    ] {
        Reflect::set(&options, &k.into(), &v.into()).ok()?;
    }
    // An unknown timezone throws a RangeError: Reflect::construct turns that into an Err
    // (the typed js_sys constructor would let it unwind through Wasm).
    let constructor: js_sys::Function = field(&js_sys::global().into(), "Intl")
        .and_then(|intl| field(&intl, "DateTimeFormat"))
        .and_then(|f| f.dyn_into().ok())?;
    let format: js_sys::Intl::DateTimeFormat =
        Reflect::construct(&constructor, &Array::of2(&"en-US".into(), &options)).ok()?.dyn_into().ok()?;
    let date = js_sys::Date::new(&JsValue::from_f64(now.0 as f64 * 1000.0));
    let parts = format.format_to_parts(&date);
    let mut fields = [0i64; 5]; // year, month, day, hour, minute
    for part in parts.iter() {
        let kind = field(&part, "type")?.as_string()?;
        let slot = match kind.as_str() {
            "year" => 0,
            "month" => 1,
            "day" => 2,
            "hour" => 3,
            "minute" => 4,
            _ => continue,
        };
        fields[slot] = field(&part, "value")?.as_string()?.parse().ok()?;
    }
    let local_ms = js_sys::Date::utc(fields[0] as f64, (fields[1] - 1) as f64)
        + ((fields[2] - 1) * 86_400_000 + fields[3] * 3_600_000 + fields[4] * 60_000) as f64;
    let utc_minutes = (now.0 / 60) as f64;
    Some(((local_ms / 60_000.0).round() - utc_minutes) as i32)
}
