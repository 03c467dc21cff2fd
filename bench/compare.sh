#!/usr/bin/env bash
# Side by side: the same myelin-bench scenario against Myelin and Synapse (SQLite and/or
# PostgreSQL) on this machine, loopback only, one server at a time; then the ratios.
#
#   bench/compare.sh [--db sqlite|postgres|both] [--only myelin|synapse] SCENARIO [harness options]
#   bench/compare.sh fanout --users 1000 --rooms 10 --members 100 --senders 10 --rate 1 --duration 60
#   bench/compare.sh idle --users 5000 --duration 60
#
# Servers, databases and logs live in $BENCH_DIR (default /tmp/myelin-bench), never in the
# repository. Results: one JSON line per server in $BENCH_DIR/compare-<time>.jsonl.
# A server that does not serve an endpoint yet is reported by name (e.g.
# "POST /_matrix/client/v3/register → 404 M_UNRECOGNIZED: server does not serve registration
# yet"); the comparison goes on with the other servers.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/myelin-bench}
DB=sqlite
ONLY=""
while [ $# -gt 0 ]; do
    case $1 in
        --db) DB=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
SCENARIO=${1:-fanout}; shift || true
if [ $# -eq 0 ]; then
    case $SCENARIO in
        fanout) set -- --users 200 --rooms 2 --members 100 --senders 4 --rate 1 --duration 30 ;;
        idle) set -- --users 1000 --duration 30 ;;
        send) set -- --senders 8 --rooms 1 --rate 0 --duration 30 ;;
        initial) set -- --rooms 50 --events 20 ;;
        mixed) set -- --users 200 --rooms 2 --members 100 --senders 20 --rate 1 --duration 30 ;;
    esac
fi
MYELIN_PORT=${MYELIN_PORT:-18010}
SYNAPSE_SQLITE_PORT=${SYNAPSE_SQLITE_PORT:-18008}
SYNAPSE_PG_PORT=${SYNAPSE_PG_PORT:-18009}

# Thousands of long-polls need thousands of sockets, in the harness and in each server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
echo "file descriptor limit: $(ulimit -n)"
mkdir -p "$BENCH_DIR"
OUT="$BENCH_DIR/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$OUT"

# MYELIN_BENCH_BIN runs a given harness binary (a copy) instead of building one.
if [ -n "${MYELIN_BENCH_BIN:-}" ]; then
    BENCH=$MYELIN_BENCH_BIN
else
    echo "== building myelin-bench (release)"
    swift build -c release --product myelin-bench 2>&1 | tail -1 || exit 1
    BENCH="$ROOT/.build/release/myelin-bench"
fi
"$BENCH" selftest >/dev/null || { echo "myelin-bench selftest failed"; exit 1; }

PIDS_TO_STOP=()
cleanup() {
    for p in "${PIDS_TO_STOP[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    [ -d "$BENCH_DIR/synapse-sqlite" ] && bench/synapse.sh stop "$BENCH_DIR/synapse-sqlite"
    [ -d "$BENCH_DIR/synapse-postgres" ] && bench/synapse.sh stop "$BENCH_DIR/synapse-postgres"
}
trap cleanup EXIT

declare -A STATUS
LABELS=()

# run_scenario LABEL URL PID...
run_scenario() {
    local label=$1 url=$2; shift 2
    local pidargs=() p
    for p in "$@"; do pidargs+=(--server-pid "$p"); done
    echo "== $label: probing $url"
    "$BENCH" probe --url "$url"
    local probe=$?
    if [ $probe -eq 2 ]; then STATUS[$label]="unreachable"; return; fi
    echo "== $label: $SCENARIO $*"
    local tmp="$BENCH_DIR/$label.jsonl"
    : >"$tmp"
    "$BENCH" "$SCENARIO" --url "$url" "${pidargs[@]}" --json "$tmp" "${ARGS[@]}" 2>&1 | sed -u "s/^/[$label] /"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ] || [ ! -s "$tmp" ]; then
        STATUS[$label]="failed (exit $rc; see the [$label] lines above for the endpoint)"
    else
        STATUS[$label]="ok"
        sed "s/^{/{\"label\":\"$label\",/" "$tmp" >>"$OUT"
    fi
}
ARGS=("$@")

# --- Myelin -------------------------------------------------------------------------------
if [ "$ONLY" != synapse ]; then
    LABELS+=(myelin)
    MDIR="$BENCH_DIR/myelin-data"
    rm -rf "$MDIR"; mkdir -p "$MDIR"
    echo "== starting Myelin: swift run -c release myelin serve --config $BENCH_DIR/myelin.yaml --listen 127.0.0.1:$MYELIN_PORT --data-dir $MDIR"
    # Equivalent to the Synapse configuration: open registration, rate limits off. The access
    # log stays on (the default) unless MYELIN_ACCESS_LOG=false.
    cat >"$BENCH_DIR/myelin.yaml" <<YAML
server_name: localhost
registration:
  enabled: true
rate_limits:
  enabled: false
logging:
  access_log: ${MYELIN_ACCESS_LOG:-true}
