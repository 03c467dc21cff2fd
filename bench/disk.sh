#!/usr/bin/env bash
# Scenario (a) on the real disk, measured by the independent loader (bench/sync_loader.py),
# with the store's commit and checkpoint histograms read from the metrics page before and
# after the measured phase (issue 22).
#
#   MYELIN_BIN=/tmp/disk-after/myelin CHECKPOINT_PAGES=1000 SYNCHRONOUS=normal \
#       bench/disk.sh [sync_loader.py options]
#
# DATA_DIR (default /var/tmp/myelin-disk) must be on the disk, not tmpfs: the script says
# which file system it is. CHECKPOINT_PAGES=0 runs SQLite's automatic checkpoint inside the
# commit (the behaviour before issue 22). Prints the loader's figures, the server's CPU over
# the measured phase (utime+stime from /proc), and the difference of the metrics page between
# the start and the end of the measured phase (bench/metrics_diff.py).
#
# DB=postgres runs a PostgreSQL cluster of its own under $DATA_DIR/pg with the server's
# durable defaults (fsync on, synchronous_commit on; unlike scripts/with-postgres.sh, which
# turns them off for the test suite).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${MYELIN_BIN:-.build/release/myelin}
DATA_DIR=${DATA_DIR:-/var/tmp/myelin-disk}
PORT=${PORT:-18030}
CHECKPOINT_PAGES=${CHECKPOINT_PAGES:-1000}
SYNCHRONOUS=${SYNCHRONOUS:-normal}
DB=${DB:-sqlite}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
rm -rf "$DATA_DIR"; mkdir -p "$DATA_DIR"
echo "data directory $DATA_DIR on: $(df --output=fstype,source "$DATA_DIR" | tail -1)"
STORE="  sqlite:
    checkpoint_pages: $CHECKPOINT_PAGES
    synchronous: $SYNCHRONOUS"
PG_STOP=""
if [ "$DB" = postgres ]; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    as_pg=(); [ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
    mkdir -p "$DATA_DIR/pg"; chmod 755 "$DATA_DIR"; [ "$(id -u)" -eq 0 ] && chown postgres: "$DATA_DIR/pg"
    chmod 700 "$DATA_DIR/pg"
    "${as_pg[@]}" "$bindir/initdb" -D "$DATA_DIR/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null || exit 1
    PG_PORT=$((PORT + 1))
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$DATA_DIR/pg/data" -l "$DATA_DIR/pg/server.log" -w -t 60 \
        -o "-p $PG_PORT -k $DATA_DIR/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null || exit 1
    PG_STOP="${as_pg[*]} $bindir/pg_ctl -D $DATA_DIR/pg/data -m fast -w stop"
    echo "PostgreSQL on 127.0.0.1:$PG_PORT: fsync $("${as_pg[@]}" "$bindir/psql" -h 127.0.0.1 -p $PG_PORT -U postgres -Atc 'show fsync'), synchronous_commit $("${as_pg[@]}" "$bindir/psql" -h 127.0.0.1 -p $PG_PORT -U postgres -Atc 'show synchronous_commit')"
    STORE="  backend: postgres
  postgres:
    conninfo: \"host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres\"
    pool_size: ${POOL_SIZE:-8}"
fi
cat >"$DATA_DIR/myelin.yaml" <<YAML
server_name: localhost
registration:
  enabled: true
rate_limits:
  enabled: false
metrics:
  enabled: true
database:
$STORE
${MYELIN_CONFIG_EXTRA:-}
YAML
"$BIN" serve --config "$DATA_DIR/myelin.yaml" --listen "127.0.0.1:$PORT" --data-dir "$DATA_DIR/data" \
    >"$DATA_DIR/myelin.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; [ -n "$PG_STOP" ] && $PG_STOP >/dev/null' EXIT
for _ in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/_matrix/client/versions" && break
    sleep 0.5
done
echo "$DB, checkpoint_pages $CHECKPOINT_PAGES, synchronous $SYNCHRONOUS, binary $BIN, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/sync_loader.py --url "http://127.0.0.1:$PORT" --server-pid "$PID" \
    --metrics-path /_myelin/metrics --metrics-out "$DATA_DIR/metrics" "$@"
rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/metrics_diff.py "$DATA_DIR/metrics-before.txt" "$DATA_DIR/metrics-after.txt"
[ "$DB" = sqlite ] && ls -l "$DATA_DIR/data/" | grep myelin.db
exit $rc
