"""Socket-compatible objects over a usernet :class:`~usernet.api.host.Host`.

They follow the ``socket`` module's semantics: timeouts (None blocks, 0 is non-blocking and
raises BlockingIOError, a number raises TimeoutError), errors as the socket module's exception
types with their errno, raised in the calling thread.
"""

from __future__ import annotations

import errno
import socket as _socket
import time
from typing import TYPE_CHECKING, Any

from usernet.wire import ipv4

if TYPE_CHECKING:
    from usernet.api.host import Host

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
_TYPE_MASK = ~(getattr(_socket, "SOCK_NONBLOCK", 0) | getattr(_socket, "SOCK_CLOEXEC", 0))


def _err(code: int, cls: type[OSError] = OSError) -> OSError:
    import os

    return cls(code, os.strerror(code))


def _parse_address(address: Any, allow_any: bool = True) -> tuple[int, int]:
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError("AF_INET address must be tuple, not " + type(address).__name__)
    host, port = address
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("bind(): port must be 0-65535.")
    if host in ("", "0.0.0.0"):
        if not allow_any:
            return 0x7F000001, port
        return 0, port
    if host == "<broadcast>":
        return 0xFFFFFFFF, port
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipv4.addr(host), port
    except ValueError:
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known") from None


class Socket:
    """A usernet socket: create with :meth:`Host.socket`."""

    def __init__(self, host: Host, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0) -> None:
        if family != AF_INET:
            raise _err(errno.EAFNOSUPPORT)
        kind = type & _TYPE_MASK
        if kind not in (SOCK_STREAM, SOCK_DGRAM):
            raise _err(errno.ESOCKTNOSUPPORT if kind not in (3,) else errno.EPROTONOSUPPORT)
        self._host = host
        self.family = _socket.AddressFamily(family)
        self.type = _socket.SocketKind(kind)
        self.proto = proto
        self._timeout: float | None = _socket.getdefaulttimeout()
        self._closed = False
        self._udp: Any = None
        self._broadcast = False
        self._reuse = False

    # ----------------------------------------------------------------- common

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<usernet.Socket {state} family={self.family.name} type={self.type.name}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # interpreter shutdown: the host may be gone already
                pass

    def _check_open(self) -> None:
        if self._closed:
            raise _err(errno.EBADF)

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def _wait(self, ready: Any, *, what: str = "timed out") -> None:
        """Wait (lock held by caller's `with host._cond`) until ready(); honour the timeout."""
        host = self._host
        timeout = self._timeout
        if ready():
            return
        if timeout == 0.0:
            raise _err(errno.EAGAIN, BlockingIOError)
        end = None if timeout is None else time.monotonic() + timeout
        cond = host._cond
        while not ready():
            if self._closed:
                raise _err(errno.EBADF)
            if host._closed or host._stopping:
                raise _err(errno.ENETDOWN)
            if end is None:
                cond.wait(1.0)
            else:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(what)
                cond.wait(min(remaining, 1.0))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        host = self._host
        with host._lock:
            if self._udp is not None:
                host.stack.udp_close(self._udp)
                self._udp = None
            host._cond.notify_all()
            try:
                host.kick()
            except OSError:
                pass

    def setsockopt(self, level: int, option: int, value: Any, optlen: int | None = None) -> None:
        self._check_open()
        if level == _socket.SOL_SOCKET:
            if option == _socket.SO_BROADCAST:
                self._broadcast = bool(value)
                if self._udp is not None:
                    self._udp.broadcast = self._broadcast
                return
            if option == _socket.SO_REUSEADDR:
                self._reuse = bool(value)
                return
            if option == _socket.SO_RCVBUF and self._udp is not None:
                self._udp.rcvbuf = int(value) * 2  # Linux doubles the requested size for bookkeeping
                return
            if option in (_socket.SO_RCVBUF, _socket.SO_SNDBUF):
                return
        raise _err(errno.ENOPROTOOPT)

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int:
        self._check_open()
        if level == _socket.SOL_SOCKET:
            if option == _socket.SO_BROADCAST:
                return int(self._broadcast)
            if option == _socket.SO_REUSEADDR:
                return int(self._reuse)
            if option == _socket.SO_TYPE:
                return int(self.type)
            if option == _socket.SO_ERROR:
                with self._host._lock:
                    err = self._udp.take_error() if self._udp is not None else None
                return err.errno if err is not None and err.errno else 0
            if option == _socket.SO_RCVBUF and self._udp is not None:
                return int(self._udp.rcvbuf)
        raise _err(errno.ENOPROTOOPT)

    # ----------------------------------------------------------------- UDP

    def _ensure_udp(self) -> Any:
        if self._udp is None:
            with self._host._lock:
                self._udp = self._host.stack.udp_open(0, 0)
                self._udp.on_event = self._host.notify
                self._udp.broadcast = self._broadcast
        return self._udp

    def bind(self, address: tuple[str, int]) -> None:
        self._check_open()
        addr, port = _parse_address(address)
        if self.type != SOCK_DGRAM:
            raise _err(errno.EOPNOTSUPP)
        if self._udp is not None:
            raise _err(errno.EINVAL)
        with self._host._lock:
            endpoint = self._host.stack.udp_open(addr, port, reuse=self._reuse)
            endpoint.on_event = self._host.notify
            endpoint.broadcast = self._broadcast
            self._udp = endpoint

    def connect(self, address: tuple[str, int]) -> None:
        self._check_open()
        addr, port = _parse_address(address, allow_any=False)
        endpoint = self._ensure_udp()
        with self._host._lock:
            self._host.stack.next_hop(addr)  # raises ENETUNREACH now, as the kernel does
            endpoint.remote_addr, endpoint.remote_port = addr, port

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except OSError as err:
            return err.errno or errno.EINVAL
        return 0

    def getsockname(self) -> tuple[str, int]:
        self._check_open()
        if self._udp is None:
            return ("0.0.0.0", 0)
        return (ipv4.ntoa(self._udp.local_addr), self._udp.local_port)

    def getpeername(self) -> tuple[str, int]:
        self._check_open()
        if self._udp is None or not self._udp.connected:
            raise _err(errno.ENOTCONN)
        return (ipv4.ntoa(self._udp.remote_addr), self._udp.remote_port)

    def sendto(self, data: bytes, flags_or_address: Any, address: Any = None) -> int:
        self._check_open()
        if address is None:
            address = flags_or_address
        addr, port = _parse_address(address, allow_any=False)
        endpoint = self._ensure_udp()
        view = memoryview(data)
        host = self._host
        with host._lock:
            err = endpoint.take_error()
            if err is not None:
                raise err
            host.stack.udp_send(endpoint, view, addr, port)
            host.kick()
        return len(view)

    def send(self, data: bytes, flags: int = 0) -> int:
        self._check_open()
        endpoint = self._udp
        if endpoint is None or not endpoint.connected:
            raise _err(errno.EDESTADDRREQ)
        host = self._host
        with host._lock:
            err = endpoint.take_error()
            if err is not None:
                raise err
            host.stack.udp_send(endpoint, memoryview(data), endpoint.remote_addr, endpoint.remote_port)
            host.kick()
        return len(data)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        self.send(data, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, tuple[str, int]]:
        self._check_open()
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        endpoint = self._ensure_udp()
        host = self._host
        with host._cond:
            self._wait(lambda: endpoint.readable)
            err = endpoint.take_error()
            if err is not None:
                raise err
            item = endpoint.pop()
        assert item is not None
        data, (src, sport) = item
        return data[:bufsize], (ipv4.ntoa(src), sport)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self.recvfrom(bufsize, flags)[0]

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self.recvfrom_into(buffer, nbytes, flags)[0]

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, tuple[str, int]]:
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        data, address = self.recvfrom(size, flags)
        view[:len(data)] = data
        return len(data), address
