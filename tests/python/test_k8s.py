"""The Kubernetes manifests: both kustomize overlays, and an overlay with every component
(k8s/components: hpa-connections, gateway-api, prometheus-operator), render (kubectl from PyPI); every
core object is valid against the Kubernetes 1.33 schemas (kubernetes-validate, strict) and every custom
resource against the Gateway API / Prometheus Operator schemas (npm @kubernetes-models, strict, through
tests/node/validate-crds.mjs). They keep the properties the operations docs promise (probes, preStop,
non-root, read-only root, PDB, HPA without replicas, passwords outside URLs, scrape targets for the
gateways and the control pods, NetworkPolicy, Ingress or HTTPRoute), and the prometheus-adapter rule
serves the metric the HPA component asks for."""

import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import DEFAULT_BIN
from test_helm import crd_errors

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
COMPONENTS = ["hpa-connections", "gateway-api", "prometheus-operator"]
CRD_GROUPS = ("gateway.networking.k8s.io/", "monitoring.coreos.com/")


def kustomize(directory: Path) -> list:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], check=True, capture_output=True, text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render(overlay: str) -> list:
    return kustomize(REPO / "k8s" / "overlays" / overlay)


def with_components(tmp_path: Path, components: list) -> list:
    """The prod overlay with `components`, as a user's overlay would add them."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = lambda p: os.path.relpath(p, overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "hubcast",
        "resources": [rel(REPO / "k8s" / "overlays" / "prod")],
        "components": [rel(REPO / "k8s" / "components" / c) for c in components],
        "labels": [{"pairs": {"release": "kube-prometheus-stack"}, "includeSelectors": False}],
    }))
    return kustomize(overlay)


def validate_all(objects):
    custom = [o for o in objects if o["apiVersion"].startswith(CRD_GROUPS)]
    for obj in objects:
        if obj not in custom:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
    if custom:
        errors = crd_errors(custom)
        assert all(not e for e in errors.values()), errors


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_render_and_validate(overlay):
    objects = render(overlay)
    validate_all(objects)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for expected in [
        ("Deployment", "hubcast-gateway"), ("Deployment", "hubcast-control"),
        ("Service", "hubcast-gateway"), ("Service", "hubcast-control"),
        ("Service", "hubcast-gateway-admin"), ("Service", "hubcast-control-admin"),
        ("ConfigMap", "hubcast-config"), ("PodDisruptionBudget", "hubcast-gateway"),
        ("HorizontalPodAutoscaler", "hubcast-gateway"), ("Ingress", "hubcast"),
        ("NetworkPolicy", "hubcast-gateway"), ("Namespace", "hubcast" if overlay == "prod" else "hubcast-dev"),
    ]:
        assert expected in kinds, expected

    gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "hubcast-gateway")
    # The HPA owns the gateway's replica count: a replicas field would reset a scaled-out fleet on apply.
    assert "replicas" not in gateway["spec"]
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == (3 if overlay == "prod" else 1)
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["topologySpreadConstraints"]
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["hubcast.toml"]
    grace = int(config.split('shutdown_grace = "')[1].split("s")[0])
    assert pod["terminationGracePeriodSeconds"] > grace + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Passwords come as their own optional secret keys, never inside the URLs.
    env = {e["name"]: e for e in container["env"]}
    for name, key in [("HUBCAST_BACKPLANE_PASSWORD", "redis-password"), ("HUBCAST_HISTORY_PASSWORD", "history-password")]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "hubcast-secrets", "key": key, "optional": True}
    # Without the opt-in component the HPA scales on CPU only (no metric that needs an adapter).
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    # The control pods serve /live, /ready and /metrics on their own admin port.
    control = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "hubcast-control")
    control_container = control["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in control_container["ports"]} == {"http": 8081, "admin": 9090}
    control_env = {e["name"]: e for e in control_container["env"]}
    assert control_env["HUBCAST_ADMIN_LISTEN"]["value"] == "0.0.0.0:9090"
    assert control_container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert control_container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "admin"}
    for name in ["hubcast-gateway-admin", "hubcast-control-admin"]:
        admin = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name)
        assert admin["spec"]["publishNotReadyAddresses"] is True
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "hubcast-control")
    assert any(p["port"] == 9090 for rule in policy["spec"]["ingress"] for p in rule["ports"])
    # Gateways relay requests to each other: each advertises its pod address, and may reach the others.
    assert env["HUBCAST_ADVERTISE_ADDRESS"]["value"] == "$(POD_IP):8080"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    gateway_policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "hubcast-gateway")
    assert any(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "hubcast-gateway"}}} in rule["from"]
        and any(p["port"] == 8080 for p in rule["ports"])
        for rule in gateway_policy["spec"]["ingress"]
    ), "gateways reach each other's client port"
    annotations = next(o for o in objects if o["kind"] == "Ingress")["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/affinity" not in annotations, "no affinity needed"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > 90


def test_the_config_map_is_a_valid_hubcast_configuration(tmp_path):
    objects = render("prod")
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["hubcast.toml"]
    path = tmp_path / "hubcast.toml"
    path.write_text(config)
    binary = os.environ.get("HUBCAST_BIN") or str(DEFAULT_BIN)
    result = subprocess.run([binary, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_components_render_and_validate(tmp_path):
    objects = with_components(tmp_path, COMPONENTS)
    validate_all(objects)
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    # hpa-connections: the Pods metric on connections, next to CPU.
    hpa = by[("HorizontalPodAutoscaler", "hubcast-gateway")]
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert [m["pods"]["metric"]["name"] for m in pods] == ["hubcast_hub_connections"]
    assert any(m["type"] == "Resource" for m in hpa["spec"]["metrics"])
    # gateway-api: an HTTPRoute in place of the Ingress, to the real Services and ports.
    assert not any(o["kind"] == "Ingress" for o in objects)
    route = by[("HTTPRoute", "hubcast")]
    assert route["metadata"]["namespace"] == "hubcast"
    for rule in route["spec"]["rules"]:
        for ref in rule["backendRefs"]:
            service = by[("Service", ref["name"])]
            assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]
    # prometheus-operator: a scrape target for the gateways and for the control pods, each selecting
    # exactly its admin Service, labelled for kube-prometheus-stack by the overlay.
    for component in ["gateway", "control"]:
        monitor = by[("ServiceMonitor", f"hubcast-{component}")]
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [o["metadata"]["name"] for o in objects if o["kind"] == "Service"
                    and selector.items() <= o["metadata"].get("labels", {}).items()]
        assert selected == [f"hubcast-{component}-admin"]
        # The job (the Service name) matches the default scope of deploy/prometheus/alerts.yaml.
        assert re.fullmatch(".*hubcast.*", selected[0])
        assert monitor["spec"]["endpoints"][0]["port"] == "admin"


def test_each_component_alone(tmp_path):
    for i, component in enumerate(COMPONENTS):
        directory = tmp_path / str(i)
        directory.mkdir()
        validate_all(with_components(directory, [component]))


def test_prometheus_adapter_serves_the_hpa_metric(tmp_path):
    adapter = yaml.safe_load((REPO / "deploy" / "prometheus-adapter" / "values.yaml").read_text())
    rule, = adapter["rules"]["custom"]
    hpa = next(o for o in with_components(tmp_path, ["hpa-connections"]) if o["kind"] == "HorizontalPodAutoscaler")
    wanted = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")["pods"]["metric"]["name"]
    assert rule["name"]["as"] == wanted
    series = re.match(r"([a-z_]+)\{", rule["seriesQuery"]).group(1)
    assert re.search(rule["name"]["matches"], series)
    # The series is one hubcast exports (docs/operations/metrics.md lists every one) and the rule maps
    # the labels the Prometheus Operator puts on pod targets.
    metrics = (REPO / "docs" / "operations" / "metrics.md").read_text()
    assert f"| `{series}` |" in metrics
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert "sum by (<<.GroupBy>>)" in rule["metricsQuery"]
