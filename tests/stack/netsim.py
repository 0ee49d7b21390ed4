"""A virtual-time Ethernet segment joining sans-IO stacks: frames are delivered instantly (or
through a filter that can drop, rewrite or capture them) and time jumps from deadline to deadline."""

from __future__ import annotations

from collections.abc import Callable

from usernet.stack.core import Stack

Filter = Callable[[Stack, bytes], "bytes | None"]


class Segment:
    def __init__(self, *stacks: Stack, now: float = 0.0) -> None:
        self.stacks = list(stacks)
        self.now = now
        self.captured: list[tuple[float, Stack, bytes]] = []
        self.filter: Filter | None = None

    def exchange(self) -> int:
        """Move frames until every stack is quiet at the current time; return frames moved."""
        moved = 0
        for _ in range(10000):
            progress = False
            for sender in self.stacks:
                for frame in sender.poll(self.now):
                    frame = bytes(frame)
                    self.captured.append((self.now, sender, frame))
                    if self.filter is not None:
                        filtered = self.filter(sender, frame)
                        if filtered is None:
                            continue
                        frame = filtered
                    moved += 1
                    progress = True
                    for receiver in self.stacks:
                        if receiver is not sender:
                            receiver.receive(frame, self.now)
            if not progress:
                return moved
        raise AssertionError("network did not settle")

    def run(self, duration: float) -> None:
        """Advance virtual time by *duration*, firing every timer on the way."""
        end = self.now + duration
        while True:
            self.exchange()
            deadlines = [d for s in self.stacks if (d := s.next_deadline()) is not None and d > self.now]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > end:
                self.now = end
                self.exchange()
                return
            self.now = nxt

    def inject(self, receiver: Stack, frame: bytes) -> None:
        receiver.receive(frame, self.now)
