"""What one short TCP connection costs the sans-IO engine, with no threads, sockets or links.

Run: `.venv/bin/python bench/bench_conn_cost.py [--conns N] [--profile]` (no root, no devices).
Two Stacks on one in-memory Ethernet segment, in virtual time (1 ms per connection), run N times:
connect, 100 bytes each way, the client closes first (and keeps TIME-WAIT), the server closes.
Prints microseconds per connection and per segment (frames carrying TCP both ways); --profile
prints the cProfile top instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

from usernet.stack.core import Stack
from usernet.wire import ipv4

A_MAC = bytes.fromhex("020000000001")
B_MAC = bytes.fromhex("020000000002")
PORT = 7
PAYLOAD = b"x" * 100


class Wire:
    """Frames between two stacks, instantly, until both are quiet."""

    def __init__(self, a: Stack, b: Stack) -> None:
        self.a, self.b = a, b
        self.now = 0.0
        self.frames = 0

    def exchange(self) -> None:
        a, b, now = self.a, self.b, self.now
        for _ in range(1000):
            moved = False
            for sender, receiver in ((a, b), (b, a)):
                for frame in sender.poll(now):
                    receiver.receive(bytes(frame), now)
                    self.frames += 1
                    moved = True
            if not moved:
                return
        raise AssertionError("the network did not settle")


def setup() -> tuple[Stack, Stack, Wire, object]:
    a = Stack(mac=A_MAC, addr="10.0.0.1/24", rng=random.Random(1))
    b = Stack(mac=B_MAC, addr="10.0.0.2/24", rng=random.Random(2))
    net = Wire(a, b)
    net.exchange()  # gratuitous ARPs
    listener = b.tcp.listen(0, PORT, 4096)
    one(a, b, net, listener)  # ARP resolution out of the way
    return a, b, net, listener


def one(a: Stack, b: Stack, net: Wire, listener: object) -> None:
    net.now += 0.001
    client = a.tcp.connect(a.addr, 0, ipv4.addr("10.0.0.2"), PORT, net.now)
    net.exchange()
    server = listener.accept()  # type: ignore[attr-defined]
    assert server is not None and client.state == "ESTABLISHED"
    client.send(PAYLOAD)
    net.exchange()
    data = server.recv(1000)
    assert data == PAYLOAD
    server.send(data)
    net.exchange()
    assert client.recv(1000) == PAYLOAD
    client.close()
    net.exchange()
    assert server.recv(1000) == b""
    server.close()
    net.exchange()
    assert client.state == "TIME-WAIT" and server.state == "CLOSED", (client.state, server.state)


def run(count: int) -> tuple[float, float]:
    a, b, net, listener = setup()
    frames = net.frames
    start = time.perf_counter()
    for _ in range(count):
        one(a, b, net, listener)
    elapsed = time.perf_counter() - start
    segments = net.frames - frames
    return elapsed / count * 1e6, elapsed / segments * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(args.conns)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        return
    best = min(run(args.conns) for _ in range(args.repeat))
    print(f"{args.conns} connections: {best[0]:.1f} us per connection, {best[1]:.2f} us per segment "
          f"(best of {args.repeat})")


if __name__ == "__main__":
    main()