${MYELIN_CONFIG_EXTRA:-}
YAML
    # MYELIN_BIN runs a given binary (e.g. a copy, so that editing sources meanwhile does
    # not trigger a rebuild under the benchmark).
    if [ -n "${MYELIN_BIN:-}" ]; then
        "$MYELIN_BIN" serve --config "$BENCH_DIR/myelin.yaml" --listen "127.0.0.1:$MYELIN_PORT" --data-dir "$MDIR" \
            >"$BENCH_DIR/myelin.log" 2>&1 &
    else
        swift run -c release myelin serve --config "$BENCH_DIR/myelin.yaml" --listen "127.0.0.1:$MYELIN_PORT" --data-dir "$MDIR" \
            >"$BENCH_DIR/myelin.log" 2>&1 &
    fi
    MPID=$!   # `swift run` execs the server, so this is the server's pid once it runs
    PIDS_TO_STOP+=("$MPID")
    up=""
    for _ in $(seq 1 600); do   # the first run builds the server: allow 5 minutes
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MYELIN_PORT/_matrix/client/versions" 2>/dev/null)
        if [ -n "$code" ] && [ "$code" != 000 ]; then up=1; break; fi
        if ! kill -0 "$MPID" 2>/dev/null; then break; fi
        sleep 0.5
    done
    if [ -z "$up" ]; then
        if kill -0 "$MPID" 2>/dev/null; then
            why="still running but not answering HTTP after 5 minutes"
        else
            wait "$MPID" 2>/dev/null; why="the process exited with status $?"
        fi
        echo "Myelin did not listen on 127.0.0.1:$MYELIN_PORT: $why."
        echo "Its last output ($BENCH_DIR/myelin.log):"; tail -5 "$BENCH_DIR/myelin.log" | sed 's/^/    /'
        STATUS[myelin]="not listening: \`myelin serve --listen\` did not start a listener"
    else
        # MYELIN_EXTRA_PIDS: more process trees to measure with the server (its PostgreSQL).
        # shellcheck disable=SC2086
        run_scenario myelin "http://127.0.0.1:$MYELIN_PORT" "$MPID" ${MYELIN_EXTRA_PIDS:-}
    fi
    kill "$MPID" 2>/dev/null; wait "$MPID" 2>/dev/null
fi

# --- Synapse ------------------------------------------------------------------------------
if [ "$ONLY" != myelin ]; then
    bench/synapse.sh install || { echo "could not install Synapse from PyPI"; exit 1; }
    for db in sqlite postgres; do
        [ "$DB" = both ] || [ "$DB" = "$db" ] || continue
        label="synapse-$db"
        LABELS+=("$label")
        port=$SYNAPSE_SQLITE_PORT; [ $db = postgres ] && port=$SYNAPSE_PG_PORT
        echo "== starting Synapse ($db) on 127.0.0.1:$port"
        info=$(bench/synapse.sh start "$db" "$BENCH_DIR/$label" "$port") || { STATUS[$label]="did not start"; continue; }
        spid=$(echo "$info" | sed -n 's/^SYNAPSE_PID=//p')
        pgpid=$(echo "$info" | sed -n 's/^POSTGRES_PID=//p')
        # shellcheck disable=SC2086
        run_scenario "$label" "http://127.0.0.1:$port" $spid $pgpid
        bench/synapse.sh stop "$BENCH_DIR/$label"
    done
fi

# --- Summary ------------------------------------------------------------------------------
echo
echo "== $SCENARIO ${ARGS[*]}"
for l in "${LABELS[@]}"; do printf '%-16s %s\n' "$l" "${STATUS[$l]}"; done
python3 - "$OUT" "$SCENARIO" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    print("no server completed the scenario: nothing to compare"); sys.exit(0)
def get(d, path):
    for k in path.split("."):
        if isinstance(d, list): d = d[0] if d else None
        if not isinstance(d, dict): return None
        d = d.get(k)
    return d
metrics = {
    "fanout": [("deliveries/s", "deliveries.per_s", 1), ("delivery p50 ms", "deliveries.latency_ms.p50", -1),
               ("delivery p99 ms", "deliveries.latency_ms.p99", -1), ("sends/s", "sends.achieved_per_s", 1),
               ("lost", "deliveries.lost", -1), ("server CPU ms/delivery", "server.cpu_ms_per_delivery", -1),
               ("server peak RSS MiB", "server.peak_rss_mib", -1)],
    "idle": [("long-polls held", "held_max", 1), ("server KiB/user", "server.rss_kib_per_user", -1),
             ("server CPU s", "server.cpu_s", -1), ("server peak RSS MiB", "server.peak_rss_mib", -1)],
    "send": [("sends/s", "sends.achieved_per_s", 1), ("send p99 ms", "sends.latency_ms.p99", -1),
             ("server CPU ms/send", "server.cpu_ms_per_send", -1)],
    "initial": [("initial sync p50 ms", "initial_sync_ms.p50", -1), ("response bytes", "response_bytes", 0)],
    "mixed": [("deliveries/s", "deliveries.per_s", 1), ("delivery p99 ms", "deliveries.latency_ms.p99", -1),
              ("server CPU ms/delivery", "server.cpu_ms_per_delivery", -1)],
}.get(sys.argv[2], [])
labels = [r["label"] for r in rows]
print()
print("%-24s" % "metric" + "".join("%18s" % l for l in labels) + ("   ratio %s/%s" % (labels[0], labels[1]) if len(labels) > 1 else ""))
for name, path, better in metrics:
    vals = [get(r, path) for r in rows]
    line = "%-24s" % name + "".join("%18s" % ("-" if v is None else v) for v in vals)
    if len(vals) > 1 and isinstance(vals[0], (int, float)) and isinstance(vals[1], (int, float)) and vals[1]:
        line += "   %.2f×" % (vals[0] / vals[1])
    print(line)
print("%-24s" % "verdict" + "".join("%18s" % r.get("verdict") for r in rows))
print("(higher is better for deliveries/s, sends/s and long-polls held; lower for latency, CPU and memory)")
PY
echo "results: $OUT"
