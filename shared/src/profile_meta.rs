//! What a region model says about each profile besides its centroid: its role, priority and
//! costs. Part of the region artifact (re-exported from [`crate::artifact`]).

use serde::{Deserialize, Serialize};

/// A profile's identity, stable across retrains (the trainer matches new centroids to old ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileId(pub u16);

/// How important a profile's users are when a budget binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityClass {
    /// Provisioned first; never cut by a budget.
    Critical,
    /// Provisioned after critical profiles.
    Standard,
    /// Provisioned last; the first cut when a budget binds.
    BestEffort,
}

/// Where a cost came from: the origin's own measurements, a proxy from what the events carry
/// (response times, sizes), or the operator's declared per-content defaults (`[cost.default]`)
/// when the events carry neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// Carried by the events (the origin measured it).
    Measured,
    /// Derived from response times and sizes with configured proxies.
    Estimated,
    /// The configured per-content default.
    Declared,
}

/// What a profile stands for, which decides how the edge assigns users to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileRole {
    /// Found by clustering: users are assigned to the nearest such centroid.
    #[default]
    Clustered,
    /// Visitors with fewer than `min_requests` requests: the region's default profile, never a
    /// nearest-centroid target (its centroid only describes who they were).
    NewVisitors,
    /// Automated clients (crawlers, scripts, monitors): assigned by rule
    /// ([`crate::assign::is_automated`]) from the first request, before any distance.
    Automated,
}

/// One resource's cost per request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostFigure {
    /// What capacity for many requests is sized by: their total is their count times the mean.
    pub mean: f32,
    /// Median per request.
    pub median: f32,
    /// 90th percentile per request.
    pub p90: f32,
    /// Where the figures came from.
    pub source: CostSource,
}

/// What one request of a profile costs to serve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceCost {
    /// CPU milliseconds per request.
    pub cpu_ms: CostFigure,
    /// Memory MB·s per request.
    pub memory_mb_s: CostFigure,
    /// Response bytes per request.
    pub bytes: CostFigure,
}

/// Everything about a profile except its centroid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileMeta {
    /// The profile's stable id.
    pub id: ProfileId,
    /// Human label from the dominant features, e.g. "mobile · video · evening".
    pub label: String,
    /// How it is provisioned when a budget binds.
    pub priority: PriorityClass,
    /// Share of the region's users in this profile when it was trained.
    pub share_of_users: f32,
    /// What one of its requests costs.
    pub cost: ResourceCost,
    /// How its users were put in it (rule or clustering).
    pub role: ProfileRole,
}
