"""The TCP engine segment by segment, with exact segments and times (RFC 9293, 6298, 5961, 7323).

Tests named test_seqs_* reproduce bugs users reported against seqs/lneto; each fails on the
buggy behaviour.
"""

from __future__ import annotations

import errno

import pytest

from tests.tcp.harness import Harness
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK, FIN, PSH, RST, SYN

MSS_ONLY = tcpwire.build_options(mss=1460)


# ----------------------------------------------------------------- opening

def test_passive_open_offers_only_what_the_peer_offered() -> None:
    h = Harness()
    h.layer.listen(0, 8080, 8)
    h.inject(SYN, 0, options=MSS_ONLY)
    synack = h.one()
    opts = synack.options
    assert synack.flags == SYN | ACK and opts.mss == 1460
    assert opts.wscale is None and opts.ts_val is None and not opts.sack_permitted


def test_passive_open_negotiates_everything_when_offered() -> None:
    h = Harness(rcvbuf=1 << 20)
    h.layer.listen(0, 8080, 8)
    h.inject(SYN, 0, options=tcpwire.build_options(mss=1400, wscale=7, sack_permitted=True, ts=(100, 0)))
    synack = h.one()
    opts = synack.options
    assert opts.mss == 1460 and opts.wscale == 5 and opts.sack_permitted and opts.ts_ecr == 100
    assert synack.window == 65535  # a SYN's window is never scaled (RFC 7323 2.2)


def test_active_open_sends_syn_with_options_and_completes() -> None:
    h = Harness()
    conn = h.active_open(options=tcpwire.build_options(mss=1200, wscale=2, sack_permitted=True, ts=(5, 0)))
    assert conn.mss == 1200 - 12 and conn.snd_wscale == 2 and conn.sack_ok and conn.ts_ok


def test_syn_retransmission_backs_off_then_times_out() -> None:
    h = Harness(syn_retries=3)
    conn = h.layer.connect(0xC0A80001, 8080, 0xC0000201, 40000, 0.0)
    h.layer.poll(0.0)
    assert h.one().flags == SYN
    times = []
    for t in [0.5, 0.999, 1.0, 2.9, 3.0, 6.9, 7.0, 14.9]:
        h.at(t)
        times += [t for s in h.take() if s.flags & SYN]
    # RFC 6298 5.5: 1 s, then doubled each time: retransmissions at t=1, 3 and 7.
    assert times == [1.0, 3.0, 7.0] and conn.state == "SYN-SENT"
    h.at(15.0)  # the fourth expiry exceeds syn_retries=3
    assert h.take() == []
    assert conn.state == "CLOSED" and isinstance(conn.error, TimeoutError)


def test_rst_for_closed_port() -> None:
    h = Harness()
    h.inject(SYN, 0, options=MSS_ONLY)
    rst = h.one()
    assert rst.flags == RST | ACK and h.rel_ack(rst) == 1 and rst.seq == 0
    h.our_isn = 0
    h.inject(ACK, 5, 12345)
    rst = h.one()
    assert rst.flags == RST and rst.seq == 12345
    h.inject(RST, 5)
    assert h.take() == []  # never a RST for a RST


def test_ack_in_listen_gets_rst() -> None:
    h = Harness()
    h.layer.listen(0, 8080, 8)
    h.our_isn = 0
    h.inject(ACK, 1, 777)
    rst = h.one()
    assert rst.flags == RST and rst.seq == 777


def test_refused_connect() -> None:
    h = Harness()
    conn = h.layer.connect(0xC0A80001, 8080, 0xC0000201, 40000, 0.0)
    h.layer.poll(0.0)
    h.our_isn = h.one().seq
    h.inject(RST | ACK, 0, 1)
    assert conn.state == "CLOSED" and conn.error is not None and conn.error.errno == errno.ECONNREFUSED


