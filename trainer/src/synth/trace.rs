//! A hard aggregate trace, generated from a seed, with its calendar: what traffic nobody here
//! has tuned for looks like — strong growth, scheduled flash crowds, unscheduled ones, a level
//! shift and an outage — for backtests and replays beside nasa95.
//!
//! Per minute: a daily shape (trough 02:00, peak 14:00, 4:1) and weekends at 0.7, times
//! growth ×9 over the eight weeks (compounding), times every crowd under way (ramping up over
//! 10 minutes), times a level shift of ×1.5 from the start of week 6, with count noise that is
//! overdispersed (a minute's rate wobbles by a tenth before Poisson draws from it); an outage
//! of 4 hours on day 44 reads zero.

use std::fmt::Write as _;

/// One crowd: when, how long, how big, and whether the calendar announces it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crowd {
    /// Minutes from the trace's start.
    pub start: u64,
    /// How long it lasts.
    pub minutes: u64,
    /// Demand during it, as a multiple of the normal level.
    pub multiplier: f64,
    /// Whether the calendar announces it.
    pub scheduled: bool,
}

/// The scenario's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HardTrace {
    /// Unix seconds of minute 0 (midnight UTC).
    pub start: u64,
    /// How many days the trace lasts.
    pub days: u64,
    /// Requests a minute at the first day's peak.
    pub base_peak: f64,
    /// Level at the end over level at the start (compounding).
    pub growth: f64,
    /// The crowds.
    pub crowds: Vec<Crowd>,
    /// Minute from which the level is multiplied, and by what.
    pub shift: (u64, f64),
    /// Minutes that read zero.
    pub outage: (u64, u64),
    /// The noise's seed.
    pub seed: u64,
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A Poisson draw: by inversion for small rates, a rounded normal for large ones.
    fn poisson(&mut self, rate: f64) -> f64 {
        if rate > 60.0 {
            return (rate + rate.sqrt() * self.normal()).round().max(0.0);
        }
        let u = self.next();
        let (mut k, mut p) = (0.0, (-rate).exp());
        let mut cumulative = p;
        while u > cumulative && k < 1_000.0 {
            k += 1.0;
            p *= rate / k;
            cumulative += p;
        }
        k
    }
}

impl HardTrace {
    /// The published scenario: 8 weeks from 2026-01-05 (a Monday), a scheduled crowd every
    /// evening (18:00 to 21:00, 1–2 h, ×3–5), five unscheduled ones.
    pub fn standard(seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let days = 56;
        let mut crowds = Vec::new();
        for day in 0..days {
            let hour = 18 + (rng.next() * 3.0) as u64;
            let minutes = 60 + (rng.next() * 60.0) as u64;
            let multiplier = 3.0 + 2.0 * rng.next();
            crowds.push(Crowd { start: day * 1440 + hour * 60, minutes, multiplier, scheduled: true });
        }
        for _ in 0..5 {
            let day = 15 + (rng.next() * (days - 16) as f64) as u64;
            let hour = 8 + (rng.next() * 8.0) as u64;
            crowds.push(Crowd {
                start: day * 1440 + hour * 60,
                minutes: 30 + (rng.next() * 60.0) as u64,
                multiplier: 2.0 + 2.0 * rng.next(),
                scheduled: false,
            });
        }
        Self {
            start: 1_767_571_200,
            days,
            base_peak: 20.0,
            growth: 9.0,
            crowds,
            shift: (35 * 1440, 1.5),
            outage: (44 * 1440 + 10 * 60, 44 * 1440 + 14 * 60),
            seed,
        }
    }

    /// The expected requests of minute `m` (before noise and outage).
    pub fn rate(&self, m: u64) -> f64 {
        let hour = (m % 1440) as f64 / 60.0;
        let daily = 2.5 + 1.5 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
        let weekday = (m / 1440) % 7;
        let weekly = if weekday >= 5 { 0.7 } else { 1.0 };
        let total = (self.days * 1440) as f64;
        let growth = self.growth.powf(m as f64 / total);
        let crowd = self
            .crowds
            .iter()
            .filter(|c| (c.start..c.start + c.minutes).contains(&m))
            .map(|c| 1.0 + (c.multiplier - 1.0) * ((m - c.start) as f64 / 10.0).min(1.0))
            .fold(1.0, f64::max);
        let shift = if m >= self.shift.0 { self.shift.1 } else { 1.0 };
        self.base_peak / 4.0 * daily * weekly * growth * crowd * shift
    }

    /// Requests per minute, noise drawn from the seed.
    pub fn minutes(&self) -> Vec<f64> {
        let mut rng = Rng(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        (0..self.days * 1440)
            .map(|m| {
                let wobble = (0.1 * rng.normal()).exp();
                let n = rng.poisson(self.rate(m) * wobble);
                if (self.outage.0..self.outage.1).contains(&m) { 0.0 } else { n }
            })
            .collect()
    }

    /// The per-minute CSV (`minute,requests`, UTC `YYYY-MM-DD HH:MM`).
    pub fn csv(&self) -> String {
        let mut out = String::from("minute_utc,requests\n");
        for (m, n) in self.minutes().iter().enumerate() {
            let t = self.start + m as u64 * 60;
            let _ = writeln!(out, "{},{n}", &super::rfc3339(t)[..16].replace('T', " "));
        }
        out
    }

    /// The calendar of the scheduled crowds (the trainer's `[[event]]` format; no multiplier:
    /// each is learnt from the ones before it).
    pub fn calendar(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.crowds.iter().filter(|c| c.scheduled).enumerate() {
            let (from, to) = (self.start + c.start * 60, self.start + (c.start + c.minutes) * 60);
            let _ = writeln!(
                out,
                "[[event]]\nname = \"evening crowd {}\"\nstart = \"{}\"\nend = \"{}\"\nkind = \"evening_crowd\"\n",
                i + 1,
                super::rfc3339(from),
                super::rfc3339(to)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_has_what_it_promises() {
        let trace = HardTrace::standard(7);
        let minutes = trace.minutes();
        assert_eq!(minutes.len(), 56 * 1440);
        let week = |w: usize| minutes[w * 7 * 1440..(w + 1) * 7 * 1440].iter().sum::<f64>();
        let growth = week(7) / week(0);
        assert!((8.0..16.0).contains(&growth), "growth over the eight weeks ×{growth:.1} (with the shift)");
        // A scheduled crowd triples the evening at least.
        let c = trace.crowds[20];
        let during = minutes[(c.start + 20) as usize..(c.start + 50) as usize].iter().sum::<f64>();
        let before =
            minutes[(c.start - 7 * 1440 + 300) as usize..(c.start - 7 * 1440 + 330) as usize].iter().sum::<f64>();
        assert!(during > 1.5 * before, "{during} vs {before}");
        assert!(minutes[(trace.outage.0 + 5) as usize..trace.outage.1 as usize].iter().all(|n| *n == 0.0));
        assert_eq!(trace.calendar().matches("[[event]]").count(), 56);
        assert_eq!(trace.crowds.iter().filter(|c| !c.scheduled).count(), 5);
        assert_eq!(HardTrace::standard(7).minutes(), minutes, "deterministic from the seed");
        assert!(trace.csv().starts_with("minute_utc,requests\n2026-01-05 00:00,"));
    }
}
