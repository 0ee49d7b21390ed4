"""Give memory back to the system after a crowd of connections, a burst of buffering or a long
transfer goes away.

CPython frees a closed connection's buffers to the C allocator, but glibc keeps the pages in its
heap: after 50 slow readers had filled 96 MB of send buffers and left, `usernet up` stayed at
185 MB of RSS. ``malloc_trim(0)`` returns the free pages (glibc 2.8 and later release free pages
inside the heap too, not only its top).

A long transfer holds little at any moment (the reader drains the receive buffer each pass), yet
every 64 KB frame and every read is a short-lived allocation of the runtime thread's glibc arena;
interleaved with longer-lived ones they leave that arena and the main heap with megabytes of free
but resident pages: `usernet up` went from 23.5 to 28-29.5 MB of RSS over 1 GB received. So the
TCP bytes moved count as well: once TRAFFIC of them went by since the last trim, the next trim
comes as soon as the traffic ends (a connection closed, or a look found the host quiet).

The runtime calls :meth:`tick` when ``now >= next_check``: a look every CHECK seconds, and while a
transfer's end is awaited, every pass (a length and a comparison) so the trim comes in the pass the
connection closes. It trims at most once every INTERVAL, so a host under steady load never pays
for it; a busy connection never looks quiet, so no trim lands in the middle of a transfer.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("usernet.host")

INTERVAL = 1.0             # at least this long between two trims
CHECK = 0.1                # between two looks at the pool, the counters and the connections
BUFFER_DROP = 8 << 20      # bytes of socket-buffer memory freed since the peak
CONNECTION_DROP = 1000     # connections gone since the peak
TRAFFIC = 16 << 20         # TCP bytes moved since the last trim: a trim is due once they stop
QUIET = 256 << 10          # at most this many moved since the last look: the traffic stopped


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def _moved(tcp: Any) -> int:
    """TCP payload bytes received and acknowledged so far (.get: reading must not add counters)."""
    counters = tcp.counters
    return int(counters.get("bytes_received", 0) + counters.get("bytes_acked", 0))


class MemoryReturn:
    def __init__(self, stack: Any, trim: Callable[[int], int] | None | bool = True) -> None:
        self.stack = stack
        self.trim = _malloc_trim() if trim is True else (trim or None)
        self.next_check = 0.0 if self.trim is not None else float("inf")  # never due without malloc_trim
        self.next_look = 0.0
        self.last_trim = float("-inf")
        self.peak_bytes = 0
        self.peak_connections = 0
        self.moved_at_trim = 0     # _moved() when we last trimmed
        self.moved_at_look = 0     # ... when we last looked
        self.connections = 0       # the connection count at the last call
        self.armed = False         # TRAFFIC moved since the last trim: trim when it stops

    def tick(self, now: float) -> None:
        if self.trim is None or now < self.next_check:
            return
        tcp = self.stack.tcp
        connections = len(tcp.connections)
        closed = connections < self.connections
        self.connections = connections
        if now < self.next_look and not (closed and self.armed):
            return  # armed, called every pass: only a connection going away is worth a look here
        self.next_look = now + CHECK
        used = tcp.memory.used
        moved = _moved(tcp)
        self.peak_bytes = max(self.peak_bytes, used)
        self.peak_connections = max(self.peak_connections, connections)
        quiet = moved - self.moved_at_look < QUIET
        self.moved_at_look = moved
        self.armed = moved - self.moved_at_trim >= TRAFFIC
        # Armed: every pass, to catch the close; otherwise the next look.
        self.next_check = now if self.armed else self.next_look
        if now < self.last_trim + INTERVAL:
            return
        dropped = self.peak_bytes - used >= BUFFER_DROP or self.peak_connections - connections >= CONNECTION_DROP
        if not dropped and not (self.armed and (closed or quiet)):
            return
        released = self.release_idle_buffers(tcp)
        self.trim(0)
        self.stack.counters["host.memory_trimmed"] += 1
        log.debug("memory returned to the system (buffers %d -> %d bytes, connections %d -> %d, "
                  "%d bytes moved, %d bytes of idle receive storage released)", self.peak_bytes, used,
                  self.peak_connections, connections, moved - self.moved_at_trim, released)
        self.peak_bytes, self.peak_connections = used, connections
        self.moved_at_trim = moved
        self.last_trim = now
        self.armed = False
        self.next_check = self.next_look

    @staticmethod
    def release_idle_buffers(tcp: Any) -> int:
        """Let every connection's receive buffer drop storage it no longer needs (StreamBuffer keeps
        up to twice its peak between reads): a connection left idle after a burst keeps none."""
        released = 0
        for conn in tcp.connections.values():
            shrink = getattr(getattr(conn, "rcv_buf", None), "shrink", None)
            if shrink is not None:
                released += shrink()
        return released
