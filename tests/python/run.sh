#!/usr/bin/env bash
# Runs the signalrcore suite: creates tests/python/.venv if missing, installs requirements.txt, runs pytest.
# The server binary is HUBCAST_BIN, or target/debug/hubcast of this repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec .venv/bin/python -m pytest "$@"
