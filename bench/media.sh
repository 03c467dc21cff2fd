#!/usr/bin/env bash
# Media upload and download, Myelin beside Synapse in the same run (issue 18, "Judged by"):
# a 1 GiB upload with the server's RSS before and during, that file's download on loopback
# (MiB/s, curl to /dev/null), and 200 concurrent uploads of 10 MiB with the peak RSS.
#
#   bench/media.sh [--only myelin|synapse] [bench/media.py options, e.g. --big-mib 256]
#
# Myelin runs from $MYELIN_BIN (default .build/release/myelin: `swift build -c release
# --product myelin` first); Synapse from PyPI (bench/synapse.sh, SQLite), with
# max_upload_size raised to 2 GiB. Servers, their media and the test files live under
# $BENCH_DIR (default /work/bench-media: a real disk, not a tmpfs), never in the repository.
# One JSON line per server in $BENCH_DIR/media-<time>.jsonl, then a table of ratios.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH_DIR=${BENCH_DIR:-/work/bench-media}
ONLY=""
if [ "${1:-}" = --only ]; then ONLY=$2; shift 2; fi
MYELIN_PORT=${MYELIN_PORT:-18020}
SYNAPSE_PORT=${SYNAPSE_PORT:-18021}
MYELIN_BIN=${MYELIN_BIN:-$ROOT/.build/release/myelin}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
mkdir -p "$BENCH_DIR"
if [ "$(stat -f -c %T "$BENCH_DIR")" = tmpfs ]; then
    echo "warning: $BENCH_DIR is a tmpfs: the figures would measure memory, not the disk" >&2
fi
OUT="$BENCH_DIR/media-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$OUT"
PIDS_TO_STOP=()
cleanup() {
    for p in "${PIDS_TO_STOP[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    [ -f "$BENCH_DIR/synapse/synapse.pid" ] && bench/synapse.sh stop "$BENCH_DIR/synapse"
}
trap cleanup EXIT

wait_http() {  # URL PID
    for _ in $(seq 1 240); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1/_matrix/client/versions" 2>/dev/null)
        [ -n "$code" ] && [ "$code" != 000 ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

# --- Myelin -------------------------------------------------------------------------------
if [ "$ONLY" != synapse ]; then
    if [ ! -x "$MYELIN_BIN" ]; then echo "no $MYELIN_BIN: swift build -c release --product myelin" >&2; exit 1; fi
    MDIR="$BENCH_DIR/myelin-data"
    rm -rf "$MDIR"; mkdir -p "$MDIR"
    cat >"$BENCH_DIR/myelin.yaml" <<YAML
server_name: localhost
registration:
  enabled: true
rate_limits:
  enabled: false
logging:
  access_log: false
media:
  max_upload_bytes: 2147483648
transport:
  max_media_body_bytes: 2147483648
${MYELIN_CONFIG_EXTRA:-}
YAML
    echo "== Myelin: $MYELIN_BIN serve --config $BENCH_DIR/myelin.yaml --listen 127.0.0.1:$MYELIN_PORT --data-dir $MDIR"
    "$MYELIN_BIN" serve --config "$BENCH_DIR/myelin.yaml" --listen "127.0.0.1:$MYELIN_PORT" --data-dir "$MDIR" \
        >"$BENCH_DIR/myelin.log" 2>&1 &
    MPID=$!
    PIDS_TO_STOP+=("$MPID")
    if wait_http "http://127.0.0.1:$MYELIN_PORT" "$MPID"; then
        python3 bench/media.py --url "http://127.0.0.1:$MYELIN_PORT" --pid "$MPID" --label myelin \
            --work "$BENCH_DIR/files" --json "$OUT" "$@" >/dev/null || echo "myelin: media.py failed" >&2
    else
        echo "Myelin did not answer; its log:" >&2; tail -5 "$BENCH_DIR/myelin.log" >&2
    fi
    kill "$MPID" 2>/dev/null; wait "$MPID" 2>/dev/null
    rm -rf "$MDIR"
fi

# --- Synapse ------------------------------------------------------------------------------
if [ "$ONLY" != myelin ]; then
    bench/synapse.sh install || { echo "could not install Synapse from PyPI" >&2; exit 1; }
    rm -rf "$BENCH_DIR/synapse"
    echo "== Synapse (SQLite) on 127.0.0.1:$SYNAPSE_PORT"
    if info=$(SYNAPSE_CONFIG_EXTRA=$'max_upload_size: 2G\nenable_media_repo: true' \
              bench/synapse.sh start sqlite "$BENCH_DIR/synapse" "$SYNAPSE_PORT"); then
        spid=$(echo "$info" | sed -n 's/^SYNAPSE_PID=//p')
        python3 bench/media.py --url "http://127.0.0.1:$SYNAPSE_PORT" --pid "$spid" --label synapse \
            --work "$BENCH_DIR/files" --json "$OUT" "$@" >/dev/null || echo "synapse: media.py failed" >&2
        bench/synapse.sh stop "$BENCH_DIR/synapse"
    else
        echo "Synapse did not start" >&2
    fi
    rm -rf "$BENCH_DIR/synapse/media_store"
fi

# --- Summary ------------------------------------------------------------------------------
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    print("no server completed: nothing to compare"); sys.exit(0)
def get(d, path):
    for k in path.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d
metrics = [
    ("big upload s", "big_upload.seconds"), ("upload RSS before MiB", "big_upload.rss_before_mib"),
    ("upload RSS peak MiB", "big_upload.rss_peak_mib"), ("upload RSS growth MiB", "big_upload.rss_growth_mib"),
    ("download MiB/s (median)", "download.mib_per_s_median"), ("download MiB/s (best)", "download.mib_per_s_best"),
    ("200×10 MiB ok", "concurrent.ok"), ("200×10 MiB wall s", "concurrent.wall_s"),
    ("200×10 MiB peak RSS MiB", "concurrent.rss_peak_mib"), ("200×10 MiB RSS growth", "concurrent.rss_growth_mib"),
]
labels = [r["label"] for r in rows]
print()
print("%-26s" % "metric" + "".join("%14s" % l for l in labels) + ("   ratio %s/%s" % (labels[0], labels[1]) if len(labels) > 1 else ""))
for name, path in metrics:
    vals = [get(r, path) for r in rows]
    line = "%-26s" % name + "".join("%14s" % ("-" if v is None else v) for v in vals)
    if len(vals) > 1 and all(isinstance(v, (int, float)) for v in vals[:2]) and vals[1]:
        line += "   %.2f×" % (vals[0] / vals[1])
    print(line)
for r in rows:
    if get(r, "concurrent.failures"):
        print(f"{r['label']} concurrent failures: {r['concurrent']['failures']}")
PY
echo "results: $OUT"
