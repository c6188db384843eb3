//! The trainer's configuration: one typed struct, loaded once from a TOML file, then
//! environment variables (secrets belong there), then command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use prewarm_shared::Secret;
use serde::Deserialize;

/// Everything the trainer reads from its environment. Every field has a default except the
/// secrets, which must be set for the endpoints that need them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Where the store, published models and archives live (`PREWARM_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Address `prewarm serve` listens on (`PREWARM_LISTEN`).
    pub listen: SocketAddr,
    /// Bearer token for `POST /v1/events` (`PREWARM_INGEST_TOKEN`).
    pub ingest_token: Option<Secret>,
    /// The HMAC key the edge signs `POST /v1/signals` with (`PREWARM_SIGNAL_KEY`). It is never
    /// sent: a batch names it by its key id and carries a signature.
    pub signal_key: Option<Secret>,
    /// The key being rotated out (`PREWARM_SIGNAL_KEY_PREVIOUS`): batches signed with it are
    /// still accepted until every edge has the new one.
    pub signal_key_previous: Option<Secret>,
    /// Bearer token of the dashboard's rollback action (`PREWARM_ADMIN_TOKEN`); unset: disabled.
    pub admin_token: Option<Secret>,
    /// Bearer token for the reads that carry business data — `/v1/plan`, `/v1/status`,
    /// `/metrics`, `/` (`PREWARM_READ_TOKEN`); unset: open, as on a private network.
    /// `/healthz` stays open for probes.
    pub read_token: Option<Secret>,
    /// Salt for hashing users in imported logs (`PREWARM_SALT`); use the edge's salt so both
    /// hash the same way.
    pub salt: Option<Secret>,
    /// Largest accepted `POST /v1/events` body, after decompression. Signals and rollbacks
    /// have fixed limits of their own (`web::SIGNAL_BODY_LIMIT`, `web::ROLLBACK_BODY_LIMIT`).
    pub max_body_bytes: usize,
    /// A request taking longer is answered 408.
    pub request_timeout_secs: u64,
    /// A connection that has not sent a request's headers this long after connecting (or
    /// after its previous request) is closed: slow clients cannot hold connections open.
    pub header_read_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Store reads (status, scrapes, the dashboard, the plan) running at once, each on a
    /// read-only connection of its own beside the writer.
    pub max_concurrent_reads: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed: the client address for rate limits
    /// is the right-most forwarded address that is not one of them. Empty: the peer address.
    pub trusted_proxies: Vec<String>,
    /// `POST /v1/signals` per source address: sustained requests per second, and the burst.
    pub signal_rate_per_sec: f64,
    /// The burst of `POST /v1/signals` per source address.
    pub signal_burst: u32,
    /// Admin actions (rollback, resume) per source address, limited before the token is
    /// checked so it cannot be guessed at speed: sustained attempts per minute, and the burst.
    pub admin_attempts_per_min: f64,
    /// The burst of admin actions per source address.
    pub admin_burst: u32,
    /// Cap on the store's size: writes beyond it get 503 "store full" and nothing stored is
    /// touched (unset: the disk is the limit).
    pub store_max_mb: Option<u64>,
    /// Maintenance mode: the store takes no writes (503 "read-only"), reads and health go on.
    pub store_read_only: bool,
    /// Raw events older than this are pruned.
    pub retention_days: u64,
    /// `prewarm serve` retrains and publishes this often (0: only `prewarm train`).
    pub train_interval_secs: u64,
    /// The region for events whose client address matches no CIDR (and the only region by default).
    pub default_region: String,
    /// Regions: name, UTC offset of their users, and the client CIDRs that map to them (imports).
    pub regions: Vec<RegionConfig>,
    /// `[profiles]`: how users are profiled.
    pub profiles: ProfileConfig,
    /// `[costs]`: what a request costs when events carry no measurement.
    pub costs: CostConfig,
    /// How imported access logs write the response time appended after the User-Agent
    /// (`auto`: an integer is `%D` microseconds, a decimal `$request_time` seconds).
    pub response_time_unit: crate::ingest::access_log::ResponseTimeUnit,
    /// Imported access logs in the operator's own format: an Apache `LogFormat` or an nginx
    /// `log_format` string ([`crate::ingest::log_format`]). Unset: common or combined.
    pub log_format: Option<String>,
    /// Capacity planning: instance shape, lead time, min/max, budget, stabilisation.
    pub plan: crate::plan::PlanConfig,
    /// Cloudflare Workers KV (REST API) target for `prewarm publish --kv`.
    pub kv: Option<crate::publish::kv_rest::KvRestConfig>,
    /// A calendar of external events (TOML `[[event]]` tables; see the README), learnt from
    /// and applied to forecasts (`PREWARM_CALENDAR`).
    pub calendar: Option<PathBuf>,
    /// The webhook that receives plans and alerts, and how often.
    pub actuate: ActuateConfig,
    /// `[alerts]`: the rules alerts fire on.
    pub alerts: crate::monitor::AlertRules,
    /// Where profiles' priority classes come from.
    pub priority: crate::profile::priority::PriorityConfig,
    /// `[object_store]`: an archive of published versions (needs the `object-store` feature).
    pub object_store: Option<crate::publish::ObjectStoreConfig>,
    /// `[clickhouse]`: events in ClickHouse instead of SQLite (needs the `clickhouse` feature):
    /// `prewarm import`, `train` and `serve` keep events there; edge counts stay in SQLite.
    pub clickhouse: Option<crate::store::clickhouse::ClickHouseConfig>,
    /// Step of the demand series and the published forecast tables (a day of steps).
    pub forecast_step_secs: u64,
    /// `[forecast]`: band quantiles, history, skill window, outlier masking.
    pub forecast: crate::forecast::engine::ForecastConfig,
    /// `[[feed]]`: external covariates (HTTP JSON) the forecasts use as regressors.
    #[serde(rename = "feed")]
    pub feeds: Vec<crate::forecast::feeds::FeedConfig>,
}

