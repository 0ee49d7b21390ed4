"""An HTTP/1.1 client on a usernet host: ``usernet.http.get(host, url)``.

The protocol is :class:`usernet.proto.http.ClientConnection` (sans-IO); this module moves its bytes over
usernet sockets (``host.wrap_tls`` for ``https://``), follows redirects and keeps connections alive.
Names go through the host's resolver (hosts table, then its DNS client). A :class:`Client` keeps one
idle connection per origin between requests; :func:`get` uses a fresh one for one fetch and its
redirects.

Errors are ``OSError`` subclasses: :class:`HttpProtocolError` (EPROTO) for a malformed response,
:class:`IncompleteBody` (EPROTO) for a body cut short, :class:`TooManyRedirects` (ELOOP),
``TimeoutError``, ``socket.gaierror`` for names, ``ssl.SSLError`` / ``ssl.SSLCertVerificationError``.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from usernet.proto.http import NEED_DATA, ClientConnection, Data, EndOfMessage, ProtocolError, format_request_head
from usernet.proto.http import Response as _Head

__all__ = ["Client", "Headers", "HttpError", "HttpProtocolError", "IncompleteBody", "Response",
           "TooManyRedirects", "get", "post"]

_RECV = 65536              # one socket read; also the largest piece a stream holds
_MAX_BODY = 256 << 20      # a body kept in memory (stream=False) larger than this is refused
_DRAIN = 256 << 10         # a redirect's body up to this is read to keep the connection; more: closed
_MAX_INTERIM = 16          # 1xx responses before the final one
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"}  # RFC 9110 9.2.2


class HttpError(OSError):
    """Base of the client's own errors."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)


class HttpProtocolError(HttpError):
    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, message)


class IncompleteBody(HttpError):
    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, message)


class TooManyRedirects(HttpError):
    def __init__(self, message: str) -> None:
        super().__init__(errno.ELOOP, message)


