"""docs/agents.md as a reader follows it: its configurations are the files
beside it, word for word (tests/wheel/run.sh runs `staunch-gateway check`
on both), and each of its Python snippets runs, as written but for the
port, against the installed gateway on the dry-run configuration.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

PAGE = ROOT / "docs" / "agents.md"
DOCUMENTED_URL = "http://127.0.0.1:8080"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language):
    return [body for lang, body in FENCE.findall(PAGE.read_text(encoding="utf-8")) if lang == language]


SNIPPETS = {
    # Named after the package each snippet points at the gateway.
    next(line.split()[1].split(".")[0] for line in code.splitlines() if line.startswith("from ")): code
    for code in blocks("python")
}


@pytest.mark.parametrize("name", ["agents.toml", "agents-dry-run.toml"])
def test_the_page_shows_each_configuration_file_verbatim(name):
    file = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert file in blocks("toml"), f"docs/agents.md does not show docs/{name} as it is"


def test_the_page_has_a_snippet_for_each_client():
    assert sorted(SNIPPETS) == ["agents", "anthropic", "langchain_openai", "openai"], sorted(SNIPPETS)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_snippet_runs_against_the_installed_gateway(name, dry_run_url):
    code = SNIPPETS[name]
    assert DOCUMENTED_URL in code, code
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    done = subprocess.run(
        [sys.executable, "-c", code.replace(DOCUMENTED_URL, dry_run_url)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, f"{name} snippet failed:\n{done.stdout}\n{done.stderr}"
    answer = done.stdout.strip()
    if name == "agents":
        # The agent called its tool, and the mock's last answer carries the
        # tool's result.
        assert "18 C and windy in " in answer, answer
    else:
        # The embedded mock's answer to the snippet's last message.
        assert answer.startswith("mock answer to: Say hello to the gateway."), answer
