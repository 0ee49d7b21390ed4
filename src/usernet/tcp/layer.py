"""The TCP layer of a host: demultiplexing, listeners, ISNs, RSTs for closed ports, timers.

The IP layer calls :meth:`TcpLayer.receive` with checksum-verified segments and gives an
``output(src, dst, segment)`` function; :meth:`poll` runs due timers and flushes pending output.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import random
import struct
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable

from usernet.errors import os_error
from usernet.tcp import syncookies
from usernet.tcp.config import TcpConfig
from usernet.tcp.connection import CLOSED, ESTABLISHED, LISTEN, SYN_RECEIVED, TIME_WAIT, TcpConnection
from usernet.tcp.context import ChallengeLimiter, MemoryPool
from usernet.tcp.seq import unwrap
from usernet.tcp.syncookies import blake2s
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import finish, le_mod, pseudo_header_sum
from usernet.wire.errors import ParseError
from usernet.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpOptions, TcpSegment

_SYN_CHECK = FIN | SYN | RST | ACK  # a pure SYN has SYN alone of these
_TCP_HEADER = struct.Struct("!HHIIBBHHH")  # RFC 9293 3.1, as wire.tcp packs it
_pack_header = _TCP_HEADER.pack
# The header followed by the one option layout nearly every segment of a connection with
# timestamps carries: NOP, NOP, TS (RFC 7323 appendix A), read in one go on input.
_TS_SEGMENT = struct.Struct("!HHIIBBHHHIII")
_unpack_ts_segment = _TS_SEGMENT.unpack_from
_TS_LEAD = (tcpwire.OPT_NOP << 24) | (tcpwire.OPT_NOP << 16) | (tcpwire.OPT_TIMESTAMP << 8) | 10
_TS_OFFSET_BYTE = (32 // 4) << 4  # data offset of a 32-byte header
_PREDICT_FLAGS = 0xFF & ~PSH  # header prediction: of these flags, ACK alone
_from_bytes = int.from_bytes
_IP_HLEN = 20  # the IPv4 header (no options) a loopback packet is built behind
VALIDATED_PEERS_MAX = 64  # addresses that recently completed a handshake with us (load shedding)

log = logging.getLogger("usernet.tcp")


def segment_header(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                   options: bytes, payload: bytes | bytearray | memoryview) -> bytes:
    """The TCP header (options included) of a segment carrying *payload*, its checksum (RFC 9293
    3.1, with the pseudo-header) complete: the bytes wire.tcp.build puts in front of the payload,
    packed once, without building the segment. The header's sum is taken from its field values:
    every 32-bit value is congruent to the sum of its two 16-bit halves modulo 0xFFFF (2**16 ==
    1), and so is the options area read as one big-endian integer (it has an even length); the
    payload (at an even offset) is summed by checksum.le_mod. The pseudo-header makes the total
    non-zero, so a zero remainder is negative zero, whose complement is 0 (RFC 1071)."""
    header_len = 20 + len(options)
    length = header_len + len(payload)
    total = src + dst + 6 + length + sport + dport + seq + ack + (header_len << 10) + flags + window
    if options:
        total += _from_bytes(options, "big")
    if payload:
        total += le_mod(payload) << 8  # little-endian to network order: times 2**8 (checksum.py)
    total %= 0xFFFF
    header = _pack_header(sport, dport, seq, ack, header_len << 2, flags, window, 0xFFFF - total if total else 0, 0)
    return header + options if options else header


EPHEMERAL_LOW = 32768
EPHEMERAL_HIGH = 60999

Key = tuple[int, int, int, int]  # local addr, local port, remote addr, remote port


class TcpListener:
    """A listening socket's sans-IO half: bounded SYN and accept queues (RFC 9293 3.10.7.2)."""

    def __init__(self, layer: TcpLayer, addr: int, port: int, backlog: int) -> None:
        self.layer = layer
        self.local_addr = addr
        self.local_port = port
        self.backlog = max(1, backlog)
        self.accept_queue: deque[TcpConnection] = deque()
        self.half_open: set[TcpConnection] = set()
        self.on_event: Callable[[], None] | None = None
        self.closed = False
        self.state = LISTEN
        self.dropped_syns = 0
        self.rcvbuf: int | None = None  # SO_RCVBUF set on the listening socket, inherited by children
        self.sndbuf: int | None = None
        self.ip_options: dict[str, int] = {}  # IP_TTL/IP_TOS, inherited by children (SYN-ACK included)

    @property
    def readable(self) -> bool:
        return bool(self.accept_queue) or self.closed

    def accept(self) -> TcpConnection | None:
        while self.accept_queue:
            conn = self.accept_queue.popleft()
            conn.listener = None
            conn.accepted = True
            if conn.state != CLOSED or conn.rcv_buf or conn.eof:
                return conn
        return None

    def notify(self) -> None:
        if self.on_event is not None:
            self.on_event()

    def close(self) -> None:
        """Stop listening. Connections that completed the handshake but were never accepted are
        reset with RST|ACK (Linux inet_csk_listen_stop; FreeBSD's soclose aborts sol_comp).
        Half-open (SYN-RECEIVED) ones are dropped silently, as Linux drops request socks whose
        listener is gone (reqsk_timer_handler): no RST, no more SYN-ACKs; a later segment from
        such a peer meets a closed port (RFC 9293 3.10.7.1: for an ACK, <SEQ=SEG.ACK><CTL=RST>)."""
        self.closed = True
        self.layer.listeners.pop((self.local_addr, self.local_port), None)
        for conn in list(self.half_open):
            conn.listener = None
            conn.user_closed = True
            conn._enter_closed()
        for conn in list(self.accept_queue):
            conn.listener = None
            conn.abort()
        self.accept_queue.clear()
        self.half_open.clear()
        self.notify()


