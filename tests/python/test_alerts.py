"""The Prometheus alerting rules (deploy/prometheus/alerts.yaml) and the Grafana dashboard
(deploy/grafana/hubcast.json).

- promtool (Debian's prometheus package; scripts/test-deps installs it) checks the rules, and runs their
  unit tests (alerts.test.yaml): every alert fires where it must and stays quiet where it must (other
  exporters' jobs, healthy nodes, short blips);
- every selector carries the scope matcher the Helm chart replaces, and the chart's PrometheusRule, once
  scoped to a release, is valid for promtool and fires for that release's namespace and jobs only;
- the dashboard has namespace/job/node variables that every query uses, stat panels for the headline
  numbers, a unit on every panel, and only metric names hubcast's sources register.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from test_helm import find, render

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus"
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "hubcast.json").read_text())
SCOPE = 'job=~".*hubcast.*"'
NODE_DOWN = "The node is down or its admin port is unreachable; its clients reconnect to other nodes."


def promtool(*args: str, cwd=RULES) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/test-deps (Debian package prometheus)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True)


def rules():
    return yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"][0]["rules"]


def test_rules_are_valid():
    result = promtool("check", "rules", "alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_where_they_must_and_nowhere_else():
    result = promtool("test", "rules", "alerts.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    tests = yaml.safe_load((RULES / "alerts.test.yaml").read_text())["tests"]
    cases = [c for t in tests for c in t["alert_rule_test"]]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never fires in a test"
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    # The other alerts' quiet cases are series that are present but must not fire (other jobs, healthy
    # nodes) next to the firing ones: promtool fails on any alert not listed in exp_alerts.
    assert {"HubcastNodeDown", "HubcastAbsent", "HubcastHistoryStoreFailing", "HubcastReconnectStorm"} <= quiet


def test_every_selector_is_scoped():
    metric = re.compile(r"\b(up|hubcast_[a-z_]+|process_[a-z_]+)(\{[^}]*\})?")
    for rule in rules():
        for match in metric.finditer(rule["expr"]):
            assert match.group(2) and SCOPE in match.group(2), f"{rule['alert']}: {match.group(0)} is not scoped"


@pytest.fixture(scope="module")
def scoped_rule_file(tmp_path_factory):
    """The chart's PrometheusRule for release `rt` in namespace `prod`, as a promtool rule file."""
    objects = render({"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}, name="rt", namespace="prod")
    rule = find(objects, "PrometheusRule", "rt")
    directory = tmp_path_factory.mktemp("scoped")
    (directory / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    return directory


def test_the_scoped_chart_rules_are_valid(scoped_rule_file):
    result = promtool("check", "rules", "rules.yaml", cwd=scoped_rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scoped_chart_rules_fire_for_their_release_only(scoped_rule_file):
    down = "0 0 0 0 0 0"
    fds = "950x10"
    (scoped_rule_file / "rules.test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # The release's gateway and control pods (jobs of its ServiceMonitors).
                {"series": 'up{namespace="prod", job="rt-gateway-admin", instance="g:9090"}', "values": down},
                {"series": 'up{namespace="prod", job="rt-control-admin", instance="c:9090"}', "values": down},
                # The same release name in another namespace, another release, the compose job name.
                {"series": 'up{namespace="staging", job="rt-gateway-admin", instance="s:9090"}', "values": down},
                {"series": 'up{namespace="prod", job="other-gateway-admin", instance="o:9090"}', "values": down},
                {"series": 'up{namespace="prod", job="hubcast", instance="h:9090"}', "values": down},
                {"series": 'process_open_fds{namespace="staging", job="rt-gateway-admin", instance="s:9090"}', "values": fds},
                {"series": 'process_max_fds{namespace="staging", job="rt-gateway-admin", instance="s:9090"}', "values": "1000x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "HubcastNodeDown", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "namespace": "prod", "job": job, "instance": instance},
                     "exp_annotations": {"summary": f"{instance} does not answer its scrape", "description": NODE_DOWN}}
                    for job, instance in [("rt-control-admin", "c:9090"), ("rt-gateway-admin", "g:9090")]
                ]},
                {"eval_time": "5m", "alertname": "HubcastAbsent", "exp_alerts": []},
                {"eval_time": "8m", "alertname": "HubcastFileDescriptorsNearLimit", "exp_alerts": []},
            ],
        }],
    }))
    result = promtool("test", "rules", "rules.test.yaml", cwd=scoped_rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard --------------------------------------------------------------------------------------

def panels():
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def exprs():
    return [t["expr"] for p in panels() for t in p.get("targets", [])]


def test_dashboard_has_namespace_job_and_node_variables_every_query_uses():
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert {"datasource", "namespace", "job", "instance"} <= variables.keys()
    for name in ["namespace", "job", "instance"]:
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    assert "$namespace" in variables["job"]["query"]
    assert len(exprs()) >= 25
    selector = re.compile(r"\b(?:up|hubcast_[a-z_]+|process_[a-z_]+)(\{[^}]*\})?")
    for expr in exprs():
        for match in selector.finditer(expr):
            assert match.group(1) and 'namespace=~"$namespace"' in match.group(1) and 'job=~"$job"' in match.group(1), \
                f"{match.group(0)} in {expr}"


def test_dashboard_has_headline_stats_and_a_unit_on_every_panel():
    stats = [p for p in panels() if p["type"] == "stat"]
    assert {"Connections", "Nodes up", "Connects", "Messages out", "Fan-out p99", "Redis links down"} <= {p["title"] for p in stats}
    assert all(p["gridPos"]["y"] < 6 for p in stats), "the headline numbers come first"
    for panel in panels():
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit, panel["title"]
        if panel["title"].startswith(("Fan-out", "Invocation duration")):
            assert unit == "s", panel["title"]
        if "per second" in panel["title"]:
            assert unit == "ops", panel["title"]
    # Panels that mix quantities give the second one its own unit.
    for title, unit in [("Sends waiting for Redis", "s"), ("Messages out per second by node", "Bps")]:
        panel = next(p for p in panels() if p["title"] == title)
        properties = [prop for o in panel["fieldConfig"]["overrides"] for prop in o["properties"]]
        assert {"id": "unit", "value": unit} in properties, title
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_uses_only_metrics_hubcast_registers():
    """Every hubcast_* name of the dashboard and the alerts is registered somewhere in crates/ (names
    are never renamed; tests/node/metrics.test.js also checks them against a live scrape)."""
    sources = "\n".join(p.read_text() for p in (REPO / "crates").rglob("*.rs"))
    for text in [json.dumps(DASHBOARD), (RULES / "alerts.yaml").read_text()]:
        names = {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\b(hubcast_[a-z_]+)\b", text)}
        assert len(names) >= 5
        unregistered = sorted(n for n in names if f'"{n}"' not in sources
                              and f'"{n.removeprefix("hubcast_")}"' not in sources)
        assert unregistered == [], unregistered
