"""A seeded, virtual-time network of two sans-IO stacks with faults: loss, duplication,
reordering, corruption, delay and a rate limit. Frames are events on a clock; nothing sleeps."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

from usernet.stack.core import Stack
from usernet.wire import ipv4

A_IP = ipv4.addr("10.0.0.1")
B_IP = ipv4.addr("10.0.0.2")


@dataclass
class Faults:
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.001
    rate_bps: float | None = None  # bits per second per direction


class LossyNet:
    def __init__(self, faults: Faults | None = None, seed: int = 1, mtu: int = 1500) -> None:
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.now = 0.0
        self.a = Stack(mac=bytes.fromhex("020000000001"), addr="10.0.0.1/24", rng=random.Random(seed + 1), mtu=mtu)
        self.b = Stack(mac=bytes.fromhex("020000000002"), addr="10.0.0.2/24", rng=random.Random(seed + 2), mtu=mtu)
        self.queue: list[tuple[float, int, Stack, bytes]] = []
        self.seq = itertools.count()
        self.free_at = {id(self.a): 0.0, id(self.b): 0.0}
        self.frames = 0

    def _send(self, sender: Stack, frame: bytes) -> None:
        f = self.faults
        rng = self.rng
        self.frames += 1
        # Loss spares ARP (the draw is still made, so seeded schedules stay as they were): three
        # lost requests in a row fail the connection by design (EHOSTUNREACH, tested in tests/stack),
        # which is not what these TCP schedules are about.
        if f.loss and rng.random() < f.loss and frame[12:14] == b"\x08\x00":
            return
        if f.corrupt and rng.random() < f.corrupt and frame[12:14] == b"\x08\x00":
            # Damage that the Ethernet FCS let through, inside an IPv4 datagram: what checksums
            # above it must catch. (ARP has no checksum of its own; a poisoned cache is tested
            # on its own, in tests/stack/test_arp_hardening.py.)
            damaged = bytearray(frame)
            damaged[rng.randrange(14, len(damaged))] ^= 1 << rng.randrange(8)
            frame = bytes(damaged)
        due = self.now
        if f.rate_bps:
            start = max(self.now, self.free_at[id(sender)])
            self.free_at[id(sender)] = due = start + len(frame) * 8 / f.rate_bps
        due += f.delay
        if f.reorder and rng.random() < f.reorder:
            due += f.delay * 2 + 0.001
        receiver = self.b if sender is self.a else self.a
        copies = 2 if f.dup and rng.random() < f.dup else 1
        for _ in range(copies):
            heapq.heappush(self.queue, (due, next(self.seq), receiver, frame))

    def flush(self) -> None:
        for stack in (self.a, self.b):
            for frame in stack.poll(self.now):
                self._send(stack, bytes(frame))
            if stack.tcp is not None:
                stack.tcp.check_invariants()  # the timer heap never misses a connection's deadline

    def step(self) -> bool:
        """Advance to the next event; False when nothing is scheduled."""
        self.flush()
        deadlines = [d for s in (self.a, self.b) if (d := s.next_deadline()) is not None]
        nxt = min(deadlines, default=None)
        if self.queue and (nxt is None or self.queue[0][0] <= nxt):
            due, _, receiver, frame = heapq.heappop(self.queue)
            self.now = max(self.now, due)
            receiver.receive(frame, self.now)
            return True
        if nxt is None:
            return False
        self.now = max(self.now, nxt)
        return True

    def run_until(self, condition, limit: float = 600.0) -> None:
        end = self.now + limit
        while not condition():
            if not self.step() or self.now > end:
                raise AssertionError(f"condition not met by t={self.now:.3f}")

    def run_for(self, duration: float) -> None:
        end = self.now + duration
        while self.now < end:
            self.flush()
            deadlines = [d for s in (self.a, self.b) if (d := s.next_deadline()) is not None]
            nxt = min(deadlines + ([self.queue[0][0]] if self.queue else []), default=None)
            if nxt is None or nxt > end:
                self.now = end
                self.flush()
                return
            self.step()
