"""What every link offers the runtime.

A link moves whole frames: Ethernet frames for layer-2 links (TAP, AF_PACKET, the in-memory
switch), bare IPv4 packets for layer-3 links (TUN). It is used by the runtime (``usernet.api``),
never by the sans-IO stack.
"""

from __future__ import annotations

import abc


class Link(abc.ABC):
    #: 2 for Ethernet frames, 3 for bare IP packets (TUN).
    layer: int = 2
    #: IP MTU of the medium (payload of an Ethernet frame).
    mtu: int = 1500
    #: The hardware address the host should use (None: the host picks one).
    mac: bytes | None = None
    #: A short human name for logs ("tap0", "veth1", "mem:3").
    name: str = "link"

    @abc.abstractmethod
    def fileno(self) -> int:
        """A file descriptor that polls readable while frames are waiting."""

    @abc.abstractmethod
    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        """Every frame ready now (at most *max_frames*), never blocking.

        Each item is ``(frame, checksum_trusted)``: the flag is True when the medium vouches for
        the L4 checksums (the kernel verified them, or they are CHECKSUM_PARTIAL on a virtual
        link and so were never computed); the stack then skips verifying them.
        """

    @abc.abstractmethod
    def send(self, frame: bytes | bytearray | memoryview) -> None:
        """Transmit one frame. Never blocks for long; drops (and counts) when the medium is full."""

    def next_deadline(self) -> float | None:
        """Monotonic time at which a delayed frame becomes ready (links that delay), else None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
