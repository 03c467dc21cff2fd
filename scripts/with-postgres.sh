#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster:
#   scripts/with-postgres.sh CMD ARGS...
# Starts a cluster from Debian's binaries (/usr/lib/postgresql/*/bin) in a temporary
# directory, listening on a free port of 127.0.0.1 (and a unix socket in that directory),
# exports MYELIN_TEST_POSTGRES (a libpq conninfo), runs CMD, then always stops the cluster
# and removes the directory. Exits with CMD's exit code.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi

# Under /tmp rather than $TMPDIR: when we run as root the postgres user must be able to
# reach the directory, and /tmp is world-traversable on every Debian machine.
dir=$(mktemp -d /tmp/myelin-pg.XXXXXX)
# initdb and postgres refuse to run as root: run them as the postgres system user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    echo "with-postgres: running as root but there is no 'postgres' user" >&2
    rm -rf "$dir"
    exit 1
  fi
  chown postgres: "$dir"
  if command -v runuser >/dev/null 2>&1; then as_pg=(runuser -u postgres --); else as_pg=(su postgres -s /bin/sh -c '"$0" "$@"'); fi
fi
chmod 700 "$dir"

started=0
cleanup() {
  if [ "$started" -eq 1 ]; then
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 131' QUIT

"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
  >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }

# Whether something listens on TCP port $1 (from /proc, no extra tools needed).
port_in_use() {
  local hex
  hex=$(printf ':%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }'
}

port=""
for attempt in $(seq 1 20); do
  candidate=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
  port_in_use "$candidate" && continue
  if "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
       -o "-p $candidate -k $dir -c listen_addresses=127.0.0.1 -c max_connections=1000 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
       start >/dev/null 2>&1; then
    port=$candidate
    started=1
    break
  fi
  # Lost a race for the port (or another failure): try another port, then give up.
done
if [ -z "$port" ]; then
  echo "with-postgres: could not start PostgreSQL; server log:" >&2
  cat "$dir/server.log" >&2 2>/dev/null || true
  exit 1
fi

export MYELIN_TEST_POSTGRES="host=127.0.0.1 port=$port user=postgres dbname=postgres"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
