"""Stand-ins for a connection, for driving the HTTP server's connection loop without a stack."""

from __future__ import annotations


class FeedSocket:
    """Hands out ``requests`` (one per recv), then EOF; records each sendall."""

    def __init__(self, requests: list[bytes]) -> None:
        self.incoming = list(requests)
        self.sent: list[bytes] = []

    def recv(self, n: int) -> bytes:
        return self.incoming.pop(0) if self.incoming else b""

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def settimeout(self, t: float | None) -> None:
        pass

    def close(self) -> None:
        pass
