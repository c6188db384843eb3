//! What the edge sends: `demand` (requests per region × profile × minute), `prewarm_signals`,
//! `sampled_states` and `edge_reports`, and `signal_receipts` — the signatures of accepted
//! batches, so a batch delivered twice (a retry, a queue's at-least-once delivery, a replay)
//! is stored once, across restarts too.

use prewarm_shared::signals::SignalBatch;
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, Total};

/// An accepted batch's signature and when it was signed: what makes a delivery a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalReceipt {
    /// HMAC-SHA256 of the batch, as its signature header carried it.
    pub signature: [u8; 32],
    /// The signature's timestamp.
    pub signed_at: u64,
}

/// Totals of what the edge has signalled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EdgeSummary {
    /// Signal batches accepted (kept as a total).
    pub signal_batches: u64,
    /// Requests the edge counted.
    pub demand_requests: u64,
    /// (reason, count)
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub prewarm_signals: Vec<(String, u64)>,
    /// Behaviour states the edge sampled.
    pub sampled_states: u64,
    /// The model version of the newest batch, if it said.
    pub edge_model_version: Option<u32>,
}

impl Store {
    /// Stores one signal batch from the edge in one transaction, once: when `receipt`'s
    /// signature, or the batch's id (non-zero), was accepted before, nothing is stored and
    /// `false` is returned. Receipts older than twice the signature window are forgotten here
    /// (their timestamps no longer verify); batch ids are kept as long as the counts they
    /// added (`Store::prune`), so a batch delivered again later, re-signed, still counts once.
    pub fn insert_signals(
        &mut self,
        batch: &SignalBatch,
        received_at: u64,
        receipt: Option<&SignalReceipt>,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        if let Some(receipt) = receipt {
            let window = 2 * prewarm_shared::signals::MAX_SIGNATURE_SKEW_SECS;
            tx.prepare_cached("DELETE FROM signal_receipts WHERE signed_at < ?1")?
                .execute(params![received_at.saturating_sub(window) as i64])?;
            let fresh = tx
                .prepare_cached(
                    "INSERT INTO signal_receipts (signature, signed_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![&receipt.signature[..], receipt.signed_at as i64])?;
            if fresh == 0 {
                return Ok(false);
            }
        }
        if batch.batch_id != 0 {
            let fresh = tx
                .prepare_cached(
                    "INSERT INTO signal_batches (batch_id, received_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![batch.batch_id as i64, received_at as i64])?;
            if fresh == 0 {
                return Ok(false);
            }
        }
        {
            let mut demand = tx.prepare_cached(
                "INSERT INTO demand (region, profile, minute, requests, bytes) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (region, profile, minute) DO UPDATE SET requests = requests + excluded.requests, \
                 bytes = bytes + excluded.bytes",
            )?;
            for d in &batch.demand {
                demand.execute(params![d.region, d.profile.0, d.minute as i64, d.requests, d.bytes as i64])?;
            }
            let mut prewarm = tx.prepare_cached(
                "INSERT INTO prewarm_signals (received_at, region, profile, minute, observed, forecast_upper, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for p in &batch.prewarm {
                let reason = serde_json::to_value(p.reason).ok().and_then(|v| v.as_str().map(str::to_owned));
                prewarm.execute(params![
                    received_at as i64,
                    p.region,
                    p.profile.0,
                    p.minute as i64,
                    f64::from(p.observed),
                    f64::from(p.forecast_upper),
                    reason.unwrap_or_default()
                ])?;
            }
            let mut states = tx.prepare_cached(
                "INSERT INTO sampled_states (user, region, profile, at, features) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for s in &batch.states {
                let features: Vec<u8> = s.features.iter().flat_map(|f| f.to_le_bytes()).collect();
                states.execute(params![&s.user.0[..], s.region, s.profile.0, s.at.0 as i64, features])?;
            }
            tx.execute(
                "INSERT INTO edge_reports (received_at, model_version) VALUES (?1, ?2)",
                params![received_at as i64, batch.model_version.map(|v| v.0)],
            )?;
            let requests: i64 = batch.demand.iter().map(|d| i64::from(d.requests)).sum();
            Total::DemandRequests.add(&tx, requests)?;
            Total::SampledStates.add(&tx, batch.states.len() as i64)?;
            Total::SignalBatches.add(&tx, 1)?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Every demand count the edge sent for a region: (profile, minute, requests).
    pub fn demand_for_region(&self, region: &str) -> Result<Vec<(u16, u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT profile, minute, SUM(requests) FROM demand WHERE region = ?1 GROUP BY profile, minute ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![region], |r| {
            Ok((r.get::<_, i64>(0)? as u16, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Demand counts received from the edge for one region × profile, by minute.
    pub fn demand(&self, region: &str, profile: u16) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT minute, requests FROM demand WHERE region = ?1 AND profile = ?2 ORDER BY minute")?;
        let rows =
            stmt.query_map(params![region, profile], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the edge reported: demand requests, prewarm signals by reason, and the newest
    /// model version a batch came from.
    pub fn edge_summary(&self) -> Result<EdgeSummary, StoreError> {
        // Prewarm signals are few (debounced per region × profile, pruned with retention):
        // grouped on read. The rest are totals or an indexed lookup.
        let mut stmt =
            self.conn.prepare_cached("SELECT reason, COUNT(*) FROM prewarm_signals GROUP BY reason ORDER BY reason")?;
        let prewarm = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<Vec<_>, _>>()?;
        let model: Option<i64> = self
            .conn
            .prepare_cached("SELECT model_version FROM edge_reports ORDER BY received_at DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(EdgeSummary {
            signal_batches: self.total(Total::SignalBatches)?,
            demand_requests: self.total(Total::DemandRequests)?,
            prewarm_signals: prewarm,
            sampled_states: self.total(Total::SampledStates)?,
            edge_model_version: model.map(|v| v as u32),
        })
    }

    /// Prewarm signals received since `since` (Unix seconds): (region, profile, at, observed).
    pub fn recent_prewarm(&self, since: u64) -> Result<Vec<(String, u16, u64, f32)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT region, profile, received_at, observed FROM prewarm_signals WHERE received_at >= ?1")?;
        let rows = stmt.query_map(params![since as i64], |r| {
            let observed: f64 = r.get(3)?;
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u16, r.get::<_, i64>(2)? as u64, observed as f32))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every demand count from `since_minute` on: (region, profile, minute, requests), summed
    /// over the isolates that reported it.
    pub fn demand_since(&self, since_minute: u64) -> Result<Vec<(String, u16, u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT region, profile, minute, SUM(requests) FROM demand WHERE minute >= ?1 GROUP BY region, profile, minute",
        )?;
        let rows = stmt.query_map(params![since_minute as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u16,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest demand minute the edge reported per region, as Unix seconds.
    pub fn last_demand_by_region(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT region, MAX(minute) FROM demand GROUP BY region")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64 * 60)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Prewarm signals of one reason (`above_band`, `forecast_rise`) since `since`, per region.
    pub fn prewarm_counts_since(&self, since: u64, reason: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT region, COUNT(*) FROM prewarm_signals WHERE received_at >= ?1 AND reason = ?2 GROUP BY region",
        )?;
        let rows = stmt
            .query_map(params![since as i64, reason], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests the edge counted in one minute (Unix minutes), per region.
    pub fn demand_in_minute(&self, minute: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT region, SUM(requests) FROM demand WHERE minute = ?1 GROUP BY region")?;
        let rows =
            stmt.query_map(params![minute as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests the edge counted per minute (Unix minutes) for a region, from `since_minute`.
    pub fn demand_by_minute(&self, region: &str, since_minute: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT minute, SUM(requests) FROM demand WHERE region = ?1 AND minute >= ?2 GROUP BY minute ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![region, since_minute as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
