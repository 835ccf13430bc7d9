"""Starts the binaries the SDK tests talk to: staunch-mock, the
axum_gateway example, and the staunch-gateway service.

`STAUNCH_MOCK_BIN` names the mock binary, `STAUNCH_GATEWAY_BIN` the gateway
example's and `STAUNCH_GATEWAY_SERVICE_BIN` the staunch-gateway binary
(tests/sdk/run.sh builds them and sets these). `STAUNCH_MOCK_URL` /
`STAUNCH_GATEWAY_URL` point the tests at a mock / gateway example that is
already running instead; staunch-gateway is always started here, with a
configuration written for the session. Only loopback traffic: all of them
listen on 127.0.0.1.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

READY_TIMEOUT_S = 20.0
MOCK_LISTENING = re.compile(r"staunch-mock listening on (http://127\.0\.0\.1:\d+)")
GATEWAY_LISTENING = re.compile(r"gateway listening on (http://127\.0\.0\.1:\d+)")

# Keys that would make the gateway call the real providers instead of its
# embedded mock; none of them reaches it.
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")


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


# --- staunch-gateway ----------------------------------------------------------

# The first line staunch-gateway prints on stdout, and nothing else there.
SERVICE_LISTENING = re.compile(r"gateway listening on (http://127\.0\.0\.1:\d+)")
# The client key the session's configuration accepts (stored as its SHA-256).
SERVICE_KEY = "sk-staunch-sdk-tests-8d1f0c"
# How long staunch-gateway may drain after SIGTERM (`shutdown_grace_secs`).
SERVICE_GRACE_S = 5


@dataclass(frozen=True)
class GatewayService:
    """A running staunch-gateway: its base URL (`http://127.0.0.1:PORT`),
    the client key it accepts, its routes' model patterns, in order, the
    models of the targets the chat route `*` tries, and the model of the
    embeddings route's target."""

    url: str
    key: str
    routes: tuple
    target_models: tuple
    embedding_model: str = ""


def _toml_string(value):
    # A TOML basic string: JSON's escaping is a subset TOML reads alike.
    return json.dumps(value)


def _service_config(directory, key):
    """Writes a staunch-gateway configuration into `directory`: the
    embedded mock (with a scenario file of no faults, so that no answer
    depends on a random draw), a route `text-embedding-*` to one mock
    embedding target, one route `*` to two mock targets (two models: two
    vector spaces, so it serves chat only), and one client key. Returns its
    path, the routes, the chat target models and the embedding model."""
    scenario = os.path.join(directory, "calm.toml")
    with open(scenario, "w", encoding="utf-8") as f:
        f.write("# staunch-mock scenario: no faults.\nseed = 7\n")
    routes = ("text-embedding-*", "*")
    targets = ("mock-primary", "mock-fallback")
    embedding = "text-embedding-3-small"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    config = os.path.join(directory, "gateway.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(
            f"""[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = {SERVICE_GRACE_S}
log_format = "text"

[providers.mock]
kind = "mock"
# Relative to this file.
scenario = "calm.toml"

[[routes]]
model = {_toml_string(routes[0])}
targets = [{{ provider = "mock", model = {_toml_string(embedding)} }}]
  [routes.degrade]
  cache_ttl_secs = 600

[[routes]]
model = {_toml_string(routes[1])}
targets = [
  {{ provider = "mock", model = {_toml_string(targets[0])} }},
  {{ provider = "mock", model = {_toml_string(targets[1])} }},
]

[[client_keys]]
name = "sdk-tests"
sha256 = "{digest}"
"""
        )
    return config, routes, targets, embedding


def _first_line(path):
    """The first whole line of a file, without its newline, or None."""
    with open(path, encoding="utf-8", errors="replace") as f:
        line = f.readline()
    return line.rstrip("\r\n") if line.endswith("\n") else None


