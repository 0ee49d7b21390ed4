"""Frames per second the sans-IO stack processes, per kind of frame (no devices, no root).

Run: `.venv/bin/python bench/bench_rx.py [--frames N]`. Each kind is fed to `Stack.receive` in a
loop (with `poll` every 256 frames, as the runtime does), timing only the stack. This is the
ceiling a flood meets: a flood faster than its kind's rate here overflows the link's buffer.
"""

from __future__ import annotations

import argparse
import random
import struct
import time
from collections.abc import Callable

from usernet.stack.core import Stack
from usernet.wire import ethernet, icmp, ipv4
from usernet.wire import tcp as tcpwire

OUR_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
OUR_IP, PEER_IP = ipv4.addr("10.0.0.2"), ipv4.addr("10.0.0.1")


def _ip(src: int, proto: int, payload: bytes, flags_frag: int = 0, ident: int = 1) -> bytes:
    packet = bytearray(20 + len(payload))
    ipv4.write_header(packet, 0, src=src, dst=OUR_IP, proto=proto, payload_len=len(payload), ident=ident,
                      flags_frag=flags_frag)
    packet[20:] = payload
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_IPV4, packet)


def kinds(rng: random.Random) -> dict[str, Callable[[int], bytes]]:
    def syn(i: int) -> bytes:
        src = (198 << 24) | (18 << 16) | rng.getrandbits(16)
        return _ip(src, 6, bytes(tcpwire.build(src, OUR_IP, 1024 + i % 60000, 7, rng.getrandbits(32), 0,
                                                tcpwire.SYN, 65535, tcpwire.build_options(mss=1460))))

    def echo(i: int) -> bytes:
        return _ip(PEER_IP, 1, bytes(icmp.build_echo(True, 1, i & 0xFFFF, b"x" * 56)))

    def bad_checksum(i: int) -> bytes:
        frame = bytearray(echo(i))
        frame[24] ^= 0xFF  # the IPv4 header checksum
        return bytes(frame)

    def not_for_us(i: int) -> bytes:
        return b"\x02\x00\x00\x00\x00\x99" + echo(i)[6:]

    def fragment(i: int) -> bytes:
        return _ip(PEER_IP, 17, bytes(1000), flags_frag=ipv4.FLAG_MF, ident=i & 0xFFFF)

    def closed_udp(i: int) -> bytes:
        return _ip(PEER_IP, 17, struct.pack("!HHHH", 5000, 9, 8, 0))

    return {"SYN to a listener (cookies)": syn, "ICMP echo request": echo, "bad IPv4 checksum": bad_checksum,
            "other host's MAC": not_for_us, "incomplete fragment": fragment, "UDP to a closed port": closed_udp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(1)
    print("| frames of this kind | frames/s processed |")
    print("| --- | ---: |")
    for name, make in kinds(rng).items():
        stack = Stack(mac=OUR_MAC, addr="10.0.0.2/24", rng=random.Random(2))
        stack.tcp.listen(0, 7, 128)
        stack.receive(ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_ARP,
                                     __import__("usernet.wire.arp", fromlist=["build"]).build(
                                         2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 0.0)
        frames = [make(i) for i in range(args.frames)]
        now = 1.0
        start = time.perf_counter()
        receive = stack.receive
        for i, frame in enumerate(frames):
            receive(frame, now)
            if i & 255 == 255:
                stack.poll(now)
                now += 0.0001
        stack.poll(now)
        elapsed = time.perf_counter() - start
        print(f"| {name} | {len(frames) / elapsed:,.0f} |")


if __name__ == "__main__":
    main()
