"""The NTP client's driver (:mod:`usernet.proto.ntp`) over a host's UDP sockets: ``host.ntp_offset``
and ``usernet ntp``. Each sample is one exchange on a fresh socket (a fresh random port), connected
to the server; the wall clock is ``time.time`` unless the caller passes another."""

from __future__ import annotations

import random
import socket as _socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from usernet.proto.ntp import NtpClient, NtpError, Sample, best
from usernet.wire import ntp

if TYPE_CHECKING:
    from usernet.api.host import Host

__all__ = ["NtpError", "Sample", "best", "query"]


def query(host: Host, server: str, samples: int = 4, timeout: float = 2.0, interval: float = 0.25,
          port: int = ntp.PORT, wall: Callable[[], float] = time.time) -> list[Sample]:
    """Up to *samples* exchanges with *server* (a name is resolved first). Returns the samples that
    came back; raises NtpError for a kiss-o'-death or an unsynchronised server, TimeoutError when no
    sample came at all."""
    address = host.resolve_all(server)[0]
    rng = random.Random(host.rng.getrandbits(64))
    got: list[Sample] = []
    for index in range(samples):
        if index:
            time.sleep(interval)
        machine = NtpClient(rng, host.stack.counters)
        with host.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as sock:
            sock.connect((address, port))
            with host.lock:
                payload = machine.request(wall())
            try:
                sock.send(payload)
            except OSError:
                continue
            end = time.monotonic() + timeout
            while (remaining := end - time.monotonic()) > 0:
                sock.settimeout(remaining)
                try:
                    data = sock.recv(1024)
                except TimeoutError:
                    break
                except OSError:
                    break  # ICMP port unreachable: nobody serves NTP there
                t4 = wall()
                with host.lock:
                    sample = machine.response(data, t4)
                if sample is not None:
                    got.append(sample)
                    break
    if not got:
        raise TimeoutError(f"no NTP answer from {server}")
    return got


def offset(host: Host, server: str, samples: int = 4, timeout: float = 2.0) -> float:
    """The offset of the minimum-delay sample (seconds to add to our clock)."""
    return best(query(host, server, samples=samples, timeout=timeout)).offset