def test_simultaneous_open() -> None:
    h = Harness()
    conn = h.layer.connect(0xC0A80001, 8080, 0xC0000201, 40000, 0.0)
    h.layer.poll(0.0)
    h.our_isn = h.one().seq
    h.inject(SYN, 0, options=MSS_ONLY)
    synack = h.one()
    assert synack.flags == SYN | ACK and h.rel_seq(synack) == 0 and conn.state == "SYN-RECEIVED"
    h.inject(SYN | ACK, 0, 1, options=MSS_ONLY)
    h.inject(ACK, 1, 1)
    assert conn.state == "ESTABLISHED"


def test_seqs_dropped_segment_in_syn_received_is_recovered() -> None:
    """seqs: one dropped segment in SYN-RECEIVED silenced the server forever."""
    h = Harness()
    listener = h.layer.listen(0, 8080, 8)
    h.inject(SYN, 0, options=MSS_ONLY)
    h.our_isn = h.one().seq  # this SYN-ACK is "lost"
    h.at(0.9)
    assert h.take() == []
    h.at(1.0)
    again = h.one()  # RFC 6298: retransmitted after the initial RTO
    assert again.flags == SYN | ACK and again.seq == h.our_isn
    h.inject(SYN, 0, options=MSS_ONLY)  # the peer's own SYN retransmission is answered too
    assert h.one().flags == SYN | ACK
    h.inject(ACK, 1, 1)
    assert listener.accept() is not None


def test_half_open_reset_frees_the_backlog_slot() -> None:
    """seqs leaked the slot of a half-open connection that was reset."""
    h = Harness(syn_cookies=False)
    listener = h.layer.listen(0, 8080, 1)
    h.inject(SYN, 0, options=MSS_ONLY)
    h.our_isn = h.one().seq
    h.remote_port = 40001
    h.inject(SYN, 0, options=MSS_ONLY)
    assert h.take() == [] and h.layer.counters["listen_overflows"] == 1  # full: dropped
    h.remote_port = 40000
    h.inject(RST, 1)
    assert not listener.half_open
    h.remote_port = 40001
    h.inject(SYN, 0, options=MSS_ONLY)
    assert h.one().flags == SYN | ACK


# ----------------------------------------------------------------- data

def test_data_is_acked_with_delayed_ack_and_every_second_segment() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.quick_acks = 0  # past the quick-ACK start of the connection (tested below)
    h.inject(ACK | PSH, 1, 1, payload=b"a" * 100)
    assert h.take() == []
    h.at(0.039)
    assert h.take() == []
    h.at(0.040)
    ack = h.one()
    assert ack.flags == ACK and h.rel_ack(ack) == 101  # RFC 9293 3.8.6.3: delayed, under 500 ms
    h.inject(ACK, 101, 1, payload=b"b" * 1460)
    assert h.take() == []
    h.inject(ACK, 1561, 1, payload=b"c" * 1460)
    assert h.rel_ack(h.one()) == 3021  # every second full-sized segment at once
    assert conn.recv(10_000) == b"a" * 100 + b"b" * 1460 + b"c" * 1460


def test_seqs_out_of_order_segments_are_kept_and_sacked() -> None:
    """seqs dropped out-of-order segments."""
    h = Harness()
    _, conn = h.passive_open(options=tcpwire.build_options(mss=1460, sack_permitted=True))
    h.inject(ACK, 101, 1, payload=b"y" * 100)  # hole at 1..101
    dup = h.one()
    assert h.rel_ack(dup) == 1  # immediate duplicate ACK (RFC 5681 4.2)
    blocks = [((left - 1_000_000) & 0xFFFFFFFF, (right - 1_000_000) & 0xFFFFFFFF)
              for left, right in dup.options.sack_blocks or []]
    assert blocks == [(101, 201)]
    h.inject(ACK, 1, 1, payload=b"x" * 100)  # fills the hole
    assert h.rel_ack(h.one()) == 201  # at once (hole filled)
    assert conn.recv(1000) == b"x" * 100 + b"y" * 100


def test_seqs_out_of_window_segments_are_acked() -> None:
    h = Harness()
    _, conn = h.passive_open()
    h.inject(ACK, 5_000_000, 1, payload=b"far away")
    ack = h.one()
    assert ack.flags == ACK and h.rel_ack(ack) == 1
    assert conn.recv(100) is None


