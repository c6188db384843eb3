//! What the edge tells the trainer: demand counts, prewarm requests and sampled states.
//!
//! JSON on the wire (the trainer and operators read it; it is small and batched), with a
//! version field so either side can be upgraded first. Users appear only as salted hashes.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::artifact::{ModelVersion, ProfileId};
use crate::features::{FEATURE_DIM, UnixSeconds};

/// Header carrying the Unix time a batch was signed at.
pub const TIMESTAMP_HEADER: &str = "x-prewarm-timestamp";
/// Header carrying hex HMAC-SHA256(signal key, timestamp + "\n" + body).
pub const SIGNATURE_HEADER: &str = "x-prewarm-signature";
/// Header naming which signal key signed the batch ([`key_id`]): the key itself never travels,
/// and the trainer can refuse an unknown key before reading the body.
pub const KEY_ID_HEADER: &str = "x-prewarm-key-id";
/// Signatures older or newer than this are rejected, which bounds replays.
pub const MAX_SIGNATURE_SKEW_SECS: u64 = 300;

/// The signal wire version this build speaks.
pub const SIGNAL_VERSION: u16 = 1;
/// Bounds a batch so one request cannot make the trainer allocate without limit.
pub const MAX_ITEMS_PER_BATCH: usize = 10_000;
/// Longest region name (events and signals alike).
pub const MAX_REGION_LEN: usize = 64;

/// Whether `name` is a region name: 1 to [`MAX_REGION_LEN`] characters of `[A-Za-z0-9_-]`. The
/// one rule for events and signals, so neither can store a region name the other would refuse
/// (or one that breaks a metric label or a KV key).
pub fn is_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REGION_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// HMAC-SHA256 of a raw user id under the deployment's salt: the only form of a user id that
/// ever leaves the edge (and the form the importer derives from IP + User-Agent).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserHash(pub [u8; 32]);

impl UserHash {
    /// HMAC-SHA256(salt, raw id): what leaves the edge instead of the id.
    pub fn derive(salt: &[u8], raw_id: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable!());
        mac.update(raw_id);
        Self(mac.finalize().into_bytes().into())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parses 64 hex digits.
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

/// Signs a signal body so the trainer can tell it came from an edge holding the key and was
/// not replayed later. The key is never sent: requests carry its [`key_id`] and this signature.
pub fn sign(key: &[u8], timestamp: UnixSeconds, body: &[u8]) -> String {
    crate::hex::encode(&signature_mac(key, timestamp, body).finalize().into_bytes())
}

/// A signal key's public name: 16 hex digits of SHA-256 over a domain label and the key. It
/// tells the trainer which of its keys (current or previous, during a rotation) to verify with,
/// and reveals nothing that helps forge a signature.
pub fn key_id(key: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::new().chain_update(b"prewarm signal key id\n").chain_update(key).finalize();
    crate::hex::encode(&digest[..8])
}

fn signature_mac(key: &[u8], timestamp: UnixSeconds, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.0.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// Why a signal's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed {TIMESTAMP_HEADER} header")]
    /// The timestamp header is missing or malformed.
    BadTimestamp,
    #[error("signature timestamp is more than {MAX_SIGNATURE_SKEW_SECS} s from the trainer's clock")]
    /// The timestamp is too far from the trainer's clock.
    Stale,
    #[error("missing or malformed {SIGNATURE_HEADER} header")]
    /// The signature header is missing or malformed.
    BadSignatureHeader,
    #[error("signature does not verify")]
    /// The signature does not verify.
    Mismatch,
}

/// Checks a signature in constant time, and that its timestamp is within the allowed skew.
pub fn verify(
    key: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: UnixSeconds,
) -> Result<(), SignatureError> {
    let timestamp = fresh_timestamp(timestamp, now)?;
    verify_signature(key, timestamp, signature, body).map(|_| ())
}

/// The signed timestamp, if it is within the allowed skew of `now`: checked before the body
/// is read.
pub fn fresh_timestamp(timestamp: Option<&str>, now: UnixSeconds) -> Result<UnixSeconds, SignatureError> {
    let timestamp = UnixSeconds(timestamp.and_then(|t| t.trim().parse().ok()).ok_or(SignatureError::BadTimestamp)?);
    if timestamp.0.abs_diff(now.0) > MAX_SIGNATURE_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(timestamp)
}

/// Checks the signature of `body` at an already-checked `timestamp`, in constant time; returns
/// it (the batch's identity: a delivery with the same signature is the same batch).
pub fn verify_signature(
    key: &[u8],
    timestamp: UnixSeconds,
    signature: Option<&str>,
    body: &[u8],
) -> Result<[u8; 32], SignatureError> {
    let signature: [u8; 32] =
        signature.and_then(|s| crate::hex::decode(s.trim())).ok_or(SignatureError::BadSignatureHeader)?;
    signature_mac(key, timestamp, body).verify_slice(&signature).map_err(|_| SignatureError::Mismatch)?;
    Ok(signature)
}

/// Compares two secrets without leaking, through timing, how long a matching prefix is.
pub fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(presented.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

/// Requests seen for one region × profile in one minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandCount {
    /// The region counted.
    pub region: String,
    /// The profile counted.
    pub profile: ProfileId,
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Requests in the minute.
    pub requests: u32,
    /// Response bytes in the minute.
    pub bytes: u64,
}

/// Why the edge asks for capacity now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrewarmReason {
    /// The last minute's demand is above the forecast's alarm level for the current slot
    /// (`prewarm_shared::signal_rule`).
    AboveBand,
    /// Sent by earlier edges when the forecast ahead rose; no longer raised (the trainer's
    /// plan provisions forecast rises itself), still accepted on the wire.
    ForecastRise,
}

