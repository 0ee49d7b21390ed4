"""A tap: every frame a link carries, handed to callbacks (the control socket's ``tcpdump``).

The host wraps its links in a :class:`TapLink` only while at least one tap is registered
(:meth:`usernet.api.host.Host.add_tap`), so a host nobody watches pays nothing. Callbacks run on
the runtime thread with the host lock held: they must be quick and must not raise (a failing
one is counted and skipped, never allowed to stop the link).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from usernet.links.base import Link
from usernet.links.middleware import LinkWrapper

log = logging.getLogger("usernet.tap")

#: ``tap(interface name, "<" received or ">" sent, frame, layer)``
Tap = Callable[[str, str, bytes, int], None]


class TapLink(LinkWrapper):
    def __init__(self, inner: Link, ifname: str, taps: list[Tap]) -> None:
        super().__init__(inner)
        self.ifname = ifname
        self.taps = taps  # the host's list, shared: taps added later are called too
        self.errors = 0

    def _tap(self, direction: str, frame: bytes) -> None:
        for tap in self.taps:
            try:
                tap(self.ifname, direction, frame, self.layer)
            except Exception:  # an observer's bug must not stop the link
                self.errors += 1
                log.exception("tap failed")

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames = self.inner.recv_batch(max_frames)
        if frames and self.taps:
            for frame, _ in frames:
                self._tap("<", bytes(frame))
        return frames

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        if self.taps:
            self._tap(">", bytes(frame))  # a copy: the sender may reuse its buffer
        self.inner.send(frame)

    def send_gso(self, frame: bytes | bytearray, mss: int) -> None:
        """A TSO super-segment: tapped whole, as tcpdump on a TSO interface sees it."""
        if self.taps:
            self._tap(">", bytes(frame))
        self.inner.send_gso(frame, mss)  # type: ignore[attr-defined]
