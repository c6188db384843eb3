//! A KEDA external scaler: Kubernetes scales a Deployment to the plan through KEDA's
//! `external` (polling) or `external-push` (streaming) trigger.
//!
//! The metric is the plan's units to run now — the most any step up to one lead time ahead
//! needs — with a target of 1 per replica, so KEDA's HPA sets replicas = planned units (within
//! the ScaledObject's min and max), beside a CPU trigger at `[plan] floor_utilisation` (the
//! reactive floor: the HPA takes the larger). The trigger's `metadata.region` picks the region (default: the published model's
//! default region, reported as metric `prewarm-units-default`), `metadata.pool` a pool, and
//! `metadata.metric: node_headroom` asks for the balloon pods that keep nodes warm instead.
//!
//! Every answer comes from the plan cached at the last actuation cycle: a poll never trains or
//! plans. A plan older than `[actuate] max_plan_age_secs`, or none yet (a restart), is an
//! `UNAVAILABLE` error for every call, so KEDA applies the ScaledObject's fallback rather than
//! acting on a stale number. The server only reads the plan; bind it to an address only the
//! cluster reaches.

use std::pin::Pin;
use std::time::Duration;

use prewarm_shared::UnixSeconds;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::service::{AppState, PlanView};

/// The code generated from `trainer/proto/externalscaler.proto` (KEDA's interface).
#[allow(clippy::all, missing_debug_implementations, missing_docs, unreachable_pub)]
pub mod proto {
    include!("externalscaler.rs");
}

use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};

/// How often a `StreamIsActive` stream re-reads the plan (it sends only changes).
const STREAM_POLL: Duration = Duration::from_secs(10);

/// The scaler over the trainer's state.
#[derive(Clone)]
pub struct PrewarmScaler {
    state: AppState,
}

impl std::fmt::Debug for PrewarmScaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrewarmScaler").finish_non_exhaustive()
    }
}

impl PrewarmScaler {
    /// A scaler answering from the service's cached plan.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The gRPC service, ready for `tonic::transport::Server::add_service`.
    pub fn service(self) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(self)
            // A ScaledObjectRef is a few hundred bytes; nothing legitimate comes near this.
            .max_decoding_message_size(64 * 1024)
    }

    /// The trigger's `metadata.region` (`None`: the published model's default region) and
    /// `metadata.pool` (with `[[plan.pool]]`: that pool's plan).
    fn target_of(&self, object: &ScaledObjectRef) -> Result<Target, Status> {
        let field = |name: &str| match object.scaler_metadata.get(name) {
            Some(v) if v.is_empty() || v.len() > 64 => {
                Err(Status::invalid_argument(format!("metadata.{name} must be 1 to 64 characters")))
            }
            other => Ok(other.cloned()),
        };
        let kind = match field("metric")?.as_deref() {
            None | Some("units") => MetricKind::Units,
            Some("node_headroom") => {
                let lead = field("nodeLeadSeconds")?;
                let node_lead_secs = match lead.as_deref() {
                    None => DEFAULT_NODE_LEAD_SECS,
                    Some(text) => text.parse::<u64>().ok().filter(|s| (60..=86_400).contains(s)).ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "metadata.nodeLeadSeconds must be 60 to 86400 seconds, got {text:?}"
                        ))
                    })?,
                };
                MetricKind::NodeHeadroom { node_lead_secs }
            }
            Some(other) => {
                return Err(Status::invalid_argument(format!(
                    "metadata.metric must be `units` (the default) or `node_headroom`, got {other:?}"
                )));
            }
        };
        Ok(Target { region: field("region")?, pool: field("pool")?, kind })
    }

    /// The plan of the last actuation cycle, when it is fresh enough to act on.
    fn fresh_plan(&self) -> Result<(Arc<PlanView>, UnixSeconds), Status> {
        let now: UnixSeconds = (self.state.clock)();
        let view = self
            .state
            .plan_cache
            .fresh(now, self.state.config.actuate.max_plan_age_secs)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok((view, now))
    }

    /// The trigger's value now, from the cached plan: the units to run (one lead time ahead),
    /// or with `metadata.metric: node_headroom` the balloon pods that keep nodes ready.
    fn value_of(&self, target: &Target) -> Result<u32, Status> {
        if self.state.config.actuate.forecast_only {
            return Err(Status::failed_precondition(
                "forecast-only mode: prewarm plans and reports but does not actuate ([actuate] forecast_only)",
            ));
        }
        let (view, now) = self.fresh_plan()?;
        let region = match &target.region {
            Some(region) => region.clone(),
            None => view.pointer.as_ref().map(|p| p.default_region.clone()).unwrap_or_default(),
        };
        if !view.plans.iter().any(|(r, _)| *r == region) {
            let known: Vec<&str> = view.plans.iter().map(|(r, _)| r.as_str()).collect();
            return Err(Status::not_found(format!("no plan for region `{region}`; the published model has {known:?}")));
        }
        let pool = target.pool.as_deref();
        if let Some(pool) = pool
            && !view.pools.iter().any(|p| p.region == region && p.pool == pool)
        {
            let known: Vec<&str> = view.pools.iter().filter(|p| p.region == region).map(|p| p.pool.as_str()).collect();
            return Err(Status::not_found(format!("no pool `{pool}` in region `{region}`; configured: {known:?}")));
        }
        let value = match target.kind {
            MetricKind::Units => view.desired(&region, pool, now),
            MetricKind::NodeHeadroom { node_lead_secs } => view.node_headroom(&region, pool, now, node_lead_secs),
        };
        value.ok_or_else(|| {
            Status::unavailable(format!("the plan for `{region}` does not reach now: the forecast has ended"))
        })
    }
}

