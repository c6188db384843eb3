//! Model artifacts: what the trainer publishes and the edge reads.
//!
//! Every artifact is an [envelope](Envelope) around a postcard payload. Postcard has a
//! documented, stable wire format; bincode is unmaintained (RUSTSEC-2025-0141) and its 3.0.0
//! release is a `compile_error!` tombstone. The envelope lets a reader reject the wrong file,
//! an unknown schema or a corrupted payload before decoding a single field.
//!
//! A model is published as one [`RegionModel`] blob per region, stored immutably under its
//! content hash, plus a small [`ModelPointer`] naming the current blob of each region. The
//! edge reads the pointer and only its own region's blob.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

mod pointer;

pub use pointer::{ModelPointer, RegionEntry, RegionMap};

use crate::classify::{ClassificationRules, RulesError};
use crate::features::{FEATURE_DIM, FeatureSchema, UnixSeconds};
pub use crate::profile_meta::{
    CostFigure, CostSource, PriorityClass, ProfileId, ProfileMeta, ProfileRole, ResourceCost,
};

/// Identifies a prewarm artifact.
pub const MAGIC: [u8; 4] = *b"PWRM";
/// Bumped whenever a payload type changes incompatibly (2: forecasts carry the alarm level
/// of the edge's prewarm signal, costs their mean).
pub const ARTIFACT_SCHEMA_VERSION: u16 = 3;
/// magic 4 + schema 2 + kind 1 + reserved 1 + model version 4 + created-at 8 + length 4 + sha256 32.
pub const HEADER_LEN: usize = 56;
/// The most profiles a region may have; keeps assignment cost and artifact size bounded.
pub const MAX_PROFILES: usize = 256;
/// Workers KV's limit for one value.
pub const KV_VALUE_LIMIT: usize = 25 * 1024 * 1024;

/// A published model's version; increases with every publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelVersion(pub u32);

/// SHA-256 of an artifact payload; hex in JSON and in KV keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, as in KV keys and JSON.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        crate::hex::decode(text).map(Self)
    }

    /// The KV key under which the region blob with this hash is stored.
    pub fn kv_key(&self) -> String {
        format!("model/{}", self.to_hex())
    }
}

impl core::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

impl core::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

/// Which payload an envelope holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// The small record the edge polls ([`ModelPointer`]).
    Pointer = 1,
    /// One region's model ([`RegionModel`]).
    Region = 2,
}

impl ArtifactKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Pointer),
            2 => Some(Self::Region),
            _ => None,
        }
    }
}

/// Why an artifact was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum ArtifactError {
    #[error("artifact is {found} bytes, shorter than its {needed}-byte header")]
    /// Fewer bytes than the header.
    Truncated { found: usize, needed: usize },
    #[error("not a prewarm artifact (magic bytes {found:02x?})")]
    /// Not a prewarm artifact.
    BadMagic { found: [u8; 4] },
    #[error("artifact schema {found} is not supported (this build reads {ARTIFACT_SCHEMA_VERSION})")]
    /// A schema this build does not read.
    UnknownSchema { found: u16 },
    #[error("artifact kind byte {found} is unknown")]
    /// An unknown payload kind.
    UnknownKind { found: u8 },
    #[error("expected a {expected:?} artifact, found a {found:?}")]
    /// A payload of the other kind.
    WrongKind { expected: ArtifactKind, found: ArtifactKind },
    #[error("payload is {found} bytes but the header declares {declared}")]
    /// The header's length disagrees with the payload.
    LengthMismatch { declared: usize, found: usize },
    #[error("payload hash {found} does not match the header's {expected}")]
    /// The payload does not hash to the header's hash.
    HashMismatch { expected: ContentHash, found: ContentHash },
    #[error("payload does not decode: {0}")]
    /// The payload does not decode.
    Payload(String),
    #[error("payload decodes but is invalid: {0}")]
    /// The payload decodes but breaks an invariant.
    Invalid(String),
    #[error("classification rules are invalid: {0}")]
    /// The classification rules inside are unusable.
    Rules(#[from] RulesError),
    #[error("artifact is {size} bytes, over the {limit}-byte limit of a KV value")]
    /// Larger than a KV value may be.
    TooLarge { size: usize, limit: usize },
}

/// The fixed header in front of every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the payload is.
    pub kind: ArtifactKind,
    /// [`ARTIFACT_SCHEMA_VERSION`] when written.
    pub schema: u16,
    /// The model version it belongs to.
    pub model_version: ModelVersion,
    /// When it was published.
    pub created_at: UnixSeconds,
    /// SHA-256 of the payload.
    pub payload_hash: ContentHash,
}

