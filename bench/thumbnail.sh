#!/usr/bin/env bash
# Thumbnail benchmark: a 4000x3000 JPEG (made here with the vips CLI) uploaded to a release
# Myelin; then (1) the default pre-generated sizes (32x32 crop, 96x96 crop, 320x240, 640x480,
# 800x600 scale), timed from the end of the upload until all five are served, and (2) each
# size generated alone on demand (dynamic_thumbnails, no pre-generated sizes, a fresh upload
# per size). Memory: the server's resident set before, and its peak (VmHWM, reset by
# /proc/PID/clear_refs after registration) after.
# Usage: bench/thumbnail.sh   (MYELIN=path/to/myelin to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/myelin-thumbnail-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
if [ -z "${MYELIN:-}" ]; then
  swift build -c release --product myelin >/dev/null
  MYELIN=$(swift build -c release --show-bin-path)/myelin
fi
command -v vips >/dev/null || scripts/install-deps.sh libvips-tools
vips gaussnoise "$WORK/noise.v" 4000 3000 --mean 128 --sigma 40
vips gaussblur "$WORK/noise.v" "$WORK/blur.v" 2
vips bandjoin "$WORK/blur.v $WORK/noise.v $WORK/blur.v" "$WORK/photo.jpg[Q=90]"
echo "input: 4000x3000 JPEG, $(stat -c %s "$WORK/photo.jpg") bytes"

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }

run() {  # name port yaml-media-lines
  local name=$1 port=$2 media=$3 base="http://127.0.0.1:$2" token
  printf 'server_name: localhost\nregistration:\n  enabled: true\nrate_limits:\n  enabled: false\nlogging:\n  access_log: false\nmedia:\n%s\n' \
    "$media" > "$WORK/$name.yaml"
  "$MYELIN" serve --config "$WORK/$name.yaml" --listen "127.0.0.1:$port" --data-dir "$WORK/$name" 2>"$WORK/$name.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
  token=$(curl -s -X POST "$base/_matrix/client/v3/register" -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"bench-password-1","auth":{"type":"m.login.dummy"}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  upload() {
    curl -s -X POST "$base/_matrix/media/v3/upload" -H "Authorization: Bearer $token" -H 'Content-Type: image/jpeg' \
      --data-binary "@$WORK/photo.jpg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["content_uri"].split("/")[-1])'
  }
  thumb() {  # id w h method
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
      "$base/_matrix/client/v1/media/thumbnail/localhost/$1?width=$2&height=$3&method=$4"
  }
  # Registration hashes a password with Argon2id (64 MiB): reset the peak after it.
  echo 5 > "/proc/$pid/clear_refs"
  local rss_before; rss_before=$(kib $pid VmRSS)
  if [ "$name" = pregenerated ]; then
    local id t0 t1; id=$(upload); t0=$(now)
    for size in "32 32 crop" "96 96 crop" "320 240 scale" "640 480 scale" "800 600 scale"; do
      [ "$(thumb "$id" $size)" = 200 ] || { echo "thumbnail $size failed"; exit 1; }
    done
    t1=$(now)
    printf 'pre-generated default sizes: all five served %.0f ms after the upload\n' "$(echo "($t1 - $t0) * 1000" | bc -l)"
  else
    for size in "32 32 crop" "96 96 crop" "320 240 scale" "640 480 scale" "800 600 scale"; do
      local id t0 t1; id=$(upload); t0=$(now)
      [ "$(thumb "$id" $size)" = 200 ] || { echo "thumbnail $size failed"; exit 1; }
      t1=$(now)
      printf 'on demand %-14s %6.0f ms\n' "$size" "$(echo "($t1 - $t0) * 1000" | bc -l)"
    done
  fi
  printf '%s: server RSS before %d MiB, peak (VmHWM) %d MiB\n' "$name" $(( rss_before / 1024 )) $(( $(kib $pid VmHWM) / 1024 ))
  kill $pid; wait $pid 2>/dev/null || true
}

run pregenerated 18301 "  thumbnail_threads: 2"
run ondemand 18302 "  thumbnail_sizes: []
  dynamic_thumbnails: true
  thumbnail_threads: 2"
