"""Socket-compatible objects over a usernet :class:`~usernet.api.host.Host`.

They follow the ``socket`` module's semantics: timeouts (None blocks, 0 is non-blocking and
raises BlockingIOError, a number raises TimeoutError), errors as the socket module's exception
types with their errno, raised in the calling thread; ``fileno()`` is a real descriptor whose
readiness follows the socket, so select, selectors and asyncio work on it. That descriptor stays
usernet's: ``detach()`` and, outside ``usernet.patched``, ``ssl``'s ``wrap_socket`` are refused
(TLS goes through ``SSLContext.wrap_bio``), and ``dup()`` gives a second socket object on the same connection.
"""

from __future__ import annotations

import errno
import io
import operator
import socket as _socket
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from usernet.api.readiness import ReadinessFd
from usernet.errors import os_error as _err
from usernet.wire import ipv4

if TYPE_CHECKING:
    from usernet.api.runtime import Runtime

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
_TYPE_MASK = ~(getattr(_socket, "SOCK_NONBLOCK", 0) | getattr(_socket, "SOCK_CLOEXEC", 0))
_TCP_USER_TIMEOUT = getattr(_socket, "TCP_USER_TIMEOUT", 18)
_SO_REUSEPORT = getattr(_socket, "SO_REUSEPORT", 15)
_TCP_INFO = getattr(_socket, "TCP_INFO", 11)
_TIMEVAL = struct.Struct("@ll")  # struct timeval as SO_RCVTIMEO/SO_SNDTIMEO take and give it
_INT = struct.Struct("@i")

_NOT_RUNNING = "host is not running: use `with host:` or host.start()"
_NO_DETACH = ("usernet sockets cannot be detached: fileno() is a readiness descriptor owned by usernet, "
              "not a connection; use dup() for a second handle on the same connection")
_NO_SSL_WRAP = ("ssl.SSLContext.wrap_socket cannot wrap a usernet socket: it would adopt the socket's "
                "readiness descriptor, which is not a connection. Use host.wrap_tls(sock, context, "
                "server_hostname=...) (ssl.MemoryBIO with SSLContext.wrap_bio over this socket), or run "
                "the code under usernet.patched(host) or `usernet run`, where wrap_socket gives that wrapper")


def _refuse_ssl_adoption() -> None:
    """ssl's SSLSocket._create asks SO_TYPE, then takes over ``fileno()`` and ``detach()``es the
    socket: an SSLSocket would own (and close) our readiness fd. Its first question is the one
    place to refuse before any descriptor is touched."""
    caller = sys._getframe(2)
    if caller.f_code.co_name == "_create" and caller.f_globals.get("__name__") == "ssl":
        raise _err(errno.EOPNOTSUPP, _NO_SSL_WRAP)


# The socket module's flags are IntFlag members: "flags & socket.MSG_PEEK" runs Python-level
# enum code (about a microsecond each, three per recv); plain ints do not.
_MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
_MSG_WAITALL = int(_socket.MSG_WAITALL)
_MSG_PEEK = int(_socket.MSG_PEEK)


def service_port(port: Any, kind: int = 0) -> int:
    """A port number, or a service name resolved as getaddrinfo does (``"http"`` is 80)."""
    if isinstance(port, int):
        return port
    if isinstance(port, bytes):
        port = port.decode()
    if port is None or port == "":
        return 0
    if not isinstance(port, str):
        raise TypeError(f"getaddrinfo() argument 2 must be integer or string, not {type(port).__name__}")
    if port.isdigit():
        return int(port)
    protocols = ("tcp",) if kind == SOCK_STREAM else ("udp",) if kind == SOCK_DGRAM else ("tcp", "udp")
    for protocol in protocols:
        try:
            return _socket.getservbyname(port, protocol)
        except OSError:
            continue
    raise _socket.gaierror(_socket.EAI_SERVICE, "Servname not supported for ai_socktype")


# Linux's tcp_states.h numbering, as tcpi_state reports it.
TCP_STATES = {"ESTABLISHED": 1, "SYN-SENT": 2, "SYN-RECEIVED": 3, "FIN-WAIT-1": 4, "FIN-WAIT-2": 5,
              "TIME-WAIT": 6, "CLOSED": 7, "CLOSE-WAIT": 8, "LAST-ACK": 9, "LISTEN": 10, "CLOSING": 11}
# struct tcp_info (linux/include/uapi/linux/tcp.h) up to tcpi_total_rto_time, in order. Byte 6
# holds the snd_wscale (low) and rcv_wscale (high) nibbles, byte 7 the app-limited/fastopen bits.
_TCP_INFO_LAYOUT = (
    ("B", "state ca_state retransmits probes backoff options wscale flags"),
    ("I", "rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent last_ack_sent "
          "last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss reordering "
          "rcv_rtt rcv_space total_retrans"),
    ("Q", "pacing_rate max_pacing_rate bytes_acked bytes_received"),
    ("I", "segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out"),
    ("Q", "delivery_rate busy_time rwnd_limited sndbuf_limited"),
    ("I", "delivered delivered_ce"),
    ("Q", "bytes_sent bytes_retrans"),
    ("I", "dsack_dups reord_seen rcv_ooopack snd_wnd rcv_wnd rehash"),
    ("H", "total_rto total_rto_recoveries"),
    ("I", "total_rto_time"),
)
_TCP_INFO_FIELDS = tuple((f"tcpi_{name}", code) for code, names in _TCP_INFO_LAYOUT for name in names.split())
_TCP_INFO_STRUCT = struct.Struct("=" + "".join(code for _, code in _TCP_INFO_FIELDS))
_FIELD_MAX = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "Q": (1 << 64) - 1}