/// One region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// The region's name.
    pub name: String,
    /// Its UTC offset, for local time when events carry none.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Client networks (CIDR) whose log lines belong to it.
    #[serde(default)]
    pub cidrs: Vec<String>,
}

pub use crate::profile::config::{ClusterMethod, CostConfig, ProfileConfig};

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("prewarm-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
            ingest_token: None,
            signal_key: None,
            signal_key_previous: None,
            admin_token: None,
            read_token: None,
            salt: None,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            max_connections: 1024,
            max_concurrent_reads: 4,
            trusted_proxies: Vec::new(),
            signal_rate_per_sec: 50.0,
            signal_burst: 200,
            admin_attempts_per_min: 6.0,
            admin_burst: 5,
            store_max_mb: None,
            store_read_only: false,
            retention_days: 35,
            train_interval_secs: 3_600,
            default_region: "global".into(),
            regions: Vec::new(),
            profiles: ProfileConfig::default(),
            costs: CostConfig::default(),
            response_time_unit: Default::default(),
            log_format: None,
            plan: crate::plan::PlanConfig::default(),
            kv: None,
            calendar: None,
            actuate: ActuateConfig::default(),
            alerts: crate::monitor::AlertRules::default(),
            priority: crate::profile::priority::PriorityConfig::default(),
            feeds: Vec::new(),
            forecast_step_secs: crate::forecast::DEFAULT_STEP_SECS,
            forecast: crate::forecast::engine::ForecastConfig::default(),
            object_store: None,
            clickhouse: None,
        }
    }
}

/// A configuration that cannot be used, with the place to fix it.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    /// The file could not be read.
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    /// The file is not valid TOML for this schema.
    Parse { path: PathBuf, message: String },
    #[error("{name}={value:?}: {reason}")]
    /// An environment variable holds a bad value.
    Env { name: &'static str, value: String, reason: String },
    #[error("invalid configuration: {0}")]
    /// The settings contradict each other or are out of range.
    Invalid(String),
}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    prefix: u8,
    v4: bool,
}

impl Cidr {
    /// Parses `address/prefix` (a bare address is one host).
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let (bits, v4, max) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32),
            IpAddr::V6(a) => (u128::from(a), false, 128),
        };
        (prefix <= max).then_some(Self { network: bits & Self::mask(prefix, max), prefix, v4 })
    }

    fn mask(prefix: u8, max: u8) -> u128 {
        if prefix == 0 { 0 } else { (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(max)) }
    }

    /// Whether `addr` is in the network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) if self.v4 => u128::from(u32::from(a)) & Self::mask(self.prefix, 32) == self.network,
            IpAddr::V6(a) if !self.v4 => u128::from(a) & Self::mask(self.prefix, 128) == self.network,
            _ => false,
        }
    }
}

