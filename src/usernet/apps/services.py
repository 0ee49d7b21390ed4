"""The small standard services `usernet up --serve` offers: echo (RFC 862), discard (RFC 863),
chargen (RFC 864), over UDP and TCP.

All of a host's services run on one event loop (:class:`ServiceLoop`: a usernet selector over
non-blocking sockets, dispatched by the host's runtime thread), not a thread per connection: 5,000
idle clients cost 5,000 registrations, not 5,000 threads or descriptors. It uses only the
socket-compatible API and a `selectors` selector, as user code would.
"""

from __future__ import annotations

import errno
import logging
import selectors
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from usernet.api.selector import Selector

if TYPE_CHECKING:
    from usernet.api.host import Host

log = logging.getLogger("usernet.services")

SIMPLE_SERVICES = ("echo", "discard", "chargen")
MAX_PENDING = 256 * 1024  # echo bytes waiting for the peer to read before we stop reading from it
_RECV = 65536


def chargen_line(index: int) -> bytes:
    """RFC 864's rotating pattern: 72 printable characters per line, starting one further each line."""
    start = index % 95
    chars = bytes(32 + (start + i) % 95 for i in range(72))
    return chars + b"\r\n"


CHARGEN_BLOCK = b"".join(chargen_line(i) for i in range(95))  # one full rotation, 7,110 bytes
_CHARGEN_SEND = len(CHARGEN_BLOCK) * 9  # about 64 KB offered per send
# Ten rotations: a send may start anywhere in the first and still offer _CHARGEN_SEND bytes.
_CHARGEN_STREAM = memoryview(CHARGEN_BLOCK * 10)


class _Udp:
    def __init__(self, sock: Any, kind: str) -> None:
        self.sock, self.kind = sock, kind

    def on_ready(self, loop: ServiceLoop, events: int) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.EBADF:
                    return
                continue  # an ICMP error reported on the socket: keep serving
            try:
                if self.kind == "echo":
                    self.sock.sendto(data, peer)
                elif self.kind == "chargen":
                    # RFC 864: answer each datagram with a pattern datagram (0..512 bytes: 512 here).
                    self.sock.sendto(CHARGEN_BLOCK[:512], peer)
            except OSError as err:
                log.debug("UDP %s reply to %s failed: %s", self.kind, peer, err)


class _Listener:
    def __init__(self, sock: Any, kind: str) -> None:
        self.sock, self.kind = sock, kind

    def on_ready(self, loop: ServiceLoop, events: int) -> None:
        for _ in range(64):  # a burst of connections, then the others get a turn
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as err:
                log.debug("accept on %s failed: %s", self.kind, err)
                return
            conn.setblocking(False)
            loop.register(conn, _Conn(conn, self.kind))


