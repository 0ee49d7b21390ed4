"""HTTP over usernet: ``usernet.http.serve(host, app, port)`` serves a WSGI application from a usernet host;
``usernet.http.get(host, url)`` (and ``post``) fetch from one, ``usernet.http.Client`` keeps connections;
``usernet.http.serve_async(host, handler, port)`` serves ``async def handler(request) -> AsyncResponse``.

The server lives in :mod:`usernet.apps.http` (static files, WSGI, timeouts and limits) on the sans-IO
parser of :mod:`usernet.proto.http`; the client in :mod:`usernet.apps.http_client`.
"""

from __future__ import annotations

from usernet.apps.http import (
    AsyncHttpServer,
    AsyncRequest,
    AsyncResponse,
    HttpServer,
    serve,
    serve_async,
    serve_directory,
)
from usernet.apps.http_client import (
    Client,
    Headers,
    HttpError,
    HttpProtocolError,
    IncompleteBody,
    Response,
    TooManyRedirects,
    get,
    post,
)

__all__ = ["AsyncHttpServer", "AsyncRequest", "AsyncResponse", "Client", "Headers", "HttpError", "HttpProtocolError",
           "HttpServer", "IncompleteBody", "Response", "TooManyRedirects", "get", "post", "serve",
           "serve_async", "serve_directory"]
