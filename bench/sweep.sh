#!/usr/bin/env bash
# The tuning sweep of docs/tuning.md: the skewed `mixed` workload (a few hot rooms, most cold)
# against Myelin with one setting changed at a time, each run tagged with --label, then the
# charts (`myelin-bench report`). One server per run, started by bench/compare.sh.
#
#   bench/sweep.sh [--part actors|transport|pool|all] [--scale full|medium|small] [--repeat N] [--out DIR]
#
#   actors     actors.rooms.max_resident 500 / 5,000 / 50,000 × idle_timeout_s 30 / 600
#   transport  transport.loops/workers 1/1, 2/2, 4/4 (default actors)
#   pool       database.pool_size 2 / 8 / 32 on PostgreSQL (a cluster of our own, fsync on)
#
# Scales: full = 20,000 users in 20,000 rooms of 2 (10,000 long-polling), medium = 5,000 in
# 5,000, small = 2,000 in 2,000; override with USERS, ROOMS, MEMBERS, SYNC_USERS, SENDERS, RATE,
# DURATION, SKEW, CONCURRENCY. PASSWORD_HASH_COST (default minimum) is the servers'
# security.password_hash_cost: set-up registers every user, and at the default Argon2id cost
# (interactive: 64 MiB, tens of ms each) 20,000 registrations take the better part of an hour
# per run; the sweep measures the rooms and syncs afterwards, which the cost does not touch.
# Results: $OUT/runs.jsonl (one line per run), $OUT/<part>/index.html
# and one SVG per metric. MYELIN_BIN runs a given server binary (a copy, so rebuilding meanwhile
# does not disturb the runs). Data directories live in $BENCH_DIR (default /var/tmp/myelin-sweep,
# on the disk).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PART=all
SCALE=small
REPEAT=1
export BENCH_DIR=${BENCH_DIR:-/var/tmp/myelin-sweep}
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
        --part) PART=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option $1"; exit 2 ;;
    esac
done
case $SCALE in
    full) n=20000; s=10000 ;;
    medium) n=5000; s=5000 ;;
    small) n=2000; s=2000 ;;
    *) echo "--scale full|medium|small"; exit 2 ;;
esac
USERS=${USERS:-$n}
ROOMS=${ROOMS:-$n}
MEMBERS=${MEMBERS:-2}
SYNC_USERS=${SYNC_USERS:-$s}
SENDERS=${SENDERS:-100}
RATE=${RATE:-2}
DURATION=${DURATION:-60}
SKEW=${SKEW:-zipf:1.1}
CONCURRENCY=${CONCURRENCY:-32}
OUT=${OUT:-$BENCH_DIR/sweep-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT" "$BENCH_DIR"
echo "USERS=$USERS ROOMS=$ROOMS MEMBERS=$MEMBERS SYNC_USERS=$SYNC_USERS SENDERS=$SENDERS RATE=$RATE DURATION=$DURATION SKEW=$SKEW $0 --part $PART --repeat $REPEAT" >"$OUT/command"
RUNS="$OUT/runs.jsonl"
touch "$RUNS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MYELIN_PORT=${MYELIN_PORT:-18010}
export MYELIN_PORT

# MYELIN_BENCH_BIN: a harness binary copied aside (default: build one and copy it, so that
# editing the sources during a long sweep does not rebuild under it).
if [ -z "${MYELIN_BENCH_BIN:-}" ]; then
    swift build -c release --product myelin-bench 2>&1 | tail -1
    cp "$ROOT/.build/release/myelin-bench" "$BENCH_DIR/myelin-bench"
    MYELIN_BENCH_BIN="$BENCH_DIR/myelin-bench"
fi
export MYELIN_BENCH_BIN
BENCH=$MYELIN_BENCH_BIN

echo "sweep: $USERS users, $ROOMS rooms × $MEMBERS, $SYNC_USERS long-polling, $SENDERS active users at $RATE ops/s, skew $SKEW, ${DURATION}s; results in $OUT"

# run_one EXTRA_YAML LABEL...
run_one() {
    local extra=$1; shift
    local labels=() l
    for l in "$@"; do labels+=(--label "$l"); done
    for rep in $(seq 1 "$REPEAT"); do
        echo "== $* (repeat $rep) load $(cut -d' ' -f1-3 /proc/loadavg)"
        MYELIN_CONFIG_EXTRA=$'metrics:\n  enabled: true\nsecurity:\n  password_hash_cost: '"${PASSWORD_HASH_COST:-minimum}"$'\n'"$extra" \
            bench/compare.sh --only myelin mixed --users "$USERS" --rooms "$ROOMS" --members "$MEMBERS" \
            --sync-users "$SYNC_USERS" --senders "$SENDERS" --rate "$RATE" --duration "$DURATION" --grace 10 \
            --skew "$SKEW" --concurrency "$CONCURRENCY" --interval 5 \
            --metrics-url "http://127.0.0.1:$MYELIN_PORT/_myelin/metrics" \
            --label "load1=$(cut -d' ' -f1 /proc/loadavg)" --label "scale=$USERS/$ROOMS" "${labels[@]}" \
            --report "$OUT/runs/$(echo "$*" | tr ' /=' '_-_')-$rep" 2>&1 | tee -a "$OUT/sweep.log" | grep -v '^\[myelin\] *[0-9]' | tail -25
        if [ -s "$BENCH_DIR/myelin.jsonl" ]; then cat "$BENCH_DIR/myelin.jsonl" >>"$RUNS"; fi
    done
}

if [ "$PART" = actors ] || [ "$PART" = all ]; then
    for idle in 30 600; do
        for max in 500 5000 50000; do
            run_one $'actors:\n  rooms:\n    max_resident: '"$max"$'\n    idle_timeout_s: '"$idle" \
                part=actors "max_resident=$max" "idle_timeout_s=$idle"
        done
    done
    "$BENCH" report --from "$RUNS" --only part=actors --sweep-key max_resident --series-key idle_timeout_s \
        --title "actors.rooms.max_resident × idle_timeout_s ($USERS users, $ROOMS rooms, $SKEW)" --out "$OUT/actors"
fi

if [ "$PART" = transport ] || [ "$PART" = all ]; then
    for lw in 1 2 4; do
        run_one $'transport:\n  loops: '"$lw"$'\n  workers: '"$lw" part=transport "loops_workers=$lw/$lw"
    done
    "$BENCH" report --from "$RUNS" --only part=transport --sweep-key loops_workers \
        --title "transport.loops / workers ($USERS users, $ROOMS rooms, $SKEW)" --out "$OUT/transport"
fi

if [ "$PART" = pool ] || [ "$PART" = all ]; then
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    PGDIR="$BENCH_DIR/sweep-pg"
    PGPORT=${PGPORT:-55442}
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    for pool in 2 8 32; do
        # A fresh cluster per run, on the disk, fsync and synchronous_commit on (the defaults).
        as_pg "$bin/pg_ctl" -D "$PGDIR" -m fast -w stop >/dev/null 2>&1
        rm -rf "$PGDIR"; mkdir -p "$PGDIR"
        [ "$(id -u)" = 0 ] && chown postgres "$PGDIR" && chmod 700 "$PGDIR"
        as_pg "$bin/initdb" -D "$PGDIR" -U postgres -A trust --locale=C -E UTF8 >/dev/null
        as_pg "$bin/pg_ctl" -D "$PGDIR" -l "$PGDIR/postgres.log" -w \
            -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=/tmp -c max_connections=200" start >/dev/null
        PGPID=$(head -1 "$PGDIR/postmaster.pid")
        MYELIN_EXTRA_PIDS="$PGPID" run_one $'database:\n  backend: postgres\n  postgres:\n    conninfo: "host=127.0.0.1 port='"$PGPORT"$' user=postgres dbname=postgres"\n    pool_size: '"$pool" \
            part=pool "pool_size=$pool"
        as_pg "$bin/pg_ctl" -D "$PGDIR" -m fast -w stop >/dev/null 2>&1
    done
    rm -rf "$PGDIR"
    "$BENCH" report --from "$RUNS" --only part=pool --sweep-key pool_size \
        --title "database.pool_size on PostgreSQL ($USERS users, $ROOMS rooms, $SKEW)" --out "$OUT/pool"
fi
echo "runs: $RUNS"