impl Envelope {
    /// Wraps a payload.
    pub fn seal(kind: ArtifactKind, model_version: ModelVersion, created_at: UnixSeconds, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&ARTIFACT_SCHEMA_VERSION.to_le_bytes());
        out.push(kind as u8);
        out.push(0);
        out.extend_from_slice(&model_version.0.to_le_bytes());
        out.extend_from_slice(&created_at.0.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&ContentHash::of(payload).0);
        out.extend_from_slice(payload);
        out
    }

    /// Checks the header and the payload hash; returns the header and the payload.
    pub fn open(bytes: &[u8]) -> Result<(Envelope, &[u8]), ArtifactError> {
        if bytes.len() < HEADER_LEN {
            if bytes.len() >= 4 && bytes[..4] != MAGIC {
                return Err(ArtifactError::BadMagic { found: [bytes[0], bytes[1], bytes[2], bytes[3]] });
            }
            return Err(ArtifactError::Truncated { found: bytes.len(), needed: HEADER_LEN });
        }
        let (header, payload) = bytes.split_at(HEADER_LEN);
        let magic = [header[0], header[1], header[2], header[3]];
        if magic != MAGIC {
            return Err(ArtifactError::BadMagic { found: magic });
        }
        let schema = u16::from_le_bytes([header[4], header[5]]);
        if schema != ARTIFACT_SCHEMA_VERSION {
            return Err(ArtifactError::UnknownSchema { found: schema });
        }
        let kind = ArtifactKind::from_byte(header[6]).ok_or(ArtifactError::UnknownKind { found: header[6] })?;
        let u32_at = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let model_version = ModelVersion(u32_at(8));
        let mut created = [0u8; 8];
        created.copy_from_slice(&header[12..20]);
        let declared = u32_at(20) as usize;
        if declared != payload.len() {
            return Err(ArtifactError::LengthMismatch { declared, found: payload.len() });
        }
        let mut expected = [0u8; 32];
        expected.copy_from_slice(&header[24..56]);
        let expected = ContentHash(expected);
        let found = ContentHash::of(payload);
        if found != expected {
            return Err(ArtifactError::HashMismatch { expected, found });
        }
        let envelope = Envelope {
            kind,
            schema,
            model_version,
            created_at: UnixSeconds(u64::from_le_bytes(created)),
            payload_hash: expected,
        };
        Ok((envelope, payload))
    }

    fn open_kind(bytes: &[u8], expected: ArtifactKind) -> Result<(Envelope, &[u8]), ArtifactError> {
        let (envelope, payload) = Self::open(bytes)?;
        if envelope.kind != expected {
            return Err(ArtifactError::WrongKind { expected, found: envelope.kind });
        }
        Ok((envelope, payload))
    }
}

/// Per-feature standardisation: normalised = (raw - mean) / scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Per-feature mean of the training users.
    pub mean: Vec<f32>,
    /// Per-feature scale (robust spread, never zero).
    pub scale: Vec<f32>,
}

/// How the edge assigns users to profiles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignmentParams {
    /// Requests a user needs before leaving the default profile.
    pub min_requests: u16,
    /// A user switches profile only when another centroid is closer by this distance
    /// (normalised units), so users near a boundary do not flap.
    pub hysteresis_margin: f32,
}

/// One profile's demand forecast, in requests per step: expected, the calibrated band a
/// minute's demand stays under with probability `upper_quantile` (what the plan provisions
/// for), and the higher alarm level the edge's prewarm signal tests the last minute against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileForecast {
    /// Whose demand this is.
    pub profile: ProfileId,
    /// Expected requests per step.
    pub expected: Vec<f32>,
    /// The calibrated band the plan provisions for.
    pub upper: Vec<f32>,
    /// The level above which the edge raises a prewarm signal.
    pub alarm: Vec<f32>,
}

/// Forecasts for every profile of a region over the horizon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastTable {
    /// The first step's start.
    pub start: UnixSeconds,
    /// Step length.
    pub step_secs: u32,
    /// Which quantile `upper` is, e.g. 0.9.
    pub upper_quantile: f32,
    /// One forecast per profile.
    pub series: Vec<ProfileForecast>,
}

