"""ARP under attack (issue 12): lock time, MAC changes, RFC 5227 defence, LRU eviction, bounds."""

from __future__ import annotations

import random

from tests.stack.netsim import Segment
from usernet.stack.core import Stack
from usernet.stack.neighbour import ArpConfig, NeighbourCache
from usernet.wire import arp, ethernet, ipv4

A_MAC = bytes.fromhex("020000000001")
B_MAC = bytes.fromhex("020000000002")
EVIL_MAC = bytes.fromhex("02000000ee01")
A_IP = ipv4.addr("10.0.0.1")
B_IP = ipv4.addr("10.0.0.2")


def pair() -> tuple[Stack, Stack, Segment]:
    a = Stack(mac=A_MAC, addr="10.0.0.1/24", rng=random.Random(1))
    b = Stack(mac=B_MAC, addr="10.0.0.2/24", rng=random.Random(2))
    net = Segment(a, b)
    net.exchange()
    return a, b, net


def _arp(op: int, sender_mac: bytes, sender_ip: int, target_mac: bytes, target_ip: int,
         dst: bytes = ethernet.BROADCAST) -> bytes:
    return ethernet.build(dst, sender_mac, ethernet.ETHERTYPE_ARP,
                          arp.build(op, sender_mac, sender_ip, target_mac, target_ip))


def _resolved(net: Segment, a: Stack) -> None:
    a.udp_send(a.udp_open(), b"hello", B_IP, 7)
    net.exchange()
    assert a.neighbours.entries[B_IP].mac == B_MAC


def _sent_to(net: Segment, sender: Stack, since: int) -> list[bytes]:
    return [frame[:6] for _, s, frame in net.captured[since:] if s is sender]


def test_a_spoofed_reply_within_the_lock_time_is_ignored() -> None:
    a, b, net = pair()
    _resolved(net, a)
    net.run(0.5)  # still within 1 s of the confirmation
    spoof = _arp(arp.OP_REPLY, EVIL_MAC, B_IP, A_MAC, A_IP, dst=A_MAC)
    net.inject(a, spoof)
    assert a.counters["arp.locktime_ignored"] == 1
    assert a.neighbours.entries[B_IP].mac == B_MAC
    start = len(net.captured)
    a.udp_send(a.udp_open(), b"still b", B_IP, 7)
    net.exchange()
    assert _sent_to(net, a, start) == [B_MAC]
    # The same frame as a gratuitous announcement: locked all the same (Linux lets garp override).
    net.inject(a, _arp(arp.OP_REQUEST, EVIL_MAC, B_IP, bytes(6), B_IP))
    assert a.counters["arp.locktime_ignored"] == 2
    assert a.neighbours.entries[B_IP].mac == B_MAC


def test_a_reachable_neighbours_mac_change_is_counted_after_the_lock_time() -> None:
    a, b, net = pair()
    _resolved(net, a)
    net.run(a.config.arp.locktime + 0.5)
    net.inject(a, _arp(arp.OP_REPLY, EVIL_MAC, B_IP, A_MAC, A_IP, dst=A_MAC))
    assert a.counters["arp.locktime_ignored"] == 0
    assert a.counters["arp.mac_changed"] == 1  # reachable: logged as a warning and counted
    assert a.neighbours.entries[B_IP].mac == EVIL_MAC
    # A change of a stale entry (not heard for reachable_time) is ordinary: not counted.
    net.run(a.config.arp.reachable_time + 1.0)
    net.inject(a, _arp(arp.OP_REPLY, B_MAC, B_IP, A_MAC, A_IP, dst=A_MAC))
    assert a.neighbours.entries[B_IP].mac == B_MAC
    assert a.counters["arp.mac_changed"] == 1


