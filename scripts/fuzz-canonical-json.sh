#!/bin/sh
# Fuzz canonical JSON and the compact encoder with libFuzzer (+ AddressSanitizer): bench/Fuzz/FuzzCanonicalJSON.swift
# compiled with the Matrix sources.
#   scripts/fuzz-canonical-json.sh [libFuzzer options...]   (default -max_total_time=60)
#   scripts/fuzz-canonical-json.sh -runs=10000000
# Builds .build-fuzz/canonical-json/fuzz-canonical-json and runs it on .build-fuzz/canonical-json/corpus.
set -eu
cd "$(dirname "$0")/.."
out=.build-fuzz/canonical-json
mkdir -p "$out/corpus" "$out/artifacts"
[ $# -gt 0 ] || set -- -max_total_time=60
printf '%s' '{"type":"m.room.message","content":{"body":"h\u00e9 \"x\" \\ 😀","n":-1,"f":1.5},"a":[1,[true,null,{}]]}' > "$out/corpus/seed1"
printf '%s' '["\ud83d\ude00",-0,1e10,9223372036854775808,9007199254740991,-9007199254740992,1E-2]' > "$out/corpus/seed2"
printf '%s' '{"\u00e9":1,"e\u0301":2,"\u0000":"\u001f\u007f","b":{"a":0.5e1}}' > "$out/corpus/seed3"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Matrix \
  -I Sources/CSodium -lsodium \
  $(find Sources/Matrix -name '*.swift') bench/Fuzz/FuzzCanonicalJSON.swift -o "$out/fuzz-canonical-json"
exec "$out/fuzz-canonical-json" -max_len=4096 -timeout=5 -dict=bench/Fuzz/json.dict -artifact_prefix="$out/artifacts/" -print_final_stats=1 \
  "$@" "$out/corpus"
