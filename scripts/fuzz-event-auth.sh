#!/bin/sh
# Fuzz event authorization (Sources/Matrix/Auth: EventAuth, PowerLevels; PDU, RoomVersion) with
# libFuzzer (+ AddressSanitizer): bench/Fuzz/FuzzEventAuth.swift compiled with the Matrix sources.
#   scripts/fuzz-event-auth.sh [libFuzzer options...]   (default -max_total_time=60)
#   scripts/fuzz-event-auth.sh -runs=10000000
# Builds .build-fuzz/event-auth/fuzz-event-auth and runs it on .build-fuzz/event-auth/corpus.
# Input: byte 0 = room version (bits 0-2: 1, 3, 6, 8, 10, 11, 12) and mode (bits 3-5, see the harness),
# then JSON.
set -eu
cd "$(dirname "$0")/.."
out=.build-fuzz/event-auth
mkdir -p "$out/corpus" "$out/artifacts"
[ $# -gt 0 ] || set -- -max_total_time=60
seed() { printf "$2" > "$out/corpus/$1"; printf '%s' "$3" >> "$out/corpus/$1"; }
seed msg-v12    '\006' '{"content":{"body":"x"}}'
seed raw-v1     '\010' '{"type":"m.room.message","sender":"@bob:b","room_id":"!room:a","content":{},"prev_events":[],"auth_events":[],"depth":5,"event_id":"$x:a"}'
seed pl-v1      '\020' '{"users":{"@bob:b":" +0100 ","@mod:a":1e2},"ban":"50","events":{"m.room.name":75.9},"users_default":-9223372036854775808}'
seed pl-v10     '\024' '{"users":{"@bob:b":9223372036854775807},"state_default":9007199254740992,"notifications":{"room":-1}}'
seed pl-mod-v12 '\056' '{"users":{"@alice:a":1},"kick":0,"events":{"m.room.power_levels":0}}'
seed member-v8  '\033' '{"content":{"membership":"join","join_authorised_via_users_server":"@alice:a"},"state_key":"@eve:e","sender":"@eve:e"}'
seed tpi-v6     '\032' '{"content":{"membership":"invite","third_party_invite":{"signed":{"mxid":"@carol:a","token":"tok","signatures":{"a":{"ed25519:0":"AAAA"}}}}},"sender":"@alice:a"}'
seed knock-v11  '\065' '{"membership":"knock"}'
seed create-v12 '\076' '{"room_version":"12","additional_creators":["@bob:b"]}'
seed redact-v3  '\001' '{"type":"m.room.redaction","redacts":"$abc","content":{"redacts":"$abc"}}'
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Matrix \
  -I Sources/CSodium -lsodium \
  $(find Sources/Matrix -name '*.swift') bench/Fuzz/FuzzEventAuth.swift -o "$out/fuzz-event-auth"
exec "$out/fuzz-event-auth" -max_len=4096 -timeout=5 -dict=bench/Fuzz/json.dict -artifact_prefix="$out/artifacts/" \
  -print_final_stats=1 "$@" "$out/corpus"
