"""Header prediction (TcpConnection._predicted_data) changes nothing but speed: the same segments
fed with and without it give the same frames on the wire, the same data and the same state."""

from __future__ import annotations

import random

import pytest

from usernet.stack.core import Stack
from usernet.tcp.connection import TcpConnection
from usernet.wire import arp, ethernet, ipv4
from usernet.wire import tcp as tcpwire

OUR_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
OUR_IP, PEER_IP = ipv4.addr("10.0.0.2"), ipv4.addr("10.0.0.1")
PORT, PEER_PORT = 5001, 40000
MSS = 1448


def _frame(seq: int, ack: int, flags: int, options: bytes, payload: bytes = b"", window: int = 502) -> bytes:
    segment = tcpwire.build(PEER_IP, OUR_IP, PEER_PORT, PORT, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, window,
                            options, payload)
    packet = ipv4.build(src=PEER_IP, dst=OUR_IP, proto=6, payload=segment, ident=1, flags_frag=ipv4.FLAG_DF)
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_IPV4, packet)


def _session(timestamps: bool) -> tuple[list[bytes], bytes, dict[str, int], dict[str, object]]:
    """One connection fed a script of segments: every frame out, the data read, the counters and
    the final control block."""
    stack = Stack(mac=OUR_MAC, addr="10.0.0.2/24", rng=random.Random(2))
    listener = stack.tcp.listen(0, PORT, 4)
    stack.receive(ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_ARP,
                                 arp.build(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 0.0)
    out: list[bytes] = [bytes(f) for f in stack.poll(0.0)]
    isn = 0xFFFFF000  # the peer's sequence numbers wrap during the script
    ts = 1000

    def opts(our_ts: int) -> bytes:
        return tcpwire.build_options(ts=(ts, our_ts)) if timestamps else b""

    syn_opts = tcpwire.build_options(mss=1460, sack_permitted=True, wscale=7, ts=(ts, 0) if timestamps else None)
    stack.receive(_frame(isn, 0, tcpwire.SYN, syn_opts, window=64240), 0.001)
    frames = stack.poll(0.001)
    out += [bytes(f) for f in frames]
    synack = tcpwire.parse(ipv4.parse(frames[-1], 14).payload)
    our_ts = synack.options.ts_val or 0
    ack = synack.seq + 1
    seq = isn + 1
    now = 0.002
    stack.receive(_frame(seq, ack, tcpwire.ACK, opts(our_ts)), now)
    conn = listener.accept()
    assert conn is not None
    read = bytearray()
    rng = random.Random(7)
    payloads = [rng.randbytes(MSS) for _ in range(40)]
    # (index of the payload, flags, window, timestamp step, time step): in order, PSH, a window
    # change, a timestamp that goes back (PAWS), a hole and its filling, a duplicate, a pause
    # longer than the RTO (quick ACKs again), a FIN.
    script: list[tuple[int, int, int, int, float]] = []
    for i in range(40):
        flags = tcpwire.ACK | (tcpwire.PSH if i % 7 == 6 else 0)
        script.append((i, flags, 400 if 20 <= i < 24 else 502, 1, 2.0 if i == 33 else 0.0001))
    script[10], script[11] = script[11], script[10]  # out of order
    script.insert(15, script[14])  # a duplicate
    script.insert(31, (30, tcpwire.ACK, 502, -100, 0.0001))  # an old timestamp: PAWS drops it, it comes again
    for index, flags, window, ts_step, time_step in script:
        now += time_step
        sent_ts = (ts + ts_step) & 0xFFFFFFFF
        if ts_step > 0:
            ts = sent_ts
        start = seq + index * MSS
        options = tcpwire.build_options(ts=(sent_ts, our_ts)) if timestamps else b""
        stack.receive(_frame(start, ack, flags, options, payloads[index], window), now)
        out += [bytes(f) for f in stack.poll(now)]
        if index % 3 == 0:
            while data := conn.recv(1 << 20):
                read += data
            out += [bytes(f) for f in stack.poll(now)]
    now += 0.001
    stack.receive(_frame(seq + 40 * MSS, ack, tcpwire.ACK | tcpwire.FIN, opts(our_ts)), now)
    out += [bytes(f) for f in stack.poll(now)]
    now += 1.0  # the delayed-ACK timer and the rest
    out += [bytes(f) for f in stack.poll(now)]
    while data := conn.recv(1 << 20):
        read += data
    state = {name: getattr(conn, name) for name in (
        "state", "rcv_nxt", "rcv_adv", "snd_wnd", "snd_wl1", "snd_wl2", "ts_recent", "ts_recent_at",
        "quick_acks", "unacked_bytes", "rcv_mss", "delack_deadline", "last_heard", "eof")}
    assert bytes(read) == b"".join(payloads)
    return out, bytes(read), dict(stack.tcp.counters), state


@pytest.mark.parametrize("timestamps", [True, False])
def test_prediction_changes_nothing_but_speed(timestamps: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_out, fast_data, fast_counters, fast_state = _session(timestamps)
    assert fast_counters["predicted_data"] > 20
    monkeypatch.setattr(TcpConnection, "_predicted_data", lambda self, *fields: False)
    slow_out, slow_data, slow_counters, slow_state = _session(timestamps)
    assert slow_counters.pop("predicted_data", 0) == 0
    fast_counters.pop("predicted_data")
    assert fast_out == slow_out
    assert fast_data == slow_data
    assert fast_counters == slow_counters
    assert fast_state == slow_state
    assert fast_counters["out_of_order"] == 1 and fast_counters.get("paws_rejected", 0) == (1 if timestamps else 0)
