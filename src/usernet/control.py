"""The control socket of a running host: what ``usernet ss``, ``neigh``, ``route``, ``addr``,
``stats``, ``tcpdump`` and ``ls`` ask.

Protocol (docs/architecture.md, "Control socket"): an AF_UNIX stream socket; each request is one
JSON object on one line (at most :data:`MAX_REQUEST` bytes with its newline), ``{"cmd": NAME, ...}``;
each answer one JSON line, ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT}``. A
connection may carry several requests in turn. ``tcpdump`` turns the connection into a stream:
after its answer come ``{"t": TIME, "if": NAME, "dir": "<"|">", "layer": 2|3, "frame": BASE64}``
lines and, when frames were lost because the client read too slowly, ``{"dropped": TOTAL}``.

Permissions: the socket file is mode 0600, and every peer's credentials (SO_PEERCRED) are checked
at accept: only our own uid, or root, is served; anyone else gets one error line and is closed.

One thread serves every client with a selector. Stack state is read under the host lock and
copied out; encoding and writing happen outside it. Everything is bounded: clients, request size,
each client's pending output, each tcpdump subscriber's frame queue (overflow is dropped and counted).
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from usernet.wire import ethernet, ipv4

log = logging.getLogger("usernet.control")

DEFAULT_DIR = "/run/usernet"
MAX_REQUEST = 4096          # bytes of one request line, newline included
MAX_CLIENTS = 64            # connections served at once; more are answered with an error and closed
MAX_PENDING = 16 << 20      # unsent reply bytes one client may hold (a huge `ss` still fits)
STREAM_HIGH_WATER = 256 << 10  # a tcpdump client's unsent bytes above which its frames wait in the queue
TAP_QUEUE = 4096            # frames one tcpdump subscriber may have waiting; beyond: dropped, counted
MAX_FILTER_TOKENS = 64
PROTOCOL_VERSION = 1

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
# The kernel's class, as imported: `usernet run` patches socket.socket later (AF_UNIX stays the
# kernel's there anyway, but the control socket should not depend on that).
_KernelSocket = socket.socket


class ControlError(OSError):
    """A control socket could not be set up (errno set), or a request failed."""


def default_path(name: str) -> str:
    return os.path.join(DEFAULT_DIR, f"{name}.sock")


def valid_name(name: str) -> bool:
    """A host name usable as a socket file name: letters, digits, ``.-_@:``, not starting with a dot."""
    return (0 < len(name) <= 64 and not name.startswith(".")
            and all(c.isascii() and (c.isalnum() or c in "._-@:") for c in name))


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of an AF_UNIX socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def peer_allowed(uid: int, own_uid: int | None = None) -> bool:
    """Only the uid the host runs as, or root, may use its control socket."""
    own = os.geteuid() if own_uid is None else own_uid
    return uid == own or uid == 0


def socket_alive(path: str, timeout: float = 1.0) -> bool:
    """Whether a process accepts connections on the AF_UNIX socket *path*."""
    probe = _KernelSocket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as err:
        # EACCES: someone else's live socket; EAGAIN: alive but its backlog is full
        return err.errno in (errno.EACCES, errno.EPERM, errno.EAGAIN)
    finally:
        probe.close()


# ----------------------------------------------------------------- capture filters

def _frame_fields(frame: bytes, layer: int) -> tuple[set[str], int, int, int, int]:
    """``(protocols, src, dst, sport, dport)`` of a frame; addresses 0 and ports -1 when absent.
    ARP gives its sender and target protocol addresses. Never raises."""
    protos: set[str] = set()
    offset = 0
    try:
        if layer == 2:
            if len(frame) < ethernet.HEADER_LEN:
                return protos, 0, 0, -1, -1
            (ethertype,) = struct.unpack_from("!H", frame, 12)
            offset = ethernet.HEADER_LEN
            if ethertype == ethernet.ETHERTYPE_ARP:
                protos.add("arp")
                if len(frame) >= offset + 28:
                    spa, = struct.unpack_from("!I", frame, offset + 14)
                    tpa, = struct.unpack_from("!I", frame, offset + 24)
                    return protos, spa, tpa, -1, -1
                return protos, 0, 0, -1, -1
            if ethertype != ethernet.ETHERTYPE_IPV4:
                return protos, 0, 0, -1, -1
        if len(frame) < offset + 20 or frame[offset] >> 4 != 4:
            return protos, 0, 0, -1, -1
        protos.add("ip")
        ihl = (frame[offset] & 0x0F) * 4
        proto = frame[offset + 9]
        src, dst = struct.unpack_from("!II", frame, offset + 12)
        (flags_frag,) = struct.unpack_from("!H", frame, offset + 6)
        name = {ipv4.PROTO_TCP: "tcp", ipv4.PROTO_UDP: "udp", ipv4.PROTO_ICMP: "icmp"}.get(proto)
        if name:
            protos.add(name)
        sport = dport = -1
        l4 = offset + ihl
        if name in ("tcp", "udp") and not flags_frag & ipv4.OFFSET_MASK and len(frame) >= l4 + 4:
            sport, dport = struct.unpack_from("!HH", frame, l4)
        return protos, src, dst, sport, dport
    except (struct.error, IndexError):
        return protos, 0, 0, -1, -1


Predicate = Callable[[tuple[set[str], int, int, int, int]], bool]


class _FilterParser:
    """tcpdump's language, the part worth having: ``[src|dst] host A.B.C.D``, ``[src|dst] port N``,
    ``tcp``, ``udp``, ``icmp``, ``arp``, ``ip``, joined by ``and``/``&&`` (or just written one after
    the other), ``or``/``||``, ``not``/``!`` and parentheses."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("filter ends too soon")
        self.at += 1
        return token

    def parse(self) -> Predicate:
        predicate = self._or()
        if self._peek() is not None:
            raise ValueError(f"unexpected {self._peek()!r} in filter")
        return predicate

    def _or(self) -> Predicate:
        terms = [self._and()]
        while self._peek() in ("or", "||"):
            self.at += 1
            terms.append(self._and())
        if len(terms) == 1:
            return terms[0]
        return lambda f: any(t(f) for t in terms)

    def _and(self) -> Predicate:
        factors = [self._not()]
        while self._peek() not in (None, "or", "||", ")"):
            if self._peek() in ("and", "&&"):
                self.at += 1
            factors.append(self._not())
        if len(factors) == 1:
            return factors[0]
        return lambda f: all(p(f) for p in factors)

    def _not(self) -> Predicate:
        token = self._take()
        if token in ("not", "!"):
            inner = self._not()
            return lambda f: not inner(f)
        if token == "(":
            inner = self._or()
            if self._take() != ")":
                raise ValueError("missing ')' in filter")
            return inner
        return self._primitive(token)

    def _primitive(self, token: str) -> Predicate:
        direction = None
        if token in ("src", "dst"):
            direction, token = token, self._take()
        if token in ("tcp", "udp", "icmp", "arp", "ip") and direction is None:
            name = token

            def has_protocol(f: tuple[set[str], int, int, int, int]) -> bool:
                return name in f[0]

            return has_protocol
        if token == "host":
            text = self._take()
            try:
                address = ipv4.addr(text)
            except ValueError:
                raise ValueError(f"host {text}: not an IPv4 address") from None
            if direction == "src":
                return lambda f: f[1] == address
            if direction == "dst":
                return lambda f: f[2] == address
            return lambda f: address in (f[1], f[2])
        if token == "port":
            text = self._take()
            if not (text.isascii() and text.isdigit() and 0 <= int(text) < 65536):
                raise ValueError(f"port {text}: not a port number")
            port = int(text)
            if direction == "src":
                return lambda f: f[3] == port
            if direction == "dst":
                return lambda f: f[4] == port
            return lambda f: port in (f[3], f[4])
        raise ValueError(f"{token!r}: unknown filter word (host, port, src, dst, tcp, udp, icmp, arp, ip, and, or, "
                         f"not)")


