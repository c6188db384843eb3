//! The contract between the prewarm edge worker and the trainer.
//!
//! Both sides must agree byte for byte on what a behaviour feature means, how a request is
//! classified, how a user's running state is encoded into a cookie, how a model artifact is laid
//! out and how a user is assigned to a profile. Everything here builds for
//! `wasm32-unknown-unknown` and needs no OS, threads or randomness.
//!
//! The per-request path, as the edge runs it:
//!
//! ```
//! use prewarm_shared::{
//!     assign::assign_profile, classify::Device, features::{Observation, UnixSeconds},
//!     fixtures, state::BehaviourState,
//! };
//!
//! let model = fixtures::region_model("eu");
//! let class = model.rules.classify("/watch/42/segment-3.ts", None, Some("video/mp2t"));
//! let observation = Observation {
//!     at: UnixSeconds(1_700_000_000),
//!     local_hour: 21.5,
//!     local_weekday: 4,
//!     device: Device::from_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"),
//!     class,
//!     rtt_ms: Some(35),
//!     response_bytes: 800_000,
//!     response_ms: 120,
//! };
//! let mut state = BehaviourState::new(observation.at);
//! state.observe(&observation);
//! let features = state.features();
//! let profile = assign_profile(&model, &state, &features);
//! assert_eq!(profile, model.default_profile); // one request is not enough to refine
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![warn(missing_docs, unreachable_pub)]

pub mod aggregate;
pub mod artifact;
pub mod assign;
pub mod classify;
pub mod features;
pub mod profile_meta;
pub mod secret;
pub mod signal_rule;
pub mod signals;
pub mod state;

pub mod fixtures;
mod hex;

pub use artifact::{ArtifactError, ModelPointer, ProfileId, RegionModel};
pub use classify::{ClassificationRules, ContentClass, Device, RequestClass};
pub use features::{FEATURE_DIM, FeatureVector, Observation, UnixSeconds};
pub use secret::Secret;
pub use state::{BehaviourState, CookieKey, GeoMemo, StateError};