def test_seqs_retransmitted_syn_on_established_gets_challenge_ack() -> None:
    h = Harness()
    _, conn = h.passive_open()
    before = (conn.snd_una, conn.snd_nxt, conn.rcv_nxt)
    h.inject(SYN, 0, options=MSS_ONLY)
    ack = h.one()
    assert ack.flags == ACK and h.rel_ack(ack) == 1  # RFC 5961 4.2
    assert conn.state == "ESTABLISHED" and (conn.snd_una, conn.snd_nxt, conn.rcv_nxt) == before


def test_rst_in_window_but_not_exact_is_challenged() -> None:
    h = Harness()
    _, conn = h.passive_open()
    h.inject(RST, 50)
    assert h.one().flags == ACK and conn.state == "ESTABLISHED"  # RFC 5961 3.2
    h.inject(RST, 1)
    assert conn.state == "CLOSED" and conn.error is not None and conn.error.errno == errno.ECONNRESET


def test_seqs_data_is_retransmitted_with_backoff() -> None:
    """seqs never retransmitted data."""
    h = Harness(rto_min=1.0)
    _, conn = h.passive_open()
    conn.send(b"hello")
    h.at(0.0)
    first = h.one()
    assert first.payload.tobytes() == b"hello"
    sent_at = []
    for t in [0.5, 1.0, 1.5, 3.0, 6.9, 7.0]:
        h.at(t)
        sent_at += [t for s in h.take() if s.payload.tobytes() == b"hello"]
    assert sent_at == [1.0, 3.0, 7.0]  # RTO 1 s, then 2 s, then 4 s (RFC 6298 5.5)
    h.inject(ACK, 1, 6)
    assert conn.snd_una - conn.iss == 6 and conn.rtx_deadline is None


def test_rcvbuf_over_64k_is_advertised_with_window_scaling() -> None:
    h = Harness(rcvbuf=1 << 20)
    _, conn = h.passive_open(options=tcpwire.build_options(mss=1460, wscale=7))
    h.inject(ACK | PSH, 1, 1, payload=b"z" * 10)
    h.at(0.1)
    ack = h.one()
    assert conn.rcv_wscale == 5
    assert abs((ack.window << 5) - ((1 << 20) - 10)) < 64


def test_seqs_send_space_never_shrinks_while_writes_continue() -> None:
    h = Harness(sndbuf=100_000)
    _, conn = h.passive_open()
    spaces = []
    for _ in range(5):
        spaces.append(conn.send_space)
        conn.send(b"q" * 10_000)
        h.at(h.now)
        h.take()
    assert spaces == [100_000, 90_000, 80_000, 70_000, 60_000]


def test_seqs_close_never_drops_queued_writes() -> None:
    h = Harness()
    _, conn = h.passive_open(window=65535)
    payload = bytes(range(256)) * 40  # 10,240 bytes: 8 segments, inside the initial window
    conn.send(payload)
    conn.close()
    h.at(0.0)
    segments = h.take()
    data = b"".join(s.payload.tobytes() for s in segments)
    assert data == payload and segments[-1].flags & FIN
    assert conn.state == "FIN-WAIT-1"


def test_nagle_holds_small_segment_until_ack_unless_nodelay() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.send(b"a")
    h.at(0.0)
    assert h.one().payload.tobytes() == b"a"
    conn.send(b"b")
    h.at(0.0)
    assert h.take() == []  # RFC 896: held while "a" is unacknowledged
    h.inject(ACK, 1, 2)
    assert h.one().payload.tobytes() == b"b"
    conn.nodelay = True
    conn.send(b"c")
    h.at(0.0)
    assert h.one().payload.tobytes() == b"c"


def test_zero_window_probe() -> None:
    h = Harness(rto_min=1.0)
    _, conn = h.passive_open(window=0)
    conn.send(b"blocked")
    h.at(0.0)
    assert h.take() == []
    h.at(1.0)
    probe = h.one()
    assert len(probe.payload) == 1 and h.rel_seq(probe) == 1  # RFC 9293 3.8.6.1
    h.inject(ACK, 1, 1, window=0)
    h.at(2.9)
    assert h.take() == []
    h.at(3.0)
    assert len(h.one().payload) == 1  # backed off
    h.inject(ACK, 1, 3, window=1000)  # both probe bytes were taken; the window opens
    assert h.one().payload.tobytes() == b"ocked"