impl TrainerConfig {
    /// Loads the file (if any), then applies environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?
            }
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Environment overrides; `lookup` is injected so tests need not touch the process environment.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = lookup("PREWARM_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = lookup("PREWARM_CALENDAR").filter(|v| !v.is_empty()) {
            self.calendar = Some(PathBuf::from(v));
        }
        if let Some(v) = lookup("PREWARM_LISTEN") {
            self.listen = v.parse().map_err(|e: std::net::AddrParseError| ConfigError::Env {
                name: "PREWARM_LISTEN",
                value: v.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Some(v) = lookup("PREWARM_KEDA_LISTEN").filter(|v| !v.is_empty()) {
            self.actuate.keda_listen = Some(v.parse().map_err(|e: std::net::AddrParseError| ConfigError::Env {
                name: "PREWARM_KEDA_LISTEN",
                value: v.clone(),
                reason: e.to_string(),
            })?);
        }
        if let (Some(kv), Some(token)) = (self.kv.as_mut(), lookup("PREWARM_CF_API_TOKEN").filter(|t| !t.is_empty())) {
            kv.api_token = Some(token.into());
        }
        for (name, slot) in [
            ("PREWARM_INGEST_TOKEN", &mut self.ingest_token),
            ("PREWARM_SIGNAL_KEY", &mut self.signal_key),
            ("PREWARM_SIGNAL_KEY_PREVIOUS", &mut self.signal_key_previous),
            ("PREWARM_SALT", &mut self.salt),
            ("PREWARM_WEBHOOK_SECRET", &mut self.actuate.webhook_secret),
            ("PREWARM_ADMIN_TOKEN", &mut self.admin_token),
            ("PREWARM_READ_TOKEN", &mut self.read_token),
        ] {
            if let Some(v) = lookup(name).filter(|v| !v.is_empty()) {
                *slot = Some(v.into());
            }
        }
        if lookup("PREWARM_SIGNAL_TOKEN").is_some_and(|v| !v.is_empty()) {
            return Err(ConfigError::Env {
                name: "PREWARM_SIGNAL_TOKEN",
                value: "<redacted>".into(),
                reason: "renamed PREWARM_SIGNAL_KEY: the edge now signs with it and never sends it (set the \
                         worker's SIGNAL_KEY to the same value)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Checks ranges, secrets' lengths and that the sections agree.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(format) = &self.log_format {
            crate::ingest::log_format::LogFormat::compile(format).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        self.priority.validate().map_err(ConfigError::Invalid)?;
        self.plan.validate().map_err(ConfigError::Invalid)?;
        self.forecast.validate().map_err(ConfigError::Invalid)?;
        if cfg!(not(feature = "object-store")) && self.object_store.is_some() {
            return Err(ConfigError::Invalid(
                "[object_store] needs prewarm built with the object-store feature (cargo build --features object-store)".into(),
            ));
        }
        if cfg!(not(feature = "clickhouse")) && self.clickhouse.is_some() {
            return Err(ConfigError::Invalid(
                "[clickhouse] needs prewarm built with the clickhouse feature (cargo build --features clickhouse)"
                    .into(),
            ));
        }
        if !(60..=3600).contains(&self.forecast_step_secs) || 86_400 % self.forecast_step_secs != 0 {
            return Err(ConfigError::Invalid(format!(
                "forecast_step_secs = {}: between 60 and 3600 and a divisor of a day (e.g. 300, 600, 900)",
                self.forecast_step_secs
            )));
        }
        for (i, feed) in self.feeds.iter().enumerate() {
            if feed.name.is_empty() || self.feeds[..i].iter().any(|f| f.name == feed.name) {
                return Err(ConfigError::Invalid(format!("feed {}: a unique, non-empty name", i + 1)));
            }
            if !(feed.url.starts_with("http://") || feed.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!("feed `{}`: url must be http:// or https://", feed.name)));
            }
        }
        let p = &self.profiles;
        p.validate().map_err(ConfigError::Invalid)?;
        self.costs.validate().map_err(ConfigError::Invalid)?;
        let secrets = [
            ("ingest_token", &self.ingest_token),
            ("signal_key", &self.signal_key),
            ("signal_key_previous", &self.signal_key_previous),
            ("admin_token", &self.admin_token),
            ("read_token", &self.read_token),
            // The edge refuses a shorter salt, and hashes must match on both sides.
            ("salt", &self.salt),
        ];
        for (name, secret) in secrets {
            if secret.as_ref().is_some_and(|s| s.len() < 16) {
                return Err(ConfigError::Invalid(format!("{name} must be at least 16 characters")));
            }
        }
        if self.signal_key_previous.is_some() && self.signal_key.is_none() {
            return Err(ConfigError::Invalid("signal_key_previous is set without signal_key".into()));
        }
        if self.signal_key.is_some() && self.signal_key == self.signal_key_previous {
            return Err(ConfigError::Invalid("signal_key_previous equals signal_key: nothing is being rotated".into()));
        }
        if let Some(bad) = self.trusted_proxies.iter().find(|c| Cidr::parse(c).is_none()) {
            return Err(ConfigError::Invalid(format!("trusted_proxies: {bad:?} is not a CIDR (e.g. 10.0.0.0/8)")));
        }
        if self.header_read_timeout_secs == 0 || self.max_connections == 0 || self.max_concurrent_reads == 0 {
            return Err(ConfigError::Invalid(
                "header_read_timeout_secs, max_connections and max_concurrent_reads must be > 0".into(),
            ));
        }
        for region in &self.regions {
            for cidr in &region.cidrs {
                if Cidr::parse(cidr).is_none() {
                    return Err(ConfigError::Invalid(format!("region {}: {cidr:?} is not a CIDR", region.name)));
                }
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid("max_body_bytes must be > 0".into()));
        }
        if !(self.signal_rate_per_sec.is_finite() && self.signal_rate_per_sec > 0.0) || self.signal_burst == 0 {
            return Err(ConfigError::Invalid("signal_rate_per_sec and signal_burst must be > 0".into()));
        }
        if !(self.admin_attempts_per_min.is_finite() && self.admin_attempts_per_min > 0.0) || self.admin_burst == 0 {
            return Err(ConfigError::Invalid("admin_attempts_per_min and admin_burst must be > 0".into()));
        }
        if self.actuate.webhook_url.is_some() && self.actuate.webhook_secret.as_ref().is_none_or(|s| s.len() < 16) {
            return Err(ConfigError::Invalid(
                "actuate.webhook_url needs PREWARM_WEBHOOK_SECRET (>= 16 characters) to sign deliveries".into(),
            ));
        }
        if self.actuate.interval_secs == 0 {
            return Err(ConfigError::Invalid("actuate.interval_secs must be > 0".into()));
        }
        if self.actuate.max_plan_age_secs <= self.actuate.interval_secs {
            return Err(ConfigError::Invalid(format!(
                "actuate.max_plan_age_secs ({}) must exceed actuate.interval_secs ({}): each cycle refreshes the plan",
                self.actuate.max_plan_age_secs, self.actuate.interval_secs
            )));
        }
        if self.store_max_mb == Some(0) {
            return Err(ConfigError::Invalid("store_max_mb must be > 0 when set".into()));
        }
        Ok(())
    }

    /// The keys a signal batch may be signed with: the current one, then the one being
    /// rotated out.
    pub fn signal_keys(&self) -> impl Iterator<Item = &Secret> {
        self.signal_key.iter().chain(self.signal_key_previous.iter())
    }

    /// The region of a client address (imports), by the first matching CIDR.
    pub fn region_of(&self, addr: Option<IpAddr>) -> &str {
        addr.and_then(|a| {
            self.regions.iter().find(|r| r.cidrs.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(a)))
        })
        .map_or(&self.default_region, |r| &r.name)
    }

    /// The configured UTC offset of a region's users (0 when unknown).
    /// The sections the profile stage reads.
    pub fn profile_settings(&self) -> crate::profile::ProfileSettings<'_> {
        crate::profile::ProfileSettings {
            profiles: &self.profiles,
            costs: &self.costs,
            priority: &self.priority,
            forecast_step_secs: self.forecast_step_secs,
            band_quantile: self.forecast.band_quantile,
            utc_offset: Box::new(|region| self.utc_offset_of(region)),
        }
    }

    /// A region's configured UTC offset in minutes (0 when not configured).
    pub fn utc_offset_of(&self, region: &str) -> i32 {
        self.regions.iter().find(|r| r.name == region).map_or(0, |r| r.utc_offset_minutes)
    }

    /// The SQLite event store's file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("events.sqlite")
    }

    /// Where published models are kept (the directory publisher's root).
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_v4_and_v6() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        let c6 = Cidr::parse("2001:db8::/32").expect("cidr");
        assert!(c6.contains("2001:db8::1".parse().expect("ip")));
        assert!(!c6.contains("10.1.0.1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("0.0.0.0/0").is_some_and(|c| c.contains("8.8.8.8".parse().expect("ip"))));
    }

    #[test]
    fn file_then_env_with_clear_errors() {
        let mut config: TrainerConfig = toml::from_str(
            r#"
            default_region = "eu"
            [[regions]]
            name = "us"
            utc_offset_minutes = -300
            cidrs = ["192.0.2.0/24"]
            [profiles]
            k_max = 6
            "#,
        )
        .expect("parses");
        config.apply_env(|n| (n == "PREWARM_SALT").then(|| "pepper-0123456789".to_string())).expect("env");
        config.validate().expect("valid");
        assert_eq!(config.salt.as_ref().map(Secret::expose), Some("pepper-0123456789"));
        assert!(!format!("{config:?}").contains("pepper-0123456789"), "secrets stay out of Debug");
        assert_eq!(config.region_of(Some("192.0.2.9".parse().expect("ip"))), "us");
        assert_eq!(config.region_of(Some("198.51.100.1".parse().expect("ip"))), "eu");
        assert_eq!(config.profiles.k_max, 6);
        let unknown = toml::from_str::<TrainerConfig>("colour = 3");
        assert!(unknown.is_err_and(|e| e.to_string().contains("colour")));
        let mut short = config.clone();
        short.apply_env(|n| (n == "PREWARM_SALT").then(|| "pepper".to_string())).expect("env");
        assert!(short.validate().is_err_and(|e| e.to_string().contains("salt")), "a short salt is refused");
        let renamed = config.clone().apply_env(|n| (n == "PREWARM_SIGNAL_TOKEN").then(|| "x".repeat(20)));
        assert!(
            matches!(renamed, Err(ConfigError::Env { name: "PREWARM_SIGNAL_TOKEN", .. })),
            "the old name says it moved"
        );
        let bad = config.apply_env(|n| (n == "PREWARM_LISTEN").then(|| "nowhere".to_string()));
        assert!(matches!(bad, Err(ConfigError::Env { name: "PREWARM_LISTEN", .. })));
    }
}

