"""NTP: the codec against scapy's NTP layer, era-safe timestamps across the 2036 rollover, the
client and server machines in virtual (wall) time, and both over the in-memory switch."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import usernet
from usernet.apps.ntp import parse_spec, serve_ntp
from usernet.links import Switch
from usernet.proto.ntp import NtpClient, NtpError, NtpServer, Sample, best
from usernet.wire import ntp
from usernet.wire.errors import ParseError

scapy_ntp = pytest.importorskip("scapy.layers.ntp")

ROLLOVER = datetime(2036, 2, 7, 6, 28, 16, tzinfo=UTC).timestamp()  # NTP era 1 begins


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.integers(1, 4), st.integers(1, 5), st.integers(0, 16), st.integers(-20, -6),
       st.integers(0, 2**32 - 1), st.binary(min_size=4, max_size=4), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_scapy_agrees_both_ways(leap, version, mode, stratum, precision, delay, ref_id, orig, recv, tx) -> None:  # type: ignore[no-untyped-def]
    packet = ntp.Packet(leap, version, mode, stratum, 6, precision, delay, delay ^ 0xFFFF, ref_id, tx, orig, recv, tx)
    wire = ntp.build(packet)
    theirs = scapy_ntp.NTPHeader(wire)
    assert (theirs.leap, theirs.version, theirs.mode, theirs.stratum, theirs.poll, theirs.precision) == \
        (leap, version, mode, stratum, 6, precision)
    assert bytes(theirs) == wire
    assert ntp.parse(bytes(theirs)) == packet


def test_era_arithmetic_across_2036() -> None:
    before, after = ROLLOVER - 0.25, ROLLOVER + 0.25
    ts_before, ts_after = ntp.from_unix(before), ntp.from_unix(after)
    assert ts_before >> 32 == 0xFFFFFFFF and ts_after >> 32 == 0  # the seconds field wrapped
    assert ntp.diff(ts_after, ts_before) == pytest.approx(0.5)
    assert ntp.diff(ts_before, ts_after) == pytest.approx(-0.5)
    assert ntp.to_unix(ts_after, before) == pytest.approx(after, abs=1e-6)
    assert ntp.to_unix(ts_before, after) == pytest.approx(before, abs=1e-6)
    assert ntp.to_unix(ntp.from_unix(1_700_000_000.5), 1_700_000_100) == pytest.approx(1_700_000_000.5)


def exchange(client_clock: float, server_clock: float, one_way: float = 0.01, processing: float = 0.001,
             server: NtpServer | None = None) -> Sample | None:
    """One request/response with the client's wall clock at *client_clock* and the server's at
    *server_clock* at the moment the request leaves."""
    client = NtpClient(random.Random(1))
    server = server or NtpServer(stratum=3, ref_id=b"GPS\0")
    request = client.request(client_clock)
    reply = server.answer(request, "10.0.0.1", server_clock + one_way, 0.0,
                          lambda: server_clock + one_way + processing)
    assert reply is not None
    return client.response(reply, client_clock + 2 * one_way + processing)


@pytest.mark.parametrize("client_at, server_at", [
    (1_700_000_000.0, 1_700_000_000.75),      # an ordinary day, server 0.75 s ahead
    (ROLLOVER - 0.3, ROLLOVER + 0.2),         # the client still in era 0, the server already in era 1
    (ROLLOVER + 0.2, ROLLOVER - 0.3),         # the other way round
    (ROLLOVER + 86400 * 365, ROLLOVER + 86400 * 365 - 2.5),  # well into era 1
])
def test_offset_and_delay_are_right_in_any_era(client_at: float, server_at: float) -> None:
    sample = exchange(client_at, server_at)
    assert sample is not None
    assert sample.offset == pytest.approx(server_at - client_at, abs=2e-5)  # the random low bits: 15 us
    assert sample.delay == pytest.approx(0.02, abs=2e-5)
    assert sample.server_time == pytest.approx(server_at + 0.011, abs=1e-5)
    assert (sample.stratum, sample.ref_id) == (3, "GPS")


def test_origin_must_match_and_one_answer_per_request() -> None:
    client = NtpClient(random.Random(2))
    request = ntp.parse(client.request(1000.0))
    forged = ntp.build(ntp.Packet(mode=ntp.MODE_SERVER, stratum=2, orig_ts=request.tx_ts ^ 1, recv_ts=5, tx_ts=6))
    assert client.response(forged, 1000.1) is None and client.counters["ntp.bogus"] == 1
    good = ntp.build(ntp.Packet(mode=ntp.MODE_SERVER, stratum=2, orig_ts=request.tx_ts,
                                recv_ts=ntp.from_unix(1000.05), tx_ts=ntp.from_unix(1000.05)))
    assert client.response(good, 1000.1) is not None
    assert client.response(good, 1000.2) is None  # a replay
    wrong_mode = ntp.build(ntp.Packet(mode=ntp.MODE_CLIENT, orig_ts=request.tx_ts, tx_ts=1))
    assert NtpClient(random.Random(2)).response(wrong_mode, 1.0) is None


@pytest.mark.parametrize("stratum, leap, ref_id, kind", [
    (0, 3, b"RATE", "rate"), (0, 3, b"DENY", "deny"), (0, 3, b"RSTR", "deny"), (0, 3, b"XYZZ", "unsynchronized"),
    (16, 0, b"\0\0\0\0", "unsynchronized"), (5, 3, b"\0\0\0\0", "unsynchronized"),
])
def test_kiss_of_death_and_unsynchronized_servers(stratum: int, leap: int, ref_id: bytes, kind: str) -> None:
    client = NtpClient(random.Random(3))
    sent = ntp.parse(client.request(50.0)).tx_ts
    reply = ntp.build(ntp.Packet(leap=leap, mode=ntp.MODE_SERVER, stratum=stratum, ref_id=ref_id, orig_ts=sent,
                                 recv_ts=sent, tx_ts=sent))
    with pytest.raises(NtpError) as info:
        client.response(reply, 50.1)
    assert info.value.kind == kind


def test_best_is_the_minimum_delay_sample() -> None:
    samples = [Sample(0.5, 0.2, 2, "X", 0, 0, 0, 4, 0), Sample(0.1, 0.01, 2, "X", 0, 0, 0, 4, 0),
               Sample(-0.3, 0.5, 2, "X", 0, 0, 0, 4, 0)]
    assert best(samples).offset == 0.1


def test_server_reply_fields() -> None:
    server = NtpServer(stratum=10, precision=-23, ref_time=1_000.0)
    client = NtpClient(random.Random(4), version=3)
    request = client.request(2_000.0)
    reply = ntp.parse(server.answer(request, "10.0.0.9", 2_000.5, 0.0, lambda: 2_000.6) or b"")
    assert (reply.leap, reply.version, reply.mode, reply.stratum, reply.precision, reply.ref_id) == \
        (0, 3, ntp.MODE_SERVER, 10, -23, b"LOCL")
    assert reply.orig_ts == ntp.parse(request).tx_ts
    assert ntp.to_unix(reply.recv_ts, 2000) == pytest.approx(2000.5) and \
        ntp.to_unix(reply.tx_ts, 2000) == pytest.approx(2000.6)
    assert ntp.to_unix(reply.ref_ts, 2000) == pytest.approx(1000.0)
    unsync = NtpServer(stratum=16).answer(request, "10.0.0.9", 1.0, 0.0, lambda: 1.0)
    assert unsync is not None and ntp.parse(unsync).leap == ntp.LEAP_UNSYNC
    # Server-mode, symmetric and garbage packets are not answered.
    assert server.answer(ntp.build(ntp.Packet(mode=ntp.MODE_SERVER)), "10.0.0.9", 1.0, 0.0, time.time) is None
    assert server.answer(b"short", "10.0.0.9", 1.0, 0.0, time.time) is None
    assert server.counters["ntp.truncated"] == 1 and server.counters["ntp.not_client"] == 1


def test_server_rate_limit_sends_one_kod_a_second_then_silence() -> None:
    server = NtpServer(rate=1.0, burst=3)
    client = NtpClient(random.Random(5))
    answers = []
    for i in range(8):
        answers.append(server.answer(client.request(100.0), "10.0.0.7", 100.0, i * 0.01, lambda: 100.0))
    kinds = ["kod" if a and ntp.parse(a).stratum == 0 else "time" if a else None for a in answers]
    assert kinds == ["time"] * 3 + ["kod"] + [None] * 4
    # Another client is not affected; after a second the first gets a token back.
    assert ntp.parse(server.answer(client.request(1.0), "10.0.0.8", 1.0, 0.1, time.time) or b"").stratum != 0
    again = server.answer(client.request(1.0), "10.0.0.7", 1.0, 1.2, time.time)
    assert again is not None and ntp.parse(again).stratum != 0
    assert server.counters["ntp.tx_kod"] == 1 and server.counters["ntp.rate_limited"] == 4


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    try:
        ntp.parse(data)
    except ParseError as err:
        assert err.reason in ("ntp.truncated", "ntp.bad_version")
    server = NtpServer()
    server.answer(data, "10.0.0.1", 1.0, 0.0, time.time)
    client = NtpClient(random.Random(0))
    client.request(1.0)
    client.response(data, 1.0)


def test_spec() -> None:
    assert parse_spec("123") == {"port": 123, "stratum": 10}
    assert parse_spec("1123,stratum=8") == {"port": 1123, "stratum": 8}
    for bad in ("0", "x", "123,stratum=0", "123,stratum=17", "123,foo=1"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_client_and_server_on_the_switch() -> None:
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.3.0.1/24", seed=1) as a, \
            usernet.Host(switch.port(), addr="10.3.0.2/24", seed=2) as b:
        serve_ntp(b, 123, stratum=8)
        serve_ntp(b, 1123, wall=lambda: time.time() + 3.25)
        assert abs(a.ntp_offset("10.3.0.2", samples=2)) < 0.01
        from usernet.api.ntp import query

        (sample,) = query(a, "10.3.0.2", samples=1, port=1123)
        assert sample.offset == pytest.approx(3.25, abs=0.01) and sample.stratum == 10
        with pytest.raises(TimeoutError):
            query(a, "10.3.0.2", samples=1, port=999, timeout=0.3)
    assert b.counters["ntp.tx_replies"] == 3 and a.counters["ntp.samples"] == 3
