"""The Helm chart (deploy/helm/hubcast), without a helm binary: helm-python-sdk (Helm's own Go SDK in a
wheel) lints and renders it.

- `helm lint --strict` of the default values, each example, and an umbrella chart that depends on hubcast
  and sets Helm's `global` and every standard key;
- every rendered object validated strictly: core objects against Kubernetes 1.33 (kubernetes-validate),
  HTTPRoute / ServiceMonitor / PrometheusRule against the npm @kubernetes-models schemas (with unknown
  fields refused: tests/node/validate-crds.mjs);
- values.schema.json refuses typos and bad types but lets `global` and the Kubernetes pass-through keys in;
- the chart keeps its promises: secrets as secretKeyRefs and never inside URLs, the files the environment
  names are mounted, drain timing, probes on the admin port for gateway and control, scrape targets,
  alerts scoped to the release, and the `helm test` script works against a real hubcast node.
"""

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
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
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
BINARY = os.environ.get("HUBCAST_BIN") or str(DEFAULT_BIN)
NODE_DIR = REPO / "tests" / "node"
CRD_GROUPS = ("gateway.networking.k8s.io/", "monitoring.coreos.com/")



def deep_merge(base, over):
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def example_values():
    return [("default", {})] + [(p.stem, yaml.safe_load(p.read_text())) for p in EXAMPLES]


