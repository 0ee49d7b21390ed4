"""Run a packetdrill script against a fresh usernet host in virtual time.

The runner plays the remote host (packetdrill's defaults: we are 192.168.0.1, the remote is
192.0.2.1, MTU 1500) on a layer-3 link, as packetdrill does over a TUN device. System calls go
through usernet's own socket-compatible API, each in a worker thread so that a blocking call can
return later in script time; the runner waits until every worker has finished or is blocked
before it moves the virtual clock.

Where packetdrill's own rules are subtle, the runner follows them (google/packetdrill run.c and
run_packet.c):

* A relative time (``+N``) counts from the previous event's scheduled time only between two
  inbound packets; otherwise from the time the previous event really happened (an outbound
  packet that came late moves the clock for what follows).
* Inbound packets and system calls scripted at time T run before stack timers that fall due at
  exactly T; outbound lines see those timers.
* An outbound ack field is rebased to relative numbers only when the segment has the ACK flag;
  without it the raw field is compared with the line's ``ack`` (0 if none), as packetdrill does.
* Packets that no ``>`` line asks for after the last event are never looked at (they are listed
  in the notes).
"""

from __future__ import annotations

import builtins
import errno as errno_mod
import random
import re
import socket as _socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from usernet.api.runtime import RuntimeState
from usernet.api.socket import TCP_STATES, Socket, tcp_info
from usernet.drill.parser import Event, PacketEvent, Script, ScriptError, SyscallEvent, TcpOptionSpec
from usernet.stack.core import Stack
from usernet.wire import icmp, ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG

REMOTE_ISN = 0
REMOTE_PORT_INBOUND = 48_000
PACKETDRILL_PORT = 8080
DEFAULT_TOLERANCE = 0.004  # packetdrill's --tolerance_usecs default
ANY_TIME_LIMIT = 10_000.0  # how long (virtual seconds) a "*" line waits for its packet

_MASK = 0xFFFFFFFF

# The names %{ }% blocks may use for tcpi_state: Linux's (what packetdrill's code.c defines) and
# FreeBSD's (netinet/tcp_fsm.h), both mapped onto the value tcpi_state really has (Linux's
# numbering, as usernet's TCP_INFO reports it), so a script written on either system compares right.
_STATE_NAMES = {
    "ESTABLISHED": ("TCP_ESTABLISHED", "TCPS_ESTABLISHED"), "SYN-SENT": ("TCP_SYN_SENT", "TCPS_SYN_SENT"),
    "SYN-RECEIVED": ("TCP_SYN_RECV", "TCPS_SYN_RECEIVED"), "FIN-WAIT-1": ("TCP_FIN_WAIT1", "TCPS_FIN_WAIT_1"),
    "FIN-WAIT-2": ("TCP_FIN_WAIT2", "TCPS_FIN_WAIT_2"), "TIME-WAIT": ("TCP_TIME_WAIT", "TCPS_TIME_WAIT"),
    "CLOSED": ("TCP_CLOSE", "TCPS_CLOSED"), "CLOSE-WAIT": ("TCP_CLOSE_WAIT", "TCPS_CLOSE_WAIT"),
    "LAST-ACK": ("TCP_LAST_ACK", "TCPS_LAST_ACK"), "LISTEN": ("TCP_LISTEN", "TCPS_LISTEN"),
    "CLOSING": ("TCP_CLOSING", "TCPS_CLOSING"),
}
_CODE_SYMBOLS: dict[str, int] = {
    **{name: TCP_STATES[state] for state, names in _STATE_NAMES.items() for name in names},
    "TCP_CA_Open": 0, "TCP_CA_Disorder": 1, "TCP_CA_CWR": 2, "TCP_CA_Recovery": 3, "TCP_CA_Loss": 4,
    "TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
    "TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32,
}
_CONSTANTS: dict[str, int] = {
    "AF_INET": 2, "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17, "IPPROTO_IP": 0,
    "SOL_SOCKET": _socket.SOL_SOCKET, "SO_REUSEADDR": _socket.SO_REUSEADDR, "SO_KEEPALIVE": _socket.SO_KEEPALIVE,
    "SO_RCVBUF": _socket.SO_RCVBUF, "SO_SNDBUF": _socket.SO_SNDBUF, "SO_LINGER": _socket.SO_LINGER,
    "SO_ERROR": _socket.SO_ERROR, "SO_BROADCAST": _socket.SO_BROADCAST, "TCP_NODELAY": _socket.TCP_NODELAY,
    "TCP_KEEPIDLE": _socket.TCP_KEEPIDLE, "TCP_KEEPINTVL": _socket.TCP_KEEPINTVL,
    "TCP_KEEPCNT": _socket.TCP_KEEPCNT, "TCP_USER_TIMEOUT": 18, "TCP_MAXSEG": _socket.TCP_MAXSEG,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2, "F_GETFL": 3, "F_SETFL": 4, "O_RDWR": 2, "O_NONBLOCK": 0o4000,
    "POLLIN": 1, "POLLPRI": 2, "POLLOUT": 4, "POLLERR": 8, "POLLHUP": 16, "POLLNVAL": 32, "POLLRDHUP": 0x2000,
    "SOL_TCP": 6, "SOL_IP": 0, "SO_TYPE": _socket.SO_TYPE, "SO_ACCEPTCONN": _socket.SO_ACCEPTCONN,
    "SO_REUSEPORT": getattr(_socket, "SO_REUSEPORT", 15), "SO_RCVTIMEO": _socket.SO_RCVTIMEO,
    "SO_SNDTIMEO": _socket.SO_SNDTIMEO, "IP_TOS": _socket.IP_TOS, "IP_TTL": _socket.IP_TTL,
    "MSG_PEEK": _socket.MSG_PEEK, "MSG_DONTWAIT": _socket.MSG_DONTWAIT, "MSG_WAITALL": _socket.MSG_WAITALL,
    "MSG_NOSIGNAL": _socket.MSG_NOSIGNAL, "MSG_OOB": _socket.MSG_OOB, "MSG_TRUNC": _socket.MSG_TRUNC,
    "MSG_MORE": getattr(_socket, "MSG_MORE", 0x8000), "MSG_EOR": _socket.MSG_EOR,
    **{name: code for code, name in errno_mod.errorcode.items()},
}
# The flags the socket layer implements on stream sockets; any other flag fails the line rather
# than being dropped (MSG_NOSIGNAL changes nothing here: usernet raises no SIGPIPE).
_RECV_FLAGS = _socket.MSG_PEEK | _socket.MSG_DONTWAIT | _socket.MSG_WAITALL
_SEND_FLAGS = _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL
# getsockopt values --relaxed does not compare: buffer sizes and the MSS always differ between
# systems; the keepalive numbers and the TTL only by default (once the script sets one, it is
# compared). Everything else (SO_ERROR above all) is compared in every mode.
_OS_SIZES = {(_socket.SOL_SOCKET, _socket.SO_RCVBUF), (_socket.SOL_SOCKET, _socket.SO_SNDBUF),
             (_socket.IPPROTO_TCP, _socket.TCP_MAXSEG)}
