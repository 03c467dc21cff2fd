#!/usr/bin/env bash
# The whole suite: builds; runs the interop tests (the real binary against independent
# implementations: Python clients, pyca/cryptography); then every Swift test beside a throwaway
# PostgreSQL cluster so that the storage tests run on SQLite and on PostgreSQL (the cluster is
# stopped even on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Swift suite runs dozens of servers at once in one process (each with its libuv loops,
# database connections and clients): about 8,000 descriptors at its peak on two cores, with
# PostgreSQL. Room to grow: 65,536, or the hard limit when it is lower.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 16384 ]; then
  echo "test.sh: only $(ulimit -n) file descriptors allowed (hard limit); the Swift suite may run out" >&2
fi
swift build --build-tests

VENV=.build/interop-venv
# (Re)installs when the venv is missing or the requirements changed since the last install.
if [ ! -x "$VENV/bin/pytest" ] || ! cmp -s tests/interop/requirements.txt "$VENV/requirements.installed"; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tests/interop/requirements.txt
  cp tests/interop/requirements.txt "$VENV/requirements.installed"
fi
# Every stage runs under a watchdog, far above its usual time (the whole suite takes a few
# minutes), so that a hang fails CI with a message instead of eating its time budget. The
# Swift tests get SIGQUIT first: the Swift runtime then prints every thread's backtrace.
# Output is line-buffered so that the log shows the last test that ran.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=yes,threads=all,interactive=no}"
watchdog() {
  local seconds=$1; shift
  local status=0
  timeout -s QUIT -k 60 "$seconds" stdbuf -oL -eL "$@" || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "test.sh: '$*' did not finish within $seconds s (watchdog)" >&2
  fi
  return "$status"
}

MYELIN_BIN="$(swift build --show-bin-path)/myelin" watchdog 900 "$VENV/bin/pytest" -q -p no:cacheprovider tests/interop

# The admin page in headless Chromium (tests/browser/, `make test-browser`). BROWSER=0 skips it.
if [ "${BROWSER:-1}" != 0 ]; then
  MYELIN_BIN="$(swift build --show-bin-path)/myelin" watchdog 600 scripts/test-browser.sh
fi

# Federation with a real Synapse (docs/federation.md): Synapse from PyPI on 127.0.0.2:8448 and
# Myelin on 127.0.0.3:8448, both over TLS with a throwaway CA, matrix-nio clients on each side.
# FEDERATION=0 skips it.
if [ "${FEDERATION:-1}" != 0 ]; then
  MYELIN_BIN="$(swift build --show-bin-path)/myelin" watchdog 900 scripts/test-federation.sh -q
fi

# The spec-driven fuzzer's short pass (docs/fuzzing.md): schemathesis over every client-server
# OpenAPI file with a few examples per operation (about a minute). FUZZ_SHORT=0 skips it;
# FUZZ_SHORT_EXAMPLES sets the examples per operation (`make fuzz` is the long pass).
if [ "${FUZZ_SHORT:-1}" != 0 ]; then
  tests/fuzz/venv.sh .build/fuzz-venv
  # A fixed seed: CI replays the same requests run after run (the long pass varies them).
  MYELIN_BIN="$(swift build --show-bin-path)/myelin" FUZZ_EXAMPLES="${FUZZ_SHORT_EXAMPLES:-5}" FUZZ_SEED="${FUZZ_SEED:-14}" \
    watchdog 600 .build/fuzz-venv/bin/python tests/fuzz/run_schemathesis.py
fi

# The load harness checks its own HTTP parsing against crafted bytes.
watchdog 120 "$(swift build --show-bin-path)/myelin-bench" selftest

# Swift Testing runs every test at once unless bounded: on two cores the whole suite at once
# (dozens of servers, each with its loops and database connections) took ~180 s and made the
# tests that wait on wall-clock timers flaky (a typing notice expiring, a block lapsing); six at
# a time took 133 s and 142 s at twelve (2026-12-07). SWIFT_TEST_WIDTH sets the bound.
watchdog 1200 scripts/with-postgres.sh swift test --skip-build \
  --experimental-maximum-parallelization-width "${SWIFT_TEST_WIDTH:-6}" "$@"
