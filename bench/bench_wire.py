"""Wire-layer micro-benchmark: per-operation microseconds for the hot paths.

Run: `python bench/bench_wire.py [--save FILE] [--compare FILE]`. Each row times one
operation with `timeit` (best of several repeats, so noise from other processes inflates
nothing) and prints it beside a reference measured in the same run: the RFC 1071 word loop
for the checksum, scapy's dissection for parsing (when scapy is installed), a full rebuild for
the incrementally updated echo reply. `--save` writes
the figures as JSON; `--compare` prints a saved run beside this one (before/after a change).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import timeit
from collections.abc import Callable

from usernet.wire import ethernet, icmp, ipv4, udp
from usernet.wire.checksum import checksum

SRC, DST = ipv4.addr("192.0.2.1"), ipv4.addr("198.51.100.7")
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def per_op_us(func: Callable[[], object], repeat: int = 5) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e6


def naive_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1 transcribed: 16-bit words, end-around carry."""
    if len(data) & 1:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(payload_len: int) -> bytes:
    dgram = udp.build(SRC, DST, 40000, 7, os.urandom(payload_len))
    packet = ipv4.build(src=SRC, dst=DST, proto=ipv4.PROTO_UDP, payload=dgram, ident=1)
    return ethernet.build(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4, packet)


def parse_udp_frame(frame: bytes) -> memoryview:
    _dst, _src, ethertype, offset = ethernet.parse(frame)
    header = ipv4.parse(frame, offset)
    return udp.parse(header.payload, header.src, header.dst)[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="FILE", help="write this run's figures as JSON")
    parser.add_argument("--compare", metavar="FILE", help="show a saved run beside this one")
    args = parser.parse_args()
    try:
        from scapy.layers.l2 import Ether  # type: ignore[import-untyped]
    except ImportError:  # the reference column is optional
        Ether = None

    rows: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = []
    for size in (20, 1500, 1501, 65535):
        data = os.urandom(size)
        rows.append((f"checksum {size} B", lambda d=data: checksum(d), lambda d=data: naive_checksum(d)))
    for size in (18, 1472):
        frame = udp_frame(size)
        reference = (lambda f=frame: Ether(f).payload.payload.payload) if Ether else None
        rows.append((f"parse eth+ipv4+udp ({len(frame)} B frame)", lambda f=frame: parse_udp_frame(f), reference))
    payload = os.urandom(1472)
    rows.append(("build ipv4+udp (1472 B payload)",
                 lambda: ipv4.build(src=SRC, dst=DST, proto=17, payload=udp.build(SRC, DST, 1, 2, payload), ident=7),
                 None))
    echo = bytes(icmp.build_echo(False, 1, 2, os.urandom(56)))
    rows.append(("parse icmp echo (64 B)", lambda: icmp.echo_fields(icmp.parse(echo)), None))
    for size in (1472, 65507):
        request = bytes(icmp.build_echo(False, 1, 2, os.urandom(size - 8)))
        message = icmp.parse(request)
        rows.append((f"echo reply, RFC 1624 update ({size} B)", lambda r=request: icmp.build_echo_reply(r),
                     lambda m=message: icmp.build(icmp.ECHO_REPLY, 0, m.rest, m.body)))

    saved = {}
    if args.compare:
        with open(args.compare) as handle:
            saved = json.load(handle)
    results: dict[str, float] = {}
    print(f"{'operation':<40} {'usernet us':>11} {'reference us':>13} {'ratio':>7}"
          + (f" {'saved us':>9} {'speedup':>8}" if saved else ""))
    for name, ours, reference in rows:
        mine = results[name] = per_op_us(ours)
        line = f"{name:<40} {mine:>11.2f}"
        if reference is not None:
            ref = per_op_us(reference, repeat=3)
            line += f" {ref:>13.2f} {ref / mine:>6.1f}x"
        else:
            line += f" {'':>13} {'':>7}"
        if saved and name in saved:
            line += f" {saved[name]:>9.2f} {saved[name] / mine:>7.2f}x"
        print(line)
    print("reference: checksum rows: the RFC 1071 word loop; parse rows: scapy's Ether() dissection;"
          " echo reply rows: building the reply and summing it again. ratio = reference / usernet")
    if args.save:
        with open(args.save, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
