#!/usr/bin/env bash
# Every test of the workspace, on a fresh machine: the README's test command.
#
#   scripts/test.sh [--no-sdk] [--wheel] [extra arguments for cargo test...]
#
# A fresh machine has a Rust toolchain and Python, and nothing else this
# project needs. So this script first sets up what the tests use, then runs
# them all:
#   - make and a C compiler (the gateway binary builds jemalloc),
#   - redis-server (crates/staunch-redis's tests start their own on a free
#     loopback port; none is skipped for want of it),
#   - Python's venv module (the official SDKs' tests run in a virtualenv
#     that tests/sdk/run.sh makes under the target directory),
# installing what is missing through apt-get when it can (as root, or
# through sudo without a password), and stopping with a message that says
# what to install when it cannot. Then it runs `cargo test --workspace --all-features`
# and the official OpenAI and Anthropic SDKs against the mock and the
# gateway (tests/sdk/run.sh); with --wheel (CI passes it) it also builds the
# staunch-gateway Python wheel, installs it into a fresh virtualenv and runs
# the SDKs and docs/agents.md's snippets against the installed binary
# (tests/wheel/run.sh). It ends with one line of totals. Its exit status is
# non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

sdk=1
wheel=0
cargo_args=()
for arg in "$@"; do
  case $arg in
    --no-sdk) sdk=0 ;;
    --wheel) wheel=1 ;;
    -h | --help)
      sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) cargo_args+=("$arg") ;;
  esac
done

say() { printf 'test.sh: %s\n' "$*"; }

# apt-get install, as root or through a password-less sudo; a clear error
# (what to install, and why this script could not) otherwise.
apt_updated=0
install() {
  local why=$1
  shift
  local run=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      run=(sudo -n)
    else
      say "missing $* ($why), and this script can install it only as root or with a password-less sudo." >&2
      say "install it yourself (Debian/Ubuntu: sudo apt-get install $*) and run me again." >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    say "missing $* ($why), and there is no apt-get here: install it with your system's package manager and run me again." >&2
    exit 1
  fi
  say "installing $* ($why) through apt-get"
  if [[ $apt_updated -eq 0 ]]; then
    "${run[@]}" apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq "$@" >/dev/null
}

if ! command -v make >/dev/null || ! command -v cc >/dev/null; then
  install "the gateway binary builds jemalloc" make gcc
fi
if ! command -v redis-server >/dev/null; then
  install "the shared quota and breaker tests run a real Redis" redis-server
fi
say "$(redis-server --version)"
python=${PYTHON:-python3}
if [[ $sdk -eq 1 || $wheel -eq 1 ]]; then
  if ! command -v "$python" >/dev/null; then
    install "the official SDKs' tests are Python" python3 python3-venv
  elif ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    install "the official SDKs' tests run in a virtualenv" python3-venv
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

say "cargo test --workspace --all-features ${cargo_args[*]}"
set +e
cargo test --workspace --all-features "${cargo_args[@]}" 2>&1 | tee "$log"
cargo_status=${PIPESTATUS[0]}
set -e
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")

# Runs a pytest script (tests/sdk/run.sh, tests/wheel/run.sh) and adds its
# counts to the totals; a script that fails before pytest counts as one
# failure.
run_pytest_script() {
  local script=$1 status script_passed script_failed
  set +e
  bash "$script" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  # pytest's summary: "== 12 passed, 1 failed in 3.2s =="
  read -r script_passed script_failed < <(awk '
    /^=+ .* in [0-9.]+s/ {
      for (i = 1; i <= NF; i++) {
        if ($(i) ~ /^passed/) p = $(i - 1)
        if ($(i) ~ /^(failed|errors?)/) f += $(i - 1)
      }
    }
    END { print p + 0, f + 0 }' "$log")
  passed=$((passed + script_passed))
  failed=$((failed + script_failed))
  if [[ $status -ne 0 && $script_failed -eq 0 ]]; then
    failed=$((failed + 1))
  fi
  return "$status"
}

sdk_status=0
if [[ $sdk -eq 1 ]]; then
  say "official SDKs: tests/sdk/run.sh"
  run_pytest_script tests/sdk/run.sh || sdk_status=$?
fi
wheel_status=0
if [[ $wheel -eq 1 ]]; then
  say "the Python wheel, installed: tests/wheel/run.sh"
  run_pytest_script tests/wheel/run.sh || wheel_status=$?
fi

if [[ $cargo_status -ne 0 && $failed -eq 0 ]]; then
  # A build error runs no test at all: count it as a failure.
  failed=1
fi
echo "tests: $passed passed, $failed failed"
[[ $cargo_status -eq 0 && $sdk_status -eq 0 && $wheel_status -eq 0 ]]