impl ForecastTable {
    /// The slot an instant falls in, if it is within the horizon.
    pub fn slot(&self, at: UnixSeconds) -> Option<usize> {
        let offset = at.0.checked_sub(self.start.0)?;
        let slot = usize::try_from(offset / u64::from(self.step_secs.max(1))).ok()?;
        let len = self.series.first().map_or(0, |s| s.expected.len());
        (slot < len).then_some(slot)
    }

    /// Forecast of one profile for one slot: (expected, upper).
    pub fn at(&self, profile: ProfileId, slot: usize) -> Option<(f32, f32)> {
        let s = self.series.iter().find(|s| s.profile == profile)?;
        Some((*s.expected.get(slot)?, *s.upper.get(slot)?))
    }

    /// One profile's series.
    pub fn of(&self, profile: ProfileId) -> Option<&ProfileForecast> {
        self.series.iter().find(|s| s.profile == profile)
    }
}

/// Everything the edge needs for one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionModel {
    /// The region's name (`[A-Za-z0-9_-]{1,64}`).
    pub region: String,
    /// The version this model was published as.
    pub model_version: ModelVersion,
    /// The features its centroids are in.
    pub schema: FeatureSchema,
    /// How raw features are standardised before distances.
    pub normalisation: Normalisation,
    /// k × FEATURE_DIM, row-major, in normalised units; row i belongs to `profiles[i]`.
    pub centroids: Vec<f32>,
    /// One entry per centroid, in centroid order.
    pub profiles: Vec<ProfileMeta>,
    /// Where newcomers go.
    pub default_profile: ProfileId,
    /// How the edge assigns.
    pub assignment: AssignmentParams,
    /// How requests are classified in this region.
    pub rules: ClassificationRules,
    /// Demand forecasts per profile.
    pub forecast: ForecastTable,
}

impl RegionModel {
    /// Number of profiles (centroids).
    pub fn k(&self) -> usize {
        self.profiles.len()
    }

    /// Row `i` of the centroid matrix.
    pub fn centroid(&self, i: usize) -> Option<&[f32]> {
        self.centroids.get(i * FEATURE_DIM..(i + 1) * FEATURE_DIM)
    }

    /// Row `i` of the centroid matrix in raw feature units (the standardisation undone).
    pub fn raw_centroid(&self, i: usize) -> Option<[f32; FEATURE_DIM]> {
        let row = self.centroid(i)?;
        let mut raw = [0.0; FEATURE_DIM];
        for (f, v) in row.iter().enumerate() {
            let (mean, scale) =
                (self.normalisation.mean.get(f).copied().unwrap_or(0.0), self.normalisation.scale.get(f).copied()?);
            raw[f] = v * scale + mean;
        }
        Some(raw)
    }

    /// Position of a profile id in `profiles`.
    pub fn profile_index(&self, id: ProfileId) -> Option<usize> {
        self.profiles.iter().position(|p| p.id == id)
    }

    /// The profile automated clients are assigned to, if the region has one.
    pub fn automated_profile(&self) -> Option<ProfileId> {
        self.profiles.iter().find(|p| p.role == ProfileRole::Automated).map(|p| p.id)
    }

    /// Encodes into an envelope; `created_at` is passed in so builds are reproducible.
    pub fn to_artifact(&self, created_at: UnixSeconds) -> Result<Vec<u8>, ArtifactError> {
        self.validate()?;
        let payload = postcard::to_allocvec(self).map_err(|e| ArtifactError::Payload(e.to_string()))?;
        let bytes = Envelope::seal(ArtifactKind::Region, self.model_version, created_at, &payload);
        check_size(bytes)
    }

    /// Decodes and validates a region blob.
    pub fn from_artifact(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let (envelope, payload) = Envelope::open_kind(bytes, ArtifactKind::Region)?;
        let model: Self = postcard::from_bytes(payload).map_err(|e| ArtifactError::Payload(e.to_string()))?;
        if model.model_version != envelope.model_version {
            return Err(ArtifactError::Invalid(format!(
                "payload version {} differs from envelope version {}",
                model.model_version.0, envelope.model_version.0
            )));
        }
        model.validate()?;
        Ok(model)
    }

