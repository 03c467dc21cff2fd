#!/usr/bin/env bash
# The federation interop test (docs/federation.md): Synapse from PyPI on 127.0.0.2:8448 and the
# peer on 127.0.0.3:8448, both over TLS with a throwaway CA, matrix-nio clients on each side.
#   scripts/test-federation.sh [pytest args]            # the peer is Myelin (debug build)
#   FEDERATION_PEER=synapse scripts/test-federation.sh  # Synapse to Synapse: proves the harness
# FEDERATION_KEEP=1 keeps the servers' directories (configs, logs) for a post-mortem.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${FEDERATION_PEER:-myelin}" = myelin ] && [ -z "${MYELIN_BIN:-}" ]; then
  swift build --product myelin
  export MYELIN_BIN="$(swift build --show-bin-path)/myelin"
fi

VENV=.build/federation-venv
REQ=tests/federation/requirements.txt
# (Re)installs when the venv is missing or the requirements changed since the last install.
if [ ! -x "$VENV/bin/pytest" ] || ! cmp -s "$REQ" "$VENV/requirements.installed"; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$REQ"
  cp "$REQ" "$VENV/requirements.installed"
fi

# A watchdog far above the usual time (under a minute Synapse to Synapse), so that a hang fails
# with a message instead of eating CI's budget.
status=0
timeout -k 30 900 stdbuf -oL -eL "$VENV/bin/pytest" -v -p no:cacheprovider tests/federation "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "test-federation.sh: pytest did not finish within 900 s (watchdog)" >&2
fi
exit "$status"
