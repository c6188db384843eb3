//! The pointer the edge polls: which blob is each region's, and which region a request is in.

use serde::{Deserialize, Serialize};

use super::{ArtifactError, ArtifactKind, ContentHash, Envelope, ModelVersion, check_size};
use crate::features::UnixSeconds;

/// Maps where a request entered Cloudflare to a region; first match by colo, then country, then
/// continent, else the pointer's default region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionMap {
    /// Colo code → region.
    pub by_colo: Vec<(String, String)>,
    /// Country code → region.
    pub by_country: Vec<(String, String)>,
    /// Continent code → region.
    pub by_continent: Vec<(String, String)>,
}

/// One region's current blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionEntry {
    /// The region's name.
    pub region: String,
    /// The blob's SHA-256 (its KV key).
    pub hash: ContentHash,
    /// The blob's size.
    pub bytes: u32,
}

/// The small "current model" record the edge polls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPointer {
    /// The model version.
    pub version: ModelVersion,
    /// When it was published.
    pub created_at: UnixSeconds,
    /// Where requests go that the map does not place.
    pub default_region: String,
    /// Where requests enter → region.
    pub region_map: RegionMap,
    /// One entry per region.
    pub regions: Vec<RegionEntry>,
}

impl ModelPointer {
    /// The region for a request's colo, country and continent.
    pub fn region_for(&self, colo: Option<&str>, country: Option<&str>, continent: Option<&str>) -> &str {
        fn lookup<'a>(table: &'a [(String, String)], key: Option<&str>) -> Option<&'a str> {
            let key = key?;
            table.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, r)| r.as_str())
        }
        lookup(&self.region_map.by_colo, colo)
            .or_else(|| lookup(&self.region_map.by_country, country))
            .or_else(|| lookup(&self.region_map.by_continent, continent))
            .filter(|r| self.entry(r).is_some())
            .unwrap_or(&self.default_region)
    }

    /// The entry of a region, if the pointer has one.
    pub fn entry(&self, region: &str) -> Option<&RegionEntry> {
        self.regions.iter().find(|e| e.region == region)
    }

    /// Validates and seals the pointer into an artifact.
    pub fn to_artifact(&self) -> Result<Vec<u8>, ArtifactError> {
        self.validate()?;
        let payload = postcard::to_allocvec(self).map_err(|e| ArtifactError::Payload(e.to_string()))?;
        check_size(Envelope::seal(ArtifactKind::Pointer, self.version, self.created_at, &payload))
    }

    /// Opens and validates a pointer artifact.
    pub fn from_artifact(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let (envelope, payload) = Envelope::open_kind(bytes, ArtifactKind::Pointer)?;
        let pointer: Self = postcard::from_bytes(payload).map_err(|e| ArtifactError::Payload(e.to_string()))?;
        if pointer.version != envelope.model_version {
            return Err(ArtifactError::Invalid("pointer version differs from its envelope".into()));
        }
        pointer.validate()?;
        Ok(pointer)
    }

    /// A pointer lists at least one region and a blob for its default region.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        if self.regions.is_empty() {
            return Err(ArtifactError::Invalid("pointer lists no regions".into()));
        }
        if self.entry(&self.default_region).is_none() {
            return Err(ArtifactError::Invalid(format!("default region {:?} has no blob", self.default_region)));
        }
        Ok(())
    }

    /// The pointer as JSON, for inspection.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