def tokenize_filter(words: list[str]) -> list[str]:
    """The words of a filter, with parentheses split off (``(tcp or udp)`` as one shell word works)."""
    tokens: list[str] = []
    for word in words:
        for part in word.replace("(", " ( ").replace(")", " ) ").split():
            tokens.append(part.lower())
    return tokens


def compile_filter(words: list[str]) -> Callable[[bytes, int], bool] | None:
    """A predicate on ``(frame, layer)`` for a filter given as words; None for no filter.
    ValueError (one line) for a filter that does not parse."""
    tokens = tokenize_filter(words)
    if not tokens:
        return None
    if len(tokens) > MAX_FILTER_TOKENS:
        raise ValueError(f"filter longer than {MAX_FILTER_TOKENS} words")
    predicate = _FilterParser(tokens).parse()
    return lambda frame, layer: predicate(_frame_fields(frame, layer))


# ----------------------------------------------------------------- snapshots (host lock held)

_SS_STATES = {"ESTABLISHED": "ESTAB", "SYN-RECEIVED": "SYN-RECV"}


def _tcp_row(conn: Any, now: float) -> dict[str, Any]:
    info = conn.info()
    mss = max(1, int(info["snd_mss"]))
    return {
        "netid": "tcp", "state": _SS_STATES.get(conn.state, conn.state),
        "local": f"{ipv4.ntoa(conn.local_addr)}:{conn.local_port}",
        "peer": f"{ipv4.ntoa(conn.remote_addr)}:{conn.remote_port}",
        "recv_q": len(conn.rcv_buf), "send_q": conn._send_live(),  # unacknowledged bytes, as ss
        "info": {
            "cwnd": info["snd_cwnd"], "ssthresh": info["snd_ssthresh"], "mss": mss,
            "srtt_ms": None if conn.srtt is None else round(conn.srtt * 1000, 3),
            "rttvar_ms": round(conn.rttvar * 1000, 3), "rto_ms": round(conn.rto * 1000, 3),
            "retransmits": conn.retransmits, "total_retrans": conn.total_retransmits,
            "unacked": conn.snd_max - conn.snd_una, "sacked": info["sacked"],
            "sack": conn.sack_ok, "timestamps": conn.ts_ok, "wscale": conn.ws_ok,
            "snd_wscale": conn.snd_wscale, "rcv_wscale": conn.rcv_wscale,
            "sack_acks": getattr(conn, "sack_acks", 0), "dsack_dups": getattr(conn, "dsack_dups", 0),
            "dsacks_sent": getattr(conn, "dsacks_sent", 0),
            "snd_wnd": conn.snd_wnd, "rcv_wnd": max(0, conn.rcv_adv - conn.rcv_nxt),
            "bytes_acked": max(0, conn.snd_una - conn.iss - 1),
            "bytes_received": max(0, conn.rcv_nxt - conn.irs - 1) if conn.rcv_nxt else 0,
            "congestion": info["congestion"], "in_recovery": conn.in_recovery,
            "lastrcv_ms": int(max(0.0, now - conn.last_heard) * 1000),
        },
    }


