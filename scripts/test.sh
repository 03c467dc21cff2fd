#!/usr/bin/env bash
# The whole suite: builds; runs the interop tests (the real binary against independent
# implementations: Python clients, pyca/cryptography); then every Swift test beside a throwaway
# PostgreSQL cluster so that the storage tests run on SQLite and on PostgreSQL (the cluster is
# stopped even on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
swift build --build-tests

VENV=.build/interop-venv
# (Re)installs when the venv is missing or the requirements changed since the last install.
if [ ! -x "$VENV/bin/pytest" ] || ! cmp -s tests/interop/requirements.txt "$VENV/requirements.installed"; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tests/interop/requirements.txt
  cp tests/interop/requirements.txt "$VENV/requirements.installed"
fi
MYELIN_BIN="$(swift build --show-bin-path)/myelin" "$VENV/bin/pytest" -q -p no:cacheprovider tests/interop

# The load harness checks its own HTTP parsing against crafted bytes.
"$(swift build --show-bin-path)/myelin-bench" selftest

scripts/with-postgres.sh swift test --skip-build "$@"
