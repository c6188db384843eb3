//! The KEDA external scaler over real gRPC on loopback, asked by tonic's client the way KEDA
//! asks: the metric spec, the metric (the plan's units, or the balloon pods of `node_headroom`),
//! IsActive and StreamIsActive, all from the plan of the last actuation cycle, and clear statuses
//! for what it cannot answer — no plan yet, a stale plan, no model — so KEDA falls back.

use std::collections::HashMap;

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ModelBundle, ModelVersion};
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::fixtures;
use prewarm_trainer::actuate::ActuateConfig;
use prewarm_trainer::actuate::keda::proto::external_scaler_client::ExternalScalerClient;
use prewarm_trainer::actuate::keda::proto::{GetMetricsRequest, ScaledObjectRef};
use prewarm_trainer::actuate::keda::{self, metric_name};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::plan::{InstanceShape, PlanConfig, PoolConfig};
use prewarm_trainer::publish::DirPublisher;
use prewarm_trainer::service::{AppState, plan_now};
use prewarm_trainer::store::Store;
use tonic::Code;
use tonic::transport::Channel;

const NOW: UnixSeconds = UnixSeconds(1_800_000_000);

fn fixed_clock() -> UnixSeconds {
    NOW
}

/// One actuation cycle at `now`: what caches the plan the scaler answers from.
fn actuate(state: &AppState, now: UnixSeconds) {
    prewarm_trainer::actuate::cycle(state, None, now).expect("actuation cycle");
}

fn state(name: &str, forecast_only: bool) -> AppState {
    state_with(name, forecast_only, Vec::new())
}

fn state_with(name: &str, forecast_only: bool, pools: Vec<PoolConfig>) -> AppState {
    state_at(name, forecast_only, pools, fixed_clock)
}

fn state_at(name: &str, forecast_only: bool, pools: Vec<PoolConfig>, clock: fn() -> UnixSeconds) -> AppState {
    let config = TrainerConfig {
        data_dir: std::env::temp_dir().join(format!("prewarm-keda-test-{name}-{}", std::process::id())),
        actuate: ActuateConfig { forecast_only, ..ActuateConfig::default() },
        plan: PlanConfig { pools, ..PlanConfig::default() },
        ..TrainerConfig::default()
    };
    let _ = std::fs::remove_dir_all(&config.data_dir);
    AppState::new(config, Store::in_memory().expect("store"), ClassificationRules::default(), clock)
}

fn publish(state: &AppState) {
    publish_with(state, |_| {});
}

/// Publishes the fixture's two regions, each changed by `edit` first.
fn publish_with(state: &AppState, edit: impl Fn(&mut prewarm_shared::RegionModel)) {
    let models: Vec<_> = ["eu", "us"]
        .iter()
        .map(|r| {
            let mut model = fixtures::region_model(r);
            model.forecast.start = UnixSeconds(NOW.0 - 600);
            edit(&mut model);
            model
        })
        .collect();
    let (_, entries) =
        ModelBundle::encode(&models, ModelVersion(1), NOW, "eu", fixtures::region_map()).expect("encode");
    DirPublisher::new(state.config.models_dir()).publish(&entries).expect("publish");
}

async fn client(state: AppState) -> ExternalScalerClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(keda::serve_on(state, listener));
    ExternalScalerClient::connect(format!("http://{addr}")).await.expect("connect")
}

fn object(region: Option<&str>) -> ScaledObjectRef {
    let mut metadata = HashMap::new();
    metadata.insert("scalerAddress".to_owned(), "prewarm:9401".to_owned());
    if let Some(region) = region {
        metadata.insert("region".to_owned(), region.to_owned());
    }
    ScaledObjectRef { name: "video-api".into(), namespace: "shop".into(), scaler_metadata: metadata }
}