def test_a_claim_on_our_address_is_detected_and_defended_once_per_interval() -> None:
    """RFC 5227 2.4 (b): on a conflicting ARP packet a host may defend its address with one
    announcement, if it has not defended it within DEFEND_INTERVAL (10 s)."""
    a, b, net = pair()
    claim = _arp(arp.OP_REQUEST, EVIL_MAC, B_IP, bytes(6), B_IP)  # a gratuitous ARP for b's address

    def defences(since: int) -> list[arp.ArpPacket]:
        out = []
        for _, sender, frame in net.captured[since:]:
            if sender is b and frame[12:14] == b"\x08\x06":
                out.append(arp.parse(frame, 14))
        return out

    start = len(net.captured)
    net.inject(b, claim)
    net.exchange()
    (defence,) = defences(start)
    assert (defence.sender_ip, defence.target_ip, defence.sender_mac) == (B_IP, B_IP, B_MAC)
    assert b.counters["arp.address_conflict"] == 1 and b.counters["arp.defended"] == 1
    net.run(5.0)
    start = len(net.captured)
    net.inject(b, claim)
    net.exchange()
    assert defences(start) == []  # within DEFEND_INTERVAL: counted, not defended
    assert b.counters["arp.address_conflict"] == 2 and b.counters["arp.defended"] == 1
    net.run(5.5)
    start = len(net.captured)
    net.inject(b, claim)
    net.exchange()
    assert len(defences(start)) == 1
    assert b.counters["arp.address_conflict"] == 3 and b.counters["arp.defended"] == 2


def test_a_full_cache_evicts_the_least_recently_used_entry() -> None:
    cache = NeighbourCache(ArpConfig(max_entries=4))
    for i in range(4):
        cache.update(100 + i, bytes([2, 0, 0, 0, 0, i]), float(i), create=True)
    assert cache.lookup(100, 10.0) is not None  # used: now the most recent
    cache.update(200, bytes(6), 11.0, create=True)
    assert list(cache.entries) == [102, 103, 100, 200]  # 101, the least recently used, went
    cache.update(102, bytes([2, 0, 0, 0, 0, 9]), 12.0, create=False)  # refreshed by the network
    cache.update(201, bytes(6), 13.0, create=True)
    assert list(cache.entries) == [100, 200, 102, 201]


def test_the_cache_stays_within_its_bound_keeping_the_most_recent() -> None:
    config = ArpConfig()
    cache = NeighbourCache(config)
    for i in range(config.max_entries + 5000):
        cache.update(0x0A000000 + i, bytes(6), i * 0.001, create=True)
        assert len(cache.entries) <= config.max_entries
    assert list(cache.entries) == [0x0A000000 + i for i in range(5000, config.max_entries + 5000)]


def test_a_wrong_mac_is_dropped_when_unicast_polls_go_unanswered() -> None:
    """RFC 1122 2.3.2.1: a stale entry is polled by unicast; when the polls go unanswered (a
    corrupted ARP reply taught us a MAC nobody has), the entry is forgotten and the neighbour
    resolved again by broadcast, instead of sending into the void until the entry expires."""
    from tests.tcp.sim import B_IP, LossyNet

    net = LossyNet()
    a, b = net.a, net.b
    sink = b.udp_open(0, 9999)
    sender = a.udp_open(0, 0)
    a.udp_send(sender, b"first", B_IP, 9999)
    net.run_for(0.1)
    assert len(sink.queue) == 1
    entry = a.primary.neighbours.cache.entries[B_IP]
    entry.mac = bytes.fromhex("02dead00beef")  # poisoned
    entry.confirmed = net.now - a.config.arp.reachable_time - 1  # and stale
    for _ in range(20):  # one datagram a second, as an application keeps talking
        a.udp_send(sender, b"again", B_IP, 9999)
        net.run_for(1.0)
    assert a.counters["arp.probe_failed"] == 1
    assert a.primary.neighbours.cache.entries[B_IP].mac == b.mac
    assert len(sink.queue) >= 15  # after the re-resolution every datagram arrives
