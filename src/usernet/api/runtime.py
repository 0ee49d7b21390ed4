"""What the socket layer needs from whatever drives a stack.

:class:`usernet.Host` (a real runtime thread over links) and the drill runner's virtual host
(a clock the script moves) both provide it; ``api/socket.py``, ``api/aio.py`` and ``api/ping.py``
use nothing else of them. One lock guards the stack; socket calls hold it, act, then ``kick()``
(send what they produced, re-arm timers) and wait on ``cond``, which the stack's handle events
``notify()``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from usernet.api.socket import Socket
    from usernet.stack.core import Stack


class Runtime(Protocol):
    stack: Stack

    @property
    def lock(self) -> threading.RLock: ...

    @property
    def cond(self) -> threading.Condition: ...

    @property
    def closed(self) -> bool:
        """True once the runtime stops serving (closed, or stopping): blocking calls fail."""

    @property
    def running(self) -> bool:
        """True while packets move (a Host that was never started is not running)."""

    def kick(self) -> None:
        """After a call changed state (lock held): transmit what it produced, re-arm timers."""

    def notify(self) -> None:
        """A handle changed (lock held): wake the threads waiting on ``cond``."""

    def socket_condition(self) -> threading.Condition:
        """A condition on ``lock`` for one socket's blocked calls (its handle events notify it)."""

    #: whether loopback writes are autocorked (then ``cork`` and ``release_corked`` exist)
    autocork: bool
    #: socket events held for delivery at the end of the runtime pass's receive loop, or None
    _pending_events: dict[Socket, None] | None

    def clock(self) -> float: ...

    def adopt(self, sock: Socket) -> None:
        """Track a socket made by accept() or dup(), so closing the runtime closes it."""

    def sockets(self) -> Iterable[Socket]: ...


class RuntimeState:
    """The shared part of both runtimes: the lock, the condition and the sockets they own."""

    autocork = False  # Host turns it on; the drill's virtual host keeps segments as written
    # Sockets whose handles changed while the runtime pass reads frames (Host._pass): their waiters
    # are woken and readiness refreshed once, at the end of the loop. None: events go at once.
    _pending_events: dict[Socket, None] | None = None
    _lock: threading.RLock
    _cond: threading.Condition
    _closed: bool
    _stopping: bool
    _sockets: weakref.WeakSet[Socket]

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def cond(self) -> threading.Condition:
        return self._cond

    @property
    def closed(self) -> bool:
        return self._closed or self._stopping

    def socket_condition(self) -> threading.Condition:
        return threading.Condition(self._lock)

    def wake_sockets(self) -> None:
        """Wake every thread blocked in a socket call (lock held): the runtime stopped."""
        for sock in list(self._sockets):
            sock._s.cond.notify_all()

    def adopt(self, sock: Socket) -> None:
        self._sockets.add(sock)

    def sockets(self) -> list[Socket]:
        return list(self._sockets)