#[tokio::test]
async fn keda_reads_the_plan_through_the_external_scaler_interface() {
    let state = state("plan", false);
    publish(&state);
    actuate(&state, NOW);
    let expected = {
        let view = plan_now(&state, NOW).expect("plan");
        let units = |region: &str| view.plans.iter().find(|(r, _)| r == region).expect("region").1[0].units;
        (units("eu"), units("us"))
    };
    assert!(expected.0 > 0, "the fixture model plans some units");
    let mut keda = client(state.clone()).await;

    let spec = keda.get_metric_spec(object(Some("us"))).await.expect("spec").into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, "prewarm-units-us");
    assert_eq!(spec.metric_specs[0].target_size_float, 1.0, "one unit per replica: replicas = planned units");

    for (region, units) in [(Some("us"), expected.1), (None, expected.0)] {
        let name = metric_name(region.unwrap_or("default"));
        let metrics = keda
            .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(region)), metric_name: name.clone() })
            .await
            .expect("metrics")
            .into_inner();
        assert_eq!(metrics.metric_values.len(), 1);
        assert_eq!(metrics.metric_values[0].metric_name, name);
        assert_eq!(metrics.metric_values[0].metric_value, i64::from(units), "{region:?}");
        assert_eq!(metrics.metric_values[0].metric_value_float, f64::from(units));
    }

    let active = keda.is_active(object(Some("eu"))).await.expect("is active").into_inner();
    assert_eq!(active.result, expected.0 > 0);
    let mut stream = keda.stream_is_active(object(Some("eu"))).await.expect("stream").into_inner();
    let first = stream.message().await.expect("a message").expect("not ended");
    assert_eq!(first.result, expected.0 > 0, "the current answer comes at once");

    // What it cannot answer is a status KEDA logs, never a made-up number.
    let unknown =
        keda.get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(Some("mars"))), metric_name: "x".into() });
    let status = unknown.await.expect_err("unknown region");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("mars"), "{}", status.message());
    let status = keda
        .get_metrics(GetMetricsRequest { scaled_object_ref: None, metric_name: "x".into() })
        .await
        .expect_err("no object");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = keda.is_active(object(Some(""))).await.expect_err("empty region");
    assert_eq!(status.code(), Code::InvalidArgument);
    let _ = std::fs::remove_dir_all(&state.config.data_dir);
}

#[tokio::test]
async fn without_a_model_or_in_forecast_only_mode_the_scaler_declines() {
    let empty = state("empty", false);
    let mut keda = client(empty.clone()).await;
    let status = keda.is_active(object(None)).await.expect_err("nothing published");
    assert_eq!(status.code(), Code::Unavailable);

    let dry = state("dry", true);
    publish(&dry);
    actuate(&dry, NOW);
    let mut keda = client(dry.clone()).await;
    let status = keda
        .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object(None)), metric_name: "x".into() })
        .await
        .expect_err("forecast-only");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("forecast-only"));
    // The spec still answers: KEDA can be set up before actuation is switched on.
    assert!(keda.get_metric_spec(object(None)).await.is_ok());
    let _ = std::fs::remove_dir_all(&dry.config.data_dir);
}

fn pool(name: &str, content: Option<&str>, label: Option<&str>) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        content: content.map(Into::into),
        label: label.map(Into::into),
        min_share: 0.5,
        instance: None,
        min_units: None,
        max_units: None,
        budget_units: None,
    }
}

