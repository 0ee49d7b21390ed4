"""Middleware: links that wrap a link. Each forwards everything to the inner link and adds one
concern (capture, tracing, fault injection), so they compose in any order."""

from __future__ import annotations

from usernet.links.base import Link


class LinkWrapper(Link):
    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.layer = inner.layer
        self.mtu = inner.mtu
        self.mac = inner.mac
        self.name = inner.name

    def fileno(self) -> int:
        return self.inner.fileno()

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        return self.inner.recv_batch(max_frames)

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self.inner.send(frame)

    def next_deadline(self) -> float | None:
        return self.inner.next_deadline()

    def close(self) -> None:
        self.inner.close()
