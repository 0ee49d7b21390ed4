"""The neighbour (ARP) cache: RFC 826 resolution with RFC 1122 2.3.2.1 cache validation.

Each entry is REACHABLE for ``reachable_time`` after confirmation, then STALE: a stale entry is
still used (no packet is held back) but triggers a unicast re-probe, and is forgotten after
``stale_time`` without confirmation. Unresolved neighbours hold a bounded queue of waiting
packets (so the first packet of a conversation is not lost) and are retried ``retries`` times.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

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


class Neighbour:
    __slots__ = ("mac", "confirmed", "probed")

    def __init__(self, mac: bytes, confirmed: float) -> None:
        self.mac = mac
        self.confirmed = confirmed
        self.probed = 0.0  # when we last re-probed while stale


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
        self.entries: dict[int, Neighbour] = {}
        self.pending: dict[int, Pending] = {}

    def lookup(self, ip: int, now: float) -> Neighbour | None:
        entry = self.entries.get(ip)
        if entry is not None and now - entry.confirmed > self.config.reachable_time + self.config.stale_time:
            del self.entries[ip]
            log.debug("ARP: %s expired (stale for %.0f s)", ntoa(ip), self.config.stale_time)
            return None
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
                log.info("ARP: %s moved from %s to %s", ntoa(ip), entry.mac.hex(":"), mac.hex(":"))
            entry.mac = mac
            entry.confirmed = now
        elif create or pending is not None:
            if len(self.entries) >= self.config.max_entries:
                self._evict_oldest()
            self.entries[ip] = Neighbour(mac, now)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ARP: %s is at %s (new entry%s)", ntoa(ip), mac.hex(":"),
                          f", {len(pending.queue)} queued packets released" if pending else "")
        return pending

    def _evict_oldest(self) -> None:
        oldest = min(self.entries, key=lambda ip: self.entries[ip].confirmed)
        del self.entries[oldest]
        log.debug("ARP: cache full, %s evicted", ntoa(oldest))

    def next_deadline(self) -> float | None:
        if not self.pending:
            return None
        return min(p.next_try for p in self.pending.values())
