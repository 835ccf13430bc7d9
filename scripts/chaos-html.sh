#!/usr/bin/env bash
# The chaos demo's page, drawn and checked in a real browser.
#
#   scripts/chaos-html.sh [OUT_DIR] [chaos flags...]
#
# Runs `cargo run --release --example chaos -- --html OUT_DIR/chaos.html`
# (any other arguments go to the demo: --scenario storm, --requests 120, …),
# then opens the page in Debian's headless Chromium with the network cut
# off (every request goes to a proxy on 127.0.0.1:9, where nothing
# listens, so a page that fetched anything would show it broken) and
# screenshots it to OUT_DIR/chaos.png at 1400x2200. It checks that the
# screenshot is a PNG of that size and not blank (more than 20 distinct
# colours), and prints where both files are.
#
# OUT_DIR defaults to ${CARGO_TARGET_DIR:-target}/chaos-html. Chromium is
# installed through apt-get when missing (as root, or through sudo without
# a password); otherwise the script says what to install and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${CARGO_TARGET_DIR:-target}/chaos-html
if [[ $# -gt 0 && $1 != -* ]]; then
  out=$1
  shift
fi
case ${1:-} in
  -h | --help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
width=1400
height=2200

say() { printf 'chaos-html.sh: %s\n' "$*"; }

# The browser: Debian's chromium package, installed when missing.
browser=""
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null; then
    browser=$name
    break
  fi
done
if [[ -z $browser ]]; then
  run=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      run=(sudo -n)
    else
      say "missing chromium (the page is checked in a real headless browser), and this script can install it only as root or with a password-less sudo." >&2
      say "install it yourself (Debian/Ubuntu: sudo apt-get install chromium) and run me again." >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    say "missing chromium, and there is no apt-get here: install Chromium with your system's package manager and run me again." >&2
    exit 1
  fi
  say "installing chromium (the page is checked in a real headless browser) through apt-get"
  "${run[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq chromium >/dev/null
  browser=chromium
fi
say "$("$browser" --version 2>/dev/null || echo "$browser")"

mkdir -p "$out"
out=$(cd "$out" && pwd)
page=$out/chaos.html
shot=$out/chaos.png
rm -f "$page" "$shot"

say "cargo run --release --example chaos -- --html $page $*"
cargo run --release --example chaos -- --html "$page" "$@"
[[ -s $page ]] || {
  say "the demo wrote no page at $page" >&2
  exit 1
}

# A profile of its own, so no other Chromium's state is used or touched.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
say "screenshot: $browser --headless, network cut off, ${width}x${height}"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --no-first-run --disable-extensions \
  --proxy-server=127.0.0.1:9 --proxy-bypass-list='<-loopback>' \
  --screenshot="$shot" --window-size="$width,$height" \
  "file://$page" 2>"$out/chromium.log" || {
  say "chromium failed; its log:" >&2
  cat "$out/chromium.log" >&2
  exit 1
}

# The screenshot: a PNG of the asked size, and not blank.
python3 - "$shot" "$width" "$height" <<'PY'
import struct
import sys
import zlib

path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    data = open(path, "rb").read()
except OSError as e:
    sys.exit(f"chaos-html.sh: no screenshot: {e}")
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"chaos-html.sh: {path} is not a PNG")
chunks, at = [], 8
while at + 8 <= len(data):
    size, kind = struct.unpack(">I4s", data[at : at + 8])
    chunks.append((kind, data[at + 8 : at + 8 + size]))
    at += 12 + size
kind, ihdr = chunks[0]
if kind != b"IHDR":
    sys.exit(f"chaos-html.sh: {path} does not start with IHDR")
w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
if (w, h) != (width, height):
    sys.exit(f"chaos-html.sh: the screenshot is {w}x{h}, not {width}x{height}")
channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
if depth != 8 or channels is None or interlace != 0:
    sys.exit(f"chaos-html.sh: unexpected PNG format (bit depth {depth}, colour type {colour}, interlace {interlace})")
raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
stride = w * channels
if len(raw) != h * (stride + 1):
    sys.exit("chaos-html.sh: the image data has the wrong length")
# Undo the scanline filters, then count the colours.
colours, previous = set(), bytearray(stride)
for row in range(h):
    start = row * (stride + 1)
    kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
    for i in range(stride):
        left = line[i - channels] if i >= channels else 0
        up = previous[i]
        corner = previous[i - channels] if i >= channels else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 2:
            line[i] = (line[i] + up) & 255
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 255
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
    for i in range(0, stride, channels):
        colours.add(bytes(line[i : i + channels]))
    previous = line
if len(colours) <= 20:
    sys.exit(f"chaos-html.sh: the screenshot looks blank ({len(colours)} distinct colours)")
print(f"chaos-html.sh: screenshot ok: a {w}x{h} PNG with {len(colours)} distinct colours")
PY

say "page: $page"
say "screenshot: $shot"