_OS_DEFAULTS = {(_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE), (_socket.IPPROTO_TCP, _socket.TCP_KEEPINTVL),
                (_socket.IPPROTO_TCP, _socket.TCP_KEEPCNT), (_socket.IPPROTO_IP, _socket.IP_TTL)}
_MAY_BLOCK = ("accept", "read", "readv", "recv", "recvfrom", "recvmsg", "connect", "write", "writev", "send",
              "sendto", "sendmsg", "poll", "close")


class Failure(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _Mismatch(Exception):
    """A system call returned, but a value it reports (getsockopt, poll, msg_flags) is wrong."""


@dataclass
class Result:
    path: str
    passed: bool
    line: int = 0
    message: str = ""
    notes: list[str] = field(default_factory=list)
    # %{ }% assertions the runner could not evaluate (unknown name, no connection...): also in
    # notes; a failure instead under strict_asserts
    unevaluated: list[str] = field(default_factory=list)


class _TrackingCondition(threading.Condition):
    """A condition that knows which threads are blocked on it: a thread counts as blocked only if
    it started waiting after the last notification (a notified thread is about to run again)."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__(lock)
        self.waiting: dict[int, int] = {}
        self.generation = 0

    def wait(self, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        self.waiting[me] = self.generation
        try:
            return super().wait(timeout)
        finally:
            self.waiting.pop(me, None)

    def notify_all(self) -> None:
        self.generation += 1
        super().notify_all()

    def blocked(self, ident: int) -> bool:
        started = self.waiting.get(ident)
        return started is not None and started == self.generation


class VirtualHost(RuntimeState):
    """The part of :class:`usernet.Host` that sockets use, with a clock the runner moves."""

    _cond: _TrackingCondition

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._lock = threading.RLock()
        self._cond = _TrackingCondition(self._lock)
        self._closed = False
        self._stopping = False
        self._sockets: weakref.WeakSet[Socket] = weakref.WeakSet()
        self.now = 0.0
        self.last_kick = -1.0  # when the stack last ran (timers due then have fired)
        self.outbound: list[tuple[float, bytes]] = []

    def kick(self) -> None:
        self.last_kick = self.now
        for frame in self.stack.poll(self.now):
            self.outbound.append((self.now, bytes(frame)))
        self._cond.notify_all()

    def notify(self) -> None:
        self._cond.notify_all()

    def socket_condition(self) -> threading.Condition:
        return self._cond  # one tracking condition: the runner must see every blocked call

    def clock(self) -> float:
        return self.now

    @property
    def running(self) -> bool:
        return True  # virtual time moves whenever the script says so

    def socket(self, family: int = 2, type: int = 1, proto: int = 0) -> Socket:
        sock = Socket(self, family, type, proto)  # type: ignore[arg-type]
        self._sockets.add(sock)
        return sock

    @property
    def address(self) -> str:
        return ipv4.ntoa(self.stack.addr)


class _Call:
    """A system call running in its own thread."""

    def __init__(self, event: Event, fn: Callable[[], Any]) -> None:
        self.event = event
        self.done = False
        self.result: Any = None
        self.error: OSError | None = None
        self.mismatch: str | None = None
        self.finished_at = 0.0
        self.expected_end: float | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.ident = 0

    def _run(self, fn: Callable[[], Any]) -> None:
        self.ident = threading.get_ident()
        try:
            self.result = fn()
        except OSError as err:
            self.error = err
        except _Mismatch as err:
            self.mismatch = str(err)
        except Exception as err:  # a usernet bug, reported as a failure of this line
            self.error = OSError(errno_mod.EIO, f"{type(err).__name__}: {err}")
        self.done = True


class Runner:
    def __init__(self, script: Script, tolerance: float | None = None, relaxed: bool = False,
                 strict_asserts: bool = False) -> None:
        self.script = script
        opts = script.options
        if tolerance is None:
            tolerance = int(opts["tolerance_usecs"]) / 1e6 if "tolerance_usecs" in opts else DEFAULT_TOLERANCE
        self.tolerance = tolerance
        self.relaxed = relaxed
        self.strict_asserts = strict_asserts
        self.local = ipv4.addr(opts.get("local_ip", "192.168.0.1"))
        self.remote = ipv4.addr(opts.get("remote_ip", "192.0.2.1"))
        mtu = int(opts.get("mtu", "1500"))
        self.stack = Stack(layer=3, addr=ipv4.ntoa(self.local) + "/24", mtu=mtu, rng=random.Random(1))
        self.host = VirtualHost(self.stack)
        self.fds: dict[int, Socket] = {}
        self.calls: list[_Call] = []
        self.our_isn: int | None = None
        self.local_port = PACKETDRILL_PORT
        self.remote_port = REMOTE_PORT_INBOUND
        self.ts_offset: int | None = None
        self.last_outbound: bytes | None = None
        self.notes: list[str] = []
        self.unevaluated: list[str] = []
        self.last_conn: Any = None
        self.ident = 0
        self.our_fin: int | None = None        # relative sequence number of our FIN while unacknowledged
        self.options_set: set[tuple[Any, int, int]] = set()   # (fd, level, option) the script set

    # ----------------------------------------------------------------- the clock

    def advance(self, target: float, inclusive: bool = True) -> None:
        """Move virtual time to *target*, firing every timer on the way. With inclusive False,
        timers due at exactly *target* wait: a scripted packet or call at T comes first (a real
        kernel never fires a timer early), and the kick after it fires them."""
        host = self.host
        same_time = 0
        while True:
            with host._lock:
                deadline = self.stack.next_deadline()
                if deadline is None:
                    break
                if deadline <= host.now:
                    # Work due at this instant (left by a call, or a timer armed by it). If time
                    # moved to the target without a poll, timers due then have not run: they
                    # wait for the event too.
                    if not inclusive and host.now >= target and host.last_kick < host.now:
                        break
                    same_time += 1
                    if same_time > 50:  # not making progress at this instant: let time move on
                        break
                else:
                    if deadline > target or (not inclusive and deadline >= target):
                        break
                    same_time = 0
                    host.now = deadline
                host.kick()
            self.settle()
        with host._lock:
            if target > host.now:
                host.now = target
                if inclusive:
                    host.kick()
            elif inclusive:
                host.kick()
        self.settle()

    def settle(self) -> None:
        """Wait (real time, briefly) until every running call has returned or blocked."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with self.host._lock:
                busy = [c for c in self.calls if not c.done and not self.host._cond.blocked(c.ident)]
            if not busy:
                break
            time.sleep(0.0002)
        now = self.host.now
        for call in self.calls:
            if call.done and not call.finished_at:
                call.finished_at = now or 1e-9

    # ----------------------------------------------------------------- running

    def run(self) -> Result:
        try:
            self._run()
        except Failure as failure:
            return Result(self.script.path, False, failure.line, str(failure), self.notes, self.unevaluated)
        except ScriptError as err:
            return Result(self.script.path, False, err.line, str(err), self.notes, self.unevaluated)
        finally:
            self.host._closed = True
            with self.host._lock:
                self.host._cond.notify_all()
        return Result(self.script.path, True, notes=self.notes, unevaluated=self.unevaluated)

    def _run(self) -> None:
        previous: Event | None = None
        previous_when = 0.0
        for event in self.script.events:
            t = event.time
            # packetdrill's adjust_relative_event_times(): between two inbound packets a relative
            # time counts from the previous one's scheduled time, otherwise from now (when the
            # previous event really happened: an outbound packet's arrival, a call's start).
            if previous is not None and _inbound(previous) and _inbound(event):
                base = previous_when
            else:
                base = self.host.now
            when = self.host.now if t.kind == "any" else (base + t.start if t.kind == "relative" else t.start)
            end = None if t.end is None else (base + t.end if t.kind == "relative" else t.end)
            if event.kind == "packet" and event.packet and event.packet.direction == ">":
                self.expect_outbound(event, when, end)
            else:
                self.advance(when, inclusive=False)
                self.check_no_unexpected(event.line, when)
                if event.kind == "packet":
                    assert event.packet is not None
                    self.inject(event, event.packet)
                elif event.kind == "syscall":
                    assert event.syscall is not None
                    self.syscall(event, event.syscall, when, end)
                elif event.kind == "shell":
                    self.shell(event)
                elif event.kind == "python":
                    self.python(event)
            self.check_calls()
            previous, previous_when = event, when
        self.advance(self.host.now + self.tolerance)
        # As packetdrill, nothing looks at packets after the last event: listed, never a failure.
        for sent_at, packet in self.host.outbound:
            self.notes.append(f"after the last event, not checked: packet at {sent_at:.6f}: {self.describe(packet)}")
        self.host.outbound.clear()
        self.check_calls(final=True)

    # ----------------------------------------------------------------- packets

    def check_no_unexpected(self, line: int, when: float, final: bool = False) -> None:
        for sent_at, packet in self.host.outbound:
            if final or sent_at < when - self.tolerance:
                raise Failure(line, f"unexpected outbound packet at {sent_at:.6f}: {self.describe(packet)}")

    def expect_outbound(self, event: Event, when: float, end: float | None) -> None:
        spec = event.packet
        assert spec is not None
        latest = (end if end is not None else when) + self.tolerance
        if event.time.kind == "any":  # "*": whenever the packet comes (packetdrill waits for it)
            latest = self.host.now + ANY_TIME_LIMIT
        while not self.host.outbound and self.host.now < latest:
            with self.host._lock:
                deadline = self.stack.next_deadline()
            self.advance(min(latest, deadline) if deadline is not None and deadline > self.host.now else latest)
        if not self.host.outbound:
            raise Failure(event.line, f"expected packet not sent by {latest:.6f}: {self.format_spec(spec)}")
        sent_at, packet = self.host.outbound.pop(0)
        if self.relaxed and spec.protocol == "tcp":
            packet = self.coalesce(packet, spec.length)
        if event.time.kind != "any" and not (when - self.tolerance <= sent_at <= latest):
            raise Failure(event.line, f"packet sent at {sent_at:.6f}, expected at {when:.6f} "
                                      f"(tolerance {self.tolerance * 1e6:.0f} us): {self.describe(packet)}")
        self.match(event.line, spec, packet)
        # The clock now stands where the packet was found (its send time, or later if it had
        # been queued): a relative time on the next line counts from there, as in packetdrill.

    def coalesce(self, packet: bytes, want: int) -> bytes:
        """--relaxed: Linux's scripts expect one TSO super-segment where usernet sends MSS-sized
        ones. Merge the contiguous segments that follow, until the expected length is reached."""
        header = ipv4.parse(packet)
        seg = tcpwire.parse(header.payload)
        payload = bytes(seg.payload)
        flags = seg.flags
        raw = bytes(header.payload)
        options = raw[20:(raw[12] >> 4) * 4]
        while len(payload) < want and self.host.outbound:
            nxt = ipv4.parse(self.host.outbound[0][1])
            if nxt.proto != ipv4.PROTO_TCP:
                break
            follow = tcpwire.parse(nxt.payload)
            if follow.seq != (seg.seq + len(payload)) & 0xFFFFFFFF or not follow.payload or follow.flags & SYN:
                break
            self.host.outbound.pop(0)
            payload += bytes(follow.payload)
            flags |= follow.flags
        if len(payload) == len(seg.payload):
            return packet
        merged = tcpwire.build(header.src, header.dst, seg.sport, seg.dport, seg.seq, seg.ack, flags, seg.window,
                               options, payload)
        return bytes(ipv4.build(src=header.src, dst=header.dst, proto=ipv4.PROTO_TCP, payload=merged, ident=0))

    def match(self, line: int, spec: PacketEvent, packet: bytes) -> None:
        header = ipv4.parse(packet)
        if spec.protocol != "tcp" or header.proto != ipv4.PROTO_TCP:
            raise Failure(line, f"expected a TCP packet, got {self.describe(packet)}")
        raw_tcp = bytes(header.payload)
        seg = tcpwire.parse(raw_tcp)
        if seg.flags & SYN:  # every handshake of ours sets the base of relative sequence numbers
            self.our_isn = seg.seq
            self.our_fin = None
            if not seg.flags & ACK:
                self.local_port, self.remote_port = seg.sport, seg.dport
        isn = self.our_isn if self.our_isn is not None else 0
        problems = []
        rel_seq = (seg.seq - isn) & _MASK
        flags, seq = self.fin_equivalent(spec, seg.flags, rel_seq, len(seg.payload))
        want = spec.flags
        if self.relaxed:
            flags &= ~PSH
            want &= ~PSH
        if flags != want:
            problems.append(f"flags {_flag_text(seg.flags)} != {_flag_text(spec.flags)}")
        if seq != spec.seq_start or len(seg.payload) != spec.length:
            problems.append(f"seq {rel_seq}:{rel_seq + len(seg.payload)}({len(seg.payload)}) != "
                            f"{spec.seq_start}:{spec.seq_end}({spec.length})")
        # As packetdrill: the ack field is rebased only when the segment carries ACK; otherwise
        # the raw field is compared, with the line's ack or 0.
        want_ack = spec.ack if spec.ack is not None else 0
        got_ack = (seg.ack - REMOTE_ISN) & _MASK if seg.flags & ACK else seg.ack
        if got_ack != want_ack:
            problems.append(f"ack {got_ack} != {want_ack}" + ("" if seg.flags & ACK else " (raw field: no ACK flag)"))
        if spec.window is not None and not self.relaxed and seg.window != spec.window:
            problems.append(f"win {seg.window} != {spec.window}")
        problems += _ip_problems(spec, header)
        if not (self.relaxed and seg.flags & SYN):
            problem = self.match_options(spec.options, _options_list(raw_tcp))
            if problem:
                problems.append(problem)
        if problems:
            raise Failure(line, "; ".join(problems) + f" (actual: {self.describe(packet)})")
        if seg.flags & FIN:
            self.our_fin = (rel_seq + len(seg.payload)) & _MASK
        self.last_outbound = packet

    def fin_equivalent(self, spec: PacketEvent, flags: int, seq: int, length: int) -> tuple[int, int]:
        """--relaxed, while our FIN is unacknowledged: a zero-length FIN|ACK at S (FreeBSD repeats
        the FIN flag on every segment until the FIN is acked) and a bare ACK at S+1 (Linux) say
        the same thing (RFC 9293 3.10.7.4). Returns the flags and sequence number to compare:
        the actual ones, or the other form when that is exactly what the line expects."""
        fin = self.our_fin
        if not self.relaxed or fin is None or length or spec.length or not flags & ACK or not spec.flags & ACK:
            return flags, seq
        want = spec.flags & ~PSH
        if flags & FIN and seq == fin and not spec.flags & FIN and spec.seq_start == (fin + 1) & _MASK:
            if (flags & ~FIN & ~PSH) == want:
                return flags & ~FIN, (seq + 1) & _MASK
        if not flags & FIN and seq == (fin + 1) & _MASK and spec.flags & FIN and spec.seq_start == fin:
            if ((flags | FIN) & ~PSH) == want:
                return flags | FIN, fin
        return flags, seq

    def match_options(self, spec: TcpOptionSpec | None, actual: list[tuple[str, Any]]) -> str | None:
        if spec is None:
            return None if not actual else f"unexpected options {actual}"
        if spec.any:
            return None
        expected = [(name, value) for name, value in spec.items]
        if [n for n, _ in actual] != [n for n, _ in expected]:
            return f"options {actual} != {expected}"
        for (name, got), (_, want) in zip(actual, expected, strict=True):
            if name == "TS":
                if self.ts_offset is None:
                    self.ts_offset = (got[0] - want[0]) & 0xFFFFFFFF
                if got[1] != want[1]:
                    return f"TS ecr {got[1]} != {want[1]}"
            elif name == "sack":
                isn = REMOTE_ISN
                rel = [((a - isn) & 0xFFFFFFFF, (b - isn) & 0xFFFFFFFF) for a, b in got]
                if rel != [tuple(b) for b in want]:
                    return f"sack {rel} != {want}"
            elif name in ("mss", "wscale") and got != want:
                return f"{name} {got} != {want}"
        return None

    def inject(self, event: Event, spec: PacketEvent) -> None:
        if spec.protocol == "icmp":
            packet = self.build_icmp(event, spec)
        else:
            isn = self.our_isn if self.our_isn is not None else 0
            options = b""
            if spec.options is not None and not spec.options.any:
                options = self.build_options(spec.options, isn)
            flags = spec.flags
            # As packetdrill's map_inbound_packet(): the ack field is mapped onto our ISN only
            # when the segment has ACK; otherwise it goes out as written (0 if not written).
            ack = (isn + (spec.ack or 0)) & _MASK if flags & ACK else (spec.ack or 0) & _MASK
            if flags & ACK and self.our_fin is not None and spec.ack is not None \
                    and 0 < (spec.ack - self.our_fin) & _MASK < 1 << 31:
                self.our_fin = None  # our FIN is acknowledged
            segment = tcpwire.build(self.remote, self.local, self.remote_port, self.local_port,
                                    (REMOTE_ISN + spec.seq_start) & _MASK, ack, flags,
                                    spec.window if spec.window is not None else 65535, options, bytes(spec.length))
            self.ident += 1
            tos = spec.tos or 0
            if isinstance(spec.ecn, int):
                tos = (tos & ~3) | spec.ecn
            packet = bytes(ipv4.build(src=self.remote, dst=self.local, proto=ipv4.PROTO_TCP, payload=segment,
                                      ident=self.ident, tos=tos, ttl=spec.ttl or 64))
        with self.host._lock:
            self.stack.receive(packet, self.host.now)
            self.host.kick()
        self.settle()

    def build_options(self, spec: TcpOptionSpec, isn: int) -> bytes:
        raw = bytearray()
        for name, value in spec.items:
            if name == "nop":
                raw.append(1)
            elif name == "eol":
                raw.append(0)
            elif name == "mss":
                raw += bytes((2, 4)) + value.to_bytes(2, "big")
            elif name == "wscale":
                raw += bytes((3, 3, value))
            elif name == "sackOK":
                raw += bytes((4, 2))
            elif name == "TS":
                val, ecr = value
                if self.ts_offset is not None:
                    ecr = (ecr + self.ts_offset) & 0xFFFFFFFF
                raw += bytes((8, 10)) + val.to_bytes(4, "big") + ecr.to_bytes(4, "big")
            elif name == "sack":
                raw += bytes((5, 2 + 8 * len(value)))
                for left, right in value:
                    raw += ((isn + left) & 0xFFFFFFFF).to_bytes(4, "big") + ((isn + right) & 0xFFFFFFFF).to_bytes(
                        4, "big")
        while len(raw) % 4:
            raw.append(0)
        return bytes(raw)

    def build_icmp(self, event: Event, spec: PacketEvent) -> bytes:
        kinds = {"unreachable": icmp.DEST_UNREACHABLE, "time_exceeded": icmp.TIME_EXCEEDED}
        codes = {"net_unreachable": 0, "host_unreachable": 1, "protocol_unreachable": 2, "port_unreachable": 3,
                 "frag_needed": 4}
        info = spec.icmp
        if info.get("type") not in kinds:
            raise Failure(event.line, f"unsupported ICMP type {info.get('type')!r}")
        if self.last_outbound is None:
            raise Failure(event.line, "an ICMP error needs a packet of ours to quote")
        rest = info.get("mtu", 0) & 0xFFFF
        message = icmp.build_error(kinds[info["type"]], codes.get(info.get("code", ""), 0), self.last_outbound,
                                   rest)
        self.ident += 1
        return bytes(ipv4.build(src=self.remote, dst=self.local, proto=ipv4.PROTO_ICMP, payload=message,
                                ident=self.ident))

    def describe(self, packet: bytes) -> str:
        """The packet as a script line would write it: sequence numbers relative to our ISN when
        one is known (absolute otherwise), the ack relative only when the ACK flag is set."""
        try:
            header = ipv4.parse(packet)
            raw_tcp = bytes(header.payload)
            seg = tcpwire.parse(raw_tcp)
        except Exception:
            return packet[:40].hex()
        isn = self.our_isn if self.our_isn is not None else 0
        seq = (seg.seq - isn) & _MASK
        text = f"{_flag_text(seg.flags)} {seq}:{(seq + len(seg.payload)) & _MASK}({len(seg.payload)})"
        if seg.flags & ACK:
            text += f" ack {(seg.ack - REMOTE_ISN) & _MASK}"
        elif seg.ack:
            text += f" ack {seg.ack}"
        text += f" win {seg.window}"
        opts = _options_list(raw_tcp)
        if opts:
            text += " <" + ",".join(f"{n} {v}" if v is not None else n for n, v in opts) + ">"
        return text

    @staticmethod
    def format_spec(spec: PacketEvent) -> str:
        text = f"{_flag_text(spec.flags)} {spec.seq_start}:{spec.seq_end}({spec.length})"
        if spec.ack is not None:
            text += f" ack {spec.ack}"
        return text

    # ----------------------------------------------------------------- system calls

    def syscall(self, event: Event, call: SyscallEvent, when: float, end: float | None) -> None:
        fn = self.make_call(event, call)
        if fn is None:
            return
        running = _Call(event, fn)
        running.expected_end = end
        self.calls.append(running)
        running.thread.start()
        self.settle()
        if not running.done and not event.time.blocking and call.name not in _MAY_BLOCK:
            raise Failure(event.line, f"{call.name}() blocked")

    def check_calls(self, final: bool = False) -> None:
        for running in list(self.calls):
            if not running.done:
                if final:
                    raise Failure(running.event.line, f"{running.event.syscall.name}() never returned")  # type: ignore
                continue
            self.calls.remove(running)
            self.verify(running)

    def verify(self, running: _Call) -> None:
        event = running.event
        call = event.syscall
        assert call is not None
        t = event.time
        end = running.expected_end
        if t.blocking and end is not None and abs(running.finished_at - end) > self.tolerance:
            raise Failure(event.line, f"{call.name}() returned at {running.finished_at:.6f}, expected {end:.6f}")
        if running.mismatch is not None:
            raise Failure(event.line, f"{call.name}(): {running.mismatch}")
        if running.error is not None:
            actual, name = -1, errno_mod.errorcode.get(running.error.errno or 0, str(running.error))
        else:
            actual, name = running.result, None
        if call.result != "..." and actual != call.result:
            raise Failure(event.line, f"{call.name}() returned {actual}{' ' + name if name else ''}, "
                                      f"expected {call.result}{' ' + call.errno_name if call.errno_name else ''}")
        if call.errno_name and name != call.errno_name:
            if not (self.relaxed and call.errno_name in ("EAGAIN", "EWOULDBLOCK") and name in ("EAGAIN",
                                                                                                   "EWOULDBLOCK")):
                raise Failure(event.line, f"{call.name}() failed with {name}, expected {call.errno_name}")

    def value(self, arg: Any) -> Any:
        if isinstance(arg, tuple) and arg and arg[0] == "|":
            return self.value(arg[1]) | self.value(arg[2])
        if isinstance(arg, str) and arg in _CONSTANTS:
            return _CONSTANTS[arg]
        if isinstance(arg, list) and len(arg) == 1:
            return self.value(arg[0])
        return arg

    def sock(self, event: Event, fd: Any) -> Socket:
        sock = self.fds.get(fd)
        if sock is None:
            raise Failure(event.line, f"no socket with fd {fd}")
        return sock

    def make_call(self, event: Event, call: SyscallEvent) -> Callable[[], Any] | None:
        args = [self.value(a) for a in call.args]
        name = call.name
        host = self.host

        if name == "poll":
            return self.make_poll(event, call)
        if name == "socket":
            def do_socket() -> int:
                sock = host.socket(args[0] if isinstance(args[0], int) else 2, args[1], 0)
                fd = call.result if isinstance(call.result, int) and call.result >= 0 else 3 + len(self.fds)
                self.fds[fd] = sock
                return fd
            return do_socket
        sock = self.sock(event, args[0])
        if name == "bind":
            return _returns_zero(sock.bind, ("", self.local_port))
        if name == "listen":
            return _returns_zero(sock.listen, args[1])
        if name == "accept":
            def do_accept() -> int:
                conn, _ = sock.accept()
                fd = call.result if isinstance(call.result, int) and call.result >= 0 else 3 + len(self.fds)
                self.fds[fd] = conn
                self.last_conn = conn._conn
                return fd
            return do_accept
        if name == "connect":
            def do_connect() -> int:
                self.remote_port = PACKETDRILL_PORT
                try:
                    sock.connect((ipv4.ntoa(self.remote), PACKETDRILL_PORT))
                finally:
                    self.last_conn = sock._conn
                return 0
            return do_connect
        if name in ("write", "send", "sendto", "writev", "sendmsg"):
            if name == "writev":
                size, flags = _iov_total(event, args[1]), 0
            elif name == "sendmsg":
                size, flags = _iov_total(event, _msg_iov(event, args[1])), self.flags(event, args, 2, _SEND_FLAGS)
            else:
                size, flags = args[2], self.flags(event, args, 3, _SEND_FLAGS) if name != "write" else 0

            def do_write() -> int:
                if not sock.getblocking() or flags & _socket.MSG_DONTWAIT:
                    return sock.send(bytes(size), flags)
                sock.sendall(bytes(size), flags)  # a blocking write(2) returns once all is queued
                return int(size)
            return do_write
        if name in ("read", "recv", "recvfrom", "readv"):
            if name == "readv":
                size, flags = _iov_total(event, args[1]), 0
            else:
                size, flags = args[2], self.flags(event, args, 3, _RECV_FLAGS) if name != "read" else 0
            return lambda: len(sock.recv(size, flags))
        if name == "recvmsg":
            msg = args[1]
            size, flags = _iov_total(event, _msg_iov(event, msg)), self.flags(event, args, 2, _RECV_FLAGS)

            def do_recvmsg() -> int:
                data, _, msg_flags, _ = sock.recvmsg(size, 0, flags)
                want = self.value(msg.get("msg_flags", ...)) if isinstance(msg, dict) else ...
                if want is not ... and msg_flags != want:
                    raise _Mismatch(f"msg_flags {msg_flags:#x}, expected {want:#x}")
                return len(data)
            return do_recvmsg
        if name == "close":
            def do_close() -> int:
                sock.close()
                del self.fds[args[0]]
                return 0
            return do_close
        if name == "shutdown":
            return _returns_zero(sock.shutdown, args[1])
        if name == "setsockopt":
            self.options_set.add((args[0], args[1], args[2]))
            value = args[3]
            if isinstance(value, dict):  # {onoff=1, linger=0}
                fields: dict[str, Any] = value
                value = (int(fields.get("onoff", fields.get("l_onoff", 0))),
                         int(fields.get("linger", fields.get("l_linger", 0))))
            return _returns_zero(sock.setsockopt, args[1], args[2], value)
        if name == "getsockopt":
            fd, level, option, want = args[0], args[1], args[2], args[3]

            def do_getsockopt() -> int:
                if isinstance(want, dict):  # {onoff=1, linger=0}
                    got: Any = struct.unpack("ii", sock.getsockopt(level, option, 8))
                    expected: Any = (int(self.value(want.get("onoff", want.get("l_onoff", 0)))),
                                     int(self.value(want.get("linger", want.get("l_linger", 0)))))
                else:
                    got, expected = sock.getsockopt(level, option), want
                if expected is ... or got == expected:
                    return 0
                if self.relaxed and ((level, option) in _OS_SIZES or (level, option) in _OS_DEFAULTS
                                     and (fd, level, option) not in self.options_set):
                    self.notes.append(f"line {event.line}: getsockopt value {got} (script: {expected}) "
                                      f"not compared: it differs between systems (--relaxed)")
                    return 0
                raise _Mismatch(f"value {got}, expected {expected}")
            return do_getsockopt
        if name == "fcntl":
            def do_fcntl() -> int:
                if args[1] == _CONSTANTS["F_GETFL"]:
                    return _CONSTANTS["O_RDWR"] | (0 if sock.getblocking() else _CONSTANTS["O_NONBLOCK"])
                sock.setblocking(not (args[2] & _CONSTANTS["O_NONBLOCK"]))
                return 0
            return do_fcntl
        raise Failure(event.line, f"unsupported system call {name}()")

    def flags(self, event: Event, args: list[Any], index: int, supported: int) -> int:
        """The flags argument of recv/send-style calls, passed through to the socket layer; a
        flag usernet does not implement fails the line instead of being dropped."""
        if len(args) <= index or args[index] is ...:
            return 0
        flags = args[index]
        if not isinstance(flags, int):
            raise Failure(event.line, f"unknown flag {flags!r}")
        unknown = flags & ~supported
        if unknown:
            names = [n for n, v in _CONSTANTS.items() if n.startswith("MSG_") and v & unknown == v and v]
            raise Failure(event.line, f"flag {'|'.join(names) or hex(unknown)} is not supported by usernet")
        return flags

    def make_poll(self, event: Event, call: SyscallEvent) -> Callable[[], Any]:
        def do_poll() -> int:
            ready = 0
            for item in call.args[0]:
                target = self.sock(event, item["fd"])
                mask = 0
                if target._readable_now():
                    mask |= _CONSTANTS["POLLIN"]
                if target._writable_now():
                    mask |= _CONSTANTS["POLLOUT"]
                conn = target._conn
                if conn is not None and conn.error is not None:
                    mask |= _CONSTANTS["POLLERR"]
                if conn is not None and conn.eof and conn.fin_queued:
                    mask |= _CONSTANTS["POLLHUP"]
                want = self.value(item.get("revents", 0)) if item.get("revents") is not None else None
                if want is not None and mask & want != want:
                    raise _Mismatch(f"revents {mask:#x} lack {want:#x}")
                ready += bool(mask & (self.value(item.get("events", 0)) | 0x38))
            return ready
        return do_poll

    # ----------------------------------------------------------------- shell lines

    def shell(self, event: Event) -> None:
        """Shell commands are not run. The Linux sysctls that scripts use to switch TCP features
        are honoured (they configure this host's TCP); anything else is skipped with a note."""
        applied = []
        config = self.stack.tcp.config
        for name, value in re.findall(r"net\.ipv4\.(tcp_\w+)=(\d+)", event.text):
            number = int(value)
            if name == "tcp_syncookies":
                config.syn_cookies = number != 0
                if number == 2:  # Linux: cookies for every SYN
                    config.syn_backlog = 0
            elif name in ("tcp_timestamps", "tcp_sack", "tcp_window_scaling"):
                setattr(config, {"tcp_timestamps": "timestamps", "tcp_sack": "sack",
                                 "tcp_window_scaling": "window_scaling"}[name], bool(number))
            else:
                continue
            applied.append(f"{name}={number}")
        if applied:
            self.notes.append(f"line {event.line}: applied {', '.join(applied)}")
        else:
            self.notes.append(f"line {event.line}: shell command skipped: {' '.join(event.text.split())[:60]}")

    # ----------------------------------------------------------------- %{ }% blocks

    def python(self, event: Event) -> None:
        """A %{ }% block: Python over the tcp_info of the latest connection (the socket layer's
        TCP_INFO values, so tcpi_unacked counts segments as Linux does) and the symbols
        packetdrill defines. A block that cannot be evaluated is a note, or a failure with
        strict_asserts: never skipped silently."""
        conn = self.last_conn
        listening = any(getattr(sock, "_listener", None) is not None for sock in self.fds.values())
        if conn is None and not listening:
            self.not_evaluated(event, "no socket to read tcp_info from yet")
            return
        names: dict[str, Any] = {"__builtins__": builtins}
        names.update(_CODE_SYMBOLS)
        with self.host._lock:
            names.update(tcp_info(conn, self.host.now, listening=conn is None))
        try:
            exec(compile(event.text.strip(), f"{self.script.path}:{event.line}", "exec"), names)
        except AssertionError as err:
            text = f"assertion failed: {' '.join(event.text.split())} {err or ''}"
            raise Failure(event.line, text.rstrip()) from None
        except Exception as err:  # NameError, SyntaxError, TypeError...: cannot be evaluated
            self.not_evaluated(event, f"{type(err).__name__}: {err}")

    def not_evaluated(self, event: Event, reason: str) -> None:
        message = f"line {event.line}: assertion not evaluated ({reason}): {' '.join(event.text.split())[:80]}"
        if self.strict_asserts:
            raise Failure(event.line, message + " (--strict-asserts)")
        self.unevaluated.append(message)
        self.notes.append(message)


def _inbound(event: Event) -> bool:
    return event.kind == "packet" and event.packet is not None and event.packet.direction == "<"


def _flag_text(flags: int) -> str:
    """Flags as a script writes them: "S.", "F.", "R", "P.", "-" for none."""
    text = "".join(c for bit, c in ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"),
                                    (CWR, "W")) if flags & bit)
    text += "." if flags & ACK else ""
    return text or "-"


