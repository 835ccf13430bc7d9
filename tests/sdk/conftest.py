"""Starts the staunch-mock binary for the SDK tests.

`STAUNCH_MOCK_BIN` names the binary (tests/sdk/run.sh builds it and sets it).
`STAUNCH_MOCK_URL` points the tests at a mock that is already running
instead. Only loopback traffic: the mock listens on 127.0.0.1.
"""

import os
import re
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

import pytest

READY_TIMEOUT_S = 20.0
LISTENING = re.compile(r"staunch-mock listening on (http://127\.0\.0\.1:\d+)")


def _accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mock_url():
    """The mock's base URL (`http://127.0.0.1:PORT`), once it accepts
    connections; the mock is stopped when the session ends."""
    external = os.environ.get("STAUNCH_MOCK_URL")
    if external:
        yield external.rstrip("/")
        return

    binary = os.environ.get("STAUNCH_MOCK_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail(
            f"STAUNCH_MOCK_BIN={binary!r} is not an executable; run tests/sdk/run.sh, "
            "or set STAUNCH_MOCK_BIN to the staunch-mock binary "
            "(cargo build -p staunch-mock --bin staunch-mock)"
        )

    # The binary binds 127.0.0.1 on a port the OS picks (--port 0) and prints
    # the address it got, so no other process can take the port in between.
    # Its output goes to a file rather than a pipe that nobody would drain.
    log = tempfile.NamedTemporaryFile(prefix="staunch-mock-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [binary, "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output():
        with open(log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    try:
        url = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"staunch-mock exited with {proc.returncode}:\n{output()}")
            if url is None:
                found = LISTENING.search(output())
                url = found.group(1) if found else None
            if url is not None:
                parts = urlsplit(url)
                if _accepts(parts.hostname, parts.port):
                    break
            time.sleep(0.05)
        else:
            pytest.fail(
                f"staunch-mock did not accept connections within {READY_TIMEOUT_S:.0f} s:\n{output()}"
            )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