class TcpLayer:
    def __init__(self, *, rng: random.Random, output: Callable[..., None],
                 mtu_for: Callable[[int], int], config: TcpConfig | None = None,
                 gso_for: Callable[[int], int] | None = None, is_local: Callable[[int], bool] | None = None,
                 loopback_output: Callable[..., None] | None = None,
                 output_parts: Callable[..., None] | None = None) -> None:
        self.rng = rng
        self.output = output
        # output_parts(src, dst, header, payload, ttl=, tos=): the same as output with the segment
        # in two pieces (its header, checksum complete, and the payload), which the IP layer joins
        # with its own headers in the frame's one copy. Without it, output gets the joined segment.
        self.output_parts = output_parts
        # is_local(dst): the segment goes over the host's own loopback; loopback_output(src, dst,
        # packet, ttl=, tos=) then takes a whole IPv4 packet whose first 20 bytes are the header's room.
        self.is_local: Callable[[int], bool] = is_local if is_local is not None and loopback_output is not None \
            else (lambda dst: False)
        self.loopback_output: Callable[..., None] = loopback_output if loopback_output is not None \
            else (lambda *args, **kwargs: None)
        self.mtu_for = mtu_for
        # gso_for(dst): payload bytes one super-segment may carry for the link to cut into MSS-sized
        # segments (TSO through the kernel), or 0 when the link cannot.
        self.gso_for = gso_for or (lambda dst: 0)
        self.config = config or TcpConfig()
        self.connections: dict[Key, TcpConnection] = {}
        self.listeners: dict[tuple[int, int], TcpListener] = {}
        self.bound: dict[int, int] = {}  # port -> number of sockets bound to it (besides listeners)
        self.dirty: set[TcpConnection] = set()
        # Timers: a heap of (deadline, tiebreak, conn) with lazy deletion. Each connection's entry
        # (conn.timer_at) is never later than its real next deadline, so wake-ups and polls cost
        # O(log n) in the number of connections instead of a scan of the table.
        self._timers: list[tuple[float, int, TcpConnection]] = []
        self._timer_tiebreak = itertools.count()
        self.counters: defaultdict[str, int] = defaultdict(int)
        self.challenge = ChallengeLimiter(rng, self.config)  # RFC 5961 7, host-wide
        # Host-wide socket buffer memory (Linux tcp_memory_allocated against tcp_mem): the bytes
        # every connection holds in its send, receive and out-of-order buffers.
        self.memory = MemoryPool(self.config, lambda: len(self.connections))  # tcp_mem
        self.now = 0.0
        self._isn_key = rng.getrandbits(128).to_bytes(16, "big")  # RFC 6528 secret
        self._tuple_hasher = blake2s(key=self._isn_key, digest_size=8)
        self._ts_memo: tuple[tuple[int, int], tuple[int, int], int] | None = None  # the last _isn's TS offset
        self.cookie_ts_offset = rng.getrandbits(32)
        self.validated_peers: OrderedDict[int, float] = OrderedDict()  # address -> when, oldest first

    # ----------------------------------------------------------------- the IP layer's side

    def receive(self, src: int, dst: int, segment: memoryview, now: float) -> None:
        self.now = now
        counters = self.counters
        if len(segment) >= 32:
            # The bulk of all input: a segment whose header holds the timestamps option alone
            # (as wire.tcp.parse reads it, fields in one unpack). Data for an ESTABLISHED
            # connection that header prediction takes costs no TcpSegment; any other becomes one
            # from the same fields and goes the general way.
            (sport, dport, seq, ack, offset_byte, flags, window, _csum, urgent, lead, ts_val,
             ts_ecr) = _unpack_ts_segment(segment, 0)
            if offset_byte == _TS_OFFSET_BYTE and lead == _TS_LEAD:
                if flags & _PREDICT_FLAGS == ACK:
                    conn = self.connections.get((dst, dport, src, sport))
                    if conn is not None and conn.state == ESTABLISHED and \
                            conn._predicted_data(seq, ack, window, ts_val, None, segment[32:], now):
                        counters["segments_received"] += 1
                        conn._notify()
                        conn.recharge()
                        self.poll_connection(conn, now)
                        self.schedule(conn)
                        return
                options = TcpOptions()
                options.ts_val = ts_val
                options.ts_ecr = ts_ecr
                seg = TcpSegment(sport, dport, seq, ack, flags, window, urgent, options, segment[32:])
            else:
                parsed = self._parse(segment)
                if parsed is None:
                    return
                seg = parsed
        else:
            parsed = self._parse(segment)
            if parsed is None:
                return
            seg = parsed
        counters["segments_received"] += 1
        if seg.flags & _SYN_CHECK == SYN:
            counters["syns_received"] += 1  # what the runtime's load shedding weighs (api/shedding.py)
        if seg.flags & RST:
            counters["resets_received"] += 1  # every RST, whatever becomes of it
        conn = self.connections.get((dst, seg.dport, src, seg.sport))
        if conn is not None:
            if conn.state == TIME_WAIT and seg.flags & SYN and not seg.flags & ACK and self._may_reuse(conn, seg):
                # RFC 6191 style: a new SYN beyond the old incarnation reopens the 4-tuple.
                conn._enter_closed()
                counters["time_wait_reused"] += 1
            else:
                conn.on_segment(seg, now)
                conn.recharge()
                self.poll_connection(conn, now)
                self.schedule(conn)
                return
        listener = self.listeners.get((dst, seg.dport)) or self.listeners.get((0, seg.dport))
        if listener is not None:
            self._listen_input(listener, src, dst, seg, now)
            return
        self._closed_input(src, dst, seg)

    def _parse(self, segment: memoryview) -> TcpSegment | None:
        try:
            return tcpwire.parse(segment)
        except ParseError as err:
            self.counters[err.reason.partition(".")[2]] += 1
            return None

    def _may_reuse(self, conn: TcpConnection, seg: TcpSegment) -> bool:
        if conn.ts_ok and seg.options.ts_val is not None:
            return ((seg.options.ts_val - conn.ts_recent) & 0xFFFFFFFF) < 0x80000000 and \
                seg.options.ts_val != conn.ts_recent
        return unwrap(seg.seq, conn.rcv_nxt) > conn.rcv_nxt

    def _closed_input(self, src: int, dst: int, seg: TcpSegment) -> None:
        """RFC 9293 3.10.7.1: CLOSED answers everything but a RST with a RST."""
        self.counters["closed_port"] += 1
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            self.send_reset(dst, src, seg.dport, seg.sport, seg.ack, 0, RST)
        else:
            self.send_reset(dst, src, seg.dport, seg.sport, 0, (seg.seq + seg.seg_len) & 0xFFFFFFFF, RST | ACK)

    def _listen_input(self, listener: TcpListener, src: int, dst: int, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.2."""
        flags = seg.flags
        if flags & RST:
            return
        if flags & ACK:
            if not flags & SYN and self.config.syn_cookies and self._cookie_ack(listener, src, dst, seg, now):
                return
            self.send_reset(dst, src, seg.dport, seg.sport, seg.ack, 0, RST)
            return
        if not flags & SYN:
            return
        if len(listener.accept_queue) >= listener.backlog:
            # The accept queue is full: drop the SYN and let the peer retry (as Linux does).
            listener.dropped_syns += 1
            self.counters["listen_overflows"] += 1
            return
        if len(listener.half_open) >= min(listener.backlog, self.config.syn_backlog):
            if self.config.syn_cookies:
                self._send_cookie(src, dst, seg, now)
            else:
                listener.dropped_syns += 1
                self.counters["listen_overflows"] += 1
            return
        local = (dst, seg.dport)
        remote = (src, seg.sport)
        conn = TcpConnection(self, local, remote, self._isn(local, remote, now), self.config, now,
                             self._mss_limit(src))
        conn.listener = listener  # type: ignore[assignment]
        if listener.rcvbuf is not None:
            conn.rcvbuf = listener.rcvbuf
        if listener.sndbuf is not None:
            conn.sndbuf = listener.sndbuf
        conn.ip_options = listener.ip_options
        listener.half_open.add(conn)
        self.connections[(dst, seg.dport, src, seg.sport)] = conn
        self.counters["passive_opens"] += 1
        conn.start_passive(seg, now)
        conn.recharge()
        self.schedule(conn)

    # ----------------------------------------------------------------- SYN cookies (RFC 4987)

    def _our_wscale(self) -> int:
        shift = 0
        while (self.config.rcvbuf >> shift) > 0xFFFF and shift < 14:
            shift += 1
        return shift

    def cookie_ts(self, now: float) -> int:
        return (int(now * 1000) + self.cookie_ts_offset) & 0xFFFFFFFF

    def _send_cookie(self, src: int, dst: int, seg: TcpSegment, now: float) -> None:
        """A stateless SYN-ACK whose ISN (and TS value) remember the connection's parameters."""
        opts = seg.options
        config = self.config
        peer_mss = min(opts.mss or 536, self._mss_limit(src))
        four = (dst, seg.dport, src, seg.sport)
        isn, _ = syncookies.make_isn(self._isn_key, four, seg.seq, peer_mss, now)
        ts = None
        wscale = sack = None
        if opts.ts_val is not None and config.timestamps:
            peer_ws = opts.wscale if config.window_scaling else None
            sack_ok = opts.sack_permitted and config.sack
            now_ts = self.cookie_ts(now)
            value = syncookies.encode_options(now_ts, peer_ws, sack_ok)
            if ((value - now_ts) & 0xFFFFFFFF) < 0x80000000 and value != now_ts:
                value = (value - 64) & 0xFFFFFFFF  # never ahead of our clock: the peer's PAWS would drop us
            ts = (value, opts.ts_val)
            wscale = self._our_wscale() if peer_ws is not None else None
            sack = sack_ok
        options = tcpwire.build_options(mss=self._mss_limit(src), wscale=wscale, sack_permitted=bool(sack), ts=ts)
        self.counters["syncookies_sent"] += 1
        self.counters["segments_sent"] += 1
        self.output(dst, src, tcpwire.build(dst, src, seg.dport, seg.sport, isn, (seg.seq + 1) & 0xFFFFFFFF,
                                            SYN | ACK, min(self.config.rcvbuf, 0xFFFF), options))

    def _cookie_ack(self, listener: TcpListener, src: int, dst: int, seg: TcpSegment, now: float) -> bool:
        """The third segment of a cookie handshake: rebuild the connection from the cookie."""
        if len(listener.accept_queue) >= listener.backlog:
            return False
        four = (dst, seg.dport, src, seg.sport)
        isn = (seg.ack - 1) & 0xFFFFFFFF
        peer_isn = (seg.seq - 1) & 0xFFFFFFFF
        mss = syncookies.check_isn(self._isn_key, four, peer_isn, isn, now)
        if mss is None:
            self.counters["syncookies_failed"] += 1
            return False
        wscale, sack = (None, False)
        if seg.options.ts_ecr is not None:
            wscale, sack = syncookies.decode_options(seg.options.ts_ecr)
        conn = TcpConnection(self, (dst, seg.dport), (src, seg.sport), isn, self.config, now, self._mss_limit(src))
        conn.ts_offset = self.cookie_ts_offset
        conn.listener = listener  # type: ignore[assignment]
        self.connections[four] = conn
        conn.establish_from_cookie(seg, peer_isn, mss, wscale, sack, now)
        self.counters["syncookies_accepted"] += 1
        self.established(conn)
        if len(seg.payload) or seg.flags & FIN:
            conn.on_segment(seg, now)
            conn.recharge()
        self.schedule(conn)
        return True

    def established(self, conn: TcpConnection) -> None:
        """A passive connection completed its handshake: move it to the accept queue."""
        listener = conn.listener
        if listener is None:
            return
        listener.half_open.discard(conn)  # type: ignore[attr-defined]
        listener.accept_queue.append(conn)  # type: ignore[attr-defined]
        listener.notify()  # type: ignore[attr-defined]
        # The peer answered our SYN-ACK, so its address is real, not spoofed: under a SYN flood
        # the runtime's kernel filter admits its SYNs unshed (api/shedding.py).
        peers = self.validated_peers
        peers[conn.remote_addr] = self.now
        peers.move_to_end(conn.remote_addr)
        while len(peers) > VALIDATED_PEERS_MAX:
            peers.popitem(last=False)

    def send_reset(self, src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int) -> None:
        self.counters["resets_sent"] += 1
        self.counters["segments_sent"] += 1
        header = segment_header(src, dst, sport, dport, seq, ack, flags, 0, b"", b"")
        if self.output_parts is not None:
            self.output_parts(src, dst, header, b"")
        else:
            self.output(src, dst, header)

    def transmit(self, conn: TcpConnection, seq: int, ack: int, flags: int, window: int, options: bytes,
                 payload: bytes | bytearray | memoryview) -> None:
        self.counters["segments_sent"] += 1
        ip = conn.ip_options  # per-socket IP_TTL/IP_TOS; {} (the common case) passes nothing
        if self.is_local(conn.remote_addr):
            self._transmit_local(conn, seq, ack, flags, window, options, payload, ip)
            return
        src, dst = conn.local_addr, conn.remote_addr
        parts = self.output_parts
        if len(payload) > conn.mss:  # a super-segment: the link segments it and completes checksums
            if parts is not None:
                # Only the header is packed here (checksum field: the folded pseudo-header sum,
                # CHECKSUM_PARTIAL); the payload is copied once, into the frame, by output_parts.
                header_len = tcpwire.HEADER_LEN + len(options)
                partial = 0xFFFF - finish(pseudo_header_sum(src, dst, tcpwire.PROTO, header_len + len(payload)))
                header = _pack_header(conn.local_port, conn.remote_port, seq, ack, header_len << 2, flags, window,
                                      partial, 0)
                parts(src, dst, header + options if options else header, payload, gso_size=conn.mss, **ip)
                return
            self.output(src, dst, tcpwire.build(src, dst, conn.local_port, conn.remote_port, seq, ack, flags, window,
                                                options, payload, partial_checksum=True), conn.mss, **ip)
            return
        header = segment_header(src, dst, conn.local_port, conn.remote_port, seq, ack, flags, window, options,
                                payload)
        if parts is not None:
            parts(src, dst, header, payload, **ip)
        else:
            self.output(src, dst, header + payload, **ip)

    def _transmit_local(self, conn: TcpConnection, seq: int, ack: int, flags: int, window: int, options: bytes,
                        payload: bytes | bytearray | memoryview, ip: dict[str, int]) -> None:
        """A segment to one of our own addresses: it never leaves memory, so it is built once, with
        room for the IPv4 header in front (one copy of the payload), and without its checksum: the
        field holds the pseudo-header sum alone, as Linux's loopback leaves it (CHECKSUM_PARTIAL;
        input on the loopback trusts it, CHECKSUM_UNNECESSARY). No capture or link sees the loopback."""
        header_len = tcpwire.HEADER_LEN + len(options)
        length = header_len + len(payload)
        packet = bytearray(_IP_HLEN + length)
        src, dst = conn.local_addr, conn.remote_addr
        partial = 0xFFFF - finish(pseudo_header_sum(src, dst, tcpwire.PROTO, length))
        _TCP_HEADER.pack_into(packet, _IP_HLEN, conn.local_port, conn.remote_port, seq, ack, (header_len // 4) << 4,
                              flags, window, partial, 0)
        if options:
            packet[_IP_HLEN + tcpwire.HEADER_LEN:_IP_HLEN + header_len] = options
        if payload:
            packet[_IP_HLEN + header_len:] = payload
        self.loopback_output(src, dst, packet, **ip)

    def icmp_error(self, src: int, dst: int, quoted: memoryview, icmp_type: int, code: int, next_hop_mtu: int,
                   now: float) -> None:
        """RFC 1122 4.2.3.9 / RFC 5927: hard errors abort connections still opening; soft ones are
        remembered; fragmentation needed lowers the MSS (RFC 1191)."""
        if len(quoted) < 8:
            return
        sport = int.from_bytes(quoted[0:2], "big")
        dport = int.from_bytes(quoted[2:4], "big")
        conn = self.connections.get((src, sport, dst, dport))
        if conn is None:
            return
        seq = unwrap(int.from_bytes(quoted[4:8], "big"), conn.snd_una)
        if not conn.snd_una <= seq < max(conn.snd_max, conn.snd_una + 1):
            self.counters["icmp_out_of_window"] += 1  # RFC 5927 4.1: must concern data in flight
            return
        self.counters["icmp_errors"] += 1
        if icmp_type == 3 and code == 4 and next_hop_mtu >= 68:
            # RFC 1191 6.4: the segment size follows the path MTU, less the options every
            # segment carries (timestamps: 12 bytes), as mss is counted.
            conn.mss_limit = min(conn.mss_limit, next_hop_mtu - 40)
            conn.mss = max(48, min(conn.mss, conn.mss_limit - (12 if conn.ts_ok else 0)))
            conn.cc.mss = conn.mss
            self.mark_dirty(conn)  # retransmit at the new size now, not at the next RTO
            return
        if icmp_type == 3 and code in (2, 3, 4) or conn.state == "SYN-SENT":
            code_errno = errno.ECONNREFUSED if code in (2, 3) else errno.EHOSTUNREACH
            if conn.state in ("SYN-SENT", SYN_RECEIVED):
                conn._fail(code_errno)
                self.poll_connection(conn, now)
                self.schedule(conn)

    # ----------------------------------------------------------------- timers and output

    def mark_dirty(self, conn: TcpConnection) -> None:
        self.dirty.add(conn)

    def poll_connection(self, conn: TcpConnection, now: float) -> None:
        """Output for *conn* right after a segment arrived; an ACK it owes "soon" (the ACK of a
        FIN) stays for the next poll, which sends it unless a segment of ours carried it first."""
        if conn in self.dirty:
            self.dirty.discard(conn)
            if conn.state != CLOSED:
                conn.output(now, True)
                if conn.ack_soon:
                    self.dirty.add(conn)

    def schedule(self, conn: TcpConnection) -> None:
        """Make sure the timer heap wakes *conn* no later than its next deadline. Called after
        everything that can move a connection's timers: a segment, a timer, output, a new
        connection (socket calls reach it through mark_dirty). A deadline that moved later
        leaves the old entry, which then wakes the connection early once, harmlessly."""
        deadline = conn.next_deadline()
        if deadline is None:
            return
        armed = conn.timer_at
        if armed is not None and armed <= deadline:
            return
        conn.timer_at = deadline
        timers = self._timers
        heapq.heappush(timers, (deadline, next(self._timer_tiebreak), conn))
        if len(timers) > 2 * len(self.connections) + 64:
            # Stale entries (deadlines that moved earlier several times) are dropped in one pass.
            timers[:] = [entry for entry in timers if entry[2].timer_at == entry[0]]
            heapq.heapify(timers)

    def poll(self, now: float) -> None:
        self.now = now
        timers = self._timers
        if timers and timers[0][0] <= now:
            due = []
            while timers and timers[0][0] <= now:
                entry_at, _, conn = heapq.heappop(timers)
                if conn.timer_at == entry_at:  # else a stale entry: a newer one exists, or none
                    conn.timer_at = None
                    due.append(conn)
            for conn in due:
                if conn.state == CLOSED:
                    continue
                deadline = conn.next_deadline()
                if deadline is not None and deadline <= now:
                    conn.on_timer(now)
                self.schedule(conn)
        dirty = self.dirty
        while dirty:
            conn = dirty.pop()
            if conn.state != CLOSED:
                conn.output(now)
                self.schedule(conn)

    def next_deadline(self) -> float | None:
        if self.dirty:
            return self.now
        timers = self._timers
        while timers and timers[0][2].timer_at != timers[0][0]:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def check_invariants(self) -> None:
        """Test aid: no state change left RFC 9293's diagram, and every connection with a
        deadline has a timer-heap entry no later than it."""
        assert not self.counters["illegal_transition"]
        for conn in self.connections.values():
            deadline = conn.next_deadline()
            if deadline is not None and conn.state != CLOSED:
                assert conn.timer_at is not None and conn.timer_at <= deadline, (conn, conn.timer_at, deadline)

    def address_removed(self, addr: int) -> None:
        """An address of the host went away (DHCP expiry, `ip addr del`): its connections fail
        with EADDRNOTAVAIL at once rather than retransmitting into the void."""
        for conn in [c for c in self.connections.values() if c.local_addr == addr]:
            conn._fail(errno.EADDRNOTAVAIL)

    def forget(self, conn: TcpConnection) -> None:
        key = (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        self.dirty.discard(conn)
        self.memory.waiters.discard(conn)
        conn.release_memory()
        conn.timer_at = None  # its heap entries go stale
        listener = conn.listener
        if listener is not None:
            listener.half_open.discard(conn)  # type: ignore[attr-defined]

    @property
    def mem_used(self) -> int:
        """Buffer bytes charged by every connection (the memory pool's count)."""
        return self.memory.used

    # ----------------------------------------------------------------- the socket layer's side

    def _mss_limit(self, remote: int) -> int:
        return self.mtu_for(remote) - 40

    def _tuple_hash(self, local: tuple[int, int], remote: tuple[int, int]) -> tuple[int, int]:
        """F(4-tuple, secret) of RFC 6528 and the TS offset, from one keyed hash of the 4-tuple:
        its first 4 bytes feed the ISN, the last 4 are the offset (both secret, per 4-tuple)."""
        h = self._tuple_hasher.copy()  # keyed once: a copy is cheaper than a new keyed hasher
        h.update(b"%d %d %d %d" % (local[0], local[1], remote[0], remote[1]))
        digest = h.digest()
        return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:], "big")

    def _isn(self, local: tuple[int, int], remote: tuple[int, int], now: float) -> int:
        """RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock. The same hash gives the
        connection's TS offset, kept for the ts_offset() its construction asks for next."""
        f, ts = self._tuple_hash(local, remote)
        self._ts_memo = (local, remote, ts)
        return (int(now * 250_000) + f) & 0xFFFFFFFF

    def ts_offset(self, local: tuple[int, int], remote: tuple[int, int]) -> int:
        """The TS clock offset of a connection: random per 4-tuple but the same for every incarnation
        of it (RFC 7323 5.4, Linux's secure_tcp_ts_off), so a new connection's timestamps are newer
        than the old one's and a peer in TIME-WAIT accepts its SYN (RFC 6191)."""
        memo = self._ts_memo
        if memo is not None and memo[0] == local and memo[1] == remote:
            return memo[2]
        return self._tuple_hash(local, remote)[1]

    def port_in_use(self, addr: int, port: int) -> bool:
        if port in self.bound:
            return True
        if (addr, port) in self.listeners or (0, port) in self.listeners:
            return True
        return any(k[1] == port and (addr == 0 or k[0] == addr or k[0] == 0) and c.state != TIME_WAIT
                   for k, c in self.connections.items())

    def ephemeral_port(self, local_addr: int, remote: tuple[int, int] | None = None) -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            if port in self.bound or (0, port) in self.listeners or (local_addr, port) in self.listeners:
                continue
            if remote is not None:
                if (local_addr, port, remote[0], remote[1]) not in self.connections:
                    return port
            elif not self.port_in_use(local_addr, port):
                return port
        raise os_error(errno.EADDRNOTAVAIL)

    def listen(self, addr: int, port: int, backlog: int) -> TcpListener:
        if (addr, port) in self.listeners or (0, port) in self.listeners or (addr == 0 and any(
                p == port for _, p in self.listeners)):
            raise os_error(errno.EADDRINUSE)
        listener = TcpListener(self, addr, port, backlog)
        self.listeners[(addr, port)] = listener
        return listener

    def connect(self, local_addr: int, local_port: int, remote_addr: int, remote_port: int, now: float,
                ip_options: dict[str, int] | None = None) -> TcpConnection:
        if local_port == 0:
            local_port = self.ephemeral_port(local_addr, (remote_addr, remote_port))
        key = (local_addr, local_port, remote_addr, remote_port)
        existing = self.connections.get(key)
        if existing is not None:
            if existing.state != TIME_WAIT:
                raise os_error(errno.EADDRINUSE)
            existing._enter_closed()
        self.now = now
        conn = TcpConnection(self, (local_addr, local_port), (remote_addr, remote_port),
                             self._isn((local_addr, local_port), (remote_addr, remote_port), now), self.config, now,
                             self._mss_limit(remote_addr))
        self.connections[key] = conn
        self.counters["active_opens"] += 1
        if ip_options:
            conn.ip_options = ip_options  # the socket's IP_TTL/IP_TOS, for the SYN already
        conn.start_active(now)
        self.schedule(conn)
        return conn


__all__ = ["TcpLayer", "TcpListener", "TcpConnection", "ACK", "FIN", "RST", "SYN"]
