"""TCP over the loopback inside one usernet host, beside the Linux kernel's loopback, in one run.

Run: `.venv/bin/python bench/bench_loopback.py [--mbytes N] [--conns N]` (no root, no devices).
For each side it measures, with the same Python client and server code on kernel sockets and
on usernet sockets:

* bulk: one connection sends N MB to a reader on 127.0.0.1 (MB/s)
* conn: sequential connect + 100 bytes echoed + close, connections per second
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any

import usernet
from usernet.links.memory import Switch

CHUNK = bytes(range(256)) * 256  # 64 KB


def bulk(make_server: Any, make_client: Any, mbytes: int) -> float:
    server = make_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    total = mbytes * 1024 * 1024
    got = [0]

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1 << 20):
                got[0] += len(data)

    thread = threading.Thread(target=sink)
    thread.start()
    start = time.perf_counter()
    with make_client(("127.0.0.1", port)) as conn:
        for _ in range(total // len(CHUNK)):
            conn.sendall(CHUNK)
    thread.join()
    elapsed = time.perf_counter() - start
    server.close()
    assert got[0] == total, got
    return total / elapsed / 1e6


def connections(make_server: Any, make_client: Any, count: int) -> float:
    server = make_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(100)
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    payload = b"x" * 100
    start = time.perf_counter()
    for _ in range(count):
        with make_client(("127.0.0.1", port)) as conn:
            conn.sendall(payload)
            received = b""
            while len(received) < len(payload):
                received += conn.recv(100)
    elapsed = time.perf_counter() - start
    stop.set()
    server.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=200)
    parser.add_argument("--conns", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, tuple[float, float]] = {}

    def kernel_server(address: tuple[str, int]) -> socket.socket:
        return socket.create_server(address)

    results["Linux"] = (bulk(kernel_server, socket.create_connection, args.mbytes),
                        connections(kernel_server, socket.create_connection, args.conns))
    with usernet.Host(Switch().port(), addr="10.99.0.1/24") as host:
        results["usernet"] = (bulk(host.create_server, host.create_connection, args.mbytes),
                              connections(host.create_server, host.create_connection, args.conns))
    linux_bulk, linux_conn = results["Linux"]
    print("| What | usernet | Linux | usernet / Linux |")
    print("| --- | ---: | ---: | ---: |")
    bulk_u, conn_u = results["usernet"]
    print(f"| loopback TCP bulk (MB/s) | {bulk_u:,.0f} | {linux_bulk:,.0f} | {bulk_u / linux_bulk:.2f} |")
    print(f"| loopback connections per second | {conn_u:,.0f} | {linux_conn:,.0f} | {conn_u / linux_conn:.2f} |")


if __name__ == "__main__":
    main()
