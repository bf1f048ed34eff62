"""The container files, checked without a Docker engine: the Dockerfile is multi-stage, runs as non-root
with an exec-form entrypoint; the compose stack only uses flags and HUBCAST_* variables the binary
really has, its configuration file passes `hubcast check-config`, and its Nginx file is the shipped one
with the stack's addresses."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import DEFAULT_BIN

REPO = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("HUBCAST_BIN") or str(DEFAULT_BIN)


def help_of(subcommand: str) -> str:
    return subprocess.run([BINARY, subcommand, "--help"], check=True, capture_output=True, text=True).stdout


def test_dockerfile_is_multi_stage_non_root_with_exec_form_entrypoint():
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+", text, re.M)
    assert len(stages) >= 2, stages
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root"), user
    entrypoint = re.search(r"^ENTRYPOINT\s+(.+)$", text, re.M).group(1)
    assert json.loads(entrypoint) == ["/usr/local/bin/hubcast"]
    cmd = json.loads(re.search(r"^CMD\s+(.+)$", text, re.M).group(1))
    assert cmd[0] in ("serve", "control")
    # Every file the build copies exists in the repository.
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.M):
        if source != ".":
            assert (REPO / source).exists(), source


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(REPO / "deploy" / "docker" / "Dockerfile")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_context_leaves_outputs_and_dependencies_out():
    ignored = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for pattern in ["target", "**/node_modules", ".git"]:
        assert pattern in ignored, pattern
    # What the Dockerfile copies by name is not ignored (web/package*.json, web/).
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.M):
        assert source.rstrip("/") not in ignored, source


def test_compose_uses_real_flags_and_variables():
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "docker-compose.yml").read_text())
    checked = 0
    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or command[0] not in ("serve", "control"):
            continue
        text = help_of(command[0])
        for flag in [arg for arg in command[1:] if arg.startswith("--")]:
            assert re.search(rf"\s{re.escape(flag)}\b", text), f"{name}: {flag}"
        for variable in service.get("environment", {}):
            assert f"env: {variable}" in text, f"{name}: {variable}"
        checked += 1
    assert checked == 3


def test_compose_config_is_valid():
    path = REPO / "deploy" / "compose" / "hubcast.toml"
    result = subprocess.run([BINARY, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_nginx_is_the_shipped_file():
    shipped = (REPO / "nginx" / "hubcast.conf").read_text()
    compose = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    expected = (shipped.replace("127.0.0.1:8080", "gateway-1:8080")
                .replace("127.0.0.1:8082", "gateway-2:8080")
                .replace("127.0.0.1:8081", "control:8081"))
    body = lambda text: text.split("\n", 1)[1]  # the first line says which copy it is
    assert body(compose) == body(expected)