/// `[actuate]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActuateConfig {
    /// Where plans and alerts are POSTed; unset: no webhook.
    pub webhook_url: Option<String>,
    /// The HMAC key of deliveries (`PREWARM_WEBHOOK_SECRET`; never in the file).
    #[serde(skip)]
    pub webhook_secret: Option<Secret>,
    /// The plan is sent, and alerts evaluated, this often.
    pub interval_secs: u64,
    /// Attempts after the first, with backoff doubling from `backoff_ms`.
    pub retries: u32,
    /// The first retry's delay; it doubles with each.
    pub backoff_ms: u64,
    /// Each delivery's timeout.
    pub timeout_secs: u64,
    /// Plan and report only: no webhook deliveries, and the KEDA scaler answers
    /// FAILED_PRECONDITION (KEDA then keeps its replicas, or its fallback).
    pub forecast_only: bool,
    /// Where the KEDA external scaler (gRPC) listens (`PREWARM_KEDA_LISTEN`); unset: off.
    pub keda_listen: Option<std::net::SocketAddr>,
    /// The scaler serves the plan of the last cycle while it is at most this old; an older
    /// plan (actuation stuck or failing) is answered with an error, so KEDA's fallback applies
    /// instead of a stale number.
    pub max_plan_age_secs: u64,
}

impl Default for ActuateConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            interval_secs: 60,
            retries: 4,
            backoff_ms: 500,
            timeout_secs: 10,
            forecast_only: false,
            keda_listen: None,
            max_plan_age_secs: 180,
        }
    }
}
