//! What the edge tells the trainer: demand counts, prewarm requests and sampled states.
//!
//! JSON on the wire (the trainer and operators read it; it is small and batched), with a
//! version field so either side can be upgraded first. Users appear only as salted hashes.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::artifact::{ModelVersion, ProfileId};
use crate::features::{FEATURE_DIM, UnixSeconds};

/// The signal wire version this build speaks.
pub const SIGNAL_VERSION: u16 = 1;
/// Bounds a batch so one request cannot make the trainer allocate without limit.
pub const MAX_ITEMS_PER_BATCH: usize = 10_000;

/// HMAC-SHA256 of a raw user id under the deployment's salt: the only form of a user id that
/// ever leaves the edge (and the form the importer derives from IP + User-Agent).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserHash(pub [u8; 32]);

impl UserHash {
    pub fn derive(salt: &[u8], raw_id: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable!());
        mac.update(raw_id);
        Self(mac.finalize().into_bytes().into())
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        crate::hex::decode(text).map(Self)
    }
}

impl core::fmt::Debug for UserHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "UserHash({})", self.to_hex())
    }
}

impl Serialize for UserHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for UserHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Requests seen for one region × profile in one minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandCount {
    pub region: String,
    pub profile: ProfileId,
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub requests: u32,
    pub bytes: u64,
}

/// Why the edge asks for capacity now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrewarmReason {
    /// Observed demand is above the forecast's upper band for the current slot.
    AboveBand,
    /// The forecast for the next slots rises by more than the configured factor.
    ForecastRise,
}

/// An urgent request to raise a region × profile's capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrewarmRequest {
    pub region: String,
    pub profile: ProfileId,
    pub minute: u64,
    /// Requests per forecast step, extrapolated from what the isolate saw.
    pub observed: f32,
    /// The forecast's upper band for the same step.
    pub forecast_upper: f32,
    pub reason: PrewarmReason,
}

/// One user's anonymised state, sampled so the trainer sees live behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampledState {
    pub user: UserHash,
    pub region: String,
    pub profile: ProfileId,
    pub at: UnixSeconds,
    pub features: [f32; FEATURE_DIM],
}

/// A batch of signals from one isolate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalBatch {
    pub version: u16,
    pub sent_at: UnixSeconds,
    /// The model the edge was using, so the trainer can see stale edges.
    pub model_version: Option<ModelVersion>,
    #[serde(default)]
    pub demand: Vec<DemandCount>,
    #[serde(default)]
    pub prewarm: Vec<PrewarmRequest>,
    #[serde(default)]
    pub states: Vec<SampledState>,
}

/// Why a batch was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("signal batch is not valid JSON for this schema: {0}")]
    Json(#[from] serde_json::Error),
    #[error("signal version {found} is not supported (this build reads {SIGNAL_VERSION})")]
    UnknownVersion { found: u16 },
    #[error("signal batch has {count} items, at most {MAX_ITEMS_PER_BATCH} are allowed")]
    TooLarge { count: usize },
    #[error("signal batch holds a non-finite number")]
    NonFinite,
}

impl SignalBatch {
    pub fn new(sent_at: UnixSeconds, model_version: Option<ModelVersion>) -> Self {
        Self {
            version: SIGNAL_VERSION,
            sent_at,
            model_version,
            demand: Vec::new(),
            prewarm: Vec::new(),
            states: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.demand.is_empty() && self.prewarm.is_empty() && self.states.is_empty()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates a batch.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SignalError> {
        let batch: Self = serde_json::from_slice(bytes)?;
        if batch.version != SIGNAL_VERSION {
            return Err(SignalError::UnknownVersion { found: batch.version });
        }
        let count = batch.demand.len() + batch.prewarm.len() + batch.states.len();
        if count > MAX_ITEMS_PER_BATCH {
            return Err(SignalError::TooLarge { count });
        }
        let finite_prewarm = batch.prewarm.iter().all(|p| p.observed.is_finite() && p.forecast_upper.is_finite());
        let finite_states = batch.states.iter().all(|s| s.features.iter().all(|x| x.is_finite()));
        if !finite_prewarm || !finite_states {
            return Err(SignalError::NonFinite);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> SignalBatch {
        let mut b = SignalBatch::new(UnixSeconds(1_700_000_000), Some(ModelVersion(3)));
        b.demand.push(DemandCount {
            region: "eu".into(),
            profile: ProfileId(1),
            minute: 28_333_333,
            requests: 12,
            bytes: 9000,
        });
        b.prewarm.push(PrewarmRequest {
            region: "eu".into(),
            profile: ProfileId(1),
            minute: 28_333_333,
            observed: 400.0,
            forecast_upper: 130.0,
            reason: PrewarmReason::AboveBand,
        });
        b.states.push(SampledState {
            user: UserHash::derive(b"salt", b"raw-id"),
            region: "eu".into(),
            profile: ProfileId(1),
            at: UnixSeconds(1_700_000_000),
            features: [0.5; FEATURE_DIM],
        });
        b
    }

    #[test]
    fn round_trip_and_wire_shape() {
        let b = batch();
        let json = b.to_json();
        assert_eq!(SignalBatch::from_json(&json).expect("decodes"), b);
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(value["version"], 1);
        assert_eq!(value["prewarm"][0]["reason"], "above_band");
        assert_eq!(value["states"][0]["user"].as_str().map(str::len), Some(64));
        assert!(!String::from_utf8_lossy(&json).contains("raw-id"));
    }

    #[test]
    fn rejects_unknown_versions_bad_hashes_and_garbage() {
        let mut b = batch();
        b.version = 9;
        assert!(matches!(SignalBatch::from_json(&b.to_json()), Err(SignalError::UnknownVersion { found: 9 })));
        let text = String::from_utf8(batch().to_json()).expect("utf8");
        let bad_hash = text.replacen("\"user\":\"", "\"user\":\"zz", 1);
        assert!(matches!(SignalBatch::from_json(bad_hash.as_bytes()), Err(SignalError::Json(_))));
        assert!(matches!(SignalBatch::from_json(b"{\"version\":1"), Err(SignalError::Json(_))));
    }

    #[test]
    fn user_hash_depends_on_salt_and_id() {
        let a = UserHash::derive(b"salt", b"id-1");
        assert_eq!(a, UserHash::derive(b"salt", b"id-1"));
        assert_ne!(a, UserHash::derive(b"salt", b"id-2"));
        assert_ne!(a, UserHash::derive(b"pepper", b"id-1"));
    }
}
