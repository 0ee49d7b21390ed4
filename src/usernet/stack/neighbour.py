"""The neighbour resolver: next hop -> link address, with the packets waiting for an answer.

RFC 1122 2.3.2 for ARP, and the same shape as IPv6 neighbour discovery (RFC 4861 7.2): a cache
of confirmed neighbours (reachable, then stale and re-probed by unicast), a bounded queue per
unresolved neighbour so the first packet of a conversation is not lost, a bounded number of
neighbours being resolved at once, retries, then "unreachable" for every queued packet. The
protocol is supplied by two callbacks: ``solicit(ip, unicast_to)`` sends the question (an ARP
request now, a neighbour solicitation later) and ``unreachable(packet)`` reports a packet that
cannot be delivered. One resolver per interface: neighbours belong to a link.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from usernet.stack.counters import Counters
from usernet.wire import ipv4
from usernet.wire.ipv4 import ntoa

log = logging.getLogger("usernet.arp")


@dataclass(slots=True)
class ArpConfig:
    reachable_time: float = 30.0
    stale_time: float = 60.0
    retry_interval: float = 1.0
    retries: int = 3
    max_entries: int = 1024
    max_pending_neighbours: int = 64
    max_queue_per_neighbour: int = 16
    # A confirmed neighbour's MAC is not replaced by an ARP frame heard less than this after the
    # last confirmation (Linux neigh locktime, 1 s: "prevents ARP cache thrashing" and a spoofed
    # reply racing the real one). Unlike Linux, a gratuitous ARP does not bypass it.
    locktime: float = 1.0
    defend_interval: float = 10.0  # RFC 5227 DEFEND_INTERVAL: at most one defence of an address per 10 s


class Neighbour:
    __slots__ = ("mac", "confirmed", "probed", "probes")

    def __init__(self, mac: bytes, confirmed: float) -> None:
        self.mac = mac
        self.confirmed = confirmed
        self.probed = 0.0  # when we last re-probed while stale
        self.probes = 0  # unicast polls since the last confirmation


class Pending:
    """A neighbour being resolved: the packets waiting for it and the retry schedule."""

    __slots__ = ("queue", "attempts", "next_try")

    def __init__(self, next_try: float) -> None:
        self.queue: deque[bytes | bytearray] = deque()
        self.attempts = 1
        self.next_try = next_try


class NeighbourCache:
    def __init__(self, config: ArpConfig | None = None) -> None:
        self.config = config or ArpConfig()
        # Least recently used first: a lookup or an update moves an entry to the end, so a full
        # cache evicts the front in O(1) instead of scanning every entry for the oldest.
        self.entries: OrderedDict[int, Neighbour] = OrderedDict()
        self.pending: dict[int, Pending] = {}

    def lookup(self, ip: int, now: float) -> Neighbour | None:
        entry = self.entries.get(ip)
        if entry is None:
            return None
        if now - entry.confirmed > self.config.reachable_time + self.config.stale_time:
            del self.entries[ip]
            log.debug("ARP: %s expired (stale for %.0f s)", ntoa(ip), self.config.stale_time)
            return None
        self.entries.move_to_end(ip)
        return entry

    def is_stale(self, entry: Neighbour, now: float) -> bool:
        return now - entry.confirmed > self.config.reachable_time

    def update(self, ip: int, mac: bytes, now: float, create: bool) -> Pending | None:
        """Record *ip* at *mac*. Without *create*, only an existing entry (or pending resolution) is
        refreshed: RFC 826's merge rule. Returns the pending queue that can now be flushed."""
        entry = self.entries.get(ip)
        pending = self.pending.pop(ip, None)
        if entry is not None:
            if entry.mac != mac:
                log.debug("ARP: %s moved from %s to %s", ntoa(ip), entry.mac.hex(":"), mac.hex(":"))
            entry.mac = mac
            entry.confirmed = now
            self.entries.move_to_end(ip)
        elif create or pending is not None:
            if len(self.entries) >= self.config.max_entries:
                self._evict_oldest()
            self.entries[ip] = Neighbour(mac, now)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ARP: %s is at %s (new entry%s)", ntoa(ip), mac.hex(":"),
                          f", {len(pending.queue)} queued packets released" if pending else "")
        return pending

    def _evict_oldest(self) -> None:
        oldest, _ = self.entries.popitem(last=False)  # the least recently used
        log.debug("ARP: cache full, %s evicted", ntoa(oldest))

    def next_deadline(self) -> float | None:
        if not self.pending:
            return None
        return min(p.next_try for p in self.pending.values())



