"""One TCP connection: the RFC 9293 state machine, send path, retransmission and timers.

Sans-IO: segments arrive through :meth:`TcpConnection.on_segment`, go out through the layer's
output function, and time is always passed in. Sequence numbers are absolute integers inside
(see :mod:`usernet.tcp.seq`).
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from usernet.errors import os_error
from usernet.tcp import congestion
from usernet.tcp.buffer import StreamBuffer
from usernet.tcp.config import TcpConfig
from usernet.tcp.reassembly import OutOfOrder
from usernet.tcp.seq import unwrap, wire
from usernet.wire import ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment

if TYPE_CHECKING:
    from usernet.tcp.context import TcpContext

log = logging.getLogger("usernet.tcp")

CLOSED = "CLOSED"
LISTEN = "LISTEN"
SYN_SENT = "SYN-SENT"
SYN_RECEIVED = "SYN-RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN-WAIT-1"
FIN_WAIT_2 = "FIN-WAIT-2"
CLOSE_WAIT = "CLOSE-WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST-ACK"
TIME_WAIT = "TIME-WAIT"

# RFC 9293 3.3.2, figure 5, as pairs (from, to); every change of state goes through
# TcpConnection._set_state, which counts any other pair as a bug ("illegal_transition").
# Beyond the figure, from the text: any state may go to CLOSED (RST, abort, timeout: 3.10.7,
# 3.10.8); a FIN in SYN-RECEIVED enters CLOSE-WAIT, and FIN-WAIT-1 enters TIME-WAIT when a FIN
# and the ACK of ours arrive together (3.10.7.4, eighth step); a connection rebuilt from a SYN
# cookie goes from CLOSED straight to ESTABLISHED (RFC 4987 3.3: its SYN-RECEIVED was never stored).
LEGAL_TRANSITIONS = frozenset({
    (CLOSED, SYN_SENT), (CLOSED, SYN_RECEIVED), (CLOSED, ESTABLISHED),
    (SYN_SENT, SYN_RECEIVED), (SYN_SENT, ESTABLISHED),
    (SYN_RECEIVED, ESTABLISHED), (SYN_RECEIVED, FIN_WAIT_1), (SYN_RECEIVED, CLOSE_WAIT),
    (ESTABLISHED, FIN_WAIT_1), (ESTABLISHED, CLOSE_WAIT),
    (FIN_WAIT_1, FIN_WAIT_2), (FIN_WAIT_1, CLOSING), (FIN_WAIT_1, TIME_WAIT),
    (FIN_WAIT_2, TIME_WAIT), (CLOSING, TIME_WAIT), (CLOSE_WAIT, LAST_ACK),
} | {(state, CLOSED) for state in (SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT,
                                    CLOSING, LAST_ACK, TIME_WAIT)})

SYNCHRONIZED = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT))
# States in which we may still send data
_CAN_SEND = frozenset((ESTABLISHED, CLOSE_WAIT))
# States in which the peer's data is still accepted (RFC 9293 3.10.7.4, seventh step)
_CAN_RECEIVE = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2))

MAX_WSCALE = 14  # RFC 7323 2.3
# Quick-ACK mode (Linux): a new connection ACKs its first in-order data segments at once, as does
# one whose data resumes after an idle period, so the peer's slow start is not held back by
# delayed ACKs. Linux TCP_MAX_QUICKACKS.
MAX_QUICKACKS = 16
# Stretch ACKs (_predicted_data): in-order data left unacknowledged until the next poll is ACKed
# at once when it reaches this many full-sized segments (Linux's GRO merges up to 64 KB, ~45).
STRETCH_ACK_SEGMENTS = 64
DEFAULT_MSS = 536  # RFC 9293 3.7.1 when the peer sends no MSS option
# Header prediction: of these flags a predicted segment has ACK alone (PSH may be set).
_PREDICT_FLAGS = 0xFF & ~PSH
_pack_ts = struct.Struct("!III").pack  # NOP, NOP, kind 8, length 10 as one word; TSval; TSecr
_TS_LEAD = (tcpwire.OPT_NOP << 24) | (tcpwire.OPT_NOP << 16) | (tcpwire.OPT_TIMESTAMP << 8) | 10


def _subtract(pieces: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The ranges *pieces* without [lo, hi)."""
    out = []
    for start, end in pieces:
        if end <= lo or start >= hi:
            out.append((start, end))
            continue
        if start < lo:
            out.append((start, lo))
        if hi < end:
            out.append((hi, end))
    return out


