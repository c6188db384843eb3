//! Who is this? A first-party random id cookie, hashed with the deployment's salt before it
//! goes anywhere, and the signed behaviour-state cookie.

use prewarm_shared::UnixSeconds;
use prewarm_shared::signals::UserHash;
use prewarm_shared::state::{BehaviourState, CookieCheck, CookieKeys, StateError};

pub(crate) const ID_COOKIE: &str = "pw_id";
pub(crate) const STATE_COOKIE: &str = "pw_state";
/// The id lives a year; the state `STATE_MAX_AGE_DAYS` (default 30: behaviour older than that
/// is not worth keeping).
const ID_MAX_AGE_SECS: u64 = 365 * 86_400;
/// 16 random bytes, hex.
const ID_HEX_LEN: usize = 32;

/// One visitor, as far as this request knows.
#[derive(Debug)]
pub(crate) struct Visitor {
    /// The raw id: it goes into this visitor's own cookie and nowhere else.
    raw_id: String,
    pub state: BehaviourState,
    /// The id cookie must be (re)set on the response.
    pub id_is_new: bool,
    /// Why a state cookie that was present was not accepted.
    pub rejected_state: Option<StateError>,
}

/// The value of one cookie in a `Cookie` header.
fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
}

fn is_valid_id(id: &str) -> bool {
    id.len() == ID_HEX_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads or creates the visitor's identity and state. A state is accepted only beside the id it
/// was signed with, last seen neither in the future nor more than `state_max_age_secs` ago.
pub(crate) fn identify(
    cookie_header: Option<&str>,
    keys: &CookieKeys,
    now: UnixSeconds,
    state_max_age_secs: u64,
) -> Visitor {
    let existing = cookie_header.and_then(|h| cookie(h, ID_COOKIE)).filter(|id| is_valid_id(id));
    let (raw_id, id_is_new) = match existing {
        Some(id) => (id.to_owned(), false),
        None => (crate::host::random_id(), true),
    };
    let (state, rejected_state) = match cookie_header.and_then(|h| cookie(h, STATE_COOKIE)) {
        // A state cookie only belongs with the id it came with: a new id starts fresh.
        Some(value) if !id_is_new => match BehaviourState::from_cookie(
            value,
            keys,
            &CookieCheck { id: &raw_id, now, max_age_secs: state_max_age_secs },
        ) {
            Ok(state) => (state, None),
            Err(e) => (BehaviourState::new(now), Some(e)),
        },
        _ => (BehaviourState::new(now), None),
    };
    Visitor { raw_id, state, id_is_new, rejected_state }
}

impl Visitor {
    /// What leaves the worker instead of the raw id: HMAC(salt, id). Computed only when a
    /// signal needs it (a sampled state), not on every request.
    pub(crate) fn user(&self, salt: &[u8]) -> UserHash {
        UserHash::derive(salt, self.raw_id.as_bytes())
    }

    /// `Set-Cookie` values for the response.
    pub(crate) fn set_cookies(&self, keys: &CookieKeys, state_max_age_secs: u64) -> Vec<String> {
        let attributes = "Path=/; Secure; HttpOnly; SameSite=Lax";
        let mut out = Vec::with_capacity(2);
        if self.id_is_new {
            out.push(format!("{ID_COOKIE}={}; Max-Age={ID_MAX_AGE_SECS}; {attributes}", self.raw_id));
        }
        out.push(format!(
            "{STATE_COOKIE}={}; Max-Age={state_max_age_secs}; {attributes}",
            self.state.to_cookie(&keys.current, &self.raw_id)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_javascript_strips_exactly_prewarms_cookies() {
        let js = include_str!("../js/hot_path.js");
        let own = format!(r#"export const OWN_COOKIES = ["{ID_COOKIE}", "{STATE_COOKIE}"];"#);
        assert!(js.contains(&own), "js/hot_path.js must strip {own}");
    }
}
