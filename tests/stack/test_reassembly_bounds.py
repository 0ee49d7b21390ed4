"""IPv4 reassembly under hostile fragments (issue 12): shares, eviction, memory, FragmentSmack."""

from __future__ import annotations

import bisect
import random

import pytest

from tests.stack.netsim import Segment
from usernet.stack import reassembly
from usernet.stack.core import Stack
from usernet.stack.counters import Counters
from usernet.stack.reassembly import FRAGMENT_OVERHEAD, Reassembler, ReassemblyConfig
from usernet.wire import ethernet, ipv4, udp

A_MAC = bytes.fromhex("020000000001")
B_MAC = bytes.fromhex("020000000002")
A_IP = ipv4.addr("10.0.0.1")
B_IP = ipv4.addr("10.0.0.2")
ATTACKER_IP = ipv4.addr("10.0.0.66")
DST = ipv4.addr("10.0.0.2")


def _frame(src: int, payload: bytes, ident: int, flags_frag: int) -> bytes:
    packet = ipv4.build(src=src, dst=B_IP, proto=ipv4.PROTO_UDP, payload=payload, ident=ident,
                        flags_frag=flags_frag)
    return ethernet.build(B_MAC, A_MAC, ethernet.ETHERTYPE_IPV4, packet)


def _fragment_frames(src: int, payload: bytes, size: int, ident: int) -> list[bytes]:
    frames = []
    for start in range(0, len(payload), size):
        more = start + size < len(payload)
        frames.append(_frame(src, payload[start:start + size], ident, (ipv4.FLAG_MF if more else 0) | (start >> 3)))
    return frames


def _add(r: Reassembler, counters: Counters, src: int, ident: int, offset: int, data: bytes, more: bool,
         now: float = 1.0) -> bytes | None:
    packet = ipv4.build(src=src, dst=DST, proto=ipv4.PROTO_UDP, payload=data, ident=ident,
                        flags_frag=(ipv4.FLAG_MF if more else 0) | (offset >> 3))
    return r.add(ipv4.parse(packet), memoryview(packet), now, counters)


def test_a_trickle_of_incomplete_fragments_from_one_source_denies_no_one() -> None:
    """The issue's probe: 64 incomplete fragments every few seconds from one source filled the
    64-entry table for the whole 30 s timeout, and 1 in 11 of another host's fragmented pings
    got through. Now that source may hold only its share and the rest stays available."""
    b = Stack(mac=B_MAC, addr="10.0.0.2/24", rng=random.Random(2))
    a = Stack(mac=A_MAC, addr="10.0.0.1/24", rng=random.Random(1))
    net = Segment(a, b)
    net.exchange()
    server = b.udp_open(0, 7)
    sent = got = 0
    attacker_ident = 0
    for tick in range(120):  # 60 s in steps of 0.5 s
        if tick % 6 == 0:  # every 3 s: 64 first fragments that never complete
            for _ in range(64):
                attacker_ident += 1
                b.receive(_frame(ATTACKER_IP, bytes(1480), attacker_ident, ipv4.FLAG_MF), net.now)
        dgram = udp.build(A_IP, B_IP, 1000, 7, random.Random(tick).randbytes(8000 - 8))
        for frame in _fragment_frames(A_IP, dgram, 1480, ident=tick):
            b.receive(frame, net.now)
        sent += 1
        while (item := server.pop()) is not None:
            got += 1
            assert len(item[0]) == 8000 - 8
        net.run(0.5)
    assert got == sent == 120
    share = int(b.config.reassembly.max_datagrams * b.config.reassembly.max_source_share)
    assert b.counters["ipv4.frag_source_share"] >= 64 * 20 - share
    assert b.counters["stack.internal_error"] == 0


def test_a_full_table_evicts_the_oldest_incomplete_datagram() -> None:
    r = Reassembler(ReassemblyConfig(max_datagrams=8))
    counters = Counters()
    for i in range(8):
        _add(r, counters, A_IP + 10 + i, 1, 0, bytes(16), True, now=1.0 + i)
    assert len(r.datagrams) == 8
    # A new datagram from a ninth source: the oldest (source +10) goes, the newcomer completes.
    assert _add(r, counters, A_IP + 50, 7, 0, b"a" * 16, True, now=10.0) is None
    assert counters["ipv4.frag_table_full"] == 1
    assert (A_IP + 10, DST, ipv4.PROTO_UDP, 1) not in r.datagrams
    assert _add(r, counters, A_IP + 50, 7, 16, b"b" * 8, False, now=10.5) == b"a" * 16 + b"b" * 8
    assert len(r.datagrams) == 7
    # The timer order follows: the next deadline is the oldest survivor's.
    assert r.next_deadline() == pytest.approx(2.0 + r.config.timeout)


