"""The Helm chart, without a helm binary: helm-python-sdk (Helm's own Go SDK in a wheel) lints it and
renders it. The default and example values are checked against values.schema.json (and a bad value is
refused). The rendered objects are validated against the Kubernetes 1.33 schemas (the Prometheus
Operator's CRDs aside) and keep the chart's promises (drain timing, probes, monitoring objects made from
deploy/)."""

import json
import os
import subprocess
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import DEFAULT_BIN

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "hubcast"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
BINARY = os.environ.get("HUBCAST_BIN") or str(DEFAULT_BIN)


def example_values():
    return [("default", {})] + [(p.stem, yaml.safe_load(p.read_text())) for p in EXAMPLES]


def merged(values):
    """values.yaml with `values` over it (one level deep is all the examples need)."""
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    for key, value in values.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("name,values", example_values())
def test_values_match_the_schema(name, values):
    jsonschema.validate(merged(values), SCHEMA)


def test_bad_values_are_refused():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged({"redis": {"mode": "memory"}}), SCHEMA)
    lint = helm_python.lint(str(CHART), {"redis": {"mode": "nope"}}, strict=True, quiet=True)
    assert lint["errors"], lint


@pytest.mark.parametrize("name,values", example_values())
def test_lints_and_renders_valid_objects(name, values, tmp_path):
    lint = helm_python.lint(str(CHART), values, strict=True, quiet=True)
    assert lint["errors"] == [], lint
    chart = helm_python.Chart.load(str(CHART))
    rendered = chart.render(values, name="hc", namespace="hubcast")
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    gateway = next(o for o in by_kind["Deployment"] if o["metadata"]["name"] == "hc-gateway")
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    settings = merged(values)["gateway"]
    assert pod["terminationGracePeriodSeconds"] > settings["shutdownGraceSeconds"] + settings["preStopSeconds"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    env = {e["name"]: e for e in container["env"]}
    backplane = env["HUBCAST_BACKPLANE"]["value"]
    mode = merged(values)["redis"]["mode"]
    assert backplane.startswith({"standalone": "redis://", "sentinel": "redis+sentinel://", "cluster": "redis+cluster://"}[mode])
    config = by_kind["ConfigMap"][0]["data"]["hubcast.toml"]
    path = tmp_path / "hubcast.toml"
    path.write_text(config)
    checked = subprocess.run([BINARY, "check-config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr + config
    if name == "production":
        rule = by_kind["PrometheusRule"][0]
        alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())
        assert rule["spec"] == alerts
        dashboard = next(o for o in by_kind["ConfigMap"] if o["metadata"]["name"] == "hc-dashboard")
        assert json.loads(dashboard["data"]["hubcast.json"])["uid"] == "hubcast"
        assert by_kind["ServiceMonitor"][0]["spec"]["endpoints"][0]["path"] == "/metrics"
        assert any(m["type"] == "Pods" for m in by_kind["HorizontalPodAutoscaler"][0]["spec"]["metrics"])
        assert by_kind["Ingress"][0]["spec"]["tls"][0]["secretName"] == "realtime-tls"
    else:
        assert "PrometheusRule" not in by_kind and "ServiceMonitor" not in by_kind
