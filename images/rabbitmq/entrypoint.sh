#!/bin/bash
# Entrypoint of images/rabbitmq: as root, own /var/lib/rabbitmq and drop to rabbitmq; write the config
# (the default user from RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS, allowed from any address), then exec
# the server in the foreground.
set -euo pipefail
if [ "$1" != rabbitmq-server ]; then
    exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
    # The Erlang cookie, made here as the server's: the chart's exec probes (rabbitmq-diagnostics) run as
    # root with HOME=/var/lib/rabbitmq and would otherwise create it root-owned when they run first, and the
    # server would then stop at "Error when reading /var/lib/rabbitmq/.erlang.cookie: eacces" (the region
    # test, issue #15). chown also repairs a volume where that already happened.
    cookie=/var/lib/rabbitmq/.erlang.cookie
    if [ ! -s "$cookie" ]; then
        (umask 077 && head -c 30 /dev/urandom | od -An -tx1 | tr -dc 0-9a-f >"$cookie")
    fi
    chown rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq "$cookie"
    chmod 0400 "$cookie"
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