/// An urgent request to raise a region × profile's capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrewarmRequest {
    /// The region whose demand ran high.
    pub region: String,
    /// The profile whose demand ran high.
    pub profile: ProfileId,
    /// The Unix minute it was seen in.
    pub minute: u64,
    /// Requests per forecast step, extrapolated from what the isolate saw.
    pub observed: f32,
    /// The level it crossed for the same step (the forecast's alarm level).
    pub forecast_upper: f32,
    /// Why capacity is asked for.
    pub reason: PrewarmReason,
}

/// One user's anonymised state, sampled so the trainer sees live behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampledState {
    /// The user's salted hash.
    pub user: UserHash,
    /// The user's region.
    pub region: String,
    /// The profile the user is in.
    pub profile: ProfileId,
    /// When the state was sampled.
    pub at: UnixSeconds,
    /// The user's feature vector.
    pub features: [f32; FEATURE_DIM],
}

/// A batch of signals from one isolate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalBatch {
    /// [`SIGNAL_VERSION`] when written.
    pub version: u16,
    /// When the batch was signed and sent.
    pub sent_at: UnixSeconds,
    /// The model the edge was using, so the trainer can see stale edges.
    pub model_version: Option<ModelVersion>,
    /// Random per batch: two isolates' identical batches in the same second still differ, so
    /// the trainer's replay guard (one acceptance per signature) never drops a real one.
    #[serde(default)]
    pub batch_id: u64,
    /// Demand counts per region × profile × minute.
    #[serde(default)]
    pub demand: Vec<DemandCount>,
    /// Prewarm requests.
    #[serde(default)]
    pub prewarm: Vec<PrewarmRequest>,
    /// Sampled user states.
    #[serde(default)]
    pub states: Vec<SampledState>,
}