def test_fast_retransmit_on_three_duplicate_acks() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.send(b"d" * 1460 * 5)
    h.at(0.0)
    assert len(h.take()) == 5
    for _ in range(3):
        h.inject(ACK, 1, 1)
    resent = h.take()
    assert len(resent) >= 1 and h.rel_seq(resent[0]) == 1 and len(resent[0].payload) == 1460
    assert h.layer.counters["fast_retransmits"] == 1


def test_keepalive_probes_and_timeout() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.keepalive = True
    conn.keepalive_idle, conn.keepalive_interval, conn.keepalive_count = 10.0, 2.0, 3
    h.at(9.9)
    assert h.take() == []
    h.at(10.0)
    probe = h.one()
    assert h.rel_seq(probe) == 0 and not probe.payload  # SND.NXT - 1 (RFC 1122 4.2.3.6)
    h.at(12.0)
    h.at(14.0)
    assert len(h.take()) == 2
    h.at(16.0)
    assert conn.state == "CLOSED" and isinstance(conn.error, TimeoutError)


# ----------------------------------------------------------------- closing

def test_seqs_fin_wait_1_does_not_leave_on_ack_of_older_data() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.send(b"x" * 100)
    conn.close()
    h.at(0.0)
    segment = h.one()
    assert segment.flags & FIN and conn.state == "FIN-WAIT-1"
    h.inject(ACK, 1, 50)  # acknowledges older data only
    assert conn.state == "FIN-WAIT-1"
    h.inject(ACK, 1, 101)  # the data, not the FIN
    assert conn.state == "FIN-WAIT-1"
    h.inject(ACK, 1, 102)  # the FIN
    assert conn.state == "FIN-WAIT-2"


def test_seqs_fin_in_fin_wait_1_then_ack_goes_through_closing() -> None:
    """seqs panicked in CLOSING."""
    h = Harness(msl=1.0)
    _, conn = h.passive_open()
    conn.close()
    h.at(0.0)
    assert h.one().flags & FIN
    h.inject(FIN | ACK, 1, 1)  # their FIN crosses ours: simultaneous close
    assert conn.state == "CLOSING"
    assert h.rel_ack(h.one()) == 2
    h.inject(ACK, 2, 2)
    assert conn.state == "TIME-WAIT"
    h.at(1.9)
    assert conn.state == "TIME-WAIT"
    h.at(2.0)
    assert conn.state == "CLOSED" and not h.layer.connections


def test_passive_close_and_last_ack() -> None:
    h = Harness()
    _, conn = h.passive_open()
    h.inject(FIN | ACK, 1, 1)
    assert conn.state == "CLOSE-WAIT" and conn.recv(10) == b""
    h.at(0.04)
    h.take()
    conn.close()
    h.at(0.04)
    fin = h.one()
    assert fin.flags & FIN and conn.state == "LAST-ACK"
    h.inject(ACK, 2, 2)
    assert conn.state == "CLOSED"


def test_time_wait_acks_retransmitted_fin() -> None:
    h = Harness(msl=5.0)
    _, conn = h.passive_open()
    conn.close()
    h.at(0.0)
    h.take()
    h.inject(ACK, 1, 2)
    h.inject(FIN | ACK, 1, 2)
    assert conn.state == "TIME-WAIT"
    h.take()
    h.at(1.0)
    h.inject(FIN | ACK, 1, 2)  # our ACK was lost
    assert h.rel_ack(h.one()) == 2


def test_abortive_close_sends_rst() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.linger = (True, 0)
    conn.close()
    rst = h.one()
    assert rst.flags & RST and conn.state == "CLOSED"