def test_one_source_holds_at_most_its_share_of_datagrams_and_bytes() -> None:
    config = ReassemblyConfig(max_datagrams=16, max_bytes=64 * 1024, max_source_share=0.25)
    r = Reassembler(config)
    counters = Counters()
    for ident in range(40):
        _add(r, counters, ATTACKER_IP, ident, 0, bytes(1480), True)
        held = sum(1 for key in r.datagrams if key[0] == ATTACKER_IP)
        assert held <= 4
        assert r.sources[ATTACKER_IP].charge <= config.max_bytes * config.max_source_share
    assert counters["ipv4.frag_source_share"] == 36
    # Bytes: one datagram growing past a quarter of max_bytes (16 KB) is dropped, the rest of
    # the table untouched.
    _add(r, counters, A_IP, 1, 0, bytes(1480), True)
    before = counters["ipv4.frag_source_share"]
    for i in range(1, 20):
        _add(r, counters, ATTACKER_IP, 99, i * 1480, bytes(1480), True)
    assert counters["ipv4.frag_source_share"] > before
    assert (A_IP, DST, ipv4.PROTO_UDP, 1) in r.datagrams
    assert r.sources[ATTACKER_IP].charge <= config.max_bytes * config.max_source_share


def test_memory_is_bounded_and_the_oldest_is_evicted_to_make_room() -> None:
    config = ReassemblyConfig(max_datagrams=64, max_bytes=32 * 1024, max_source_share=1.0)
    r = Reassembler(config)
    counters = Counters()
    for i in range(200):
        _add(r, counters, A_IP + 10 + i % 50, i, 0, bytes(1480), True)
        assert r.held_bytes <= config.max_bytes
    assert counters["ipv4.frag_memory_full"] > 0
    assert r.held_bytes == sum(d.charge for d in r.datagrams.values())
    newest = (A_IP + 10 + 199 % 50, DST, ipv4.PROTO_UDP, 199)
    assert newest in r.datagrams  # new work is taken, old work given up
    # Everything is returned as datagrams complete or expire.
    r.expire(1.0 + config.timeout)
    assert r.held_bytes == 0 and not r.datagrams and not r.sources


def test_fragments_per_datagram_are_capped_fragmentsmack() -> None:
    """8,000 eight-byte fragments of one datagram (the FragmentSmack pattern): the datagram is
    dropped at its 65th fragment, so no datagram ever holds more than the cap and each
    fragment's overlap check is one bisection over at most 64 pieces."""
    r = Reassembler()
    counters = Counters()
    cap = r.config.max_fragments
    largest = 0
    order = list(range(8000))
    random.Random(5).shuffle(order)
    for n in order:
        _add(r, counters, ATTACKER_IP, 1, n * 8, bytes(8), True)
        largest = max(largest, max((len(d.starts) for d in r.datagrams.values()), default=0))
    assert largest == cap
    assert counters["ipv4.frag_too_many"] == 8000 // (cap + 1)
    assert r.held_bytes <= cap * (8 + FRAGMENT_OVERHEAD)


def test_overlap_check_is_logarithmic_per_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the cap lifted, 8,000 fragments of one datagram in random order reassemble, and the
    work per fragment (comparisons made finding its neighbours) grows with log n, not n."""
    comparisons = 0

    def counting_bisect_right(a: list[int], x: int) -> int:
        nonlocal comparisons
        lo, hi = 0, len(a)
        while lo < hi:
            mid = (lo + hi) // 2
            comparisons += 1
            if x < a[mid]:
                hi = mid
            else:
                lo = mid + 1
        assert lo == bisect.bisect_right(a, x)
        return lo

    monkeypatch.setattr(reassembly, "bisect_right", counting_bisect_right)
    r = Reassembler(ReassemblyConfig(max_fragments=10_000, max_source_share=1.0))
    counters = Counters()
    payload = random.Random(1).randbytes(8000 * 8)
    order = list(range(8000))
    random.Random(2).shuffle(order)
    whole = None
    for n in order:
        last = n == 7999
        whole = _add(r, counters, A_IP, 3, n * 8, payload[n * 8:n * 8 + 8], not last) or whole
    assert whole == payload
    assert counters["ipv4.reassembled"] == 1 and counters["ipv4.frag_overlap"] == 0
    assert comparisons <= 8000 * 14  # log2(8000) < 13: a linear scan would need ~32 million


def test_overlaps_and_duplicates_are_found_among_sorted_pieces() -> None:
    r = Reassembler()
    counters = Counters()
    _add(r, counters, A_IP, 1, 64, bytes(32), True)
    _add(r, counters, A_IP, 1, 0, bytes(32), True)
    _add(r, counters, A_IP, 1, 64, bytes(32), True)  # exact duplicate
    assert counters["ipv4.frag_duplicate"] == 1
    _add(r, counters, A_IP, 1, 24, bytes(16), True)  # overlaps the piece before it
    assert counters["ipv4.frag_overlap"] == 1 and not r.datagrams
    _add(r, counters, A_IP, 2, 64, bytes(32), True)
    _add(r, counters, A_IP, 2, 40, bytes(32), True)  # overlaps the piece after it
    assert counters["ipv4.frag_overlap"] == 2 and not r.datagrams


def test_a_last_fragment_ending_before_data_held_is_an_overlap() -> None:
    """Pieces [16, 24) and a last fragment [8, 16): 16 bytes held, total 16, yet [0, 8) is
    missing. Counting bytes alone would call it complete and deliver the wrong data."""
    r = Reassembler()
    counters = Counters()
    assert _add(r, counters, A_IP, 1, 16, bytes(8), True) is None
    assert _add(r, counters, A_IP, 1, 8, bytes(8), False) is None
    assert counters["ipv4.reassembled"] == 0 and counters["ipv4.frag_overlap"] == 1
