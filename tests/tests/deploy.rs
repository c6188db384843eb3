//! What operators deploy, checked by their ecosystem's own tools: a live trainer's `/metrics`
//! through `promtool check metrics`, the Grafana dashboard's and the alert rules' queries
//! against what `/metrics` exports, and `deploy/check.py` (kustomize rendering, Kubernetes and
//! CRD schemas, `promtool check rules` and `test rules`). The tools come from Debian and PyPI;
//! `cargo xtask test` installs them.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use prewarm_shared::signals::{DemandCount, PrewarmReason, PrewarmRequest, SignalBatch};
use prewarm_shared::{ProfileId, UnixSeconds, artifact::ModelVersion};
use prewarm_tests::{TempDir, Trainer, post_signals, repo_root, request, train_synthetic};

const SIGNAL: &str = "deploy-signal-token-012345";

/// Every `prewarm_…` metric name a text mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("prewarm_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        // `prewarm_` inside another identifier (e.g. a runbook anchor) is not a metric.
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '#') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn now() -> UnixSeconds {
    UnixSeconds(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[test]
#[ignore = "needs promtool: `cargo xtask test` runs it"]
fn live_metrics_pass_promtool_and_every_dashboard_and_rule_query_names_an_exported_metric() {
    let dir = TempDir::new("deploy-metrics");
    let data = dir.0.join("data");
    train_synthetic(&data, "deploy-salt-0123456789", 42);
    let trainer = Trainer::start(&data, &[("PREWARM_SIGNAL_KEY", SIGNAL)]);

    // Demand counts and a prewarm signal, so every labelled metric has samples.
    let now = now();
    let mut batch = SignalBatch::new(now, Some(ModelVersion(1)));
    batch.demand.push(DemandCount {
        region: "eu".into(),
        profile: ProfileId(0),
        minute: now.0 / 60 - 1,
        requests: 40,
        bytes: 1,
    });
    batch.prewarm.push(PrewarmRequest {
        region: "eu".into(),
        profile: ProfileId(0),
        minute: now.0 / 60 - 1,
        observed: 400.0,
        forecast_upper: 100.0,
        reason: PrewarmReason::AboveBand,
    });
    assert_eq!(post_signals(trainer.addr, SIGNAL, &batch), 202);
    let (status, body) = request(trainer.addr, "GET", "/metrics", &[], b"").expect("metrics");
    let text = String::from_utf8(body).expect("utf-8 metrics");
    assert_eq!(status, 200);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's `prometheus` package; `cargo xtask test` installs it)");
    promtool.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
    let out = promtool.wait_with_output().expect("promtool");
    let lint = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && lint.trim().is_empty(), "promtool check metrics:\n{lint}\n--- metrics:\n{text}");

    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    assert!(exported.contains("prewarm_planned_units") && exported.len() > 10, "{exported:?}");
    let root = repo_root();
    for file in ["deploy/grafana/prewarm.json", "deploy/kubernetes/base/prometheusrule.yaml"] {
        let queries = std::fs::read_to_string(root.join(file)).expect(file);
        let named = metric_names(&queries);
        assert!(!named.is_empty(), "{file} names no prewarm metric");
        let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(missing.is_empty(), "{file} queries metrics /metrics does not export: {missing:?}");
    }
    trainer.kill();
}

#[test]
#[ignore = "needs kubectl, promtool and the PyPI validators: `cargo xtask test` runs it"]
fn the_manifests_render_and_pass_the_kubernetes_crd_and_promtool_checks() {
    let out = Command::new("python3")
        .arg(repo_root().join("deploy/check.py"))
        .output()
        .expect("python3 (deploy/check.py needs kubectl, promtool, PyYAML, kubernetes-validate, check-jsonschema)");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deploy/check.py failed:\n{log}");
    for expected in ["core objects valid", "ScaledObject video-api valid", "SUCCESS: 8 rules found", "deploy/: ok"] {
        assert!(log.contains(expected), "{expected:?} missing from:\n{log}");
    }
}
