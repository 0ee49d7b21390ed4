"""HTTP/1.1, sans-IO (RFC 9110, RFC 9112): bytes in, events out, in the manner of h11.

:class:`ServerConnection` takes the bytes a client sent (:meth:`~ServerConnection.receive_data`, ``b""``
for end of stream) and hands back events from :meth:`~ServerConnection.next_event`: a :class:`Request`,
then :class:`Data` pieces of its body, then :class:`EndOfMessage`; :data:`NEED_DATA` when it needs more
bytes, :class:`ProtocolError` (a status to answer with and close) when the client broke the protocol.
Pipelined requests wait in the buffer: after an ``EndOfMessage`` the next ``next_event`` parses the next
request. :class:`ClientConnection` is the mirror for a client: responses in, with body framing per
RFC 9112 6.3 (Content-Length, chunked, until the close; none for HEAD, 1xx, 204 and 304).
:func:`format_request_head` and the functions at the end build messages.

Nothing here raises on what a peer sends. The defences against request smuggling follow RFC 9112 6.3 and
11.2: Content-Length together with Transfer-Encoding, differing Content-Length values, a Transfer-Encoding
other than a final ``chunked``, obsolete line folding, bare CR or LF, whitespace before a header colon and
malformed chunk sizes are each a 400, and the connection must close.

One ``bytearray`` per connection holds what is not parsed yet; it is kept across requests (consumed
bytes are dropped from its front, so its allocation is reused). The head is parsed with C-level searches
and one precompiled regular expression per line: the only objects made per header line are its name
and value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "NEED_DATA", "CONTINUE_100", "ClientConnection", "Data", "EndOfMessage", "Limits", "ProtocolError",
    "Request", "Response", "ServerConnection", "format_chunk", "format_request_head", "format_response_head",
    "LAST_CHUNK", "reason_phrase",
]


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8192      # longer: 414 URI Too Long
    max_header_bytes: int = 32768     # the header section (after the request line); larger: 431
    max_headers: int = 100            # more fields: 431
    max_body: int = 64 * 1024 * 1024  # a larger body (declared or chunked): 413
    max_chunk_line: int = 1024        # chunk-size line with extensions; longer: 400


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class Request:
    """A request head. ``headers`` keeps the fields in order, names lower-cased, both as ``bytes``."""

    __slots__ = ("method", "target", "version", "headers", "keep_alive", "expect_continue", "chunked",
                 "content_length")

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.keep_alive = True
        self.expect_continue = False
        self.chunked = False
        self.content_length = 0

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The field's value (several lines joined with ``, ``), or ``default``."""
        values = [v for n, v in self.headers if n == name]
        return b", ".join(values) if values else default

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {self.version!r}, {self.headers!r})"


class Data:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage)

    def __repr__(self) -> str:
        return "EndOfMessage()"


class ProtocolError:
    """The peer broke the protocol: answer ``status`` (with ``Connection: close``) and close."""

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProtocolError) and (other.status, other.reason) == (self.status, self.reason)

    def __repr__(self) -> str:
        return f"ProtocolError({self.status}, {self.reason!r})"


class Response:
    """A response head, as :class:`Request` (``headers`` in order, names lower-cased, ``bytes``).
    ``content_length`` is None when the body runs until the connection closes."""

    __slots__ = ("status", "reason", "version", "headers", "keep_alive", "chunked", "content_length")

    def __init__(self, status: int, reason: bytes, version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.reason, self.version, self.headers = status, reason, version, headers
        self.keep_alive = True
        self.chunked = False
        self.content_length: int | None = 0

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        return b", ".join(values) if values else default

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.reason!r}, {self.version!r}, {self.headers!r})"


Event = Request | Response | Data | EndOfMessage | ProtocolError | _NeedData

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9112 3: method SP request-target SP HTTP-version. The target has no controls or spaces.
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])")
# RFC 9112 5.1: no whitespace between name and colon; OWS around the value; field-vchar / obs-text inside.
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*"
                    rb"[\x21-\x7e\x80-\xff])?)?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\x20-\x7e\t\x80-\xff]*)?")
_DIGITS = re.compile(rb"[0-9]{1,19}")

