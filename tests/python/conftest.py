"""Starts one hubcast conformance server for the test session."""

import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "debug" / "hubcast"
START_TIMEOUT = 20.0
CONTROL_API_KEY = "schemathesis-control-key"


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log: list):
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log

    def log(self) -> str:
        return "".join(self._log)

    def stop(self, grace: float = 5.0):
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server() -> Server:
    binary = os.environ.get("HUBCAST_BIN") or str(DEFAULT_BIN)
    process = subprocess.Popen(
        [binary, "serve", "--conformance", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={
            "HUBCAST_HISTORY": "none",
            **os.environ,
            "NO_COLOR": "1",
            # signalrcore's WebSocket stop() closes its socket while another thread is blocked reading it, and
            # only returns once that read wakes up, i.e. when the server next sends something. Frequent server
            # pings keep stop() short; the protocol is unchanged (the default is 15 s, as in ASP.NET Core).
            "HUBCAST_HUB_KEEP_ALIVE_INTERVAL": "250ms",
            # The control API at /api accepts this key (test_control_api.py).
            "HUBCAST_API_KEY_SHA256": hashlib.sha256(CONTROL_API_KEY.encode()).hexdigest(),
            # schemathesis presents wrong credentials on purpose (its auth checks): no per-address pause.
            "HUBCAST_CONTROL_AUTH_FAILURES": "0",
        },
    )
    log: list = []
    port_found = threading.Event()
    port_box: list = []

    def drain():
        # Keep reading for the server's whole life so that its stderr never blocks or breaks.
        for line in process.stderr:
            log.append(line)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match and not port_found.is_set():
                port_box.append(int(match.group(1)))
                port_found.set()

    threading.Thread(target=drain, name="hubcast-stderr", daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not port_found.wait(0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"hubcast did not start ({binary}); stderr:\n{''.join(log)}")
    return Server(process, port_box[0], log)


@pytest.fixture(scope="session")
def server():
    srv = start_server()
    yield srv
    srv.stop()
