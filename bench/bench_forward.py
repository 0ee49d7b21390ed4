"""Forwarding between two namespaces: usernet as the router beside the Linux kernel as the router,
in the same run.

Run as root: `.venv/bin/python bench/bench_forward.py [--mbytes N]`. Topology, built twice:
namespace A - veth - router - veth - namespace B, all links MTU 1500, offloads at their defaults.
The router is either a namespace with `net.ipv4.ip_forward=1` or `usernet up --iface ... --link
iface=...,addr=... --forward` in a namespace of its own. A kernel client in A sends N MB to a
kernel sink in B (sha256-checked); the figure is MB/s. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

SINK = r"""
import hashlib, json, socket, sys
server = socket.create_server(("10.91.2.1", 9000))
print("ready", flush=True)
conn, _ = server.accept()
digest, total = hashlib.sha256(), 0
while data := conn.recv(1 << 20):
    digest.update(data); total += len(data)
print(json.dumps({"bytes": total, "sha256": digest.hexdigest()}), flush=True)
"""

SOURCE = r"""
import hashlib, json, socket, sys, time
block = hashlib.sha256(b"forward").digest() * 32768
count = int(sys.argv[1]) * 1024 * 1024 // len(block)
digest = hashlib.sha256()
start = time.perf_counter()
with socket.create_connection(("10.91.2.1", 9000), timeout=60) as conn:
    for _ in range(count):
        conn.sendall(block); digest.update(block)
print(json.dumps({"seconds": time.perf_counter() - start, "sha256": digest.hexdigest(), "bytes": count * len(block)}))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextlib.contextmanager
def routed(usernet: bool) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:5]
    a, r, b = f"un-f{tag}a", f"un-f{tag}r", f"un-f{tag}b"
    procs: list[subprocess.Popen[str]] = []
    try:
        for ns in (a, r, b):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"vf{tag}a", "netns", a, "type", "veth", "peer", "name", f"vf{tag}ra", "netns", r)
        sh("ip", "link", "add", f"vf{tag}b", "netns", b, "type", "veth", "peer", "name", f"vf{tag}rb", "netns", r)
        sh("ip", "-n", a, "addr", "add", "10.91.1.1/24", "dev", f"vf{tag}a")
        sh("ip", "-n", b, "addr", "add", "10.91.2.1/24", "dev", f"vf{tag}b")
        for ns, dev in ((a, f"vf{tag}a"), (b, f"vf{tag}b"), (r, f"vf{tag}ra"), (r, f"vf{tag}rb")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", a, "route", "add", "10.91.2.0/24", "via", "10.91.1.2")
        sh("ip", "-n", b, "route", "add", "10.91.1.0/24", "via", "10.91.2.2")
        if usernet:
            for dev in (f"vf{tag}ra", f"vf{tag}rb"):
                sh("ip", "netns", "exec", r, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            proc = subprocess.Popen(["ip", "netns", "exec", r, sys.executable, "-m", "usernet.cli", "up",
                                     "--iface", f"vf{tag}ra", "--addr", "10.91.1.2/24",
                                     "--link", f"iface=vf{tag}rb,addr=10.91.2.2/24", "--forward"],
                                    stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        else:
            sh("ip", "-n", r, "addr", "add", "10.91.1.2/24", "dev", f"vf{tag}ra")
            sh("ip", "-n", r, "addr", "add", "10.91.2.2/24", "dev", f"vf{tag}rb")
            sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield a, b
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (a, r, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def transfer(a: str, b: str, mbytes: int) -> float:
    sink = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None and sink.stdout.readline().startswith("ready")
    sent = json.loads(subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", SOURCE, str(mbytes)],
                                     check=True, capture_output=True, text=True, timeout=600).stdout)
    got = json.loads(sink.communicate(timeout=120)[0].strip().splitlines()[-1])
    assert got["sha256"] == sent["sha256"] and got["bytes"] == sent["bytes"]
    return sent["bytes"] / sent["seconds"] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=200)
    args = parser.parse_args()
    figures = {}
    for name, usernet in (("Linux", False), ("usernet", True)):
        with routed(usernet) as (a, b):
            time.sleep(0.3)
            figures[name] = transfer(a, b, args.mbytes)
    print("| What | usernet | Linux | usernet / Linux |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| TCP forwarded A -> B (MB/s) | {figures['usernet']:,.0f} | {figures['Linux']:,.0f} | "
          f"{figures['usernet'] / figures['Linux']:.2f} |")


if __name__ == "__main__":
    main()
