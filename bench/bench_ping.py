"""Ping RTT over veth: Linux -> usernet beside Linux -> Linux, measured in the same run.

Run as root: `python bench/bench_ping.py [--count N]`. It builds three namespaces (a kernel
client, a kernel server, usernet's namespace) joined by veth pairs, pings each target COUNT
times at 1 ms intervals from the same client, and prints median, p99 and their ratio. Everything
it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys

from topology import LINUX_SERVER, USERNET, sh, topology


def rtts(ns: str, target: str, count: int) -> list[float]:
    out = sh("ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.001", "-W", "1", target, check=False)
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]


def summary(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    with topology() as topo:
        topo.start_usernet()
        client = topo.client
        rtts(client, USERNET, 20)  # warm up ARP and caches
        rtts(client, LINUX_SERVER, 20)
        linux = rtts(client, LINUX_SERVER, args.count)
        ours = rtts(client, USERNET, args.count)
        (lm, lp), (um, up) = summary(linux), summary(ours)
        print(f"ping over veth, {args.count} requests at 1 ms intervals (ms)")
        print(f"{'target':<10} {'replies':>8} {'median':>8} {'p99':>8}")
        print(f"{'linux':<10} {len(linux):>8} {lm:>8.3f} {lp:>8.3f}")
        print(f"{'usernet':<10} {len(ours):>8} {um:>8.3f} {up:>8.3f}")
        print(f"{'ratio':<10} {'':>8} {um / lm:>8.1f}x {up / lp:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
