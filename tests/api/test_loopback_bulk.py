"""A running host's loopback (issue 17, "Loopback bulk"): autocorked tails still arrive when no
further write comes, and a bulk transfer arrives intact."""

from __future__ import annotations

import hashlib
import threading

import usernet
from usernet.links.memory import Switch


def test_a_corked_rest_arrives_without_another_write() -> None:
    with usernet.Host(Switch().port(), addr="10.99.0.1/24") as host:
        server = host.create_server(("127.0.0.1", 0))
        client = host.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=10)
        conn, _ = server.accept()
        conn.settimeout(10)
        for size in (65483 + 10, 3 * 65483 + 1, 200_000):
            payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            client.sendall(payload)  # full segments, then a small rest held behind them
            got = bytearray()
            while len(got) < size:
                got += conn.recv(1 << 20)  # the runtime thread sends the rest: no hang
            assert bytes(got) == payload
            conn.sendall(b"ok")
            assert client.recv(2) == b"ok"
        for sock in (client, conn, server):
            sock.close()


def test_bulk_over_the_loopback_is_intact() -> None:
    block = hashlib.sha256(b"lo").digest() * 2048  # 64 KB
    total = 8 << 20
    with usernet.Host(Switch().port(), addr="10.99.0.1/24") as host:
        server = host.create_server(("127.0.0.1", 0))
        digest = hashlib.sha256()
        received = [0]

        def sink() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                while data := conn.recv(1 << 20):
                    digest.update(data)
                    received[0] += len(data)

        thread = threading.Thread(target=sink)
        thread.start()
        with host.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=30) as client:
            for _ in range(total // len(block)):
                client.sendall(block)
        thread.join(30)
        server.close()
        assert received[0] == total
        assert digest.digest() == hashlib.sha256(block * (total // len(block))).digest()
