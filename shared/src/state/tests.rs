use super::*;
use crate::classify::{RequestClass, RouteClass};

fn observation(at: u64, content: ContentClass, device: Device, hour: f32) -> Observation {
    Observation {
        at: UnixSeconds(at),
        local_hour: hour,
        local_weekday: 2,
        device,
        class: RequestClass { route: RouteClass(2), content },
        rtt_ms: Some(80),
        response_bytes: 500_000,
        response_ms: 100,
    }
}

fn keys() -> CookieKeys {
    CookieKeys::single(CookieKey::new(1, b"test secret".to_vec()))
}

const ID: &str = "0123456789abcdef0123456789abcdef";

/// Checked as the edge would a moment after the sample state was last seen.
fn check() -> CookieCheck<'static> {
    CookieCheck { id: ID, now: UnixSeconds(1_700_010_060), max_age_secs: DEFAULT_STATE_MAX_AGE_SECS }
}

fn sample_state() -> BehaviourState {
    let mut s = BehaviourState::new(UnixSeconds(1_700_000_000));
    for i in 0..10 {
        s.observe(&observation(1_700_000_000 + i * 30, ContentClass::Video, Device::Mobile, 21.0));
    }
    s.observe(&observation(1_700_010_000, ContentClass::Api, Device::Mobile, 23.9));
    s.profile = Some(ProfileId(7));
    s.model_version = ModelVersion(42);
    s
}

