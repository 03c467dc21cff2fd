#!/bin/sh
# Fuzz the client-server filter model with libFuzzer (+ AddressSanitizer): bench/Fuzz/FuzzFilter.swift.
#   scripts/fuzz-filter.sh [libFuzzer options...]   (default -max_total_time=60)
#   scripts/fuzz-filter.sh -runs=10000000
#
# The filter code lives in the App module, which imports the whole server (Transport, Persistence,
# Actors, the routes). The files holding it do not compile alone: Filters.swift registers routes
# (RouteBuilder, RequestContext, the accounts database), Sync.swift holds SyncFilter next to the
# sync handler (MyelinApp, SyncBuilder...), RequestBounds.swift extends RequestContext. So this
# script compiles, unmodified, the declarations the filter needs, cut out of the current sources
# at build time (from the declaration's first line to its closing brace in column 0):
#   Sources/App/ClientAPI/Sync/EventFilter.swift   struct EventFilter        (whole declaration)
#   Sources/App/ClientAPI/Sync/Sync.swift          final class SyncFilter    (whole declaration)
#   Sources/App/ClientAPI/Accounts/Filters.swift   enum Filters, from "MARK: the filter model" to its end
#                                                  (validate, eventFilter, roomEventFilter, strings;
#                                                  the route registration is left out)
#   Sources/App/HTTP/RequestBounds.swift           enum RequestBounds        (whole declaration)
# plus Sources/Actors/Streams/StreamToken.swift (RequestBounds.maxPosition) and Sources/Matrix.
# Builds .build-fuzz/filter/fuzz-filter and runs it on .build-fuzz/filter/corpus.
set -eu
cd "$(dirname "$0")/.."
out=.build-fuzz/filter
mkdir -p "$out/corpus" "$out/artifacts" "$out/extracted"
[ $# -gt 0 ] || set -- -max_total_time=60

# extract FILE START-REGEX: the lines from the first match of START-REGEX to the next line "}".
extract() { awk -v start="$2" 'found == 0 && $0 ~ start { found = 1 } found { print } found && /^}$/ { exit }' "$1"; }
x="$out/extracted"
extract Sources/App/ClientAPI/Sync/EventFilter.swift '^struct EventFilter' > "$x/EventFilter.swift"
extract Sources/App/ClientAPI/Sync/Sync.swift '^final class SyncFilter' > "$x/SyncFilter.swift"
{ echo 'enum Filters {'; extract Sources/App/ClientAPI/Accounts/Filters.swift 'MARK: the filter model'; } > "$x/Filters.swift"
extract Sources/App/HTTP/RequestBounds.swift '^enum RequestBounds' > "$x/RequestBounds.swift"
for check in "EventFilter.swift:static func matches" "SyncFilter.swift:func applyingEventFields" \
             "Filters.swift:static func validate(filter" "Filters.swift:static func roomEventFilter" \
             "RequestBounds.swift:maxTimelineLimit"; do
  grep -q "${check#*:}" "$x/${check%%:*}" || { echo "fuzz-filter: could not extract ${check#*:} from the sources" >&2; exit 1; }
done

printf '%s' '{"room":{"timeline":{"limit":10,"types":["m.room.*","*.message"],"not_senders":["@a:b"],"lazy_load_members":true},"state":{"not_types":["*"]},"rooms":["!r:a"],"include_leave":true},"event_fields":["content.body","type","a\\.b"],"presence":{"limit":0}}' > "$out/corpus/seed1"
printf '%s' '{"account_data":{"types":["m.*x*y"],"limit":9223372036854775807},"event_format":"client","room":{"ephemeral":{"limit":-1},"contains_url":false}}' > "$out/corpus/seed2"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Matrix \
  -I Sources/CSodium -lsodium \
  $(find Sources/Matrix -name '*.swift') Sources/Actors/Streams/StreamToken.swift "$x"/*.swift \
  bench/Fuzz/FuzzFilter.swift -o "$out/fuzz-filter"
exec "$out/fuzz-filter" -max_len=4096 -timeout=5 -dict=bench/Fuzz/json.dict -artifact_prefix="$out/artifacts/" -print_final_stats=1 \
  "$@" "$out/corpus"
