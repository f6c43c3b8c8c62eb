#!/bin/sh
# Arguments that start with "-" are memcached's (the chart passes `-m <MB>`).
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- memcached "$@"
fi
exec "$@"