def tcp_info(conn: Any, now: float, listening: bool = False) -> dict[str, int]:
    """The tcpi_* values Linux's TCP_INFO reports, from what the engine tracks (the rest stay 0).
    Built on ``TcpConnection.info()``, the snapshot the drill runner's %{ }% blocks use."""
    values = {name: 0 for name, _ in _TCP_INFO_FIELDS}
    values["tcpi_snd_wscale"] = values["tcpi_rcv_wscale"] = 0
    if conn is None:
        values["tcpi_state"] = TCP_STATES["LISTEN" if listening else "CLOSED"]
        return values
    info = conn.info()
    mss = max(1, int(info["snd_mss"]))  # type: ignore[call-overload]
    retransmits = int(info["retransmits"])  # type: ignore[call-overload]
    passive = conn.accepted or conn.listener is not None
    data_end = conn.buf_seq + len(conn.send_buf)
    values.update(
        tcpi_state=TCP_STATES.get(str(info["state"]), 0),
        # tcp_ca_state: Loss after an RTO, Recovery in fast recovery, Disorder on duplicate ACKs
        tcpi_ca_state=4 if retransmits else 3 if conn.in_recovery else 1 if conn.dupacks else 0,
        tcpi_retransmits=retransmits, tcpi_backoff=retransmits, tcpi_probes=conn.keepalive_probes,
        tcpi_options=(1 if info["timestamps"] else 0) | (2 if info["sack"] else 0) | (4 if conn.ws_ok else 0),
        tcpi_snd_wscale=info["snd_wscale"], tcpi_rcv_wscale=info["rcv_wscale"],
        tcpi_rto=int(float(info["rto"]) * 1e6),  # type: ignore[arg-type]
        tcpi_ato=int(conn.config.delayed_ack * 1e6),
        tcpi_snd_mss=mss, tcpi_rcv_mss=conn.rcv_mss or min(mss, 536),
        # Linux counts these in segments
        tcpi_unacked=-(-int(info["unacked"]) // mss), tcpi_sacked=-(-int(info["sacked"]) // mss),  # type: ignore
        tcpi_last_ack_recv=int(max(0.0, now - conn.last_heard) * 1000),
        tcpi_pmtu=conn.mss_limit + 40, tcpi_advmss=conn.mss_limit, tcpi_reordering=3,
        tcpi_rtt=int(float(info["rtt"] or 0) * 1e6),  # type: ignore[arg-type]
        tcpi_rttvar=int(float(info["rttvar"]) * 1e6),  # type: ignore[arg-type]
        tcpi_snd_ssthresh=min(int(info["snd_ssthresh"]), 0x7FFFFFFF),  # type: ignore[call-overload]
        tcpi_snd_cwnd=info["snd_cwnd"], tcpi_total_retrans=info["total_retrans"],
        # Linux's accounting: an active opener counts its SYN as acked, either side the peer's FIN
        # as received; bytes_sent is data only
        tcpi_bytes_acked=conn.snd_una - conn.iss - (1 if passive else 0),
        tcpi_bytes_sent=min(conn.snd_max, data_end) - conn.iss - 1,
        tcpi_bytes_received=conn.rcv_nxt - conn.irs - 1 if conn.rcv_nxt else 0,
        tcpi_notsent_bytes=data_end - conn.snd_max,
        tcpi_snd_wnd=conn.snd_wnd, tcpi_rcv_wnd=conn.rcv_adv - conn.rcv_nxt)
    return values


def _pack_tcp_info(values: dict[str, int]) -> bytes:
    values = dict(values, tcpi_wscale=(values["tcpi_snd_wscale"] & 15) | (values["tcpi_rcv_wscale"] & 15) << 4)
    return _TCP_INFO_STRUCT.pack(*(max(0, min(int(values[name]), _FIELD_MAX[code]))
                                   for name, code in _TCP_INFO_FIELDS))


def _option_int(value: Any) -> int:
    """An integer option as setsockopt takes it: an int, or at least 4 bytes holding one."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) < _INT.size:
            raise _err(errno.EINVAL)
        return int(_INT.unpack_from(raw)[0])
    raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'")


def _parse_address(address: Any, allow_any: bool = True, resolver: Any = None) -> tuple[int, int]:
    """(address, port) as ints; a name is resolved through *resolver*, a Host (its hosts table and
    DNS), as the socket module's connect and sendto resolve names with getaddrinfo."""
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
        pass
    if resolver is None:
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
    return ipv4.addr(resolver.resolve_all(host)[0]), port


class _Shared:
    """What dup()'d sockets share, as dup'd descriptors share one open file: the sans-IO handles,
    the binding and the options. Timeout, closed flag and readiness fd belong to each Socket."""

    __slots__ = ("udp", "conn", "listener", "bound", "reserved_port", "read_shut", "options", "broadcast",
                 "reuse", "refs", "watchers", "cond")

    def __init__(self, conn: Any, cond: threading.Condition) -> None:
        self.udp: Any = None
        self.conn: Any = conn
        self.listener: Any = None
        self.bound: tuple[int, int] | None = None
        self.reserved_port = 0
        self.read_shut = False
        self.options: dict[str, Any] = {}
        self.broadcast = False
        self.reuse = False
        self.refs = 1                     # open Socket objects on it; the last close() closes
        self.watchers: list[Socket] = []  # those with a readiness fd or a selector watch to keep current
        # What blocked calls on these handles wait on: one per socket (on the host's lock), so an
        # event wakes only the threads waiting on this socket, never every thread of the host.
        self.cond = cond


def _shared(name: str) -> Any:
    return property(operator.attrgetter(f"_s.{name}"), lambda self, value: setattr(self._s, name, value))


def make_file(sock: Any, mode: str = "r", buffering: int | None = None, encoding: str | None = None,
              errors: str | None = None, newline: str | None = None) -> Any:
    """``socket.socket.makefile`` for any socket-like object with recv_into/send and an
    ``_io_refs`` count (usernet sockets, TLS sockets): the standard library's raw ``SocketIO``
    moves the bytes, and the object stays open until its last file is closed."""
    if not set(mode) <= {"r", "w", "b"}:
        raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
    writing = "w" in mode
    reading = "r" in mode or not writing
    rawmode = ("r" if reading else "") + ("w" if writing else "")
    raw = _socket.SocketIO(sock, rawmode)  # type: ignore[arg-type]
    sock._io_refs += 1
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


class Socket:
    """A usernet socket: create with :meth:`Host.socket`."""

    _udp = _shared("udp")
    _conn = _shared("conn")
    _listener = _shared("listener")
    _bound = _shared("bound")
    _reserved_port = _shared("reserved_port")
    _read_shut = _shared("read_shut")
    _options = _shared("options")
    _broadcast = _shared("broadcast")
    _reuse = _shared("reuse")

    def __init__(self, host: Runtime, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
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
        self._watches: list[Any] = []  # registrations in usernet Selectors (api/selector.py)
        self._s = _Shared(_conn, host.socket_condition())
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
        """The sans-IO handle changed (lock held): wake this socket's waiters (and the host's own,
        such as wait_for, which few threads use), refresh the readiness fds."""
        pending = self._host._pending_events
        if pending is not None:  # the runtime pass's receive loop: delivered once at its end
            pending[self] = None
            return
        self._s.cond.notify_all()
        self._host.notify()
        self._refresh()

    def _refresh(self) -> None:
        """After a call changed what this socket can do: keep every readiness fd on it exact."""
        for sock in self._s.watchers:
            sock._update_readiness()

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
        if self._released:
            return
        readable, writable = self._readable_now(), self._writable_now()
        if self._readiness is not None:
            self._readiness.update(readable, writable)
        for watch in self._watches:
            watch.update(readable, writable)

    def _add_watch(self, watch: Any) -> None:
        """A usernet Selector registered this socket (lock held): keep *watch* current from now."""
        self._watches.append(watch)
        if self not in self._s.watchers:
            self._s.watchers.append(self)
        watch.update(self._readable_now(), self._writable_now())

    def _remove_watch(self, watch: Any) -> None:
        if watch in self._watches:
            self._watches.remove(watch)
        if not self._watches and self._readiness is None and self in self._s.watchers:
            self._s.watchers.remove(self)

    def fileno(self) -> int:
        """A real descriptor that polls readable/writable exactly when this socket is. It stays
        usernet's: never close it, adopt it (socket.socket(fileno=...)) or hand it to ssl."""
        _refuse_ssl_adoption()
        if self._released:
            return -1
        with self._host.lock:
            if self._readiness is None:
                self._readiness = ReadinessFd(self._readable_now(), self._writable_now())
                if self not in self._s.watchers:
                    self._s.watchers.append(self)
            return self._readiness.fileno()

    def _require_runtime(self) -> None:
        """A blocking call needs the runtime thread to move packets: fail now, not after a hang."""
        host = self._host
        if host.closed:
            raise _err(errno.ENETDOWN)
        if not host.running:
            raise _err(errno.ENETDOWN, _NOT_RUNNING)

    def _timeo(self, option: str | None) -> tuple[float | None, bool]:
        """(timeout, kernel-style): the socket's timeout; or, for a blocking socket,
        SO_RCVTIMEO/SO_SNDTIMEO, which expire as Linux's do (EAGAIN, not TimeoutError).
        CPython ignores them once settimeout() is in use (its fd is then non-blocking)."""
        if self._timeout is not None or option is None:
            return self._timeout, False
        sec, usec = self._options.get(option, (0, 0))
        if sec < 0:
            return 0.0, True  # a negative timeval: Linux waits not at all
        if sec == 0 and usec == 0:
            return None, False
        return sec + usec / 1e6, True

    def _wait(self, ready: Any, *, option: str | None = None, limit: tuple[float | None, bool] | None = None
              ) -> None:
        """Wait (with the host's condition held) until ready(); honour the timeout. *option*
        names the SO_RCVTIMEO/SO_SNDTIMEO that applies to a blocking socket; *limit* is a
        precomputed ``_timeo()`` (what remains of it) for calls that wait more than once."""
        if ready():
            return
        timeout, kernel_style = self._timeo(option) if limit is None else limit
        if timeout == 0.0:
            raise _err(errno.EAGAIN)
        self._require_runtime()
        host = self._host
        if host.autocork:
            host.release_corked()  # type: ignore[attr-defined]  # about to block: held rests go now
            if ready():
                return
        end = None if timeout is None else time.monotonic() + timeout
        cond = self._s.cond
        while True:
            if self._released:  # closed by another thread: even if ready() came true meanwhile
                raise _err(errno.EBADF)
            if ready():
                return
            if host.closed:
                raise _err(errno.ENETDOWN)
            if end is None:
                cond.wait(1.0)
            else:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    if kernel_style:
                        raise _err(errno.EAGAIN)
                    raise TimeoutError("timed out")
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
        shared = self._s
        with host.lock:
            if self._readiness is not None:
                self._readiness.close()
            for watch in self._watches:
                watch.close()  # a closed socket is never returned as ready (registered or not)
            if self in shared.watchers:
                shared.watchers.remove(self)
            shared.refs -= 1
            if shared.refs > 0:  # a dup() still holds the connection, as a dup'd fd would
                shared.cond.notify_all()
                return
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
            shared.cond.notify_all()
            host.cond.notify_all()
            if not host.closed:
                host.kick()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs == 0:
            self._real_close()

    def detach(self) -> int:
        """Refused: there is no kernel socket to hand over, and giving away the readiness fd
        would let its new owner close a descriptor usernet still uses."""
        raise _err(errno.EOPNOTSUPP, _NO_DETACH)

    def dup(self) -> Socket:
        """A second socket object on the same connection, with its own close(), fileno() and
        timeout (copied, as socket.dup does); the connection closes when the last one does."""
        self._check_open()
        host = self._host
        with host.lock:
            sock = Socket(host, self.family, self.type, self.proto)
            sock._s = self._s
            self._s.refs += 1
            sock._timeout = self._timeout
            host.adopt(sock)
        return sock

    def makefile(self, mode: str = "r", buffering: int | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> Any:
        """File objects over the socket, as ``socket.socket.makefile`` (used by http.client and
        socketserver)."""
        return make_file(self, mode, buffering, encoding, errors, newline)

    # ================================================================= options
    #
    # One table: (level, option) -> (setter, getter, stream only). A setter takes the raw value
    # (int or bytes, as setsockopt passes it); a getter returns an int, or bytes for struct-valued
    # options; getsockopt() then converts to what the caller's buflen asks for, as the kernel does.

    def setsockopt(self, level: int, option: int, value: Any, optlen: int | None = None) -> None:
        self._check_open()
        entry = _OPTIONS.get((level, option))
        if entry is None or entry[0] is None or (entry[2] and self.type != SOCK_STREAM):
            raise _err(errno.ENOPROTOOPT)
        if value is None:  # setsockopt(level, option, None, optlen): a NULL buffer
            raise _err(errno.EFAULT)
        with self._host.lock:
            entry[0](self, value)

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> Any:
        if level == _socket.SOL_SOCKET and option == _socket.SO_TYPE:
            _refuse_ssl_adoption()
        self._check_open()
        entry = _OPTIONS.get((level, option))
        if entry is not None and entry[2] and self.type != SOCK_STREAM:
            raise _err(errno.EOPNOTSUPP)  # what Linux answers for TCP-level options on UDP
        if entry is None or entry[1] is None:
            raise _err(errno.ENOPROTOOPT)
        if buflen is not None and buflen <= 0:
            raise OSError("getsockopt buflen out of range")
        with self._host.lock:
            value = entry[1](self)
        if buflen is None:
            return value if isinstance(value, int) else _INT.unpack_from(value.ljust(_INT.size, b"\0"))[0]
        raw = _INT.pack(value) if isinstance(value, int) else value
        return raw[:buflen]

    def _set_flag(self, key: str, value: Any) -> None:
        self._options[key] = bool(_option_int(value))
        self._apply_options()

    def _set_broadcast(self, value: Any) -> None:
        self._broadcast = bool(_option_int(value))
        if self._udp is not None:
            self._udp.broadcast = self._broadcast

    def _set_buffer(self, key: str, value: Any) -> None:
        size = max(2304, min(_option_int(value), 64 << 20) * 2)  # Linux doubles, with a floor
        self._options[key] = size
        if self._udp is not None and key == "rcvbuf":
            self._udp.rcvbuf = size
        self._apply_options()

    def _set_linger(self, value: Any) -> None:
        if isinstance(value, bytes | bytearray | memoryview):
            if len(value) < 8:
                raise _err(errno.EINVAL)
            onoff, seconds = struct.unpack_from("ii", bytes(value))
        else:
            onoff, seconds = value
        self._options["linger"] = (bool(onoff), int(seconds))
        self._apply_options()

    def _set_timeo(self, key: str, value: Any) -> None:
        if not isinstance(value, bytes | bytearray | memoryview) or len(value) < _TIMEVAL.size:
            raise _err(errno.EINVAL)  # an int is too short for a struct timeval, as on Linux
        sec, usec = _TIMEVAL.unpack_from(bytes(value))
        if not 0 <= usec < 1_000_000:
            raise _err(errno.EDOM)
        self._options[key] = (sec, usec) if sec >= 0 else (-1, 0)

    def _get_timeo(self, key: str) -> bytes:
        sec, usec = self._options.get(key, (0, 0))
        return _TIMEVAL.pack(max(sec, 0), usec)

    def _set_tcp_number(self, key: str, value: Any, minimum: int) -> None:
        number = _option_int(value)
        if number < minimum:
            raise _err(errno.EINVAL)
        self._options[key] = number
        self._apply_options()

    def _set_ttl(self, value: Any) -> None:
        number = _option_int(value)
        if number == -1:  # back to the route's default
            self._options.pop("ttl", None)
        elif 1 <= number <= 255:
            self._options["ttl"] = number
        else:
            raise _err(errno.EINVAL)
        self._apply_options()

    def _set_tos(self, value: Any) -> None:
        tos = _option_int(value) & 0xFF
        if self.type == SOCK_STREAM:
            tos &= ~3  # TCP owns the ECN bits (Linux keeps them out of IP_TOS for stream sockets)
        self._options["tos"] = tos
        self._apply_options()

    def _get_error(self) -> int:
        if self._udp is not None:
            err = self._udp.take_error()
            return err.errno if err is not None and err.errno else 0
        conn = self._conn
        if conn is not None and conn.error is not None:
            err, conn.error = conn.error, None
            return err.errno or 0
        return 0

    def _tcp_config(self) -> Any:
        tcp = self._host.stack.tcp
        return tcp.config if tcp is not None else None

    def _get_buffer(self, key: str) -> int:
        if key == "rcvbuf" and self._udp is not None:
            return int(self._udp.rcvbuf)
        config = self._tcp_config()
        return int(self._options.get(key, getattr(config, key) if config else 212992))

    def _get_tcp_number(self, key: str) -> int:
        config = self._tcp_config()
        return int(self._options.get(key, getattr(config, key) if config else 0))

    def _get_tcp_info(self) -> bytes:
        return _pack_tcp_info(tcp_info(self._conn, self._host.clock(), self._listener is not None))

    def _ip_options(self) -> dict[str, int]:
        """IP_TTL/IP_TOS as keyword arguments of the stack's IPv4 output ({} for the defaults)."""
        return {key: self._options[key] for key in ("ttl", "tos") if self._options.get(key)}

    def _apply_options(self) -> None:
        conn = self._conn
        opts = self._options
        ip_options = self._ip_options()
        if self._udp is not None:
            self._udp.ip_options = ip_options
        if self._listener is not None:  # what accepted connections inherit (like Linux)
            self._listener.rcvbuf = opts.get("rcvbuf")
            self._listener.sndbuf = opts.get("sndbuf")
            self._listener.ip_options = ip_options
        if conn is None:
            return
        conn.ip_options = ip_options
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

    def _port_holders(self, port: int) -> list[Socket]:
        """This host's other open TCP sockets bound, listening or connected on *port*."""
        holders = []
        for sock in list(self._host.sockets()):
            if sock._s is self._s or sock._released or sock.type != SOCK_STREAM:
                continue
            if sock._reserved_port == port or (sock._listener is not None and sock._listener.local_port == port) \
                    or (sock._conn is not None and sock._conn.local_port == port):
                holders.append(sock)
        return holders

    def _may_share_port(self, port: int) -> bool:
        """SO_REUSEPORT: several sockets may bind one port when every one of them set it."""
        if not self._options.get("reuseport"):
            return False
        holders = self._port_holders(port)
        return bool(holders) and all(sock._options.get("reuseport") for sock in holders)

    def bind(self, address: tuple[str, int]) -> None:
        self._check_open()
        addr, port = _parse_address(address)
        host = self._host
        with host.lock:
            stack = host.stack
            if addr and not stack.is_local(addr) and addr != 0xFFFFFFFF:
                raise _err(errno.EADDRNOTAVAIL)
            if self.type == SOCK_DGRAM:
                if self._udp is not None:
                    raise _err(errno.EINVAL)
                # SO_REUSEPORT shares a UDP port like SO_REUSEADDR does (no load balancing)
                reuse = self._reuse or bool(self._options.get("reuseport"))
                self._setup_udp(stack.udp_open(addr, port, reuse=reuse))
                return
            if self._bound is not None or self._conn is not None:
                raise _err(errno.EINVAL)
            layer = self._tcp()
            if port == 0:
                port = layer.ephemeral_port(addr)
            elif layer.port_in_use(addr, port) and not (self._reuse and (addr, port) not in layer.listeners
                                                       and (0, port) not in layer.listeners
                                                       and port not in layer.bound) \
                    and not self._may_share_port(port):
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
        with host.lock:
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
            if self._join_reuseport_listener(layer.listeners.get((addr, port))):
                return
            self._release_port()
            try:
                listener = layer.listen(addr, port, max(1, min(backlog, 4096)) if backlog > 0 else 1)
            except OSError:
                self._reserved_port = 0
                raise
            listener.on_event = self._on_event
            self._listener = listener
            self._apply_options()

    def _join_reuseport_listener(self, listener: Any) -> bool:
        """SO_REUSEPORT on both: this socket becomes another listener on the same port. They
        share one accept queue (each connection goes to whichever accepts first) and the
        listening socket's options, where Linux hashes connections over separate queues."""
        if listener is None or not self._options.get("reuseport") or self._s.refs != 1:
            return False
        owners = [sock for sock in self._port_holders(listener.local_port) if sock._listener is listener]
        if not owners or not all(sock._options.get("reuseport") for sock in owners):
            return False
        self._release_port()
        if self in self._s.watchers:
            self._s.watchers.remove(self)
        self._s = owners[0]._s
        self._s.refs += 1
        if self._readiness is not None or self._watches:
            self._s.watchers.append(self)
            self._update_readiness()
        return True

    def accept(self) -> tuple[Socket, tuple[str, int]]:
        self._check_open()
        listener = self._listener
        if listener is None:
            raise _err(errno.EINVAL)
        host = self._host
        with host.cond:
            while True:
                self._wait(lambda: listener.readable, option="rcvtimeo")
                if listener.closed:
                    raise _err(errno.EBADF)
                conn = listener.accept()
                if conn is not None:
                    break
            sock = Socket(host, self.family, self.type, self.proto, _conn=conn)
            sock._options = dict(self._options)
            sock._apply_options()
            self._refresh()
            host.adopt(sock)
            sock._timeout = _socket.getdefaulttimeout()  # as socket.accept(): not inherited
            return sock, (ipv4.ntoa(conn.remote_addr), conn.remote_port)

    def connect(self, address: tuple[str, int]) -> None:
        self._check_open()
        addr, port = _parse_address(address, allow_any=False, resolver=self._host)
        host = self._host
        if self.type == SOCK_DGRAM:
            endpoint = self._ensure_udp()
            with host.lock:
                host.stack.next_hop(addr)  # ENETUNREACH now, as the kernel does
                if not endpoint.local_addr:
                    # As Linux's ip4_datagram_connect: the route's source address becomes the
                    # socket's, so getsockname() tells it and replies to other addresses are not ours.
                    endpoint.local_addr = host.stack.source_for(addr)
                endpoint.remote_addr, endpoint.remote_port = addr, port
            return
        with host.cond:
            conn = self._conn
            if conn is None:
                if self._listener is not None:
                    raise _err(errno.EINVAL)
                if port == 0:
                    raise _err(errno.ECONNREFUSED)
                if self._timeout != 0.0:
                    self._require_runtime()  # before a SYN goes out that nobody would answer
                stack = host.stack
                stack.next_hop(addr)
                layer = self._tcp()
                local_addr, local_port = self._bound if self._bound is not None else (0, 0)
                self._release_port()
                conn = layer.connect(local_addr or stack.source_for(addr), local_port, addr, port, host.clock(),
                                     self._ip_options())
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
                # No SO_SNDTIMEO here: CPython turns Linux's EINPROGRESS into waiting on.
                self._wait(lambda: conn.state != "SYN-SENT" and conn.state != "SYN-RECEIVED")
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
        with host.lock:
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
            self._refresh()

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
        with host.cond:
            nonblocking = flags & _MSG_DONTWAIT
            if nonblocking and not conn.writable:
                raise _err(errno.EAGAIN)
            self._wait(lambda: conn.writable or conn.error is not None, option="sndtimeo")
            if conn.error is not None:
                err, conn.error = conn.error, None
                raise err
            if conn.state in ("SYN-SENT", "SYN-RECEIVED") and not conn.connected:
                raise _err(errno.ENOTCONN)
            try:
                sent = conn.send(view)
            except BrokenPipeError:
                raise _err(errno.EPIPE) from None
            if host.autocork and host.running and host.stack.is_local(conn.remote_addr):
                self._flush_local(conn)
            else:
                host.kick()
            self._refresh()
            return sent

    def _flush_local(self, conn: Any) -> None:
        """A write over the loopback (lock held): send the full segments now and hold a small rest
        behind them (autocorking, as Linux's lo), so that 64 KB writes become 65,483-byte segments,
        not each one such segment plus a 53-byte one. The rest joins the next write's data; if none
        comes first, it goes when a thread blocks in a socket call or after Host.cork's short delay."""
        host = self._host
        conn.autocork = conn.snd_nxt
        try:
            host.kick()
        finally:
            conn.autocork = None
        if conn.corked:
            conn.corked = False
            host.cork(conn)  # type: ignore[attr-defined]

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
        addr, port = _parse_address(address, allow_any=False, resolver=self._host)
        self._ensure_udp()
        return self._udp_send(memoryview(data), addr, port)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        """sendmsg without ancillary data: the buffers go out as one send (one datagram)."""
        self._check_open()
        if list(ancdata):
            raise _err(errno.EOPNOTSUPP, "usernet sockets take no ancillary data")
        data = b"".join(memoryview(buffer).cast("B") for buffer in buffers)
        if address is not None and self.type == SOCK_DGRAM:
            return self.sendto(data, flags, address)
        return self.send(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """socket.socket.sendfile: send *count* bytes (all, by default) of a binary file from
        *offset*, return how many were sent and leave the file position after them. There is no
        kernel socket for os.sendfile, so this is the module's fallback: read in chunks, send."""
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if self.type != SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        if offset:
            file.seek(offset)
        total = 0
        try:
            while count is None or total < count:
                size = 65536 if count is None else min(65536, count - total)
                chunk = memoryview(file.read(size))
                if not chunk:
                    break
                while chunk:
                    sent = self.send(chunk)
                    total += sent
                    chunk = chunk[sent:]
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_open()
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if self.type == SOCK_DGRAM:
            data, _ = self._udp_take(flags)
            return data[:bufsize]
        conn = self._conn
        if conn is None:
            raise _err(errno.ENOTCONN)
        host = self._host
        with host.cond:
            if self._read_shut and not conn.rcv_buf:
                return b""
            if flags & _MSG_DONTWAIT and not conn.readable:
                raise _err(errno.EAGAIN)
            if flags & _MSG_WAITALL and not flags & (_MSG_PEEK | _MSG_DONTWAIT) \
                    and self._timeout != 0.0:
                return self._recv_all(conn, bufsize)
            self._wait(lambda: conn.readable or self._read_shut, option="rcvtimeo")
            if flags & _MSG_PEEK:
                if conn.rcv_buf:
                    return conn.peek(bufsize)
            data = conn.recv(bufsize)
            host.kick()
            self._refresh()
            return data if data is not None else b""

    def _recv_all(self, conn: Any, bufsize: int) -> bytes:
        """MSG_WAITALL (condition held): take data as it comes until *bufsize* bytes, EOF or an
        error; a timeout or error after some data returns that data, as Linux does."""
        got = bytearray()
        timeout, kernel_style = self._timeo("rcvtimeo")
        end = None if timeout is None else time.monotonic() + timeout
        while len(got) < bufsize:
            remaining = None if end is None else end - time.monotonic()
            try:
                if remaining is not None and remaining <= 0 and not conn.readable:
                    raise _err(errno.EAGAIN) if kernel_style else TimeoutError("timed out")
                self._wait(lambda: conn.readable or self._read_shut, limit=(remaining, kernel_style))
                data = conn.recv(bufsize - len(got))
            except OSError:
                if got:
                    break
                raise
            if not data:
                break
            got += data
            self._host.kick()  # the window update
            self._refresh()
        return bytes(got)

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
        data, address = self._udp_take(flags)
        return data[:bufsize], address

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        data, address = self.recvfrom(size, flags)
        view[:len(data)] = data
        return len(data), address

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple[bytes, list[Any], int, Any]:
        """(data, [], msg_flags, address): no ancillary data ever; MSG_TRUNC in msg_flags when a
        datagram was longer than *bufsize*; address None on a stream socket, as Linux gives."""
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if ancbufsize < 0:
            raise ValueError("invalid ancillary data buffer length")
        self._check_open()
        if self.type == SOCK_STREAM:
            return self.recv(bufsize, flags), [], 0, None
        data, address = self._udp_take(flags)
        return data[:bufsize], [], _socket.MSG_TRUNC if len(data) > bufsize else 0, address

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> tuple[int, list[Any], int, Any]:
        """recvmsg scattered over *buffers*: (nbytes, [], msg_flags, address)."""
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        data, ancdata, msg_flags, address = self.recvmsg(sum(len(v) for v in views), ancbufsize, flags)
        position = 0
        for view in views:
            piece = data[position:position + len(view)]
            view[:len(piece)] = piece
            position += len(piece)
        return len(data), ancdata, msg_flags, address

    # ----------------------------------------------------------------- UDP helpers

    def _setup_udp(self, endpoint: Any) -> Any:
        endpoint.on_event = self._on_event
        endpoint.broadcast = self._broadcast
        if "rcvbuf" in self._options:
            endpoint.rcvbuf = self._options["rcvbuf"]
        endpoint.ip_options = self._ip_options()
        self._udp = endpoint
        return endpoint

    def _ensure_udp(self) -> Any:
        if self._udp is None:
            with self._host.lock:
                if self._udp is None:
                    self._setup_udp(self._host.stack.udp_open(0, 0))
        return self._udp

    def _udp_send(self, view: memoryview, addr: int, port: int) -> int:
        endpoint = self._ensure_udp()
        host = self._host
        with host.lock:
            err = endpoint.take_error()
            if err is not None:
                raise err
            host.stack.udp_send(endpoint, view, addr, port)
            host.kick()
        return len(view)

    def _udp_take(self, flags: int) -> tuple[bytes, tuple[str, int]]:
        """The next whole datagram and its source (kept queued with MSG_PEEK)."""
        endpoint = self._ensure_udp()
        host = self._host
        with host.cond:
            if flags & _MSG_DONTWAIT and not endpoint.readable:
                raise _err(errno.EAGAIN)
            self._wait(lambda: endpoint.readable, option="rcvtimeo")
            err = endpoint.take_error()
            if err is not None:
                self._refresh()
                raise err
            if flags & _MSG_PEEK:
                data, (src, sport) = endpoint.queue[0]
            else:
                item = endpoint.pop()
                assert item is not None
                data, (src, sport) = item
            self._refresh()
        return data, (ipv4.ntoa(src), sport)


_OptionFn = Any  # Socket method or lambda: setter (sock, value), getter (sock), or None
_OPTIONS: dict[tuple[int, int], tuple[_OptionFn, _OptionFn, bool]] = {
    # SOL_SOCKET
    (_socket.SOL_SOCKET, _socket.SO_REUSEADDR): (lambda s, v: setattr(s, "_reuse", bool(_option_int(v))),
                                                 lambda s: int(s._reuse), False),
    (_socket.SOL_SOCKET, _SO_REUSEPORT): (lambda s, v: s._set_flag("reuseport", v),
                                          lambda s: int(bool(s._options.get("reuseport"))), False),
    (_socket.SOL_SOCKET, _socket.SO_BROADCAST): (Socket._set_broadcast, lambda s: int(s._broadcast), False),
    (_socket.SOL_SOCKET, _socket.SO_RCVBUF): (lambda s, v: s._set_buffer("rcvbuf", v),
                                              lambda s: s._get_buffer("rcvbuf"), False),
    (_socket.SOL_SOCKET, _socket.SO_SNDBUF): (lambda s, v: s._set_buffer("sndbuf", v),
                                              lambda s: s._get_buffer("sndbuf"), False),
    (_socket.SOL_SOCKET, _socket.SO_KEEPALIVE): (lambda s, v: s._set_flag("keepalive", v),
                                                 lambda s: int(bool(s._options.get("keepalive"))), False),
    (_socket.SOL_SOCKET, _socket.SO_LINGER): (Socket._set_linger, lambda s: struct.pack(
        "ii", *(int(x) for x in s._options.get("linger", (False, 0)))), False),
    (_socket.SOL_SOCKET, _socket.SO_RCVTIMEO): (lambda s, v: s._set_timeo("rcvtimeo", v),
                                                lambda s: s._get_timeo("rcvtimeo"), False),
    (_socket.SOL_SOCKET, _socket.SO_SNDTIMEO): (lambda s, v: s._set_timeo("sndtimeo", v),
                                                lambda s: s._get_timeo("sndtimeo"), False),
    (_socket.SOL_SOCKET, _socket.SO_ERROR): (None, Socket._get_error, False),
    (_socket.SOL_SOCKET, _socket.SO_TYPE): (None, lambda s: int(s.type), False),
    (_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN): (None, lambda s: int(s._listener is not None), False),
    # IPPROTO_IP: used on every datagram the socket sends
    (_socket.IPPROTO_IP, _socket.IP_TTL): (Socket._set_ttl, lambda s: int(s._options.get(
        "ttl", s._host.stack.config.ttl)), False),
    (_socket.IPPROTO_IP, _socket.IP_TOS): (Socket._set_tos, lambda s: int(s._options.get("tos", 0)), False),
    # IPPROTO_TCP (stream sockets only)
    (_socket.IPPROTO_TCP, _socket.TCP_NODELAY): (lambda s, v: s._set_flag("nodelay", v),
                                                 lambda s: int(bool(s._options.get("nodelay"))), True),
    (_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE): (lambda s, v: s._set_tcp_number("keepalive_idle", v, 1),
                                                  lambda s: s._get_tcp_number("keepalive_idle"), True),
    (_socket.IPPROTO_TCP, _socket.TCP_KEEPINTVL): (lambda s, v: s._set_tcp_number("keepalive_interval", v, 1),
                                                   lambda s: s._get_tcp_number("keepalive_interval"), True),
    (_socket.IPPROTO_TCP, _socket.TCP_KEEPCNT): (lambda s, v: s._set_tcp_number("keepalive_count", v, 1),
                                                 lambda s: s._get_tcp_number("keepalive_count"), True),
    (_socket.IPPROTO_TCP, _TCP_USER_TIMEOUT): (lambda s, v: s._set_tcp_number("user_timeout", v, 0),
                                               lambda s: int(s._options.get("user_timeout", 0)), True),
    (_socket.IPPROTO_TCP, _socket.TCP_MAXSEG): (None, lambda s: int(s._conn.mss) if s._conn is not None else 536,
                                                True),
    (_socket.IPPROTO_TCP, _TCP_INFO): (None, Socket._get_tcp_info, True),
}
