//! External feeds: a numeric covariate per region and time (temperature, rain, a marketing
//! spend…) used as a regressor on top of the seasonal model.
//!
//! MSTL takes no regressors, so a feed's effect is learnt in two steps: each step's demand
//! minus its time-of-day mean (the seasonal part) is regressed on the covariate's deviation
//! from its mean; an effect that is clearly there (|t| ≥ 3 over at least two days) shifts the
//! forecast by `per_unit × (future value − historical mean)`. A feed that fails or says
//! nothing useful leaves the forecast as it was.
//!
//! Adding a feed: serve `GET <url>?from=<unix>&to=<unix>` answering
//! `{"points": [{"region": "eu" | "all", "time": <unix seconds>, "value": <number>}, …]}`
//! (history and the coming days), and list it under `[[feed]]`. Other sources implement
//! [`Feed`].

use std::time::Duration;

use serde::Deserialize;

use super::model::Forecast;

/// `[[feed]]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The feed's name (its covariate).
    pub name: String,
    /// Where it is fetched (JSON over HTTP).
    pub url: String,
    /// The fetch's timeout.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// The most a feed may send.
const MAX_FEED_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
/// Why a feed could not be used.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum FeedError {
    #[error("feed `{feed}`: {reason}")]
    /// It could not be fetched.
    Fetch { feed: String, reason: String },
    #[error(
        "feed `{feed}`: not the feed format ({reason}); expected {{\"points\": [{{\"region\", \"time\", \"value\"}}]}}"
    )]
    /// It is not the feed format.
    Format { feed: String, reason: String },
    #[error("feed `{feed}`: point {index} has a value that is not a finite number")]
    /// A value is not finite.
    NotFinite { feed: String, index: usize },
}

/// One observation or forecast of the covariate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedPoint {
    /// A region name, or `all`.
    pub region: String,
    /// Unix seconds.
    pub time: u64,
    /// The covariate's value.
    pub value: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedBody {
    points: Vec<FeedPoint>,
}

/// A source of covariate points.
pub trait Feed {
    /// The feed's name.
    fn name(&self) -> &str;
    /// Its points between `from` and `to` (Unix seconds).
    fn fetch(&self, from: u64, to: u64) -> Result<Vec<FeedPoint>, FeedError>;
}

/// A feed served over HTTP as JSON.
#[derive(Debug)]
pub struct HttpJsonFeed {
    config: FeedConfig,
    agent: ureq::Agent,
}

impl HttpJsonFeed {
    /// A feed fetched over HTTP.
    pub fn new(config: FeedConfig) -> Self {
        let agent = crate::outbound::agent(Duration::from_secs(config.timeout_secs));
        Self { config, agent }
    }
}

impl Feed for HttpJsonFeed {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn fetch(&self, from: u64, to: u64) -> Result<Vec<FeedPoint>, FeedError> {
        let feed = self.config.name.clone();
        let separator = if self.config.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}from={from}&to={to}", self.config.url);
        let mut response =
            self.agent.get(&url).call().map_err(|e| FeedError::Fetch { feed: feed.clone(), reason: e.to_string() })?;
        let status = response.status().as_u16();
        if status != 200 {
            let url = crate::outbound::redacted(&url);
            return Err(FeedError::Fetch { feed, reason: format!("HTTP {status} from {url}") });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_FEED_BYTES)
            .read_to_vec()
            .map_err(|e| FeedError::Fetch { feed: feed.clone(), reason: e.to_string() })?;
        parse(&feed, &body)
    }
}

/// Parses and checks a feed's body.
pub fn parse(feed: &str, body: &[u8]) -> Result<Vec<FeedPoint>, FeedError> {
    let parsed: FeedBody =
        serde_json::from_slice(body).map_err(|e| FeedError::Format { feed: feed.to_owned(), reason: e.to_string() })?;
    if let Some(index) = parsed.points.iter().position(|p| !p.value.is_finite()) {
        return Err(FeedError::NotFinite { feed: feed.to_owned(), index });
    }
    Ok(parsed.points)
}

/// The points for `region` (its own and `all`'s).
pub fn for_region(points: &[FeedPoint], region: &str) -> Vec<FeedPoint> {
    points.iter().filter(|p| p.region == region || p.region == "all").cloned().collect()
}

/// The mean of the points in each step of `[start, start + len·step)`; a step without points
/// takes the last value before it (a feed may be hourly or daily), for at most a day.
pub fn align(points: &[FeedPoint], start: u64, step: u64, len: usize) -> Vec<Option<f64>> {
    let mut sums = vec![(0.0, 0usize); len];
    for p in points {
        let Some(offset) = p.time.checked_sub(start) else { continue };
        if let Some(slot) = sums.get_mut((offset / step.max(1)) as usize) {
            slot.0 += p.value;
            slot.1 += 1;
        }
    }
    let hold = (86_400 / step.max(1)) as usize;
    let mut last: Option<(usize, f64)> = None;
    sums.into_iter()
        .enumerate()
        .map(|(i, (s, n))| {
            if n > 0 {
                let mean = s / n as f64;
                last = Some((i, mean));
                Some(mean)
            } else {
                last.filter(|(at, _)| i - at < hold).map(|(_, v)| v)
            }
        })
        .collect()
}

