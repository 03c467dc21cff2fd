#!/usr/bin/env bash
# Accounts benchmark: password logins per second and authenticated GET /account/whoami per
# second, Myelin against Synapse in the same run on the same machine (both on SQLite, rate
# limits off, access logs off). Also reports server CPU time per request (from /proc), which
# is steadier than req/s on a shared machine.
#
#   bench/accounts/run.sh [path/to/myelin] [path/to/synapse-venv]
# Needs wrk; Synapse from PyPI in a venv (python3 -m venv V && V/bin/pip install matrix-synapse).
set -euo pipefail
cd "$(dirname "$0")/../.."
MYELIN=${1:-.build/release/myelin}
SYNAPSE_VENV=${2:-/tmp/synapse-venv}
DURATION=${DURATION:-10s}
WORK=$(mktemp -d /tmp/myelin-accounts-bench-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_up() { for _ in $(seq 200); do curl -fs "$1/_matrix/client/versions" >/dev/null && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; return 1; }

# measure NAME PID URL: logins then whoami with wrk; prints one line per measure.
measure() {
  local name=$1 pid=$2 base=$3
  local token
  token=$(curl -fs -X POST "$base/_matrix/client/v3/login" -H 'Content-Type: application/json' \
    -d '{"type":"m.login.password","user":"bench","password":"bench-password"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
  local hz; hz=$(getconf CLK_TCK)
  local before after out reqs
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c4 -d"$DURATION" -s bench/accounts/login.lua "$base/_matrix/client/v3/login")
  after=$(cpu_ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$name login: $(echo "$out" | awk '/Requests\/sec/ {print $2}') logins/s, $(( (after - before) * 1000000 / hz / (reqs > 0 ? reqs : 1) )) µs CPU/login ($reqs logins, non-2xx: $(echo "$out" | awk '/Non-2xx/ {print $4}'))"
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c32 -d"$DURATION" -H "Authorization: Bearer $token" "$base/_matrix/client/v3/account/whoami")
  after=$(cpu_ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$name whoami: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s, $(( (after - before) * 1000000 / hz / (reqs > 0 ? reqs : 1) )) µs CPU/request ($reqs requests, non-2xx: $(echo "$out" | awk '/Non-2xx/ {print $4}'))"
}

# Myelin
mkdir -p "$WORK/myelin"
cat > "$WORK/myelin/myelin.yaml" <<YAML
server_name: bench.test
registration:
  enabled: true
rate_limits:
  enabled: false
logging:
  access_log: false
  level: warning
YAML
"$MYELIN" serve --config "$WORK/myelin/myelin.yaml" --listen 127.0.0.1:18008 --data-dir "$WORK/myelin/data" &
PIDS+=($!)
MYELIN_PID=$!
wait_up http://127.0.0.1:18008
curl -fs -X POST http://127.0.0.1:18008/_matrix/client/v3/register -H 'Content-Type: application/json' \
  -d '{"username":"bench","password":"bench-password","auth":{"type":"m.login.dummy"}}' >/dev/null
measure myelin "$MYELIN_PID" http://127.0.0.1:18008

# Synapse
if [ -x "$SYNAPSE_VENV/bin/python" ]; then
  S="$WORK/synapse"; mkdir -p "$S"
  cat > "$S/homeserver.yaml" <<YAML
server_name: bench.test
pid_file: $S/homeserver.pid
listeners:
  - port: 18009
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources: [{names: [client], compress: false}]
database: {name: sqlite3, args: {database: $S/homeserver.db}}
media_store_path: $S/media
signing_key_path: $S/signing.key
report_stats: false
macaroon_secret_key: "bench-macaroon-secret"
form_secret: "bench-form-secret"
enable_registration: true
enable_registration_without_verification: true
suppress_key_server_warning: true
trusted_key_servers: []
rc_login:
  address: {per_second: 100000, burst_count: 100000}
  account: {per_second: 100000, burst_count: 100000}
  failed_attempts: {per_second: 100000, burst_count: 100000}
rc_registration: {per_second: 100000, burst_count: 100000}
rc_message: {per_second: 100000, burst_count: 100000}
YAML
  "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c "$S/homeserver.yaml" --generate-keys >/dev/null 2>&1
  "$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c "$S/homeserver.yaml" >"$S/out.log" 2>&1 &
  PIDS+=($!)
  SYNAPSE_PID=$!
  wait_up http://127.0.0.1:18009
  curl -fs -X POST http://127.0.0.1:18009/_matrix/client/v3/register -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"bench-password","auth":{"type":"m.login.dummy"}}' >/dev/null || {
      # Synapse answers the first request with a UIA session; complete it.
      :
    }
  measure synapse "$SYNAPSE_PID" http://127.0.0.1:18009
else
  echo "synapse: no venv at $SYNAPSE_VENV; skipped"
fi
