"""The small standard services `usernet up --serve` offers: echo (RFC 862), discard (RFC 863),
chargen (RFC 864), over UDP and, once the TCP engine is present, over TCP.

Each runs on threads against the socket-compatible API, exactly as user code would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usernet.api.host import Host
    from usernet.api.socket import Socket

log = logging.getLogger("usernet.services")

SIMPLE_SERVICES = ("echo", "discard", "chargen")


def chargen_line(index: int) -> bytes:
    """RFC 864's rotating pattern: 72 printable characters per line, starting one further each line."""
    start = index % 95
    chars = bytes(32 + (start + i) % 95 for i in range(72))
    return chars + b"\r\n"


CHARGEN_BLOCK = b"".join(chargen_line(i) for i in range(95))  # one full rotation, 7,110 bytes
_CHARGEN_STREAM = CHARGEN_BLOCK * 9  # 64 KB per send: whole rotations keep the pattern continuous


def _udp_loop(sock: Socket, kind: str, stopped: threading.Event) -> None:
    sock.settimeout(0.5)
    while not stopped.is_set():
        try:
            data, peer = sock.recvfrom(65535)
        except TimeoutError:
            continue
        except OSError as err:
            if stopped.is_set() or err.errno == 9:  # EBADF: closed under us on shutdown
                return
            continue  # an ICMP error reported on the socket: keep serving
        try:
            if kind == "echo":
                sock.sendto(data, peer)
            elif kind == "chargen":
                # RFC 864: answer each datagram with a random-length (here: 0..512) pattern datagram.
                sock.sendto(CHARGEN_BLOCK[:512], peer)
        except OSError as err:
            log.debug("UDP %s reply to %s failed: %s", kind, peer, err)


def _send_all(conn: Any, data: bytes, stopped: threading.Event) -> bool:
    """sendall that keeps waiting through the socket's short timeout (used to notice *stopped*):
    a slow or lossy peer must not make the service drop the connection. False if stopped."""
    view = memoryview(data)
    while view:
        try:
            view = view[conn.send(view):]
        except TimeoutError:
            if stopped.is_set():
                return False
    return True


def _tcp_conn(conn: Any, kind: str, stopped: threading.Event) -> None:
    with conn:
        conn.settimeout(0.5)
        try:
            if kind == "chargen":
                while not stopped.is_set() and _send_all(conn, _CHARGEN_STREAM, stopped):
                    pass
                return
            while not stopped.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    if kind == "echo":
                        conn.shutdown(1)  # echo the half-close too
                    return
                if kind == "echo" and not _send_all(conn, data, stopped):
                    return
        except OSError as err:
            log.debug("TCP %s connection ended: %s", kind, err)


def _tcp_accept_loop(listener: Any, kind: str, stopped: threading.Event) -> None:
    listener.settimeout(0.5)
    while not stopped.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            if stopped.is_set():
                return
            continue
        threading.Thread(target=_tcp_conn, args=(conn, kind, stopped), daemon=True,
                         name=f"usernet-{kind}-conn").start()


def serve_simple(host: Host, kind: str, port: int, tcp: bool = True) -> Callable[[], None]:
    """Serve *kind* on *port* (UDP, and TCP when the engine is available). Returns a stop function."""
    if kind not in SIMPLE_SERVICES:
        raise ValueError(f"unknown service {kind!r}")
    stopped = threading.Event()
    sockets: list[Any] = []
    threads: list[threading.Thread] = []
    udp = host.socket(type=2)
    udp.bind(("", port))
    sockets.append(udp)
    threads.append(threading.Thread(target=_udp_loop, args=(udp, kind, stopped), daemon=True,
                                    name=f"usernet-udp-{kind}"))
    if tcp and host.stack.tcp is not None and hasattr(udp, "listen"):
        listener: Any = host.socket(type=1)  # stream sockets arrive with the TCP engine
        listener.setsockopt(1, 2, 1)  # SO_REUSEADDR
        listener.bind(("", port))
        listener.listen(128)
        sockets.append(listener)
        threads.append(threading.Thread(target=_tcp_accept_loop, args=(listener, kind, stopped), daemon=True,
                                        name=f"usernet-tcp-{kind}"))
    for thread in threads:
        thread.start()

    def stop() -> None:
        stopped.set()
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(timeout=2)

    host.add_service(stop)
    return stop
