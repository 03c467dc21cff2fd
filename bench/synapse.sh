#!/usr/bin/env bash
# Synapse for the bench: installed from PyPI into a virtual environment, configured for load
# tests (open registration, rate limits raised, loopback only), SQLite or PostgreSQL.
#
#   bench/synapse.sh install                 # venv at $SYNAPSE_VENV (default /work/venv-synapse)
#   bench/synapse.sh start sqlite|postgres DIR PORT   # prints "SYNAPSE_PID=… [POSTGRES_PID=…]"
#   bench/synapse.sh stop DIR
#
# Nothing here writes inside the repository: DIR holds config, keys, databases and logs.
# SYNAPSE_CONFIG_EXTRA is appended to the overrides (bench/media.sh raises max_upload_size).
set -euo pipefail
VENV=${SYNAPSE_VENV:-/work/venv-synapse}
PG_PORT=${PG_PORT:-55432}

install() {
    if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
    if ! "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
        "$VENV/bin/pip" install -q 'matrix-synapse[postgres]'
    fi
}

# PostgreSQL refuses to run as root; run it as the postgres user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_bin() { local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1); echo "${d:-/usr/bin}"; }

start_postgres() {
    local dir=$1 bin; bin=$(pg_bin)
    mkdir -p "$dir/pg"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg"; chmod 700 "$dir/pg"; fi
    if [ ! -f "$dir/pg/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$dir/pg" -U postgres --locale=C -E UTF8 >"$dir/initdb.log"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/postgres.log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=/tmp -c max_connections=200 -c fsync=on" start >/dev/null
    as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='synapse'" | grep -q 1 ||
        as_pg "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres -O postgres -E UTF8 \
            --lc-collate=C --lc-ctype=C -T template0 synapse
    head -1 "$dir/pg/postmaster.pid"
}

start() {
    local db=$1 dir=$2 port=$3
    install
    mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/homeserver.yaml" ]; then
        "$VENV/bin/python" -m synapse.app.homeserver --server-name bench.localhost \
            --config-path "$dir/homeserver.yaml" --data-directory "$dir" \
            --generate-config --report-stats=no >/dev/null
    fi
    local pgpid=""
    if [ "$db" = postgres ]; then
        pgpid=$(start_postgres "$dir")
        cat >"$dir/database.yaml" <<YAML
database:
  name: psycopg2
  args: {user: postgres, database: synapse, host: 127.0.0.1, port: $PG_PORT, cp_min: 5, cp_max: 10}
YAML
    else
        cat >"$dir/database.yaml" <<YAML
database:
  name: sqlite3
  args: {database: $dir/homeserver.db}
YAML
    fi
    local big='{per_second: 100000, burst_count: 1000000}'
    cat >"$dir/bench.yaml" <<YAML
# Load-test overrides (bench/synapse.sh). Loopback only.
listeners:
  - {port: $port, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{names: [client], compress: false}]}
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "bench-shared-secret"
bcrypt_rounds: 4
presence: {enabled: false}
url_preview_enabled: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
rc_message: $big
rc_registration: $big
rc_registration_token_validity: $big
rc_login: {address: $big, account: $big, failed_attempts: $big}
rc_joins: {local: $big, remote: $big}
rc_joins_per_room: $big
rc_invites: {per_room: $big, per_user: $big, per_issuer: $big}
rc_3pid_validation: $big
rc_admin_redaction: $big
rc_room_creation: $big
rc_presence: {per_user: $big}
rc_delayed_event_mgmt: $big
rc_reports: $big
rc_media_create: $big
rc_send_email: {per_second: 1000, burst_count: 1000}
rc_federation: {window_size: 1000, sleep_limit: 100000, sleep_delay: 0, reject_limit: 100000, concurrent: 1000}
log_config: "$dir/log.yaml"
${SYNAPSE_CONFIG_EXTRA:-}
YAML
    cat >"$dir/log.yaml" <<YAML
version: 1
formatters: {precise: {format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'}}
handlers: {file: {class: logging.FileHandler, formatter: precise, filename: $dir/homeserver.log}}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
YAML
    ( ulimit -n "$(ulimit -Hn)"; cd "$dir" && exec "$VENV/bin/python" -m synapse.app.homeserver \
        -c "$dir/homeserver.yaml" -c "$dir/database.yaml" -c "$dir/bench.yaml" >"$dir/stdout.log" 2>&1 ) &
    local spid=$!
    echo "$spid" >"$dir/synapse.pid"
    for _ in $(seq 1 120); do
        if curl -sf "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1; then
            echo "SYNAPSE_PID=$spid"; [ -n "$pgpid" ] && echo "POSTGRES_PID=$pgpid"; return 0
        fi
        if ! kill -0 "$spid" 2>/dev/null; then echo "synapse exited; see $dir/stdout.log" >&2; tail -20 "$dir/stdout.log" >&2; return 1; fi
        sleep 0.5
    done
    echo "synapse did not answer on 127.0.0.1:$port within 60 s" >&2; return 1
}

stop() {
    local dir=$1
    if [ -f "$dir/synapse.pid" ]; then
        local p; p=$(cat "$dir/synapse.pid"); kill "$p" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
        rm -f "$dir/synapse.pid"
    fi
    if [ -f "$dir/pg/postmaster.pid" ]; then as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null || true; fi
}

case ${1:-} in
    install) install ;;
    start) start "$2" "$3" "$4" ;;
    stop) stop "$2" ;;
    *) echo "usage: $0 install | start sqlite|postgres DIR PORT | stop DIR" >&2; exit 2 ;;
esac
