"""Does a socket call get slower as more threads wait in other sockets' calls? (no root)

Run: `.venv/bin/python bench/bench_wakeups.py [--idle 0,100,500] [--count 2000]`. One usernet host;
an echo server on its loopback with a thread per connection; N idle connections, each with one
more thread blocked in recv(); then a 1-byte echo round trip measured N times on another
connection. The same with kernel sockets on 127.0.0.1 as the reference.

Each socket's blocked calls wait on a condition of their own, so an event wakes only the
threads that wait for it: the round trip should not depend on N. (With one condition for the
whole host, every event woke every waiting thread: 7 ms instead of 0.1 ms at N = 200.)
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import usernet
from usernet.links.memory import pipe


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except OSError:
        pass  # the host or the socket closed under the thread: the run is over


def measure(server: Any, connect: Callable[[], Any], idle: int, count: int) -> tuple[float, float]:
    """Median and p99 round trip (us) of a 1-byte echo through *server* (listening) with *idle*
    other connections, each with a thread blocked in recv()."""

    def echo(conn: Any) -> None:
        while data := conn.recv(65536):
            conn.sendall(data)

    def acceptor() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=_quietly, args=(lambda c=conn: echo(c),), daemon=True).start()

    threading.Thread(target=_quietly, args=(acceptor,), daemon=True).start()
    idle_conns = []
    for _ in range(idle):
        conn = connect()
        idle_conns.append(conn)
        threading.Thread(target=_quietly, args=(lambda c=conn: c.recv(1),), daemon=True).start()
    time.sleep(0.3)
    client = connect()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(count):
        start = time.perf_counter()
        client.sendall(b"x")
        client.recv(1)
        rtts.append(time.perf_counter() - start)
    rtts.sort()
    for conn in [client, *idle_conns]:
        conn.close()
    server.close()
    return statistics.median(rtts) * 1e6, rtts[int(len(rtts) * 0.99)] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", default="0,100,500")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    print("| idle connections (a blocked thread each) | Linux median / p99 (us) | usernet median / p99 (us) |")
    print("| ---: | ---: | ---: |")
    for idle in (int(n) for n in args.idle.split(",")):
        kernel = socket.socket()
        kernel.bind(("127.0.0.1", 0))
        kernel.listen(4096)
        address = kernel.getsockname()
        linux = measure(kernel, lambda a=address: socket.create_connection(a), idle, args.count)
        link, _peer = pipe()
        with usernet.Host(link, addr="10.0.0.2/24") as host:
            server = host.socket()
            server.bind(("127.0.0.1", 7))
            server.listen(4096)
            ours = measure(server, lambda h=host: h.create_connection(("127.0.0.1", 7)), idle, args.count)
        print(f"| {idle:,} | {linux[0]:.0f} / {linux[1]:.0f} | {ours[0]:.0f} / {ours[1]:.0f} |", flush=True)

if __name__ == "__main__":
    main()
