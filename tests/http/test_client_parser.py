"""The sans-IO HTTP/1.1 response parser (ClientConnection): framing per RFC 9112 6.3, the same strictness
as the request parser, request serialisation, and byte splits that must not change the events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usernet.proto.http import (
    NEED_DATA,
    ClientConnection,
    Data,
    EndOfMessage,
    Limits,
    ProtocolError,
    Response,
    format_request_head,
)


def events(data: bytes | list[bytes], method: bytes = b"GET", eof: bool = False,
           limits: Limits | None = None) -> list[Any]:
    """Every event for these bytes, Data merged; a Response is shown as (status, content_length)."""
    conn = ClientConnection(limits)
    conn.start_request(method)
    out: list[Any] = []
    pieces = [data] if isinstance(data, bytes) else list(data)
    if eof:
        pieces.append(b"")
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Data) and out and isinstance(out[-1], Data):
                out[-1] = Data(out[-1].data + event.data)
            elif isinstance(event, Response):
                out.append(("R", event.status, event.content_length, event.keep_alive))
            else:
                out.append(event)
            if isinstance(event, (EndOfMessage, ProtocolError)):
                break
        if out and isinstance(out[-1], (EndOfMessage, ProtocolError)):
            break
    return out


OK = b"HTTP/1.1 200 OK\r\n"

VALID = [
    ("content-length", OK + b"Content-Length: 5\r\n\r\nhello", b"GET", False,
     [("R", 200, 5, True), Data(b"hello"), EndOfMessage()]),
    ("chunked", OK + b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n", b"GET",
     False, [("R", 200, None, True), Data(b"hello!"), EndOfMessage()]),
    ("until close", OK + b"\r\nall of it", b"GET", True, [("R", 200, None, False), Data(b"all of it"), EndOfMessage()]),
    ("te not chunked: until close", OK + b"Transfer-Encoding: gzip\r\n\r\nzz", b"GET", True,
     [("R", 200, None, False), Data(b"zz"), EndOfMessage()]),
    ("head has no body", OK + b"Content-Length: 50\r\n\r\n", b"HEAD", False, [("R", 200, 0, True), EndOfMessage()]),
    ("204", b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", b"GET", False,
     [("R", 204, 0, True), EndOfMessage()]),
    ("304", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET", False,
     [("R", 304, 0, True), EndOfMessage()]),
    ("100 then 200", b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 1\r\n\r\nx", b"POST", False,
     [("R", 100, 0, True), ("R", 200, 1, True), Data(b"x"), EndOfMessage()]),
    ("http/1.0 closes", b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", b"GET", False,
     [("R", 200, 1, False), Data(b"x"), EndOfMessage()]),
    ("http/1.0 keep-alive", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", b"GET", False,
     [("R", 200, 0, True), EndOfMessage()]),
    ("connection close", OK + b"Connection: close\r\nContent-Length: 0\r\n\r\n", b"GET", False,
     [("R", 200, 0, False), EndOfMessage()]),
    ("no reason phrase", b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", b"GET", False,
     [("R", 404, 0, True), EndOfMessage()]),
    ("repeated equal lengths", OK + b"Content-Length: 2, 2\r\n\r\nab", b"GET", False,
     [("R", 200, 2, True), Data(b"ab"), EndOfMessage()]),
]


@pytest.mark.parametrize(("name", "data", "method", "eof", "expected"), VALID, ids=[v[0] for v in VALID])
def test_valid_responses(name: str, data: bytes, method: bytes, eof: bool, expected: list[Any]) -> None:
    assert events(data, method, eof) == expected


MALFORMED = [
    ("both framings", OK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length"),
    ("differing lengths", OK + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n", "differing Content-Length"),
    ("bad length", OK + b"Content-Length: -1\r\n\r\n", "invalid Content-Length"),
    ("bad chunk size", OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    ("gzip, chunked", OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n", "unsupported transfer coding"),
    ("te in 1.0", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0"),
    ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare LF"),
    ("bare CR", OK + b"X: a\rb\r\n\r\n", "bare CR"),
    ("folding", OK + b"X: a\r\n b\r\n\r\n", "obsolete line folding"),
    ("space before colon", OK + b"X : a\r\n\r\n", "malformed header field"),
    ("bad status line", b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
    ("not http", b"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"),
    ("http/2", b"HTTP/2.0 200 OK\r\n\r\n", "HTTP version not supported"),
]


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_responses(name: str, data: bytes, reason: str) -> None:
    out = events(data)
    assert isinstance(out[-1], ProtocolError) and out[-1].reason.startswith(reason), out


def test_truncated_bodies_and_early_close() -> None:
    assert events(OK + b"Content-Length: 10\r\n\r\nabc", eof=True)[-1] == ProtocolError(400, "body cut short")
    assert events(OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", eof=True)[-1].reason == "body cut short"
    assert events(b"", eof=True) == [ProtocolError(400, "closed before a response")]
    assert events(b"HTTP/1.1 200 OK\r\nX", eof=True)[-1].reason == "incomplete head"


def test_limits() -> None:
    limits = Limits(max_request_line=64, max_header_bytes=128, max_headers=3)
    assert events(b"HTTP/1.1 200 " + b"x" * 100 + b"\r\n\r\n", limits=limits)[-1].reason == "request line too long"
    assert events(OK + b"X: " + b"y" * 200 + b"\r\n\r\n", limits=limits)[-1].reason == "header section too large"
    assert events(OK + b"A: 1\r\n" * 4 + b"\r\n", limits=limits)[-1].reason == "too many header fields"
    small = Limits(max_body=10)
    assert events(OK + b"Content-Length: 11\r\n\r\n", limits=small)[-1].reason == "body too large"


def test_keep_alive_sequence_and_unsolicited_bytes() -> None:
    conn = ClientConnection()
    for i in range(3):
        conn.start_request(b"GET")
        conn.receive_data(OK + b"Content-Length: 1\r\n\r\n" + bytes([48 + i]))
        assert isinstance(conn.next_event(), Response)
        assert conn.next_event() == Data(bytes([48 + i]))
        assert conn.next_event() == EndOfMessage()
        assert conn.buffered == 0 and conn.method is None
    assert conn.responses == 3
    conn.receive_data(b"surprise")
    assert conn.next_event() == ProtocolError(400, "response without a request")
    started = ClientConnection()
    started.start_request(b"GET")
    with pytest.raises(RuntimeError):
        started.start_request(b"GET")  # the previous response is not complete


def test_format_request_head() -> None:
    assert format_request_head("GET", "/a?b=c", [("Host", "x"), ("X", " v ")]) == \
        b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX: v\r\n\r\n"
    for method, target, headers in [("G T", "/", []), ("GET", "/a b", []), ("GET", "/\u00e9", []),
                                    ("GET", "/", [("X", "a\r\nY: b")]), ("GET", "/", [("X Y", "a")])]:
        with pytest.raises(ValueError):
            format_request_head(method, target, headers)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_byte_split_parses_identically(case: Any, cuts: list[int]) -> None:
    _, data, method, eof, expected = case
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    pieces = [p for p in pieces if p]
    assert events(pieces, method, eof) == expected