@pytest.mark.parametrize("state_setup", ["established", "close_wait"])
def test_shutdown_write_half_closes_and_data_keeps_arriving(state_setup: str) -> None:
    h = Harness()
    _, conn = h.passive_open()
    if state_setup == "close_wait":
        h.inject(FIN | ACK, 1, 1)
    conn.shutdown_write()
    h.at(0.0)
    assert any(s.flags & FIN for s in h.take())
    if state_setup == "established":
        h.inject(ACK | PSH, 1, 2, payload=b"still coming")
        assert conn.recv(100) == b"still coming"


# ----------------------------------------------------------------- SYN cookies (RFC 4987)

def _fill_syn_queue(h: Harness, count: int) -> None:
    for i in range(count):
        h.remote_port = 41000 + i
        h.inject(SYN, 0, options=MSS_ONLY)
        assert h.one().flags == SYN | ACK
    h.remote_port = 40000


def test_syn_cookie_when_the_syn_queue_is_full_carries_mss_wscale_and_sack() -> None:
    h = Harness(syn_backlog=2, rcvbuf=1 << 20)
    listener = h.layer.listen(0, 8080, 16)
    _fill_syn_queue(h, 2)
    h.now = 10.0
    h.inject(SYN, 0, options=tcpwire.build_options(mss=1400, wscale=6, sack_permitted=True, ts=(5000, 0)))
    cookie = next(s for s in h.take() if s.dport == 40000)  # (half-open SYN-ACKs are retransmitted too)
    assert cookie.flags == SYN | ACK and h.layer.counters["syncookies_sent"] == 1
    assert len(listener.half_open) == 2  # no state was kept for it
    h.our_isn = cookie.seq
    h.inject(ACK, 1, 1, options=tcpwire.build_options(ts=(5001, cookie.options.ts_val)), payload=b"early data")
    conn = listener.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    assert conn.mss == 1400 - 12 and conn.snd_wscale == 6 and conn.rcv_wscale == 5 and conn.sack_ok and conn.ts_ok
    assert conn.recv(100) == b"early data"
    conn.send(b"reply")
    h.at(h.now)
    reply = [s for s in h.take() if s.payload]
    assert reply[0].payload.tobytes() == b"reply" and h.rel_seq(reply[0]) == 1
    assert ((reply[0].options.ts_val - cookie.options.ts_val) & 0xFFFFFFFF) < 0x80000000  # never goes back (PAWS)


def test_forged_or_stale_cookie_ack_gets_rst() -> None:
    h = Harness(syn_backlog=1)
    listener = h.layer.listen(0, 8080, 16)
    _fill_syn_queue(h, 1)
    h.inject(SYN, 0, options=MSS_ONLY)
    cookie = h.one()
    h.our_isn = cookie.seq
    h.inject(ACK, 1, 2)  # wrong cookie
    assert h.one().flags == RST and h.layer.counters["syncookies_failed"] == 1
    h.at(200.0)  # cookies live for two 64-second periods at most
    h.take()  # (the half-open connection's SYN-ACK retransmissions)
    h.inject(ACK, 1, 1)
    assert h.one().flags == RST and listener.accept() is None


def test_orphaned_fin_wait_2_times_out() -> None:
    h = Harness(fin_timeout=10.0)
    _, conn = h.passive_open()
    conn.close()
    h.at(0.0)
    h.take()
    h.inject(ACK, 1, 2)
    assert conn.state == "FIN-WAIT-2"
    h.at(9.9)
    assert conn.state == "FIN-WAIT-2"
    h.at(10.0)
    assert conn.state == "CLOSED" and not h.layer.connections


def test_half_closed_fin_wait_2_waits_for_the_peer() -> None:
    h = Harness(fin_timeout=10.0)
    _, conn = h.passive_open()
    conn.shutdown_write()  # still readable: no orphan timeout
    h.at(0.0)
    h.take()
    h.inject(ACK, 1, 2)
    h.at(100.0)
    assert conn.state == "FIN-WAIT-2"
    h.inject(ACK | PSH, 1, 2, payload=b"late")
    assert conn.recv(10) == b"late"