#[test]
fn cookie_round_trip_keeps_counters_and_means() {
    let state = sample_state();
    let cookie = state.to_cookie(&keys().current, ID);
    assert_eq!(cookie.len(), (COOKIE_BYTES * 4).div_ceil(3));
    let back = BehaviourState::from_cookie(&cookie, &keys(), &check()).expect("round trip");
    assert_eq!(back.requests, 11);
    assert_eq!(back.sessions, 2);
    assert_eq!(back.profile, Some(ProfileId(7)));
    assert_eq!(back.model_version, ModelVersion(42));
    for (a, b) in state.features().iter().zip(back.features().iter()) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn features_reflect_behaviour() {
    let f = sample_state().features();
    assert!(f[index::CONTENT_VIDEO] > 0.8);
    assert!(f[index::DEVICE_MOBILE] > 0.99);
    assert!(f[index::HOUR_COS] > 0.3, "evening hours lean to cos > 0 around 21h-24h");
    assert_eq!(f[index::ROUTE_CLASSES_USED], 1.0);
    assert_eq!(f[index::RTT_BUCKET], 2.0);
    assert!((f[index::REQUESTS_PER_SESSION] - (5.5f32).ln_1p()).abs() < 1e-5);
}

#[test]
fn the_geo_memo_travels_in_the_cookie_and_odd_codes_are_dropped() {
    let mut state = sample_state();
    assert_eq!(
        BehaviourState::from_cookie(&state.to_cookie(&keys().current, ID), &keys(), &check()).map(|s| s.geo),
        Ok(None)
    );
    state.geo = Some(GeoMemo::new(Some("FRA"), Some("DE"), Some("EU"), 60, UnixSeconds(1_700_000_000)));
    let back = BehaviourState::from_cookie(&state.to_cookie(&keys().current, ID), &keys(), &check()).expect("decodes");
    let geo = back.geo.expect("memo kept");
    assert_eq!((geo.colo(), geo.country(), geo.continent()), (Some("FRA"), Some("DE"), Some("EU")));
    assert_eq!((geo.utc_offset_minutes, geo.read_at), (60, UnixSeconds(1_700_000_000)));
    let odd = GeoMemo::new(Some("FRANKFURT"), Some("D"), None, -10_000, UnixSeconds(5));
    assert_eq!((odd.colo(), odd.country(), odd.continent()), (None, None, None));
    assert_eq!(odd.utc_offset_minutes, -14 * 60);
}

#[test]
fn tampered_truncated_foreign_and_old_cookies_are_rejected() {
    let cookie = sample_state().to_cookie(&keys().current, ID);
    let mut bytes = URL_SAFE_NO_PAD.decode(&cookie).expect("base64");
    bytes[5] ^= 1;
    let tampered = URL_SAFE_NO_PAD.encode(&bytes);
    assert_eq!(BehaviourState::from_cookie(&tampered, &keys(), &check()), Err(StateError::BadSignature));
    assert!(matches!(
        // Whole base64 quanta short (a partial one fails as base64 first).
        BehaviourState::from_cookie(&cookie[..cookie.len() - 6], &keys(), &check()),
        Err(StateError::WrongLength { .. })
    ));
    let foreign = CookieKeys::single(CookieKey::new(1, b"another secret".to_vec()));
    assert_eq!(BehaviourState::from_cookie(&cookie, &foreign, &check()), Err(StateError::BadSignature));
    let other_id = CookieKeys::single(CookieKey::new(2, b"test secret".to_vec()));
    assert_eq!(BehaviourState::from_cookie(&cookie, &other_id, &check()), Err(StateError::UnknownKey { key_id: 1 }));
    let mut old = URL_SAFE_NO_PAD.decode(&cookie).expect("base64");
    old[0] = 0;
    assert_eq!(
        BehaviourState::from_cookie(&URL_SAFE_NO_PAD.encode(&old), &keys(), &check()),
        Err(StateError::UnknownSchema { found: 0 })
    );
    assert_eq!(BehaviourState::from_cookie("not base64!", &keys(), &check()), Err(StateError::NotBase64));
    assert!(BehaviourState::from_cookie(&"A".repeat(10_000), &keys(), &check()).is_err());
}

#[test]
fn rotated_key_is_accepted_during_grace_period() {
    let old = CookieKey::new(1, b"test secret".to_vec());
    let cookie = sample_state().to_cookie(&old, ID);
    let rotated = CookieKeys { current: CookieKey::new(2, b"new secret".to_vec()), previous: vec![old] };
    assert!(BehaviourState::from_cookie(&cookie, &rotated, &check()).is_ok());
}

#[test]
fn a_state_is_valid_only_beside_its_id_and_within_its_age() {
    let cookie = sample_state().to_cookie(&keys().current, ID);
    let other = CookieCheck { id: "ffffffffffffffffffffffffffffffff", ..check() };
    assert_eq!(BehaviourState::from_cookie(&cookie, &keys(), &other), Err(StateError::BadSignature));
    // Last seen at 1_700_010_000: a verifier whose clock is 10 minutes behind sees the future.
    let behind = CookieCheck { now: UnixSeconds(1_700_010_000 - 600), ..check() };
    assert_eq!(BehaviourState::from_cookie(&cookie, &keys(), &behind), Err(StateError::FromTheFuture));
    let skewed = CookieCheck { now: UnixSeconds(1_700_010_000 - 200), ..check() };
    assert!(BehaviourState::from_cookie(&cookie, &keys(), &skewed).is_ok(), "within the clock skew");
    let later = CookieCheck { now: UnixSeconds(1_700_010_000 + DEFAULT_STATE_MAX_AGE_SECS + 1), ..check() };
    assert_eq!(BehaviourState::from_cookie(&cookie, &keys(), &later), Err(StateError::Expired));
    let shorter = CookieCheck { max_age_secs: 30, ..check() };
    assert_eq!(BehaviourState::from_cookie(&cookie, &keys(), &shorter), Err(StateError::Expired));
}

#[test]
fn non_finite_inputs_never_poison_the_state() {
    let mut s = BehaviourState::new(UnixSeconds(10));
    let mut o = observation(10, ContentClass::Text, Device::Desktop, f32::NAN);
    o.response_ms = 1;
    o.response_bytes = u64::MAX;
    s.observe(&o);
    assert!(s.features().iter().all(|x| x.is_finite()));
}