class _Conn:
    """One TCP connection of a service, driven by readiness."""

    def __init__(self, sock: Any, kind: str) -> None:
        self.sock, self.kind = sock, kind
        self.pending = bytearray()  # echo: received, not yet sent back
        self.eof = False
        self.offset = 0  # chargen: where in the rotation the next byte is (a send may be partial)

    def interest(self) -> int:
        if self.kind == "chargen":
            return selectors.EVENT_READ | selectors.EVENT_WRITE  # read only to notice the peer closing
        events = 0
        if not self.eof and len(self.pending) < MAX_PENDING:
            events |= selectors.EVENT_READ
        if self.pending:
            events |= selectors.EVENT_WRITE
        return events

    def on_ready(self, loop: ServiceLoop, events: int) -> None:
        try:
            if self.kind == "chargen":
                self._chargen(loop, events)
            else:
                self._echo_or_discard(loop, events)
        except OSError as err:
            log.debug("TCP %s connection ended: %s", self.kind, err)
            loop.close(self.sock)

    def _chargen(self, loop: ServiceLoop, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                if not self.sock.recv(_RECV):  # whatever the peer sends is discarded (RFC 864)
                    loop.close(self.sock)
                    return
            except BlockingIOError:
                pass
        if events & selectors.EVENT_WRITE:
            for _ in range(16):
                try:
                    sent = self.sock.send(_CHARGEN_STREAM[self.offset:self.offset + _CHARGEN_SEND])
                except BlockingIOError:
                    break
                self.offset = (self.offset + sent) % len(CHARGEN_BLOCK)
                if sent < _CHARGEN_SEND:
                    break  # the send buffer is full: asking again would only raise BlockingIOError

    def _echo_or_discard(self, loop: ServiceLoop, events: int) -> None:
        if events & selectors.EVENT_READ:
            while len(self.pending) < MAX_PENDING:
                try:
                    data = self.sock.recv(_RECV)
                except BlockingIOError:
                    break
                if not data:
                    self.eof = True
                    break
                if self.kind == "echo":
                    self.pending += data
                if len(data) < _RECV:
                    # Short: the buffer is very likely empty, and asking again would cost a raised
                    # BlockingIOError. If more came meanwhile, the level-triggered selector says so.
                    break
        if self.pending:
            try:
                while self.pending:
                    sent = self.sock.send(self.pending)
                    del self.pending[:sent]
            except BlockingIOError:
                pass
        if self.eof and not self.pending:
            if self.kind == "echo":
                self.sock.shutdown(1)  # echo the half-close too
            loop.close(self.sock)
            return
        loop.modify(self.sock, self)


class ServiceLoop:
    """Every service of a host; :func:`serve_simple` makes it on first use.

    Its sockets are watched by a usernet :class:`~usernet.api.selector.Selector` (no descriptors),
    and the host's runtime thread dispatches them at the end of each pass (a pass hook): a request
    is answered in the pass that received it, with no thread hand-off, and a thousand connections
    cost no thread and no descriptor. A socket made ready from another thread (a client of the
    service over the loopback) has the runtime thread run a pass (``Host.request_pass``)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.selector = Selector(wakeup=host.request_pass)
        self._stopping = False
        self._owned: set[Any] = set()  # sockets this loop closes on stop
        host.add_pass_hook(self.run_ready)

    def register(self, sock: Any, handler: Any) -> None:
        sock.setblocking(False)
        events = handler.interest() if hasattr(handler, "interest") else selectors.EVENT_READ
        with self.host.lock:
            self._owned.add(sock)
            self.selector.register(sock, events or selectors.EVENT_READ, handler)

    def modify(self, sock: Any, handler: Any) -> None:
        # Nothing to wait for until the peer reads: keep the socket, wait for it to be writable.
        self.selector.modify(sock, handler.interest() or selectors.EVENT_WRITE, handler)

    def close(self, sock: Any) -> None:
        with self.host.lock:
            self._owned.discard(sock)
            try:
                self.selector.unregister(sock)
            except KeyError:
                pass
        sock.close()

    def run_ready(self) -> bool:
        """Serve every ready socket once (lock held, or taken), and then those that turned ready
        meanwhile (a connection just accepted with its request already queued: answered in this
        pass, its ACK riding on the answer); True if some are still ready."""
        if self._stopping:
            return False
        with self.host.lock:
            served: set[Any] = set()
            for _ in range(4):  # bounded: a socket still ready after its turn waits for the next pass
                fresh = [(key, events) for key, events in self.selector.select(0) if key.fileobj not in served]
                if not fresh:
                    break
                for key, events in fresh:
                    served.add(key.fileobj)
                    try:
                        key.data.on_ready(self, events)
                    except Exception:  # one connection's bug must not stop every service
                        log.exception("service handler failed")
                        self.close(key.fileobj)
            return self.selector.has_ready()

    def stop(self) -> None:
        self._stopping = True
        self.host.remove_pass_hook(self.run_ready)
        with self.host.lock:
            owned, self._owned = list(self._owned), set()
        for sock in owned:
            sock.close()
        self.selector.close()


_loops: dict[int, ServiceLoop] = {}
_loops_lock = threading.Lock()


def service_loop(host: Host) -> ServiceLoop:
    """The host's service loop, started on first use and stopped with the host."""
    with _loops_lock:
        loop = _loops.get(id(host))
        if loop is None:
            loop = _loops[id(host)] = ServiceLoop(host)

            def stop() -> None:
                with _loops_lock:
                    _loops.pop(id(host), None)
                loop.stop()

            host.add_service(stop)
        return loop


def serve_simple(host: Host, kind: str, port: int, tcp: bool = True) -> Callable[[], None]:
    """Serve *kind* on *port* over UDP and (by default) TCP. Returns a stop function."""
    if kind not in SIMPLE_SERVICES:
        raise ValueError(f"unknown service {kind!r}")
    loop = service_loop(host)
    udp = host.socket(type=2)
    udp.bind(("", port))
    sockets: list[Any] = [udp]
    listener: Any = None
    if tcp:
        listener = host.socket(type=1)
        listener.setsockopt(1, 2, 1)  # SO_REUSEADDR
        try:
            listener.bind(("", port))
            # Linux's somaxconn default (4096 since 5.4): a burst of clients is not refused while the
            # service loop catches up (with 128, 5,000 connections opened at once took 9 s).
            listener.listen(4096)
        except BaseException:
            listener.close()
            udp.close()
            raise
        sockets.append(listener)
    loop.register(udp, _Udp(udp, kind))
    if listener is not None:
        loop.register(listener, _Listener(listener, kind))

    def stop() -> None:
        for sock in sockets:
            loop.close(sock)

    return stop
