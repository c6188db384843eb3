//! Any cookie value: rejected, or a state that re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::state::{BehaviourState, CookieKey, CookieKeys};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let key = CookieKey::new(1, b"fuzz-cookie-secret".to_vec());
    let keys = CookieKeys::single(key.clone());
    if let Ok(state) = BehaviourState::from_cookie(value, &keys) {
        let again = BehaviourState::from_cookie(&state.to_cookie(&key), &keys).expect("round trip");
        assert_eq!(again.features(), state.features());
    }
});
