#!/bin/sh
# Fuzz the JSON parser with libFuzzer (+ AddressSanitizer).
#   scripts/fuzz-json.sh [seconds]   (default 60)
# Builds .build/fuzz/fuzz-json from Sources/Matrix + bench/Fuzz and runs it on a fresh corpus.
set -eu
cd "$(dirname "$0")/.."
secs="${1:-60}"
out=.build/fuzz
mkdir -p "$out/corpus"
printf '%s' '{"type":"m.room.message","content":{"body":"h\u00e9 \"x\" \\ 😀","n":-1,"f":1.5},"a":[1,[true,null,{}]]}' > "$out/corpus/seed1"
printf '%s' '["\ud83d\ude00",-0,1e10,9223372036854775808]' > "$out/corpus/seed2"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Matrix \
  -I Sources/CSodium -lsodium \
  $(find Sources/Matrix -name '*.swift') bench/Fuzz/FuzzJSON.swift -o "$out/fuzz-json"
"$out/fuzz-json" -max_total_time="$secs" -max_len=4096 -timeout=5 "$out/corpus"
