#!/usr/bin/env bash
# The whole suite: builds, then runs every test with a throwaway PostgreSQL cluster so that
# the storage tests run on SQLite and on PostgreSQL; the cluster is stopped even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
swift build --build-tests
scripts/with-postgres.sh swift test --skip-build "$@"
