"""Drive one TcpLayer segment by segment at explicit times (the smoltcp / packetdrill way).

The harness plays the remote host 192.0.2.1 talking to our 192.168.0.1; sequence numbers in
the helpers are relative to the remote's ISN (``REMOTE_ISN``) and our ISN (read from the SYN or
SYN-ACK we sent).
"""

from __future__ import annotations

import random

from usernet.tcp.config import TcpConfig
from usernet.tcp.layer import TcpLayer
from usernet.wire import ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK, SYN

LOCAL = ipv4.addr("192.168.0.1")
REMOTE = ipv4.addr("192.0.2.1")
REMOTE_ISN = 1_000_000
REMOTE_PORT = 40000


class Harness:
    def __init__(self, **config: object) -> None:
        self.config = TcpConfig(**config)  # type: ignore[arg-type]
        self.sent: list[tcpwire.TcpSegment] = []
        self.gso_sizes: list[int] = []
        self.layer = TcpLayer(rng=random.Random(7), output=self._output, mtu_for=lambda dst: 1500,
                              config=self.config)
        self.now = 0.0
        self.our_isn = 0
        self.remote_port = REMOTE_PORT
        self.local_port = 8080

    def _output(self, src: int, dst: int, segment: bytes | bytearray, gso_size: int = 0) -> None:
        assert src == LOCAL and dst == REMOTE
        self.sent.append(tcpwire.parse(bytes(segment)))
        self.gso_sizes.append(gso_size)

    def take(self) -> list[tcpwire.TcpSegment]:
        out, self.sent = self.sent, []
        return out

    def one(self) -> tcpwire.TcpSegment:
        out = self.take()
        assert len(out) == 1, out
        return out[0]

    def at(self, when: float) -> None:
        assert when >= self.now
        self.now = when
        self.layer.poll(when)
        self.layer.check_invariants()

    def inject(self, flags: int, seq: int, ack: int = 0, window: int = 65535, payload: bytes = b"",
               options: bytes = b"", raw_seq: bool = False) -> None:
        """A segment from the remote; *seq* relative to REMOTE_ISN, *ack* relative to our ISN."""
        wire_seq = seq if raw_seq else (REMOTE_ISN + seq) & 0xFFFFFFFF
        wire_ack = (self.our_isn + ack) & 0xFFFFFFFF if flags & ACK else 0
        segment = tcpwire.build(REMOTE, LOCAL, self.remote_port, self.local_port, wire_seq, wire_ack, flags, window,
                                options, payload)
        self.layer.receive(REMOTE, LOCAL, memoryview(segment), self.now)
        self.layer.poll(self.now)
        self.layer.check_invariants()

    def rel_seq(self, segment: tcpwire.TcpSegment) -> int:
        return (segment.seq - self.our_isn) & 0xFFFFFFFF

    def rel_ack(self, segment: tcpwire.TcpSegment) -> int:
        return (segment.ack - REMOTE_ISN) & 0xFFFFFFFF

    # ----------------------------------------------------------------- common openings

    def passive_open(self, options: bytes | None = None, window: int = 65535):  # type: ignore[no-untyped-def]
        """Listen, complete a handshake from the remote; returns (listener, accepted connection)."""
        listener = self.layer.listen(0, self.local_port, 8)
        if options is None:
            options = tcpwire.build_options(mss=1460)
        self.inject(SYN, 0, window=window, options=options)
        synack = self.one()
        assert synack.flags == SYN | ACK
        self.our_isn = synack.seq
        assert self.rel_ack(synack) == 1
        self.inject(ACK, 1, 1, window=window)
        conn = listener.accept()
        assert conn is not None and conn.state == "ESTABLISHED"
        assert self.take() == []
        return listener, conn

    def active_open(self, options: bytes | None = None, window: int = 65535):  # type: ignore[no-untyped-def]
        conn = self.layer.connect(LOCAL, self.local_port, REMOTE, self.remote_port, self.now)
        self.layer.poll(self.now)
        self.layer.check_invariants()
        syn = self.one()
        assert syn.flags == SYN
        self.our_isn = syn.seq
        if options is None:
            options = tcpwire.build_options(mss=1460)
        self.inject(SYN | ACK, 0, 1, window=window, options=options)
        ack = self.one()
        assert ack.flags == ACK and self.rel_ack(ack) == 1
        assert conn.state == "ESTABLISHED"
        return conn
