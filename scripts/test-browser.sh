#!/usr/bin/env bash
# The admin page in a real browser (tests/browser/): Debian's headless Chromium driven by
# selenium against the real myelin binary. Screenshots of each view are saved under
# $BROWSER_SCREENSHOTS (default .build/browser-screenshots/). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.build/browser-venv
if [ ! -x "$VENV/bin/pytest" ] || ! cmp -s tests/browser/requirements.txt "$VENV/requirements.installed"; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tests/browser/requirements.txt
  cp tests/browser/requirements.txt "$VENV/requirements.installed"
fi
export BROWSER_SCREENSHOTS="${BROWSER_SCREENSHOTS:-$PWD/.build/browser-screenshots}"
MYELIN_BIN="${MYELIN_BIN:-$(swift build --show-bin-path)/myelin}" \
  "$VENV/bin/pytest" -q -s -p no:cacheprovider tests/browser "$@"
echo "admin page screenshots: $BROWSER_SCREENSHOTS"
