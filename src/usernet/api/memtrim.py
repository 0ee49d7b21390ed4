"""Give memory back to the system after a crowd of connections or a burst of buffering goes away.

CPython frees a closed connection's buffers to the C allocator, but glibc keeps the pages in its
heap: after 50 slow readers had filled 96 MB of send buffers and left, `usernet up` stayed at
185 MB of RSS. ``malloc_trim(0)`` returns the free pages (glibc 2.8 and later release free pages
inside the heap too, not only its top). The runtime calls :meth:`MemoryReturn.tick` once a pass;
it trims at most once a second, and only when buffer memory or the connection count fell by a
lot since the last look, so a host under steady load never pays for it.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("usernet.host")

INTERVAL = 1.0
BUFFER_DROP = 8 << 20      # bytes of socket-buffer memory freed since the peak
CONNECTION_DROP = 1000     # connections gone since the peak


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class MemoryReturn:
    def __init__(self, stack: Any, trim: Callable[[int], int] | None | bool = True) -> None:
        self.stack = stack
        self.trim = _malloc_trim() if trim is True else (trim or None)
        self.next_check = 0.0 if self.trim is not None else float("inf")  # never due without malloc_trim
        self.peak_bytes = 0
        self.peak_connections = 0

    def tick(self, now: float) -> None:
        if self.trim is None or now < self.next_check:
            return
        self.next_check = now + INTERVAL
        tcp = self.stack.tcp
        used, connections = tcp.memory.used, len(tcp.connections)
        self.peak_bytes = max(self.peak_bytes, used)
        self.peak_connections = max(self.peak_connections, connections)
        if self.peak_bytes - used < BUFFER_DROP and self.peak_connections - connections < CONNECTION_DROP:
            return
        self.trim(0)
        self.stack.counters["host.memory_trimmed"] += 1
        log.debug("memory returned to the system (buffers %d -> %d bytes, connections %d -> %d)",
                  self.peak_bytes, used, self.peak_connections, connections)
        self.peak_bytes, self.peak_connections = used, connections
