#!/bin/sh
# Fuzz the HTTP parser shim (Sources/CLLHTTP/myelin_http.c over Debian's llhttp) with libFuzzer + ASan,
# driven the way Sources/Transport/Connection.swift drives it (bench/Fuzz/FuzzHTTP.c).
#   scripts/fuzz-http.sh [libFuzzer options...]   (default -max_total_time=60)
#   scripts/fuzz-http.sh -runs=10000000
# Builds .build-fuzz/http/fuzz-http and runs it on .build-fuzz/http/corpus (kept between runs).
set -eu
cd "$(dirname "$0")/.."
out=.build-fuzz/http
mkdir -p "$out/corpus" "$out/artifacts"
[ $# -gt 0 ] || set -- -max_total_time=60
seed() { printf "$2" > "$out/corpus/$1"; }
# byte 0: configuration, byte 1: reads - 1, then the split bytes, then the connection's bytes.
seed get     '\000\000GET /_matrix/client/versions HTTP/1.1\r\nHost: a\r\n\r\n'
seed post    '\000\002\100\200POST /a?b=c HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhelloGET / HTTP/1.0\r\n\r\n'
seed chunked '\004\001\140PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n'
seed pipe    '\020\000GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\nConnection: close\r\n\r\nGET /4 HTTP/1.1\r\n\r\n'
seed upgrade '\000\000GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nxyz'
ll=Sources/CLLHTTP
clang -O1 -g -fsanitize=fuzzer,address -fuse-ld=lld -I "$ll/include" \
  "$ll/myelin_http.c" "$ll/llhttp.c" "$ll/api.c" "$ll/http.c" bench/Fuzz/FuzzHTTP.c \
  -o "$out/fuzz-http"
exec "$out/fuzz-http" -max_len=4096 -timeout=5 -dict=bench/Fuzz/http.dict \
  -artifact_prefix="$out/artifacts/" -print_final_stats=1 "$@" "$out/corpus"
