"""TCP over one stack's loopback (issue 17, "Loopback bulk"): segments are built without their
checksum (the field holds the pseudo-header sum, as Linux's CHECKSUM_PARTIAL on lo), carry
the whole loopback MSS, and a small rest behind full segments waits while autocorked."""

from __future__ import annotations

import random

from usernet.stack.core import Stack
from usernet.wire import ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import checksum, pseudo_header_sum

LO = 0x7F000001


def _connected(stack: Stack, now: float = 1.0):  # type: ignore[no-untyped-def]
    listener = stack.tcp.listen(0, 5000, 5)
    client = stack.tcp.connect(LO, 0, LO, 5000, now)
    stack.poll(now)
    server = listener.accept()
    assert server is not None and client.state == "ESTABLISHED"
    return client, server


def test_loopback_segments_carry_the_pseudo_header_sum_and_the_full_mss() -> None:
    stack = Stack(mac=b"\x02\0\0\0\0\x01", addr="10.0.0.2/24", rng=random.Random(1))
    client, server = _connected(stack)
    assert client.mss == 65535 - 40 - 12  # the loopback's 65,536-byte MTU, less timestamps
    data = bytes(range(256)) * 200
    stack.poll(1.5)
    client.send(data)
    stack.tcp.poll(2.0)  # TCP output only: the segment waits on the loopback queue
    (packet,) = list(stack._loopback_queue)
    header = ipv4.parse(packet)  # the IPv4 header checksum is complete
    segment = header.payload
    length = len(segment)
    # The TCP field holds the folded pseudo-header sum; summing the segment completes it.
    assert int.from_bytes(segment[16:18], "big") == pseudo_header_sum(LO, LO, 6, length) % 0xFFFF
    completed = bytearray(segment)
    completed[16:18] = b"\0\0"
    completed[16:18] = checksum(completed, pseudo_header_sum(LO, LO, 6, length)).to_bytes(2, "big")
    assert tcpwire.parse(completed).payload == data
    stack.poll(2.0)
    assert server.recv(1 << 20) == data


def test_autocork_holds_a_small_rest_behind_full_segments() -> None:
    stack = Stack(mac=b"\x02\0\0\0\0\x01", addr="10.0.0.2/24", rng=random.Random(2))
    client, server = _connected(stack)
    mss = client.mss
    warm = bytes(1 << 20)  # first, open the windows (the SYN's window is not scaled)
    client.send(warm)
    for i in range(40):
        stack.poll(1.0 + i / 100)
        server.recv(1 << 20)
    assert client.snd_una == client.buf_seq + len(client.send_buf) and not server.rcv_buf
    chunk = bytes(range(256)) * 256  # 64 KB: one full segment and a 53-byte rest
    got = bytearray()
    for i in range(4):
        client.autocork = client.snd_nxt
        client.send(chunk)
        stack.poll(2.0 + i)
        client.autocork = None
        assert client.corked  # full segments went, the rest waits for the next write
        client.corked = False
        before = len(got)
        got += server.recv(1 << 20) or b""
        assert (len(got) - before) % mss == 0  # full segments only
    stack.tcp.mark_dirty(client)  # what the socket layer leaves due: the rest goes uncorked
    stack.poll(10.0)
    got += server.recv(1 << 20) or b""
    assert bytes(got) == chunk * 4


def test_autocork_never_holds_a_lone_small_write() -> None:
    stack = Stack(mac=b"\x02\0\0\0\0\x01", addr="10.0.0.2/24", rng=random.Random(3))
    client, server = _connected(stack)
    client.autocork = client.snd_nxt
    client.send(b"x")
    stack.poll(2.0)
    client.autocork = None
    assert not client.corked
    assert server.recv(10) == b"x"
