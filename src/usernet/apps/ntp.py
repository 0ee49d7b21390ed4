"""The NTP server's driver (``usernet up --serve ntp:PORT[,stratum=N]``); the machine is
:mod:`usernet.proto.ntp`.

It owns a UDP endpoint of the stack directly rather than a socket, so the receive timestamp is
taken in the runtime thread the moment the datagram is queued (inside ``Stack.receive``), and the
transmit timestamp under the host lock right before the reply goes to the stack and the link: as
close to the wire as a userspace stack gets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from usernet.proto.ntp import NtpServer
from usernet.wire import ipv4

if TYPE_CHECKING:
    from usernet.api.host import Host

log = logging.getLogger("usernet.ntp")


def parse_spec(rest: str) -> dict[str, Any]:
    """``PORT[,stratum=N]`` to serve_ntp's keyword arguments; ValueError with a one-line reason."""
    port_text, _, options = rest.partition(",")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError("expected ntp:PORT with PORT 1..65535")
    spec: dict[str, Any] = {"port": int(port_text), "stratum": 10}
    for option in filter(None, options.split(",")):
        key, eq, value = option.partition("=")
        if key == "stratum" and eq and value.isdigit() and 1 <= int(value) <= 16:
            spec["stratum"] = int(value)
        else:
            raise ValueError(f"option {option!r}: expected stratum=N with N 1..16")
    return spec


def _precision() -> int:
    """log2 of the wall clock's resolution, as RFC 5905 7.3's precision field wants (at least -30)."""
    resolution = time.get_clock_info("time").resolution or 1e-9
    exponent = 0
    while 2.0 ** exponent > resolution and exponent > -30:
        exponent -= 1
    return exponent


class NtpService:
    def __init__(self, host: Host, port: int = 123, stratum: int = 10, wall: Callable[[], float] = time.time,
                 **server_options: Any) -> None:
        self.host = host
        self.port = port
        self.wall = wall
        self.server = NtpServer(stratum=stratum, precision=_precision(), ref_time=wall(),
                                counters=host.stack.counters, **server_options)
        self._stamps: deque[float] = deque()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        with host.lock:
            self.endpoint = host.stack.udp_open(0, port)
            self.endpoint.on_event = self._arrived
        self._thread = threading.Thread(target=self._loop, name="usernet-ntp", daemon=True)
        self._thread.start()
        host.add_service(self.stop)

    def _arrived(self) -> None:
        """Runs in Stack.receive (lock held) as the datagram is queued: the receive timestamp."""
        now = self.wall()
        while len(self._stamps) < len(self.endpoint.queue):
            self._stamps.append(now)
        self._ready.set()

    def _loop(self) -> None:
        host = self.host
        while not self._stopped.is_set():
            self._ready.wait(0.5)
            self._ready.clear()
            while True:
                with host.lock:
                    item = self.endpoint.pop()
                    if item is None:
                        break
                    received = self._stamps.popleft() if self._stamps else self.wall()
                    data, (src, sport) = item
                    try:
                        reply = self.server.answer(data, ipv4.ntoa(src), received, time.monotonic(), self.wall)
                        if reply is not None:
                            host.stack.udp_send(self.endpoint, reply, src, sport)
                            host.kick()
                    except OSError as err:
                        log.debug("NTP reply to %s:%d failed: %s", ipv4.ntoa(src), sport, err)

    def stop(self) -> None:
        self._stopped.set()
        self._ready.set()
        self._thread.join(timeout=2)
        with self.host.lock:
            self.host.stack.udp_close(self.endpoint)


def serve_ntp(host: Host, port: int = 123, stratum: int = 10, **options: Any) -> NtpService:
    """Serve NTP on UDP *port* from the host's clock until the host closes."""
    return NtpService(host, port, stratum, **options)
