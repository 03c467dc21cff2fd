#!/usr/bin/env bash
# Accounts benchmark: password logins per second and authenticated GET /account/whoami requests
# per second, on Myelin and on Synapse (bench/synapse.sh, SQLite) in the same run, with each
# server's CPU time per request from /proc (the headline on this shared machine).
# Usage: bench/accounts.sh [duration-seconds]
# Password hashing: Myelin uses Argon2id with libsodium's "interactive" limits (t=2, m=64 MiB);
# the bench Synapse uses bcrypt with 4 rounds (bench/synapse.sh; Synapse's default is 12), so
# the login ratio flatters Synapse.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
command -v wrk >/dev/null || scripts/install-deps.sh wrk
WORK=$(mktemp -d /tmp/myelin-accounts-bench.XXXXXX)
trap 'bench/synapse.sh stop "$WORK/synapse" >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

swift build -c release --product myelin >/dev/null
MYELIN=$(swift build -c release --show-bin-path)/myelin
cat > "$WORK/myelin.yaml" <<YAML
server_name: localhost
registration:
  enabled: true
rate_limits:
  enabled: false
logging:
  access_log: false
YAML
"$MYELIN" serve --config "$WORK/myelin.yaml" --listen 127.0.0.1:18191 --data-dir "$WORK/data" 2>"$WORK/myelin.log" & MYELIN_PID=$!
bench/synapse.sh install
SYNAPSE_PID=$(bench/synapse.sh start sqlite "$WORK/synapse" 18192 | sed -n 's/.*SYNAPSE_PID=\([0-9]*\).*/\1/p')
for _ in $(seq 100); do curl -sf http://127.0.0.1:18191/health >/dev/null && break; sleep 0.1; done

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Registers bench-user with the dummy flow; prints the access token.
register() {
  local base=$1 session
  session=$(curl -s -X POST "$base/_matrix/client/v3/register" -H 'Content-Type: application/json' \
    -d '{"username":"benchuser","password":"bench-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin).get("session",""))')
  curl -s -X POST "$base/_matrix/client/v3/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"benchuser\",\"password\":\"bench-password-1\",\"auth\":{\"type\":\"m.login.dummy\",\"session\":\"$session\"}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

cat > "$WORK/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"benchuser"},"password":"bench-password-1"}'
LUA

measure() {  # name pid connections wrk-args...
  local name=$1 pid=$2 c=$3; shift 3
  local before after out requests rps non2xx
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c"$c" -d"${DURATION}s" "$@")
  after=$(cpu_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  printf "%-22s c=%-3s requests=%-8s req/s=%-9s cpu_us/req=%-9s non2xx=%s\n" "$name" "$c" "$requests" "$rps" \
    "$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')" "${non2xx:-0}"
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), wrk -t2 -d${DURATION}s"
for server in myelin synapse; do
  if [ $server = myelin ]; then base=http://127.0.0.1:18191; pid=$MYELIN_PID; else base=http://127.0.0.1:18192; pid=$SYNAPSE_PID; fi
  token=$(register "$base")
  measure "$server whoami" "$pid" 64 -H "Authorization: Bearer $token" "$base/_matrix/client/v3/account/whoami"
  measure "$server login" "$pid" 4 -s "$WORK/login.lua" "$base/_matrix/client/v3/login"
done
kill -TERM "$MYELIN_PID"; wait "$MYELIN_PID" 2>/dev/null || true