def render(values, chart=CHART, name="hc", namespace="hubcast"):
    rendered = helm_python.Chart.load(str(chart)).render(values, name=name, namespace=namespace)
    return [doc for path, text in rendered.items() if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def notes(values):
    rendered = helm_python.Chart.load(str(CHART)).render(values, name="hc", namespace="hubcast")
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def crd_errors(objects):
    """The errors tests/node/validate-crds.mjs finds in each custom resource, by (kind, name)."""
    assert (NODE_DIR / "node_modules" / "@kubernetes-models" / "gateway-api").is_dir(), \
        "the npm models are missing: run `npm ci` in tests/node"
    result = subprocess.run(
        ["node", str(NODE_DIR / "validate-crds.mjs")], input=json.dumps(objects),
        capture_output=True, text=True, cwd=NODE_DIR, check=True,
    )
    return {(r["kind"], r["name"]): r["errors"] for r in json.loads(result.stdout)}


def validate_all(objects):
    custom = [o for o in objects if o["apiVersion"].startswith(CRD_GROUPS)]
    for obj in objects:
        if obj not in custom:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
    if custom:
        errors = crd_errors(custom)
        assert all(not e for e in errors.values()), errors


def find(objects, kind, name):
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert matches, f"no {kind} {name} in {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return matches[0]


def pod_of(objects, name):
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- values and schema ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,values", example_values())
def test_values_match_the_schema(name, values):
    jsonschema.validate(deep_merge(DEFAULTS, values), SCHEMA)


@pytest.mark.parametrize("bad", [
    {"redis": {"mode": "memory"}},
    {"gateway": {"replica": 3}},                                   # a typo
    {"gateway": {"probes": {"readiness": {"timeoutSeconds": "5"}}}},
    {"redis": {"url": "redis://:s3cret@redis:6379"}},              # a password in the URL
    {"history": {"url": "postgres://hubcast:s3cret@db/hubcast"}},
    {"redis": {"sentinelPassword": {"name": "x"}}},                # secretName and key, nothing else
    {"serviceMonitor": {"interval": "thirty seconds"}},
    {"log": {"format": "xml"}},
    {"imagePullSecret": [{"name": "x"}]},
])
def test_bad_values_are_refused(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(deep_merge(DEFAULTS, bad), SCHEMA)
    lint = helm_python.lint(str(CHART), bad, strict=True, quiet=True)
    assert lint["errors"], lint


def test_extension_points_and_global_are_let_through():
    values = {
        "global": {"imageRegistry": "mirror.internal", "storageClass": "fast", "anything": {"nested": True}},
        "enabled": True,
        "gateway": {
            "nodeSelector": {"node.kubernetes.io/pool": "realtime"},
            "podAnnotations": {"vendor.io/anything": "x"},
            "probes": {"readiness": {"timeoutSeconds": 3, "exec": {"command": ["true"]}}},
            "podSecurityContext": {"sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}]},
            "affinity": {"nodeAffinity": {}},
            "extraEnv": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
        },
        "httpRoute": {"sessionPersistence": {"enabled": False, "absoluteTimeout": "1h"}},
    }
    jsonschema.validate(deep_merge(DEFAULTS, values), SCHEMA)
    lint = helm_python.lint(str(CHART), values, strict=True, quiet=True)
    assert lint["errors"] == [], lint


# --- rendering -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,values", example_values())
def test_lints_and_renders_valid_objects(name, values, tmp_path):
    lint = helm_python.lint(str(CHART), values, strict=True, quiet=True, kube_version="1.33.0")
    assert lint["errors"] == [], lint
    objects = render(values)
    validate_all(objects)
    settings = deep_merge(DEFAULTS, values)

    gateway = pod_of(objects, "hc-gateway")
    container = gateway["containers"][0]
    g = settings["gateway"]
    assert gateway["terminationGracePeriodSeconds"] > g["shutdownGraceSeconds"] + g["preStopSeconds"]
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == g["preStopSeconds"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "admin"}
    env = env_of(container)
    backplane = env["HUBCAST_BACKPLANE"]["value"]
    assert "@" not in backplane, backplane
    if settings["redis"]["url"]:
        assert backplane == settings["redis"]["url"]
    else:
        scheme = {"standalone": "redis://", "sentinel": "redis+sentinel://", "cluster": "redis+cluster://"}
        scheme = scheme[settings["redis"]["mode"]]
        if settings["redis"]["tls"]["enabled"]:
            scheme = scheme.replace("redis", "rediss", 1)
        assert backplane.startswith(scheme), backplane
    # Every secret comes from a secretKeyRef, none in a value.
    for secret in ["HUBCAST_JWT_SECRET", "HUBCAST_ACCESS_KEY", "HUBCAST_BACKPLANE_PASSWORD",
                   "HUBCAST_BACKPLANE_SENTINEL_PASSWORD",
                   "HUBCAST_HISTORY_PASSWORD", "HUBCAST_SESSION_SECRET"]:
        if secret in env:
            assert "secretKeyRef" in env[secret]["valueFrom"], env[secret]
    # A gateway's replicas belong to the HPA when there is one.
    deployment = find(objects, "Deployment", "hc-gateway")
    assert ("replicas" in deployment["spec"]) == (not settings["autoscaling"]["enabled"])

    control = pod_of(objects, "hc-control")["containers"][0]
    assert {p["name"]: p["containerPort"] for p in control["ports"]} == {"http": 8081, "admin": 9090}
    assert env_of(control)["HUBCAST_ADMIN_LISTEN"]["value"] == "0.0.0.0:9090"
    assert control["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert control["livenessProbe"]["httpGet"] == {"path": "/live", "port": "admin"}

    config = find(objects, "ConfigMap", "hc-config")["data"]["hubcast.toml"]
    path = tmp_path / "hubcast.toml"
    path.write_text(config)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"][container["args"].index("--config") + 1] == f"{mount['mountPath']}/hubcast.toml"
    checked = subprocess.run([BINARY, "check-config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr + config

    kinds = {o["kind"] for o in objects}
    if name == "production":
        assert {"ServiceMonitor", "PrometheusRule", "Ingress", "HorizontalPodAutoscaler"} <= kinds
        hpa = find(objects, "HorizontalPodAutoscaler", "hc-gateway")
        pods_metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
        assert pods_metric["pods"]["metric"]["name"] == "hubcast_hub_connections"
        assert find(objects, "Ingress", "hc")["spec"]["tls"][0]["secretName"] == "realtime-tls"
        assert env["HUBCAST_HISTORY"]["value"].startswith("postgres://hubcast@")
    else:
        assert not kinds & {"PrometheusRule", "ServiceMonitor", "HTTPRoute"}


def test_every_variable_the_chart_sets_exists_in_the_binary():
    values = yaml.safe_load((CHART / "examples" / "managed-redis-tls.yaml").read_text())
    values = deep_merge(values, {
        "auth": {"jwt": {"issuer": "i", "audience": "a", "userClaims": ["sub"], "jwks": {"configMapName": "j", "key": "k"}},
                 "sessionSecret": {"key": "s"}, "apiKeySha256": {"key": "h"}, "controlAnonymous": True,
                 "allowedOrigins": ["*"]},
    })
    objects = render(values)
    for deployment, subcommand in [("hc-gateway", "serve"), ("hc-control", "control")]:
        text = subprocess.run([BINARY, subcommand, "--help"], check=True, capture_output=True, text=True).stdout
        names = [n for n in env_of(pod_of(objects, deployment)["containers"][0]) if n.startswith("HUBCAST_")]
        assert len(names) >= 8, names
        unknown = [n for n in names if f"env: {n}" not in text and not (n == "HUBCAST_LOG")]
        assert not unknown, f"{subcommand}: {unknown} are not hubcast variables"


def test_auth_log_and_credentials_reach_the_pods():
    values = {
        "log": {"level": "hubcast_gateway=debug,info", "format": "text"},
        "auth": {
            "existingSecret": "base",
            "jwt": {"secret": {"key": ""}, "publicKey": {"secretName": "idp", "key": "tls.pub"},
                    "issuer": "https://idp/", "audience": "hubcast", "userClaims": ["oid", "sub"]},
            "controlAccessKeys": {"secretName": "control", "key": "keys"},
            "apiKeySha256": {"key": "api-key-hashes"},
            "sessionSecret": {"key": "session"},
            "allowedOrigins": ["https://a.example", "https://b.example"],
        },
        "redis": {"password": {"secretName": "redis", "key": "pass/word+=#"}},
        "history": {"url": "postgres://hubcast@db:5432/hubcast", "password": {"key": "pg"}},
    }
    objects = render(values)
    validate_all(objects)
    gateway = pod_of(objects, "hc-gateway")
    env = env_of(gateway["containers"][0])
    assert env["HUBCAST_LOG"]["value"] == "hubcast_gateway=debug,info"
    assert env["HUBCAST_LOG_FORMAT"]["value"] == "text"
    assert "HUBCAST_JWT_SECRET" not in env
    assert env["HUBCAST_JWT_ISSUER"]["value"] == "https://idp/"
    assert env["HUBCAST_JWT_AUDIENCE"]["value"] == "hubcast"
    assert env["HUBCAST_JWT_USER_CLAIM"]["value"] == "oid,sub"
    assert env["HUBCAST_ALLOWED_ORIGINS"]["value"] == "https://a.example,https://b.example"
    ref = lambda name: env[name]["valueFrom"]["secretKeyRef"]
    assert ref("HUBCAST_ACCESS_KEY") == {"name": "control", "key": "keys"}
    assert ref("HUBCAST_API_KEY_SHA256") == {"name": "base", "key": "api-key-hashes"}
    assert ref("HUBCAST_SESSION_SECRET") == {"name": "base", "key": "session"}
    assert ref("HUBCAST_BACKPLANE_PASSWORD") == {"name": "redis", "key": "pass/word+=#"}
    assert ref("HUBCAST_HISTORY_PASSWORD") == {"name": "base", "key": "pg"}
    assert env["HUBCAST_BACKPLANE"]["value"] == "redis://redis:6379/0"
    assert env["HUBCAST_HISTORY"]["value"] == "postgres://hubcast@db:5432/hubcast"
    # The public key is a file in a mounted Secret, at the path the variable names.
    assert_file_mounted(gateway, env["HUBCAST_JWT_PUBLIC_KEY"]["value"], secret=("idp", "tls.pub"))
    control_env = env_of(pod_of(objects, "hc-control")["containers"][0])
    assert control_env["HUBCAST_BACKPLANE_PASSWORD"] == env["HUBCAST_BACKPLANE_PASSWORD"]
    assert control_env["HUBCAST_ACCESS_KEY"] == env["HUBCAST_ACCESS_KEY"]
    assert control_env["HUBCAST_JWT_ISSUER"]["value"] == "https://idp/"
    assert "HUBCAST_JWT_PUBLIC_KEY" not in control_env and "HUBCAST_HISTORY" not in control_env


def assert_file_mounted(pod, path, secret=None, config_map=None):
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    source = volume.get("secret") or volume.get("configMap")
    item = next(i for i in source["items"] if f"{mount['mountPath']}/{i['path']}" == path)
    if secret:
        assert (volume["secret"]["secretName"], item["key"]) == secret
    if config_map:
        assert (volume["configMap"]["name"], item["key"]) == config_map


def test_jwks_from_a_config_map_and_redis_tls_ca_are_mounted_files():
    values = yaml.safe_load((CHART / "examples" / "managed-redis-tls.yaml").read_text())
    values["auth"]["jwt"] = {"jwks": {"configMapName": "idp-jwks", "key": "keys.json"}}
    objects = render(values)
    validate_all(objects)
    for deployment in ["hc-gateway", "hc-control"]:
        pod = pod_of(objects, deployment)
        env = env_of(pod["containers"][0])
        assert env["HUBCAST_BACKPLANE"]["value"] == "rediss://hubcast.redis.cache.windows.net:6380/0"
        assert_file_mounted(pod, env["HUBCAST_BACKPLANE_CA_FILE"]["value"], secret=("managed-redis", "ca.crt"))
        assert env["HUBCAST_BACKPLANE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "managed-redis", "key": "password"}
    gateway = pod_of(objects, "hc-gateway")
    assert_file_mounted(gateway, env_of(gateway["containers"][0])["HUBCAST_JWKS"]["value"], config_map=("idp-jwks", "keys.json"))


def test_no_template_puts_a_password_into_a_url():
    for template in (CHART / "templates").rglob("*"):
        if template.is_file():
            text = template.read_text()
            assert not re.search(r"://[^\"'\s]*\$\(|:\$\([A-Z_]+\)@|PASSWORD\)@", text), template
            assert "REDIS_PASSWORD" not in text, template


def test_standalone_tls_builds_a_rediss_url():
    objects = render({"redis": {"tls": {"enabled": True}, "addresses": ["cache:6380"]}})
    env = env_of(pod_of(objects, "hc-gateway")["containers"][0])
    assert env["HUBCAST_BACKPLANE"]["value"] == "rediss://cache:6380/0"
    assert "HUBCAST_BACKPLANE_CA_FILE" not in env     # the system roots, when no CA is given


def test_tls_and_the_sentinels_password_reach_every_mode():
    values = {"redis": {"mode": "sentinel", "addresses": ["s1:26379", "s2:26379"], "tls": {"enabled": True},
                        "sentinelPassword": {"secretName": "redis", "key": "sentinel-password"}}}
    env = env_of(pod_of(render(values), "hc-gateway")["containers"][0])
    assert env["HUBCAST_BACKPLANE"]["value"] == "rediss+sentinel://s1:26379,s2:26379/mymaster/0"
    assert env["HUBCAST_BACKPLANE_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis", "key": "sentinel-password"}
    cluster = {"redis": {"mode": "cluster", "addresses": ["a:6379", "b:6379"], "tls": {"enabled": True}}}
    env = env_of(pod_of(render(cluster), "hc-gateway")["containers"][0])
    assert env["HUBCAST_BACKPLANE"]["value"] == "rediss+cluster://a:6379,b:6379"
    assert "HUBCAST_BACKPLANE_SENTINEL_PASSWORD" not in env


def test_gateways_advertise_their_pod_address_for_relays():
    container = pod_of(render({}), "hc-gateway")["containers"][0]
    env = env_of(container)
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_IP") < names.index("HUBCAST_ADVERTISE_ADDRESS"), "$(POD_IP) is defined first"
    assert env["HUBCAST_ADVERTISE_ADDRESS"]["value"] == "$(POD_IP):8080"


def test_listener_tls_and_the_history_ca_are_mounted_files():
    values = {"gateway": {"tlsSecret": "hubcast-tls"},
              "history": {"url": "postgres://hubcast@db:5432/hubcast?sslmode=verify-full",
                          "caSecret": {"secretName": "db-ca", "key": "ca.pem"}}}
    objects = render(values)
    gateway = pod_of(objects, "hc-gateway")
    env = env_of(gateway["containers"][0])
    assert env["HUBCAST_TLS_CERT"]["value"] == "/etc/hubcast/tls/tls.crt"
    assert env["HUBCAST_TLS_KEY"]["value"] == "/etc/hubcast/tls/tls.key"
    assert_file_mounted(gateway, env["HUBCAST_TLS_CERT"]["value"], secret=("hubcast-tls", "tls.crt"))
    assert_file_mounted(gateway, env["HUBCAST_TLS_KEY"]["value"], secret=("hubcast-tls", "tls.key"))
    assert_file_mounted(gateway, env["HUBCAST_HISTORY_CA_FILE"]["value"], secret=("db-ca", "ca.pem"))
    service = find(objects, "Service", "hc-gateway")
    assert service["spec"]["ports"][0]["appProtocol"] == "https"
    plain = render({})
    assert "HUBCAST_TLS_CERT" not in env_of(pod_of(plain, "hc-gateway")["containers"][0])
    assert find(plain, "Service", "hc-gateway")["spec"]["ports"][0]["appProtocol"] == "http"


def test_the_in_memory_backplane_is_for_one_gateway_only():
    values = {"redis": {"enabled": False}, "control": {"enabled": False}, "autoscaling": {"enabled": False},
              "gateway": {"replicas": 1}}
    objects = render(values)
    validate_all(objects)
    assert env_of(pod_of(objects, "hc-gateway")["containers"][0])["HUBCAST_BACKPLANE"]["value"] == "memory"
    for refused in [{**values, "autoscaling": {"enabled": True}}, {**values, "control": {"enabled": True}}]:
        with pytest.raises(helm_python.HelmError):
            render(refused)


# --- umbrella chart ------------------------------------------------------------------------------------

EVERYTHING = {
    "nodeSelector": {"node.kubernetes.io/pool": "realtime"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "realtime", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
    "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}],
    "priorityClassName": "realtime-critical",
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "podLabels": {"team": "realtime"},
    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 20000, "fsGroup": 20000,
                           "seccompProfile": {"type": "RuntimeDefault"},
                           "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}]},
    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True},
    "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    "extraEnv": [{"name": "HUBCAST_NODE_TTL", "value": "9s"}],
    "envFrom": [{"configMapRef": {"name": "platform-env"}}],
    "extraVolumes": [{"name": "certs", "secret": {"secretName": "platform-certs"}}],
    "extraVolumeMounts": [{"name": "certs", "mountPath": "/etc/platform-certs", "readOnly": True}],
    "extraContainers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.2",
                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
    "initContainers": [{"name": "wait", "image": "busybox:1.37", "command": ["true"]}],
    "service": {"type": "LoadBalancer", "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
                "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP", "loadBalancerSourceRanges": ["10.0.0.0/8"]},
    "probes": {
        "readiness": {"periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 2},
        "liveness": {"exec": {"command": ["/usr/local/bin/hubcast", "--version"]}, "timeoutSeconds": 5},
        "startup": {"enabled": True, "periodSeconds": 2, "failureThreshold": 60},
    },
}


@pytest.fixture(scope="module")
def umbrella(tmp_path_factory):
    """A chart `platform` depending on hubcast (from charts/), with global and every standard key set."""
    root = tmp_path_factory.mktemp("umbrella") / "platform"
    (root / "charts").mkdir(parents=True)
    shutil.copytree(CHART, root / "charts" / "hubcast", symlinks=False)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (root / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "hubcast", "version": chart["version"], "condition": "hubcast.enabled"}],
    }))
    (root / "templates").mkdir()
    (root / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: platform-env\ndata:\n  REGION: eu\n")
    values = {
        "global": {"imageRegistry": "mirror.internal", "imagePullSecrets": ["global-pull"], "storageClass": "fast"},
        "hubcast": {
            "enabled": True,
            "fullnameOverride": "rt",
            "commonLabels": {"cost-center": "42"},
            "imagePullSecrets": [{"name": "hubcast-pull"}],
            "serviceAccount": {"create": True, "name": "realtime", "annotations": {"iam.gke.io/gcp-service-account": "rt@p.iam"}},
            "gateway": EVERYTHING,
            "control": EVERYTHING,
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
                          "hostnames": ["rt.example.com"], "timeouts": {"request": "0s"},
                          "sessionPersistence": {"enabled": True, "sessionName": "rt-node", "type": "Cookie", "absoluteTimeout": "24h"}},
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s", "scrapeTimeout": "5s",
                               "relabelings": [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                               "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "process_virtual_memory_bytes"}]},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                               "additionalRuleGroups": [{"name": "platform", "rules": [{"record": "rt:connections:sum", "expr": "sum(hubcast_hub_connections)"}]}]},
            "grafanaDashboard": {"enabled": True},
            "ingress": {"enabled": False},
        },
    }
    return root, values


def test_umbrella_chart_lints_and_renders(umbrella):
    root, values = umbrella
    lint = helm_python.lint(str(root), values, strict=True, quiet=True, with_subcharts=True)
    assert lint["errors"] == [], lint
    objects = render(values, chart=root, name="platform", namespace="realtime")
    validate_all(objects)
    find(objects, "ConfigMap", "platform-env")
    assert find(objects, "ServiceAccount", "realtime")["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "rt@p.iam"}
    for component in ["gateway", "control"]:
        deployment = find(objects, "Deployment", f"rt-{component}")
        assert deployment["metadata"]["labels"]["cost-center"] == "42"
        template = deployment["spec"]["template"]
        pod = template["spec"]
        assert template["metadata"]["labels"]["team"] == "realtime"
        assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        assert pod["serviceAccountName"] == "realtime"
        assert pod["imagePullSecrets"] == [{"name": "hubcast-pull"}, {"name": "global-pull"}]
        for key in ["nodeSelector", "tolerations", "affinity", "priorityClassName", "initContainers"]:
            assert pod[key] == EVERYTHING[key], key
        # Maps merge with the chart's defaults (Helm's rule; null removes a default key).
        assert EVERYTHING["podSecurityContext"].items() <= pod["securityContext"].items()
        spread = pod["topologySpreadConstraints"]
        assert len(spread) == 1 and spread[0]["maxSkew"] == 2
        assert spread[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        main, shipper = pod["containers"]
        assert shipper["name"] == "log-shipper"
        assert main["image"] == "mirror.internal/ghcr.io/hubcast/hubcast:0.1.0"
        assert main["resources"] == EVERYTHING["resources"]
        assert main["securityContext"] == EVERYTHING["securityContext"]
        assert main["envFrom"] == EVERYTHING["envFrom"]
        assert env_of(main)["HUBCAST_NODE_TTL"]["value"] == "9s"
        assert {"name": "certs", "mountPath": "/etc/platform-certs", "readOnly": True} in main["volumeMounts"]
        assert {"name": "certs", "secret": {"secretName": "platform-certs"}} in pod["volumes"]
        assert main["readinessProbe"] == {"httpGet": {"path": "/ready", "port": "admin"}, "periodSeconds": 2,
                                          "timeoutSeconds": 3, "failureThreshold": 2}
        # A handler of one's own replaces the default httpGet; the other fields merge with the defaults.
        assert main["livenessProbe"]["exec"] == {"command": ["/usr/local/bin/hubcast", "--version"]}
        assert main["livenessProbe"]["timeoutSeconds"] == 5 and "httpGet" not in main["livenessProbe"]
        assert main["startupProbe"]["httpGet"] == {"path": "/live", "port": "admin"}
        service = find(objects, "Service", f"rt-{component}")
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["sessionAffinity"] == "ClientIP"
        assert service["spec"]["externalTrafficPolicy"] == "Local"
        assert service["metadata"]["annotations"] == EVERYTHING["service"]["annotations"]
        # The admin port is never on the public Service.
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]

    route = find(objects, "HTTPRoute", "rt")
    assert route["spec"]["parentRefs"] == values["hubcast"]["httpRoute"]["parentRefs"]
    api_rule, hub_rule = route["spec"]["rules"]
    assert api_rule["backendRefs"] == [{"name": "rt-control", "port": 80}]
    assert hub_rule["backendRefs"] == [{"name": "rt-gateway", "port": 80}]
    assert hub_rule["sessionPersistence"] == {"sessionName": "rt-node", "type": "Cookie", "absoluteTimeout": "24h"}
    assert "sessionPersistence" not in api_rule


def test_scrape_targets_for_gateway_and_control(umbrella):
    root, values = umbrella
    objects = render(values, chart=root, name="platform", namespace="realtime")
    for component in ["gateway", "control"]:
        monitor = find(objects, "ServiceMonitor", f"rt-{component}")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        endpoint, = monitor["spec"]["endpoints"]
        assert (endpoint["interval"], endpoint["scrapeTimeout"], endpoint["path"]) == ("15s", "5s", "/metrics")
        assert endpoint["relabelings"] == values["hubcast"]["serviceMonitor"]["relabelings"]
        assert endpoint["metricRelabelings"] == values["hubcast"]["serviceMonitor"]["metricRelabelings"]
        # The selector finds exactly the admin Service, whose port reaches the pods' admin container port.
        selected = [o for o in objects if o["kind"] == "Service"
                    and monitor["spec"]["selector"]["matchLabels"].items() <= o["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in selected] == [f"rt-{component}-admin"]
        admin = selected[0]
        assert admin["spec"]["publishNotReadyAddresses"] is True       # draining pods stay scrapeable
        port = next(p for p in admin["spec"]["ports"] if p["name"] == endpoint["port"])
        pod = find(objects, "Deployment", f"rt-{component}")["spec"]["template"]
        assert admin["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert port["targetPort"] in [p["name"] for p in pod["spec"]["containers"][0]["ports"]]


def test_alerts_are_scoped_to_the_release(umbrella):
    root, values = umbrella
    objects = render(values, chart=root, name="platform", namespace="realtime")
    rule = find(objects, "PrometheusRule", "rt")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    scope = 'namespace="realtime", job=~"rt-(gateway|control)-admin"'
    text = (REPO / "deploy" / "prometheus" / "alerts.yaml").read_text().replace('job=~".*hubcast.*"', scope)
    expected = yaml.safe_load(text)
    assert rule["spec"]["groups"][0] == expected["groups"][0]
    assert rule["spec"]["groups"][1]["name"] == "platform"
    exprs = [r["expr"] for r in rule["spec"]["groups"][0]["rules"]]
    assert all(scope in e for e in exprs) and not any(".*hubcast.*" in e for e in exprs)

    custom = deep_merge(values, {"hubcast": {"prometheusRule": {"scope": 'cluster="eu1", job="hubcast"'}}})
    rule = find(render(custom, chart=root, name="platform", namespace="realtime"), "PrometheusRule", "rt")
    assert rule["spec"]["groups"][0]["rules"][0]["expr"] == 'up{cluster="eu1", job="hubcast"} == 0'


def test_the_dashboard_config_map_is_the_shipped_dashboard():
    objects = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "rt"}}})
    dashboard = find(objects, "ConfigMap", "hc-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "rt"}
    shipped = json.loads((REPO / "deploy" / "grafana" / "hubcast.json").read_text())
    assert json.loads(dashboard["data"]["hubcast.json"]) == shipped


def test_an_http_route_needs_its_parent():
    with pytest.raises(helm_python.HelmError, match="parentRefs"):
        render({"httpRoute": {"enabled": True}})
    objects = render({"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}, "control": {"enabled": False}})
    validate_all(objects)
    route = find(objects, "HTTPRoute", "hc")
    assert [r["matches"][0]["path"]["value"] for r in route["spec"]["rules"]] == ["/"]
    assert "sessionPersistence" not in route["spec"]["rules"][0]


def test_the_crd_validator_refuses_what_the_crds_refuse():
    objects = render({"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}, "serviceMonitor": {"enabled": True}})
    route = find(objects, "HTTPRoute", "hc")
    monitor = find(objects, "ServiceMonitor", "hc-gateway")
    bad_route = copy.deepcopy(route)
    bad_route["spec"]["rules"][0]["backendRefs"][0]["port"] = "http"
    typo_route = copy.deepcopy(route)
    typo_route["spec"]["rules"][0]["sessionPersistance"] = {"sessionName": "x"}
    bad_monitor = copy.deepcopy(monitor)
    bad_monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    for obj in [bad_route, typo_route, bad_monitor]:
        obj["metadata"]["name"] += "-bad"
    errors = crd_errors([route, monitor, bad_route, typo_route, bad_monitor])
    assert errors[("HTTPRoute", "hc")] == [] and errors[("ServiceMonitor", "hc-gateway")] == []
    assert errors[("ServiceMonitor", "hc-gateway-bad")], errors
    # Two HTTPRoutes named hc-bad: the type error and the unknown field are both reported.
    assert errors[("HTTPRoute", "hc-bad")], errors


def test_notes_tell_how_to_reach_and_test_it():
    text = notes({})
    assert "helm test hc -n hubcast" in text
    assert "port-forward service/hc-gateway" in text
    assert "session affinity" not in text, "gateways relay: no affinity needed"
    assert "session affinity" in notes({"gateway": {"tlsSecret": "hubcast-tls"}})
    text = notes({"httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}], "hostnames": ["rt.example.com"],
                                "sessionPersistence": {"enabled": True}},
                  "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
    assert "HTTPRoute hc attaches to public" in text and "rt.example.com" in text
    assert "session affinity" not in text
    assert '{"release":"kps"}' in text


def test_the_chart_readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([<>A-Za-z0-9_.]+)` \|", readme, re.M))

    def leaves(value, prefix=""):
        if isinstance(value, dict) and value and not prefix.endswith(("Annotations", "Labels", "annotations", "labels")):
            for key, child in value.items():
                yield from leaves(child, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix

    keys = set(leaves(DEFAULTS))
    # gateway.* and control.* share their documentation where the README says `<component>`.
    expanded = set()
    for key in documented:
        if key.startswith("<component>."):
            expanded |= {key.replace("<component>", "gateway"), key.replace("<component>", "control")}
        else:
            expanded.add(key)
    missing = sorted(k for k in keys if k not in expanded and not any(k.startswith(d + ".") for d in expanded))
    assert missing == [], missing


# --- the helm test pod ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node():
    """A hubcast node with an HMAC key, issuer and audience (the existing binary, not rebuilt)."""
    port, admin = free_port(), free_port()
    process = subprocess.Popen(
        [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"],
        env={**os.environ, "HUBCAST_HISTORY": "none", "HUBCAST_JWT_SECRET": "helm-test-secret",
             "HUBCAST_JWT_ISSUER": "https://idp/", "HUBCAST_JWT_AUDIENCE": "hubcast", "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", admin), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("hubcast did not start")
    yield port, admin
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def run_helm_test(env, timeout="4"):
    """Runs the script of the rendered test pod, with the pod's environment replaced by `env`."""
    objects = render({})
    script = find(objects, "ConfigMap", "hc-test")["data"]["helm-test.py"]
    pod = find(objects, "Pod", "hc-test")
    pod_env = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert {"HUBCAST_TEST_READY_URLS", "HUBCAST_TEST_NEGOTIATE_URL", "HUBCAST_JWT_SECRET"} <= set(pod_env)
    return subprocess.run([sys.executable, "-B", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HUBCAST_TEST_TIMEOUT": timeout, **env})


def test_helm_test_pod_checks_ready_and_negotiates(node):
    port, admin = node
    base = {"HUBCAST_TEST_READY_URLS": f"http://127.0.0.1:{admin}/ready",
            "HUBCAST_TEST_NEGOTIATE_URL": f"http://127.0.0.1:{port}/hubs/chat/negotiate?negotiateVersion=1",
            "HUBCAST_JWT_ISSUER": "https://idp/", "HUBCAST_JWT_AUDIENCE": "hubcast"}
    ok = run_helm_test({**base, "HUBCAST_JWT_SECRET": "helm-test-secret"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "transports ['WebSockets'" in ok.stdout, ok.stdout
    # Without a secret to sign with, the hub's 401 proves the route reaches it.
    anonymous = run_helm_test(base)
    assert anonymous.returncode == 0, anonymous.stdout + anonymous.stderr
    # And it fails when it must: a wrong key, a wrong audience, an admin port that is not there.
    for bad in [{**base, "HUBCAST_JWT_SECRET": "wrong"},
                {**base, "HUBCAST_JWT_SECRET": "helm-test-secret", "HUBCAST_JWT_AUDIENCE": "other"},
                {**base, "HUBCAST_JWT_SECRET": "helm-test-secret", "HUBCAST_TEST_READY_URLS": f"http://127.0.0.1:{port}/ready"}]:
        failed = run_helm_test(bad, timeout="1")
        assert failed.returncode == 1 and "FAILED" in failed.stdout, failed.stdout + failed.stderr