# RFC 9112 4: HTTP-version SP status-code SP [ reason-phrase ]; a missing SP before an empty reason is
# tolerated (common in the wild, and the reason carries no meaning).
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_METHOD = re.compile(_TOKEN)
_TARGET = re.compile(rb"[\x21-\x7e]+")

# Parser states (_UNTIL_CLOSE: a response body delimited by the end of the connection).
_HEAD, _BODY, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _ERROR, _UNTIL_CLOSE = range(8)


class ServerConnection:
    """One connection's request parser. Feed bytes with :meth:`receive_data`, take events with
    :meth:`next_event` until it gives :data:`NEED_DATA`."""

    __slots__ = ("limits", "_buf", "_pos", "_state", "_left", "_body_seen", "_eof", "_error", "request",
                 "requests")

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._pos = 0                 # bytes of _buf already consumed
        self._state = _HEAD
        self._left = 0                # body or chunk bytes still to come
        self._body_seen = 0           # body bytes of the current request (chunked: for max_body)
        self._eof = False
        self._error: ProtocolError | None = None
        self.request: Request | None = None  # the request whose body is being read
        self.requests = 0             # requests parsed on this connection

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed its sending side."""
        if not data:
            self._eof = True
            return
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    @property
    def idle(self) -> bool:
        """Between requests with nothing buffered: the idle timeout applies, not the header timeout."""
        return self._state == _HEAD and not self._buffered_head()

    @property
    def in_body(self) -> bool:
        return self._state in (_BODY, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER)

    @property
    def eof(self) -> bool:
        return self._eof

    def _buffered_head(self) -> bool:
        # Empty lines before a request line are ignored (RFC 9112 2.2): they do not start a request.
        return len(self._buf) - self._pos > 0 and bool(self._buf[self._pos:].strip(b"\r\n"))

    # ---------------------------------------------------------------- events

    def next_event(self) -> Event:
        if self._error is not None:
            return self._error
        state = self._state
        if state == _HEAD:
            return self._head()
        if state == _BODY:
            return self._body()
        if state == _ERROR:  # pragma: no cover - _error is set with it
            return self._fail(400, "error")
        return self._chunked()

    def _content_length(self, values: list[bytes]) -> int | ProtocolError:
        """The body length the Content-Length field lines give; differing or invalid values are
        unrecoverable (RFC 9112 6.3 item 5), and a length beyond the limit is refused."""
        lengths = {v.strip() for v in b",".join(values).split(b",")}
        if len(lengths) != 1:
            return self._fail(400, "differing Content-Length values")
        value = lengths.pop()
        if _DIGITS.fullmatch(value) is None:
            return self._fail(400, "invalid Content-Length")
        length = int(value)
        if length > self.limits.max_body:
            return self._fail(413, "body too large")
        return length

    def _fail(self, status: int, reason: str) -> ProtocolError:
        self._state = _ERROR
        self._error = ProtocolError(status, reason)
        return self._error

    def _head(self) -> Event:
        got = self._read_head()
        if not isinstance(got, tuple):
            return got
        line, fields = got
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            return self._fail(400, "malformed request line")
        method, target, major, minor = match.groups()
        if major != b"1":
            return self._fail(505, "HTTP version not supported")
        version = b"1.1" if minor != b"0" else b"1.0"
        headers = self._fields(fields)
        if isinstance(headers, ProtocolError):
            return headers
        return self._frame(Request(method, target, version, headers))

    def _read_head(self) -> Event | tuple[bytes, list[bytes]]:
        """The start line and the header lines of a complete head, or the event to return instead
        (the limits apply to both requests and responses)."""
        buf, limits = self._buf, self.limits
        pos = self._pos
        # RFC 9112 2.2: ignore empty lines (CRLF) before the request line.
        while buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            line_end = buf.find(b"\n", pos)
            if line_end < 0:
                if len(buf) - pos > limits.max_request_line:
                    return self._fail(414, "request line too long")
            elif line_end - pos > limits.max_request_line:
                return self._fail(414, "request line too long")
            elif len(buf) - line_end > limits.max_header_bytes:
                return self._fail(431, "header section too large")
            if buf.find(b"\n\n", pos) >= 0 or buf.find(b"\n\r\n", pos) >= 0:
                return self._fail(400, "bare LF")  # an end of head, but not CRLF CRLF
            if self._eof:
                return self._fail(400, "incomplete head") if len(buf) > pos else self._closed_idle()
            return NEED_DATA
        head = bytes(buf[pos:end])
        self._pos = end + 4
        # Every CR and LF must belong to a CRLF (RFC 9112 2.2: bare CR is rejected, bare LF too here).
        crlf = head.count(b"\r\n")
        if head.count(b"\n") != crlf:
            return self._fail(400, "bare LF")
        if head.count(b"\r") != crlf:
            return self._fail(400, "bare CR")
        first = head.find(b"\r\n")
        line = head if first < 0 else head[:first]
        if len(line) > limits.max_request_line:
            return self._fail(414, "request line too long")
        if first >= 0 and len(head) - first > limits.max_header_bytes:
            return self._fail(431, "header section too large")
        fields = head[first + 2:].split(b"\r\n") if first >= 0 else []
        if len(fields) > limits.max_headers:
            return self._fail(431, "too many header fields")
        return line, fields

    def _closed_idle(self) -> Event:
        return NEED_DATA  # a client closing between requests is no error

    def _fields(self, fields: list[bytes]) -> list[tuple[bytes, bytes]] | ProtocolError:
        headers: list[tuple[bytes, bytes]] = []
        fullmatch = _FIELD.fullmatch
        append = headers.append
        for field in fields:
            if field[:1] in (b" ", b"\t"):
                return self._fail(400, "obsolete line folding")
            m = fullmatch(field)
            if m is None:
                return self._fail(400, "malformed header field")
            append((m[1].lower(), m[2]))
        return headers

    def _frame(self, request: Request) -> Event:
        """RFC 9112 6.3: how long the body is, refusing every ambiguity."""
        te: list[bytes] = []
        cl: list[bytes] = []
        hosts = 0
        connection = b""
        expect = None
        for name, value in request.headers:
            if name == b"transfer-encoding":
                te.append(value)
            elif name == b"content-length":
                cl.append(value)
            elif name == b"host":
                hosts += 1
            elif name == b"connection":
                connection += b"," + value.lower()
            elif name == b"expect":
                expect = value.lower()
        if request.version == b"1.1" and hosts != 1 or hosts > 1:
            return self._fail(400, "missing or repeated Host")  # RFC 9112 3.2
        options = {o.strip() for o in connection.split(b",")}
        request.keep_alive = (b"close" not in options if request.version == b"1.1"
                              else b"keep-alive" in options)
        if te:
            if cl:
                return self._fail(400, "both Content-Length and Transfer-Encoding")
            if request.version == b"1.0":
                return self._fail(400, "Transfer-Encoding in HTTP/1.0")
            codings = [c.strip().lower() for c in b",".join(te).split(b",")]
            if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
                return self._fail(400, "Transfer-Encoding without a final chunked")
            if len(codings) != 1:
                return self._fail(501, "unsupported transfer coding")
            request.chunked = True
            self._state = _CHUNK_LINE
        elif cl:
            length = self._content_length(cl)
            if isinstance(length, ProtocolError):
                return length
            request.content_length = length
            self._left = length
            self._state = _BODY
        else:
            self._left = 0
            self._state = _BODY
        if expect is not None and expect == b"100-continue" and request.version == b"1.1":
            request.expect_continue = True
        self._body_seen = 0
        self.request = request
        self.requests += 1
        return request

    def _take(self, n: int) -> bytes:
        pos = self._pos
        avail = min(n, len(self._buf) - pos)
        data = bytes(self._buf[pos:pos + avail])
        self._pos = pos + avail
        return data

    def _end(self) -> EndOfMessage:
        self._state = _HEAD
        self.request = None
        return EndOfMessage()

    def _body(self) -> Event:
        if self._left == 0:
            return self._end()
        if self._pos == len(self._buf):
            return self._fail(400, "body cut short") if self._eof else NEED_DATA
        data = self._take(self._left)
        self._left -= len(data)
        return Data(data)

    def _chunked(self) -> Event:
        buf, limits = self._buf, self.limits
        while True:
            state = self._state
            if state == _CHUNK_DATA:
                if self._pos == len(buf):
                    return self._fail(400, "body cut short") if self._eof else NEED_DATA
                data = self._take(self._left)
                self._left -= len(data)
                if self._left == 0:
                    self._state = _CHUNK_END
                return Data(data)
            if self._eof and self._pos == len(buf):
                return self._fail(400, "body cut short")
            if state == _CHUNK_END:
                if len(buf) - self._pos < 2:
                    if buf[self._pos:self._pos + 1] not in (b"", b"\r"):
                        return self._fail(400, "chunk data not followed by CRLF")
                    return NEED_DATA
                if not buf.startswith(b"\r\n", self._pos):
                    return self._fail(400, "chunk data not followed by CRLF")
                self._pos += 2
                self._state = _CHUNK_LINE
                continue
            # _CHUNK_LINE or _TRAILER: one CRLF-terminated line.
            end = buf.find(b"\r\n", self._pos)
            if end < 0:
                if buf.find(b"\n", self._pos) >= 0:
                    return self._fail(400, "bare LF")
                if len(buf) - self._pos > limits.max_chunk_line:
                    return self._fail(400 if state == _CHUNK_LINE else 431, "chunk line too long")
                return self._fail(400, "body cut short") if self._eof else NEED_DATA
            line = bytes(buf[self._pos:end])
            if b"\n" in line or b"\r" in line:
                return self._fail(400, "bare CR or LF")
            self._pos = end + 2
            if state == _TRAILER:
                if not line:
                    return self._end()
                self._body_seen += len(line) + 2
                if self._body_seen > limits.max_header_bytes:
                    return self._fail(431, "trailer section too large")
                if line[:1] in (b" ", b"\t"):
                    return self._fail(400, "obsolete line folding")
                if _FIELD.fullmatch(line) is None:
                    return self._fail(400, "malformed trailer field")
                continue
            if len(line) > limits.max_chunk_line:
                return self._fail(400, "chunk line too long")
            m = _CHUNK_SIZE.fullmatch(line)
            if m is None:
                return self._fail(400, "invalid chunk size")
            size = int(m[1], 16)
            if size == 0:
                self._body_seen = 0
                self._state = _TRAILER
                continue
            self._body_seen += size
            if self._body_seen > limits.max_body:
                return self._fail(413, "body too large")
            self._left = size
            self._state = _CHUNK_DATA


# -------------------------------------------------------------------- client side

class ClientConnection(ServerConnection):
    """One connection's response parser, the client's mirror of :class:`ServerConnection`.

    Call :meth:`start_request` with the method of each request sent (the method decides whether a
    response has a body); then :meth:`next_event` gives a :class:`Response` (interim 1xx ones too,
    each followed by the final one), :class:`Data`, :class:`EndOfMessage`. Same limits, same refusal of
    bare CR/LF, obsolete folding and ambiguous framing; a :class:`ProtocolError`'s ``status`` means
    nothing here (its ``reason`` says what broke): the connection is unusable. A body cut short by the
    peer's close is the ProtocolError ``"body cut short"``; a close before any response byte is
    ``"closed before a response"`` (a stale keep-alive connection: the request may be retried)."""

    __slots__ = ("method", "responses")

    def __init__(self, limits: Limits | None = None) -> None:
        # The body limit guards a server's memory; a client streams what it asked for.
        super().__init__(limits or Limits(max_body=1 << 62))
        self.method: bytes | None = None  # of the request whose response is awaited
        self.responses = 0

    def start_request(self, method: bytes) -> None:
        if self.method is not None or self._state != _HEAD:
            raise RuntimeError("the previous response is not complete")
        self.method = method.upper()

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed: after a complete response, the connection is reusable only
        when this is 0 (anything else is a server sending what nobody asked for)."""
        return len(self._buf) - self._pos

    def next_event(self) -> Event:
        if self._error is None and self._state == _UNTIL_CLOSE:
            if self._pos < len(self._buf):
                return Data(self._take(len(self._buf) - self._pos))
            return self._end() if self._eof else NEED_DATA
        return super().next_event()

    def _closed_idle(self) -> Event:
        return self._fail(400, "closed before a response") if self.method is not None else NEED_DATA

    def _end(self) -> EndOfMessage:
        self.method = None
        return super()._end()

    def _head(self) -> Event:
        if self.method is None:
            if self.buffered:
                return self._fail(400, "response without a request")
            return self._closed_idle() if self._eof else NEED_DATA
        got = self._read_head()
        if not isinstance(got, tuple):
            return got
        line, fields = got
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            return self._fail(400, "malformed status line")
        major, minor, status, reason = match.groups()
        if major != b"1":
            return self._fail(505, "HTTP version not supported")
        headers = self._fields(fields)
        if isinstance(headers, ProtocolError):
            return headers
        return self._frame_response(Response(int(status), reason or b"", b"1.1" if minor != b"0" else b"1.0",
                                             headers))

    def _frame_response(self, response: Response) -> Event:
        """RFC 9112 6.3 for a response to ``self.method``."""
        te: list[bytes] = []
        cl: list[bytes] = []
        connection = b""
        for name, value in response.headers:
            if name == b"transfer-encoding":
                te.append(value)
            elif name == b"content-length":
                cl.append(value)
            elif name == b"connection":
                connection += b"," + value.lower()
        options = {o.strip() for o in connection.split(b",")}
        response.keep_alive = (b"close" not in options if response.version == b"1.1"
                               else b"keep-alive" in options)
        status = response.status
        if status < 200:
            if status == 101:  # a protocol switch ends HTTP on this connection (RFC 9110 15.2.2)
                response.keep_alive = False
                response.content_length = 0
                self._left = 0
                self._state = _BODY
                self.responses += 1
                return response
            # An interim response (RFC 9110 15.2): no body, the final response follows.
            response.content_length = 0
            return response
        self.responses += 1
        self._body_seen = 0
        # 1. HEAD, 204 and 304 have no body whatever the fields say.
        if self.method == b"HEAD" or status in (204, 304):
            response.content_length = 0
            self._left = 0
            self._state = _BODY
            return response
        if te:
            # 3. Transfer-Encoding wins over Content-Length, but a message with both may be an attack
            # (RFC 9112 6.3 item 3, 11.2): refused, as the server refuses it.
            if cl:
                return self._fail(400, "both Content-Length and Transfer-Encoding")
            if response.version == b"1.0":
                return self._fail(400, "Transfer-Encoding in HTTP/1.0")
            codings = [c.strip().lower() for c in b",".join(te).split(b",")]
            if codings[-1] == b"chunked":
                if codings.count(b"chunked") != 1 or len(codings) != 1:
                    return self._fail(501, "unsupported transfer coding")
                response.chunked = True
                response.content_length = None
                self._state = _CHUNK_LINE
                return response
            # A final coding other than chunked: the body runs until the close.
            return self._until_close(response)
        if cl:
            length = self._content_length(cl)
            if isinstance(length, ProtocolError):
                return length
            response.content_length = length
            self._left = length
            self._state = _BODY
            return response
        # 8. Neither: read until the server closes.
        return self._until_close(response)

    def _until_close(self, response: Response) -> Response:
        response.keep_alive = False
        response.content_length = None
        self._state = _UNTIL_CLOSE
        return response