    /// Checks every invariant the edge relies on, so it can index without bounds surprises.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let invalid = |m: String| Err(ArtifactError::Invalid(m));
        if !self.schema.is_current() {
            return invalid(format!("feature schema {} is not this build's", self.schema.version));
        }
        let k = self.profiles.len();
        if k == 0 || k > MAX_PROFILES {
            return invalid(format!("{k} profiles; between 1 and {MAX_PROFILES} are allowed"));
        }
        if self.centroids.len() != k * FEATURE_DIM {
            return invalid(format!("{} centroid values for {k} profiles of {FEATURE_DIM}", self.centroids.len()));
        }
        if self.normalisation.mean.len() != FEATURE_DIM || self.normalisation.scale.len() != FEATURE_DIM {
            return invalid("normalisation must have one mean and scale per feature".into());
        }
        let all_finite = self.centroids.iter().chain(&self.normalisation.mean).all(|x| x.is_finite());
        if !all_finite || !self.normalisation.scale.iter().all(|s| s.is_finite() && *s > 0.0) {
            return invalid("non-finite centroid or normalisation value, or a scale <= 0".into());
        }
        let mut ids: Vec<_> = self.profiles.iter().map(|p| p.id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != k {
            return invalid("profile ids are not unique".into());
        }
        for role in [ProfileRole::NewVisitors, ProfileRole::Automated] {
            if self.profiles.iter().filter(|p| p.role == role).count() > 1 {
                return invalid(format!("more than one {role:?} profile"));
            }
        }
        if self.profile_index(self.default_profile).is_none() {
            return invalid(format!("default profile {} is not a profile", self.default_profile.0));
        }
        let margin = self.assignment.hysteresis_margin;
        if !(margin.is_finite() && margin >= 0.0) {
            return invalid("hysteresis margin must be finite and >= 0".into());
        }
        let f = &self.forecast;
        if f.step_secs == 0 {
            return invalid("forecast step must be positive".into());
        }
        let horizon = f.series.first().map_or(0, |s| s.expected.len());
        for s in &f.series {
            if s.expected.len() != horizon || s.upper.len() != horizon || s.alarm.len() != horizon {
                return invalid(format!("forecast of profile {} has a different horizon", s.profile.0));
            }
            if self.profile_index(s.profile).is_none() {
                return invalid(format!("forecast names unknown profile {}", s.profile.0));
            }
        }
        self.rules.validate()?;
        Ok(())
    }

    /// A readable JSON view for operators (hashes in hex, enums by name).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn check_size(bytes: Vec<u8>) -> Result<Vec<u8>, ArtifactError> {
    if bytes.len() > KV_VALUE_LIMIT {
        return Err(ArtifactError::TooLarge { size: bytes.len(), limit: KV_VALUE_LIMIT });
    }
    Ok(bytes)
}

/// A whole model: the pointer plus every region blob, as published.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBundle {
    /// The pointer that names every blob.
    pub pointer: ModelPointer,
    /// Every region's model.
    pub regions: Vec<RegionModel>,
}

/// One KV write of a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    /// The KV key.
    pub key: String,
    /// The artifact bytes.
    pub value: Vec<u8>,
}

/// The KV key of the pointer.
pub const POINTER_KEY: &str = "current";

impl ModelBundle {
    /// Builds the pointer for a set of region models and encodes everything. Blobs come first
    /// in the result and the pointer last: written in this order, the edge never sees a pointer
    /// to a blob that is not there yet.
    pub fn encode(
        regions: &[RegionModel],
        version: ModelVersion,
        created_at: UnixSeconds,
        default_region: &str,
        region_map: RegionMap,
    ) -> Result<(ModelPointer, Vec<KvEntry>), ArtifactError> {
        let mut entries = Vec::with_capacity(regions.len() + 1);
        let mut listed = Vec::with_capacity(regions.len());
        for region in regions {
            let bytes = region.to_artifact(created_at)?;
            let hash = ContentHash::of(&bytes);
            listed.push(RegionEntry { region: region.region.clone(), hash, bytes: bytes.len() as u32 });
            entries.push(KvEntry { key: hash.kv_key(), value: bytes });
        }
        let pointer = ModelPointer {
            version,
            created_at,
            default_region: default_region.to_owned(),
            region_map,
            regions: listed,
        };
        entries.push(KvEntry { key: POINTER_KEY.to_owned(), value: pointer.to_artifact()? });
        Ok((pointer, entries))
    }
}

/// Checks that a region blob is the one the pointer names (KV may serve a stale key).
pub fn verify_blob(entry: &RegionEntry, bytes: &[u8]) -> Result<(), ArtifactError> {
    let found = ContentHash::of(bytes);
    if found != entry.hash {
        return Err(ArtifactError::HashMismatch { expected: entry.hash, found });
    }
    Ok(())
}