class NeighbourResolver:
    def __init__(self, config: ArpConfig, counters: Counters, solicit: Callable[[int, bytes | None], None],
                 unreachable: Callable[[Any], None]) -> None:
        self.cache = NeighbourCache(config)
        self.config = config
        self.counters = counters
        self.solicit = solicit
        self.unreachable = unreachable
        self.defended_at: dict[int, float] = {}  # our address -> when we last defended it (RFC 5227 2.4)

    def resolve(self, next_hop: int, packet: Any, now: float) -> bytes | None:
        """The link address of *next_hop*; or None, having queued *packet* until it is known."""
        cache = self.cache
        entry = cache.lookup(next_hop, now)
        if entry is not None:
            if cache.is_stale(entry, now) and now - entry.probed >= self.config.retry_interval:
                if entry.probed > entry.confirmed and entry.probes >= self.config.retries:
                    # Unicast polls went unanswered (RFC 1122 2.3.2.1): the MAC is wrong or gone.
                    # Forget it and resolve again by broadcast, as Linux's NUD_PROBE -> FAILED does.
                    del cache.entries[next_hop]
                    self.counters["arp.probe_failed"] += 1
                    return self.resolve(next_hop, packet, now)
                if entry.probed <= entry.confirmed:
                    entry.probes = 0
                entry.probed = now
                entry.probes += 1
                self.solicit(next_hop, entry.mac)  # RFC 1122 2.3.2.1: a unicast poll, the entry still used
            return entry.mac
        pending = cache.pending.get(next_hop)
        if pending is None:
            if len(cache.pending) >= self.config.max_pending_neighbours:
                self.counters["arp.pending_table_full"] += 1
                self.unreachable(packet)
                return None
            pending = cache.pending[next_hop] = Pending(now + self.config.retry_interval)
            self.solicit(next_hop, None)
        if len(pending.queue) >= self.config.max_queue_per_neighbour:
            # RFC 1122 2.3.2.2 says keep at least one; we keep the oldest, drop the newest.
            self.counters["arp.queue_full"] += 1
            return None
        pending.queue.append(packet)
        return None

    def known(self, next_hop: int, now: float) -> bytes | None:
        """The link address if it is confirmed and fresh (no side effects): for TSO decisions."""
        entry = self.cache.entries.get(next_hop)
        if entry is None or self.cache.is_stale(entry, now):
            return None
        return entry.mac

    def confirm(self, ip: int, mac: bytes, now: float, create: bool) -> list[Any]:
        """*ip* is at *mac*; returns the packets that waited for it. A different MAC for a
        neighbour confirmed less than `locktime` ago is ignored (Linux neigh_update without
        NEIGH_UPDATE_F_OVERRIDE); a reachable neighbour's MAC that does change is logged and
        counted, since it is either a new card or someone taking the address over."""
        entry = self.cache.entries.get(ip)
        if entry is not None and entry.mac != mac:
            if now - entry.confirmed < self.config.locktime:
                self.counters["arp.locktime_ignored"] += 1
                log.info("ARP: %s claimed by %s within the lock time of %s: ignored", ntoa(ip), mac.hex(":"),
                         entry.mac.hex(":"))
                return []
            if not self.cache.is_stale(entry, now):
                self.counters["arp.mac_changed"] += 1
                log.warning("ARP: reachable neighbour %s changed from %s to %s", ntoa(ip), entry.mac.hex(":"),
                            mac.hex(":"))
        pending = self.cache.update(ip, mac, now, create)
        return list(pending.queue) if pending is not None else []

    def poll(self, now: float) -> None:
        cache = self.cache
        if not cache.pending:
            return
        for ip, pending in list(cache.pending.items()):
            if pending.next_try > now:
                continue
            if pending.attempts >= self.config.retries:
                del cache.pending[ip]
                self.counters["arp.resolve_failed"] += 1
                # RFC 1122 2.3.2.2: tell the senders their destination is unreachable.
                for packet in pending.queue:
                    self.unreachable(packet)
                continue
            pending.attempts += 1
            pending.next_try = now + self.config.retry_interval
            self.solicit(ip, None)

    def next_deadline(self) -> float | None:
        return self.cache.next_deadline()

    def entries(self, now: float) -> list[dict[str, Any]]:
        """What ``ip neigh`` shows."""
        rows = []
        for ip, entry in self.cache.entries.items():
            state = "STALE" if self.cache.is_stale(entry, now) else "REACHABLE"
            rows.append({"address": ipv4.ntoa(ip), "mac": entry.mac.hex(":"), "state": state,
                         "age": round(now - entry.confirmed, 3)})
        for ip, pending in self.cache.pending.items():
            rows.append({"address": ipv4.ntoa(ip), "mac": None, "state": "INCOMPLETE", "queued": len(pending.queue),
                         "attempts": pending.attempts})
        return rows
