"""
Serve Keystone's WSGI application with the standard library, as this example's service command.

The keystone wheel ships no server script any more; its WSGI entry point is the module
``keystone.wsgi.api``. This file needs nothing beyond Python and keystone: a threading
``wsgiref`` server bound to ``[wsgi_server] bind_host`` / ``bind_port`` of the keystone.conf that
``OS_KEYSTONE_CONFIG_DIR`` (default ``/etc/keystone``) points to. SIGTERM stops it cleanly with
status 0, so ``kubectl delete pod`` / ``podman stop`` do not need SIGKILL. Production images would
run uwsgi, gunicorn or Apache mod_wsgi instead; kolla-entry does not care which.
"""

from __future__ import annotations

import contextlib
import signal
import socketserver
import sys
import types
from typing import NoReturn, Optional
from wsgiref.simple_server import WSGIServer, make_server

# keystone's oslo.config parses sys.argv when the application is built: hide our own arguments.
sys.argv = sys.argv[:1]

from keystone.conf import CONF  # noqa: E402
from keystone.wsgi.api import application  # noqa: E402  (loads keystone.conf)
from oslo_config import cfg  # noqa: E402

_SERVER_OPTS = [
    cfg.HostAddressOpt("bind_host", default="0.0.0.0", help="Address to listen on."),
    cfg.PortOpt("bind_port", default=5000, help="Port to listen on."),
]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A wsgiref server that answers each request in its own thread."""

    daemon_threads = True


def _stop(signum: int, frame: Optional[types.FrameType]) -> NoReturn:
    """Turn SIGTERM into a normal exit (status 0)."""
    raise SystemExit(0)


def main() -> None:
    """Bind as keystone.conf says and serve until SIGTERM or Ctrl-C."""
    CONF.register_opts(_SERVER_OPTS, group="wsgi_server")
    host, port = CONF.wsgi_server.bind_host, CONF.wsgi_server.bind_port
    signal.signal(signal.SIGTERM, _stop)
    with make_server(host, port, application, server_class=ThreadingWSGIServer) as server:
        print(f"keystone_wsgi: serving on http://{host}:{port}/", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in the demo's terminal
            server.serve_forever()


if __name__ == "__main__":
    main()