/// What one unit of the covariate adds to demand per step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Effect {
    /// Demand added per unit of the covariate, per step.
    pub per_unit: f64,
    /// The estimate's t statistic (effects below the threshold are dropped).
    pub t_stat: f64,
    /// The covariate's mean over the history (the level the seasonal model already reflects).
    pub mean: f64,
    /// Steps the effect was fitted on.
    pub steps: usize,
}

/// Learns the covariate's effect on `history` (demand per step; `covariate` aligned with it).
/// `None` without two days of overlap or without a clear effect (|t| < 3).
pub fn learn(history: &[f64], covariate: &[Option<f64>], day: usize) -> Option<Effect> {
    let day = day.max(1);
    let mut by_slot = vec![(0.0, 0usize); day];
    for (t, y) in history.iter().enumerate() {
        by_slot[t % day].0 += y;
        by_slot[t % day].1 += 1;
    }
    let pairs: Vec<(f64, f64)> = history
        .iter()
        .zip(covariate)
        .enumerate()
        .filter_map(|(t, (y, x))| {
            let (sum, n) = by_slot[t % day];
            Some((y - sum / n.max(1) as f64, (*x)?))
        })
        .collect();
    if pairs.len() < 2 * day {
        return None;
    }
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|(_, x)| x).sum::<f64>() / n;
    let sxx: f64 = pairs.iter().map(|(_, x)| (x - mean).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let per_unit = pairs.iter().map(|(e, x)| e * (x - mean)).sum::<f64>() / sxx;
    let intercept = pairs.iter().map(|(e, _)| e).sum::<f64>() / n;
    let residual: f64 = pairs.iter().map(|(e, x)| (e - intercept - per_unit * (x - mean)).powi(2)).sum();
    let standard_error = (residual / (n - 2.0).max(1.0) / sxx).sqrt();
    let t_stat = match (standard_error > 0.0, per_unit == 0.0) {
        (true, _) => per_unit / standard_error,
        (false, true) => 0.0,
        (false, false) => f64::INFINITY,
    };
    (t_stat.abs() >= 3.0).then_some(Effect { per_unit, t_stat, mean, steps: pairs.len() })
}

/// Shifts a forecast by the effect where the future covariate is known.
pub fn apply(forecast: &mut Forecast, effect: &Effect, future: &[Option<f64>]) {
    for (h, x) in future.iter().enumerate() {
        let Some(x) = x else { continue };
        let shift = effect.per_unit * (x - effect.mean);
        for v in [forecast.point.get_mut(h), forecast.upper.get_mut(h)].into_iter().flatten() {
            *v = (*v + shift).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_feed_bodies_are_named_errors() {
        assert!(matches!(parse("w", b"[1,2]"), Err(FeedError::Format { .. })));
        assert!(matches!(parse("w", br#"{"points":[{"region":"eu","time":1}]}"#), Err(FeedError::Format { .. })));
        let ok = parse("w", br#"{"points":[{"region":"eu","time":60,"value":2.5}]}"#).expect("parses");
        assert_eq!(ok, vec![FeedPoint { region: "eu".into(), time: 60, value: 2.5 }]);
        let text = FeedError::Format { feed: "w".into(), reason: "x".into() }.to_string();
        assert!(text.contains("feed `w`"), "{text}");
    }

    #[test]
    fn points_are_averaged_per_step_for_the_region_and_all() {
        let p = |region: &str, time, value| FeedPoint { region: region.into(), time, value };
        let points = [p("eu", 100, 1.0), p("all", 150, 3.0), p("us", 120, 99.0), p("eu", 400, 5.0), p("eu", 10, 7.0)];
        // Step 1 has its own point; a step without one holds the last value.
        assert_eq!(align(&for_region(&points, "eu"), 100, 300, 3), vec![Some(2.0), Some(5.0), Some(5.0)]);
        let daily = [p("eu", 0, 1.0)];
        let held = align(&daily, 0, 3600, 30);
        assert_eq!((held[23], held[24]), (Some(1.0), None), "held for a day at most");
    }

    #[test]
    fn a_clear_effect_is_learnt_and_noise_is_not() {
        let day = 24;
        let temperature: Vec<Option<f64>> = (0..10 * day).map(|t| Some(15.0 + ((t * 7919) % 13) as f64)).collect();
        let shape = |t: usize| 50.0 + 20.0 * ((t % day) as f64 / day as f64 * std::f64::consts::TAU).sin();
        let with_effect: Vec<f64> =
            (0..10 * day).map(|t| shape(t) + 3.0 * (temperature[t].unwrap_or(0.0) - 21.0)).collect();
        let effect = learn(&with_effect, &temperature, day).expect("an effect");
        assert!((effect.per_unit - 3.0).abs() < 0.3, "{effect:?}");
        let without: Vec<f64> = (0..10 * day).map(shape).collect();
        assert_eq!(learn(&without, &temperature, day), None, "no effect where there is none");
        assert_eq!(learn(&with_effect[..day], &temperature[..day], day), None, "under two days");
    }
}
