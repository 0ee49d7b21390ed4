"""Link receive buffers: frames handed up by recv_batch are the link's own copies, intact after later
batches reuse the receive buffer (the tracer, pcap, taps and the fault injector keep them)."""

from __future__ import annotations

import socket
import time

import pytest

from tests.realpeer import netns as nn
from usernet.links.packet import Packet
from usernet.links.tuntap import Tap

pytestmark = pytest.mark.root

_ETHERTYPE = b"\x88\xb5"  # IEEE 802 local experimental: nothing else on the link sends it


def _frames(dst: bytes, count: int) -> list[bytes]:
    # Lengths vary, so a later, shorter read into the shared buffer would show in an earlier frame.
    return [dst + b"\x02\x00\x00\x00\x00\x01" + _ETHERTYPE + bytes([i]) * (60 + (count - i) * 20)
            for i in range(count)]


def _collect(link: Packet | Tap, expected: int, timeout: float = 3.0) -> list[bytes]:
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < end:
        batch = link.recv_batch(3)  # small batches: the buffer is reused many times
        if not batch:
            time.sleep(0.001)
        got.extend(frame for frame, _ in batch if frame[12:14] == _ETHERTYPE)
    return got


def test_packet_frames_survive_later_batches() -> None:
    nn.need_root()
    pair, owned = nn.create_veth_pair()
    try:
        assert pair.ns is not None
        link = pair.ns.call(lambda: Packet(pair.ifname))
        try:
            sent = _frames(link.mac, 20)

            def send() -> None:
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as tx:
                    for frame in sent:
                        tx.sendto(frame, (pair.peer_if, 0))

            pair.peer.call(send)
            got = _collect(link, len(sent))
        finally:
            link.close()
    finally:
        nn.close_veth(owned, None)
    assert got == sent
    assert all(type(frame) is bytes for frame in got)


@pytest.mark.parametrize("offload", [True, False])
def test_tap_frames_survive_later_batches(offload: bool) -> None:
    nn.need_root()
    with nn.Netns.create() as ns:  # the TAP lives and dies with it
        def run() -> tuple[list[bytes], list[bytes]]:
            name = "usernet-rx0"  # unique: the namespace is this run's own
            link = Tap(name, offload=offload)
            try:
                sent = _frames(b"\xff" * 6, 20)
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as tx:
                    for frame in sent:
                        tx.sendto(frame, (name, 0))  # out of the kernel's side: the descriptor reads it
                return sent, _collect(link, len(sent))
            finally:
                link.close()

        sent, got = ns.call(run)
    assert got == sent
