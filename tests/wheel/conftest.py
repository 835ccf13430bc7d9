"""Starts the staunch-gateway that `pip install` put into the virtualenv
(tests/wheel/run.sh builds the wheel, installs it, and sets
`STAUNCH_INSTALLED_GATEWAY` to the binary in the virtualenv's bin folder).

Each gateway listens on 127.0.0.1, on a port the OS picks (`--listen
127.0.0.1:0`); the test reads the address from the line the gateway prints
first on stdout, "gateway listening on http://127.0.0.1:PORT".
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"gateway listening on (http://127\.0\.0\.1:\d+)")
READY_WITHIN_S = 20.0


def installed_gateway():
    """The staunch-gateway on the PATH, which must be the one the wheel put
    into this test's virtualenv (next to the Python running the tests)."""
    expected = os.environ.get("STAUNCH_INSTALLED_GATEWAY")
    if not expected:
        pytest.fail("STAUNCH_INSTALLED_GATEWAY is not set: run tests/wheel/run.sh")
    found = shutil.which("staunch-gateway")
    venv_bin = Path(sys.executable).parent
    assert found is not None, "staunch-gateway is not on the PATH"
    assert Path(found).parent == venv_bin, f"{found} is not the virtualenv's ({venv_bin})"
    assert Path(found) == Path(expected), (found, expected)
    return found


def _ready(url):
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return True
    except OSError:
        return False


def serve(args):
    """Runs `staunch-gateway ARGS --listen 127.0.0.1:0` until the address it
    prints accepts connections, yields that URL, and stops it (SIGTERM)
    afterwards. No provider key reaches it."""
    binary = installed_gateway()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    with tempfile.TemporaryFile(mode="w+", prefix="staunch-gateway-") as log:
        proc = subprocess.Popen(
            [binary, *args, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

        def output():
            log.seek(0)
            return log.read()

        try:
            url = None
            deadline = time.monotonic() + READY_WITHIN_S
            while url is None or not _ready(url):
                if proc.poll() is not None:
                    pytest.fail(f"staunch-gateway exited with {proc.returncode}:\n{output()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"staunch-gateway not ready within {READY_WITHIN_S:.0f} s:\n{output()}")
                if url is None:
                    found = LISTENING.search(output())
                    url = found.group(1) if found else None
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def gateway_url():
    """The installed gateway with no configuration at all: the embedded mock
    for every model, no client keys, loopback only."""
    yield from serve([])


@pytest.fixture(scope="session")
def dry_run_url():
    """The installed gateway on docs/agents-dry-run.toml, the configuration
    docs/agents.md tells the reader to start with."""
    yield from serve(["--config", str(ROOT / "docs" / "agents-dry-run.toml")])