/// Why a batch was rejected.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum SignalError {
    #[error("signal batch is not valid JSON for this schema: {0}")]
    /// Not JSON of this schema.
    Json(#[from] serde_json::Error),
    #[error("signal version {found} is not supported (this build reads {SIGNAL_VERSION})")]
    /// A batch version this build does not read.
    UnknownVersion { found: u16 },
    #[error("signal batch has {count} items, at most {MAX_ITEMS_PER_BATCH} are allowed")]
    /// More items than a batch may hold.
    TooLarge { count: usize },
    #[error("signal batch holds a non-finite number")]
    /// A NaN or infinite number.
    NonFinite,
    #[error("signal batch names region {0:?}: 1 to {MAX_REGION_LEN} characters of [A-Za-z0-9_-]")]
    /// A region name outside `[A-Za-z0-9_-]{1,64}`.
    BadRegion(String),
}

impl SignalBatch {
    /// An empty batch.
    pub fn new(sent_at: UnixSeconds, model_version: Option<ModelVersion>) -> Self {
        Self {
            version: SIGNAL_VERSION,
            sent_at,
            model_version,
            batch_id: 0,
            demand: Vec::new(),
            prewarm: Vec::new(),
            states: Vec::new(),
        }
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.demand.is_empty() && self.prewarm.is_empty() && self.states.is_empty()
    }

    /// The batch as JSON, as it is signed and sent.
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
        let regions = batch.demand.iter().map(|d| &d.region).chain(batch.prewarm.iter().map(|p| &p.region));
        if let Some(bad) = regions.chain(batch.states.iter().map(|s| &s.region)).find(|r| !is_region_name(r)) {
            return Err(SignalError::BadRegion(bad.clone()));
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
        for bad in ["", "eu west", "eu/../x", &"r".repeat(MAX_REGION_LEN + 1)] {
            let mut b = batch();
            b.states[0].region = bad.to_owned();
            assert!(
                matches!(SignalBatch::from_json(&b.to_json()), Err(SignalError::BadRegion(r)) if r == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signatures_verify_and_reject_tampering_staleness_and_other_tokens() {
        let body = batch().to_json();
        let at = UnixSeconds(1_700_000_000);
        let sig = sign(b"token", at, &body);
        let ts = at.0.to_string();
        assert_eq!(verify(b"token", Some(&ts), Some(&sig), &body, at), Ok(()));
        assert_eq!(verify(b"token", Some(&ts), Some(&sig), &body, UnixSeconds(at.0 + 200)), Ok(()));
        assert_eq!(verify(b"other", Some(&ts), Some(&sig), &body, at), Err(SignatureError::Mismatch));
        let mut tampered = body.clone();
        tampered[3] ^= 1;
        assert_eq!(verify(b"token", Some(&ts), Some(&sig), &tampered, at), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"token", Some(&ts), Some(&sig), &body, UnixSeconds(at.0 + 301)), Err(SignatureError::Stale));
        assert_eq!(verify(b"token", None, Some(&sig), &body, at), Err(SignatureError::BadTimestamp));
        assert_eq!(verify(b"token", Some(&ts), Some("xyz"), &body, at), Err(SignatureError::BadSignatureHeader));
    }

    #[test]
    fn a_key_id_names_a_key_without_revealing_it() {
        let id = key_id(b"signal-key-0123456789");
        assert_eq!(id.len(), 16);
        assert_eq!(id, key_id(b"signal-key-0123456789"));
        assert_ne!(id, key_id(b"signal-key-0123456780"));
        assert!(!id.contains("signal"));
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match(b"secret-token", b"secret-token"));
        assert!(!tokens_match(b"secret-tokem", b"secret-token"));
        assert!(!tokens_match(b"secret", b"secret-token"));
        assert!(!tokens_match(b"secret-token-longer", b"secret-token"));
        assert!(!tokens_match(b"", b"x"));
    }

    #[test]
    fn user_hash_depends_on_salt_and_id() {
        let a = UserHash::derive(b"salt", b"id-1");
        assert_eq!(a, UserHash::derive(b"salt", b"id-1"));
        assert_ne!(a, UserHash::derive(b"salt", b"id-2"));
        assert_ne!(a, UserHash::derive(b"pepper", b"id-1"));
    }
}
