"""Socket-compatible objects over a usernet :class:`~usernet.api.host.Host`.

They follow the ``socket`` module's semantics: timeouts (None blocks, 0 is non-blocking and
raises BlockingIOError, a number raises TimeoutError), errors as the socket module's exception
types with their errno, raised in the calling thread; ``fileno()`` is a real descriptor whose
readiness follows the socket, so select, selectors and asyncio work on it.
"""

from __future__ import annotations

import errno
import io
import socket as _socket
import struct
import time
from typing import TYPE_CHECKING, Any

from usernet.api.readiness import ReadinessFd
from usernet.errors import os_error as _err
from usernet.wire import ipv4

if TYPE_CHECKING:
    from usernet.api.host import Host

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
_TYPE_MASK = ~(getattr(_socket, "SOCK_NONBLOCK", 0) | getattr(_socket, "SOCK_CLOEXEC", 0))
_TCP_USER_TIMEOUT = getattr(_socket, "TCP_USER_TIMEOUT", 18)




def _parse_address(address: Any, allow_any: bool = True) -> tuple[int, int]:
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError("AF_INET address must be tuple, not " + type(address).__name__)
    host, port = address
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("port must be 0-65535.")
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("", "0.0.0.0"):
        return (0 if allow_any else 0x7F000001), port
    if host == "<broadcast>":
        return 0xFFFFFFFF, port
    if host == "localhost":
        host = "127.0.0.1"
    try:
        return ipv4.addr(host), port
    except ValueError:
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known") from None


