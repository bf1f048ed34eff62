"""The Kubernetes manifests: both kustomize overlays render (kubectl from PyPI) and every object is valid
against the Kubernetes 1.33 schemas (kubernetes-validate, strict), and they keep the properties the
operations docs promise (probes, preStop, non-root, read-only root, PDB, HPA, NetworkPolicy, Ingress)."""

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import DEFAULT_BIN

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"


def render(overlay: str) -> list:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / "k8s" / "overlays" / overlay)],
        check=True, capture_output=True, text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_render_and_validate(overlay):
    objects = render(overlay)
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for expected in [
        ("Deployment", "hubcast-gateway"), ("Deployment", "hubcast-control"),
        ("Service", "hubcast-gateway"), ("Service", "hubcast-control"),
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
    annotations = next(o for o in objects if o["kind"] == "Ingress")["metadata"]["annotations"]
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
