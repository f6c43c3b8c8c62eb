#!/bin/bash
# Entrypoint of images/postgres: as root, own the data folder and drop to postgres (999); on an empty
# PGDATA, initdb with the superuser password (POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD), run
# /docker-entrypoint-initdb.d/* on a socket-only server (*.sh: executed if executable, else sourced;
# *.sql: psql), then exec postgres listening on every address (the port: PGPORT, default 5432).
set -euo pipefail
if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password="${POSTGRES_PASSWORD:-}"
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        password="$(cat "$POSTGRES_PASSWORD_FILE")"
    fi
    if [ -z "$password" ]; then
        echo "postgres: set POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD" >&2
        exit 1
    fi
    initdb --username=postgres --pwfile=<(printf '%s\n' "$password") --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl --wait --silent --options "-c listen_addresses=''" start >/dev/null
    for init in /docker-entrypoint-initdb.d/*; do
        case "$init" in
            *.sh) if [ -x "$init" ]; then "$init"; else . "$init"; fi ;;
            *.sql) psql -v ON_ERROR_STOP=1 --username postgres --no-password --quiet -f "$init" ;;
            *) ;;
        esac
        echo "postgres: ran $init"
    done
    pg_ctl --wait --silent --mode fast stop
    echo "postgres: initialised $PGDATA"
fi
shift
exec postgres -c listen_addresses='*' "$@"
