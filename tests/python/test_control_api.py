"""The control API against its own OpenAPI document, with schemathesis: every operation is called with
generated valid and invalid inputs, and every response must be documented (status, content type, schema),
never a server error, and refuse bad credentials."""

import subprocess
import sys
from pathlib import Path

from conftest import CONTROL_API_KEY


def test_schemathesis_finds_no_failure(server):
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [
            str(st), "run", f"{server.url}/api/openapi.json",
            "--header", f"X-API-Key: {CONTROL_API_KEY}",
            "--checks", "all",
            "--max-examples", "25",
            "--seed", "20261122",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
