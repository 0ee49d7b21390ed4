"""The in-memory network: a learning Ethernet switch that any number of hosts plug into.

Each port is a :class:`~usernet.links.base.Link` with a real file descriptor (an eventfd) that
polls readable while frames wait, so the runtime treats it like any device. Optional delay and
rate (serialisation time per frame) are applied with monotonic deadlines: a frame becomes
readable at its due time, announced through ``next_deadline()``. Thread-safe: hosts run on
their own threads.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from usernet.links.base import Link

_counter = itertools.count(1)


class MemoryPort(Link):
    """One port of a :class:`Switch`."""

    def __init__(self, switch: Switch, name: str, mtu: int, max_queue: int, mac: bytes | None) -> None:
        self.switch = switch
        self.name = name
        self.mtu = mtu
        self.mac = mac
        self.layer = switch.layer
        self.max_queue = max_queue
        self._queue: deque[bytes] = deque()        # frames due now
        self._delayed: list[tuple[float, int, bytes]] = []  # (due, seq, frame) heap
        self._event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._signalled = False
        self.closed = False
        self.rx_dropped = 0
        self.tx_frames = 0
        self.rx_frames = 0
        self._seq = itertools.count()
        self._tx_free_at = 0.0  # serialisation: when this port's "wire" is free again

    def fileno(self) -> int:
        return self._event

    # Called by the switch with its lock held.
    def _enqueue(self, frame: bytes, due: float) -> None:
        if self.closed:
            return
        if len(self._queue) + len(self._delayed) >= self.max_queue:
            self.rx_dropped += 1
            return
        if due <= 0.0:
            self._queue.append(frame)
            self._signal()
        else:
            heapq.heappush(self._delayed, (due, next(self._seq), frame))
            self._signal()  # wake the runtime so it re-reads next_deadline()

    def _signal(self) -> None:
        if not self._signalled:
            self._signalled = True
            try:
                os.eventfd_write(self._event, 1)
            except OSError:
                pass

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        with self.switch.lock:
            if self._signalled:
                self._signalled = False
                try:
                    os.eventfd_read(self._event)
                except (BlockingIOError, OSError):
                    pass
            if self._delayed:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._queue.append(heapq.heappop(self._delayed)[2])
            out: list[tuple[bytes, bool]] = []
            queue = self._queue
            while queue and len(out) < max_frames:
                out.append((queue.popleft(), False))
            if queue:
                self._signal()
            self.rx_frames += len(out)
            return out

    def next_deadline(self) -> float | None:
        with self.switch.lock:
            return self._delayed[0][0] if self._delayed else None

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise OSError(9, "port is closed")
        self.tx_frames += 1
        self.switch._forward(self, bytes(frame))

    def close(self) -> None:
        with self.switch.lock:
            if self.closed:
                return
            self.closed = True
            self.switch._detach(self)
            self._queue.clear()
            self._delayed.clear()
        os.close(self._event)


class Switch:
    """A learning switch joining :class:`MemoryPort` links.

    ``delay`` (seconds) is added to every frame; ``rate_mbps`` limits each sending port's wire
    rate (frames queue behind each other). ``layer=3`` makes a shared bare-IP segment (every
    packet reaches every other port), for hosts configured like TUN.
    """

    def __init__(self, delay: float = 0.0, rate_mbps: float | None = None, layer: int = 2,
                 max_queue: int = 4096) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if rate_mbps is not None and rate_mbps <= 0:
            raise ValueError("rate must be > 0")
        self.delay = delay
        self.rate_mbps = rate_mbps
        self.layer = layer
        self.max_queue = max_queue
        self.lock = threading.Lock()
        self.ports: list[MemoryPort] = []
        self.table: dict[bytes, MemoryPort] = {}
        self.flooded = 0
        self.on_frame: Callable[[MemoryPort, bytes], None] | None = None  # observer hook (tests, demo)

    def port(self, mtu: int = 1500, name: str | None = None, max_queue: int | None = None,
             mac: bytes | None = None) -> MemoryPort:
        port = MemoryPort(self, name or f"mem{next(_counter)}", mtu, max_queue or self.max_queue, mac)
        with self.lock:
            self.ports.append(port)
        return port

    def _detach(self, port: MemoryPort) -> None:
        self.ports.remove(port)
        for mac in [m for m, p in self.table.items() if p is port]:
            del self.table[mac]

    def _forward(self, source: MemoryPort, frame: bytes) -> None:
        with self.lock:
            due = 0.0
            if self.delay or self.rate_mbps:
                now = time.monotonic()
                start = max(now, source._tx_free_at)
                if self.rate_mbps:
                    source._tx_free_at = start + len(frame) * 8 / (self.rate_mbps * 1e6)
                    start = source._tx_free_at
                due = start + self.delay
                if due <= now:
                    due = 0.0
            if self.on_frame is not None:
                self.on_frame(source, frame)
            if self.layer == 3 or len(frame) < 14:
                targets = [p for p in self.ports if p is not source]
            else:
                src_mac = frame[6:12]
                if not src_mac[0] & 1:
                    self.table[src_mac] = source  # learn where the sender lives
                dst = self.table.get(frame[0:6])
                if dst is not None and dst is not source:
                    targets = [dst]
                elif dst is source:
                    return  # a frame for a host on the same port: a switch never reflects it
                else:
                    self.flooded += 1
                    targets = [p for p in self.ports if p is not source]
            for target in targets:
                target._enqueue(frame, due)


def pipe(mtu: int = 1500, delay: float = 0.0, rate_mbps: float | None = None) -> tuple[MemoryPort, MemoryPort]:
    """Two links joined back to back (a two-port switch)."""
    switch = Switch(delay=delay, rate_mbps=rate_mbps)
    return switch.port(mtu=mtu), switch.port(mtu=mtu)
