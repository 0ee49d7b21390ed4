"""TCP under attack (issue 12): ACK loops, the challenge-ACK side channel, host-wide buffer memory.

All in virtual time: the two-stack simulator (tests/tcp/sim.py) or one layer driven segment by
segment (tests/tcp/harness.py).
"""

from __future__ import annotations

from tests.tcp.harness import LOCAL, REMOTE, REMOTE_ISN, Harness
from tests.tcp.sim import A_IP, B_IP, LossyNet
from usernet.tcp.config import TcpConfig
from usernet.wire import ethernet, ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.tcp import ACK, PSH, RST, SYN


def _established_pair(net: LossyNet, port: int = 80):  # type: ignore[no-untyped-def]
    listener = net.b.tcp.listen(0, port, 64)
    client = net.a.tcp.connect(A_IP, 0, B_IP, port, net.now)
    net.run_until(lambda: bool(listener.accept_queue), limit=10)
    server = listener.accept()
    assert server is not None
    return listener, client, server


# ----------------------------------------------------------------- 1. ACK loops (tcp_invalid_ratelimit)

def test_one_spoofed_segment_cannot_start_an_endless_ack_loop() -> None:
    """A spoofed data segment that B accepts as A's moves B's RCV.NXT beyond anything A sent:
    B's ACKs now acknowledge data A never sent (A answers with an ACK, RFC 5961 5.2) and A's
    ACKs lie below B's window (B answers with an ACK, RFC 9293 3.10.7.4). Without Linux's
    tcp_invalid_ratelimit the two answer each other for ever, as fast as the path allows."""
    net = LossyNet()
    _, client, server = _established_pair(net)
    client.send(b"hello")
    net.run_until(lambda: server.recv(100) == b"hello", limit=5)
    net.run_for(1.0)
    seg = tcpwire.build(A_IP, B_IP, client.local_port, 80, client.snd_max & 0xFFFFFFFF,
                        server.snd_max & 0xFFFFFFFF, ACK | PSH, 65535, b"", b"x" * 100)
    packet = ipv4.build(src=A_IP, dst=B_IP, proto=ipv4.PROTO_TCP, payload=seg, ident=4242)
    spoof = ethernet.build(net.b.mac, net.a.mac, ethernet.ETHERTYPE_IPV4, packet)
    frames_before = net.frames
    net.b.receive(spoof, net.now)
    assert server.rcv_nxt == client.snd_max + 100  # desynchronised
    duration = 10.0
    end = net.now + duration
    # Without the limit this is about 1,000 frames a second here (each hop takes 1 ms): stop
    # counting early rather than simulate them all.
    while net.now < end and net.frames - frames_before < 10_000:
        if not net.step():
            break
    frames = net.frames - frames_before
    # At most one ACK per connection per 500 ms in each direction, plus the first answer.
    assert frames <= 2 * (duration / TcpConfig().invalid_ratelimit + 2), frames
    assert net.a.tcp.counters["invalid_ack_ratelimited"] + net.b.tcp.counters["invalid_ack_ratelimited"] > 0


def test_out_of_window_pure_acks_are_answered_once_per_interval_but_data_always() -> None:
    h = Harness()
    _, conn = h.passive_open()
    h.take()
    h.at(1.0)
    for _ in range(50):  # pure ACKs far beyond the window: one answer
        h.inject(ACK, 1 + (1 << 30), 1)
    assert len(h.take()) == 1
    assert h.layer.counters["invalid_ack_ratelimited"] == 49
    for _ in range(5):  # old duplicate data needs its ACK (and D-SACK) at once: never limited
        h.inject(ACK, 1 - 100, 1, payload=b"d" * 50)
    assert len(h.take()) == 5
    h.at(1.6)  # the interval is over
    h.inject(ACK, 1 + (1 << 30), 1)
    assert len(h.take()) == 1
    for _ in range(10):  # an ACK of data never sent (RFC 5961 5.2): limited the same way
        h.inject(ACK, 1, 1000)
    assert len(h.take()) == 0
    h.at(2.2)
    h.inject(ACK, 1, 1000)
    assert len(h.take()) == 1
    assert conn.state == "ESTABLISHED"


# ----------------------------------------------------------------- 2. challenge ACKs (RFC 5961 7)

def test_challenge_acks_are_limited_per_connection() -> None:
    h = Harness()
    _, conn = h.passive_open()
    h.at(1.0)
    for i in range(1000):  # an attacker's burst of in-window RSTs on one connection
        h.inject(RST, 100 + i)
    assert len(h.take()) == 1
    h.at(1.5)
    h.inject(SYN, 100)
    assert len(h.take()) == 1  # one more per interval (shared by RST, SYN and old-ACK challenges)
    assert h.layer.counters["challenge_ack_ratelimited"] == 999
    assert conn.state == "ESTABLISHED"