class Socket:
    """A usernet socket: create with :meth:`Host.socket`."""

    def __init__(self, host: Host, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
                 _conn: Any = None) -> None:
        if family != AF_INET:
            raise _err(errno.EAFNOSUPPORT)
        kind = type & _TYPE_MASK
        if kind not in (SOCK_STREAM, SOCK_DGRAM):
            raise _err(errno.ESOCKTNOSUPPORT)
        self._host = host
        self.family = _socket.AddressFamily(family)
        self.type = _socket.SocketKind(kind)
        self.proto = proto
        self._timeout: float | None = _socket.getdefaulttimeout()
        self._closed = False      # close() was called
        self._released = False    # ...and no makefile() object keeps it alive: really gone
        self._io_refs = 0
        self._readiness: ReadinessFd | None = None
        self._broadcast = False
        self._reuse = False
        self._udp: Any = None
        # stream state
        self._conn: Any = _conn
        self._listener: Any = None
        self._bound: tuple[int, int] | None = None
        self._reserved_port = 0
        self._read_shut = False
        self._options: dict[str, Any] = {}
        if _conn is not None:
            _conn.on_event = self._on_event

    # ================================================================= common

    def __repr__(self) -> str:
        state = "closed" if self._released else "open"
        return f"<usernet.Socket [{state}] family={self.family.name} type={self.type.name}>"

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
        if self._released:
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

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def _on_event(self) -> None:
        """The sans-IO handle changed (lock held): wake waiters, refresh the readiness fd."""
        self._host.notify()
        if self._readiness is not None:
            self._update_readiness()

    def _readable_now(self) -> bool:
        if self._udp is not None:
            return bool(self._udp.readable)
        if self._listener is not None:
            return bool(self._listener.readable)
        if self._conn is not None:
            return bool(self._conn.readable) or self._read_shut
        return False

    def _writable_now(self) -> bool:
        if self._conn is not None:
            return bool(self._conn.writable)
        return self._listener is None

    def _update_readiness(self) -> None:
        if self._readiness is not None and not self._released:
            self._readiness.update(self._readable_now(), self._writable_now())

    def fileno(self) -> int:
        """A real descriptor that polls readable/writable exactly when this socket is."""
        if self._released:
            return -1
        with self._host._lock:
            if self._readiness is None:
                self._readiness = ReadinessFd(self._readable_now(), self._writable_now())
            return self._readiness.fileno()

    def _wait(self, ready: Any, *, operation: str = "timed out") -> None:
        """Wait (with the host's condition held) until ready(); honour the timeout."""
        if ready():
            return
        timeout = self._timeout
        if timeout == 0.0:
            raise _err(errno.EAGAIN)
        host = self._host
        end = None if timeout is None else time.monotonic() + timeout
        cond = host._cond
        while not ready():
            if self._released:
                raise _err(errno.EBADF)
            if host._closed or host._stopping:
                raise _err(errno.ENETDOWN)
            if end is None:
                cond.wait(1.0)
            else:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(operation)
                cond.wait(min(remaining, 1.0))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._io_refs > 0:
            return  # makefile() objects still use it; the last one closes it (as socket.socket)
        self._real_close()

    def _real_close(self) -> None:
        self._released = True
        host = self._host
        with host._lock:
            if self._udp is not None:
                host.stack.udp_close(self._udp)
                self._udp = None
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._conn is not None:
                self._conn.on_event = None
                self._conn.close()
            self._release_port()
            if self._readiness is not None:
                self._readiness.close()
            host._cond.notify_all()
            if not host._closed:
                host.kick()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs == 0:
            self._real_close()

    def detach(self) -> int:
        raise _err(errno.EOPNOTSUPP)

    def makefile(self, mode: str = "r", buffering: int | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> Any:
        """File objects over the socket, as ``socket.socket.makefile`` (used by http.client and
        socketserver). The standard library's raw ``SocketIO`` does the byte moving."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _socket.SocketIO(self, rawmode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: Any
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text

    # ================================================================= options

    def setsockopt(self, level: int, option: int, value: Any, optlen: int | None = None) -> None:
        self._check_open()
        host = self._host
        with host._lock:
            if level == _socket.SOL_SOCKET:
                if option == _socket.SO_REUSEADDR:
                    self._reuse = bool(value)
                    return
                if option == _socket.SO_BROADCAST:
                    self._broadcast = bool(value)
                    if self._udp is not None:
                        self._udp.broadcast = self._broadcast
                    return
                if option in (_socket.SO_RCVBUF, _socket.SO_SNDBUF):
                    size = max(2304, min(int(value), 64 << 20) * 2)  # Linux doubles, with a floor
                    key = "rcvbuf" if option == _socket.SO_RCVBUF else "sndbuf"
                    self._options[key] = size
                    if self._udp is not None and key == "rcvbuf":
                        self._udp.rcvbuf = size
                    self._apply_options()
                    return
                if option == _socket.SO_KEEPALIVE:
                    self._options["keepalive"] = bool(value)
                    self._apply_options()
                    return
                if option == _socket.SO_LINGER:
                    onoff, seconds = struct.unpack("ii", value) if isinstance(value, bytes | bytearray) else value
                    self._options["linger"] = (bool(onoff), int(seconds))
                    self._apply_options()
                    return
            elif level == _socket.IPPROTO_TCP and self.type == SOCK_STREAM:
                names = {_socket.TCP_NODELAY: "nodelay", _socket.TCP_KEEPIDLE: "keepalive_idle",
                         _socket.TCP_KEEPINTVL: "keepalive_interval", _socket.TCP_KEEPCNT: "keepalive_count",
                         _TCP_USER_TIMEOUT: "user_timeout"}
                if option in names:
                    number = int(value)
                    if number < 0 or (option in (_socket.TCP_KEEPIDLE, _socket.TCP_KEEPINTVL,
                                                 _socket.TCP_KEEPCNT) and number < 1):
                        raise _err(errno.EINVAL)
                    self._options[names[option]] = number
                    self._apply_options()
                    return
        raise _err(errno.ENOPROTOOPT)

    def _apply_options(self) -> None:
        conn = self._conn
        opts = self._options
        if self._listener is not None:  # what accepted connections inherit (like Linux)
            self._listener.rcvbuf = opts.get("rcvbuf")
            self._listener.sndbuf = opts.get("sndbuf")
        if conn is None:
            return
        if "nodelay" in opts:
            conn.nodelay = bool(opts["nodelay"])
        if "keepalive" in opts:
            conn.keepalive = opts["keepalive"]
        for name in ("keepalive_idle", "keepalive_interval"):
            if name in opts:
                setattr(conn, name, float(opts[name]))
        if "keepalive_count" in opts:
            conn.keepalive_count = opts["keepalive_count"]
        if "user_timeout" in opts:
            conn.user_timeout = opts["user_timeout"] / 1000.0
        if "sndbuf" in opts:
            conn.sndbuf = opts["sndbuf"]
        if "rcvbuf" in opts and conn.state in ("CLOSED", "SYN-SENT", "SYN-RECEIVED"):
            conn.rcvbuf = opts["rcvbuf"]
        if "linger" in opts:
            conn.linger = opts["linger"]
        self._host.stack.tcp.mark_dirty(conn)

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> Any:
        self._check_open()
        host = self._host
        with host._lock:
            conn = self._conn
            config = host.stack.tcp.config if host.stack.tcp is not None else None
            if level == _socket.SOL_SOCKET:
                if option == _socket.SO_ERROR:
                    if self._udp is not None:
                        err = self._udp.take_error()
                        return err.errno if err is not None and err.errno else 0
                    if conn is not None and conn.error is not None:
                        err, conn.error = conn.error, None
                        return err.errno or 0
                    return 0
                if option == _socket.SO_TYPE:
                    return int(self.type)
                if option == _socket.SO_REUSEADDR:
                    return int(self._reuse)
                if option == _socket.SO_BROADCAST:
                    return int(self._broadcast)
                if option == _socket.SO_KEEPALIVE:
                    return int(bool(self._options.get("keepalive", False)))
                if option == _socket.SO_RCVBUF:
                    if self._udp is not None:
                        return int(self._udp.rcvbuf)
                    return int(self._options.get("rcvbuf", config.rcvbuf if config else 212992))
                if option == _socket.SO_SNDBUF:
                    return int(self._options.get("sndbuf", config.sndbuf if config else 212992))
                if option == _socket.SO_LINGER:
                    onoff, seconds = self._options.get("linger", (False, 0))
                    packed = struct.pack("ii", int(onoff), seconds)
                    return packed if buflen else int(onoff)
                if option == _socket.SO_ACCEPTCONN:
                    return int(self._listener is not None)
            elif level == _socket.IPPROTO_TCP and self.type == SOCK_STREAM:
                if option == _socket.TCP_NODELAY:
                    return int(bool(self._options.get("nodelay", False)))
                if option == _socket.TCP_KEEPIDLE:
                    return int(self._options.get("keepalive_idle", config.keepalive_idle if config else 7200))
                if option == _socket.TCP_KEEPINTVL:
                    return int(self._options.get("keepalive_interval", config.keepalive_interval if config else 75))
                if option == _socket.TCP_KEEPCNT:
                    return int(self._options.get("keepalive_count", config.keepalive_count if config else 9))
                if option == _TCP_USER_TIMEOUT:
                    return int(self._options.get("user_timeout", 0))
                if option == _socket.TCP_MAXSEG:
                    return int(conn.mss) if conn is not None else 536
        raise _err(errno.ENOPROTOOPT)

    # ================================================================= addresses

    def _tcp(self) -> Any:
        layer = self._host.stack.tcp
        if layer is None:
            raise _err(errno.EPROTONOSUPPORT)
        return layer

    def _release_port(self) -> None:
        if self._reserved_port:
            layer = self._host.stack.tcp
            count = layer.bound.get(self._reserved_port, 0) - 1
            if count <= 0:
                layer.bound.pop(self._reserved_port, None)
            else:
                layer.bound[self._reserved_port] = count
            self._reserved_port = 0

    def bind(self, address: tuple[str, int]) -> None:
        self._check_open()
        addr, port = _parse_address(address)
        host = self._host
        with host._lock:
            stack = host.stack
            if addr and addr != stack.addr and addr != 0xFFFFFFFF:
                raise _err(errno.EADDRNOTAVAIL)
            if self.type == SOCK_DGRAM:
                if self._udp is not None:
                    raise _err(errno.EINVAL)
                endpoint = stack.udp_open(addr, port, reuse=self._reuse)
                endpoint.on_event = self._on_event
                endpoint.broadcast = self._broadcast
                self._udp = endpoint
                return
            if self._bound is not None or self._conn is not None:
                raise _err(errno.EINVAL)
            layer = self._tcp()
            if port == 0:
                port = layer.ephemeral_port(addr)
            elif layer.port_in_use(addr, port) and not (self._reuse and (addr, port) not in layer.listeners
                                                       and (0, port) not in layer.listeners
                                                       and port not in layer.bound):
                raise _err(errno.EADDRINUSE)
            layer.bound[port] = layer.bound.get(port, 0) + 1
            self._reserved_port = port
            self._bound = (addr, port)

    def getsockname(self) -> tuple[str, int]:
        self._check_open()
        if self._udp is not None:
            return (ipv4.ntoa(self._udp.local_addr), self._udp.local_port)
        if self._conn is not None:
            return (ipv4.ntoa(self._conn.local_addr), self._conn.local_port)
        if self._listener is not None:
            return (ipv4.ntoa(self._listener.local_addr), self._listener.local_port)
        if self._bound is not None:
            return (ipv4.ntoa(self._bound[0]), self._bound[1])
        return ("0.0.0.0", 0)

    def getpeername(self) -> tuple[str, int]:
        self._check_open()
        if self._udp is not None and self._udp.connected:
            return (ipv4.ntoa(self._udp.remote_addr), self._udp.remote_port)
        conn = self._conn
        if conn is not None and conn.connected:
            return (ipv4.ntoa(conn.remote_addr), conn.remote_port)
        raise _err(errno.ENOTCONN)

    # ================================================================= stream: listen / accept / connect

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self.type != SOCK_STREAM:
            raise _err(errno.EOPNOTSUPP)
        host = self._host
        with host._lock:
            if self._conn is not None:
                raise _err(errno.EINVAL)
            if self._listener is not None:
                self._listener.backlog = max(1, backlog)
                return
            layer = self._tcp()
            if self._bound is None:
                addr, port = 0, layer.ephemeral_port(0)
            else:
                addr, port = self._bound
            self._release_port()
            try:
                listener = layer.listen(addr, port, max(1, min(backlog, 4096)) if backlog > 0 else 1)
            except OSError:
                self._reserved_port = 0
                raise
            listener.on_event = self._on_event
            self._listener = listener
            self._apply_options()

    def accept(self) -> tuple[Socket, tuple[str, int]]:
        self._check_open()
        listener = self._listener
        if listener is None:
            raise _err(errno.EINVAL)
        host = self._host
        with host._cond:
            while True:
                self._wait(lambda: listener.readable)
                if listener.closed:
                    raise _err(errno.EBADF)
                conn = listener.accept()
                if conn is not None:
                    break
            sock = Socket(host, self.family, self.type, self.proto, _conn=conn)
            sock._options = dict(self._options)
            sock._apply_options()
            if self._readiness is not None:
                self._update_readiness()
            host._sockets.add(sock)
            sock._timeout = _socket.getdefaulttimeout()  # as socket.accept(): not inherited
            return sock, (ipv4.ntoa(conn.remote_addr), conn.remote_port)

    def connect(self, address: tuple[str, int]) -> None:
        self._check_open()
        addr, port = _parse_address(address, allow_any=False)
        host = self._host
        if self.type == SOCK_DGRAM:
            endpoint = self._ensure_udp()
            with host._lock:
                host.stack.next_hop(addr)  # ENETUNREACH now, as the kernel does
                endpoint.remote_addr, endpoint.remote_port = addr, port
            return
        with host._cond:
            conn = self._conn
            if conn is None:
                if self._listener is not None:
                    raise _err(errno.EINVAL)
                if port == 0:
                    raise _err(errno.ECONNREFUSED)
                stack = host.stack
                stack.next_hop(addr)
                layer = self._tcp()
                local_addr, local_port = self._bound if self._bound is not None else (0, 0)
                self._release_port()
                conn = layer.connect(local_addr or stack.addr, local_port, addr, port, host.clock())
                conn.on_event = self._on_event
                self._conn = conn
                self._apply_options()
                host.kick()
            elif conn.connected:
                raise _err(errno.EISCONN)
            if self._timeout == 0.0:
                if conn.state == "SYN-SENT":
                    raise _err(errno.EINPROGRESS)
            try:
                self._wait(lambda: conn.state != "SYN-SENT" and conn.state != "SYN-RECEIVED",
                           operation="timed out")
            except TimeoutError:
                conn.abort()
                host.kick()
                raise
            if conn.error is not None and not conn.connected:
                err, conn.error = conn.error, None
                raise err

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except BlockingIOError as err:
            return err.errno or errno.EINPROGRESS
        except OSError as err:
            return err.errno or errno.EINVAL
        return 0

    def _is_connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    def shutdown(self, how: int) -> None:
        self._check_open()
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise _err(errno.EINVAL)
        host = self._host
        with host._lock:
            conn = self._conn
            if self.type == SOCK_DGRAM or conn is None or not conn.connected and conn.state != "SYN-SENT":
                if self._listener is not None and how != _socket.SHUT_WR:
                    self._listener.close()
                    return
                raise _err(errno.ENOTCONN)
            if how in (_socket.SHUT_RD, _socket.SHUT_RDWR):
                self._read_shut = True
                host.notify()
            if how in (_socket.SHUT_WR, _socket.SHUT_RDWR):
                conn.shutdown_write()
            host.kick()
            self._update_readiness()

    # ================================================================= stream and datagram I/O

    def send(self, data: Any, flags: int = 0) -> int:
        self._check_open()
        if self.type == SOCK_DGRAM:
            endpoint = self._udp
            if endpoint is None or not endpoint.connected:
                raise _err(errno.EDESTADDRREQ)
            return self._udp_send(memoryview(data), endpoint.remote_addr, endpoint.remote_port)
        conn = self._conn
        if conn is None:
            raise _err(errno.EPIPE)  # what Linux answers for a never-connected socket
        view = memoryview(data).cast("B")
        host = self._host
        with host._cond:
            nonblocking = flags & _socket.MSG_DONTWAIT
            if nonblocking and not conn.writable:
                raise _err(errno.EAGAIN)
            self._wait(lambda: conn.writable or conn.error is not None)
            if conn.error is not None:
                err, conn.error = conn.error, None
                raise err
            if conn.state in ("SYN-SENT", "SYN-RECEIVED") and not conn.connected:
                raise _err(errno.ENOTCONN)
            try:
                sent = conn.send(view)
            except BrokenPipeError:
                raise _err(errno.EPIPE) from None
            host.kick()
            self._update_readiness()
            return sent

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        if self.type == SOCK_DGRAM:
            self.send(view, flags)
            return
        deadline = None if not self._timeout else time.monotonic() + self._timeout
        saved = self._timeout
        try:
            while view:
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("timed out")
                    self._timeout = remaining
                sent = self.send(view, flags)
                view = view[sent:]
        finally:
            self._timeout = saved

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        self._check_open()
        if address is None:
            address = flags_or_address
        if self.type == SOCK_STREAM:
            return self.send(data)  # Linux ignores the address on a stream socket
        addr, port = _parse_address(address, allow_any=False)
        self._ensure_udp()
        return self._udp_send(memoryview(data), addr, port)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_open()
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if self.type == SOCK_DGRAM:
            return self._udp_recvfrom(bufsize, flags)[0]
        conn = self._conn
        if conn is None:
            raise _err(errno.ENOTCONN)
        host = self._host
        with host._cond:
            if self._read_shut and not conn.rcv_buf:
                return b""
            if flags & _socket.MSG_DONTWAIT and not conn.readable:
                raise _err(errno.EAGAIN)
            self._wait(lambda: conn.readable or self._read_shut)
            if flags & _socket.MSG_PEEK:
                if conn.rcv_buf:
                    return conn.peek(bufsize)
            data = conn.recv(bufsize)
            host.kick()
            self._update_readiness()
            return data if data is not None else b""

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        data = self.recv(size, flags)
        view[:len(data)] = data
        return len(data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        if self.type == SOCK_STREAM:
            return self.recv(bufsize, flags), None
        self._check_open()
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        return self._udp_recvfrom(bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        data, address = self.recvfrom(size, flags)
        view[:len(data)] = data
        return len(data), address

    # ----------------------------------------------------------------- UDP helpers

    def _ensure_udp(self) -> Any:
        if self._udp is None:
            with self._host._lock:
                self._udp = self._host.stack.udp_open(0, 0)
                self._udp.on_event = self._on_event
                self._udp.broadcast = self._broadcast
                if "rcvbuf" in self._options:
                    self._udp.rcvbuf = self._options["rcvbuf"]
        return self._udp

    def _udp_send(self, view: memoryview, addr: int, port: int) -> int:
        endpoint = self._ensure_udp()
        host = self._host
        with host._lock:
            err = endpoint.take_error()
            if err is not None:
                raise err
            host.stack.udp_send(endpoint, view, addr, port)
            host.kick()
        return len(view)

    def _udp_recvfrom(self, bufsize: int, flags: int) -> tuple[bytes, tuple[str, int]]:
        endpoint = self._ensure_udp()
        host = self._host
        with host._cond:
            if flags & _socket.MSG_DONTWAIT and not endpoint.readable:
                raise _err(errno.EAGAIN)
            self._wait(lambda: endpoint.readable)
            err = endpoint.take_error()
            if err is not None:
                self._update_readiness()
                raise err
            if flags & _socket.MSG_PEEK:
                data, (src, sport) = endpoint.queue[0]
            else:
                item = endpoint.pop()
                assert item is not None
                data, (src, sport) = item
            self._update_readiness()
        return data[:bufsize], (ipv4.ntoa(src), sport)
