#!/usr/bin/env bash
# The official OpenAI, Anthropic and google-genai Python SDKs (and the OpenAI
# Agents SDK) against staunch-mock and the gateway.
#
#   bash tests/sdk/run.sh [pytest arguments...]
#
# Needs Python 3 (with venv and pip), a Rust toolchain, and access to PyPI
# and crates.io the first time. Installs the SDKs into a virtualenv at
# ${CARGO_TARGET_DIR:-target}/sdk-venv (reused, and reinstalled when
# tests/sdk/requirements.txt changes), builds the staunch-mock binary, the
# axum_gateway example and the staunch-gateway binary, and runs pytest on
# tests/sdk. The tests talk to the mock, the gateway example (which, without
# provider keys, serves its embedded mock) and staunch-gateway (configured
# with its embedded mock and a client key) on 127.0.0.1 only.
# The exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$root/$target ;; esac
venv=$target/sdk-venv
requirements=$root/tests/sdk/requirements.txt
python=${PYTHON:-python3}

# The virtualenv, installed once per version of the requirements.
stamp=$venv/.requirements.sha256
wanted=$("$python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$requirements")
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
  echo "sdk: installing tests/sdk/requirements.txt into $venv"
  if [[ ! -x $venv/bin/python ]]; then
    mkdir -p "$target"
    "$python" -m venv "$venv" || {
      echo "sdk: '$python -m venv' failed; install Python's venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" >"$stamp"
fi
"$venv/bin/python" - <<'EOF'
import anthropic, openai, pydantic, pytest
import agents, google.genai
print(f"sdk: openai {openai.__version__}, anthropic {anthropic.__version__}, google-genai {google.genai.__version__}, "
      f"pydantic {pydantic.VERSION}, pytest {pytest.__version__}")
EOF

# The binaries, built in one cargo call; cargo reports where it put them:
# the mock, the gateway example (which serves its embedded mock when it has
# no provider keys), and the staunch-gateway service.
echo "sdk: cargo build -p staunch-mock --bin staunch-mock -p staunch --example axum_gateway" \
  "-p staunch-gateway --bin staunch-gateway"
executables=$(
  cargo build -p staunch-mock --bin staunch-mock -p staunch --example axum_gateway \
    -p staunch-gateway --bin staunch-gateway \
    --message-format=json-render-diagnostics |
    "$venv/bin/python" -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        name = message["target"]["name"]
        if name in ("staunch-mock", "axum_gateway", "staunch-gateway"):
            print(name, message["executable"])
'
)
STAUNCH_MOCK_BIN= STAUNCH_GATEWAY_BIN= STAUNCH_GATEWAY_SERVICE_BIN=
while IFS= read -r line; do
  case $line in
    "staunch-mock "*) STAUNCH_MOCK_BIN=${line#* } ;;
    "axum_gateway "*) STAUNCH_GATEWAY_BIN=${line#* } ;;
    "staunch-gateway "*) STAUNCH_GATEWAY_SERVICE_BIN=${line#* } ;;
  esac
done <<<"$executables"
if [[ ! -x $STAUNCH_MOCK_BIN ]]; then
  echo "sdk: cargo did not report the staunch-mock binary" >&2
  exit 1
fi
if [[ ! -x $STAUNCH_GATEWAY_BIN ]]; then
  echo "sdk: cargo did not report the axum_gateway example binary" >&2
  exit 1
fi
if [[ ! -x $STAUNCH_GATEWAY_SERVICE_BIN ]]; then
  echo "sdk: cargo did not report the staunch-gateway binary" >&2
  exit 1
fi
export STAUNCH_MOCK_BIN STAUNCH_GATEWAY_BIN STAUNCH_GATEWAY_SERVICE_BIN
unset STAUNCH_MOCK_URL STAUNCH_GATEWAY_URL

# pytest's summary line is the last line of output; its status is ours.
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest tests/sdk -p no:cacheprovider --rootdir tests/sdk -v "$@"
