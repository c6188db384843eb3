//! `[forecast]` in the configuration: the band's quantile and its choice, the alarm level,
//! the windows models are fitted and scored on, and outlier masking.

use serde::{Deserialize, Serialize};

/// `[forecast]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// The quantile of a minute's demand the published band covers when it is not chosen
    /// (`band_choice` off, or a series' first day of record); the plan provisions for the band.
    /// The band is calibrated to whatever quantile is asked, so this is a choice of cost against
    /// coverage. The default, 0.96, was the smallest of 0.90–0.97 at which the replay's
    /// `prewarm` was short in at most half as many minutes as reactive HPA at D = 5 and 15 min
    /// on the tuning splits of both committed traces.
    pub band_quantile: f64,
    /// Choose each series' band quantile from its own record ([`band_choice`]): the cheapest at
    /// which the deployment, replayed over the last `skill_days`, would have been short in at
    /// most `shortfall_vs_reactive` as many minutes as a reactive HPA alone.
    pub band_choice: bool,
    /// The share of a reactive HPA's short minutes the chosen band may leave short. The default,
    /// 0.4, is the goal on unseen traces (at most 0.4× the HPA's under-provisioning),
    /// not a value fitted to a trace.
    pub shortfall_vs_reactive: f64,
    /// …unless that band, replayed, would have cost more than this multiple of the reactive
    /// HPA's requested capacity: then the highest band within it. The default, 1.05, is the same
    /// goal's cost side ("at ≤ 1.05× its cost"), not a value fitted to a trace.
    pub cost_vs_reactive: f64,
    /// The utilisation target of the reactive HPA the band is chosen against (the operator's
    /// own; 0.7 is the common setting in Kubernetes' documentation and the replay's reference).
    pub reactive_utilisation: f64,
    /// The higher quantile the edge's prewarm signal tests against: demand above it is above
    /// what was planned for by a margin that matters.
    pub alarm_quantile: f64,
    /// History a model is fitted on.
    pub history_days: u64,
    /// Past forecasts scored for the choice of model and the bands.
    pub skill_days: u64,
    /// Transient runs this many MADs from the seasonal norm are masked before fitting…
    pub outlier_mads: f64,
    /// …when they last at most this long; longer runs may be level shifts and are kept.
    pub outlier_max_hours: usize,
    /// A first training seeds the ledger with past origins this far apart.
    pub bootstrap_every_hours: u64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            band_quantile: 0.96,
            band_choice: true,
            shortfall_vs_reactive: 0.4,
            cost_vs_reactive: 1.05,
            reactive_utilisation: 0.7,
            alarm_quantile: 0.995,
            history_days: 28,
            skill_days: 7,
            outlier_mads: 5.0,
            outlier_max_hours: 6,
            bootstrap_every_hours: 6,
        }
    }
}

impl ForecastConfig {
    /// Checks quantiles and windows.
    pub fn validate(&self) -> Result<(), String> {
        let quantile = |q: f64| q > 0.5 && q < 1.0;
        if !quantile(self.band_quantile) || !quantile(self.alarm_quantile) || self.alarm_quantile < self.band_quantile {
            return Err("[forecast] band_quantile and alarm_quantile must be in (0.5, 1), alarm ≥ band".into());
        }
        if self.history_days < 2 || self.skill_days == 0 || self.bootstrap_every_hours == 0 {
            return Err("[forecast] history_days ≥ 2, skill_days ≥ 1 and bootstrap_every_hours ≥ 1".into());
        }
        if !(0.0..=1.0).contains(&self.shortfall_vs_reactive) {
            return Err("[forecast] shortfall_vs_reactive must be in [0, 1]".into());
        }
        if self.cost_vs_reactive.is_nan() || self.cost_vs_reactive < 1.0 {
            return Err("[forecast] cost_vs_reactive must be at least 1 (the reactive HPA's own cost)".into());
        }
        if !(self.reactive_utilisation > 0.0 && self.reactive_utilisation <= 1.0) {
            return Err("[forecast] reactive_utilisation must be in (0, 1]".into());
        }
        if self.outlier_mads.is_nan() || self.outlier_mads <= 0.0 {
            return Err("[forecast] outlier_mads must be positive".into());
        }
        Ok(())
    }
}
