"""The HTTP/1.1 server on usernet sockets: static files (`--serve http:PORT:DIR`) and WSGI applications
(`--serve wsgi:PORT:MODULE:CALLABLE`, :func:`serve`).

The protocol is :mod:`usernet.proto.http`'s sans-IO parser; this module is its driver: one accept thread
per listening port and one thread per connection with blocking usernet sockets, bounded by
``max_connections`` (a client beyond it gets a 503 and is closed). Each connection has an idle timeout
(between requests) and a header timeout (from the first byte of a request to the end of its head): a
client dribbling a head byte by byte (slowloris) gets a 408 at the header timeout while other
connections go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import importlib
import logging
import mimetypes
import os
import socket as _socket
import ssl
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_to_bytes

from usernet.proto.http import (
    CONTINUE_100,
    LAST_CHUNK,
    NEED_DATA,
    Data,
    Limits,
    ProtocolError,
    Request,
    ServerConnection,
    format_response_head,
)

if TYPE_CHECKING:
    from usernet.api.host import Host

log = logging.getLogger("usernet.http")

__all__ = ["AsyncHttpServer", "AsyncRequest", "AsyncResponse", "HttpServer", "serve", "serve_async",
           "serve_directory", "load_wsgi_app", "parse_spec"]

_RECV = 65536
_FILE_BLOCK = 65536
_DRAIN_LIMIT = 1024 * 1024  # unread body bytes we read and drop to keep a connection; more: close
# Output is gathered per connection up to this many bytes and sent in one call: a head sent apart from its
# body is a small segment, and with Nagle (RFC 9293 3.7.4) the body then waits for its ACK, which a
# delayed-ACK client holds ~40 ms. Larger bodies stream; their first piece still leaves with the head.
COALESCE_LIMIT = 65536
SERVER_NAME = "usernet"


class _Closed(Exception):
    """The connection is over (peer gone, timeout, protocol error already answered)."""


def _read_deadline(parser: Any, now: float, cycle_start: float, body: bool, idle_timeout: float,
                  header_timeout: float) -> float:
    """Until when the next read may wait, for the threaded and the asyncio server alike: a body
    read the idle timeout from now; between requests the idle timeout, and within a request's
    head the header timeout (slowloris), both from the start of this request cycle."""
    if body:
        return now + idle_timeout
    return cycle_start + (idle_timeout if parser.idle else header_timeout)


class _Exchange:
    """One request on one connection: reading its body and writing its response."""

    def __init__(self, conn: _Connection, request: Request) -> None:
        self.conn, self.request = conn, request
        self.body_done = False
        self.head_sent = False
        self.continue_sent = False
        self.chunked = False
        self.close_after = not request.keep_alive
        self.head_only = request.method == b"HEAD"

    # ---- request body
    def read_body_event(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        if self.body_done:
            return None
        if self.request.expect_continue and not self.continue_sent and not self.head_sent:
            self.continue_sent = True
            self.conn.send(CONTINUE_100)
        event = self.conn.next_event(body=True)
        if isinstance(event, Data):
            return event.data
        self.body_done = True
        return None

    def drain(self) -> None:
        """Skip what the handler did not read, so the next pipelined request can be parsed."""
        if self.body_done:
            return
        if self.request.expect_continue and not self.continue_sent:
            self.close_after = True  # RFC 9110 10.1.1: the client may still send it; do not wait for it
            return
        dropped = 0
        while (piece := self.read_body_event()) is not None:
            dropped += len(piece)
            if dropped > _DRAIN_LIMIT:
                self.close_after = True
                return

    # ---- response
    def send_head(self, status: int, headers: list[tuple[str, str]], reason: str | None = None,
                  length: int | None = None) -> None:
        """Send the status line and headers. Without ``length`` (and no Content-Length among the headers)
        the body goes chunked to HTTP/1.1 clients, and the connection closes after it for HTTP/1.0."""
        names = {n.lower() for n, _ in headers}
        headers = list(headers)
        if "content-length" not in names and length is not None:
            headers.append(("Content-Length", str(length)))
            names.add("content-length")
        bodyless = self.head_only or status in (204, 304) or 100 <= status < 200
        if "content-length" not in names and not bodyless:
            if self.request.version == b"1.1":
                headers.append(("Transfer-Encoding", "chunked"))
                self.chunked = True
            else:
                self.close_after = True
        if self.conn.server.stopping:
            self.close_after = True
        if "date" not in names:
            headers.append(("Date", http_date()))
        if "server" not in names:
            headers.append(("Server", SERVER_NAME))
        if "connection" in names and any(n.lower() == "connection" and "close" in v.lower() for n, v in headers):
            self.close_after = True
        elif self.close_after:
            headers.append(("Connection", "close"))
        elif self.request.version == b"1.0":
            headers.append(("Connection", "keep-alive"))
        self.conn.send(format_response_head(status, headers, reason))
        self.head_sent = True

    def send_prepared(self, head: bytes, body: bytes | None) -> None:
        """A response whose head is ready up to (not including) Date: the static-file cache's path,
        byte for byte what :meth:`send_head` writes for the same headers, without rebuilding them.
        ``head`` must carry Content-Length; ``body`` is left out for HEAD."""
        conn = self.conn
        if conn.server.stopping:
            self.close_after = True
        if self.close_after:
            end = b"Connection: close\r\n\r\n"
        elif self.request.version == b"1.0":
            end = b"Connection: keep-alive\r\n\r\n"
        else:
            end = b"\r\n"
        if body is None or self.head_only:
            conn.send(head, _date_server(), end)
        else:
            conn.send(head, _date_server(), end, body)
        self.head_sent = True

    def write(self, data: bytes) -> None:
        """Body bytes, gathered with the head and each other up to :data:`COALESCE_LIMIT`."""
        if not data or self.head_only:
            return
        if self.chunked:
            # One write per chunk: size line, data and CRLF (RFC 9112 7.1) never leave as three segments.
            self.conn.send(b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.conn.send(data)

    def flush(self) -> None:
        self.conn.flush()

    def uncommit(self) -> bool:
        """Drop a head and body not sent yet, so a different response can replace them (True), or False
        when bytes of this response have already left."""
        if self.conn.flushed:
            return False
        self.conn.discard()
        self.head_sent = self.chunked = False
        return True

    def finish(self) -> None:
        if self.chunked and not self.head_only:
            self.conn.send(LAST_CHUNK)
        self.conn.flush()

    def simple(self, status: int, extra: list[tuple[str, str]] | None = None, body: bytes | None = None) -> None:
        """A small text response: the reason phrase as the body."""
        from usernet.proto.http import reason_phrase

        text = body if body is not None else f"{status} {reason_phrase(status)}\n".encode()
        self.send_head(status, [("Content-Type", "text/plain; charset=utf-8"), *(extra or [])], length=len(text))
        self.write(text)


Handler = Callable[[_Exchange], None]


class _Connection:
    def __init__(self, server: HttpServer, sock: Any, peer: tuple[str, int]) -> None:
        self.server, self.sock, self.peer = server, sock, peer
        self.parser = ServerConnection(server.limits)
        self.cycle_start = time.monotonic()
        self.out = bytearray()  # kept across requests: its allocation is reused
        self.flushed = False    # some of the current response has been sent

    def send(self, *pieces: bytes | bytearray | memoryview) -> None:
        """Queue response bytes; sent once COALESCE_LIMIT gathers, at :meth:`flush`, or before a read."""
        out = self.out
        for data in pieces:
            if len(out) + len(data) <= COALESCE_LIMIT:
                out += data
                continue
            view = memoryview(data)
            room = COALESCE_LIMIT - len(out)
            if out:  # fill up what is queued (the head, say) and send it with the first piece of data
                out += view[:room]
                view = view[room:]
                self.flush()
                out = self.out
            if len(view) >= COALESCE_LIMIT:
                self.flushed = True
                self.sock.sendall(view)  # big: straight from the caller's buffer, no copy
            else:
                out += view
            view.release()

    def flush(self) -> None:
        if not self.out:
            return
        self.flushed = True
        try:
            self.sock.sendall(self.out)
        finally:
            self.discard()

    def discard(self) -> None:
        try:
            self.out.clear()
        except BufferError:  # a view on it still alive (an exception's traceback): start afresh
            self.out = bytearray()

    def next_event(self, body: bool = False) -> Any:
        parser = self.parser
        while True:
            event = parser.next_event()
            if event is not NEED_DATA:
                return event
            if parser.eof:
                raise _Closed
            now = time.monotonic()
            deadline = _read_deadline(parser, now, self.cycle_start, body, self.server.idle_timeout,
                                     self.server.header_timeout)
            if self.out:
                self.flush()  # whatever we owe the client leaves before we wait on it
            if now >= deadline:
                if not parser.idle or body:
                    self.server.counters["http.timeouts"] += 1
                    self._reject(408, "request timeout")
                raise _Closed
            self.sock.settimeout(deadline - now)
            try:
                data = self.sock.recv(_RECV)
            except TimeoutError:
                continue
            except OSError:
                raise _Closed from None
            if parser.idle and data.strip(b"\r\n"):
                self.cycle_start = time.monotonic()  # the header timeout runs from the request's first byte
            parser.receive_data(data)

    def _reject(self, status: int, reason: str) -> None:
        from usernet.proto.http import reason_phrase

        body = f"{status} {reason_phrase(status)}: {reason}\n".encode()
        head = format_response_head(status, [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body))), ("Connection", "close")])
        try:
            self.sock.settimeout(5.0)
            self.sock.sendall(head + body)
        except OSError:
            return
        _linger(self.sock)

    def run(self) -> None:
        try:
            while not self.server.stopping:
                event = self.next_event()
                if isinstance(event, ProtocolError):
                    log.debug("http %s: %s (%d)", self.peer, event.reason, event.status)
                    self.server.counters["http.bad_requests"] += 1
                    self._reject(event.status, event.reason)
                    return
                assert isinstance(event, Request)
                self.server.counters["http.requests"] += 1
                exchange = _Exchange(self, event)
                self.flushed = False
                self.sock.settimeout(self.server.idle_timeout)
                self.server.handler(exchange)
                if not exchange.head_sent:
                    exchange.simple(500)
                exchange.finish()
                if exchange.close_after:
                    return
                exchange.drain()
                if exchange.close_after:
                    return
                self.cycle_start = time.monotonic()
        except (_Closed, OSError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


def _linger(sock: Any, seconds: float = 1.0, limit: int = 256 * 1024) -> None:
    """Half-close and read what the client still sends before closing: closing with unread data would
    reset the connection, and a reset can destroy the error response before the client reads it."""
    try:
        sock.shutdown(1)  # SHUT_WR
        deadline = time.monotonic() + seconds
        got = 0
        while got < limit and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                return
            got += len(data)
    except OSError:
        pass


class HttpServer:
    """A listening HTTP server on a usernet host; :meth:`close` (or the ``with`` block's end) stops it."""

    def __init__(self, host: Host, port: int, handler: Handler, *, address: str = "",
                 limits: Limits | None = None, idle_timeout: float = 30.0, header_timeout: float = 10.0,
                 max_connections: int = 256, backlog: int = 128, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.handler = host, port, handler
        self.tls = tls  # a server-side context: every connection is TLS (host.wrap_tls)
        self.limits = limits or Limits()
        self.idle_timeout, self.header_timeout = idle_timeout, header_timeout
        self.max_connections = max_connections
        self.stopping = False
        self.counters = _Counters()
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._refusing = threading.BoundedSemaphore(16)
        self.listener = host.create_server((address, port), backlog=backlog)
        self._thread = threading.Thread(target=self._accept_loop, name=f"usernet-http-{port}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                sock, peer = self.listener.accept()
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.01)
                continue
            with self._lock:
                full = len(self._conns) >= self.max_connections
                if not full:
                    conn = _Connection(self, sock, peer)
                    self._conns.add(conn)
            if full:
                self.counters["http.connections_refused"] += 1
                if self._refusing.acquire(blocking=False):
                    threading.Thread(target=self._refuse, args=(sock, peer), daemon=True).start()
                else:
                    sock.close()  # a flood: no thread each for the 503s either
                continue
            self.counters["http.connections"] += 1
            try:
                # The server writes whole responses (coalesced above): Nagle could only hold a last
                # small segment back until an ACK the client delays.
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            except OSError:
                pass
            threading.Thread(target=self._run, args=(conn,), name=f"usernet-http-{peer[0]}:{peer[1]}",
                             daemon=True).start()

    def _refuse(self, sock: Any, peer: tuple[str, int]) -> None:
        try:
            _Connection(self, sock, peer)._reject(503, "too many connections")
        finally:
            sock.close()
            self._refusing.release()

    def _run(self, conn: _Connection) -> None:
        try:
            if self.tls is not None:
                # The handshake runs on the connection's own thread: a slow or plain-text client
                # holds up nobody, and a failed handshake just ends this connection.
                conn.sock.settimeout(self.header_timeout)
                try:
                    conn.sock = self.host.wrap_tls(conn.sock, self.tls, server_side=True)
                except (OSError, ValueError) as err:
                    self.counters["http.tls_failed"] += 1
                    log.debug("TLS handshake with %s:%d failed: %s", conn.peer[0], conn.peer[1], err)
                    conn.sock.close()
                    return
            conn.run()
        finally:
            with self._lock:
                self._conns.discard(conn)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def close(self) -> None:
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.sock.close()
            except OSError:
                pass
        self._thread.join(timeout=2.0)

    stop = close

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value (RFC 9110 6.6.1), formatted once a second rather than per response."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


_date_line_cache: tuple[int, bytes] = (0, b"")


def _date_server() -> bytes:
    """The Date and Server header lines, as bytes, built once a second."""
    global _date_line_cache
    now = int(time.time())
    if _date_line_cache[0] != now:
        _date_line_cache = (now, f"Date: {http_date()}\r\nServer: {SERVER_NAME}\r\n".encode("latin-1"))
    return _date_line_cache[1]


class _Counters(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


# ==================================================================== static files

def _parse_range(value: str, size: int) -> tuple[int, int] | None | str:
    """One ``bytes=`` range to (first, last), None to ignore the header (malformed or several ranges),
    or "unsatisfiable" (RFC 9110 14.2)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first_text:
            if not last_text.isdigit():
                return None
            suffix = int(last_text)
            if suffix == 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - suffix), size - 1
        if not first_text.isdigit() or (last_text and not last_text.isdigit()):
            return None
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        return "unsatisfiable"
    if last < first:
        return None
    return first, min(last, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    weak = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == weak for tag in header.split(","))


# Small files' bytes are kept with their response head: a repeated GET of one is then an lstat per path
# component and one send, no open/read/MIME lookup/header formatting.
CACHE_FILE_MAX = 64 * 1024         # larger bodies are read per request (their metadata is still cached)
CACHE_ENTRIES = 1024
CACHE_BYTES = 16 * 1024 * 1024     # bodies held in all
# A file changed within this many ns of being read may be changed again without its mtime, ctime or
# size moving (coarse file system clocks): its body is not cached until it has been still that long.
_SETTLE_NS = 2_000_000_000
_TARGETS_MAX = 1024                # parsed request targets kept (only short ones)
_TARGET_CACHED_LEN = 512
_CONDITIONAL = frozenset((b"range", b"if-none-match", b"if-modified-since", b"if-range"))
_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class _FileEntry:
    """What a response needs from one version of one file."""

    __slots__ = ("identity", "size", "etag", "modified", "mtime", "ctype", "head", "body")

    def __init__(self, path: str, st: os.stat_result, body: bytes | None) -> None:
        self.identity = _identity(st)
        self.size = size = st.st_size
        self.etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        self.modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        self.mtime = int(st.st_mtime)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        self.ctype = ctype
        # The 200 head up to Date, in send_head's order (see _Exchange.send_prepared).
        self.head = format_response_head(200, [
            ("Content-Type", ctype), ("ETag", self.etag), ("Last-Modified", self.modified),
            ("Accept-Ranges", "bytes"), ("Content-Length", str(size))])[:-2]
        self.body = body


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class StaticFiles:
    """GET and HEAD of the files under ``root``; nothing outside it is ever opened.

    Each request looks the file up afresh (an ``lstat`` of every path component, so a replaced file or
    a new symlink counts at once); small files' bytes and response heads are cached keyed by path and
    (inode, device, size, mtime, ctime), bounded by ``cache_entries`` and ``cache_bytes``."""

    def __init__(self, root: str, *, cache_entries: int = CACHE_ENTRIES, cache_bytes: int = CACHE_BYTES,
                 cache_file_max: int = CACHE_FILE_MAX) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"{root}: not a directory")
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self.cache_entries, self.cache_bytes, self.cache_file_max = cache_entries, cache_bytes, cache_file_max
        self._cache: OrderedDict[str, _FileEntry] = OrderedDict()
        self.cached_bytes = 0
        self._lock = threading.Lock()
        self._targets: dict[bytes, tuple[int, tuple[str, ...], bool]] = {}

    # ---- finding the file
    @staticmethod
    def _parse_target(target: bytes) -> tuple[int, tuple[str, ...], bool]:
        """(status, path components, ends with "/"); status 200 or the refusal."""
        path = target.split(b"?", 1)[0].split(b"#", 1)[0]
        if path.startswith((b"http://", b"https://")):
            rest = path.split(b"//", 1)[1]
            path = b"/" + rest.split(b"/", 1)[1] if b"/" in rest else b"/"
        if not path.startswith(b"/"):
            return 400, (), False
        raw = unquote_to_bytes(path)
        if b"\0" in raw or b"\\" in raw:
            return 404, (), False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return 404, (), False
        parts = tuple(p for p in text.split("/") if p not in ("", "."))
        if ".." in parts:
            return 404, (), False
        return 200, parts, text.endswith("/")

    def locate(self, target: bytes) -> tuple[str | None, int, os.stat_result | None]:
        """(file, 200, its lstat), (redirect location, 301, None) or (None, status, None). Escapes
        (``..`` in any spelling, symlinks out, NUL, backslashes) are 404: the client learns nothing
        about what lies outside."""
        parsed = self._targets.get(target)
        if parsed is None:
            parsed = self._parse_target(target)
            if len(target) <= _TARGET_CACHED_LEN:
                if len(self._targets) >= _TARGETS_MAX:
                    self._targets.clear()
                self._targets[target] = parsed
        status, parts, slash = parsed
        if status != 200:
            return None, status, None
        full = self.root
        st: os.stat_result | None = None
        last = len(parts) - 1
        try:
            for i, part in enumerate(parts):
                full = self._prefix + part if i == 0 else full + os.sep + part
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    return self._locate_links(parts, slash)
                if i < last and not stat.S_ISDIR(st.st_mode):
                    return None, 404, None
            if st is None:
                st = os.stat(full)
            if stat.S_ISDIR(st.st_mode):
                if not slash:
                    return "/" + "/".join(parts) + "/", 301, None
                full = os.path.join(full, "index.html")
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    return self._locate_links((*parts, "index.html"), False)
        except OSError:  # missing, not a directory, name too long, no permission
            return None, 404, None
        if not stat.S_ISREG(st.st_mode):
            return None, 404, None
        return full, 200, st

    def _inside(self, full: str) -> bool:
        return full == self.root or full.startswith(self._prefix)

    def _locate_links(self, parts: tuple[str, ...], slash: bool) -> tuple[str | None, int, os.stat_result | None]:
        """:meth:`locate` where a symlink is on the way: followed, and served only if it stays inside."""
        full = os.path.realpath(os.path.join(self.root, *parts))
        if not self._inside(full):
            return None, 404, None  # a symlink out of the directory
        try:
            st = os.stat(full)
            if stat.S_ISDIR(st.st_mode):
                if not slash:
                    return "/" + "/".join(parts) + "/", 301, None
                full = os.path.realpath(os.path.join(full, "index.html"))
                if not self._inside(full):
                    return None, 404, None
                st = os.stat(full)
        except OSError:
            return None, 404, None
        if not stat.S_ISREG(st.st_mode):
            return None, 404, None
        return full, 200, st

    def resolve(self, target: bytes) -> tuple[str | None, int]:
        """The file a target names, or (None, status); (location, 301) for a directory without "/"."""
        full, status, _ = self.locate(target)
        return full, status

    # ---- the cache
    def _cached(self, path: str, st: os.stat_result) -> _FileEntry | None:
        with self._lock:
            entry = self._cache.get(path)
            if entry is None or entry.identity != _identity(st):
                return None
            self._cache.move_to_end(path)
            return entry

    def _load(self, path: str, fd: int, st: os.stat_result) -> _FileEntry:
        """The entry for the file open on ``fd`` (``st`` its fstat), its body read if small and settled."""
        body: bytes | None = None
        if st.st_size <= self.cache_file_max:
            body = os.pread(fd, st.st_size, 0) if st.st_size else b""
            if len(body) != st.st_size:
                raise _Closed  # the file shrank under us: the promised length cannot be kept
        entry = _FileEntry(path, st, body)
        if body is not None and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _SETTLE_NS:
            meta = copy.copy(entry)  # served with its body this time, read again next time
            meta.body = None
            self._store(path, meta)
        else:
            self._store(path, entry)
        return entry

    def _store(self, path: str, entry: _FileEntry) -> None:
        size = len(entry.body) if entry.body is not None else 0
        with self._lock:
            old = self._cache.pop(path, None)
            if old is not None and old.body is not None:
                self.cached_bytes -= len(old.body)
            if size > self.cache_bytes or self.cache_entries <= 0:
                return
            while self._cache and (len(self._cache) >= self.cache_entries or
                                   self.cached_bytes + size > self.cache_bytes):
                _, dropped = self._cache.popitem(last=False)
                if dropped.body is not None:
                    self.cached_bytes -= len(dropped.body)
            self._cache[path] = entry
            self.cached_bytes += size

    @property
    def cached_files(self) -> int:
        with self._lock:
            return len(self._cache)

    # ---- serving
    def __call__(self, ex: _Exchange) -> None:
        request = ex.request
        if request.method not in (b"GET", b"HEAD"):
            known = request.method in (b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT")
            ex.simple(405 if known else 501, [("Allow", "GET, HEAD")])
            return
        path, status, st = self.locate(request.target)
        if status == 301:
            assert path is not None
            ex.simple(301, [("Location", path)])
            return
        if path is None or st is None:
            ex.simple(status)
            return
        entry = self._cached(path, st)
        if entry is not None and (entry.body is not None or ex.head_only):
            self._respond(ex, entry, -1)
            return
        try:
            fd = os.open(path, _NOFOLLOW)  # a symlink swapped in since the lstat is not followed
        except OSError:
            ex.simple(404)
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                ex.simple(404)
                return
            if (entry is None or entry.identity != _identity(st)
                    or (entry.body is None and st.st_size <= self.cache_file_max)):
                entry = self._load(path, fd, st)
            self._respond(ex, entry, fd)
        finally:
            os.close(fd)

    def _respond(self, ex: _Exchange, entry: _FileEntry, fd: int) -> None:
        """Answer from ``entry``; the body from its bytes, else read from ``fd``."""
        request = ex.request
        if not any(name in _CONDITIONAL for name, _ in request.headers):
            if entry.body is not None or ex.head_only:
                ex.send_prepared(entry.head, entry.body)
                return
        etag, modified, size = entry.etag, entry.modified, entry.size
        common = [("ETag", etag), ("Last-Modified", modified), ("Accept-Ranges", "bytes")]
        if self._not_modified(request, etag, entry.mtime):
            ex.send_head(304, common)
            return
        first, last = 0, size - 1
        status = 200
        range_header = request.get(b"range")
        if_range = request.get(b"if-range")
        if range_header is not None and (if_range is None or if_range.decode("latin-1") in (etag, modified)):
            chosen = _parse_range(range_header.decode("latin-1"), size)
            if chosen == "unsatisfiable":
                ex.simple(416, [("Content-Range", f"bytes */{size}")])
                return
            if isinstance(chosen, tuple):
                first, last = chosen
                status = 206
                common.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        length = last - first + 1
        ex.send_head(status, [("Content-Type", entry.ctype), *common], length=length)
        if ex.head_only:
            return
        if entry.body is not None:
            ex.conn.send(entry.body[first:first + length])
            return
        offset, end = first, first + length
        while offset < end:
            block = os.pread(fd, min(_FILE_BLOCK, end - offset), offset)
            if not block:
                raise _Closed  # the file shrank under us: the promised length cannot be kept
            ex.conn.send(block)
            offset += len(block)

    @staticmethod
    def _not_modified(request: Request, etag: str, mtime: int) -> bool:
        inm = request.get(b"if-none-match")
        if inm is not None:  # RFC 9110 13.1.2: If-None-Match wins over If-Modified-Since
            return _etag_matches(inm.decode("latin-1"), etag)
        ims = request.get(b"if-modified-since")
        if ims is None:
            return False
        try:
            since = email.utils.parsedate_to_datetime(ims.decode("latin-1")).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
        return mtime <= since


# ==================================================================== WSGI (PEP 3333)

class WsgiInput:
    """``wsgi.input``: the request body, Content-Length or chunked, read on demand."""

    def __init__(self, exchange: _Exchange) -> None:
        self._ex = exchange
        self._buf = bytearray()

    def _fill(self, want: int) -> None:
        while want < 0 or len(self._buf) < want:
            piece = self._ex.read_body_event()
            if piece is None:
                return
            self._buf += piece

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._fill(-1)
            size = len(self._buf)
        else:
            self._fill(size)
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while b"\n" not in self._buf and (size is None or size < 0 or len(self._buf) < size):
            before = len(self._buf)
            self._fill(before + 1)
            if len(self._buf) == before:
                break
        end = self._buf.find(b"\n")
        end = len(self._buf) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, size)
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class WsgiHandler:
    def __init__(self, app: Callable[..., Iterable[bytes]], server_name: str = "usernet",
                 port: int = 80) -> None:
        self.app, self.server_name, self.port = app, server_name, port

    def environ(self, ex: _Exchange) -> dict[str, Any]:
        request = ex.request
        target = request.target
        if target.startswith((b"http://", b"https://")):
            rest = target.split(b"//", 1)[1]
            target = b"/" + rest.split(b"/", 1)[1] if b"/" in rest else b"/"
        path, _, query = target.partition(b"?")
        env: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "RAW_URI": request.target.decode("latin-1"),
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": "HTTP/" + request.version.decode("ascii"),
            "REMOTE_ADDR": ex.conn.peer[0],
            "REMOTE_PORT": str(ex.conn.peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if ex.conn.server.tls is not None else "http",
            "wsgi.input": WsgiInput(ex),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for name, value in request.headers:
            if b"_" in name:  # would alias a dash-spelt name in HTTP_*: drop, as servers do
                continue
            text = value.decode("latin-1")
            if name == b"content-type":
                env["CONTENT_TYPE"] = text
                continue
            if name == b"content-length":
                env["CONTENT_LENGTH"] = text
                continue
            key = "HTTP_" + name.decode("ascii").upper().replace("-", "_")
            env[key] = env[key] + "," + text if key in env else text
        if request.chunked:
            env.pop("CONTENT_LENGTH", None)
        return env

    def __call__(self, ex: _Exchange) -> None:
        env = self.environ(ex)
        state: dict[str, Any] = {"status": None, "headers": None}

        def write(data: bytes) -> None:
            if state["status"] is None:
                raise AssertionError("write() before start_response()")
            send_pending()
            ex.write(data)
            ex.flush()  # PEP 3333: write() must not hold data back

        def send_pending(length: int | None = None) -> None:
            if not ex.head_sent:
                code, _, reason = state["status"].partition(" ")
                ex.send_head(int(code), state["headers"], reason or None, length=length)

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
            if exc_info is not None:
                try:
                    if ex.head_sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["status"] is not None:
                raise AssertionError("start_response() called twice without exc_info")
            code = status.split(" ", 1)[0]
            if len(code) != 3 or not code.isdigit():
                raise ValueError(f"bad WSGI status {status!r}")
            state["status"], state["headers"] = status, list(headers)
            return write

        result: Iterable[bytes] | None = None
        try:
            result = self.app(env, start_response)
            if isinstance(result, (list, tuple)) and not ex.head_sent and state["status"] is not None:
                send_pending(length=sum(len(b) for b in result) if not _has_length(state["headers"]) else None)
                for block in result:
                    ex.write(block)
            else:
                for block in result:
                    if block:
                        send_pending()
                        ex.write(block)
                        ex.flush()  # PEP 3333: a block is sent before the next is asked for
                if state["status"] is None:
                    raise AssertionError("the application returned without calling start_response()")
                send_pending(length=None if _has_length(state["headers"]) or ex.head_sent else 0)
        except (_Closed, ConnectionError):
            raise
        except Exception:
            log.exception("WSGI application %r failed on %s", self.app, ex.request.target)
            ex.conn.server.counters["http.app_errors"] += 1
            if ex.head_sent and not ex.uncommit():
                raise _Closed from None  # half a response already left: only closing tells the client
            ex.close_after = True
            ex.simple(500)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing the WSGI iterable failed")


def _has_length(headers: list[tuple[str, str]]) -> bool:
    return any(n.lower() == "content-length" for n, _ in headers)


# ==================================================================== entry points

def serve(host: Host, app: Callable[..., Iterable[bytes]], port: int, **options: Any) -> HttpServer:
    """Serve the WSGI application ``app`` on ``port`` of ``host`` (threads, in the background); returns
    the server, whose ``close()`` stops it. Options: ``idle_timeout``, ``header_timeout``,
    ``max_connections``, ``limits`` (:class:`usernet.proto.http.Limits`), ``address``."""
    return HttpServer(host, port, WsgiHandler(app, port=port), **options)


def serve_directory(host: Host, directory: str, port: int, **options: Any) -> HttpServer:
    """Serve the files under ``directory`` (GET and HEAD) on ``port``."""
    return HttpServer(host, port, StaticFiles(directory), **options)


def load_wsgi_app(module: str, attribute: str) -> Callable[..., Iterable[bytes]]:
    """``MODULE:CALLABLE`` as `--serve wsgi:` names it, found in the current directory or on PYTHONPATH."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    mod = importlib.import_module(module)
    obj: Any = mod
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{module}:{attribute} is not callable")
    return obj  # type: ignore[no-any-return]


def parse_spec(spec: str) -> tuple[str, int, tuple[str, ...]]:
    """``http:PORT:DIR``, ``https:PORT:DIR,cert=PEM,key=PEM`` or
    ``wsgi:PORT:MODULE:CALLABLE[,cert=PEM,key=PEM]`` to (kind, port, rest); rest ends with the
    certificate and key paths ("" without TLS). ValueError if malformed."""
    kind, _, rest = spec.partition(":")
    port_text, _, tail = rest.partition(":")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"expected {kind}:PORT:... with PORT 1..65535")
    tail, _, option_text = tail.partition(",")
    options: dict[str, str] = {}
    for item in filter(None, option_text.split(",")):
        key, eq, value = item.partition("=")
        if key not in ("cert", "key") or not eq or not value:
            raise ValueError(f"unknown option {item!r} (cert=PEM, key=PEM)")
        options[key] = value
    tls = bool(options) or kind == "https"
    if tls:
        if set(options) != {"cert", "key"}:
            raise ValueError("TLS needs cert=PEM and key=PEM")
        for path in options.values():
            if not os.path.isfile(path):
                raise ValueError(f"{path}: no such file")
    if kind in ("http", "https"):
        if kind == "http" and tls:
            raise ValueError("cert= and key= belong to https:PORT:DIR")
        if not tail:
            raise ValueError(f"expected {kind}:PORT:DIR")
        if not os.path.isdir(tail):
            raise ValueError(f"{tail}: not a directory")
        return kind, int(port_text), (tail, options.get("cert", ""), options.get("key", ""))
    if kind == "wsgi":
        module, _, attribute = tail.partition(":")
        if not module or not attribute:
            raise ValueError("expected wsgi:PORT:MODULE:CALLABLE")
        return kind, int(port_text), (module, attribute, options.get("cert", ""), options.get("key", ""))
    raise ValueError(f"unknown HTTP service {kind!r}")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (ssl's defaults: TLS 1.2 and later)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def start_spec(host: Host, kind: str, port: int, rest: tuple[str, ...]) -> HttpServer:
    *target, cert, key = rest
    tls = server_context(cert, key) if cert else None
    if kind in ("http", "https"):
        return serve_directory(host, target[0], port, tls=tls)
    return serve(host, load_wsgi_app(*target), port, tls=tls)



# ==================================================================== asyncio handler API

@dataclass
class AsyncRequest:
    """A whole request for an ``async def handler(request) -> AsyncResponse``; ``headers`` in order with
    lower-case names, ``path`` percent-decoded (UTF-8), ``query`` as sent, ``body`` read in full (bounded by
    ``Limits.max_body``)."""

    method: str
    target: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    version: str = "1.1"

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first field called ``name`` (any case)."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), default)


@dataclass
class AsyncResponse:
    """What a handler returns: Content-Length is set from ``body``; Date and Server are added."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


AsyncHandler = Callable[[AsyncRequest], Awaitable[AsyncResponse]]


class AsyncHttpServer:
    """HTTP/1.1 on an asyncio loop over usernet sockets (``host.start_server``): keep-alive, pipelining,
    the same limits and timeouts as :class:`HttpServer`, requests parsed by the same sans-IO parser.
    Made by :func:`serve_async`; ``close()`` and ``await wait_closed()`` stop it."""

    def __init__(self, host: Host, handler: AsyncHandler, port: int, *, ssl: ssl.SSLContext | None = None,
                 address: str = "", limits: Limits | None = None, idle_timeout: float = 30.0,
                 header_timeout: float = 10.0, max_connections: int = 256, backlog: int = 128) -> None:
        self.host, self.handler, self.port, self.tls = host, handler, port, ssl
        self.address, self.backlog = address, backlog
        self.limits = limits or Limits()
        self.idle_timeout, self.header_timeout = idle_timeout, header_timeout
        self.max_connections = max_connections
        self.counters = _Counters()
        self.connections = 0
        self._server: Any = None

    async def start(self) -> None:
        if self.tls is None:
            self._server = await self.host.start_server(self._client, self.address, self.port,
                                                        backlog=self.backlog)
            return
        # TLS: asyncio's own selector transport and TLS protocol over a usernet listening socket (its
        # readiness descriptor is what the loop watches); usernet's stream transport has no start_tls.
        listener = self.host.socket()
        try:
            listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            listener.bind((self.address, self.port))
            listener.listen(self.backlog)
            listener.setblocking(False)
            self._server = await asyncio.start_server(self._client, sock=listener, ssl=self.tls,  # type: ignore[arg-type]
                                                      ssl_handshake_timeout=self.header_timeout)
        except BaseException:
            listener.close()
            raise

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> AsyncHttpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            self.counters["http.connections_refused"] += 1
            await self._reject(writer, 503, "too many connections")
            writer.close()
            return
        self.connections += 1
        self.counters["http.connections"] += 1
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, _Closed):
            pass
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _next_event(self, parser: ServerConnection, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, cycle: list[float], body: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            event = parser.next_event()
            if event is not NEED_DATA:
                return event
            if parser.eof:
                raise _Closed
            now = loop.time()
            deadline = _read_deadline(parser, now, cycle[0], body, self.idle_timeout, self.header_timeout)
            if now >= deadline:
                if not parser.idle or body:
                    self.counters["http.timeouts"] += 1
                    await self._reject(writer, 408, "request timeout")
                raise _Closed
            try:
                data = await asyncio.wait_for(reader.read(_RECV), deadline - now)
            except TimeoutError:
                continue
            if parser.idle and data.strip(b"\r\n"):
                cycle[0] = loop.time()  # the header timeout runs from the request's first byte
            parser.receive_data(data)

    async def _reject(self, writer: asyncio.StreamWriter, status: int, reason: str) -> None:
        from usernet.proto.http import reason_phrase

        body = f"{status} {reason_phrase(status)}: {reason}\n".encode()
        writer.write(format_response_head(status, [("Content-Type", "text/plain; charset=utf-8"),
                                                   ("Content-Length", str(len(body))),
                                                   ("Connection", "close")]) + body)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 5.0)
            if writer.can_write_eof():
                writer.write_eof()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = ServerConnection(self.limits)
        cycle = [asyncio.get_running_loop().time()]
        out = bytearray()  # the response buffer, kept across requests
        while True:
            event = await self._next_event(parser, reader, writer, cycle)
            if isinstance(event, ProtocolError):
                self.counters["http.bad_requests"] += 1
                await self._reject(writer, event.status, event.reason)
                return
            assert isinstance(event, Request)
            self.counters["http.requests"] += 1
            if event.expect_continue:
                writer.write(CONTINUE_100)
            body = bytearray()
            while isinstance(piece := await self._next_event(parser, reader, writer, cycle, body=True), Data):
                body += piece.data
            if isinstance(piece, ProtocolError):
                self.counters["http.bad_requests"] += 1
                await self._reject(writer, piece.status, piece.reason)
                return
            request = _async_request(event, bytes(body))
            try:
                response = await self.handler(request)
                if not isinstance(response, AsyncResponse):
                    raise TypeError(f"the handler returned {type(response).__name__}, not AsyncResponse")
                head_bytes, close = self._head(event, response)
            except Exception:
                log.exception("HTTP handler %r failed on %s", self.handler, request.target)
                self.counters["http.app_errors"] += 1
                response = AsyncResponse(500, [("Content-Type", "text/plain; charset=utf-8"),
                                               ("Connection", "close")], b"500 Internal Server Error\n")
                head_bytes, close = self._head(event, response)
            out += head_bytes
            if event.method != b"HEAD" and response.status not in (204, 304):
                out += response.body
            writer.write(out)  # head and body in one write
            out.clear()
            await writer.drain()
            if close:
                return
            cycle[0] = asyncio.get_running_loop().time()

    def _head(self, request: Request, response: AsyncResponse) -> tuple[bytes, bool]:
        headers = list(response.headers)
        names = {n.lower() for n, _ in headers}
        close = not request.keep_alive or any(n.lower() == "connection" and "close" in v.lower()
                                              for n, v in headers)
        if response.status not in (204, 304) and not 100 <= response.status < 200:
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
            headers.append(("Content-Length", str(len(response.body))))
        if "date" not in names:
            headers.append(("Date", http_date()))
        if "server" not in names:
            headers.append(("Server", SERVER_NAME))
        if close and "connection" not in names:
            headers.append(("Connection", "close"))
        elif not close and request.version == b"1.0":
            headers.append(("Connection", "keep-alive"))
        return format_response_head(response.status, headers), close


def _async_request(request: Request, body: bytes) -> AsyncRequest:
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    if path.startswith(("http://", "https://")):  # absolute form (RFC 9112 3.2.2)
        rest = path.split("//", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return AsyncRequest(request.method.decode("ascii"), target, unquote(path, errors="replace"), query,
                        [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers], body,
                        request.version.decode("ascii"))


async def serve_async(host: Host, handler: AsyncHandler, port: int, *, ssl: ssl.SSLContext | None = None,
                      **options: Any) -> AsyncHttpServer:
    """Serve ``async def handler(request: AsyncRequest) -> AsyncResponse`` on ``port`` of ``host`` from the
    running asyncio loop; returns the listening server. ``ssl`` (a server-side SSLContext) serves HTTPS, the
    handshake bounded by ``header_timeout``. Options as for :func:`serve`: ``idle_timeout``,
    ``header_timeout``, ``max_connections``, ``limits``, ``address``, ``backlog``."""
    server = AsyncHttpServer(host, handler, port, ssl=ssl, **options)
    await server.start()
    return server