def _attack(victim_probed: list[bool], attacker_conns: int = 200, limit: int = 100) -> list[int]:
    """CVE-2016-5696: an off-path attacker holds *attacker_conns* connections of its own to the
    host and, once a second, draws one challenge ACK on each (an in-window RST). In the seconds
    marked True it first sends one spoofed in-window RST to a victim connection: the host
    challenges the victim, spending the host-wide budget. Returns, per second, how many
    challenge ACKs the attacker received."""
    h = Harness(challenge_ack_limit=limit)
    layer = h.layer
    layer.listen(0, h.local_port, attacker_conns + 8)
    isns: dict[int, int] = {}
    ports = list(range(41000, 41000 + attacker_conns)) + [50000]  # the last is the victim's
    for port in ports:
        h.remote_port = port
        h.inject(SYN, 0, options=tcpwire.build_options(mss=1460))
        synack = h.one()
        h.our_isn = isns[port] = synack.seq
        h.inject(ACK, 1, 1)
    assert len(layer.connections) == len(ports)
    h.take()

    def rst(port: int, now: float) -> None:
        segment = tcpwire.build(REMOTE, LOCAL, port, h.local_port, (REMOTE_ISN + 1 + 1000) & 0xFFFFFFFF,
                                (isns[port] + 1) & 0xFFFFFFFF, RST | ACK, 65535)
        layer.receive(REMOTE, LOCAL, memoryview(segment), now)

    seen = []
    for second, probed in enumerate(victim_probed, start=10):
        # Exact binary fractions: a one-second sliding window must see last second's ACKs expire.
        if probed:
            rst(50000, second + 1 / 1024)
        for port in ports[:-1]:
            rst(port, second + 1 / 128)
        layer.poll(second + 1 / 128)
        sent = h.take()
        seen.append(sum(1 for s in sent if s.dport != 50000))
        assert sum(1 for s in sent if s.dport == 50000) == int(probed)
    return seen


def test_challenge_ack_count_does_not_reveal_a_probed_victim() -> None:
    """The attacker compares the challenge ACKs it gets in seconds with and without its guess
    at the victim. With one exact budget (1,000/s; 100 here) it gets exactly one fewer when the
    guess was right; with a budget drawn at random each second the two distributions are the
    same but for a shift of one inside a spread of ~100: no threshold on the count tells them
    apart better than chance."""
    seconds = 100
    pattern = [i % 2 == 1 for i in range(seconds)]
    seen = _attack(pattern)
    with_victim = [n for n, p in zip(seen, pattern, strict=True) if p]
    without = [n for n, p in zip(seen, pattern, strict=True) if not p]
    # The budget varies from second to second over most of [limit/2, 3*limit/2).
    assert max(without) - min(without) > 50 and max(with_victim) - min(with_victim) > 50
    # The best single-count classifier ("victim hit iff count < t"), tried at every threshold.
    best = 0.0
    for t in range(0, 201):
        correct = sum(n < t for n in with_victim) + sum(n >= t for n in without)
        best = max(best, correct / seconds)
    assert best < 0.7, best  # exact budget: 1.0 at t = limit


def test_challenge_ack_budget_is_drawn_from_the_stack_rng_around_the_limit() -> None:
    seen = _attack([False] * 40, attacker_conns=200, limit=100)
    assert all(50 <= n <= 149 for n in seen)
    assert 80 <= sum(seen) / len(seen) <= 120
    assert seen == _attack([False] * 40, attacker_conns=200, limit=100)  # reproducible from the seed


# ----------------------------------------------------------------- 3. host-wide buffer memory (tcp_mem)

def _held(layer) -> int:  # type: ignore[no-untyped-def]
    return sum(len(c.send_buf) + len(c.rcv_buf) + c.ooo.bytes for c in layer.connections.values())


