#!/usr/bin/env bash
# Runs the official Java SignalR client's tests against real `hubcast serve` processes.
#   HUBCAST_BIN   the hubcast binary (default: target/debug/hubcast of this repository)
#   HUBCAST_JS_CLIENT_DIR  a node_modules directory with @microsoft/signalr for the cross-node test's JS sender
#                 (default: tests/node/node_modules; that test is skipped when neither has it)
# Extra arguments go to Maven, e.g. ./run.sh -Dtest=ChatTest
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export HUBCAST_BIN="${HUBCAST_BIN:-$repo/target/debug/hubcast}"
if [[ ! -x "$HUBCAST_BIN" ]]; then
  echo "run.sh: no hubcast binary at $HUBCAST_BIN (build it, or set HUBCAST_BIN)" >&2
  exit 2
fi
HUBCAST_BIN="$(cd "$(dirname "$HUBCAST_BIN")" && pwd)/$(basename "$HUBCAST_BIN")"
export HUBCAST_JS_CLIENT_DIR="${HUBCAST_JS_CLIENT_DIR:-$repo/tests/node/node_modules}"
cd "$here"
profiles=()
# MessagePack runs when Maven Central serves com.microsoft.signalr:signalr-messagepack for the client's version.
if mvn -q -B -o -Pmessagepack dependency:resolve >/dev/null 2>&1 \
  || mvn -q -B -Pmessagepack dependency:resolve >/dev/null 2>&1; then
  profiles=(-Pmessagepack)
else
  echo "run.sh: com.microsoft.signalr:signalr-messagepack does not resolve; the MessagePack cases are skipped" >&2
fi
# Not -q: Surefire's "Tests run: …" summary is the closing line CI reads.
exec mvn -B -ntp "${profiles[@]}" test "$@"