#[tokio::test]
async fn with_pools_each_deployment_scales_to_its_own_pool() {
    // Video on small edge boxes (1 MB/s each); API calls by label; the rest in `default`.
    let video = PoolConfig {
        instance: Some(InstanceShape { cpu_ms_per_sec: 2_000.0, memory_mb: 4_096.0, bytes_per_sec: 1.0e6 }),
        min_units: Some(0),
        ..pool("video", Some("video"), None)
    };
    let state = state_with("pools", false, vec![video, pool("api", None, Some("api"))]);
    publish(&state);
    actuate(&state, NOW);
    let view = plan_now(&state, NOW).expect("plan");
    let pools: Vec<(&str, &str)> = view.pools.iter().map(|p| (p.region.as_str(), p.pool.as_str())).collect();
    assert_eq!(
        pools,
        vec![("eu", "video"), ("eu", "api"), ("eu", "default"), ("us", "video"), ("us", "api"), ("us", "default")]
    );
    let regions = serde_json::to_value(view.regions()).expect("serialises");
    let eu_pools = regions[0]["pools"].as_array().expect("pools in the plan's JSON");
    let members: Vec<_> = eu_pools.iter().map(|p| (p["pool"].clone(), p["profiles"].clone())).collect();
    assert_eq!(
        members,
        vec![
            ("video".into(), serde_json::json!([1])),
            ("api".into(), serde_json::json!([2])),
            ("default".into(), serde_json::json!([3, 4])),
        ],
        "the video profile by its centroid's content, the API profile by its label"
    );
    let units = |pool: &str| view.pools.iter().find(|p| p.region == "eu" && p.pool == pool).expect(pool).steps[0].units;
    // The video pool's own instances (1/125 of the bandwidth) need more units than [plan]'s.
    let plain = PlanConfig { pools: vec![pool("video", Some("video"), None)], ..PlanConfig::default() };
    let plain = prewarm_trainer::plan::plan_pools(&view.models, &plain, NOW, &prewarm_trainer::plan::Live::default());
    assert!(units("video") > plain[0].steps[0].units, "{} vs {}", units("video"), plain[0].steps[0].units);

    let mut keda = client(state.clone()).await;
    let ask = |pool: &str| {
        let mut object = object(Some("eu"));
        object.scaler_metadata.insert("pool".into(), pool.into());
        GetMetricsRequest { scaled_object_ref: Some(object), metric_name: String::new() }
    };
    for name in ["video", "api", "default"] {
        let metrics = keda.get_metrics(ask(name)).await.expect("metrics").into_inner();
        assert_eq!(metrics.metric_values[0].metric_value, i64::from(units(name)), "{name}");
        assert_eq!(metrics.metric_values[0].metric_name, format!("prewarm-units-eu-{name}"));
    }
    let status = keda.get_metrics(ask("gpu")).await.expect_err("no such pool");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("gpu"));
    let _ = std::fs::remove_dir_all(&state.config.data_dir);
}

#[test]
fn bad_pools_are_configuration_errors() {
    let config = |pools| PlanConfig { pools, ..PlanConfig::default() };
    assert!(config(vec![pool("default", Some("video"), None)]).validate().is_err());
    assert!(config(vec![pool("a", None, None)]).validate().is_err_and(|e| e.contains("names no content class")));
    assert!(config(vec![pool("a", Some("podcasts"), None)]).validate().is_err_and(|e| e.contains("podcasts")));
    assert!(config(vec![pool("a", Some("video"), None), pool("a", None, Some("x"))]).validate().is_err());
    assert!(config(vec![pool("a", Some("video"), None)]).validate().is_ok());
}

/// A clock the staleness test moves (its own: tests run in parallel).
static STALE_TEST_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(NOW.0);

fn stale_test_clock() -> UnixSeconds {
    UnixSeconds(STALE_TEST_NOW.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test]
async fn a_missing_or_stale_plan_is_an_error_for_every_call_so_keda_falls_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let state = state_at("stale", false, Vec::new(), stale_test_clock);
    publish(&state);
    let mut keda = client(state.clone()).await;
    let metrics = || GetMetricsRequest { scaled_object_ref: Some(object(Some("eu"))), metric_name: String::new() };
    let max_age = state.config.actuate.max_plan_age_secs;

    // A restart: a model is published but no cycle has planned yet.
    let status = keda.get_metrics(metrics()).await.expect_err("no plan yet");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("no plan yet"), "{}", status.message());
    assert_eq!(keda.get_metric_spec(object(Some("eu"))).await.expect_err("no spec").code(), Code::Unavailable);
    assert_eq!(keda.is_active(object(Some("eu"))).await.expect_err("no answer").code(), Code::Unavailable);

    // The first cycle: numbers, and the same number while the plan is young.
    actuate(&state, NOW);
    let fresh = keda.get_metrics(metrics()).await.expect("a fresh plan").into_inner().metric_values[0].metric_value;
    STALE_TEST_NOW.store(NOW.0 + max_age, SeqCst);
    let aged = keda.get_metrics(metrics()).await.expect("still fresh").into_inner().metric_values[0].metric_value;
    assert!(fresh > 0 && aged > 0, "{fresh} {aged}");

    // Actuation stops: past max_plan_age every call is an error, never the old number.
    STALE_TEST_NOW.store(NOW.0 + max_age + 1, SeqCst);
    let status = keda.get_metrics(metrics()).await.expect_err("stale");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("max_plan_age_secs"), "{}", status.message());
    assert_eq!(keda.get_metric_spec(object(Some("eu"))).await.expect_err("stale spec").code(), Code::Unavailable);
    assert_eq!(keda.is_active(object(Some("eu"))).await.expect_err("stale").code(), Code::Unavailable);

    // A cycle again, and the scaler answers again.
    actuate(&state, stale_test_clock());
    assert!(keda.get_metrics(metrics()).await.is_ok());
    let _ = std::fs::remove_dir_all(&state.config.data_dir);
}

