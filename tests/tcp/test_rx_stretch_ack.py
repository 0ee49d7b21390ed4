"""Stretch ACKs on the receive fast path: in-order data received between two polls of the layer
(one runtime pass) is acknowledged once, at the poll, up to STRETCH_ACK_SEGMENTS segments' worth;
quick ACKs, out-of-order data and the delayed-ACK timer behave as before."""

from __future__ import annotations

from tests.tcp.harness import LOCAL, REMOTE, REMOTE_ISN, Harness
from usernet.tcp.connection import MAX_QUICKACKS, STRETCH_ACK_SEGMENTS
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK

MSS = 1448  # 1460 less the timestamp option
TS_SYN = tcpwire.build_options(mss=1460, sack_permitted=True, ts=(100, 0), wscale=7)


def _setup() -> tuple[Harness, object, int]:
    """An established passive connection with timestamps and SACK, its quick-ACK budget spent;
    returns (harness, connection, next relative sequence number)."""
    h = Harness()
    listener = h.layer.listen(0, h.local_port, 8)
    h.inject(tcpwire.SYN, 0, window=64240, options=TS_SYN)
    synack = h.one()
    h.our_isn = synack.seq
    h.inject(ACK, 1, 1, window=502, options=tcpwire.build_options(ts=(101, synack.options.ts_val or 0)))
    conn = listener.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    seq = 1
    for _ in range(MAX_QUICKACKS):
        _data(h, seq)
        seq += MSS
        h.layer.poll(h.now)
    assert len(h.take()) == MAX_QUICKACKS
    return h, conn, seq


def _data(h: Harness, seq: int, size: int = MSS) -> None:
    """A data segment from the remote, handed to the layer without a poll (as within a pass)."""
    segment = tcpwire.build(REMOTE, LOCAL, h.remote_port, h.local_port, (REMOTE_ISN + seq) & 0xFFFFFFFF,
                            (h.our_isn + 1) & 0xFFFFFFFF, ACK, 502, tcpwire.build_options(ts=(200, 0)),
                            bytes(size))
    h.layer.receive(REMOTE, LOCAL, memoryview(segment), h.now)


def test_one_ack_per_poll_for_in_order_data() -> None:
    h, _, seq = _setup()
    for _ in range(10):
        _data(h, seq)
        seq += MSS
    assert h.take() == []  # nothing before the pass's end
    h.layer.poll(h.now)
    (ack,) = h.take()
    assert ack.flags == ACK and h.rel_ack(ack) == seq
    h.layer.check_invariants()


def test_stretch_is_bounded() -> None:
    h, _, seq = _setup()
    for _ in range(STRETCH_ACK_SEGMENTS + 5):
        _data(h, seq)
        seq += MSS
    acks = h.take()
    assert len(acks) == 1 and h.rel_ack(acks[0]) == 1 + MSS * (MAX_QUICKACKS + STRETCH_ACK_SEGMENTS)
    h.layer.poll(h.now)
    (last,) = h.take()
    assert h.rel_ack(last) == seq


def test_single_segment_still_waits_for_the_delayed_ack_timer() -> None:
    h, _, seq = _setup()
    _data(h, seq)
    h.layer.poll(h.now)
    assert h.take() == []
    h.at(h.now + 0.039)
    assert h.take() == []
    h.at(h.now + 0.002)
    (ack,) = h.take()
    assert h.rel_ack(ack) == seq + MSS


def test_out_of_order_data_is_acked_at_once_with_sack() -> None:
    h, _, seq = _setup()
    _data(h, seq)
    _data(h, seq + MSS)
    _data(h, seq + 3 * MSS)  # a hole at seq + 2 MSS
    acks = h.take()
    assert acks and h.rel_ack(acks[-1]) == seq + 2 * MSS
    assert acks[-1].options.sack_blocks
    _data(h, seq + 2 * MSS)  # fills the hole: ACKed at once too
    acks = h.take()
    assert acks and h.rel_ack(acks[-1]) == seq + 4 * MSS