class Headers:
    """Response fields: case-insensitive, several values per name kept in order (``str``, latin-1)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The field's value (several lines joined with ``, ``), or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(n for n, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _Origin:
    __slots__ = ("scheme", "host", "port")

    def __init__(self, scheme: str, host: str, port: int) -> None:
        self.scheme, self.host, self.port = scheme, host, port

    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    def authority(self) -> str:
        return self.host if _DEFAULT_PORTS[self.scheme] == self.port else f"{self.host}:{self.port}"


def _split_url(url: str) -> tuple[_Origin, str]:
    """(origin, request target) of an absolute http(s) URL; ValueError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{url}: only http:// and https:// URLs")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url}: user information in URLs is not supported")
    hostname = parts.hostname
    if not hostname:
        raise ValueError(f"{url}: no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"{url}: bad port") from None
    # Non-ASCII and spaces in the path or query are percent-encoded (RFC 3986 2.1); the rest is kept.
    safe = "/%:@!$&'()*+,;=-._~?"
    target = quote(parts.path or "/", safe=safe)
    if parts.query:
        target += "?" + quote(parts.query, safe=safe)
    return _Origin(scheme, hostname.lower(), port), target


class _Conn:
    """One connection: the socket (plain or TLS) and its response parser."""

    def __init__(self, sock: Any, origin: _Origin) -> None:
        self.sock = sock
        self.origin = origin
        self.parser = ClientConnection()
        self.used = 0  # requests sent on it

    def send(self, head: bytes, body: bytes | None) -> None:
        self.sock.sendall(head + body if body and len(body) < 16384 else head)
        if body and len(body) >= 16384:
            self.sock.sendall(body)
        self.used += 1

    def next_event(self) -> Any:
        while True:
            event = self.parser.next_event()
            if event is not NEED_DATA:
                return event
            self.parser.receive_data(self.sock.recv(_RECV))

    def reusable(self) -> bool:
        return self.parser.buffered == 0 and not self.parser.eof and self.parser.method is None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Response:
    """A response: ``status``, ``reason``, ``version``, ``headers`` (:class:`Headers`), ``url`` (after
    redirects), ``history`` (the redirect responses, bodies dropped) and the body: ``body`` (bytes),
    or for ``stream=True`` :meth:`read`, :meth:`iter_content` / iteration, reading as it goes in bounded
    memory. ``close()`` (or the ``with`` block) gives the connection back or closes it."""

    def __init__(self, client: Client, conn: _Conn, head: _Head, url: str, method: str) -> None:
        self._client = client
        self._conn: _Conn | None = conn
        self.status = head.status
        self.reason = head.reason.decode("latin-1")
        self.version = "HTTP/" + head.version.decode()
        self.headers = Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers)
        self.url = url
        self.method = method
        self.history: list[Response] = []
        self.content_length = head.content_length
        self._keep_alive = head.keep_alive
        self._pending = b""
        self._done = False
        self._body: bytes | None = None
        self._received = 0

    def __repr__(self) -> str:
        return f"<usernet http Response {self.status} {self.reason} {self.url}>"

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ok(self) -> bool:
        return self.status < 400

    def _next_piece(self) -> bytes:
        """The next piece of the body, b"" at its end (the connection then goes back to the client)."""
        if self._pending:
            piece, self._pending = self._pending, b""
            return piece
        if self._done or self._conn is None:
            return b""
        conn = self._conn
        try:
            event = conn.next_event()
        except BaseException:
            self._release(False)
            raise
        if isinstance(event, Data):
            self._received += len(event.data)
            return event.data
        if isinstance(event, EndOfMessage):
            self._done = True
            self._release(self._keep_alive)
            return b""
        self._release(False)
        assert isinstance(event, ProtocolError)
        if event.reason == "body cut short":
            expected = f" of {self.content_length}" if self.content_length is not None else ""
            raise IncompleteBody(f"{self.url}: connection closed after {self._received}{expected} body bytes")
        raise HttpProtocolError(f"{self.url}: bad response body ({event.reason})")

    def _release(self, keep: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._give_back(conn, keep)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` body bytes (all the rest when ``n`` < 0); b"" at the end."""
        if self._body is not None:
            data, self._body = self._body, b""
            if n >= 0 and len(data) > n:
                data, self._body = data[:n], data[n:]
            return data
        if n < 0:
            out = bytearray()
            while piece := self._next_piece():
                out += piece
            return bytes(out)
        piece = self._next_piece()
        if len(piece) > n:
            piece, self._pending = piece[:n], piece[n:]
        return piece

    def iter_content(self, chunk_size: int = _RECV) -> Iterator[bytes]:
        while piece := self.read(chunk_size):
            yield piece

    __iter__ = iter_content

    @property
    def body(self) -> bytes:
        """The whole body (read now when streaming, up to the in-memory bound)."""
        if self._body is None:
            self._load(_MAX_BODY)
        assert self._body is not None
        return self._body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def _load(self, limit: int) -> None:
        out = bytearray()
        while piece := self._next_piece():
            out += piece
            if len(out) > limit:
                self._release(False)
                raise HttpError(errno.EFBIG, f"{self.url}: body larger than {limit} bytes (use stream=True)")
        self._body = bytes(out)

    def _drain(self) -> None:
        """Read (to keep the connection) or drop a body nobody wants."""
        if self._conn is None:
            return
        if self.content_length is not None and self.content_length <= _DRAIN:
            try:
                self._load(_DRAIN)
            except OSError:
                pass
        self.close()
        self._body = b""

    def close(self) -> None:
        if self._conn is not None:
            self._release(False)  # the rest of the body is unread: the connection cannot be reused


class Client:
    """Requests on one usernet host with connections kept alive per origin (one idle each)."""

    def __init__(self, host: Any, *, timeout: float | None = 10.0, cafile: str | None = None,
                 insecure: bool = False, context: ssl.SSLContext | None = None, max_idle: int = 8) -> None:
        self.host = host
        self.timeout = timeout
        self._cafile, self._insecure, self._context = cafile, insecure, context
        self._idle: dict[tuple[str, str, int], _Conn] = {}
        self.max_idle = max_idle
        self.connections = 0  # opened so far

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        idle, self._idle = self._idle, {}
        for conn in idle.values():
            conn.close()

    def tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context(cafile=self._cafile)
            if self._insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    def _give_back(self, conn: _Conn, keep: bool) -> None:
        key = conn.origin.key()
        if keep and conn.reusable() and key not in self._idle and len(self._idle) < self.max_idle:
            self._idle[key] = conn
        else:
            conn.close()

    def _connect(self, origin: _Origin) -> _Conn:
        addresses = self.host.resolve_all(origin.host, timeout=self.timeout)
        error: OSError | None = None
        for address in addresses:
            try:
                sock = self.host.create_connection((address, origin.port), timeout=self.timeout)
            except OSError as err:
                error = err
                continue
            if origin.scheme == "https":
                sock = self.host.wrap_tls(sock, self.tls_context(), server_hostname=origin.host)
            self.connections += 1
            return _Conn(sock, origin)
        assert error is not None
        raise error

    def _exchange(self, origin: _Origin, method: str, target: str, headers: list[tuple[str, str]],
                  body: bytes | None, url: str) -> Response:
        head = format_request_head(method, target, headers)
        conn = self._idle.pop(origin.key(), None)
        reused = conn is not None
        if conn is None:
            conn = self._connect(origin)
        while True:
            try:
                conn.parser.start_request(method.encode())
                conn.send(head, body)
                event = conn.next_event()
                for _ in range(_MAX_INTERIM):
                    if not (isinstance(event, _Head) and event.status < 200 and event.status != 101):
                        break
                    event = conn.next_event()  # 100 Continue and friends: the final response follows
            except (ConnectionError, ssl.SSLEOFError):
                conn.close()
                if not reused:
                    raise
                event = ProtocolError(0, "closed before a response")
            except BaseException:
                conn.close()
                raise
            if isinstance(event, ProtocolError) and event.reason == "closed before a response" and reused \
                    and method in _IDEMPOTENT:
                # An idle connection the server had closed: once more on a new one, for a request that
                # may be repeated (RFC 9112 9.3.1).
                conn.close()
                conn, reused = self._connect(origin), False
                continue
            break
        if not isinstance(event, _Head):
            conn.close()
            reason = event.reason if isinstance(event, ProtocolError) else "too many interim responses"
            raise HttpProtocolError(f"{url}: bad response ({reason})")
        return Response(self, conn, event, url, method)

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                data: bytes | str | None = None, max_redirects: int = 5, stream: bool = False) -> Response:
        """Send one request, follow redirects (up to ``max_redirects``; 0 returns the 3xx itself) and
        return the final response. 301/302 turn a POST into a GET, 303 anything but HEAD into a GET (the
        body dropped); 307/308 repeat method and body (RFC 9110 15.4)."""
        method = method.upper()
        if isinstance(data, str):
            data = data.encode("utf-8")
        items = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        history: list[Response] = []
        while True:
            origin, target = _split_url(url)
            names = {n.lower() for n, _ in items}
            request_headers = [("Host", origin.authority())] if "host" not in names else []
            request_headers += items
            if "user-agent" not in names:
                request_headers.append(("User-Agent", "usernet"))
            if "accept" not in names:
                request_headers.append(("Accept", "*/*"))
            if data is not None and "content-length" not in names:
                request_headers.append(("Content-Length", str(len(data))))
            response = self._exchange(origin, method, target, request_headers, data, url)
            location = response.headers.get("location")
            if response.status not in _REDIRECTS or location is None or max_redirects <= 0:
                break
            if len(history) >= max_redirects:
                response.close()
                raise TooManyRedirects(f"{url}: more than {max_redirects} redirects")
            response._drain()
            history.append(response)
            new_url = urljoin(url, location.strip())
            new_origin, _ = _split_url(new_url)
            if response.status == 303 and method != "HEAD" or response.status in (301, 302) and method == "POST":
                method, data = "GET", None
                items = [(n, v) for n, v in items if n.lower() not in ("content-length", "content-type",
                                                                       "transfer-encoding")]
            if new_origin.key() != origin.key():
                # Credentials and the Host field belong to the old origin.
                items = [(n, v) for n, v in items if n.lower() not in ("authorization", "cookie", "host")]
            url = new_url
        response.history = history
        if not stream:
            try:
                response._load(_MAX_BODY)
            except BaseException:
                response.close()
                raise
        return response

    def get(self, url: str, **kw: Any) -> Response:
        return self.request(kw.pop("method", "GET"), url, **kw)

    def post(self, url: str, data: bytes | str | None = None, **kw: Any) -> Response:
        return self.request("POST", url, data=b"" if data is None else data, **kw)


_HeaderArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


def get(host: Any, url: str, *, method: str = "GET", headers: _HeaderArg = None,
        data: bytes | str | None = None, timeout: float | None = 10.0, max_redirects: int = 5,
        cafile: str | None = None, insecure: bool = False, context: ssl.SSLContext | None = None,
        stream: bool = False) -> Response:
    """Fetch ``url`` from ``host`` (a usernet Host) and return a :class:`Response`. ``timeout`` bounds
    connecting and each read; ``https://`` verifies against the system store, or ``cafile``, or uses
    ``context``; ``insecure=True`` turns verification off. With ``stream=True`` the body is read as
    the caller reads it (``read``, iteration), and the connection is closed when the response is."""
    client = Client(host, timeout=timeout, cafile=cafile, insecure=insecure, context=context, max_idle=1)
    try:
        response = client.request(method, url, headers=headers, data=data, max_redirects=max_redirects,
                                  stream=stream)
    except BaseException:
        client.close()
        raise
    client.close()  # idle connections left by redirects
    client.max_idle = 0  # and a streamed body's connection is closed at its end
    return response


def post(host: Any, url: str, data: bytes | str | None = None, **kw: Any) -> Response:
    """``get(host, url, method="POST", data=data, ...)``."""
    return get(host, url, method="POST", data=b"" if data is None else data, **kw)
