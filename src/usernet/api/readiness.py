"""A real file descriptor whose poll state mirrors a usernet socket, for select/poll/selectors/asyncio.

A usernet socket lives in memory, but code written for the socket module hands ``fileno()`` to
the kernel's poll. So each socket (lazily, on the first ``fileno()``) gets one end of an
AF_UNIX socketpair and we steer what poll reports on it:

* readable: we keep one byte queued towards the user end while the socket has data, EOF, an
  error or a pending connection, and drain it when it has none;
* writable: a Unix stream socket polls writable while its unsent data is small relative to its
  SO_SNDBUF, so we make the user end unwritable by filling its send buffer from our side and
  writable again by draining that data at the control end.

Only transitions cost system calls; the state is recomputed on every event of the socket.

The descriptor belongs to usernet alone: nothing outside may close or adopt it (the socket
refuses ``detach()`` and ``ssl``'s ``wrap_socket``). As a last line of defence, ``close()`` checks
that the number still names our socketpair end before closing it: if someone closed it anyway,
the number may already belong to another file of the process, which must not be closed for us.
"""

from __future__ import annotations

import os
import socket

_FILL_CHUNK = b"\0" * 1024


class ReadinessFd:
    __slots__ = ("_user", "_control", "_identity", "readable", "writable", "closed")

    def __init__(self, readable: bool = False, writable: bool = True) -> None:
        self._user, self._control = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._user.setblocking(False)
        self._control.setblocking(False)
        # Smallest buffers: filling them to make the fd unwritable then costs a few KB, not 200.
        self._user.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self._control.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._identity = _identity(self._user.fileno())
        self.readable = False
        self.writable = True
        self.closed = False
        self.update(readable, writable)

    def fileno(self) -> int:
        return self._user.fileno()

    def update(self, readable: bool, writable: bool) -> None:
        if self.closed:
            return
        if readable != self.readable:
            if readable:
                self._control.send(b"r")
            else:
                _drain(self._user)
            self.readable = readable
        if writable != self.writable:
            if writable:
                _drain(self._control)
            else:
                try:
                    while True:
                        self._user.send(_FILL_CHUNK)
                except BlockingIOError:
                    pass
            self.writable = writable

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if _identity(self._user.fileno()) == self._identity:
                self._user.close()
            else:  # closed behind our back: the number is not ours any more, leave it alone
                self._user.detach()
            self._control.close()


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass
