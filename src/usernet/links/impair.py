"""A seeded fault injector for any link: loss, duplication, reordering, corruption, delay, rate.

It applies to both directions. Frames it holds back (delay, reordering, rate limiting) are kept
in a bounded heap per direction and released by the runtime's normal calls: received frames come
out of ``recv_batch`` once due, sent frames go to the inner link on the next ``recv_batch`` or
``send`` after they are due, and ``next_deadline()`` tells the runtime when that is. So a runtime
that honours ``next_deadline()`` (as :class:`usernet.Host` does) needs nothing else.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from typing import Any

from usernet.links.base import Link
from usernet.links.middleware import LinkWrapper

_FIELDS = {"loss": "loss", "dup": "dup", "reorder": "reorder", "corrupt": "corrupt", "delay": "delay_ms",
           "rate": "rate_mbps"}
REORDER_HOLD = 0.002  # a reordered frame is held this long (plus any delay), so later ones overtake it
MAX_HELD = 10000      # frames held per direction; beyond it the new frame is dropped (a full queue)


def parse_impair_spec(spec: str) -> dict[str, float]:
    """``"loss=0.05,dup=0.02,reorder=0.05,corrupt=0.01,delay=50,rate=10"`` -> keyword arguments.

    Probabilities are in [0, 1]; delay is in milliseconds, rate in megabits per second.
    """
    result: dict[str, float] = {}
    if not spec or not spec.strip():
        raise ValueError("empty impairment spec")
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item.strip()!r}")
        if key not in _FIELDS:
            raise ValueError(f"unknown impairment {key!r} (known: {', '.join(_FIELDS)})")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not a number") from None
        if number != number or number < 0:
            raise ValueError(f"{key}: must be a non-negative number")
        if key in ("loss", "dup", "reorder", "corrupt") and number > 1:
            raise ValueError(f"{key}: a probability must be between 0 and 1")
        if key == "rate" and number == 0:
            raise ValueError("rate: must be positive")
        result[_FIELDS[key]] = number
    return result


class _Direction:
    __slots__ = ("held", "free_at")

    def __init__(self) -> None:
        self.held: list[tuple[float, int, bytes, bool]] = []
        self.free_at = 0.0


class Impair(LinkWrapper):
    def __init__(self, inner: Link, loss: float = 0.0, dup: float = 0.0, reorder: float = 0.0,
                 corrupt: float = 0.0, delay_ms: float = 0.0, rate_mbps: float | None = None,
                 seed: int | None = None, directions: str = "both") -> None:
        super().__init__(inner)
        if directions not in ("both", "rx", "tx"):
            raise ValueError("directions must be 'both', 'rx' or 'tx'")
        self.loss, self.dup, self.reorder, self.corrupt = loss, dup, reorder, corrupt
        self.delay = delay_ms / 1000.0
        self.rate_mbps = rate_mbps or None
        self.rng = random.Random(seed)
        self.directions = directions
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._rx = _Direction()
        self._tx = _Direction()
        self.counters: dict[str, int] = {"lost": 0, "duplicated": 0, "reordered": 0, "corrupted": 0,
                                         "delayed": 0, "overflow": 0}

    def _impair(self, frame: bytes, way: _Direction, now: float, trusted: bool = False
                ) -> list[tuple[float, bytes, bool]]:
        """What becomes of one frame: zero, one or two (due time, frame, trusted) triples."""
        rng = self.rng
        counters = self.counters
        if self.loss and rng.random() < self.loss:
            counters["lost"] += 1
            return []
        if self.corrupt and rng.random() < self.corrupt and frame:
            if trusted:
                # The medium vouched for this frame's checksums (partial checksums over veth): the
                # stack will not verify them, so damage is modelled as what a NIC does with a bad
                # FCS, a drop.
                counters["corrupted"] += 1
                return []
            damaged = bytearray(frame)
            # Flip a bit past the Ethernet header so that the damage reaches checksummed bytes.
            start = 14 if self.layer == 2 and len(damaged) > 14 else 0
            position = rng.randrange(start, len(damaged))
            damaged[position] ^= 1 << rng.randrange(8)
            frame = bytes(damaged)
            counters["corrupted"] += 1
        copies = 2 if self.dup and rng.random() < self.dup else 1
        if copies == 2:
            counters["duplicated"] += 1
        due: float = now
        if self.rate_mbps:
            wire_free = max(now, way.free_at)
            way.free_at = wire_free + len(frame) * 8 / (self.rate_mbps * 1e6)
            due = way.free_at
        if self.delay:
            due += self.delay
            counters["delayed"] += 1
        if self.reorder and rng.random() < self.reorder:
            due += REORDER_HOLD
            counters["reordered"] += 1
        return [(due, frame, trusted)] * copies

    def _hold(self, way: _Direction, items: list[tuple[float, bytes, bool]]) -> None:
        for due, frame, trusted in items:
            if len(way.held) >= MAX_HELD:
                self.counters["overflow"] += 1
                continue
            heapq.heappush(way.held, (due, next(self._seq), frame, trusted))

    @staticmethod
    def _due(way: _Direction, now: float) -> list[tuple[bytes, bool]]:
        out = []
        while way.held and way.held[0][0] <= now:
            _, _, frame, trusted = heapq.heappop(way.held)
            out.append((frame, trusted))
        return out

    def _flush_tx(self, now: float) -> None:
        for frame, _ in self._due(self._tx, now):
            self.inner.send(frame)

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames = self.inner.recv_batch(max_frames)
        with self._lock:
            now = time.monotonic()
            self._flush_tx(now)
            if self.directions == "tx":
                return frames
            for frame, trusted in frames:
                self._hold(self._rx, self._impair(frame, self._rx, now, trusted))
            return self._due(self._rx, now)

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        with self._lock:
            now = time.monotonic()
            if self.directions == "rx":
                self._flush_tx(now)
                self.inner.send(frame)
                return
            self._hold(self._tx, self._impair(bytes(frame), self._tx, now))
            self._flush_tx(now)

    def next_deadline(self) -> float | None:
        with self._lock:
            candidates = [way.held[0][0] for way in (self._rx, self._tx) if way.held]
        inner = self.inner.next_deadline()
        if inner is not None:
            candidates.append(inner)
        return min(candidates) if candidates else None

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)