def snapshot_sockets(stack: Any, now: float) -> list[dict[str, Any]]:
    """Every TCP connection and listener and every UDP endpoint, as plain values. Lock held."""
    rows: list[dict[str, Any]] = []
    for listener in list(stack.tcp.listeners.values()):
        rows.append({"netid": "tcp", "state": "LISTEN", "local": f"{ipv4.ntoa(listener.local_addr)}:"
                     f"{listener.local_port}", "peer": "0.0.0.0:*",
                     "recv_q": len(listener.accept_queue), "send_q": listener.backlog})
    for conn in list(stack.tcp.connections.values()):
        rows.append(_tcp_row(conn, now))
    for endpoints in list(stack.udp_ports.values()):
        for endpoint in endpoints:
            connected = bool(endpoint.remote_port)
            rows.append({"netid": "udp", "state": "ESTAB" if connected else "UNCONN",
                         "local": f"{ipv4.ntoa(endpoint.local_addr)}:{endpoint.local_port}",
                         "peer": f"{ipv4.ntoa(endpoint.remote_addr)}:{endpoint.remote_port}" if connected
                         else "0.0.0.0:*", "recv_q": endpoint.queued_bytes, "send_q": 0, "drops": endpoint.drops})
    return rows


# ----------------------------------------------------------------- the server

class _Subscriber:
    """A tcpdump client's frames, filled by the tap on the runtime thread, emptied by the server."""

    __slots__ = ("dropped", "filter", "queue", "reported", "limit")

    def __init__(self, predicate: Callable[[bytes, int], bool] | None, limit: int) -> None:
        self.filter = predicate
        self.queue: deque[tuple[float, str, str, bytes, int]] = deque()
        self.limit = limit
        self.dropped = 0
        self.reported = 0


class _Client:
    __slots__ = ("closing", "inbuf", "outbuf", "sock", "subscriber")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closing = False  # close once outbuf is sent
        self.subscriber: _Subscriber | None = None


