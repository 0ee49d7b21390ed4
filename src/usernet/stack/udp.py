"""UDP endpoints (RFC 768): the sans-IO half of a datagram socket.

An endpoint holds a bounded receive queue (bytes, like SO_RCVBUF: datagrams arriving when it
is full are dropped and counted, as Linux does) and the last asynchronous error (ICMP
port unreachable on a connected endpoint becomes ECONNREFUSED, like Linux).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Mapping

from usernet.errors import os_error
from usernet.stack.base import StackBase
from usernet.wire import icmp, ipv4, udp

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


class UdpMixin(StackBase):
    """UDP input and output for the host (RFC 768, RFC 1122 4.1)."""

    def _udp_input(self, header: ipv4.IPv4Header, payload: memoryview, broadcast: bool, trusted: bool,
                   frame: bytes | bytearray | memoryview, offset: int) -> None:
        counters = self.counters
        sport, dport, data = udp.parse(payload, header.src, header.dst, verify_checksum=not trusted)
        counters["udp.rx"] += 1
        endpoints = self.udp_ports.get(dport)
        delivered = matched = False
        if endpoints:
            src_pair = (header.src, sport)
            body: bytes | None = None
            for endpoint in endpoints:
                if endpoint.local_addr and endpoint.local_addr != header.dst and not broadcast:
                    continue
                if endpoint.connected and (endpoint.remote_addr != header.src or endpoint.remote_port != sport):
                    continue
                matched = True
                if body is None:
                    body = bytes(data)
                if endpoint.deliver(body, src_pair):
                    delivered = True
                else:
                    self._drop("udp.rcvbuf_errors")
                if not broadcast:
                    break  # unicast goes to one socket (the first bound); broadcast to all
        if delivered or matched:
            return
        self._drop("udp.no_port")
        if not broadcast:
            # RFC 1122 4.1.3.1: port unreachable for a closed port. (For a reassembled datagram this
            # quotes its last fragment, which _send_icmp_error then declines to answer: acceptable.)
            original = memoryview(frame)[offset:offset + header.total_length]
            self._send_icmp_error(icmp.DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE, original, header.src, 0)

    def udp_open(self, local_addr: int = 0, local_port: int = 0, reuse: bool = False) -> UdpEndpoint:
        """Bind a UDP endpoint; port 0 picks an ephemeral port from the RNG."""
        if local_addr and not self.is_local(local_addr) and local_addr != 0xFFFFFFFF:
            raise os_error(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if local_port == 0:
            local_port = self._ephemeral_port(self.udp_ports)
        elif not 0 < local_port < 0x10000:
            raise OverflowError("port must be 0-65535.")
        existing = self.udp_ports.get(local_port)
        # SO_REUSEADDR on UDP (Linux): several sockets may share a port if every one of them asked.
        if existing and not (reuse and all(e.reuse for e in existing)):
            raise os_error(errno.EADDRINUSE, "Address already in use")
        endpoint = UdpEndpoint(local_addr, local_port)
        endpoint.reuse = reuse
        self.udp_ports.setdefault(local_port, []).append(endpoint)
        return endpoint

    def udp_close(self, endpoint: UdpEndpoint) -> None:
        endpoint.closed = True
        endpoints = self.udp_ports.get(endpoint.local_port)
        if endpoints and endpoint in endpoints:
            endpoints.remove(endpoint)
            if not endpoints:
                del self.udp_ports[endpoint.local_port]

    def udp_send(self, endpoint: UdpEndpoint, data: bytes | bytearray | memoryview, dst: int, dport: int) -> None:
        if not 0 < dport < 0x10000:
            raise os_error(errno.EINVAL, "Invalid argument")
        if len(data) > 65507:
            raise os_error(errno.EMSGSIZE, "Message too long")
        if (dst == 0xFFFFFFFF or dst in self.broadcasts) and not endpoint.broadcast:
            raise PermissionError(errno.EACCES, "Permission denied")
        src = endpoint.local_addr
        if not src or src == 0xFFFFFFFF:
            src = self.source_for(dst)  # RFC 1122 3.3.4.3; raises ENETUNREACH without a route
        ip = endpoint.ip_options  # the socket's IP_TTL/IP_TOS
        self.send_ip(src, dst, ipv4.PROTO_UDP, udp.build(src, dst, endpoint.local_port, dport, data),
                     ttl=ip.get("ttl"), tos=ip.get("tos", 0))
        self.counters["udp.tx"] += 1

    def _ephemeral_port(self, table: Mapping[int, object]) -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            if port not in table:
                return port
        raise os_error(errno.EADDRINUSE, "Address already in use")
