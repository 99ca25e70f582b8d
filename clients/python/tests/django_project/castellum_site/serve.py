"""Serve castellum over real HTTP: ``python -m castellum_site.serve PORT``.

A threaded ``wsgiref`` server (the agent forwards several jobs at once);
prints ``ready`` once it listens.
"""

from __future__ import annotations

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "castellum_site.settings")

from django.core.wsgi import get_wsgi_application


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("castellum: " + format % args + "\n")


def main() -> None:
    server = make_server(
        "127.0.0.1",
        int(sys.argv[1]),
        get_wsgi_application(),
        server_class=Server,
        handler_class=Handler,
    )
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
