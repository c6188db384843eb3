#!/usr/bin/env python3
"""Checks deploy/ with the ecosystem's own tools (run by `cargo xtask test`):

- renders every kustomization with `kubectl kustomize`;
- validates the core objects against the Kubernetes schemas (`kubernetes-validate --strict`)
  and the custom resources (ScaledObject, ServiceMonitor, PrometheusRule) against the CRD
  schemas vendored in deploy/schemas/ (`check-jsonschema`);
- extracts the PrometheusRule's groups and runs `promtool check rules` and `promtool test rules`
  (deploy/prometheus/prewarm-rules.test.yaml);
- checks that the trainer's configuration in the ConfigMap names the CPU floor the
  ScaledObject deploys.

Exits non-zero on the first failure. Needs kubectl, promtool, PyYAML, kubernetes-validate and
check-jsonschema on PATH."""
import json, os, subprocess, sys, tempfile
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUSTOMIZATIONS = ["deploy/kubernetes/base", "deploy/kubernetes/workload"]
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
}


def run(*cmd, **kw):
    print("  $", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        sys.exit(f"FAILED ({done.returncode}): {' '.join(cmd)}\n{out}")
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="prewarm-deploy-")
    objects = []
    for k in KUSTOMIZATIONS:
        rendered = run("kubectl", "kustomize", os.path.join(ROOT, k))
        path = os.path.join(tmp, k.replace("/", "_") + ".yaml")
        open(path, "w").write(rendered)
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        objects += [(k, d) for d in docs]
        core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRD_SCHEMAS]
        core_path = path.replace(".yaml", ".core.yaml")
        yaml.safe_dump_all(core, open(core_path, "w"))
        out = run("kubernetes-validate", "--strict", "--quiet", core_path)
        print(f"  {k}: {len(docs)} objects, {len(core)} core objects valid{': ' + out if out else ''}")

    for i, (k, d) in enumerate(objects):
        schema = CRD_SCHEMAS.get((d["apiVersion"], d["kind"]))
        if not schema:
            continue
        doc = os.path.join(tmp, f"crd-{i}.json")
        json.dump(d, open(doc, "w"))
        run("check-jsonschema", "--schemafile", os.path.join(ROOT, "deploy/schemas", schema), doc)
        print(f"  {k}: {d['kind']} {d['metadata']['name']} valid against {schema}")
    print("  every object listed:", ", ".join(f"{d['kind']}/{d['metadata']['name']}" for _, d in objects))

    rules = [d for _, d in objects if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        sys.exit(f"FAILED: expected one PrometheusRule, found {len(rules)}")
    rules_dir = os.path.join(tmp, "rules")
    os.makedirs(rules_dir)
    yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(os.path.join(rules_dir, "prewarm-rules.yaml"), "w"))
    test = open(os.path.join(ROOT, "deploy/prometheus/prewarm-rules.test.yaml")).read()
    open(os.path.join(rules_dir, "prewarm-rules.test.yaml"), "w").write(test)
    print(run("promtool", "check", "rules", os.path.join(rules_dir, "prewarm-rules.yaml")))
    print(run("promtool", "test", "rules", os.path.join(rules_dir, "prewarm-rules.test.yaml")))
    alerts = {r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load(test)["tests"] for t in case["alert_rule_test"]}
    if alerts != tested:
        sys.exit(f"FAILED: alerts without a unit test: {sorted(alerts - tested)}")
    runbooks = open(os.path.join(ROOT, "docs/runbooks.md")).read().lower()
    for g in rules[0]["spec"]["groups"]:
        for r in g["rules"]:
            anchor = r["annotations"]["runbook_url"].split("#")[-1]
            if f"\n## {anchor}\n" not in runbooks:
                sys.exit(f"FAILED: {r['alert']}'s runbook #{anchor} is not a heading of docs/runbooks.md")

    config = [d for _, d in objects if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("prewarm-config")]
    toml = config[0]["data"]["prewarm.toml"]
    floor = [line.split("=")[1].split("#")[0].strip() for line in toml.splitlines() if line.startswith("floor_utilisation")]
    cpu = [t for _, d in objects if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"] if t["type"] == "cpu"]
    if not floor or not cpu or round(float(floor[0]) * 100) != int(cpu[0]["metadata"]["value"]):
        sys.exit(f"FAILED: the ScaledObject's CPU trigger {cpu} is not [plan] floor_utilisation {floor}")
    print("  the CPU floor of the ScaledObject is [plan] floor_utilisation:", floor[0])
    print("deploy/: ok")


if __name__ == "__main__":
    main()