def test_fifty_clients_that_never_read_from_chargen_stay_within_the_memory_bound() -> None:
    """A chargen-like server writes as fast as send() takes data to 50 clients that never read.
    Per-socket limits alone let it queue 50 x SO_SNDBUF (50 MB) and the clients 50 x SO_RCVBUF;
    the host-wide bound holds both sides to their stated totals: the server's send() returns
    short, then nothing, and the clients' windows close as their host runs out."""
    net = LossyNet()
    server_limit, client_limit = 4 << 20, 2 << 20
    net.a.tcp.config.mem_limit = server_limit
    net.b.tcp.config.mem_limit = client_limit
    listener = net.a.tcp.listen(0, 19, 64)
    clients = [net.b.tcp.connect(B_IP, 0, A_IP, 19, net.now) for _ in range(50)]
    net.run_until(lambda: len(listener.accept_queue) == 50, limit=10)
    servers = [listener.accept() for _ in range(50)]
    block = bytes(range(256)) * 256  # 64 KB of chargen
    short_sends = 0
    for _ in range(100):  # 5 s of virtual time, the server writing whenever it can
        for conn in servers:
            assert conn is not None
            while True:
                taken = conn.send(block)
                if taken < len(block):
                    short_sends += 1
                    break
        net.run_for(0.05)
        assert net.a.tcp.mem_used <= server_limit and _held(net.a.tcp) <= server_limit
        assert net.b.tcp.mem_used <= client_limit and _held(net.b.tcp) <= client_limit
    assert net.a.tcp.mem_used == _held(net.a.tcp) and net.b.tcp.mem_used == _held(net.b.tcp)
    assert net.a.tcp.counters["send_mem_limited"] > 0
    # The server holds most of its bound: memory, not SO_SNDBUF, stopped it.
    assert net.a.tcp.mem_used > server_limit // 2
    # (The first few, before pressure began, may fill SO_SNDBUF; the rest get a fair share.)
    assert sum(1 for conn in servers if conn is not None and len(conn.send_buf) >= conn.sndbuf) <= 3
    # Every client that got data advertises a zero window now (SO_RCVBUF alone would allow
    # 1 MB less what it holds): its host is out of memory. (The others still have the window
    # they offered before pressure began; the server has no memory left to fill it.)
    fed = [c for c in clients if c.rcv_buf]
    assert len(fed) >= 10 and all(c._window_to_offer() == 0 for c in fed)
    assert net.b.tcp.counters["rcv_mem_dropped"] > 0
    # Memory comes back when the connections close (unread data: close() resets, RFC 2525 2.17).
    for c in clients:
        c.close()
    net.run_for(1.0)
    assert net.b.tcp.mem_used == 0 and net.a.tcp.mem_used == 0
    for conn in servers:  # the ones closed with a FIN wait in CLOSE-WAIT, holding nothing
        assert conn is not None
        conn.close()
    net.run_for(120.0)
    assert not net.a.tcp.connections and not net.b.tcp.connections
    assert net.b.tcp.mem_used == 0 and net.a.tcp.mem_used == 0
    for stack in (net.a, net.b):
        assert stack.counters["stack.internal_error"] == 0


def test_send_under_memory_pressure_returns_partial_then_wakes_the_writer() -> None:
    h = Harness(mem_limit=96 * 1024)
    _, conn = h.passive_open()
    events = []
    conn.on_event = lambda: events.append(h.now)
    taken = conn.send(bytes(200_000))
    assert 0 < taken <= 96 * 1024
    assert conn.send(b"more") == 0 and not conn.writable
    assert h.layer.mem_used == taken
    h.at(0.01)
    sent = h.take()
    acked = sum(len(s.payload) for s in sent)
    assert acked > 0
    events.clear()
    h.inject(ACK, 1, 1 + acked)  # the peer acknowledges: memory returns, the writer is told
    assert h.layer.mem_used == taken - acked
    assert events and conn.writable and conn.send(b"more") == 4


def test_receive_window_shrinks_under_memory_pressure_and_memory_returns_on_read() -> None:
    h = Harness(mem_limit=48 * 1024)
    _, conn = h.passive_open()
    windows = []
    seq = 1
    for _ in range(60):  # the peer sends within every window we offer; nobody reads
        h.inject(ACK, seq, 1, payload=bytes(1000))
        seq += 1000
        h.at(h.now + 0.05)
        for s in h.take():
            windows.append(s.window)
    assert h.layer.mem_used <= 48 * 1024 and h.layer.mem_used == len(conn.rcv_buf)
    assert windows[-1] < 1000 < windows[0]  # the window closed instead of memory growing
    assert h.layer.counters["rcv_mem_dropped"] > 0  # what came beyond the bound was not kept
    got = len(conn.recv(1 << 20) or b"")
    assert got == conn.rcv_nxt - REMOTE_ISN - 1 and h.layer.mem_used == 0
    h.at(h.now + 0.01)
    (update,) = h.take()  # a window update now that memory is back
    assert update.window > 1000
