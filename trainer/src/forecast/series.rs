//! Demand series: evenly spaced counts where missing data stays missing, never zero.
//!
//! Two kinds of holes: *gaps* (no data at all) and *outages* (long runs of zeros where demand is
//! normally busy: the service or the logging was down, users were not absent). Both are masked,
//! then filled from the same time a week (or a day) earlier before a model sees them, so an
//! outage is never learned as a dip.

/// A series at a fixed step; `None` is missing or masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Unix seconds of the first value.
    pub start: u64,
    /// Step length.
    pub step_secs: u64,
    /// Values per step (`None` unknown).
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, thiserror::Error)]
/// Why a series could not be read.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum SeriesError {
    #[error("line {line}: {reason}")]
    /// A malformed CSV line.
    Csv { line: usize, reason: String },
    /// No values.
    #[error("the series is empty")]
    Empty,
    #[error("cannot read {path}: {source}")]
    /// The file could not be read.
    Read { path: String, source: std::io::Error },
}

impl Series {
    /// Buckets (time, count) points into steps; steps without any point are missing.
    pub fn from_points(points: &[(u64, f64)], step_secs: u64) -> Result<Self, SeriesError> {
        let first = points.iter().map(|p| p.0).min().ok_or(SeriesError::Empty)?;
        let last = points.iter().map(|p| p.0).max().ok_or(SeriesError::Empty)?;
        let start = first / step_secs * step_secs;
        let len = ((last - start) / step_secs + 1) as usize;
        let mut values = vec![None; len];
        for &(t, v) in points {
            let i = ((t - start) / step_secs) as usize;
            *values[i].get_or_insert(0.0) += v;
        }
        Ok(Self { start, step_secs, values })
    }

    /// Reads `minute,requests` CSV (like testdata/nasa95): the first column is
    /// `YYYY-MM-DD HH:MM` (any fixed offset: seasonality is what matters) or Unix seconds.
    pub fn read_minute_csv(path: &std::path::Path) -> Result<Vec<(u64, f64)>, SeriesError> {
        use std::io::BufRead;
        let read_error = |source| SeriesError::Read { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut points = Vec::new();
        for (i, line) in std::io::BufReader::new(reader).lines().enumerate() {
            let line = line.map_err(read_error)?;
            let bad = |reason: &str| SeriesError::Csv { line: i + 1, reason: reason.to_owned() };
            let Some((time, value)) = line.split_once(',') else {
                return Err(bad("expected `time,value`"));
            };
            if i == 0 && value.trim().parse::<f64>().is_err() {
                continue; // header
            }
            let value: f64 =
                value.split(',').next().unwrap_or("").trim().parse().map_err(|_| bad("value is not a number"))?;
            let time = match time.trim().parse::<u64>() {
                Ok(t) => t,
                Err(_) => crate::ingest::event::parse_rfc3339_utc(&format!("{}:00Z", time.trim().replace(' ', "T")))
                    .ok_or_else(|| bad("time is neither Unix seconds nor `YYYY-MM-DD HH:MM`"))?,
            };
            points.push((time, value));
        }
        Ok(points)
    }

    /// Steps in the series.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it has no steps.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Masks runs of at least `min_run` zeros where the same positions one `period` earlier
    /// (or later) averaged more than `busy`: an outage, not quiet users. Returns runs masked.
    pub fn mask_outages(&mut self, period: usize, min_run: usize, busy: f64) -> usize {
        let n = self.values.len();
        let mut masked = 0;
        let mut i = 0;
        while i < n {
            if self.values[i] != Some(0.0) {
                i += 1;
                continue;
            }
            let end = i + self.values[i..].iter().take_while(|v| **v == Some(0.0)).count();
            if end - i >= min_run {
                let norm: Vec<f64> = (i..end)
                    .filter_map(|j| {
                        let before = j.checked_sub(period).and_then(|k| self.values[k]);
                        let after = self.values.get(j + period).copied().flatten();
                        before.or(after)
                    })
                    .collect();
                let mean = norm.iter().sum::<f64>() / norm.len().max(1) as f64;
                if mean > busy {
                    self.values[i..end].iter_mut().for_each(|v| *v = None);
                    masked += 1;
                }
            }
            i = end;
        }
        masked
    }

    /// Fills missing values from one `long` period earlier, else one `short` period earlier,
    /// else the last known value: what a seasonal model can be fitted on.
    pub fn imputed(&self, short: usize, long: usize) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::with_capacity(self.values.len());
        let mut last = self.values.iter().flatten().next().copied().unwrap_or(0.0);
        for (i, v) in self.values.iter().enumerate() {
            let value = match v {
                Some(v) => *v,
                None => i
                    .checked_sub(long)
                    .and_then(|k| self.values[k])
                    .or_else(|| i.checked_sub(short).map(|k| out[k]))
                    .unwrap_or(last),
            };
            last = value;
            out.push(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_stay_missing_and_outages_are_masked_then_filled() {
        // Two "days" of period 4 with a busy norm, then an outage of zeros, then a gap.
        let points: Vec<(u64, f64)> = [10.0, 20.0, 30.0, 20.0, 11.0, 21.0, 0.0, 0.0, 12.0, 22.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 * 60, *v))
            .chain([(11 * 60, 5.0)])
            .collect();
        let mut s = Series::from_points(&points, 60).expect("series");
        assert_eq!(s.values[10], None, "minute 10 has no row: missing, not zero");
        assert_eq!(s.mask_outages(4, 2, 5.0), 1);
        assert_eq!(&s.values[6..8], &[None, None]);
        let filled = s.imputed(4, 8);
        assert_eq!(&filled[6..8], &[30.0, 20.0], "filled from one period earlier");
        // Quiet zeros where the norm is also quiet are real demand and stay.
        let mut quiet = Series::from_points(&[(0, 0.0), (60, 0.0), (120, 0.0), (180, 0.0)], 60).expect("series");
        assert_eq!(quiet.mask_outages(2, 2, 1.0), 0);
    }
}
