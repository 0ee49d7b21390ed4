"""An orderly close is orderly: after the last ACK of the FIN exchange nothing more is sent.

Before the fix, the side that read EOF sent a pure window-update ACK after both FINs; the peer,
already closed, answered it with RST (visible in the demo and against Linux).
"""

from __future__ import annotations

import threading
import time

import usernet
from usernet.links.memory import Switch
from usernet.links.middleware import LinkWrapper
from usernet.wire import ethernet, ipv4
from usernet.wire import tcp as tcpwire


class Recorder(LinkWrapper):
    """Keeps every TCP segment sent: (flags, seq, ack, payload length)."""

    def __init__(self, inner: usernet.links.base.Link) -> None:
        super().__init__(inner)
        self.sent: list[tuple[int, int, int, int]] = []
        self.lock = threading.Lock()

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        _, _, ethertype, offset = ethernet.parse(frame)
        if ethertype == ethernet.ETHERTYPE_IPV4:
            packet = ipv4.parse(frame, offset)
            if packet.proto == 6:
                seg = tcpwire.parse(packet.payload)
                with self.lock:
                    self.sent.append((seg.flags, seg.seq, seg.ack, len(seg.payload)))
        self.inner.send(frame)


def _exchange() -> tuple[Recorder, Recorder]:
    switch = Switch()
    link_a, link_b = Recorder(switch.port()), Recorder(switch.port())
    with usernet.Host(link_a, addr="10.9.1.1/24", seed=1) as a, usernet.Host(link_b, addr="10.9.1.2/24", seed=2) as b:
        server = b.create_server(("10.9.1.2", 7100))
        done = threading.Event()

        def serve() -> None:
            peer, _ = server.accept()
            with peer:
                peer.settimeout(5)
                data = bytearray()
                while chunk := peer.recv(65536):
                    data += chunk
                peer.sendall(bytes(data))
            done.set()

        thread = threading.Thread(target=serve)
        thread.start()
        with a.create_connection(("10.9.1.2", 7100), timeout=5) as conn:
            conn.sendall(b"y" * 200_000)
            conn.shutdown(1)
            received = bytearray()
            while chunk := conn.recv(4096):  # small reads: each frees buffer space
                received += chunk
            assert len(received) == 200_000
        thread.join(5)
        assert done.is_set()
        time.sleep(0.3)  # anything sent late (delayed ACK, window update) has gone out by now
    return link_a, link_b


def test_nothing_after_the_final_ack() -> None:
    link_a, link_b = _exchange()
    for link in (link_a, link_b):
        with link.lock:
            records = list(link.sent)
        assert not any(flags & tcpwire.RST for flags, *_ in records), records[-6:]
    # a shut down first; b's FIN came last. b sends nothing after its FIN (no loss here), and a
    # nothing after the ACK that acknowledges that FIN.
    fins_b = [i for i, (flags, *_) in enumerate(link_b.sent) if flags & tcpwire.FIN]
    assert fins_b == [len(link_b.sent) - 1], link_b.sent[-4:]
    _, fin_seq, _, fin_len = link_b.sent[-1]
    fin_acked = (fin_seq + fin_len + 1) & 0xFFFFFFFF
    acks = [i for i, (flags, _, ack, _) in enumerate(link_a.sent) if flags & tcpwire.ACK and ack == fin_acked]
    assert acks and acks[0] == len(link_a.sent) - 1, link_a.sent[acks[0] if acks else -4:]
