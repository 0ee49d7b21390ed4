"""`usernet demo`: hosts on the in-memory network hold a real conversation. No root, no devices."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from usernet.api.host import Host
from usernet.api.socket import Socket
from usernet.apps.services import serve_simple


def _say(out: TextIO, text: str) -> None:
    print(f"\n== {text}", file=out, flush=True)


def run_demo(trace: bool = True, out: TextIO = sys.stdout) -> int:
    from usernet.links.memory import Switch

    switch = Switch()
    failures = 0
    alice = Host(switch.port(name="alice"), addr="10.0.0.1/24", seed=1, name="alice", trace=out if trace else False)
    bob = Host(switch.port(name="bob"), addr="10.0.0.2/24", seed=2, name="bob")
    with alice, bob:
        serve_simple(bob, "echo", 7)
        _say(out, "alice (10.0.0.1) pings bob (10.0.0.2): ARP resolves bob first, no request is lost")
        rtts = alice.ping("10.0.0.2", count=3, interval=0.05, size=56)
        for seq, rtt in enumerate(rtts, 1):
            print(f"   reply {seq}: " + (f"{rtt * 1000:.3f} ms" if rtt is not None else "lost"), file=out)
        failures += sum(r is None for r in rtts)

        _say(out, "a 4,000-byte ping: fragmented by alice, reassembled by bob, and back")
        rtts = alice.ping("10.0.0.2", count=1, size=4000)
        print("   reply: " + (f"{rtts[0] * 1000:.3f} ms" if rtts[0] is not None else "lost"), file=out)
        failures += rtts[0] is None

        _say(out, "UDP echo (RFC 862) on bob's port 7")
        with alice.socket(type=2) as udp:
            udp.settimeout(2)
            udp.sendto(b"hello, bob", ("10.0.0.2", 7))
            data, peer = udp.recvfrom(2048)
            print(f"   alice got {data!r} from {peer}", file=out)
            failures += data != b"hello, bob"

        _say(out, "UDP to a closed port: bob answers ICMP port unreachable, alice's socket sees ECONNREFUSED")
        with alice.socket(type=2) as udp:
            udp.settimeout(2)
            udp.connect(("10.0.0.2", 9999))
            udp.send(b"anyone there?")
            try:
                udp.recv(100)
                print("   unexpected answer", file=out)
                failures += 1
            except ConnectionRefusedError as err:
                print(f"   alice: {err!r}", file=out)

        if alice.stack.tcp is not None and hasattr(Socket, "listen"):
            _say(out, "TCP: handshake, echo of 100 kB, orderly close")
            conn: Any
            with alice.socket() as conn:
                conn.settimeout(5)
                conn.connect(("10.0.0.2", 7))
                payload = bytes(range(256)) * 400
                conn.sendall(payload)
                conn.shutdown(1)
                received = bytearray()
                while chunk := conn.recv(65536):
                    received += chunk
                print(f"   alice sent {len(payload)} bytes, got back {len(received)}, intact: {received == payload}",
                      file=out)
                failures += received != payload
    _say(out, "counters: alice")
    print(alice.format_counters(), file=out)
    _say(out, "counters: bob")
    print(bob.format_counters(), file=out)
    print(f"\ndemo {'passed' if not failures else f'had {failures} failures'}", file=out)
    return 0 if not failures else 1