def test_limited_transmit_sends_new_data_on_early_dupacks() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.send(b"L" * 1460 * 20)
    h.at(0.1)
    assert len(h.take()) == 10  # the initial window
    h.inject(ACK, 1, 1)  # first duplicate ACK
    new = h.take()
    assert len(new) == 1 and h.rel_seq(new[0]) == 1 + 10 * 1460  # RFC 3042: one new segment
    h.inject(ACK, 1, 1)
    assert h.rel_seq(h.one()) == 1 + 11 * 1460
    assert h.layer.counters["fast_retransmits"] == 0


def test_early_retransmit_with_little_in_flight() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.send(b"E" * 2920)  # two segments, nothing more to send
    h.at(0.1)
    assert len(h.take()) == 2
    h.inject(ACK, 1, 1)  # one dupack is all the receiver can send (RFC 5827: threshold 1)
    resent = h.one()
    assert h.rel_seq(resent) == 1 and len(resent.payload) == 1460
    assert h.layer.counters["fast_retransmits"] == 1


def test_segmentation_offload_hands_over_whole_mss_multiples() -> None:
    from usernet.wire.checksum import finish, pseudo_header_sum

    h = Harness()
    h.layer.gso_for = lambda dst: 8 * 1460
    _, conn = h.passive_open()
    conn.send(b"T" * 30_000)
    h.at(0.1)
    segments = h.take()
    sizes = [len(s.payload) for s in segments]
    assert sizes == [8 * 1460, 2 * 1460]  # the initial window (10 segments), cut at the GSO limit
    assert h.gso_sizes[-2:] == [1460, 1460]
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum for the kernel to complete.
    raw_len = 20 + 8 * 1460
    expected = 0xFFFF - finish(pseudo_header_sum(0xC0A80001, 0xC0000201, 6, raw_len))
    assert int.from_bytes(segments[0].payload.obj[16:18], "big") == expected  # type: ignore[index]
    h.inject(ACK, 1, 1 + 10 * 1460)  # the ACK opens the window: the rest goes out in big pieces too
    more = h.take()
    assert all(len(s.payload) % 1460 == 0 or s is more[-1] for s in more) and len(more[0].payload) > 1460


# ----------------------------------------------------------------- ACK policy (issue 10)

def test_quick_acks_at_the_start_then_delayed_and_counted() -> None:
    h = Harness()
    _, conn = h.passive_open()
    for i in range(16):  # Linux TCP_MAX_QUICKACKS: the first 16 in-order segments at once
        h.inject(ACK | PSH, 1 + 10 * i, 1, payload=b"q" * 10)
        assert h.rel_ack(h.one()) == 11 + 10 * i
    assert h.layer.counters["quick_acks"] == 16 and conn.quick_acks == 0
    h.inject(ACK | PSH, 161, 1, payload=b"q" * 10)
    assert h.take() == []
    h.at(h.now + 0.04)
    assert h.rel_ack(h.one()) == 171
    # Data after more than an RTO without any refills the budget (Linux tcp_event_data_recv).
    h.at(h.now + conn.rto + 0.01)
    h.inject(ACK | PSH, 171, 1, payload=b"q" * 10)
    assert h.rel_ack(h.one()) == 181 and conn.quick_acks == 15


def test_segment_over_one_mss_is_acked_at_once() -> None:
    h = Harness()
    _, conn = h.passive_open()
    conn.quick_acks = 0
    h.inject(ACK, 1, 1, payload=b"g" * 2000)  # a GRO super-frame, or a peer over our MSS
    assert h.rel_ack(h.one()) == 2001
    h.inject(ACK, 2001, 1, payload=b"g" * 1460)  # one full segment: waits
    assert h.take() == []
    h.inject(ACK | PSH, 3461, 1, payload=b"g" * 10)  # more than one full segment unacknowledged
    assert h.rel_ack(h.one()) == 3471


def test_small_reads_send_no_window_updates() -> None:
    h = Harness(rcvbuf=64_000)
    _, conn = h.passive_open()
    conn.quick_acks = 0
    for i in range(20):
        h.inject(ACK, 1 + 1460 * i, 1, payload=b"r" * 1460)
        assert conn.recv(1460) == b"r" * 1460  # the reader keeps up: the buffer stays empty
    acks = h.take()
    assert len(acks) == 10  # one per two segments (RFC 5681 4.2), none for the reads


