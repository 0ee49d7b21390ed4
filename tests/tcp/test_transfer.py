"""Two stacks through a faulty network in virtual time: data arrives whole and in order."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcp.sim import A_IP, B_IP, Faults, LossyNet


def transfer(net: LossyNet, size: int, both_ways: bool = False, port: int = 80, seed: int = 3,
             limit: float = 3600.0) -> float:
    """Send *size* bytes a->b (and b->a), close, and check sha256 on arrival. Returns virtual seconds."""
    rng = random.Random(seed)
    data_ab = rng.randbytes(size)
    data_ba = rng.randbytes(size) if both_ways else b""
    listener = net.b.tcp.listen(0, port, 16)
    client = net.a.tcp.connect(A_IP, 0, B_IP, port, net.now)
    net.run_until(lambda: bool(listener.accept_queue), limit=120)
    server = listener.accept()
    start = net.now
    sent = {"ab": 0, "ba": 0}
    got_ab, got_ba = hashlib.sha256(), hashlib.sha256()
    counts = {"ab": 0, "ba": 0}

    def pump() -> bool:
        for conn, data, key in ((client, data_ab, "ab"), (server, data_ba, "ba")):
            if sent[key] < len(data):
                sent[key] += conn.send(memoryview(data)[sent[key]:sent[key] + (1 << 20)])
                if sent[key] == len(data):
                    conn.shutdown_write()
            elif not conn.fin_queued:
                conn.shutdown_write()
        for conn, digest, key in ((server, got_ab, "ab"), (client, got_ba, "ba")):
            while (chunk := conn.recv(1 << 20)):
                digest.update(chunk)
                counts[key] += len(chunk)
        return server.eof and client.eof

    net.run_until(pump, limit=limit)
    assert counts["ab"] == size and got_ab.digest() == hashlib.sha256(data_ab).digest()
    assert counts["ba"] == len(data_ba) and got_ba.digest() == hashlib.sha256(data_ba).digest()
    elapsed = net.now - start
    client.close()
    server.close()
    net.run_for(120.0)  # TIME-WAIT expires
    assert not net.a.tcp.connections and not net.b.tcp.connections
    for stack in (net.a, net.b):
        assert stack.counters["stack.internal_error"] == 0
    return elapsed


def test_clean_transfer_is_fast_in_virtual_time() -> None:
    net = LossyNet(Faults(delay=0.005, rate_bps=100e6))
    elapsed = transfer(net, 2_000_000)
    # 2 MB at 100 Mbit/s is 0.16 s of wire time; slow start costs a few RTTs more.
    assert elapsed < 0.6
    assert net.a.tcp.counters["retransmitted_segments"] == 0


@pytest.mark.parametrize("congestion", ["cubic", "newreno"])
def test_20mb_each_way_under_loss_dup_reorder_corruption(congestion: str) -> None:
    net = LossyNet(Faults(loss=0.05, dup=0.02, reorder=0.05, corrupt=0.01, delay=0.002), seed=11)
    for stack in (net.a, net.b):
        stack.tcp.config.congestion = congestion
    size = 20_000_000 if congestion == "cubic" else 4_000_000
    elapsed = transfer(net, size, both_ways=True)
    assert net.a.tcp.counters["retransmitted_segments"] > 0
    assert net.b.counters["tcp.bad_checksum"] + net.b.counters["ipv4.bad_checksum"] > 0
    assert elapsed < 3600


def test_transfer_with_50ms_delay_and_rate_limit() -> None:
    net = LossyNet(Faults(delay=0.05, rate_bps=20e6), seed=5)
    elapsed = transfer(net, 5_000_000)
    # 5 MB at 20 Mbit/s: 2 s of wire time at best; a sane window gets within a small factor.
    assert 2.0 <= elapsed < 6.0


def test_many_connections_at_once() -> None:
    net = LossyNet(Faults(loss=0.02, delay=0.002), seed=9)
    listener = net.b.tcp.listen(0, 7, 64)
    clients = [net.a.tcp.connect(A_IP, 0, B_IP, 7, net.now) for _ in range(50)]
    net.run_until(lambda: len(listener.accept_queue) == 50, limit=300)
    servers = [listener.accept() for _ in range(50)]
    payloads = [random.Random(i).randbytes(20_000) for i in range(50)]
    for client, payload in zip(clients, payloads, strict=True):
        assert client.send(payload) == len(payload)
        client.shutdown_write()
    received = [bytearray() for _ in servers]

    def done() -> bool:
        for server, buf in zip(servers, received, strict=True):
            while (chunk := server.recv(1 << 20)):
                buf += chunk
        return all(s.eof for s in servers)

    net.run_until(done, limit=600)
    ports = {s.remote_port for s in servers}
    assert len(ports) == 50
    by_port = {c.local_port: p for c, p in zip(clients, payloads, strict=True)}
    for server, buf in zip(servers, received, strict=True):
        assert bytes(buf) == by_port[server.remote_port]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loss=st.floats(0, 0.15), dup=st.floats(0, 0.1), reorder=st.floats(0, 0.2), corrupt=st.floats(0, 0.05),
       delay=st.floats(0.0005, 0.05), seed=st.integers(0, 10_000))
def test_random_fault_schedules_never_corrupt_data(loss, dup, reorder, corrupt, delay, seed) -> None:
    net = LossyNet(Faults(loss=loss, dup=dup, reorder=reorder, corrupt=corrupt, delay=delay), seed=seed)
    transfer(net, 150_000, both_ways=True, seed=seed, limit=7200)


def test_bulk_receiver_acks_every_second_segment() -> None:
    """A reader that keeps up (small reads, an empty buffer) sends one pure ACK per two data
    segments: reads that free a little of a mostly empty buffer send no window updates (Linux
    tcp_cleanup_rbuf), only the ACKs the data calls for (RFC 5681 4.2)."""
    net = LossyNet(Faults(delay=0.005, rate_bps=100e6))
    listener = net.b.tcp.listen(0, 80, 16)
    client = net.a.tcp.connect(A_IP, 0, B_IP, 80, net.now)
    net.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    data_before, acks_before = net.a.tcp.counters["segments_sent"], net.b.tcp.counters["segments_sent"]
    size, sent, got = 4_000_000, 0, 0
    payload = bytes(size)

    def pump() -> bool:
        nonlocal sent, got
        if sent < size:
            sent += client.send(memoryview(payload)[sent:])
        while got < size and (chunk := server.recv(1000)):
            got += len(chunk)
        return got == size

    net.run_until(pump)
    data = net.a.tcp.counters["segments_sent"] - data_before
    acks = net.b.tcp.counters["segments_sent"] - acks_before
    assert data > 2700 and 0.45 * data <= acks <= 0.55 * data, (data, acks)
