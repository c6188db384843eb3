//! Any cookie value: rejected, or a state that re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::UnixSeconds;
use prewarm_shared::state::{BehaviourState, CookieCheck, CookieKey, CookieKeys};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let key = CookieKey::new(1, b"fuzz-cookie-secret".to_vec());
    let keys = CookieKeys::single(key.clone());
    // Any time: the checks of age and clock must hold wherever the fuzzer puts `last_seen`.
    let check = CookieCheck { id: "0123456789abcdef0123456789abcdef", now: UnixSeconds(1_700_000_000), max_age_secs: u64::MAX };
    if let Ok(state) = BehaviourState::from_cookie(value, &keys, &check) {
        let again = BehaviourState::from_cookie(&state.to_cookie(&key, check.id), &keys, &check).expect("round trip");
        assert_eq!(again.features(), state.features());
    }
});
