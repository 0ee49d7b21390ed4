"""Bulk send (issue 17): acknowledged bytes leave the send buffer once they are at least half
of it (a bytearray cut at the front on every ACK made each append recopy the buffer), while
SO_SNDBUF, the writer's room and the byte counters see only what is not yet acknowledged."""

from __future__ import annotations

from tests.tcp.harness import Harness
from usernet.wire.tcp import ACK


def test_acknowledged_prefix_is_cut_at_half_and_never_counts_against_sndbuf() -> None:
    h = Harness(sndbuf=64 * 1024)
    _, conn = h.passive_open(window=65535)
    assert conn.send(bytes(100_000)) == 64 * 1024
    assert conn.send_space == 0
    h.at(0.01)
    h.take()
    acked = 0
    for step in (1460, 2 * 1460, 3 * 1460):  # less than half: kept, but out of SO_SNDBUF's count
        acked += step
        h.inject(ACK, 1, 1 + acked, window=65535)
        assert conn.snd_una == conn.iss + 1 + acked
        assert conn.buf_seq == conn.iss + 1 and len(conn.send_buf) == 64 * 1024
        assert conn.send_space == acked
        assert h.layer.counters["bytes_acked"] == acked
    # The writer takes the room back: the live bytes stay within SO_SNDBUF.
    assert conn.send(bytes(100_000)) == acked
    assert conn.send_space == 0 and len(conn.send_buf) == 64 * 1024 + acked
    # Acknowledge whatever is sent, one MSS at a time, until the prefix is cut.
    now = 0.02
    cut = False
    while not cut:
        h.at(now)
        now += 0.01
        sent_end = max((h.rel_seq(s) + len(s.payload) for s in h.take()), default=0)
        while acked + 1 + 1460 <= sent_end and not cut:
            acked += 1460
            before = len(conn.send_buf)
            h.inject(ACK, 1, 1 + acked, window=65535)
            prefix_before = acked  # buf_seq was iss + 1 until this cut
            cut = conn.buf_seq == conn.snd_una
            if cut:
                assert 2 * prefix_before >= before  # at half, not sooner
            else:
                assert 2 * (conn.snd_una - conn.buf_seq) < len(conn.send_buf)
            assert h.layer.counters["bytes_acked"] == acked
            assert conn.send_space == conn.sndbuf - (conn.buf_seq + len(conn.send_buf) - conn.snd_una)
        assert now < 5
    assert h.layer.mem_used == len(conn.send_buf) == 64 * 1024 + 6 * 1460 - acked


def test_everything_acknowledged_leaves_an_empty_buffer_and_the_fin_still_counts() -> None:
    h = Harness()
    _, conn = h.passive_open(window=65535)
    assert conn.send(bytes(10_000)) == 10_000
    h.at(0.01)
    h.take()
    h.inject(ACK, 1, 1 + 1460, window=65535)  # a small prefix: kept
    assert len(conn.send_buf) == 10_000
    conn.shutdown_write()
    h.at(0.02)
    h.take()
    h.inject(ACK, 1, 1 + 10_000 + 1, window=65535)  # the data and the FIN
    assert not conn.send_buf and conn.buf_seq == conn.iss + 1 + 10_000 and conn.state == "FIN-WAIT-2"
    assert h.layer.counters["bytes_acked"] == 10_000 and h.layer.mem_used == 0
