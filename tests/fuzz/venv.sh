#!/usr/bin/env bash
# (Re)creates the fuzzer's venv (default .build/fuzz-venv) when it is missing or
# tests/fuzz/requirements.txt changed since its last install.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-.build/fuzz-venv}
if [ ! -x "$VENV/bin/python" ] || ! cmp -s tests/fuzz/requirements.txt "$VENV/requirements.installed"; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tests/fuzz/requirements.txt
  cp tests/fuzz/requirements.txt "$VENV/requirements.installed"
fi
