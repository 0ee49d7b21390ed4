"""The driver of the sans-IO stub resolver (:mod:`usernet.proto.dns_client`) over a host's sockets.

Every UDP attempt gets a fresh socket (so a fresh random source port, RFC 5452 10), connected to the
server so that an ICMP port unreachable fails the attempt at once; TCP (after a truncated answer)
is one blocking exchange. Lookups from several threads share one cache: the machine is only touched
under ``Resolver.lock``, never while waiting for the network.
"""

from __future__ import annotations

import random
import select
import socket as _socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from usernet.proto.dns_client import (
    BAD_NAME,
    NO_SERVERS,
    NODATA,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TIMEOUT,
    Answer,
    Close,
    DnsClient,
    Lookup,
    ResolveError,
    ResolverConfig,
    Send,
)
from usernet.wire import dns

if TYPE_CHECKING:
    from usernet.api.host import Host
    from usernet.api.socket import Socket

__all__ = ["Resolver", "ResolveError", "gaierror_for"]

_EAI_NODATA = getattr(_socket, "EAI_NODATA", _socket.EAI_NONAME)

# What glibc's getaddrinfo reports for each failure (h_errno HOST_NOT_FOUND, NO_DATA, TRY_AGAIN,
# NO_RECOVERY), with the socket module's codes and texts.
_GAI = {
    NXDOMAIN: (_socket.EAI_NONAME, "Name or service not known"),
    BAD_NAME: (_socket.EAI_NONAME, "Name or service not known"),
    NO_SERVERS: (_socket.EAI_NONAME, "Name or service not known"),
    NODATA: (_EAI_NODATA, "No address associated with hostname"),
    SERVFAIL: (_socket.EAI_AGAIN, "Temporary failure in name resolution"),
    TIMEOUT: (_socket.EAI_AGAIN, "Temporary failure in name resolution"),
    REFUSED: (_socket.EAI_FAIL, "Non-recoverable failure in name resolution"),
}


def gaierror_for(err: ResolveError) -> _socket.gaierror:
    code, text = _GAI.get(err.kind, (_socket.EAI_FAIL, "Non-recoverable failure in name resolution"))
    return _socket.gaierror(code, text)


class Resolver:
    """``host.resolver``: names to addresses through the host's hosts table, cache and DNS servers."""

    def __init__(self, host: Host, config: ResolverConfig | None = None) -> None:
        self.host = host
        self.lock = threading.Lock()
        self.client = DnsClient(lambda: host.dns_servers, search=lambda: host.search_domains,
                                hosts=host.hosts_table, rng=random.Random(host.rng.getrandbits(64)),
                                config=config, counters=host.stack.counters)

    def resolve(self, name: str, qtype: int = dns.A, timeout: float | None = None,
                servers: list[str] | None = None) -> Answer:
        """The answer for *name*/*qtype*; :class:`ResolveError` when there is none. *servers* asks
        those instead of the host's (``usernet resolve --server``)."""
        with self.lock:
            if servers is not None:
                client = DnsClient(servers, search=self.client._search, hosts=self.client.hosts, rng=self.client.rng,
                                   config=self.client.config, counters=self.client.counters)
                client.cache = self.client.cache
                lookup = client.lookup(name, qtype, time.monotonic())
            else:
                lookup = self.client.lookup(name, qtype, time.monotonic())
        self._run(lookup, timeout)
        if lookup.error is not None:
            raise lookup.error
        assert lookup.answer is not None
        return lookup.answer

    # ------------------------------------------------------------- the loop

    def _run(self, lookup: Lookup, timeout: float | None) -> None:
        host = self.host
        sockets: dict[int, Socket] = {}
        end = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                with self.lock:
                    actions = lookup.actions()
                for action in actions:
                    if isinstance(action, Close):
                        sock = sockets.pop(action.attempt, None)
                        if sock is not None:
                            sock.close()
                    elif isinstance(action, Send) and action.transport == "udp":
                        sock = host.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
                        sockets[action.attempt] = sock
                        try:
                            sock.connect((action.server, action.port))
                            sock.send(action.payload)
                        except OSError:
                            with self.lock:
                                lookup.failed(action.attempt, time.monotonic())
                    elif isinstance(action, Send):
                        reply = self._tcp(action, self.client.config.tcp_timeout)
                        with self.lock:
                            lookup.tcp_result(action.attempt, reply, time.monotonic())
                with self.lock:
                    if lookup.done:
                        return
                    pending = bool(lookup._pending)
                    deadline = lookup.deadline
                if pending:
                    continue
                now = time.monotonic()
                if end is not None and now >= end:
                    with self.lock:
                        lookup._fail(TIMEOUT, f"no answer within {timeout:g} s")
                    continue
                limit = min(x for x in (deadline, end, now + 1.0) if x is not None)
                fds = {sock.fileno(): (attempt, sock) for attempt, sock in sockets.items()}
                if fds:
                    ready, _, _ = select.select(list(fds), [], [], max(0.0, limit - now))
                else:
                    time.sleep(max(0.0, limit - now))
                    ready = []
                for fd in ready:
                    attempt, sock = fds[fd]
                    self._drain(lookup, attempt, sock)
                with self.lock:
                    lookup.on_timer(time.monotonic())
        finally:
            for sock in sockets.values():
                sock.close()

    def _drain(self, lookup: Lookup, attempt: int, sock: Socket) -> None:
        while True:
            try:
                data, (src, sport) = sock.recvfrom(65535, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                # ICMP port or host unreachable reported on the connected socket: this server is out.
                with self.lock:
                    lookup.failed(attempt, time.monotonic())
                return
            with self.lock:
                lookup.receive(attempt, src, sport, data, time.monotonic())

    def _tcp(self, action: Send, timeout: float) -> bytes | None:
        return tcp_exchange(self.host, action.server, action.port, action.payload, timeout)


def tcp_exchange(host: Any, server: str, port: int, payload: bytes, timeout: float) -> bytes | None:
    """One DNS message over TCP (RFC 1035 4.2.2: two-byte length framing) and its answer, or None."""
    end = time.monotonic() + timeout
    try:
        with host.create_connection((server, port), timeout=timeout) as conn:
            conn.sendall(struct.pack("!H", len(payload)) + payload)
            return read_message(conn, end)
    except OSError:
        return None


def read_message(conn: Any, end: float) -> bytes | None:
    """One length-framed DNS message from a TCP connection by *end* (monotonic), or None."""
    head = read_exactly(conn, 2, end)
    if head is None:
        return None
    return read_exactly(conn, struct.unpack("!H", head)[0], end)


def read_exactly(conn: Any, size: int, end: float) -> bytes | None:
    """*size* bytes from *conn* by *end* (monotonic), or None on EOF or timeout."""
    got = bytearray()
    while len(got) < size:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return None
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(size - len(got))
        except TimeoutError:
            return None
        if not chunk:
            return None
        got += chunk
    return bytes(got)