def format_request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """A request line and header section ending with the empty line (RFC 9112 3). A method that is
    not a token, a target with spaces or controls, and header names or values that could split the
    message are refused (ValueError)."""
    if _METHOD.fullmatch(method.encode("latin-1", "replace")) is None:
        raise ValueError(f"method {method!r} is not a token")
    if not target.isascii() or _TARGET.fullmatch(target.encode("ascii")) is None:
        raise ValueError(f"request target {target!r} has spaces, controls or non-ASCII characters")
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        if _METHOD.fullmatch(name.encode("latin-1", "replace")) is None:
            raise ValueError(f"header name {name!r} is not a token")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r} carries CR, LF or NUL")
        parts.append(f"{name}: {value.strip()}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


# -------------------------------------------------------------------- responses

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def format_response_head(status: int, headers: list[tuple[str, str]], reason: str | None = None) -> bytes:
    """An HTTP/1.1 status line and header section, ending with the empty line. Header names and values
    with CR, LF or NUL are refused (ValueError): they would split the response."""
    parts = [f"HTTP/1.1 {status} {reason if reason is not None else reason_phrase(status)}\r\n"]
    for name, value in headers:
        text = f"{name}: {value}\r\n"
        if "\n" in text[:-1] or "\r" in text[:-2] or "\0" in text:
            raise ValueError(f"header {name!r} carries CR, LF or NUL")
        parts.append(text)
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def format_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (not the last: that is :data:`LAST_CHUNK`)."""
    return b"%x\r\n%b\r\n" % (len(data), data)
