//! User feature vectors, rebuilt from stored events with the very code the edge runs
//! (`BehaviourState`), so training and serving measure behaviour the same way.

use prewarm_shared::features::{FeatureVector, Observation, UnixSeconds, local_time};
use prewarm_shared::signals::UserHash;
use prewarm_shared::state::BehaviourState;

use crate::ingest::event::Event;

/// One user's behaviour, as of their last event and as of the end of their first session.
#[derive(Debug, Clone)]
pub struct UserFeatures {
    /// The user's hash.
    pub user: UserHash,
    /// Their region.
    pub region: String,
    /// Their features after their last event.
    pub features: FeatureVector,
    /// The state after the first session only: what the edge knows of a newcomer.
    pub first_session: BehaviourState,
    /// The state after their last event.
    pub final_state: BehaviourState,
    /// Their events in the window.
    pub events: usize,
}

/// Replays events (ordered by user, then time) into one state per user.
pub fn user_features(events: &[Event], default_offset: impl Fn(&str) -> i32) -> Vec<UserFeatures> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let user = events[start].user;
        let end = start + events[start..].iter().take_while(|e| e.user == user).count();
        out.push(user_features_of(&events[start..end], &default_offset));
        start = end;
    }
    out
}

/// Replays one user's events (non-empty, in time order) into their state.
pub fn user_features_of(slice: &[Event], default_offset: &dyn Fn(&str) -> i32) -> UserFeatures {
    let first_time = slice.first().map_or(0, |e| e.time);
    let mut state = BehaviourState::new(UnixSeconds(first_time));
    let mut first_session = None;
    for e in slice {
        let at = UnixSeconds(e.time);
        if first_session.is_none()
            && state.requests > 0
            && state.sessions == 1
            && at.0.saturating_sub(state.last_seen.0) > prewarm_shared::state::SESSION_GAP_SECS
        {
            first_session = Some(state.clone());
        }
        let offset = e.utc_offset_minutes.unwrap_or_else(|| default_offset(&e.region));
        let (local_hour, local_weekday) = local_time(at, offset);
        state.observe(&Observation {
            at,
            local_hour,
            local_weekday,
            device: e.device,
            class: e.class,
            rtt_ms: e.rtt_ms,
            response_bytes: e.bytes,
            response_ms: e.duration_ms.round() as u32,
        });
    }
    UserFeatures {
        user: slice.first().map_or(UserHash([0; 32]), |e| e.user),
        region: slice.first().map_or_else(String::new, |e| e.region.clone()),
        features: state.features(),
        first_session: first_session.unwrap_or_else(|| state.clone()),
        final_state: state,
        events: slice.len(),
    }
}