/// The metric a region's plan is reported as (KEDA prefixes it with the trigger index).
pub fn metric_name(region: &str) -> String {
    let safe: String =
        region.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    format!("prewarm-units-{safe}")
}

/// What a ScaledObject scales to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    region: Option<String>,
    pool: Option<String>,
    kind: MetricKind,
}

/// Which of the plan's numbers a trigger reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    /// The workload's replicas: the plan's units one lead time ahead.
    Units,
    /// Balloon pods: what the plan needs one node lead time ahead beyond what runs now.
    NodeHeadroom { node_lead_secs: u64 },
}

/// How long a node takes to join when the trigger does not say (`metadata.nodeLeadSeconds`).
const DEFAULT_NODE_LEAD_SECS: u64 = 600;

impl Target {
    /// The metric's name: the region (or `default`), and the pool when there is one.
    fn metric(&self) -> String {
        let region = self.region.as_deref().unwrap_or("default");
        let name = match &self.pool {
            Some(pool) => metric_name(&format!("{region}-{pool}")),
            None => metric_name(region),
        };
        match self.kind {
            MetricKind::Units => name,
            MetricKind::NodeHeadroom { .. } => name.replacen("prewarm-units-", "prewarm-node-headroom-", 1),
        }
    }
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ExternalScaler for PrewarmScaler {
    async fn is_active(&self, request: Request<ScaledObjectRef>) -> Result<Response<IsActiveResponse>, Status> {
        let target = self.target_of(request.get_ref())?;
        let units = self.value_of(&target)?;
        Ok(Response::new(IsActiveResponse { result: units > 0 }))
    }

    type StreamIsActiveStream = ActiveStream;

    /// Sends the current answer at once, then each change; ends when KEDA hangs up.
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let target = self.target_of(request.get_ref())?;
        let first = self.value_of(&target)? > 0;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let scaler = self.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(IsActiveResponse { result: first })).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(STREAM_POLL).await;
                match scaler.value_of(&target) {
                    Ok(units) if (units > 0) != last => {
                        last = units > 0;
                        if tx.send(Ok(IsActiveResponse { result: last })).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {
                        if tx.is_closed() {
                            return;
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        // No spec without a fresh plan: KEDA then applies the ScaledObject's fallback.
        let target = self.target_of(request.get_ref())?;
        self.fresh_plan()?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec { metric_name: target.metric(), target_size: 1, target_size_float: 1.0 }],
        }))
    }

    async fn get_metrics(&self, request: Request<GetMetricsRequest>) -> Result<Response<GetMetricsResponse>, Status> {
        let request = request.into_inner();
        let object = request.scaled_object_ref.ok_or_else(|| Status::invalid_argument("scaledObjectRef is missing"))?;
        let target = self.target_of(&object)?;
        let units = self.value_of(&target)?;
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: target.metric(),
                metric_value: i64::from(units),
                metric_value_float: f64::from(units),
            }],
        }))
    }
}

/// Serves the scaler on a bound listener until the process ends.
pub async fn serve_on(state: AppState, listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .add_service(PrewarmScaler::new(state).service())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
}