#[tokio::test]
async fn node_headroom_asks_for_the_balloons_the_plan_needs_one_node_lead_ahead() {
    let state = state("headroom", false);
    // A busy site (×1,000 the fixture) whose demand doubles over the next hour and a half, so a
    // node lead sees more than a pod lead.
    publish_with(&state, |model| {
        for series in &mut model.forecast.series {
            for (i, (e, u)) in series.expected.iter_mut().zip(series.upper.iter_mut()).enumerate() {
                let ramp = 1_000.0 * (1.0 + (i.min(20) as f32) / 10.0);
                *e *= ramp;
                *u *= ramp;
            }
            series.alarm.clone_from(&series.upper);
        }
    });
    actuate(&state, NOW);
    let view = plan_now(&state, NOW).expect("plan");
    let (steps, step_secs) = (&view.plans.iter().find(|(r, _)| r == "eu").expect("eu").1, 300);
    let lead = state.config.plan.lead_time_secs;
    let mut keda = client(state.clone()).await;
    let ask = |metric: &str, node_lead: Option<&str>| {
        let mut object = object(Some("eu"));
        object.scaler_metadata.insert("metric".into(), metric.into());
        if let Some(node_lead) = node_lead {
            object.scaler_metadata.insert("nodeLeadSeconds".into(), node_lead.into());
        }
        object
    };
    for node_lead in [600_u64, 3_600, 6 * 3_600] {
        let object = ask("node_headroom", Some(&node_lead.to_string()));
        let spec = keda.get_metric_spec(object.clone()).await.expect("spec").into_inner();
        assert_eq!(spec.metric_specs[0].metric_name, "prewarm-node-headroom-eu");
        let got = keda
            .get_metrics(GetMetricsRequest { scaled_object_ref: Some(object), metric_name: String::new() })
            .await
            .expect("headroom")
            .into_inner()
            .metric_values[0]
            .metric_value;
        let ahead = prewarm_trainer::plan::desired_units(steps, NOW, node_lead, step_secs).expect("ahead");
        let now = prewarm_trainer::plan::desired_units(steps, NOW, lead, step_secs).expect("now");
        assert_eq!(got, i64::from(ahead.saturating_sub(now)), "node lead {node_lead} s: {ahead} ahead, {now} now");
    }
    // The rise is within an hour: balloons are asked for.
    let object = ask("node_headroom", Some("3600"));
    let long = keda.get_metrics(GetMetricsRequest { scaled_object_ref: Some(object), metric_name: String::new() });
    assert!(long.await.expect("headroom").into_inner().metric_values[0].metric_value > 0);
    for bad in [ask("node_headroom", Some("5")), ask("node_headroom", Some("soon")), ask("replicas", None)] {
        let status = keda.get_metric_spec(bad).await.expect_err("bad metadata");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    }
    let _ = std::fs::remove_dir_all(&state.config.data_dir);
}

#[test]
fn the_kubernetes_configuration_is_a_valid_trainer_configuration_with_the_scaler_on() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/base/prewarm.toml");
    let config = TrainerConfig::load(Some(&path)).expect("deploy/kubernetes/base/prewarm.toml loads and validates");
    assert_eq!(config.data_dir, std::path::PathBuf::from("/var/lib/prewarm"), "the StatefulSet's volume");
    assert_eq!(config.listen.port(), 9400);
    assert_eq!(config.actuate.keda_listen.map(|a| a.port()), Some(9401), "the Service's keda port");
    assert!(config.actuate.max_plan_age_secs > config.actuate.interval_secs);
    assert!((0.5..1.0).contains(&config.plan.floor_utilisation));
}
