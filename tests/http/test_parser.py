"""The sans-IO HTTP/1.1 request parser: a table of valid and malformed requests (smuggling cases of RFC 9112
6.3 and 11.2 included), limits with their statuses, and byte splits that must not change the events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usernet.proto.http import (
    NEED_DATA,
    Data,
    EndOfMessage,
    Limits,
    ProtocolError,
    Request,
    ServerConnection,
    format_chunk,
    format_response_head,
)


def events(data: bytes | list[bytes], limits: Limits | None = None, eof: bool = False) -> list[Any]:
    """Every event the parser gives for these bytes (one piece or several), Data pieces merged."""
    conn = ServerConnection(limits)
    out: list[Any] = []
    pieces = [data] if isinstance(data, bytes) else data
    if eof:
        pieces = [*pieces, b""]
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Data) and out and isinstance(out[-1], Data):
                out[-1] = Data(out[-1].data + event.data)
            else:
                out.append(event)
            if isinstance(event, ProtocolError):
                return out
    return out


def summary(evs: list[Any]) -> list[Any]:
    result: list[Any] = []
    for e in evs:
        if isinstance(e, Request):
            result.append(("req", e.method, e.target, e.version, tuple(e.headers), e.keep_alive))
        else:
            result.append(e)
    return result


H = b"Host: x\r\n"

VALID = [
    (b"GET / HTTP/1.1\r\n" + H + b"\r\n", b"", True),
    (b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"", False),
    (b"GET / HTTP/1.0\r\n\r\n", b"", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b"", True),
    (b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", b"", True),  # RFC 9112 2.2: a leading empty line is ignored
    (b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello", b"hello", True),
    (b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    (b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
     b"hello world", True),
    (b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
     b"hello", True),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\nX-Spaces:   a b  \r\n\r\n", b"", True),
]


@pytest.mark.parametrize(("raw", "body", "keep_alive"), VALID)
def test_valid_requests(raw: bytes, body: bytes, keep_alive: bool) -> None:
    evs = events(raw)
    assert isinstance(evs[0], Request)
    assert evs[0].keep_alive is keep_alive
    assert evs[-1] == EndOfMessage()
    got = b"".join(e.data for e in evs if isinstance(e, Data))
    assert got == body


def test_fields_are_lowercased_and_stripped() -> None:
    req = events(b"GET /x HTTP/1.1\r\nHOST: h\r\nX-Spaces:   a b  \r\nX-Empty:\r\n\r\n")[0]
    assert req.method == b"GET" and req.target == b"/x" and req.version == b"1.1"
    assert req.headers == [(b"host", b"h"), (b"x-spaces", b"a b"), (b"x-empty", b"")]


MALFORMED = [
    # RFC 9112 6.3 / 11.2: request smuggling.
    ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("TE and CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    ("differing CL", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("differing CL list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd", 400),
    ("CL not digits", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("CL hex", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc", 400),
    ("TE not chunked last", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400),
    ("TE unknown", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    ("TE gzip chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("TE in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    ("bare LF in head", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("bare LF head end", b"GET / HTTP/1.1\r\nHost: x\n\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("no colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400),
    ("chunk size not hex", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("chunk size sign", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n", 400),
    ("chunk size 0x", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n", 400),
    ("chunk size huge", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"11111111111111111\r\n", 400),
    ("chunk size empty", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
    ("chunk bare LF", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", 400),
    ("chunk data too long", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n", 400),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad request line", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("HTTP/2", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
]


@pytest.mark.parametrize(("name", "raw", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_refused(name: str, raw: bytes, status: int) -> None:
    evs = events(raw)
    assert isinstance(evs[-1], ProtocolError), evs
    assert evs[-1].status == status, evs[-1]
    # The error sticks: nothing more comes out of this connection.
    conn = ServerConnection()
    conn.receive_data(raw + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    while (event := conn.next_event()) is not NEED_DATA and not isinstance(event, ProtocolError):
        pass
    assert conn.next_event() == event


def test_limits_give_414_431_413() -> None:
    limits = Limits(max_request_line=100, max_header_bytes=200, max_headers=5, max_body=1000)
    assert events(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n", limits)[-1].status == 414
    assert events(b"GET /" + b"a" * 200, limits)[-1].status == 414  # no end of line yet
    assert events(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 300 + b"\r\n\r\n", limits)[-1].status == 431
    assert events(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 300, limits)[-1].status == 431  # incomplete
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(6))
    assert events(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", limits)[-1].status == 431
    assert events(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", limits)[-1].status == 413
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"200\r\n" + b"a" * 512 + b"\r\n"
    assert events(chunked * 1 + b"200\r\n" + b"a" * 512 + b"\r\n", limits)[-1].status == 413


def test_incomplete_at_eof_is_400() -> None:
    assert events(b"GET / HTTP/1.1\r\nHost", eof=True)[-1].status == 400
    assert events(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc", eof=True)[-1].status == 400
    assert events(b"", eof=True) == []


def test_expect_100_continue_is_flagged() -> None:
    req = events(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")[0]
    assert req.expect_continue and req.content_length == 3
    req = events(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")[0]
    assert not req.expect_continue  # RFC 9110 10.1.1: ignored from HTTP/1.0 clients


def test_pipelined_requests_parse_in_order_and_the_buffer_is_reused() -> None:
    one = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
    two = b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    three = b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    evs = events(one + two + three)
    targets = [e.target for e in evs if isinstance(e, Request)]
    assert targets == [b"/1", b"/2", b"/3"]
    assert [type(e).__name__ for e in evs] == ["Request", "EndOfMessage", "Request", "Data", "EndOfMessage",
                                                "Request", "EndOfMessage"]
    conn = ServerConnection()
    buf = conn._buf
    for _ in range(3):
        conn.receive_data(one)
        assert isinstance(conn.next_event(), Request) and conn.next_event() == EndOfMessage()
    assert conn._buf is buf and conn.requests == 3


def test_response_serializer() -> None:
    assert format_response_head(200, [("Content-Length", "2")]) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    assert format_response_head(404, []) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert format_chunk(b"hello") == b"5\r\nhello\r\n"
    with pytest.raises(ValueError):
        format_response_head(200, [("X", "a\r\nSet-Cookie: evil")])


MESSAGES = [raw for raw, _, _ in VALID] + [
    b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n" + bytes(range(256)) + b"x" * 44,
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MESSAGES), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_split_parses_identically(message: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(message) + 1) for c in cuts})
    pieces = [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)]
    assert summary(events([p for p in pieces if p])) == summary(events(message))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    conn = ServerConnection(Limits(max_request_line=64, max_header_bytes=128))
    conn.receive_data(b"GET / HTTP/1.1\r\n" + data)
    conn.receive_data(b"")
    for _ in range(1000):
        if conn.next_event() is NEED_DATA:
            break