class TcpConnection:
    """A connection's control block (RFC 9293 3.3.1) and its handle for the socket layer."""

    # Slots, not an instance dict: ~100 fields would overflow 3.11's shared-key dicts, making
    # construction (twice per connection) and every field access on the segment path slower.
    __slots__ = (
        "accepted", "ack_now", "ack_soon", "autocork", "buf_seq", "cc", "config", "corked", "created",
        "delack_deadline",
        "dsack", "dsack_dups", "dsacks_sent", "dupacks", "eof", "error", "fin_queued", "in_recovery", "ip_options",
        "irs", "iss", "keepalive", "keepalive_count", "keepalive_idle", "keepalive_interval", "keepalive_probes",
        "last_ack_sent", "last_data_at", "last_heard", "last_oow_ack_at", "layer", "linger", "listener",
        "local_addr", "local_port", "max_snd_wnd", "mem_charged", "mem_released", "mss", "mss_limit", "nodelay",
        "on_event", "ooo", "peer_fin_seq", "persist_backoff", "persist_deadline", "progress_at", "quick_acks",
        "rcv_adv", "rcv_buf", "rcv_mss", "rcv_nomem", "rcv_nxt", "rcv_wscale", "rcvbuf", "recover", "remote_addr",
        "remote_port", "retransmits", "rexmit_next", "rto", "rtt_sent", "rtt_seq", "rttvar", "rtx_deadline",
        "sack_acks", "sack_ok", "sacked", "send_buf", "snd_max", "snd_nxt", "snd_una", "snd_wl1", "snd_wl2",
        "snd_wnd", "snd_wscale", "sndbuf", "srtt", "state", "syn_fin", "syn_text", "timer_at", "timewait_deadline",
        "total_retransmits", "ts_offset", "ts_ok", "ts_recent", "ts_recent_at", "una_rexmit_at", "unacked_bytes",
        "undo_cwnd", "undo_end", "undo_possible", "undo_ranges", "undo_ssthresh", "user_closed", "user_timeout",
        "ws_ok",
        "__weakref__",
    )

    def __init__(self, layer: TcpContext, local: tuple[int, int], remote: tuple[int, int], iss: int,
                 config: TcpConfig, now: float, mss_limit: int) -> None:
        self.layer = layer
        self.config = config
        self.local_addr, self.local_port = local
        self.remote_addr, self.remote_port = remote
        self.state = CLOSED
        self.on_event: Callable[[], None] | None = None
        self.listener = None  # the TcpListener that spawned us (passive open), until accepted
        # Send sequence space (absolute)
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.send_buf = bytearray()
        self.buf_seq = iss + 1            # absolute seq of send_buf[0]
        self.fin_queued = False           # no more data from the user: FIN goes at buf_seq+len
        # Receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0                  # right edge of the window we advertised
        self.rcv_buf = StreamBuffer()     # in-order data not yet read (keeps its storage across reads)
        self.ooo = OutOfOrder(config.max_ooo_segments)
        self.peer_fin_seq: int | None = None
        self.syn_text = b""               # data that came on the peer's SYN, delivered once ESTABLISHED
        self.syn_fin = False              # ... and a FIN with it
        self.dsack: tuple[int, int] | None = None  # a duplicate to report in the next ACK (RFC 2883)
        self.eof = False                  # the peer's FIN has been consumed in order
        # Options
        self.mss_limit = mss_limit        # from our route MTU
        self.mss = min(DEFAULT_MSS, mss_limit)
        self.rcv_wscale = 0
        self.snd_wscale = 0
        self.ws_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_at = 0.0
        self.ts_offset = layer.ts_offset(local, remote)
        self.sack_ok = False
        self.last_ack_sent = 0
        self.sacked: list[tuple[int, int]] = []   # peer's SACK blocks above snd_una (RFC 6675 scoreboard)
        # Timers and estimators (RFC 6298)
        self.rto = config.rto_initial
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rtx_deadline: float | None = None
        self.timer_at: float | None = None  # the layer's timer-heap entry for this connection
        self.retransmits = 0              # consecutive RTO expiries
        self.total_retransmits = 0
        # per connection, for `usernet ss -i` (the layer's counters are host-wide)
        self.sack_acks = 0                # ACKs received with SACK blocks
        self.dsack_dups = 0               # D-SACKs received (Linux tcpi_dsack_dups)
        self.dsacks_sent = 0
        self.rtt_seq: int | None = None   # Karn: time one segment when timestamps are off
        self.rtt_sent = 0.0
        self.delack_deadline: float | None = None
        self.ack_now = False
        # An ACK due at the layer's next poll rather than at once (the ACK of a FIN, a quick ACK):
        # the runtime polls at the end of the pass, after its services answered, so the reply
        # (an echo, our FIN) can carry it; those would have left with the pass's flush anyway.
        self.ack_soon = False
        self.unacked_bytes = 0          # received since our last ACK
        self.rcv_mss = 0                # estimate of the peer's segment size (Linux's rcv_mss)
        self.quick_acks = MAX_QUICKACKS  # quick-ACK budget (see MAX_QUICKACKS)
        self.last_data_at: float | None = None  # when in-order data last arrived (Linux's lrcvtime)
        self.persist_deadline: float | None = None
        self.persist_backoff = 0
        self.timewait_deadline: float | None = None
        self.keepalive = False
        self.keepalive_idle = config.keepalive_idle
        self.keepalive_interval = config.keepalive_interval
        self.keepalive_count = config.keepalive_count
        self.keepalive_probes = 0
        self.last_heard = now
        self.user_timeout = 0.0
        self.progress_at = now
        # Recovery (RFC 5681/6582/6675)
        self.cc = congestion.make(config.congestion, self.mss, config.initial_window_segments)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss
        self.rexmit_next = 0
        self.una_rexmit_at: float | None = None  # when the first hole was last retransmitted
        # Undo of a spurious congestion response (RFC 3708 idea, as Linux's undo_marker/undo_retrans):
        # the ranges retransmitted in the current recovery episode not yet reported by D-SACK.
        self.undo_ranges: list[tuple[int, int]] | None = None  # None: no episode to undo
        self.undo_cwnd = 0
        self.undo_ssthresh = 0
        self.undo_end = 0                 # SND.MAX when the episode began or was extended
        self.undo_possible = False        # something was retransmitted, all of it D-SACK-able
        # User-facing state
        self.nodelay = False
        # Loopback autocorking (the socket layer sets autocork around its own flush): a sub-MSS
        # tail behind segments sent in that flush waits for the application's next write; corked
        # says one did.
        self.autocork: int | None = None  # SND.NXT when the socket layer's flush began
        self.corked = False
        self.sndbuf = config.sndbuf
        self.rcvbuf = config.rcvbuf
        self.linger: tuple[bool, int] = (False, 0)
        self.ip_options: dict[str, int] = {}  # IP_TTL/IP_TOS as output keyword arguments ({}: defaults)
        self.error: OSError | None = None
        self.user_closed = False          # close() called: the socket is gone, data still drains
        self.accepted = False
        self.created = now
        self.last_oow_ack_at: float | None = None  # Linux tp->last_oow_ack_time (see _oow_rate_limited)
        self.mem_charged = 0              # buffer bytes charged to the memory pool for us
        self.mem_released = False         # forgotten by the layer: nothing is charged any more
        self.rcv_nomem = False            # data was dropped for lack of memory: advertise a zero window

    # ================================================================= handle API (socket layer)

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.local_port}->{self.remote_port} {self.state} una={self.snd_una - self.iss} "
                f"nxt={self.snd_nxt - self.iss}>")

    @property
    def readable(self) -> bool:
        return bool(self.rcv_buf) or self.eof or self.error is not None or self.state == CLOSED

    @property
    def send_space(self) -> int:
        """What send() would take now: SO_SNDBUF's room, within the host's buffer memory."""
        space = self.sndbuf - self._send_live()
        if space <= 0:
            return 0
        return min(space, self.layer.memory.room(self.mem_charged))

    def _send_live(self) -> int:
        """Bytes of send_buf not yet acknowledged: SO_SNDBUF bounds these (an acknowledged
        prefix, less than half of send_buf, may wait for its cut: _process_ack)."""
        buf_end = self.buf_seq + len(self.send_buf)
        return buf_end - max(min(self.snd_una, buf_end), self.buf_seq)

    # ----------------------------------------------------------------- buffer memory accounting

    def _mem_held(self) -> int:
        return len(self.send_buf) + len(self.rcv_buf) + self.ooo.bytes + len(self.syn_text)

    def recharge(self) -> None:
        """Bring layer.mem_used up to date with what our buffers hold (after a segment, a
        send, a read): the host-wide bound of `TcpConfig.mem_limit`."""
        if self.mem_released:
            return
        held = len(self.send_buf) + len(self.rcv_buf) + self.ooo.bytes + len(self.syn_text)  # _mem_held
        delta = held - self.mem_charged
        if delta:
            self.mem_charged = held
            self.layer.memory.changed(delta)

    def release_memory(self) -> None:
        """The layer forgets us (closed): our buffers no longer count against the host's."""
        if not self.mem_released:
            self.mem_released = True
            charged, self.mem_charged = self.mem_charged, 0
            if charged:
                self.layer.memory.changed(-charged)

    @property
    def writable(self) -> bool:
        if self.error is not None or self.fin_queued:
            return True  # a write will fail at once: select must say so
        if self.state in (SYN_SENT, SYN_RECEIVED):
            return False
        return self.send_space > 0

    @property
    def connected(self) -> bool:
        return self.state in SYNCHRONIZED or (self.state == CLOSED and self.rcv_nxt != 0)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data; returns how much was accepted (0 when the buffer is full)."""
        if self.error is not None:
            raise self.error
        if self.fin_queued or self.state not in (_CAN_SEND | {SYN_SENT, SYN_RECEIVED}):
            raise os_error(errno.EPIPE)
        room = self.send_space
        if room < min(len(data), self.sndbuf - self._send_live()):
            # Held back by host memory, not by SO_SNDBUF: wake us when memory frees (Linux
            # sk_stream_wait_memory), the send returns what fitted, perhaps nothing.
            self.layer.memory.waiters.add(self)
            self.layer.counters["send_mem_limited"] += 1
        if room <= 0:
            return 0
        view = memoryview(data)
        taken = view[:room]
        self.send_buf += taken
        self.recharge()
        self.layer.mark_dirty(self)
        return len(taken)

    def recv(self, maximum: int) -> bytes | None:
        """In-order data (b"" at end of stream), or None when none is available yet."""
        if self.rcv_buf:
            data = self.rcv_buf.take(maximum)  # one copy; the storage stays for the next segments
            self.recharge()
            self._window_opened()
            return data
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.eof or self.state == CLOSED:
            return b""
        return None

    def peek(self, maximum: int) -> bytes:
        return bytes(self.rcv_buf[:maximum])

    def shutdown_write(self) -> None:
        """SHUT_WR: a FIN follows the queued data (RFC 9293 3.10.4)."""
        if self.fin_queued:
            return
        if self.state in (SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT):
            self.fin_queued = True
            self.layer.mark_dirty(self)
            self._notify()

    def close(self) -> None:
        """close(): graceful unless SO_LINGER with 0 timeout or unread data (RFC 9293 3.10.4,
        RFC 2525 2.17: closing with unread data resets)."""
        self.user_closed = True
        if self.state == CLOSED:
            self.layer.forget(self)
            return
        if self.linger == (True, 0) or self.rcv_buf:
            self.abort()
            return
        if self.state == SYN_SENT:
            self._enter_closed()
            return
        self.shutdown_write()

    def abort(self) -> None:
        """Send RST and forget the connection (RFC 9293 3.10.5)."""
        if self.state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.layer.counters["resets_sent"] += 1
            self._emit(self.snd_max, RST | ACK, b"")
        self.send_buf.clear()
        self.recharge()
        self.user_closed = True
        self._enter_closed()

    def info(self) -> dict[str, object]:
        """A tcp_info-like snapshot."""
        return {"state": self.state, "snd_cwnd": self.cc.cwnd // max(1, self.mss), "snd_ssthresh":
                self.cc.ssthresh // max(1, self.mss), "rto": self.rto, "rtt": self.srtt, "rttvar": self.rttvar,
                "snd_mss": self.mss, "rcv_wscale": self.rcv_wscale, "snd_wscale": self.snd_wscale,
                "retransmits": self.retransmits, "total_retrans": self.total_retransmits,
                "unacked": self.snd_max - self.snd_una, "sacked": sum(e - s for s, e in self.sacked),
                "timestamps": self.ts_ok, "sack": self.sack_ok, "congestion": self.cc.name}

    @property
    def name(self) -> str:
        """``10.0.0.1:40000>10.0.0.2:80``, as the logs name a connection."""
        return (f"{ipv4.ntoa(self.local_addr)}:{self.local_port}>"
                f"{ipv4.ntoa(self.remote_addr)}:{self.remote_port}")

    def _set_state(self, new: str) -> None:
        """The one place the state changes: checked against RFC 9293's diagram and logged."""
        old = self.state
        if old == new:
            return
        self.state = new
        if (old, new) not in LEGAL_TRANSITIONS:
            self.layer.counters["illegal_transition"] += 1
            log.error("%s: illegal state transition %s -> %s", self.name, old, new)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s", self.name, old, new)

    # ================================================================= opening

    def start_active(self, now: float) -> None:
        """connect(): send SYN (RFC 9293 3.10.1)."""
        self._set_state(SYN_SENT)
        self.rcv_wscale = self._choose_wscale()
        self.snd_nxt = self.iss
        self._send_syn(now, ack=False)

    def start_passive(self, syn: TcpSegment, now: float) -> None:
        """A SYN arrived on a listener (RFC 9293 3.10.7.2): answer SYN-ACK."""
        self._set_state(SYN_RECEIVED)
        self.irs = syn.seq
        self.rcv_nxt = self.irs + 1
        self._take_syn_options(syn, now)
        self.snd_wnd = syn.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1, self.snd_wl2 = self.irs, self.iss
        self._queue_syn_text(syn)
        self._send_syn(now, ack=True)

    def _queue_syn_text(self, syn: TcpSegment) -> None:
        """RFC 9293 3.10.7.2: text (and a FIN) on a SYN "should be queued for processing later":
        kept, within the window the SYN-ACK offers, and delivered once ESTABLISHED."""
        if syn.payload:
            self.syn_text = bytes(syn.payload[:min(self.rcvbuf, 0xFFFF, self.layer.memory.room(0))])
            self.syn_fin = bool(syn.flags & FIN) and len(self.syn_text) == len(syn.payload)
        elif syn.flags & FIN:
            self.syn_fin = True

    def _deliver_syn_text(self, now: float) -> None:
        """The queued SYN text, processed as the segment text of the step that made us ESTABLISHED."""
        text, self.syn_text = self.syn_text, b""
        if text:
            self._receive_data(self.irs + 1, memoryview(text), now)
        if self.syn_fin:
            self.syn_fin = False
            if self.peer_fin_seq is None:
                self.peer_fin_seq = self.irs + 1 + len(text)
                self.ack_now = True
                self.layer.mark_dirty(self)

    def establish_from_cookie(self, ack: TcpSegment, peer_isn: int, mss: int, peer_wscale: int | None,
                              sack: bool, now: float) -> None:
        """Become ESTABLISHED from a validated SYN cookie (the SYN itself was never stored)."""
        self.irs = peer_isn
        self.rcv_nxt = peer_isn + 1
        self.snd_una = self.snd_nxt = self.snd_max = self.iss + 1
        self.ts_ok = ack.options.ts_val is not None and self.config.timestamps
        self.mss = max(64, min(mss, self.mss_limit) - (12 if self.ts_ok else 0))
        self.ws_ok = peer_wscale is not None and self.ts_ok and self.config.window_scaling
        self.snd_wscale = min(peer_wscale or 0, MAX_WSCALE) if self.ws_ok else 0
        self.rcv_wscale = self._choose_wscale() if self.ws_ok else 0
        self.sack_ok = sack and self.ts_ok and self.config.sack
        if self.ts_ok:
            self.ts_recent = ack.options.ts_val or 0
            self.ts_recent_at = now
        self.cc.mss = self.mss
        self.cc.cwnd = min(self.config.initial_window_segments * self.mss, max(2 * self.mss, 14600))
        self.snd_wnd = self.max_snd_wnd = ack.window << self.snd_wscale
        self.snd_wl1, self.snd_wl2 = self.rcv_nxt, self.snd_una
        self.rcv_adv = self.rcv_nxt + min(self.rcvbuf, 0xFFFF)  # what the cookie SYN-ACK offered
        self.last_ack_sent = self.rcv_nxt
        self.last_heard = now
        self._set_state(ESTABLISHED)

    def _choose_wscale(self) -> int:
        if not self.config.window_scaling:
            return 0
        shift = 0
        while (self.rcvbuf >> shift) > 0xFFFF and shift < MAX_WSCALE:
            shift += 1
        return shift

    def _take_syn_options(self, syn: TcpSegment, now: float) -> None:
        opts = syn.options
        self.mss = max(64, min(opts.mss if opts.mss else DEFAULT_MSS, self.mss_limit))
        self.cc.mss = self.mss
        self.cc.cwnd = min(self.config.initial_window_segments * self.mss, max(2 * self.mss, 14600))
        self.ws_ok = opts.wscale is not None and self.config.window_scaling
        if self.ws_ok:
            self.snd_wscale = min(opts.wscale or 0, MAX_WSCALE)
            if self.state == SYN_RECEIVED:
                self.rcv_wscale = self._choose_wscale()
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.ts_ok = opts.ts_val is not None and self.config.timestamps
        if self.ts_ok:
            self.ts_recent = opts.ts_val or 0
            self.ts_recent_at = now
            # The MSS option excludes TCP options (RFC 9293 3.7.1): leave room for timestamps.
            self.mss -= 12
            self.cc.mss = self.mss
        self.sack_ok = opts.sack_permitted and self.config.sack

    def _send_syn(self, now: float, ack: bool) -> None:
        config = self.config
        if ack:
            # Offer only what the peer offered (RFC 7323 1.3, RFC 2018 2).
            options = tcpwire.build_options(
                mss=self.mss_limit, wscale=self.rcv_wscale if self.ws_ok else None,
                sack_permitted=self.sack_ok, ts=(self._ts_now(now), self.ts_recent) if self.ts_ok else None)
        else:
            options = tcpwire.build_options(
                mss=self.mss_limit, wscale=self.rcv_wscale if config.window_scaling else None,
                sack_permitted=config.sack, ts=(self._ts_now(now), 0) if config.timestamps else None)
        window = min(self.rcvbuf, 0xFFFF)
        self.rcv_adv = self.rcv_nxt + window
        if ack:
            self.last_ack_sent = self.rcv_nxt  # RFC 7323 4.3 needs it for the ACK that completes the handshake
        self.layer.transmit(self, wire(self.iss), wire(self.rcv_nxt) if ack else 0, SYN | (ACK if ack else 0),
                            window, options, b"")
        self.snd_nxt = self.snd_max = self.iss + 1
        if self.rtx_deadline is None:
            self.rtx_deadline = now + self.rto
        if self.retransmits == 0:
            self.rtt_seq, self.rtt_sent = self.iss, now

    # ================================================================= segment arrival

    def on_segment(self, seg: TcpSegment, now: float) -> None:
        state = self.state
        if state == ESTABLISHED and seg.flags & _PREDICT_FLAGS == ACK and \
                self._predicted_data(seg.seq, seg.ack, seg.window, seg.options.ts_val, seg.options.sack_blocks,
                                seg.payload, now):
            pass
        elif state == SYN_SENT:
            self._arrive_syn_sent(seg, now)
        else:
            self._arrive_synchronized(seg, now)
        self._notify()

    def _predicted_data(self, seg_seq: int, seg_ack: int, seg_window: int, ts_val: int | None,
                        sack_blocks: list[tuple[int, int]] | None, data: memoryview, now: float) -> bool:
        """Header prediction (RFC 9293 3.10.7.4's steps for the common case; Van Jacobson's
        "fast path", as in 4.4BSD tcp_input and Linux tcp_rcv_established): in ESTABLISHED, a
        segment with ACK (and perhaps PSH) alone, carrying data at exactly RCV.NXT that fits the
        window, acknowledging nothing new (SEG.ACK = SND.UNA), the window unchanged, a timestamp
        no older than TS.Recent, no SACK blocks, while nothing is out of order or pending (no
        FIN seen, no D-SACK to report, no persist timer, memory available). Every general check
        then passes trivially, so only what the general path would change is done here, with
        the same effects. Returns False, having changed nothing, for any other segment.

        The caller has checked the flags (ACK, perhaps PSH, nothing else: _PREDICT_FLAGS) and
        passes the wire fields, so the layer's fast path needs no TcpSegment."""
        size = len(data)
        seq = self.rcv_nxt
        if not size or seg_seq != seq & 0xFFFFFFFF or seg_ack != self.snd_una & 0xFFFFFFFF:
            return False
        if seg_window << self.snd_wscale != self.snd_wnd or seq + size > self.rcv_adv:
            return False
        if self.ooo.pieces or self.peer_fin_seq is not None or self.dsack is not None or self.rcv_nomem \
                or self.persist_deadline is not None or self.syn_text:
            return False
        # The window update of the fifth step applies (and only moves WL1/WL2, the window being
        # the same) unless an earlier segment set WL1 beyond RCV.NXT: then the general path.
        wl1 = self.snd_wl1
        ack = self.snd_una
        if not (wl1 < seq or (wl1 == seq and self.snd_wl2 <= ack)):
            return False
        if sack_blocks:
            return False
        ts_ok = self.ts_ok
        if ts_ok:
            # RFC 7323 5.3 PAWS: a timestamp older than TS.Recent goes the general way (rejected).
            if ts_val is None or ((ts_val - self.ts_recent) & 0xFFFFFFFF) >= 0x80000000:
                return False
        layer = self.layer
        memory = layer.memory
        if not self.mem_released and memory.used + len(self.send_buf) + len(self.rcv_buf) - self.mem_charged \
                + size > memory.config.mem_limit:
            return False  # the host's buffer memory is exhausted: the general path drops it
        self.last_heard = now
        self.keepalive_probes = 0
        if ts_ok and ts_val is not None and seq <= self.last_ack_sent < seq + size:
            self.ts_recent, self.ts_recent_at = ts_val, now  # RFC 7323 4.3
        self.snd_wl1, self.snd_wl2 = seq, ack
        # Seventh step, in order: what _receive_data does for such a segment.
        self.rcv_buf += data
        self.rcv_nxt = seq + size
        counters = layer.counters
        counters["bytes_received"] += size
        last = self.last_data_at
        if last is not None and now - last > self.rto:
            self.quick_acks = MAX_QUICKACKS
        self.last_data_at = now
        self.unacked_bytes += size
        rcv_mss = self.rcv_mss or self.mss
        mss_limit = self.mss_limit
        self.rcv_mss = rcv_mss = max(rcv_mss, size if size < mss_limit else mss_limit)
        counters["predicted_data"] += 1
        if self.quick_acks > 0:
            self.quick_acks -= 1
            counters["quick_acks"] += 1
            self.ack_soon = True  # at the pass's end, so a reply made in the pass carries it
            layer.mark_dirty(self)
            return True
        unacked = self.unacked_bytes
        if unacked > rcv_mss:
            # RFC 5681 4.2 asks for an ACK at least every second full-sized segment. A stretch ACK
            # instead (deviation, see docs/performance.md "Bulk receive"): the ACK is due *now*
            # but left to the layer's next poll, which the runtime runs once at the end of each
            # pass, after every frame the pass read; the ACKs it would have sent in between leave
            # the host at that same moment anyway (the outbox is transmitted at the pass's end),
            # so one ACK carries what they would have. Bounded: at STRETCH_ACK_SEGMENTS segments'
            # worth (or a quarter of our buffer) it goes at once. Quick ACKs, out-of-order data,
            # holes filled and duplicates take the immediate paths, as before.
            if unacked >= min(rcv_mss * STRETCH_ACK_SEGMENTS, self.rcvbuf >> 2):
                self.ack_now = True
                layer.mark_dirty(self)
                return True
            deadline = self.delack_deadline
            if deadline is None or deadline > now:
                self.delack_deadline = now  # the layer's timer heap wakes it at its next poll
        elif self.delack_deadline is None:
            self.delack_deadline = now + self.config.delayed_ack
        # Not marked dirty: a predicted segment acknowledges nothing and leaves the send window as
        # it was, so nothing but the ACK question can have changed, and the deadline answers it.
        return True

    def _arrive_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = seg.flags
        ack = unwrap(seg.ack, self.snd_nxt)
        if flags & ACK and (ack <= self.iss or ack > self.snd_nxt):
            if not flags & RST:
                self.layer.send_reset(self.local_addr, self.remote_addr, self.local_port, self.remote_port,
                                      seg.ack, 0, RST)
            return
        if flags & RST:
            if flags & ACK:
                self._fail(errno.ECONNREFUSED)
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = self.irs + 1
        self._take_syn_options(seg, now)
        self.last_heard = now
        if flags & ACK:
            self._ack_syn(ack, now)
            self.snd_wnd = seg.window  # RFC 7323 2.2: the window in a SYN is never scaled
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            self.rcv_adv = self.rcv_nxt + min(self.rcvbuf, 0xFFFF)  # what our SYN offered
            self._set_state(ESTABLISHED)
            self.layer.counters["active_opens_established"] += 1
            self.ack_now = True
            self.layer.mark_dirty(self)
            # RFC 9293 3.10.7.3: other text or controls on the SYN-ACK are processed from the
            # sixth step on, as in ESTABLISHED.
            self._queue_syn_text(seg)
            self._deliver_syn_text(now)
            self._maybe_consume_fin(now)
        else:
            # Simultaneous open (RFC 9293 3.5, figure 8).
            self._set_state(SYN_RECEIVED)
            self.snd_wnd = seg.window
            self.retransmits = 0
            self._queue_syn_text(seg)
            self._send_syn(now, ack=True)

    def _ack_syn(self, ack: int, now: float) -> None:
        self.snd_una = ack
        self._sample_rtt(now, None, ack)
        self.rtx_deadline = None
        self.retransmits = 0

    def _acceptable(self, seq: int, seg_len: int) -> bool:
        """RFC 9293 3.10.7.4 first check, the four cases."""
        rcv_nxt = self.rcv_nxt
        wnd = max(0, self.rcv_adv - rcv_nxt)
        if seg_len == 0:
            return seq == rcv_nxt if wnd == 0 else rcv_nxt <= seq < rcv_nxt + wnd
        if wnd == 0:
            return False
        end = seq + seg_len - 1
        return rcv_nxt <= seq < rcv_nxt + wnd or rcv_nxt <= end < rcv_nxt + wnd

    def _arrive_synchronized(self, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        counters = self.layer.counters
        seq = unwrap(seg.seq, self.rcv_nxt)
        data = seg.payload
        seg_len = len(data) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        opts = seg.options

        # RFC 7323 5.3 PAWS: a timestamp older than ts_recent marks an old duplicate.
        if self.ts_ok and opts.ts_val is not None and not flags & RST:
            if ((opts.ts_val - self.ts_recent) & 0xFFFFFFFF) >= 0x80000000 and now - self.ts_recent_at < 24 * 86400:
                counters["paws_rejected"] += 1
                if seq < self.rcv_nxt:
                    self._note_duplicate(seq, seq + len(data))
                if not self._oow_rate_limited(now, seg_len, flags):
                    self._send_ack(now)
                return

        # First: sequence number check.
        if not self._acceptable(seq, seg_len):
            if self.state == SYN_RECEIVED and flags & SYN and seq == self.irs and not flags & ACK:
                # Our SYN-ACK was lost: the peer retransmitted its SYN. Answer again (seqs bug:
                # one dropped segment in SYN-RECEIVED silenced the server).
                counters["syn_retransmit_received"] += 1
                self._send_syn(now, ack=True)
                return
            if self.state == TIME_WAIT and flags & FIN and not flags & RST:
                # RFC 9293 3.10.7.4 (TIME-WAIT): acknowledge the retransmitted FIN, restart 2 MSL.
                self._send_ack(now)
                self.timewait_deadline = now + 2 * self.config.msl
                return
            if not flags & RST:
                counters["out_of_window"] += 1
                if seq < self.rcv_nxt:
                    self._note_duplicate(seq, seq + len(data))  # RFC 2883 4.1.1: an old duplicate
                if not self._oow_rate_limited(now, seg_len, flags):
                    self._send_ack(now)  # RFC 9293: an unacceptable segment gets an ACK (not for RST)
            return

        # Second: RST (RFC 5961 3.2).
        if flags & RST:
            if seq == self.rcv_nxt:
                self._on_reset(now)
            else:
                counters["rst_challenged"] += 1
                self._challenge_ack(now)
            return

        # Fourth: SYN in a synchronized state (RFC 5961 4.2): challenge ACK, change nothing.
        if flags & SYN:
            if self.state == SYN_RECEIVED and seq == self.irs:
                self._send_syn(now, ack=True)
                return
            if self.state == SYN_RECEIVED and self.listener is not None:
                # RFC 9293 3.10.7.4 fourth: a passive open in SYN-RECEIVED returns to LISTEN (the
                # half-open connection goes, silently); RFC 5961's challenge ACK is for
                # synchronized states. (Linux answers such a SYN with a RST; FreeBSD resends its SYN-ACK.)
                counters["syn_received_dropped"] += 1
                self._enter_closed()
                return
            counters["syn_challenged"] += 1
            self._challenge_ack(now)
            return

        if self.state == TIME_WAIT:
            # RFC 9293 3.10.7.4 (TIME-WAIT, fifth and eighth steps): acknowledge what occupies
            # sequence space and restart the 2 MSL timeout, as FreeBSD's tcp_twcheck and Linux's
            # tcp_timewait_state_process do. A bare ACK at RCV.NXT is not answered (both kernels):
            # two hosts in TIME-WAIT after a simultaneous close would ACK each other forever.
            if flags & ACK and seg_len:
                self._send_ack(now)
                self.timewait_deadline = now + 2 * self.config.msl
            return

        # Fifth: ACK.
        if not flags & ACK:
            return
        ack = unwrap(seg.ack, self.snd_nxt)
        if self.state == SYN_RECEIVED:
            if self.snd_una < ack <= self.snd_nxt:
                self._ack_syn(ack, now)
                self._set_state(ESTABLISHED)
                self.snd_wnd = seg.window << self.snd_wscale
                self.max_snd_wnd = self.snd_wnd
                self.snd_wl1, self.snd_wl2 = seq, ack
                counters["passive_opens_established" if self.listener is not None else "active_opens_established"] += 1
                self.layer.established(self)
                self._deliver_syn_text(now)  # RFC 9293 3.10.7.2: the SYN's text, queued until now
            else:
                self.layer.send_reset(self.local_addr, self.remote_addr, self.local_port, self.remote_port,
                                      seg.ack, 0, RST)
                return
        # RFC 5961 5.2: ACK must lie in [snd_una - max_snd_wnd, snd_nxt].
        if ack > self.snd_max:
            counters["ack_too_new"] += 1
            if not self._oow_rate_limited(now, seg_len, flags):
                self._send_ack(now)  # RFC 5961 5.2: "send an ACK", at most one per interval
            return
        if ack < self.snd_una - max(self.max_snd_wnd, 1):
            counters["ack_too_old"] += 1
            self._challenge_ack(now)
            return

        self.last_heard = now
        self.keepalive_probes = 0
        if self.ts_ok and opts.ts_val is not None and seq <= self.last_ack_sent < seq + max(seg_len, 1):
            self.ts_recent, self.ts_recent_at = opts.ts_val, now  # RFC 7323 4.3
        self._process_ack(seg, seq, ack, len(data), now)
        if self.state == CLOSED:
            return

        # Seventh: segment text.
        if data and self.user_closed and self.state in (FIN_WAIT_1, FIN_WAIT_2) and \
                seq + len(data) > self.rcv_nxt:
            # RFC 9293 3.6 (SHLD-2), RFC 1122 4.2.2.13: the application closed (not a half-close)
            # and new data arrives that nobody will read: reset, <SEQ=SEG.ACK><CTL=RST>, as
            # Linux does (LINUX_MIB_TCPABORTONDATA).
            counters["aborted_on_data"] += 1
            self.layer.send_reset(self.local_addr, self.remote_addr, self.local_port, self.remote_port,
                                  seg.ack, 0, RST)
            self._enter_closed()
            return
        if data and self.state in _CAN_RECEIVE:
            self._receive_data(seq, data, now)
        elif data:
            counters["data_after_fin"] += 1

        # Eighth: FIN.
        if flags & FIN and self.state in _CAN_RECEIVE:
            fin_seq = seq + len(data)
            if self.peer_fin_seq is None and fin_seq <= max(self.rcv_adv, self.rcv_nxt):  # not beyond the window
                self.peer_fin_seq = fin_seq
            if fin_seq > self.rcv_nxt:
                # Beyond a hole: ACKed at once like any out-of-order segment (RFC 5681 4.2; Linux
                # queues it out of order and SACKs it), honoured when the hole fills.
                self.ack_now = True
                self.layer.mark_dirty(self)
        self._maybe_consume_fin(now)

    def _on_reset(self, now: float) -> None:
        state = self.state
        self.layer.counters["connections_reset"] += 1
        if state == SYN_RECEIVED and self.listener is not None:
            self._enter_closed()  # back to LISTEN: the listener's slot is freed (seqs leaked it)
        elif state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self._fail(errno.ECONNRESET if state != SYN_RECEIVED else errno.ECONNREFUSED)
        else:  # CLOSING, LAST-ACK, TIME-WAIT
            self._enter_closed()

    def _oow_rate_limited(self, now: float, seg_len: int, flags: int) -> bool:
        """Whether the ACK answering an unacceptable segment must be skipped: Linux's
        tcp_oow_rate_limited (commit f2b2c582e824, "mitigate ACK loops"), at most one such ACK per
        tcp_invalid_ratelimit per connection. Segments that occupy sequence space (data, FIN)
        without SYN are exempt: they are no part of an ACK loop, and their duplicates need an
        immediate ACK (and D-SACK) for loss recovery. Two hosts desynchronised by one spoofed
        segment would otherwise answer each other's pure ACKs for ever."""
        if seg_len and not flags & SYN:
            return False
        if self._oow_budget_spent(now):
            self.layer.counters["invalid_ack_ratelimited"] += 1
            return True
        return False

    def _oow_budget_spent(self, now: float) -> bool:
        """Linux __tcp_oow_rate_limited: true when the last such ACK of this connection went
        less than `invalid_ratelimit` ago; else the time is recorded."""
        last = self.last_oow_ack_at
        if last is not None and 0 <= now - last < self.config.invalid_ratelimit:
            return True
        self.last_oow_ack_at = now
        return False

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 7: a rate-limited challenge ACK. First the connection's own limit (one per
        `invalid_ratelimit`, shared with the ACKs of unacceptable segments, as Linux's
        tcp_send_challenge_ack), then a host-wide budget drawn at random each second from
        [limit/2, 3*limit/2) (Linux since CVE-2016-5696, commit 75ff39ccc1bd): with one exact
        budget, an off-path attacker who counts the challenge ACKs it draws on its own connection
        sees the ones spent on a connection it probes blindly, and so learns when a guessed
        4-tuple and sequence number are right."""
        if self._oow_budget_spent(now):
            self.layer.counters["challenge_ack_ratelimited"] += 1
            return
        if not self.layer.challenge.allow(now):
            self.layer.counters["challenge_ack_limited"] += 1
            return
        self.layer.counters["challenge_acks"] += 1
        self._send_ack(now)

    # ----------------------------------------------------------------- ACK processing

    def _process_ack(self, seg: TcpSegment, seq: int, ack: int, data_len: int, now: float) -> None:
        state = self.state
        window = seg.window << self.snd_wscale
        counters = self.layer.counters
        dsack_only = newly_sacked = False
        if self.sack_ok and seg.options.sack_blocks:
            blocks = seg.options.sack_blocks
            self.sack_acks += 1
            dsack = self._take_dsack(blocks, ack)
            before = self._sacked_bytes()
            self._update_scoreboard(blocks[1:] if dsack else blocks, ack)
            newly_sacked = self._sacked_bytes() > before
            # An ACK whose news is only a D-SACK reports a duplicate the peer received, not a
            # segment beyond a hole: it is no duplicate ACK (RFC 6675 2 counts only ACKs whose
            # SACK blocks report new data; RFC 2883 5).
            dsack_only = dsack and not newly_sacked
        if ack > self.snd_una:
            acked = ack - self.snd_una
            self._sample_rtt(now, seg.options.ts_ecr if self.ts_ok else None, ack)
            # Drop acknowledged bytes from the send buffer (the FIN's sequence number is not a byte),
            # once they are at least half of it: a bytearray cut at the front copies what is left
            # on the next append that outgrows it (CPython overallocates by 1/8), so cutting on
            # every ACK copied each byte about 8 times under bulk send; this way at most once.
            # The acknowledged prefix (snd_una - buf_seq) stays out of send_space (_send_live);
            # a writer waiting for host memory gets it back at once.
            buf_end = self.buf_seq + len(self.send_buf)
            data_acked = min(ack, buf_end) - max(self.snd_una, self.buf_seq)
            prefix = min(ack, buf_end) - self.buf_seq
            if prefix > 0 and (2 * prefix >= len(self.send_buf) or self.layer.memory.waiters):
                del self.send_buf[:prefix]
                self.buf_seq += prefix
            self.snd_una = ack
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            self.progress_at = now
            self.retransmits = 0
            self.persist_backoff = 0
            if self.sacked:
                self.sacked = [(s, e) for s, e in self.sacked if e > ack]
            if self.in_recovery:
                if ack >= self.recover:
                    # Full ACK (RFC 6582 3.2 step 3): leave recovery.
                    self.in_recovery = False
                    self.cc.cwnd = min(self.cc.ssthresh, max(self.snd_max - ack, self.mss) + self.mss)
                    self.dupacks = 0
                else:
                    # Partial ACK: retransmit the next hole, deflate (RFC 6582 3.2 step 4).
                    self.cc.cwnd = max(self.cc.cwnd - acked + self.mss, self.mss)
                    self.rexmit_next = max(self.rexmit_next, ack)
                    self._retransmit_hole(now, force=True)
            else:
                self.dupacks = 0
                self.cc.on_ack(acked, now, self.srtt)
            # RFC 6298 5.2/5.3: restart the timer while data remains outstanding.
            self.rtx_deadline = now + self.rto if self.snd_max > self.snd_una else None
            counters["bytes_acked"] += max(0, data_acked)  # data only: not the FIN's sequence number
            self.layer.mark_dirty(self)
        elif ack == self.snd_una and self.snd_max > self.snd_una and data_len == 0 and \
                window and (window == self.snd_wnd or newly_sacked) and not seg.flags & FIN and not dsack_only:
            # A duplicate ACK (RFC 5681 2; answers to zero-window probes are not). With SACK, one
            # that reports new data counts even when the window moved (RFC 6675 2, as Linux
            # counts SACKed segments): the receiver's window changes as its application reads.
            self.dupacks += 1
            counters["dupacks"] += 1
            if self.in_recovery:
                self.cc.cwnd += self.mss  # inflate (RFC 5681 3.2 step 4)
                self._retransmit_hole(now)
                self.layer.mark_dirty(self)
            elif self.dupacks >= self._dupthresh() or (self.sack_ok and self._sacked_bytes() >= 3 * self.mss):
                self._enter_recovery(now)
            else:
                self.layer.mark_dirty(self)  # Limited Transmit (RFC 3042) may send new data
        # Window update (RFC 9293 3.10.7.4, fifth step).
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            if window > self.snd_wnd:
                self.layer.mark_dirty(self)
            self.snd_wnd = window
            self.snd_wl1, self.snd_wl2 = seq, ack
            self.max_snd_wnd = max(self.max_snd_wnd, window)
            if window and self.persist_deadline is not None:
                self.persist_deadline = None
        # Our FIN acknowledged? (RFC 9293: FIN-WAIT-1 moves on only when *the FIN* is ACKed; seqs
        # moved on the ACK of older data.)
        fin_acked = self.fin_queued and self.snd_una > self.buf_seq + len(self.send_buf)
        if fin_acked:
            if state == FIN_WAIT_1:
                self._set_state(FIN_WAIT_2)
                if self.user_closed:
                    # Nobody can read any more: do not wait forever for the peer's FIN (an orphan
                    # in FIN-WAIT-2, Linux's tcp_fin_timeout). The TIME-WAIT timer serves.
                    self.timewait_deadline = now + self.config.fin_timeout
            elif state == CLOSING:
                self._enter_time_wait(now)
            elif state == LAST_ACK:
                self._enter_closed()

    def _dupthresh(self) -> int:
        """3, or fewer with little in flight and nothing new to send (Early Retransmit, RFC 5827:
        oseg - 1 for 2 <= oseg < 4). A FIN is no segment of its own when it rides on data, and
        with one segment outstanding (a FIN alone, say) no duplicate ACK can mean a hole, so the
        threshold stays 3: a single duplicate ACK never retransmits the FIN at once."""
        buf_end = self.buf_seq + len(self.send_buf)
        data_out = min(self.snd_max, buf_end) - self.snd_una
        outstanding = -(-data_out // self.mss) if data_out > 0 else int(self.snd_max > self.snd_una)
        unsent = buf_end - self.snd_max
        if 2 <= outstanding < 4 and (unsent <= 0 or self.snd_wnd <= self.snd_max - self.snd_una):
            return outstanding - 1
        return 3

    def _sacked_bytes(self) -> int:
        return sum(e - s for s, e in self.sacked)

    def _take_dsack(self, blocks: list[tuple[int, int]], ack: int) -> bool:
        """RFC 2883 5: the first block is a D-SACK when it lies below the cumulative ACK or
        inside the second block. A D-SACK for data we retransmitted in the current episode
        counts towards undoing the episode's congestion response."""
        start, end = unwrap(blocks[0][0], ack), unwrap(blocks[0][1], ack)
        if end <= start:
            return False
        if end > ack:
            if len(blocks) < 2:
                return False
            second = unwrap(blocks[1][0], ack), unwrap(blocks[1][1], ack)
            if not (second[0] <= start and end <= second[1]):
                return False
        self.layer.counters["dsacks_received"] += 1
        self.dsack_dups += 1
        if self.undo_ranges:
            self._undo_reported(start, end)
        return True

    def _undo_begin(self) -> None:
        """A congestion response is about to start (fast retransmit, first RTO): remember the
        window to restore should every retransmission turn out spurious (RFC 3708's idea; Linux's
        tcp_init_undo). A response within the same episode keeps the first one's values."""
        if self.undo_ranges is not None and self.snd_una < self.undo_end:
            self.undo_end = self.snd_max
            return
        self.undo_ranges = []
        self.undo_cwnd, self.undo_ssthresh = self.cc.cwnd, self.cc.ssthresh
        self.undo_end = self.snd_max
        self.undo_possible = True

    def _undo_note_retransmit(self, start: int, end: int) -> None:
        """[start, end) of the sequence space, below SND.MAX, is being sent again."""
        ranges = self.undo_ranges
        if ranges is None or not self.undo_possible:
            return
        buf_end = self.buf_seq + len(self.send_buf)
        if self.fin_queued and end > buf_end and self.snd_max > buf_end:
            self.undo_possible = False  # the FIN sent again: D-SACK reports data only, so never undone
        data_end = min(end, buf_end, self.snd_max)
        if data_end > start:
            if len(ranges) >= 256:
                self.undo_possible = False
            else:
                ranges.append((start, data_end))

    def _undo_reported(self, start: int, end: int) -> None:
        """D-SACK of [start, end): one copy of each retransmitted range it covers arrived twice."""
        ranges = self.undo_ranges
        assert ranges is not None
        todo = [(start, end)]
        kept: list[tuple[int, int]] = []
        for r_start, r_end in ranges:
            rest = [(r_start, r_end)]
            for s, e in list(todo):
                lo, hi = max(r_start, s), min(r_end, e)
                if lo < hi:
                    rest = _subtract(rest, lo, hi)
                    todo = _subtract(todo, lo, hi)
            kept.extend(rest)
        self.undo_ranges = kept
        if not kept and self.undo_possible:
            self._undo()

    def _undo(self) -> None:
        """Every retransmission of the episode was D-SACKed: the losses were not real (reordering
        or a delayed segment). Restore the window as it was (Linux tcp_undo_cwnd_reduction)."""
        self.layer.counters["dsack_undos"] += 1
        self.cc.cwnd = max(self.cc.cwnd, self.undo_cwnd)
        self.cc.ssthresh = max(self.cc.ssthresh, self.undo_ssthresh)
        self.undo_ranges = None
        self.in_recovery = False
        self.dupacks = 0
        self.layer.mark_dirty(self)

    def _update_scoreboard(self, blocks: list[tuple[int, int]], ack: int) -> None:
        ranges = list(self.sacked)
        for left, right in blocks:
            start, end = unwrap(left, ack), unwrap(right, ack)
            if end <= start or end <= ack or end > self.snd_max:
                continue  # D-SACK below ack or nonsense: ignore
            ranges.append((max(start, ack), end))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for start, end in ranges:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self.sacked = merged[-32:]

    def _enter_recovery(self, now: float) -> None:
        """Fast retransmit (RFC 5681 3.2; RFC 6675 5 with SACK)."""
        if self.snd_una < self.recover and self.total_retransmits:
            return  # RFC 6582 3.2 step 1: no new recovery for losses of the same window
        self.layer.counters["fast_retransmits"] += 1
        self._undo_begin()
        self.in_recovery = True
        self.recover = self.snd_max
        flight = self.snd_max - self.snd_una
        self.cc.on_loss(flight, now)
        self.cc.cwnd += 3 * self.mss if not self.sack_ok else 0
        self.rexmit_next = self.snd_una
        self._retransmit_hole(now, force=True)
        self.rtt_seq = None

    def _retransmit_hole(self, now: float, force: bool = False) -> None:
        """Retransmit the next range not known to have arrived (RFC 6675 NextSeg, simplified)."""
        if self.sacked and self.una_rexmit_at is not None and self.srtt is not None and \
                now - self.una_rexmit_at > 1.25 * self.srtt + 0.002:
            # SACKs keep arriving for data sent after our retransmission of the first hole, so
            # that retransmission was lost too (the time-based idea of RACK, RFC 8985): resend it
            # now rather than waiting for the RTO.
            self.layer.counters["lost_retransmits"] += 1
            self.rexmit_next = self.snd_una
            self.una_rexmit_at = None
            force = True
        start = max(self.rexmit_next, self.snd_una)
        for s, e in self.sacked:
            if s <= start < e:
                start = e
        if not self.sacked and not force:
            return
        highest_sacked = self.sacked[-1][1] if self.sacked else self.snd_una + self.mss
        if start >= min(highest_sacked, self.snd_max):
            return
        end = min(start + self.mss, self.snd_max)
        for s, _ in self.sacked:
            if start < s < end:
                end = s
        if self.sack_ok and not force:
            pipe = self.snd_max - self.snd_una - self._sacked_bytes()
            if pipe > self.cc.cwnd:
                return
        self._send_range(start, end, now, retransmission=True)
        self.rexmit_next = end
        if start == self.snd_una:
            self.una_rexmit_at = now

    # ----------------------------------------------------------------- receiving

    def _receive_data(self, seq: int, data: memoryview, now: float) -> None:
        rcv_nxt = self.rcv_nxt
        right = self.rcv_adv
        duplicate = seq < rcv_nxt
        if duplicate:
            self._note_duplicate(seq, seq + len(data))  # RFC 2883 4.1.1: its head was already received
            data = data[rcv_nxt - seq:]
            seq = rcv_nxt
        if seq + len(data) > right:
            data = data[:max(0, right - seq)]
        if data and self.layer.memory.exhausted_by(self._mem_held() - self.mem_charged + len(data)) \
                and not self.mem_released:
            # The host's buffer memory is exhausted (tcp_mem[2]): drop even in-window data, as
            # Linux does when tcp_try_rmem_schedule fails (TCPRcvQDrop); the peer retransmits.
            self.layer.counters["rcv_mem_dropped"] += 1
            self.rcv_nomem = True
            data = data[:0]
        if not data:
            self.ack_now = True
            self.layer.mark_dirty(self)
            return
        if seq == rcv_nxt:
            self.rcv_buf += data
            self.rcv_nxt += len(data)
            filled_hole = bool(self.ooo)
            if self.ooo:
                ready = self.ooo.pop_ready(self.rcv_nxt)
                if ready:
                    self.rcv_buf += ready
                    self.rcv_nxt += len(ready)
            # Everything that reached the receive buffer, including what the segment released
            # from the out-of-order store.
            self.layer.counters["bytes_received"] += self.rcv_nxt - rcv_nxt
            # Quick-ACK mode (Linux tcp_event_data_recv, TCP_MAX_QUICKACKS): the connection starts
            # with a budget of MAX_QUICKACKS; while it lasts every in-order data segment is ACKed
            # at once and uses one. In-order data after more than an RTO without any refills it.
            if self.last_data_at is not None and now - self.last_data_at > self.rto:
                self.quick_acks = MAX_QUICKACKS
            self.last_data_at = now
            # RFC 5681 4.2: ACK at least every second full-sized segment, counted in bytes so one
            # large segment (GRO, a peer with a smaller MSS) counts as what it is. As Linux
            # (__tcp_ack_snd_check: more than one rcv_mss unacknowledged) and FreeBSD (DELAY_ACK:
            # only segments of at most t_maxseg wait), a segment longer than one MSS, or more than
            # one full-sized segment unacknowledged, is ACKed at once; so is one that fills a hole.
            self.unacked_bytes += len(data)
            self.rcv_mss = max(self.rcv_mss or self.mss, min(len(data), self.mss_limit))
            if self.quick_acks > 0:
                self.quick_acks -= 1
                self.layer.counters["quick_acks"] += 1
                # At the layer's next poll (the end of a runtime pass), so that a reply the pass
                # makes carries it. Not for holes and duplicates below: those ACKs must go as pure
                # duplicate ACKs (RFC 5681 2: a segment with data is no duplicate ACK).
                self.ack_soon = True
            elif filled_hole or duplicate or self.unacked_bytes > self.rcv_mss:
                self.ack_now = True
            elif self.delack_deadline is None:
                self.delack_deadline = now + self.config.delayed_ack
            self.layer.mark_dirty(self)
        else:
            self.ooo.add(seq, bytes(data))
            if self.ooo.duplicate is not None:
                self._note_duplicate(*self.ooo.duplicate)  # RFC 2883 4.1.2: held out of order
            self.layer.counters["out_of_order"] += 1
            self.ack_now = True  # RFC 5681 4.2: out-of-order data is ACKed at once (dupack + SACK)
            self.layer.mark_dirty(self)

    def _note_duplicate(self, start: int, end: int) -> None:
        """RFC 2883 4: data that had already arrived came again: the next ACK names the range in
        its first SACK block (a D-SACK block), once. Not in TIME-WAIT (Linux's timewait sockets
        keep no SACK state)."""
        if start < self.rcv_nxt:
            end = min(end, self.rcv_nxt)
        if start >= end or not self.sack_ok or not self.config.dsack or self.state == TIME_WAIT:
            return
        if self.dsack is None:
            self.dsack = (start, end)

    def _maybe_consume_fin(self, now: float) -> None:
        if self.peer_fin_seq is None or self.rcv_nxt != self.peer_fin_seq or self.eof:
            return
        self.rcv_nxt += 1
        self.eof = True
        # RFC 9293 3.10.7.4 (eighth step): acknowledge the FIN. At the layer's next poll, not at
        # once: a host's runtime polls at the end of the pass, after the services (and a thread
        # woken by the EOF, if it is quick) have answered, so a close in reply sends one FIN+ACK
        # segment instead of an ACK and then a FIN. Sans-IO drivers poll after each segment, as
        # the conformance runner does, so the ACK leaves at the same time as before.
        self.ack_soon = True
        self.dsack = None  # Linux's tcp_fin clears the SACK state: the ACK of the FIN has no blocks
        self.layer.mark_dirty(self)
        state = self.state
        if state in (SYN_RECEIVED, ESTABLISHED):
            self._set_state(CLOSE_WAIT)
        elif state == FIN_WAIT_1:
            # Simultaneous close: our FIN not yet acknowledged -> CLOSING (RFC 9293 3.6).
            self._set_state(CLOSING)
        elif state == FIN_WAIT_2:
            self._enter_time_wait(now)

    def _window_opened(self) -> None:
        """After the user read: a standalone window update only when it matters. Linux's
        tcp_cleanup_rbuf rule: the window we advertised has fallen to at most half the largest
        we can offer, and the one we can offer now is at least twice as large (and grew by a
        receiver-SWS step, RFC 9293 3.8.6.2.2). A read from a mostly empty buffer sends nothing:
        the ACKs the data elicits carry the window anyway."""
        if self.eof or self.state == CLOSED:
            # The peer's FIN is in: it sends no more data, so a wider window tells it nothing, and
            # after the close completes it would answer our ACK with a RST.
            return
        if self.rcv_nomem:
            self.ack_now = True  # we advertised zero for lack of memory: the read may have freed it
            self.layer.mark_dirty(self)
            return
        current = max(0, self.rcv_adv - self.rcv_nxt)
        if 2 * current > min(self.rcvbuf, 0xFFFF << self.rcv_wscale):
            return
        new = self._window_to_offer()
        if new > current and new >= 2 * current and new - current >= min(self.rcvbuf // 2, self.mss):
            self.ack_now = True
            self.layer.mark_dirty(self)

    def _window_to_offer(self) -> int:
        """The window the next segment will advertise, in bytes (what :meth:`_advertise` sends)."""
        if self.rcv_nomem:
            # Out of host memory: say so with a zero window until an MSS fits again (Linux 6.5,
            # "send zero-window ACK when no memory", ICSK_ACK_NOMEM). The right edge already
            # offered stays acceptable (rcv_adv is kept), as RFC 9293 3.8.6.2.2 asks.
            if self.layer.memory.room(self.mem_charged) < self.mss:
                return 0
            self.rcv_nomem = False
        memory = self.layer.memory
        limit = memory.config.mem_limit
        used = memory.used
        # memory.room(), inline for its common case: below the pressure threshold, all that is free.
        room = limit - used if used < limit * 2 // 3 else memory.room(self.mem_charged)
        rcvbuf = self.rcvbuf
        wscale = self.rcv_wscale
        space = rcvbuf - len(self.rcv_buf) - self.ooo.bytes
        if space > 0xFFFF << wscale:
            space = 0xFFFF << wscale
        if space > room:
            space = room  # under memory pressure, less
        if space < 0:
            space = 0
        offered = current = self.rcv_adv - self.rcv_nxt
        mss = self.mss
        if space - current >= min(rcvbuf // 2, mss) or space > current and current < mss:
            current = space
        if current < offered:
            current = offered
        current >>= wscale
        return (current if current < 0xFFFF else 0xFFFF) << wscale

    def _advertise(self) -> int:
        """The window field value; the right edge never moves left (RFC 9293 3.8.6.2.2)."""
        window = self._window_to_offer()
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + window)
        return window >> self.rcv_wscale

    def _sack_blocks(self) -> list[tuple[int, int]]:
        """The SACK option's blocks (RFC 2018 4): a pending D-SACK block first (RFC 2883 4), then
        the out-of-order data, the block holding the duplicate first of those (RFC 2883 4.1.2),
        an out-of-order FIN counted in its block (as Linux, whose out-of-order queue holds it);
        as many as fit beside timestamps."""
        limit = 3 if self.ts_ok else 4
        blocks = self.ooo.blocks(limit + 1) if self.ooo else []
        fin = self.peer_fin_seq
        if fin is not None and not self.eof and fin > self.rcv_nxt:
            for i, (start, end) in enumerate(blocks):
                if end == fin:
                    blocks[i] = (start, fin + 1)
                    break
            else:
                blocks.insert(0, (fin, fin + 1))
        dsack = self.dsack
        if dsack is not None:
            self.dsack = None
            self.layer.counters["dsacks_sent"] += 1
            self.dsacks_sent += 1
            for i, (start, end) in enumerate(blocks):
                if start <= dsack[0] and dsack[1] <= end:
                    blocks.insert(0, blocks.pop(i))
                    break
            blocks.insert(0, dsack)
        return blocks[:limit]

    # ================================================================= sending

    def _ts_now(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & 0xFFFFFFFF

    def _emit(self, seq: int, flags: int, payload: bytes | memoryview, now: float | None = None) -> None:
        """The one way out for every segment but the SYNs: options, window and ACK fields, then
        the layer's transmit. Every data segment and ACK passes here: locals, no helper calls
        on the common path (timestamps alone)."""
        sack_blocks = None
        ack_flag = flags & ACK
        if ack_flag and self.sack_ok and (self.ooo.pieces or self.dsack is not None or self.peer_fin_seq is not None):
            if payload:
                self.dsack = None  # no room for SACK beside data: the duplicate goes unreported
            else:
                sack_blocks = [(wire(s), wire(e)) for s, e in self._sack_blocks()] or None
        if self.ts_ok:
            ts_val = (int((now if now is not None else self.layer.now) * 1000) + self.ts_offset) & 0xFFFFFFFF
            if sack_blocks:
                options = tcpwire.build_options(ts=(ts_val, self.ts_recent), sack_blocks=sack_blocks)
            else:
                options = _pack_ts(_TS_LEAD, ts_val, self.ts_recent)  # tcpwire.timestamp_option
        elif sack_blocks:
            options = tcpwire.build_options(sack_blocks=sack_blocks)
        else:
            options = b""
        rcv_nxt = self.rcv_nxt
        if ack_flag or self.state != CLOSED:
            window = self._window_to_offer()  # _advertise: the right edge never moves left
            if rcv_nxt + window > self.rcv_adv:
                self.rcv_adv = rcv_nxt + window
            window >>= self.rcv_wscale
        else:
            window = 0
        self.layer.transmit(self, seq & 0xFFFFFFFF, rcv_nxt & 0xFFFFFFFF if ack_flag else 0, flags, window, options,
                            payload)
        if ack_flag:
            self.last_ack_sent = rcv_nxt
            self.ack_now = self.ack_soon = False
            self.delack_deadline = None
            self.unacked_bytes = 0

    def _send_ack(self, now: float) -> None:
        # A pure ACK carries the next *new* sequence number, not snd_nxt: after an RTO snd_nxt
        # is rewound for go-back-N, and a seq below the peer's RCV.NXT would make the peer
        # reject the segment (and its ACK field) as unacceptable, an ACK war (as in 4.4BSD).
        self._emit(self.snd_max, ACK, b"", now)

    def _send_range(self, start: int, end: int, now: float, retransmission: bool = False) -> None:
        """Send [start, end) of the sequence space (data, plus FIN if it falls inside)."""
        buf_end = self.buf_seq + len(self.send_buf)
        data_end = min(end, buf_end)
        offset = start - self.buf_seq
        payload = memoryview(self.send_buf)[offset:offset + max(0, data_end - start)]
        flags = ACK
        if self.fin_queued and end > buf_end:
            flags |= FIN
        if payload and (data_end == buf_end or flags & FIN):
            flags |= PSH
        if start < self.snd_max:
            self._undo_note_retransmit(start, end)
        try:
            self._emit(start, flags, payload, now)
        finally:
            payload.release()
        if retransmission:
            self.total_retransmits += 1
            self.layer.counters["retransmitted_segments"] += 1
            if self.rtt_seq is not None and start <= self.rtt_seq < end:
                self.rtt_seq = None  # Karn's rule
        if self.rtx_deadline is None:
            self.rtx_deadline = now + self.rto

    def output(self, now: float, arriving: bool = False) -> None:
        """Send whatever the windows, Nagle and the state allow, then any pending ACK. *arriving*:
        called right after a segment's arrival (TcpLayer.poll_connection), when an ``ack_soon``
        waits for the layer's next poll instead."""
        state = self.state
        if state in (SYN_SENT, SYN_RECEIVED, CLOSED, LISTEN):
            if state == SYN_RECEIVED and self.ack_now:
                self.ack_now = False
            return
        sent = False
        if state == ESTABLISHED and not self.fin_queued and self.snd_nxt >= self.buf_seq + len(self.send_buf):
            pass  # nothing to send (what _send_data would find): the ACK question alone
        elif state in _CAN_SEND or (self.fin_queued and state in (FIN_WAIT_1, CLOSING, LAST_ACK)):
            sent = self._send_data(now)
        if (self.ack_now or (self.ack_soon and not arriving)
                or (self.delack_deadline is not None and now >= self.delack_deadline)) and not sent:
            self._send_ack(now)

    def _send_data(self, now: float) -> bool:
        mss = self.mss
        sent = False
        buf_end = self.buf_seq + len(self.send_buf)
        fin_end = buf_end + 1 if self.fin_queued else buf_end
        while self.snd_nxt < fin_end:
            cwnd = self.cc.cwnd
            if self.dupacks and not self.in_recovery:
                cwnd += min(self.dupacks, 2) * mss  # Limited Transmit (RFC 3042): one new segment per dupack
            window_end = self.snd_una + min(cwnd, self.snd_wnd)
            unsent = buf_end - self.snd_nxt
            if unsent <= 0:
                # Only the FIN is left (RFC 9293 3.10.4): it may go regardless of the window.
                self._send_range(self.snd_nxt, fin_end, now)
                self.snd_nxt = fin_end
                self._after_fin_sent()
                sent = True
                break
            usable = window_end - self.snd_nxt
            if usable <= 0:
                if self.snd_wnd == 0 and self.snd_max == self.snd_una and self.persist_deadline is None:
                    self.persist_deadline = now + max(self.rto, self.config.persist_min)
                break
            size = min(mss, unsent, usable)
            if size == mss:
                gso = self.layer.gso_for(self.remote_addr)
                if gso > mss:
                    # Hand the link whole multiples of the MSS at once (TSO): one Python pass per
                    # 64 KB instead of per 1.4 KB; the wire still sees MSS-sized segments.
                    size = max(mss, min(unsent, usable, gso) // mss * mss)
            if size < mss:
                if size == unsent and self.autocork is not None and self.snd_nxt != self.autocork \
                        and not self.fin_queued:
                    # Linux's tcp_should_autocork on lo: full segments just went, the small rest
                    # would go alone; the caller flushes it unless more data joins it first.
                    self.corked = True
                    break
                if size < unsent:
                    # Window-limited: sender SWS avoidance (RFC 9293 3.8.6.2.1) waits for a
                    # useful window unless nothing is in flight.
                    if size < self.max_snd_wnd // 2 and self.snd_max > self.snd_una:
                        break
                elif self.snd_max > self.snd_una and not self.nodelay and not self.fin_queued:
                    break  # Nagle (RFC 896): hold a small segment while data is unacknowledged
            end = self.snd_nxt + size
            if self.fin_queued and end == buf_end:
                end = fin_end  # piggyback the FIN on the last data segment
            if self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq, self.rtt_sent = self.snd_nxt, now
            self._send_range(self.snd_nxt, end, now)
            self.snd_nxt = end
            if end == fin_end and self.fin_queued:
                self._after_fin_sent()
            sent = True
        if self.snd_nxt > self.snd_max:
            self.snd_max = self.snd_nxt
        return sent

    def _after_fin_sent(self) -> None:
        if self.snd_nxt > self.snd_max:
            self.snd_max = self.snd_nxt
        if self.state == ESTABLISHED:
            self._set_state(FIN_WAIT_1)
        elif self.state == CLOSE_WAIT:
            self._set_state(LAST_ACK)

    # ================================================================= timers

    def next_deadline(self) -> float | None:
        # Called after every event (layer.schedule): plain comparisons, no tuple, no call for
        # the keepalive timer unless it is on.
        best = self.rtx_deadline
        deadline = self.delack_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self.persist_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self.timewait_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        if self.keepalive:
            deadline = self._keepalive_deadline()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def _keepalive_deadline(self) -> float | None:
        if not self.keepalive or self.state not in (ESTABLISHED, CLOSE_WAIT):
            return None
        if self.keepalive_probes == 0:
            return self.last_heard + self.keepalive_idle
        return self.last_heard + self.keepalive_idle + self.keepalive_probes * self.keepalive_interval

    def on_timer(self, now: float) -> None:
        if self.timewait_deadline is not None and now >= self.timewait_deadline:
            self._enter_closed()
            return
        if self.rtx_deadline is not None and now >= self.rtx_deadline:
            self._on_rto(now)
        if self.state == CLOSED:
            return
        if self.persist_deadline is not None and now >= self.persist_deadline:
            self._on_persist(now)
        keepalive_at = self._keepalive_deadline()
        if keepalive_at is not None and now >= keepalive_at:
            if self.keepalive_probes >= self.keepalive_count:
                self._fail(errno.ETIMEDOUT)
                return
            self.keepalive_probes += 1
            self.layer.counters["keepalive_probes"] += 1
            # RFC 1122 4.2.3.6: a probe is a segment with SEG.SEQ = SND.NXT - 1.
            self._emit(self.snd_max - 1, ACK, b"", now)
        if self.delack_deadline is not None and now >= self.delack_deadline:
            self.ack_now = True
        self.output(now)

    def _on_rto(self, now: float) -> None:
        """RFC 6298 5.4-5.7."""
        state = self.state
        limit = self.config.syn_retries if state == SYN_SENT else \
            self.config.synack_retries if state == SYN_RECEIVED else self.config.data_retries
        timed_out = self.retransmits >= limit or (
            self.user_timeout and now - self.progress_at >= self.user_timeout)
        if timed_out:
            self.layer.counters["timeouts"] += 1
            if state == SYN_RECEIVED and self.listener is not None:
                self._enter_closed()  # free the half-open slot
            else:
                self._fail(errno.ETIMEDOUT)
            return
        self.retransmits += 1
        self.rto = min(self.rto * 2, self.config.rto_max)
        self.rtx_deadline = now + self.rto
        self.layer.counters["rto_expired"] += 1
        if state in (SYN_SENT, SYN_RECEIVED):
            self.rtt_seq = None
            self.total_retransmits += 1
            self._send_syn(now, ack=state == SYN_RECEIVED)
            return
        if self.retransmits == 1:
            self._undo_begin()
            self.cc.on_timeout(self.snd_max - self.snd_una, now)
        else:
            self.cc.cwnd = self.mss
        self.in_recovery = False
        self.dupacks = 0
        self.recover = self.snd_max
        self.sacked = []  # RFC 6675 5.1: the receiver may have reneged
        self.rtt_seq = None
        # Go back to snd_una and resend one segment now; the rest follows as ACKs open cwnd.
        end = min(self.snd_una + self.mss, self.snd_max)
        self._send_range(self.snd_una, end, now, retransmission=True)
        self.rtx_deadline = now + self.rto
        self.snd_nxt = end

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1): one byte beyond the window, backing off."""
        buf_end = self.buf_seq + len(self.send_buf)
        if self.snd_wnd > 0 or self.snd_nxt >= buf_end:
            self.persist_deadline = None
            return
        self.layer.counters["window_probes"] += 1
        self._send_range(self.snd_nxt, self.snd_nxt + 1, now)
        self.snd_nxt += 1
        self.snd_max = max(self.snd_max, self.snd_nxt)
        self.rtx_deadline = None  # the probe is governed by the persist timer, not the RTO
        self.persist_backoff += 1
        self.persist_deadline = now + min(self.rto * (1 << min(self.persist_backoff, 10)), self.config.rto_max)

    def _sample_rtt(self, now: float, ts_ecr: int | None, ack: int) -> None:
        """RFC 6298 2.2/2.3 with RFC 7323 4.2 timestamp samples; Karn's rule without them."""
        sample = None
        if ts_ecr:
            sample = ((self._ts_now(now) - ts_ecr) & 0xFFFFFFFF) / 1000.0
            if sample > 60:
                sample = None
        elif self.rtt_seq is not None and ack > self.rtt_seq:
            sample = now - self.rtt_sent
            self.rtt_seq = None
        if sample is None:
            return
        if self.srtt is None:
            self.srtt = sample
            self.rttvar = sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.rto = min(max(self.srtt + max(0.001, 4 * self.rttvar), self.config.rto_min), self.config.rto_max)

    # ================================================================= endings

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(TIME_WAIT)
        self.rtx_deadline = self.persist_deadline = self.delack_deadline = None
        self.timewait_deadline = now + 2 * self.config.msl
        self._notify()

    def _fail(self, code: int) -> None:
        self.error = os_error(code)
        self._enter_closed()

    def _enter_closed(self) -> None:
        self._set_state(CLOSED)
        self.rtx_deadline = self.persist_deadline = self.delack_deadline = self.timewait_deadline = None
        self.layer.forget(self)
        self._notify()

    def _notify(self) -> None:
        if self.on_event is not None:
            self.on_event()
        elif self.listener is not None:
            self.listener.notify()
