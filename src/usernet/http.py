"""HTTP over usernet: ``usernet.http.serve(host, app, port)`` serves a WSGI application from a usernet host.

The server lives in :mod:`usernet.apps.http` (static files, WSGI, timeouts and limits) on the sans-IO
parser of :mod:`usernet.proto.http`.
"""

from __future__ import annotations

from usernet.apps.http import HttpServer, serve, serve_directory

__all__ = ["HttpServer", "serve", "serve_directory"]
