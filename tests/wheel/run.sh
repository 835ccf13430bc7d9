#!/usr/bin/env bash
# The gateway as a Python user gets it: build the staunch-gateway wheel,
# install it into a fresh virtualenv, and run the official SDKs against the
# installed binary.
#
#   bash tests/wheel/run.sh [pytest arguments...]
#
# Needs Python 3 (with venv and pip), a Rust toolchain, make and a C
# compiler (jemalloc), and access to PyPI. Steps:
#   1. maturin (from PyPI, into ${CARGO_TARGET_DIR:-target}/wheel/build-venv)
#      builds the wheel from crates/staunch-gateway/pyproject.toml, in the
#      release profile (`--release`) and in the usual target directory, so
#      it shares the artifacts of `cargo build --release`: the published
#      wheel is built with the pyproject's `dist` profile (whole-program
#      LTO), the same code at a higher optimisation that takes twice as
#      long to build, so this test checks the packaging and the binary's
#      behaviour, not that optimisation;
#   2. a new virtualenv (${CARGO_TARGET_DIR:-target}/wheel/venv, made afresh
#      every run) gets the wheel and nothing else from this project; the
#      script checks that `staunch-gateway` is now on its PATH;
#   3. the same virtualenv gets the official SDKs, pinned as the other SDK
#      tests pin them (tests/sdk/requirements.txt), plus LangChain's OpenAI
#      package and the OpenAI Agents SDK (tests/wheel/requirements.txt);
#   4. `staunch-gateway check` validates the configurations docs/agents.md
#      shows, and pytest runs tests/wheel: the installed binary with no
#      configuration, on a free loopback port, answers the OpenAI and
#      Anthropic SDKs' plain, streamed and tool calls, and every Python
#      snippet of docs/agents.md runs against it.
# The exit status is pytest's, whose summary line is printed last.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
work=$target/wheel
python=${PYTHON:-python3}
pip_quiet=(--quiet --disable-pip-version-check)
say() { printf 'wheel: %s\n' "$*"; }

# 1. The wheel. maturin comes from PyPI; its virtualenv is kept between
# runs (it is a build tool, not what is tested).
tools=$work/build-venv
if [[ ! -x $tools/bin/maturin ]]; then
  say "installing maturin into $tools"
  mkdir -p "$work"
  "$python" -m venv "$tools" || {
    say "'$python -m venv' failed; install Python's venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  }
  "$tools/bin/python" -m pip install "${pip_quiet[@]}" 'maturin>=1.9,<2'
fi
say "$("$tools/bin/maturin" --version)"
dist=$work/dist
rm -rf "$dist"
say "maturin build --release -m crates/staunch-gateway/Cargo.toml"
started=$SECONDS
CARGO_TARGET_DIR=$target "$tools/bin/maturin" build --release --quiet \
  -m crates/staunch-gateway/Cargo.toml -o "$dist"
wheels=("$dist"/staunch_gateway-*.whl)
if [[ ${#wheels[@]} -ne 1 || ! -f ${wheels[0]} ]]; then
  say "expected one staunch_gateway wheel in $dist, found: ${wheels[*]}" >&2
  exit 1
fi
wheel=${wheels[0]}
say "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) in $((SECONDS - started)) s"

# 2. A fresh virtualenv with the wheel alone.
venv=$work/venv
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install "${pip_quiet[@]}" "$wheel"
installed=$("$venv/bin/python" -m pip list --format=freeze --disable-pip-version-check --exclude pip --exclude setuptools)
if [[ $installed != staunch-gateway==* || $installed == *$'\n'* ]]; then
  say "the fresh virtualenv holds more than the wheel:" >&2
  printf '%s\n' "$installed" >&2
  exit 1
fi
say "installed $installed"
gateway=$(PATH=$venv/bin:$PATH command -v staunch-gateway)
if [[ $gateway != "$venv/bin/staunch-gateway" ]]; then
  say "staunch-gateway is not on the virtualenv's PATH (found: ${gateway:-nothing})" >&2
  exit 1
fi
say "$("$gateway" --version)"

# 3. The SDKs the tests drive, into the same virtualenv.
say "installing tests/sdk/requirements.txt and tests/wheel/requirements.txt"
"$venv/bin/python" -m pip install "${pip_quiet[@]}" \
  -r tests/sdk/requirements.txt -r tests/wheel/requirements.txt
"$venv/bin/python" - <<'EOF'
from importlib.metadata import version
names = ("openai", "anthropic", "langchain-openai", "openai-agents", "pytest")
print("wheel: " + ", ".join(f"{name} {version(name)}" for name in names))
EOF

# 4. The documented configurations, then the tests.
for file in docs/agents.toml docs/agents-dry-run.toml; do
  "$gateway" check "$file"
done
export PATH=$venv/bin:$PATH
export STAUNCH_INSTALLED_GATEWAY=$gateway
export PYTHONDONTWRITEBYTECODE=1
unset OPENAI_API_KEY ANTHROPIC_API_KEY OPENAI_BASE_URL ANTHROPIC_BASE_URL
exec "$venv/bin/python" -m pytest tests/wheel -p no:cacheprovider --rootdir tests/wheel -v "$@"
