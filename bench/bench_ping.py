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
import subprocess
import sys
import uuid


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


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
    tag = uuid.uuid4().hex[:5]
    client, server, host = f"un-b{tag}c", f"un-b{tag}s", f"un-b{tag}u"
    proc = None
    try:
        for ns in (client, server, host):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"vn{tag}a", "netns", client, "type", "veth", "peer", "name", f"vn{tag}b",
           "netns", server)
        sh("ip", "link", "add", f"vn{tag}c", "netns", client, "type", "veth", "peer", "name", f"vn{tag}d",
           "netns", host)
        sh("ip", "-n", client, "addr", "add", "10.81.0.1/24", "dev", f"vn{tag}a")
        sh("ip", "-n", server, "addr", "add", "10.81.0.2/24", "dev", f"vn{tag}b")
        sh("ip", "-n", client, "addr", "add", "10.82.0.1/24", "dev", f"vn{tag}c")
        for ns, dev in ((client, f"vn{tag}a"), (server, f"vn{tag}b"), (client, f"vn{tag}c"), (host, f"vn{tag}d")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        proc = subprocess.Popen(["ip", "netns", "exec", host, sys.executable, "-m", "usernet.cli", "up", "--iface",
                                 f"vn{tag}d", "--addr", "10.82.0.2/24"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        rtts(client, "10.82.0.2", 20)  # warm up ARP and caches
        rtts(client, "10.81.0.2", 20)
        linux = rtts(client, "10.81.0.2", args.count)
        ours = rtts(client, "10.82.0.2", args.count)
        (lm, lp), (um, up) = summary(linux), summary(ours)
        print(f"ping over veth, {args.count} requests at 1 ms intervals (ms)")
        print(f"{'target':<10} {'replies':>8} {'median':>8} {'p99':>8}")
        print(f"{'linux':<10} {len(linux):>8} {lm:>8.3f} {lp:>8.3f}")
        print(f"{'usernet':<10} {len(ours):>8} {um:>8.3f} {up:>8.3f}")
        print(f"{'ratio':<10} {'':>8} {um / lm:>8.1f}x {up / lp:>7.1f}x")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        for ns in (client, server, host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
