"""UDP endpoints (RFC 768): the sans-IO half of a datagram socket.

An endpoint holds a bounded receive queue (bytes, like SO_RCVBUF: datagrams arriving when it
is full are dropped and counted, as Linux does) and the last asynchronous error (ICMP
port unreachable on a connected endpoint becomes ECONNREFUSED, like Linux).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from usernet.errors import os_error

DEFAULT_RCVBUF = 212992  # Linux's default net.core.rmem_default
EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999  # Linux's default ip_local_port_range


class UdpEndpoint:
    __slots__ = ("local_addr", "local_port", "remote_addr", "remote_port", "queue", "queued_bytes", "rcvbuf",
                 "error", "on_event", "broadcast", "closed", "drops", "reuse", "ip_options")

    def __init__(self, local_addr: int, local_port: int) -> None:
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = 0
        self.remote_port = 0
        self.queue: deque[tuple[bytes, tuple[int, int]]] = deque()
        self.queued_bytes = 0
        self.rcvbuf = DEFAULT_RCVBUF
        self.error: OSError | None = None
        self.on_event: Callable[[], None] | None = None
        self.broadcast = False
        self.closed = False
        self.drops = 0
        self.reuse = False
        self.ip_options: dict[str, int] = {}  # IP_TTL/IP_TOS: send_ip keyword arguments ({}: defaults)

    @property
    def connected(self) -> bool:
        return self.remote_port != 0

    @property
    def readable(self) -> bool:
        return bool(self.queue) or self.error is not None

    def deliver(self, data: bytes, src: tuple[int, int]) -> bool:
        """Queue one datagram; False (dropped) when the receive buffer is full."""
        if self.queued_bytes + len(data) > self.rcvbuf and self.queue:
            self.drops += 1
            return False
        self.queue.append((data, src))
        self.queued_bytes += len(data)
        if self.on_event is not None:
            self.on_event()
        return True

    def pop(self) -> tuple[bytes, tuple[int, int]] | None:
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued_bytes -= len(item[0])
        return item

    def take_error(self) -> OSError | None:
        err, self.error = self.error, None
        return err

    def set_error(self, code: int) -> None:
        self.error = os_error(code)
        if self.on_event is not None:
            self.on_event()


class EchoEndpoint:
    """An ICMP echo (ping) endpoint: replies matching its identifier are queued with their arrival time."""

    __slots__ = ("ident", "queue", "on_event", "closed", "max_queue", "errors")

    def __init__(self, ident: int, max_queue: int = 256) -> None:
        self.ident = ident
        self.queue: deque[tuple[int, int, bytes, int, float]] = deque()  # (src, seq, data, ttl, now)
        self.errors: deque[tuple[int, int, int]] = deque(maxlen=max_queue)  # (icmp type, code, from)
        self.on_event: Callable[[], None] | None = None
        self.closed = False
        self.max_queue = max_queue

    def deliver(self, item: tuple[int, int, bytes, int, float]) -> None:
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()  # keep the newest: a ping client cares about recent replies
        self.queue.append(item)
        if self.on_event is not None:
            self.on_event()

    def deliver_error(self, icmp_type: int, code: int, source: int) -> None:
        self.errors.append((icmp_type, code, source))
        if self.on_event is not None:
            self.on_event()
