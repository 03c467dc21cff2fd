#!/usr/bin/env bash
# SyTest, the Matrix conformance suite, against two Myelin servers (docs/sytest.md).
#   scripts/sytest.sh                         # the whole suite at room version 10
#   scripts/sytest.sh tests/30rooms/01state.pl  # some files (any run-tests.pl arguments pass through)
#   scripts/sytest.sh --check                 # the whole suite; fails if a test of
#                                             # tests/sytest/whitelist.txt did not pass
# SyTest is not packaged: its tree, the Perl modules Debian lacks and the run outputs live in
# SYTEST_CACHE (default ~/.cache/myelin-sytest), never in the repository.
# Environment: MYELIN_BIN (else a debug build), SYTEST_CACHE, SYTEST_SRC (a SyTest tree or bare
# git directory), SYTEST_PERL5LIB (a prepared dir holding Net/Async/HTTP/Server.pm >= 0.09),
# SYTEST_PORTS (default 8800:8840), SYTEST_ROOM_VERSION (default 10), SYTEST_SKIP_APT=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHECK=0
if [ "${1:-}" = "--check" ]; then CHECK=1; shift; fi

CACHE=${SYTEST_CACHE:-$HOME/.cache/myelin-sytest}
PORTS=${SYTEST_PORTS:-8800:8840}
ROOM_VERSION=${SYTEST_ROOM_VERSION:-10}
mkdir -p "$CACHE"

# 1. Debian's Perl packages (only those missing; needs root or sudo).
PKGS="libclass-method-modifiers-perl libdata-dump-perl libdbi-perl libdbd-pg-perl libdigest-hmac-perl
  libemail-address-xs-perl libemail-mime-perl libfile-slurper-perl libfuture-perl libhttp-message-perl
  libio-async-perl libio-async-ssl-perl libio-socket-ip-perl libio-socket-ssl-perl libjson-perl
  libjson-pp-perl liblist-utilsby-perl libmodule-pluggable-perl libnet-async-http-perl libnet-ssleay-perl
  libstruct-dumb-perl liburi-perl libyaml-libyaml-perl libjson-xs-perl libscalar-list-utils-perl
  libcryptx-perl libmetrics-any-perl"
if [ "${SYTEST_SKIP_APT:-0}" != 1 ]; then
  missing=""
  for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "sytest.sh: installing$missing" >&2
    $SUDO apt-get install -y --no-install-recommends $missing >&2 \
      || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends $missing >&2; }
  fi
fi

# 2. The SyTest tree: from a local mirror if there is one, else from GitHub.
SYTEST=$CACHE/sytest
if [ ! -f "$SYTEST/run-tests.pl" ]; then
  SRC=${SYTEST_SRC:-/work/.mirror/matrix-org+sytest/repo}
  rm -rf "$SYTEST.tmp" && mkdir -p "$SYTEST.tmp"
  if [ -f "$SRC/run-tests.pl" ]; then
    cp -a "$SRC/." "$SYTEST.tmp/"
  elif git --git-dir="$SRC" rev-parse HEAD >/dev/null 2>&1; then
    git --git-dir="$SRC" archive HEAD | tar -x -C "$SYTEST.tmp"
  else
    rmdir "$SYTEST.tmp"
    git clone --depth 1 https://github.com/matrix-org/sytest "$SYTEST.tmp" \
      || { echo "sytest.sh: cannot get SyTest (offline? set SYTEST_SRC to a SyTest tree)" >&2; exit 2; }
  fi
  mv "$SYTEST.tmp" "$SYTEST"
fi

# 3. Perl modules Debian lacks: Net::Async::HTTP::Server >= 0.09 (pure Perl, from CPAN),
#    beside the Crypt::Ed25519 shim of tests/sytest/perl5lib.
NAHS=${SYTEST_PERL5LIB:-$CACHE/perl5lib}
if ! PERL5LIB="$NAHS" perl -e 'use Net::Async::HTTP::Server 0.09' 2>/dev/null; then
  [ -n "${SYTEST_PERL5LIB:-}" ] && { echo "sytest.sh: SYTEST_PERL5LIB=$NAHS lacks Net::Async::HTTP::Server >= 0.09" >&2; exit 2; }
  URL=https://cpan.metacpan.org/authors/id/P/PE/PEVANS/Net-Async-HTTP-Server-0.13.tar.gz
  echo "sytest.sh: fetching Net::Async::HTTP::Server 0.13 from CPAN" >&2
  tmp=$(mktemp -d)
  if ! curl -fsSL "$URL" -o "$tmp/nahs.tar.gz"; then
    echo "sytest.sh: cannot download $URL (offline?). Put Net/Async/HTTP/Server.pm and" >&2
    echo "  Net/Async/HTTP/Server/{Protocol,Request}.pm (version >= 0.09) in a directory and set SYTEST_PERL5LIB to it." >&2
    rm -rf "$tmp"; exit 2
  fi
  tar -xzf "$tmp/nahs.tar.gz" -C "$tmp"
  mkdir -p "$NAHS"
  cp -r "$tmp"/Net-Async-HTTP-Server-0.13/lib/. "$NAHS/"
  rm -rf "$tmp"
fi
export PERL5LIB="$ROOT/tests/sytest/perl5lib:$NAHS${PERL5LIB:+:$PERL5LIB}"
export SYTEST_PLUGINS="$ROOT/tests/sytest"   # holds plugin-exec/
[ -e "$SYTEST/plugins" ] || mkdir -p "$SYTEST/plugins"

# 4. Myelin.
if [ -z "${MYELIN_BIN:-}" ]; then
  swift build --product myelin >&2
  MYELIN_BIN="$(swift build --show-bin-path)/myelin"
fi
export MYELIN_BIN SYTEST_ROOM_VERSION=$ROOM_VERSION

# 5. The run. Outputs in $CACHE/runs/<time>/ (run.tap, run.err, servers' logs under work/).
RUN=$CACHE/runs/$(date -u +%Y%m%dT%H%M%S)
# The work directory must exist: SyTest makes the servers' directories with abs_path(), which
# is undef under a missing parent (both servers would then share one directory).
mkdir -p "$RUN/work"
ln -sfn "$RUN" "$CACHE/runs/last"
echo "sytest.sh: run outputs in $RUN" >&2
ulimit -n 8192 2>/dev/null || true
status=0
( cd "$SYTEST" && timeout -k 30 "${SYTEST_TIMEOUT:-3600}" ./run-tests.pl -I Exec \
    --exec-command "$ROOT/tests/sytest/launcher.py" --exec-name myelin \
    --port-range "$PORTS" --work-directory "$RUN/work" --room-version "$ROOM_VERSION" -O tap "$@" \
    > "$RUN/run.tap" 2> "$RUN/run.err" ) || status=$?

args=("$RUN/run.tap" "$RUN/run.err" --passed "$RUN/passed.txt" --failed "$RUN/failed.txt")
if [ "$CHECK" = 1 ]; then
  args+=(--whitelist "$ROOT/tests/sytest/whitelist.txt" --check)
  [ $# -eq 0 ] && args+=(--require-all)
fi
python3 "$ROOT/tests/sytest/summarize.py" "${args[@]}" | tee "$RUN/summary.txt"
check=${PIPESTATUS[0]}
[ "$check" = 0 ] || exit "$check"
# run-tests.pl exits nonzero when any test fails: that is the table's business, not an error,
# unless nothing ran at all.
grep -q '^\(not \)\?ok ' "$RUN/run.tap" || { echo "sytest.sh: no test ran (status $status); see $RUN/run.err" >&2; exit 1; }
