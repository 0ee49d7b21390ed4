"""The runtime thread's cost per frame: one ICMP echo request in, its reply out (no root).

Run: `.venv/bin/python bench/bench_runtime_pass.py [--count 20000] [--profile cprofile|none]`.

Three figures, each a median and p99 in microseconds:

- ``stack``: sans-IO, ``Stack.receive`` of an echo request plus ``Stack.poll`` that returns the
  reply frame (what the runtime does per ping without any I/O or thread);
- ``runtime``: a real :class:`usernet.Host` whose link is :class:`usernet.links.packet.Packet`
  over one end of an AF_UNIX datagram socketpair instead of an AF_PACKET socket (the same
  ``recv_batch`` and ``send`` code, vnet header included); this thread writes the request to
  the other end and blocks until the reply comes back: the whole ``_run`` pass (select, receive,
  flush, bookkeeping) plus two thread wake-ups;
- ``floor``: the same round trip against a bare Python loop (select, recv_into, sendmsg of a
  canned reply) on the same kind of socketpair: what any Python runtime thread costs here.

``runtime - floor`` is the runtime's own share of the round trip; ``--profile cprofile`` prints
the runtime thread's top functions over a run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import select
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable

import usernet
from usernet.links import packet as packet_link
from usernet.stack.core import Stack
from usernet.wire import arp, ethernet, icmp, ipv4

OUR_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
OUR_IP, PEER_IP = "10.0.0.2", "10.0.0.1"
VNET = bytes(packet_link.VNET_HDR_LEN)


def echo_request(seq: int, size: int = 56) -> bytes:
    message = icmp.build_echo(False, 0x1234, seq & 0xFFFF, bytes(range(size % 256)) * (size // 256) +
                              bytes(range(size % 256)))
    packet = ipv4.build(src=ipv4.addr(PEER_IP), dst=ipv4.addr(OUR_IP), proto=ipv4.PROTO_ICMP, payload=message,
                        ident=seq & 0xFFFF)
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_IPV4, packet)


def arp_request() -> bytes:
    payload = arp.build(arp.OP_REQUEST, PEER_MAC, ipv4.addr(PEER_IP), bytes(6), ipv4.addr(OUR_IP))
    return ethernet.build(ethernet.BROADCAST, PEER_MAC, ethernet.ETHERTYPE_ARP, payload)


def summary(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]


def bench_stack(count: int) -> list[float]:
    stack = Stack(mac=OUR_MAC, addr=f"{OUR_IP}/24", now=time.monotonic())
    stack.receive(arp_request(), time.monotonic())  # the peer's MAC is learnt from its request
    stack.poll(time.monotonic())
    frames = [echo_request(seq) for seq in range(256)]
    clock = time.perf_counter
    out = []
    for seq in range(count):
        frame = frames[seq & 0xFF]
        start = clock()
        now = time.monotonic()
        stack.receive(frame, now)
        replies = stack.poll(now)
        stack.next_deadline()
        out.append(clock() - start)
        assert len(replies) == 1
    assert stack.counters["icmp.tx_echo_reply"] == count
    return out


class PairedPacket(packet_link.Packet):
    """The AF_PACKET link's own receive and send code over a datagram socketpair end."""

    def __init__(self, sock: socket.socket) -> None:  # noqa: D107 - no super().__init__: no AF_PACKET
        sock.setblocking(False)
        self.sock = sock
        self.name = "pair0"
        self.mac = OUR_MAC
        self.mtu = 1500
        self.promisc = False
        self._filter_mac = None
        self._filter_outgoing = False
        self.gso_max = 0
        self.rx_frames = self.tx_frames = self.tx_dropped = self.rx_partial_csum = 0
        self._rx_buf = bytearray(packet_link._MAX_FRAME)
        self._rx_view = memoryview(self._rx_buf)

    def install_filter(self, mac: bytes) -> None:
        self._filter_mac = mac  # no BPF on a socketpair; the shedding tick still runs

    def kernel_drops(self) -> int:
        return 0

    def queue_fill(self) -> float:
        return 0.0


def round_trips(peer: socket.socket, count: int) -> list[float]:
    frames = [VNET + echo_request(seq) for seq in range(256)]
    buf = bytearray(4096)
    clock = time.perf_counter
    out = []
    for seq in range(count):
        frame = frames[seq & 0xFF]
        start = clock()
        peer.send(frame)
        n = peer.recv_into(buf)
        out.append(clock() - start)
        assert n == len(frame) and buf[14 + 10 + 20] == icmp.ECHO_REPLY, (n, len(frame))
    return out


def bench_runtime(count: int, profile: bool) -> tuple[list[float], pstats.Stats | None]:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.settimeout(2.0)
    profiler = cProfile.Profile() if profile else None
    host = usernet.Host(PairedPacket(ours), addr=f"{OUR_IP}/24")
    if profiler is not None:
        run = host._run

        def profiled() -> None:
            profiler.enable()
            try:
                run()
            finally:
                profiler.disable()

        host._run = profiled  # type: ignore[method-assign]
    with host:
        peer.send(VNET + arp_request())
        peer.settimeout(0.3)
        try:
            while True:
                peer.recv(4096)  # announcements, the ARP reply
        except TimeoutError:
            pass
        peer.settimeout(2.0)
        round_trips(peer, min(count, 500))  # warm up
        rtts = round_trips(peer, count)
    peer.close()
    return rtts, (pstats.Stats(profiler) if profiler is not None else None)


def bench_floor(count: int) -> list[float]:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.settimeout(2.0)
    ours.setblocking(False)
    stop_r, stop_w = os.pipe()
    reply = bytearray(VNET + echo_request(0))
    reply[14 + 10 + 20] = icmp.ECHO_REPLY

    def loop() -> None:
        buf = bytearray(packet_link._MAX_FRAME)
        view = memoryview(buf)
        fds = [ours.fileno(), stop_r]
        while True:
            ready, _, _ = select.select(fds, (), (), 1.0)
            if stop_r in ready:
                return
            while True:
                try:
                    n = ours.recv_into(buf)
                except BlockingIOError:
                    break
                frame = bytes(view[packet_link.VNET_HDR_LEN:n])
                ours.sendmsg((VNET, memoryview(reply)[packet_link.VNET_HDR_LEN:len(frame) + 10]))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    round_trips(peer, min(count, 500))
    rtts = round_trips(peer, count)
    os.write(stop_w, b"x")
    thread.join()
    for fd in (stop_r, stop_w):
        os.close(fd)
    ours.close()
    peer.close()
    return rtts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--profile", choices=("none", "cprofile"), default="none")
    args = parser.parse_args()
    rows: list[tuple[str, Callable[[], list[float]]]] = [
        ("stack", lambda: bench_stack(args.count)),
        ("floor", lambda: bench_floor(args.count)),
    ]
    stats = None
    results = {}
    for name, fn in rows:
        results[name] = summary(fn())
    runtime, stats = bench_runtime(args.count, args.profile == "cprofile")
    results["runtime"] = summary(runtime)
    print(f"ICMP echo, {args.count} requests, microseconds")
    print(f"{'path':<10} {'median':>8} {'p99':>8}")
    for name in ("stack", "floor", "runtime"):
        median, p99 = results[name]
        print(f"{name:<10} {median * 1e6:>8.1f} {p99 * 1e6:>8.1f}")
    print(f"{'runtime-floor':<10} {(results['runtime'][0] - results['floor'][0]) * 1e6:>5.1f}")
    if stats is not None:
        stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
