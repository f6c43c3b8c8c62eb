#!/bin/bash
# The probes of charts/mariadb: --connect (the server answers) and --innodb_initialized (InnoDB is up), as the
# unprivileged healthcheck@localhost user the entrypoint made (its password in the data folder).
set -euo pipefail
cnf=(--defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf)
for check in "$@"; do
    case "$check" in
        --connect) mariadb-admin "${cnf[@]}" ping >/dev/null ;;
        --innodb_initialized)
            [ "$(mariadb "${cnf[@]}" -N -e "SELECT 1 FROM information_schema.ENGINES WHERE engine = 'InnoDB' AND support IN ('YES', 'DEFAULT')")" = 1 ] ;;
        *) echo "healthcheck.sh: unknown check $check" >&2; exit 2 ;;
    esac
done
