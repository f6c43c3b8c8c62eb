#!/bin/bash
# Entrypoint of images/mariadb: as root, own /var/lib/mysql and drop to mysql (999); on an empty data folder,
# initialise it, set the root password (MARIADB_ROOT_PASSWORD_FILE or MARIADB_ROOT_PASSWORD; root@localhost
# and root@'%'), make the probes' unprivileged healthcheck@localhost user, run /docker-entrypoint-initdb.d/*
# on a socket-only server (*.sh: executed if executable, else sourced; *.sql: mariadb), then exec mariadbd.
set -euo pipefail
if [ "${1:0:1}" = - ]; then
    set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ]; then
    exec "$@"
fi
datadir=/var/lib/mysql
if [ "$(id -u)" = 0 ]; then
    chown mysql:mysql "$datadir"
    install -d -o mysql -g mysql /run/mysqld
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi
if [ ! -d "$datadir/mysql" ]; then
    password="${MARIADB_ROOT_PASSWORD:-}"
    if [ -n "${MARIADB_ROOT_PASSWORD_FILE:-}" ]; then
        password="$(cat "$MARIADB_ROOT_PASSWORD_FILE")"
    fi
    if [ -z "$password" ]; then
        echo "mariadb: set MARIADB_ROOT_PASSWORD_FILE or MARIADB_ROOT_PASSWORD" >&2
        exit 1
    fi
    mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal --skip-test-db \
        >/dev/null
    mariadbd --skip-networking --datadir="$datadir" &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --user=root ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    health="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    mariadb --user=root <<SQL
DELETE FROM mysql.global_priv WHERE User = '';
ALTER USER 'root'@'localhost' IDENTIFIED BY '${password//\'/\'\'}';
CREATE USER 'root'@'%' IDENTIFIED BY '${password//\'/\'\'}';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY '$health';
FLUSH PRIVILEGES;
SQL
    printf '[mariadb-client]\nuser = healthcheck\npassword = %s\nprotocol = socket\n' "$health" \
        >"$datadir/.my-healthcheck.cnf"
    chmod 0600 "$datadir/.my-healthcheck.cnf"
    for init in /docker-entrypoint-initdb.d/*; do
        case "$init" in
            *.sh) if [ -x "$init" ]; then "$init"; else . "$init"; fi ;;
            *.sql) mariadb --user=root --password="$password" <"$init" ;;
            *) continue ;;
        esac
        echo "mariadb: ran $init"
    done
    mariadb-admin --user=root --password="$password" shutdown
    wait "$pid"
    echo "mariadb: initialised $datadir"
fi
shift
exec mariadbd "$@"