def _ip_problems(spec: PacketEvent, header: Any) -> list[str]:
    """packetdrill's (tos 0x..), [ect0] and (ttl N) on an outbound line."""
    problems = []
    if spec.tos is not None and header.tos != spec.tos:
        problems.append(f"tos {header.tos:#x} != {spec.tos:#x}")
    if spec.ecn is not None:
        ecn = header.tos & 3
        if (ecn not in (1, 2)) if spec.ecn == "ect01" else ecn != spec.ecn:
            problems.append(f"ecn {ecn} != {spec.ecn}")
    if spec.ttl and header.ttl != spec.ttl:
        problems.append(f"ttl {header.ttl} != {spec.ttl}")
    return problems


def _msg_iov(event: Event, msg: Any) -> Any:
    if not isinstance(msg, dict) or "msg_iov" not in msg:
        raise Failure(event.line, "expected a msghdr {msg_name(...)=..., msg_iov(N)=[...], msg_flags=...}")
    return msg["msg_iov"]


def _iov_total(event: Event, iov: Any) -> int:
    """The byte count of an iovec array [{..., 100}, {..., 200}]."""
    if isinstance(iov, dict):
        iov = [iov]
    total = 0
    for item in iov if isinstance(iov, list) else []:
        sizes = item.get("_items", [])[1:] if isinstance(item, dict) else []
        if not sizes or not isinstance(sizes[0], int):
            raise Failure(event.line, f"bad iovec {item!r}")
        total += sizes[0]
    return total