def test_dsack_can_be_switched_off() -> None:
    sack = tcpwire.build_options(mss=1460, sack_permitted=True)
    for dsack, blocks in ((True, [(1, 101)]), (False, None)):
        h = Harness(dsack=dsack)
        _, conn = h.passive_open(options=sack)
        h.inject(ACK, 1, 1, payload=b"d" * 100)
        h.take()
        h.inject(ACK, 1, 1, payload=b"d" * 100)
        ack = h.one()
        got = ack.options.sack_blocks
        if got is not None:
            got = [((s - 1_000_000) & 0xFFFFFFFF, (e - 1_000_000) & 0xFFFFFFFF) for s, e in got]
        assert got == blocks
        assert h.layer.counters["dsacks_sent"] == (1 if dsack else 0)


def test_dsack_undoes_a_spurious_retransmission_timeout() -> None:
    h = Harness()
    _, conn = h.passive_open(options=tcpwire.build_options(mss=1460, sack_permitted=True))
    conn.send(b"s" * 1460 * 4)
    h.at(0.0)
    assert len(h.take()) == 4
    before = (conn.cc.cwnd, conn.cc.ssthresh)
    h.at(conn.rtx_deadline)  # the ACKs are only late
    resent = h.one()
    assert h.rel_seq(resent) == 1 and conn.cc.cwnd == conn.mss
    h.inject(ACK, 1, 1 + 1460 * 4)  # the originals' ACK
    h.take()
    assert conn.cc.cwnd < before[0]
    dsack = tcpwire.build_options(sack_blocks=[((h.our_isn + 1) & 0xFFFFFFFF, (h.our_isn + 1461) & 0xFFFFFFFF)])
    h.inject(ACK, 1, 1 + 1460 * 4, options=dsack)  # our retransmission arrived twice
    assert (conn.cc.cwnd, conn.cc.ssthresh) == before
    assert h.layer.counters["dsack_undos"] == 1 and h.layer.counters["dsacks_received"] == 1


def test_dsack_of_a_segment_never_retransmitted_undoes_nothing() -> None:
    h = Harness()
    _, conn = h.passive_open(options=tcpwire.build_options(mss=1460, sack_permitted=True))
    conn.send(b"n" * 1460 * 6)
    h.at(0.0)
    h.take()
    for blocks in ([(1461, 2921)], [(1461, 4381)], [(1461, 5841)]):
        h.inject(ACK, 1, 1, options=tcpwire.build_options(
            sack_blocks=[((h.our_isn + s) & 0xFFFFFFFF, (h.our_isn + e) & 0xFFFFFFFF) for s, e in blocks]))
    assert h.layer.counters["fast_retransmits"] == 1
    reduced = conn.cc.cwnd
    h.take()
    h.inject(ACK, 1, 1 + 1460 * 6)  # the retransmission filled the hole
    dup = tcpwire.build_options(sack_blocks=[((h.our_isn + 1461) & 0xFFFFFFFF, (h.our_isn + 2921) & 0xFFFFFFFF)])
    h.inject(ACK, 1, 1 + 1460 * 6, options=dup)  # a network duplicate of an original: not ours
    assert h.layer.counters["dsack_undos"] == 0 and conn.cc.cwnd <= max(reduced, 2 * conn.mss)


def test_listener_close_stops_synack_retransmissions() -> None:
    h = Harness()
    listener = h.layer.listen(0, 8080, 8)
    h.inject(SYN, 0, options=MSS_ONLY)
    h.our_isn = h.one().seq
    listener.close()
    h.at(0.0)
    assert h.take() == [] and not h.layer.connections  # no RST for a half-open connection
    h.at(10.0)
    assert h.take() == []  # and no SYN-ACK retransmission
    h.inject(ACK, 1, 1)
    rst = h.one()
    assert rst.flags == RST and h.rel_seq(rst) == 1  # a closed port: <SEQ=SEG.ACK><CTL=RST>