class ControlServer:
    """The control socket of *host* at *path* (default ``/run/usernet/NAME.sock``); ``start()``,
    ``stop()``, or ``with``. The host's counters gain ``control.*`` (docs/architecture.md)."""

    def __init__(self, host: Any, path: str | os.PathLike[str] | None = None, *, max_clients: int = MAX_CLIENTS,
                 tap_queue: int = TAP_QUEUE, stream_high_water: int = STREAM_HIGH_WATER) -> None:
        self.host = host
        self.path = os.fspath(path) if path is not None else default_path(host.name)
        self.max_clients = max_clients
        self.tap_queue = max(1, tap_queue)
        self.stream_high_water = max(1, stream_high_water)
        self.started = time.time()
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._clients: dict[int, _Client] = {}
        self._subscribers: list[_Subscriber] = []  # replaced, never mutated: the tap iterates it
        self._wake_r = self._wake_w = -1
        self._wake_pending = False
        self._inode: tuple[int, int] | None = None
        self._own_uid = os.geteuid()
        self._commands: dict[str, Callable[[_Client, dict[str, Any]], Any]] = {
            "info": self._cmd_info, "ss": self._cmd_ss, "neigh": self._cmd_neigh, "route": self._cmd_route,
            "addr": self._cmd_addr, "stats": self._cmd_stats, "tcpdump": self._cmd_tcpdump}

    # ------------------------------------------------------------- lifecycle

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare_path(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if os.path.abspath(directory) == os.path.abspath(DEFAULT_DIR) and not os.path.isdir(directory):
            try:
                os.makedirs(directory, mode=0o755, exist_ok=True)
                os.chmod(directory, 0o755)  # makedirs' mode is filtered by the umask
            except OSError as err:
                raise ControlError(err.errno, f"cannot create {directory}: {err.strerror}") from None
        if not os.path.isdir(directory):
            raise ControlError(errno.ENOENT, f"{self.path}: no such directory {directory}")
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(errno.EEXIST, f"{self.path}: exists and is not a socket")
        if socket_alive(self.path):
            raise ControlError(errno.EADDRINUSE, f"{self.path}: already served by a running host")
        os.unlink(self.path)  # stale: its process is gone

    def start(self) -> None:
        if self._thread is not None:
            return
        if len(self.path.encode()) > 107:
            raise ControlError(errno.ENAMETOOLONG, f"{self.path}: longer than an AF_UNIX path may be (107 bytes)")
        self._prepare_path()
        listener = _KernelSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # umask cannot be set per thread; a socket made under the process umask is chmodded
            # at once, and the SO_PEERCRED check guards the moment in between.
            listener.bind(self.path)
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            listener.listen(max(16, self.max_clients))
            listener.setblocking(False)
        except OSError as err:
            listener.close()
            raise ControlError(err.errno, f"{self.path}: {err.strerror}") from None
        self._listener = listener
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name=f"usernet-control-{self.host.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close every client, stop the thread, remove the socket file (if it is still ours). Idempotent."""
        if self._thread is None or self._stopping:
            return
        self._stopping = True
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._unsubscribe_all()
        if self._listener is not None:
            self._listener.close()
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # full (a wake-up is pending) or closed

    # ------------------------------------------------------------- the loop

    def _serve(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while not self._stopping:
                for key, events in selector.select(1.0):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj == self._wake_r:
                        self._wake_pending = False
                        try:
                            while os.read(self._wake_r, 4096):
                                pass
                        except OSError:
                            pass
                    else:
                        client = key.data
                        if events & selectors.EVENT_READ:
                            self._read(client)
                        if events & selectors.EVENT_WRITE and client.sock.fileno() >= 0:
                            self._write(client)
                if self._stopping:
                    break
                self._pump()
        except Exception:
            log.exception("control socket thread crashed")
            with self.host._lock:
                self.host.stack.counters["control.crash"] += 1
        finally:
            for client in list(self._clients.values()):
                self._close(client)
            selector.close()

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.debug("accept failed: %s", err)
                return
            sock.setblocking(False)
            try:
                _, uid, _ = peer_credentials(sock)
            except OSError:
                uid = -1
            refusal = None
            if not peer_allowed(uid, self._own_uid):
                refusal = f"permission denied: uid {uid} may not use this host's control socket"
                with self.host._lock:
                    self.host.stack.counters["control.refused"] += 1
            elif len(self._clients) >= self.max_clients:
                refusal = f"too many clients (at most {self.max_clients})"
                with self.host._lock:
                    self.host.stack.counters["control.too_many_clients"] += 1
            if refusal is not None:
                try:
                    sock.send(_encode({"ok": False, "error": refusal}))
                except OSError:
                    pass
                sock.close()
                continue
            client = _Client(sock)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)
            with self.host._lock:
                self.host.stack.counters["control.clients"] += 1

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        if not data:
            self._close(client)
            return
        if client.closing or client.subscriber is not None:
            return  # a stream has begun (or an error ends the connection): more input is ignored
        client.inbuf += data
        while not client.closing:
            line, newline, rest = client.inbuf.partition(b"\n")
            if not newline:
                if len(client.inbuf) >= MAX_REQUEST:
                    self._too_long(client)
                return
            if len(line) + 1 > MAX_REQUEST:
                self._too_long(client)
                return
            client.inbuf = bytearray(rest)
            self._handle(client, bytes(line))
            if client.subscriber is not None:
                client.inbuf.clear()
                return

    def _too_long(self, client: _Client) -> None:
        """Where a request line would end is unknown: answer, then close the connection."""
        with self.host._lock:
            self.host.stack.counters["control.bad_requests"] += 1
        client.inbuf.clear()
        client.closing = True
        self._reply(client, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})

    def _handle(self, client: _Client, line: bytes) -> None:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            with self.host._lock:
                self.host.stack.counters["control.bad_requests"] += 1
            self._reply(client, {"ok": False, "error": f"malformed request: {err}"})
            return
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            with self.host._lock:
                self.host.stack.counters["control.bad_requests"] += 1
            self._reply(client, {"ok": False, "error": 'malformed request: expected {"cmd": NAME, ...}'})
            return
        command = self._commands.get(request["cmd"])
        if command is None:
            with self.host._lock:
                self.host.stack.counters["control.bad_requests"] += 1
            self._reply(client, {"ok": False, "error": f"unknown command {request['cmd'][:40]!r} "
                                                        f"(known: {', '.join(sorted(self._commands))})"})
            return
        with self.host._lock:
            self.host.stack.counters["control.requests"] += 1
        try:
            result = command(client, request)
        except (ValueError, TypeError, OSError) as err:
            self._reply(client, {"ok": False, "error": str(err)})
            return
        except Exception as err:  # a bug answering one request must not end the server
            log.exception("control request %s failed", request["cmd"])
            with self.host._lock:
                self.host.stack.counters["control.errors"] += 1
            self._reply(client, {"ok": False, "error": f"internal error: {type(err).__name__}: {err}"})
            return
        self._reply(client, {"ok": True, "result": result})

    def _reply(self, client: _Client, message: dict[str, Any]) -> None:
        data = _encode(message)
        if len(client.outbuf) + len(data) > MAX_PENDING:
            with self.host._lock:
                self.host.stack.counters["control.overflow"] += 1
            self._close(client)  # it does not read its answers: nothing sensible is left to say
            return
        client.outbuf += data
        self._write(client)

    def _write(self, client: _Client) -> None:
        sock = client.sock
        if sock.fileno() < 0:
            return
        while client.outbuf:
            try:
                sent = sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the client went away mid-reply: harmless
                self._close(client)
                return
            del client.outbuf[:sent]
        if not client.outbuf and client.closing:
            self._close(client)
            return
        assert self._selector is not None
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        try:
            if self._selector.get_key(sock).events != want:
                self._selector.modify(sock, want, client)
        except (KeyError, ValueError):
            pass

    def _close(self, client: _Client) -> None:
        if client.subscriber is not None:
            self._unsubscribe(client.subscriber)
            client.subscriber = None
        fd = client.sock.fileno()
        if fd >= 0:
            self._clients.pop(fd, None)
            if self._selector is not None:
                try:
                    self._selector.unregister(client.sock)
                except (KeyError, ValueError):
                    pass
        client.sock.close()

    # ------------------------------------------------------------- tcpdump

    def _on_frame(self, ifname: str, direction: str, frame: bytes, layer: int) -> None:
        """The tap: on the runtime thread, host lock held. Filters, queues, and counts what overflows."""
        stamp = time.time()
        queued = False
        for sub in self._subscribers:
            if sub.filter is not None and not sub.filter(frame, layer):
                continue
            if len(sub.queue) >= sub.limit:
                sub.dropped += 1
                self.host.stack.counters["control.tap_dropped"] += 1
                continue
            sub.queue.append((stamp, ifname, direction, frame, layer))
            queued = True
        if queued and not self._wake_pending:
            self._wake_pending = True
            self._wake()

    def _subscribe(self, sub: _Subscriber) -> None:
        with self.host._lock:
            self._subscribers = [*self._subscribers, sub]
            if len(self._subscribers) == 1:
                self.host.add_tap(self._on_frame)

    def _unsubscribe(self, sub: _Subscriber) -> None:
        with self.host._lock:
            self._subscribers = [s for s in self._subscribers if s is not sub]
            if not self._subscribers:
                self.host.remove_tap(self._on_frame)

    def _unsubscribe_all(self) -> None:
        with self.host._lock:
            if self._subscribers:
                self._subscribers = []
                self.host.remove_tap(self._on_frame)

    def _pump(self) -> None:
        """Move queued frames into their clients' output, as far as each client keeps up."""
        for client in list(self._clients.values()):
            sub = client.subscriber
            if sub is None or client.closing:
                continue
            queue = sub.queue
            out = client.outbuf
            while queue and len(out) < self.stream_high_water:
                stamp, ifname, direction, frame, layer = queue.popleft()
                out += _encode({"t": stamp, "if": ifname, "dir": direction, "layer": layer,
                                "frame": base64.b64encode(frame).decode("ascii")})
            dropped = sub.dropped
            if dropped != sub.reported and len(out) < self.stream_high_water:
                sub.reported = dropped
                out += _encode({"dropped": dropped})
            if out:
                self._write(client)

    # ------------------------------------------------------------- commands

    def _cmd_info(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        interfaces = self.host.interfaces()
        return {"name": self.host.name, "pid": os.getpid(), "uid": self._own_uid, "version": PROTOCOL_VERSION,
                "started": self.started, "path": self.path,
                "addresses": [a for i in interfaces if i["kind"] != "loopback" for a in i["addresses"]],
                "interfaces": [i["name"] for i in interfaces]}

    def _cmd_ss(self, client: _Client, request: dict[str, Any]) -> list[dict[str, Any]]:
        host = self.host
        with host._lock:
            return snapshot_sockets(host.stack, host.clock())

    def _cmd_neigh(self, client: _Client, request: dict[str, Any]) -> list[dict[str, Any]]:
        return self.host.neighbours()

    def _cmd_route(self, client: _Client, request: dict[str, Any]) -> list[dict[str, Any]]:
        return self.host.routes()

    def _cmd_addr(self, client: _Client, request: dict[str, Any]) -> list[dict[str, Any]]:
        return self.host.interfaces()

    def _cmd_stats(self, client: _Client, request: dict[str, Any]) -> dict[str, int]:
        return self.host.counters

    def _cmd_tcpdump(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        words = request.get("filter") or []
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("tcpdump: filter must be a list of words")
        predicate = compile_filter(words)
        limit = request.get("queue", self.tap_queue)
        if not isinstance(limit, int) or limit < 1:
            raise ValueError("tcpdump: queue must be a positive number")
        sub = _Subscriber(predicate, min(limit, self.tap_queue))
        client.subscriber = sub
        self._subscribe(sub)
        primary = self.host.stack.primary
        return {"layer": primary.layer if primary.layer in (2, 3) else 2, "interface": primary.name,
                "queue": sub.limit}


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


# ----------------------------------------------------------------- the client side

class ControlClient:
    """One connection to a control socket: ``request(cmd, **args)`` returns the result or raises
    ControlError with the server's error text; ``stream()`` yields the messages after a tcpdump."""

    def __init__(self, path: str, timeout: float | None = 10.0) -> None:
        self.path = path
        self.sock = _KernelSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as err:
            self.sock.close()
            raise ControlError(err.errno, f"{path}: {err.strerror}") from None
        self._buf = bytearray()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> dict[str, Any] | None:
        while True:
            line, newline, rest = self._buf.partition(b"\n")
            if newline:
                self._buf = bytearray(rest)
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ControlError(errno.EPROTO, f"{self.path}: unexpected answer")
                return message
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise ControlError(errno.ETIMEDOUT, f"{self.path}: no answer") from None
            except OSError as err:
                raise ControlError(err.errno, f"{self.path}: {err.strerror}") from None
            if not data:
                return None
            self._buf += data

    def request(self, cmd: str, **args: Any) -> Any:
        try:
            self.sock.sendall(_encode({"cmd": cmd, **args}))
        except OSError as err:
            raise ControlError(err.errno, f"{self.path}: {err.strerror}") from None
        message = self._line()
        if message is None:
            raise ControlError(errno.ECONNRESET, f"{self.path}: the host closed the connection")
        if not message.get("ok"):
            raise ControlError(errno.EPROTO, str(message.get("error", "request failed")))
        return message.get("result")

    def stream(self) -> Any:
        """The messages after a streaming request, until the host closes the connection."""
        self.sock.settimeout(None)
        while True:
            message = self._line()
            if message is None:
                return
            yield message
