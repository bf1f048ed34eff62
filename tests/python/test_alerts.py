"""The Prometheus alerting rules (deploy/prometheus/alerts.yaml): valid for promtool, and its unit tests
(alerts.test.yaml) fire where they must and stay quiet where they must (other exporters' jobs, healthy
nodes). promtool comes from Debian's prometheus package (scripts/test-deps installs it)."""

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/test-deps (Debian package prometheus)"
    return subprocess.run([binary, *args], cwd=RULES, capture_output=True, text=True)


def test_rules_are_valid():
    result = promtool("check", "rules", "alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_where_they_must_and_nowhere_else():
    result = promtool("test", "rules", "alerts.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
