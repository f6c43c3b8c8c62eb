#!/bin/bash
# Entrypoint of images/rabbitmq: as root, own /var/lib/rabbitmq and drop to rabbitmq; write the config
# (the default user from RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS, allowed from any address), then exec
# the server in the foreground.
set -euo pipefail
if [ "$1" != rabbitmq-server ]; then
    exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
    chown rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
fi
umask 077
{
    echo "loopback_users = none"
    if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
        echo "default_user = $RABBITMQ_DEFAULT_USER"
        echo "default_pass = ${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS is not set}"
    fi
    echo "listeners.tcp.default = ${RABBITMQ_NODE_PORT:-5672}"
} >"$RABBITMQ_CONFIG_FILE"
unset RABBITMQ_DEFAULT_PASS
exec "$@"