def _ready(url):
    """Whether `GET url/readyz` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def gateway_service():
    """staunch-gateway, started with a configuration written into a
    temporary directory (see `_service_config`), once `/readyz` answers 200:
    a `GatewayService`. At the end of the session it gets SIGTERM and must
    exit with status 0 within its grace period."""
    binary = os.environ.get("STAUNCH_GATEWAY_SERVICE_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail(
            f"STAUNCH_GATEWAY_SERVICE_BIN={binary!r} is not an executable; run tests/sdk/run.sh, "
            "or set STAUNCH_GATEWAY_SERVICE_BIN to the staunch-gateway binary "
            "(cargo build -p staunch-gateway --bin staunch-gateway)"
        )
    directory = tempfile.mkdtemp(prefix="staunch-gateway-")
    config, routes, targets, embedding = _service_config(directory, SERVICE_KEY)
    stdout_path = os.path.join(directory, "stdout.log")
    stderr_path = os.path.join(directory, "stderr.log")
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    # Files rather than pipes that nobody would drain; stdout carries only
    # the address line, the logs go to stderr.
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [binary, "--config", config, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
        )

    def output():
        parts = []
        for name, path in (("stdout", stdout_path), ("stderr", stderr_path)):
            with open(path, encoding="utf-8", errors="replace") as f:
                parts.append(f"--- {name} ---\n{f.read()}")
        return "\n".join(parts)

    stopped = False
    try:
        url = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"staunch-gateway exited with {proc.returncode}:\n{output()}")
            if url is None:
                line = _first_line(stdout_path)
                if line is not None:
                    found = SERVICE_LISTENING.fullmatch(line)
                    if not found:
                        pytest.fail(f"staunch-gateway's first line of stdout is {line!r}:\n{output()}")
                    url = found.group(1)
            if url is not None and _ready(url):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"staunch-gateway was not ready within {READY_TIMEOUT_S:.0f} s:\n{output()}")

        yield GatewayService(
            url=url, key=SERVICE_KEY, routes=routes, target_models=targets, embedding_model=embedding
        )

        # A clean stop: SIGTERM, then status 0 within the grace period.
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = proc.wait(timeout=SERVICE_GRACE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"staunch-gateway did not exit within {SERVICE_GRACE_S} s of SIGTERM:\n{output()}")
        stopped = True
        if code != 0:
            pytest.fail(
                f"staunch-gateway exited with {code} after SIGTERM "
                f"({time.monotonic() - started:.2f} s):\n{output()}"
            )
    finally:
        if not stopped and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


# --- staunch-gateway in front of every provider kind --------------------------

# The provider kinds the gateway speaks to upstreams, each pointed at one
# staunch-mock that serves every dialect: the route `via-KIND` sends to it.
PROVIDER_KINDS = ("openai", "anthropic", "gemini", "openai-responses", "openai-compatible", "mock")
# The route whose first target's context window only fits a short
# conversation: a longer one falls back to a provider of another dialect.
AGENT_ROUTE = "agent"
SMALL_WINDOW_MODEL = "small-window"
FALLBACK_MODEL = "mock-claude"
SMALL_WINDOW_TOKENS = 1500


@dataclass(frozen=True)
class DialectsGateway:
    """A staunch-gateway whose route `via-KIND` goes to a provider of each
    kind in `PROVIDER_KINDS` (all served by one staunch-mock), and whose
    route `agent` tries a Responses provider with a small context window,
    then an Anthropic one."""

    url: str
    key: str


def _dialects_config(directory, mock, key):
    scenario = os.path.join(directory, "mock.toml")
    with open(scenario, "w", encoding="utf-8") as f:
        f.write(f"seed = 11\n[context_windows]\n{_toml_string(SMALL_WINDOW_MODEL)} = {SMALL_WINDOW_TOKENS}\n")
    bases = {
        "openai": f"{mock}/v1",
        "anthropic": mock,
        "gemini": mock,
        "openai-responses": f"{mock}/v1",
        "openai-compatible": f"{mock}/v1",
    }
    lines = ["[server]", 'listen = "127.0.0.1:0"', 'log_format = "text"', ""]
    for kind in PROVIDER_KINDS:
        lines += [f"[providers.{_toml_string('p-' + kind)}]", f"kind = {_toml_string(kind)}"]
        # The embedded mock has no URL; it plays the same calm scenario.
        lines += [f"base_url = {_toml_string(bases[kind])}"] if kind in bases else ['scenario = "mock.toml"']
        lines.append("")
    for kind in PROVIDER_KINDS:
        lines += ["[[routes]]", f"model = {_toml_string('via-' + kind)}",
                  f"targets = [{{ provider = {_toml_string('p-' + kind)}, model = \"upstream-{kind}\" }}]", ""]
    lines += [
        "[[routes]]",
        f"model = {_toml_string(AGENT_ROUTE)}",
        "targets = [",
        f"  {{ provider = \"p-openai-responses\", model = {_toml_string(SMALL_WINDOW_MODEL)} }},",
        f"  {{ provider = \"p-anthropic\", model = {_toml_string(FALLBACK_MODEL)} }},",
        "]",
        "",
        "[[client_keys]]",
        'name = "sdk-dialects"',
        f'sha256 = "{hashlib.sha256(key.encode("utf-8")).hexdigest()}"',
    ]
    config = os.path.join(directory, "gateway.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return config, scenario


@pytest.fixture(scope="session")
def dialects_gateway():
    """staunch-gateway (see `DialectsGateway`) in front of its own
    staunch-mock, both stopped when the session ends."""
    directory = tempfile.mkdtemp(prefix="staunch-dialects-")
    try:
        # The mock first: its URL goes into the gateway's configuration.
        scenario = os.path.join(directory, "mock.toml")
        _dialects_config(directory, "http://127.0.0.1:1", SERVICE_KEY)
        mock = _serve(
            "staunch-mock",
            "STAUNCH_MOCK_BIN",
            "cargo build -p staunch-mock --bin staunch-mock",
            ["--port", "0", "--scenario", scenario],
            MOCK_LISTENING,
        )
        mock_base = next(mock)
        try:
            config, _ = _dialects_config(directory, mock_base, SERVICE_KEY)
            env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
            gateway = _serve(
                "staunch-gateway",
                "STAUNCH_GATEWAY_SERVICE_BIN",
                "cargo build -p staunch-gateway --bin staunch-gateway",
                ["--config", config, "--listen", "127.0.0.1:0"],
                SERVICE_LISTENING,
                env=env,
            )
            url = next(gateway)
            try:
                yield DialectsGateway(url=url, key=SERVICE_KEY)
            finally:
                gateway.close()
        finally:
            mock.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
