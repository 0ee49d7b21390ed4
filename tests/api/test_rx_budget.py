"""The receive loop has a budget (as NAPI): a link that never runs dry cannot starve timers,
replies or socket calls."""

from __future__ import annotations

import time

import usernet
from usernet.links.memory import Switch
from usernet.links.middleware import LinkWrapper

JUNK = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5" + bytes(46)  # an unknown EtherType


class Flood(LinkWrapper):
    """Whatever the medium delivers, plus an endless stream of frames nobody wants."""

    def __init__(self, inner: usernet.links.base.Link) -> None:
        super().__init__(inner)
        self.flooding = False
        self.sent = 0

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames = self.inner.recv_batch(max_frames)
        if self.flooding:
            frames += [(JUNK, False)] * (max_frames - len(frames))
            self.sent += max_frames - len(frames)
        return frames


def test_a_flooded_host_still_answers_and_its_timers_fire() -> None:
    switch = Switch()
    flood = Flood(switch.port())
    with usernet.Host(switch.port(), addr="10.30.0.1/24") as a, usernet.Host(flood, addr="10.30.0.2/24") as b:
        assert a.ping("10.30.0.2", count=1)[0] is not None
        flood.flooding = True
        b.ping("10.30.0.1", count=1, timeout=0.5)  # wakes b's loop: from now on it never runs dry
        time.sleep(0.2)
        rtts = a.ping("10.30.0.2", count=5, interval=0.05, timeout=1)
        assert all(rtt is not None for rtt in rtts), rtts
        # b's own socket calls get the lock and its timers run: a UDP exchange with a timeout.
        with b.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            start = time.monotonic()
            try:
                sock.recvfrom(10)
            except TimeoutError:
                pass
            assert time.monotonic() - start < 0.5
        counters = b.counters
        flood.flooding = False
    assert counters["host.rx_budget_exhausted"] > 0
    assert counters["eth.unknown_ethertype"] > 10_000  # the flood really ran
    assert counters.get("stack.outbox_full", 0) == 0