def _returns_zero(fn: Callable[..., Any], *args: Any) -> Callable[[], int]:
    """A system call that returns 0 on success (errors arrive as OSError)."""
    def call() -> int:
        fn(*args)
        return 0
    return call


def _options_list(segment: bytes) -> list[tuple[str, Any]]:
    """The options of a TCP segment in wire order, in the script's names."""
    raw = segment[20:(segment[12] >> 4) * 4]
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            out.append(("eol", None))
            break
        if kind == 1:
            out.append(("nop", None))
            i += 1
            continue
        size = raw[i + 1] if i + 1 < len(raw) else 2
        body = raw[i + 2:i + size]
        if kind == 2:
            out.append(("mss", int.from_bytes(body, "big")))
        elif kind == 3:
            out.append(("wscale", body[0]))
        elif kind == 4:
            out.append(("sackOK", None))
        elif kind == 5:
            out.append(("sack", [(int.from_bytes(body[j:j + 4], "big"), int.from_bytes(body[j + 4:j + 8], "big"))
                                 for j in range(0, len(body), 8)]))
        elif kind == 8:
            out.append(("TS", (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"))))
        i += max(size, 2)
    return out


def run_script(script: Script, tolerance: float | None = None, relaxed: bool = False,
               strict_asserts: bool = False) -> Result:
    """Run *script*. relaxed: ignore what differs between correct stacks (see the README);
    strict_asserts: a %{ }% assertion that cannot be evaluated fails the script."""
    runner = Runner(script, tolerance, relaxed, strict_asserts)
    try:
        return runner.run()
    except Exception as err:  # the runner's own bug, or a stack bug that escaped: a failure, never a crash
        return Result(script.path, False, 0, f"internal error: {type(err).__name__}: {err}", runner.notes,
                      runner.unevaluated)
