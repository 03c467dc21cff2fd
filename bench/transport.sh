#!/usr/bin/env bash
# Transport benchmark: wrk against GET /_matrix/client/versions on Myelin and on the C libuv
# hello world (bench/reference/hello.c), in the same run. Headline: server CPU time per request
# (utime+stime of every thread, from /proc), which stays stable on a noisy shared machine.
# Usage: [ROUNDS=3] [SYNAPSE=1] [TLS=1] bench/transport.sh [duration-seconds] [connections...]
# With SYNAPSE=1, Synapse (bench/synapse.sh, SQLite) is measured on the same endpoint too.
# With TLS=1, Myelin also serves a TLS listener (same process, port 18093) measured with wrk
# over https (keep-alive), beside plain HTTP; and nginx, if installed, serves the same JSON
# over http and https as a reference (2 workers). The summary gives TLS/plain per server.
# With BLOCKS=N, Myelin starts with N blocked IP ranges in its database (IPv4 /24s and /32s and
# IPv6 /48s, none covering the client): the cost of the address filter consulted at accept.
# With CLOSE=1, every request is sent on a new connection (wrk -H 'Connection: close'), so the
# per-connection costs (accept, the filter, close) are in the CPU per request.
# MYELIN_HANDLERS=workers runs Myelin's handlers on the worker pool instead of the loops.
# Each round measures the C server then Myelin at each connection count; the summary gives
# the median of the rounds, since this machine is shared and single runs swing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
shift || true
CONNECTIONS=("${@:-64 256}")
[ ${#CONNECTIONS[@]} -eq 1 ] && read -r -a CONNECTIONS <<< "${CONNECTIONS[0]}"
command -v wrk >/dev/null || scripts/install-deps.sh wrk
WORK=$(mktemp -d /tmp/myelin-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A given binary (MYELIN_BIN) is measured as it is: no build.
[ -n "${MYELIN_BIN:-}" ] || swift build -c release --product myelin >/dev/null
# MYELIN_BIN runs a given binary (e.g. an earlier build); MYELIN_ACCESS_LOG=true measures with
# the access log on (the default configuration's setting; its lines go to a file on disk).
MYELIN=${MYELIN_BIN:-$(swift build -c release --show-bin-path)/myelin}
cc -O2 -o "$WORK/hello" bench/reference/hello.c /usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c \
   /usr/share/llhttp/http.c -I/usr/share/include/llhttp -luv
cat > "$WORK/myelin.yaml" <<YAML
logging:
  access_log: ${MYELIN_ACCESS_LOG:-false}
transport:
  loops: ${MYELIN_LOOPS:-2}
  handlers: ${MYELIN_HANDLERS:-loops}
YAML
LISTEN=(--listen 127.0.0.1:18091)
NGINX_PIDS=""
if [ "${TLS:-0}" = 1 ]; then
  # A self-signed P-256 certificate (wrk does not verify); the same for Myelin and nginx.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  cat >> "$WORK/myelin.yaml" <<YAML
listeners:
  - {host: 127.0.0.1, port: 18091}
  - {host: 127.0.0.1, port: 18093, tls: {certificate: $WORK/cert.pem, private_key: $WORK/key.pem}}
YAML
  LISTEN=()
  if command -v nginx >/dev/null; then
    mkdir -p "$WORK/nginx"
    cat > "$WORK/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets off;
  server {
    listen 127.0.0.1:18094 ssl; listen 127.0.0.1:18095;
    location / { default_type application/json; return 200 '{"versions":["r0.0.1","r0.1.0","r0.2.0","r0.3.0","r0.4.0","r0.5.0","r0.6.0","r0.6.1","v1.1","v1.2","v1.3","v1.4","v1.5","v1.6","v1.7","v1.8","v1.9","v1.10","v1.11"]}'; }
  }
}
CONF
    nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" & NGINX=$!
    for _ in $(seq 50); do curl -sf http://127.0.0.1:18095/ >/dev/null && break; sleep 0.1; done
    NGINX_PIDS=$(echo "$NGINX" $(pgrep -P "$NGINX"))
  else
    echo "# nginx is not installed: no TLS reference (apt-get install -y nginx-light)"
  fi
fi

TICKS=$(getconf CLK_TCK)
# CPU ticks of one or more processes (nginx: its master and workers).
cpu_ticks() { local p t=0; for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

run() {  # name pid(s) port connections [scheme]
  local name=$1 pid=$2 port=$3 c=$4 scheme=${5:-http}
  local url="$scheme://127.0.0.1:$port/_matrix/client/versions"
  local close=()
  [ "${CLOSE:-0}" = 1 ] && close=(-H "Connection: close")
  wrk -t2 -c"$c" -d2s "${close[@]}" "$url" >/dev/null 2>&1  # warm-up
  local before after out requests errors rps
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c"$c" -d"${DURATION}s" "${close[@]}" "$url")
  after=$(cpu_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  errors=$(echo "$out" | awk '/Socket errors|Non-2xx/ {print}' | tr '\n' ' ')
  local cpu_us
  cpu_us=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/${pid##* }/status")
  printf "%-10s c=%-4s requests=%-9s req/s=%-10s cpu_us/req=%-7s peak_rss_kib=%-7s errors=%s\n" \
    "$name" "$c" "$requests" "$rps" "$cpu_us" "$rss" "${errors:-none}"
  echo "$name $c $cpu_us" >> "$WORK/results"
}

"$WORK/hello" 18090 & HELLO=$!
SYNAPSE_PID=""
if [ "${SYNAPSE:-0}" = 1 ]; then
  bench/synapse.sh install
  SYNAPSE_PID=$(bench/synapse.sh start sqlite "$WORK/synapse" 18092 | sed -n 's/.*SYNAPSE_PID=\([0-9]*\).*/\1/p')
  trap 'bench/synapse.sh stop "$WORK/synapse" >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
fi
if [ "${BLOCKS:-0}" -gt 0 ]; then
  # A first start creates the database; the blocks are written while it is stopped, and the
  # second start loads them (as after a restart).
  "$MYELIN" serve --config "$WORK/myelin.yaml" "${LISTEN[@]}" --data-dir "$WORK/data" 2>>"$WORK/myelin.log" & FIRST=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18091/health >/dev/null && break; sleep 0.1; done
  kill -TERM "$FIRST"; wait "$FIRST" 2>/dev/null || true
  python3 - "$WORK/data/myelin.db" "$BLOCKS" <<'PY'
import random, sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20)
ranges = set()
while len(ranges) < n:
    kind = rng.random()
    if kind < 0.45:
        a = rng.choice([i for i in range(1, 224) if i != 127])
        ranges.add(f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.0/24")
    elif kind < 0.9:
        a = rng.choice([i for i in range(1, 224) if i != 127])
        ranges.add(f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}/32")
    else:
        ranges.add(f"2001:db8:{rng.randrange(65536):x}::/48")
con = sqlite3.connect(db)
con.executemany("INSERT INTO ip_blocks (ip_range, reason, blocked_by, blocked_ts, expires_ts) VALUES (?, 'bench', NULL, 0, NULL)",
                [(r,) for r in ranges])
con.commit()
PY
fi
${MYELIN_PRELOAD:+env LD_PRELOAD=$MYELIN_PRELOAD} "$MYELIN" serve --config "$WORK/myelin.yaml" "${LISTEN[@]}" --data-dir "$WORK/data" 2>"$WORK/myelin.log" & MYELIN_PID=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18091/health >/dev/null && break; sleep 0.1; done
if [ "${BLOCKS:-0}" -gt 0 ]; then grep -ho "[0-9]* IP block(s) in force.*" "$WORK/myelin.log" | tail -1 | sed 's/^/# /'; fi

ROUNDS=${ROUNDS:-3}
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), wrk -t2 -d${DURATION}s, $ROUNDS rounds, GET /_matrix/client/versions, blocks ${BLOCKS:-0}, close ${CLOSE:-0}"
for round in $(seq "$ROUNDS"); do
  for c in "${CONNECTIONS[@]}"; do
    run "c-libuv" "$HELLO" 18090 "$c"
    run "myelin" "$MYELIN_PID" 18091 "$c"
    [ -n "$SYNAPSE_PID" ] && run "synapse" "$SYNAPSE_PID" 18092 "$c"
    if [ "${TLS:-0}" = 1 ]; then
      run "myelin-tls" "$MYELIN_PID" 18093 "$c" https
      if [ -n "$NGINX_PIDS" ]; then
        run "nginx" "$NGINX_PIDS" 18095 "$c"
        run "nginx-tls" "$NGINX_PIDS" 18094 "$c" https
      fi
    fi
  done
done
# Median CPU per request of each server at each connection count, and the ratio of medians.
sort -k1,1 -k2,2n -k3,3g "$WORK/results" | awk '
  { key = $1 " " $2; v[key, ++n[key]] = $3 }
  END {
    for (key in n) { m = n[key]; med[key] = (m % 2) ? v[key, (m + 1) / 2] : (v[key, m / 2] + v[key, m / 2 + 1]) / 2 }
    for (key in med) { split(key, p, " "); if (p[1] == "myelin") {
      printf "c=%s: median cpu_us/req myelin %.2f, c-libuv %.2f, ratio %.2fx", p[2], med[key], med["c-libuv " p[2]], med[key] / med["c-libuv " p[2]]
      s = "synapse " p[2]; if (s in med) printf "; synapse %.1f (synapse/myelin %.1fx)", med[s], med[s] / med[key]
      s = "myelin-tls " p[2]; if (s in med) printf "; myelin-tls %.2f (tls/plain %.2fx)", med[s], med[s] / med[key]
      s = "nginx-tls " p[2]; if (s in med) printf "; nginx %.2f, nginx-tls %.2f (tls/plain %.2fx)", med["nginx " p[2]], med[s], med[s] / med["nginx " p[2]]
      printf "\n" } }
  }' | sort -t= -k2n
kill -TERM "$MYELIN_PID"; wait "$MYELIN_PID" 2>/dev/null || true
