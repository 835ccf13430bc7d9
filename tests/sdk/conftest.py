"""Starts the binaries the SDK tests talk to: staunch-mock and the
axum_gateway example.

`STAUNCH_MOCK_BIN` names the mock binary and `STAUNCH_GATEWAY_BIN` the
gateway example's (tests/sdk/run.sh builds both and sets them).
`STAUNCH_MOCK_URL` / `STAUNCH_GATEWAY_URL` point the tests at ones that are
already running instead. Only loopback traffic: both listen on 127.0.0.1.
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
MOCK_LISTENING = re.compile(r"staunch-mock listening on (http://127\.0\.0\.1:\d+)")
GATEWAY_LISTENING = re.compile(r"gateway listening on (http://127\.0\.0\.1:\d+)")

# Keys that would make the gateway call the real providers instead of its
# embedded mock; none of them reaches it.
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def _accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _serve(name, binary_var, build_hint, args, listening, env=None):
    """Starts `$binary_var args...`, waits (bounded) until the address it
    prints (matched by `listening`) accepts connections, yields that URL,
    and stops the process afterwards."""
    binary = os.environ.get(binary_var)
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail(
            f"{binary_var}={binary!r} is not an executable; run tests/sdk/run.sh, "
            f"or set {binary_var} to the {name} binary ({build_hint})"
        )

    # The binary binds 127.0.0.1 on a port the OS picks (port 0) and prints
    # the address it got, so no other process can take the port in between.
    # Its output goes to a file rather than a pipe that nobody would drain.
    log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [binary, *args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )

    def output():
        with open(log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    try:
        url = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{output()}")
            if url is None:
                found = listening.search(output())
                url = found.group(1) if found else None
            if url is not None:
                parts = urlsplit(url)
                if _accepts(parts.hostname, parts.port):
                    break
            time.sleep(0.05)
        else:
            pytest.fail(f"{name} did not accept connections within {READY_TIMEOUT_S:.0f} s:\n{output()}")
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


@pytest.fixture(scope="session")
def mock_url():
    """The mock's base URL (`http://127.0.0.1:PORT`), once it accepts
    connections; the mock is stopped when the session ends."""
    external = os.environ.get("STAUNCH_MOCK_URL")
    if external:
        yield external.rstrip("/")
        return
    yield from _serve(
        "staunch-mock",
        "STAUNCH_MOCK_BIN",
        "cargo build -p staunch-mock --bin staunch-mock",
        ["--port", "0"],
        MOCK_LISTENING,
    )


@pytest.fixture(scope="session")
def gateway_url():
    """The axum_gateway example's base URL (`http://127.0.0.1:PORT`), once it
    accepts connections. It runs without provider keys, so it serves its
    embedded mock (with its few random faults); it is stopped when the
    session ends."""
    external = os.environ.get("STAUNCH_GATEWAY_URL")
    if external:
        yield external.rstrip("/")
        return
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    yield from _serve(
        "axum_gateway",
        "STAUNCH_GATEWAY_BIN",
        "cargo build -p staunch --example axum_gateway",
        ["--listen", "127.0.0.1:0"],
        GATEWAY_LISTENING,
        env=env,
    )
