#!/bin/bash
# The server of the node's stand-in for Bitnami's PostgreSQL image, honouring the environment
# the Bitnami chart passes (POSTGRESQL_* names, and the POSTGRES_* aliases; *_FILE variants):
#   run.sh --setup   initialise the data folder when it is empty (initdb; the postgres user's
#                    password; POSTGRESQL_USERNAME/DATABASE created when not postgres), then
#                    write postgresql.conf and pg_hba.conf into /opt/bitnami/postgresql/conf
#   run.sh           start the server in the foreground (the image's command)
# A data folder that holds a cluster is kept as it is: passwords and users are set only once.
set -euo pipefail

for name in POSTGRESQL_PASSWORD POSTGRES_PASSWORD POSTGRESQL_POSTGRES_PASSWORD POSTGRES_POSTGRES_PASSWORD; do
    file_var="${name}_FILE"
    if [[ -n "${!file_var:-}" ]]; then
        export "$name=$(<"${!file_var}")"
    fi
done

base=/opt/bitnami/postgresql
conf="$base/conf"
tmp="$base/tmp"
volume="${POSTGRESQL_VOLUME_DIR:-/bitnami/postgresql}"
data="${POSTGRESQL_DATA_DIR:-${POSTGRES_DATA_DIR:-${PGDATA:-$volume/data}}}"
port="${POSTGRESQL_PORT_NUMBER:-${POSTGRES_PORT_NUMBER:-5432}}"
user="${POSTGRESQL_USERNAME:-${POSTGRES_USERNAME:-${POSTGRES_USER:-${POSTGRESQL_USER:-postgres}}}}"
password="${POSTGRESQL_PASSWORD:-${POSTGRES_PASSWORD:-}}"
postgres_password="${POSTGRESQL_POSTGRES_PASSWORD:-${POSTGRES_POSTGRES_PASSWORD:-}}"
database="${POSTGRESQL_DATABASE:-${POSTGRES_DATABASE:-${POSTGRES_DB:-postgres}}}"
allow_empty="${ALLOW_EMPTY_PASSWORD:-no}"
preload="${POSTGRESQL_SHARED_PRELOAD_LIBRARIES-${POSTGRES_SHARED_PRELOAD_LIBRARIES-pgaudit}}"

on_off() { case "${1,,}" in true | yes | on | 1) echo on ;; *) echo off ;; esac; }

# A uid without a passwd entry (initdb needs one): nss_wrapper, as Bitnami's image does.
if ! whoami >/dev/null 2>&1 && [[ -f /usr/lib/x86_64-linux-gnu/libnss_wrapper.so ]]; then
    export NSS_WRAPPER_PASSWD="$tmp/passwd" NSS_WRAPPER_GROUP="$tmp/group"
    echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$volume:/bin/false" >"$NSS_WRAPPER_PASSWD"
    echo "postgres:x:$(id -g):" >"$NSS_WRAPPER_GROUP"
    export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so
fi

write_config() {
    local libraries=() lib
    for lib in ${preload//,/ }; do
        if [[ -f "/usr/lib/postgresql/15/lib/${lib}.so" ]]; then libraries+=("$lib"); fi
    done
    {
        echo "listen_addresses = '*'"
        echo "port = $port"
        echo "unix_socket_directories = '$tmp'"
        echo "hba_file = '$conf/pg_hba.conf'"
        echo "shared_preload_libraries = '$(IFS=,; echo "${libraries[*]}")'"
        echo "client_min_messages = ${POSTGRESQL_CLIENT_MIN_MESSAGES:-error}"
        echo "log_connections = $(on_off "${POSTGRESQL_LOG_CONNECTIONS:-false}")"
        echo "log_disconnections = $(on_off "${POSTGRESQL_LOG_DISCONNECTIONS:-false}")"
        echo "log_hostname = $(on_off "${POSTGRESQL_LOG_HOSTNAME:-false}")"
        echo "fsync = $(on_off "${POSTGRESQL_FSYNC:-on}")"
        if [[ " ${libraries[*]} " == *" pgaudit "* ]]; then
            echo "pgaudit.log_catalog = $(on_off "${POSTGRESQL_PGAUDIT_LOG_CATALOG:-on}")"
            if [[ -n "${POSTGRESQL_PGAUDIT_LOG:-}" ]]; then echo "pgaudit.log = '${POSTGRESQL_PGAUDIT_LOG}'"; fi
        fi
        if [[ -n "${POSTGRESQL_MAX_CONNECTIONS:-}" ]]; then echo "max_connections = ${POSTGRESQL_MAX_CONNECTIONS}"; fi
        if [[ -n "${POSTGRESQL_TIMEZONE:-}" ]]; then echo "timezone = '${POSTGRESQL_TIMEZONE}'"; fi
        if [[ -f "$volume/conf/conf.d/override.conf" ]]; then echo "include '$volume/conf/conf.d/override.conf'"; fi
    } >"$conf/postgresql.conf"
    local method=md5
    if [[ -z "$password" && "$allow_empty" == yes ]]; then method=trust; fi
    {
        echo "local all all trust"
        echo "host all all 0.0.0.0/0 $method"
        echo "host all all ::/0 $method"
    } >"$conf/pg_hba.conf"
}

sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }
sql_name() { printf '"%s"' "${1//\"/\"\"}"; }

initialise() {
    echo "postgresql: initialising an empty data folder $data"
    mkdir -p "$data"
    chmod 700 "$data"
    local superuser_password="$postgres_password"
    if [[ "$user" == postgres ]]; then superuser_password="$password"; fi
    local pwfile="$tmp/.initdb-password"
    (umask 077 && printf '%s\n' "$superuser_password" >"$pwfile")
    local args=(-D "$data" -U postgres -E UTF8 --auth-local=trust --auth-host=md5)
    if [[ -n "$superuser_password" ]]; then args+=("--pwfile=$pwfile"); fi
    # shellcheck disable=SC2086
    initdb "${args[@]}" ${POSTGRESQL_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    if [[ "$user" != postgres || "$database" != postgres ]]; then
        pg_ctl -D "$data" -w -o "-c config_file=$conf/postgresql.conf -c listen_addresses=''" start >/dev/null
        local psql=(psql -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" -U postgres -d postgres -q)
        if [[ "$user" != postgres ]]; then
            "${psql[@]}" -c "CREATE ROLE $(sql_name "$user") LOGIN PASSWORD $(sql_literal "$password")"
        fi
        if [[ "$database" != postgres ]]; then
            "${psql[@]}" -c "CREATE DATABASE $(sql_name "$database") OWNER $(sql_name "$user")"
        fi
        pg_ctl -D "$data" -w -m fast stop >/dev/null
    fi
}

if [[ "${1:-}" == --setup ]]; then
    if [[ -z "$password" && "$allow_empty" != yes ]]; then
        echo "postgresql: POSTGRESQL_PASSWORD (or POSTGRES_PASSWORD) is empty; set it, or ALLOW_EMPTY_PASSWORD=yes" >&2
        exit 1
    fi
    mkdir -p "$conf" "$tmp"
    write_config
    if [[ -s "$data/PG_VERSION" ]]; then
        echo "postgresql: data folder $data holds a cluster (PostgreSQL $(cat "$data/PG_VERSION")): kept"
    else
        initialise
    fi
    exit 0
fi

if [[ ! -f "$conf/postgresql.conf" ]]; then write_config; fi
exec postgres -D "$data" -c "config_file=$conf/postgresql.conf"
