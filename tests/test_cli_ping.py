"""`usernet ping`'s engine (api/ping.py) as iputils behaves: icmp_seq from 1 on the wire and in the
output, duplicates told apart by sequence number. Hosts on the in-memory switch; no root."""

from __future__ import annotations

from typing import Any

from usernet.api.host import Host
from usernet.api.ping import _match, _wire_seq
from usernet.links.memory import MemoryPort, Switch
from usernet.links.middleware import LinkWrapper

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0


def _echo(frame: bytes) -> tuple[int, int] | None:
    """(ICMP type, sequence) of an Ethernet frame carrying an unfragmented echo message."""
    if frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return None
    icmp = frame[14 + (frame[14] & 0x0F) * 4:]
    if icmp[0] not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        return None
    return icmp[0], int.from_bytes(icmp[6:8], "big")


class DuplicateReplies(LinkWrapper):
    """Sends every echo reply twice, back to back: both copies reach the pinger in one batch, with the
    same arrival time (so only the sequence number can tell the second one is a duplicate)."""

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self.inner.send(frame)
        echo = _echo(bytes(frame))
        if echo is not None and echo[0] == ICMP_ECHO_REPLY:
            self.inner.send(frame)


def test_sequence_from_one_on_the_wire_and_duplicates_by_sequence() -> None:
    switch = Switch()
    requests: list[int] = []

    def observe(port: MemoryPort, frame: bytes) -> None:
        echo = _echo(frame)
        if echo is not None and echo[0] == ICMP_ECHO_REQUEST:
            requests.append(echo[1])

    switch.on_frame = observe
    replies: list[dict[str, Any]] = []
    alice = Host(switch.port(name="alice"), addr="10.9.0.1/24", seed=1)
    bob = Host(DuplicateReplies(switch.port(name="bob")), addr="10.9.0.2/24", seed=2)
    with alice, bob:
        rtts = alice.ping("10.9.0.2", count=3, interval=0.05, timeout=1.0, on_reply=replies.append)
    assert requests == [1, 2, 3]
    assert len(rtts) == 3 and all(rtt is not None for rtt in rtts)  # the API: one RTT per request
    seen = [(r["seq"], r["icmp_seq"], r["duplicate"]) for r in replies]
    for index in range(3):
        copies = [(icmp_seq, dup) for seq, icmp_seq, dup in seen if seq == index]
        assert copies[0] == (index + 1, False), seen
        assert all(dup for _, dup in copies[1:]), seen
        # ping stops once every request has its answer (as iputils -c does): the last duplicate may be late
        assert len(copies) >= 2 or index == 2, seen


def test_wire_sequence_wraps_like_iputils() -> None:
    assert [_wire_seq(i) for i in (0, 1, 65534, 65535, 65536)] == [1, 2, 65535, 0, 1]
    assert _match(1, 1) == 0 and _match(0, 1) is None
    assert _match(0, 65536) == 65535 and _match(65535, 65536) == 65534
    assert _match(1, 65537) == 65536  # the most recent request that can have that number
