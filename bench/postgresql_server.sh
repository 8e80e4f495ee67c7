#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for benchmarks (bench/recorder_overhead) and manual tries.
#
#   bash bench/postgresql_server.sh start [DIR]   initdb + start; prints the DSN on stdout (last line)
#   bash bench/postgresql_server.sh dsn   [DIR]   print the DSN of the running server again
#   bash bench/postgresql_server.sh stop  [DIR]   stop the server and remove DIR
#   bash bench/postgresql_server.sh halt  [DIR]   stop the server and keep DIR (a large ledger built over hours)
#   bash bench/postgresql_server.sh resume [DIR]  start a halted server in DIR again (same port); prints the DSN
#   bash bench/postgresql_server.sh pooler [DIR]  PgBouncer in front of the running server; prints its DSN
#
# DIR defaults to /tmp/changeops-bench-pg. Uses Debian's server binaries (/usr/lib/postgresql/<v>/bin,
# `apt-get install postgresql`); as root, initdb and the server run as the `postgres` user, since initdb
# refuses root. Only 127.0.0.1 is listened on, with scram-sha-256 password authentication and the
# default durability settings (fsync on), so the figures are those of a real, if local, server. Its memory is
# set as PostgreSQL's manual advises for a dedicated server ("Resource Consumption"): shared_buffers a quarter of
# the machine's memory (at most 8 GB) and effective_cache_size half of it, not the defaults (128 MB, 4 GB) that
# read a multi-gigabyte ledger through the kernel's cache; CHANGEOPS_BENCH_PG_SHARED_BUFFERS (e.g. 128MB) and
# CHANGEOPS_BENCH_PG_CACHE_SIZE set them, applied by start and resume. The pooler is Debian's PgBouncer
# (`apt-get install pgbouncer`) on another loopback port, in session mode (a client keeps its server connection until
# it disconnects, so everything a driver does works) with scram-sha-256 between client and pooler: a connection a
# gate task opens gets a server connection the pool kept open, not a new server process with cold caches (see
# docs/change-gate.md, "Cost"). halt and stop stop it too.
#
# Benchmark the recorder against it:
#   DSN=$(bash bench/postgresql_server.sh start | tail -n1)
#   .venv/bin/python bench/recorder_overhead/run.py --backend postgresql --dsn "$DSN"
#   bash bench/postgresql_server.sh stop
set -euo pipefail

action="${1:-}"
dir="${2:-/tmp/changeops-bench-pg}"
db=changeops_bench

die() { echo "postgresql_server.sh: $*" >&2; exit 1; }

bin_dir() {
    local d
    while read -r d; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -n -r)
    die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: apt-get install postgresql"
}

memory_options() {
    # (MemTotal in kB; a quarter of it, at most 8 GB, in MB)
    local total_kb
    total_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    local buffers="${CHANGEOPS_BENCH_PG_SHARED_BUFFERS:-$(( total_kb / 4 / 1024 > 8192 ? 8192 : total_kb / 4 / 1024 ))MB}"
    local cache="${CHANGEOPS_BENCH_PG_CACHE_SIZE:-$(( total_kb / 2 / 1024 ))MB}"
    echo "-c shared_buffers=$buffers -c effective_cache_size=$cache"
}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

dsn() {
    if [ ! -f "$dir/port" ] || [ ! -f "$dir/password" ]; then die "no server in $dir (run: $0 start $dir)"; fi
    echo "postgresql://postgres:$(cat "$dir/password")@127.0.0.1:${1:-$(cat "$dir/port")}/$db"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_pooler() {
    if [ -f "$dir/pooler/pgbouncer.pid" ]; then
        kill "$(cat "$dir/pooler/pgbouncer.pid")" 2>/dev/null || true
        rm -f "$dir/pooler/pgbouncer.pid"
    fi
}

case "$action" in
start)
    [ ! -e "$dir" ] || die "$dir exists: stop that server first ($0 stop $dir) or give another directory"
    bin="$(bin_dir)"
    mkdir -p "$dir" && chmod 700 "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    port="$(free_port)"
    password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
    (umask 077; echo "$password" >"$dir/pwfile"; echo "$password" >"$dir/password"; echo "$port" >"$dir/port")
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir/pwfile"
    (cd "$dir" && as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile "$dir/pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >"$dir/initdb.log") || die "initdb failed: see $dir/initdb.log"
    rm -f "$dir/pwfile"
    (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $(memory_options)" start >/dev/null) \
        || die "the server did not start: see $dir/server.log"
    as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt -c "CREATE DATABASE $db" >/dev/null
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir" >&2
    dsn
    ;;
dsn)
    dsn
    ;;
pooler)
    [ -f "$dir/data/postmaster.pid" ] || die "no running server in $dir (run: $0 start $dir)"
    pgbouncer="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
    [ -x "$pgbouncer" ] || die "no PgBouncer: apt-get install pgbouncer"
    if [ ! -f "$dir/pooler/pgbouncer.pid" ]; then
        mkdir -p "$dir/pooler" && chmod 700 "$dir/pooler"
        pooler_port="$(free_port)"
        (umask 077
         echo "$pooler_port" >"$dir/pooler/port"
         # (the password in the pooler's auth file: PgBouncer signs in to the server with it)
         echo "\"postgres\" \"$(cat "$dir/password")\"" >"$dir/pooler/userlist.txt"
         cat >"$dir/pooler/pgbouncer.ini" <<EOF
[databases]
$db = host=127.0.0.1 port=$(cat "$dir/port") dbname=$db
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pooler_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/pooler/userlist.txt
pool_mode = session
default_pool_size = 20
logfile = $dir/pooler/pgbouncer.log
pidfile = $dir/pooler/pgbouncer.pid
EOF
        )
        [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir/pooler"
        as_owner "$pgbouncer" -d "$dir/pooler/pgbouncer.ini" || die "PgBouncer did not start: see $dir/pooler/pgbouncer.log"
    fi
    echo "PgBouncer on 127.0.0.1:$(cat "$dir/pooler/port") in front of the server of $dir" >&2
    dsn "$(cat "$dir/pooler/port")"
    ;;
halt)
    stop_pooler
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    (cd "$dir" && as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null)
    ;;
resume)
    if [ ! -d "$dir/data" ] || [ ! -f "$dir/port" ]; then die "no halted server in $dir (run: $0 start $dir)"; fi
    # (pg_ctl status, not the pid file: a server killed with the machine leaves its postmaster.pid behind)
    if ! as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        port="$(cat "$dir/port")"
        (cd "$dir" && as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 300 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $(memory_options)" start >/dev/null) \
            || die "the server did not start: see $dir/server.log"
    fi
    dsn
    ;;
stop)
    [ -d "$dir" ] || exit 0
    stop_pooler
    if [ -f "$dir/data/postmaster.pid" ]; then
        (cd "$dir" && as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null)
    fi
    rm -rf "$dir"
    ;;
*)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
