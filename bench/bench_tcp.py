"""TCP over veth: usernet beside the Linux kernel doing the same work, in the same run.

Run as root: `python bench/bench_tcp.py [--mbytes N]`. Topology: a kernel client namespace with
two veth pairs, one to a kernel server namespace, one to usernet's namespace (`usernet up` with
discard, chargen and echo services over AF_PACKET, default offloads on). The kernel server runs
the same three services (a small Python socket server). For each target it measures:

* in:   client sends N MB to discard:9 (until the server closes after EOF)
* out:  client reads N MB from chargen:19
* rtt:  1-byte echo round trip on one connection (TCP_NODELAY), median and p99 of 2,000
* conn: sequential connect + 1-byte echo + close, connections per second over 1,000
Everything it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from topology import LINUX_SERVER, USERNET, sh, topology

KERNEL_SERVER = r"""
import socket, sys, threading
CHUNK = bytes(range(32, 127)) * 700
def serve(port, handler):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port)); s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
def discard(c):
    with c:
        while c.recv(1 << 20): pass
def chargen(c):
    with c:
        try:
            while True: c.sendall(CHUNK)
        except OSError: pass
def echo(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while (d := c.recv(65536)): c.sendall(d)
for port, h in ((9, discard), (19, chargen), (7, echo)):
    threading.Thread(target=serve, args=(port, h), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import json, os, socket, sys, time
host, mbytes = sys.argv[1], int(sys.argv[2])
size = mbytes * 1_000_000
res = {}
data = os.urandom(1 << 20)
s = socket.create_connection((host, 9)); t = time.perf_counter(); sent = 0
while sent < size:
    s.sendall(data); sent += len(data)
s.shutdown(socket.SHUT_WR); s.recv(1); res["in"] = sent / (time.perf_counter() - t) / 1e6; s.close()
s = socket.create_connection((host, 19)); t = time.perf_counter(); got = 0
while got < size:
    d = s.recv(1 << 20)
    if not d: break
    got += len(d)
res["out"] = got / (time.perf_counter() - t) / 1e6; s.close()
s = socket.create_connection((host, 7)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
samples = []
for _ in range(2000):
    t = time.perf_counter(); s.sendall(b"x"); s.recv(1); samples.append(time.perf_counter() - t)
s.close(); samples.sort()
res["rtt_median_us"] = samples[1000] * 1e6; res["rtt_p99_us"] = samples[1980] * 1e6
t = time.perf_counter()
for _ in range(1000):
    with socket.create_connection((host, 7)) as c:
        c.sendall(b"x"); c.recv(1)
res["conn_per_s"] = 1000 / (time.perf_counter() - t)
print(json.dumps(res))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mbytes", type=int, default=200)
    args = parser.parse_args()
    with topology() as topo:
        client = topo.client
        topo.start(topo.server, sys.executable, "-c", KERNEL_SERVER)
        topo.start_usernet("--serve", "discard:9", "--serve", "chargen:19", "--serve", "echo:7")
        results = {}
        for name, address in (("linux", LINUX_SERVER), ("usernet", USERNET)):
            started = time.perf_counter()
            out = sh("ip", "netns", "exec", client, sys.executable, "-c", CLIENT, address, str(args.mbytes))
            results[name] = json.loads(out)
            results[name]["wall_s"] = time.perf_counter() - started
        linux, usernet = results["linux"], results["usernet"]
        print(f"TCP over veth, MTU 1500, {args.mbytes} MB per bulk run; the same client against both")
        print(f"{'metric':<28}{'usernet':>12}{'linux':>12}{'usernet/linux':>16}")
        for key, label in (("in", "bulk in (MB/s)"), ("out", "bulk out (MB/s)"),
                           ("rtt_median_us", "1-byte echo RTT median (us)"), ("rtt_p99_us", "1-byte echo RTT p99 (us)"),
                           ("conn_per_s", "connections per second")):
            print(f"{label:<28}{usernet[key]:>12.1f}{linux[key]:>12.1f}{usernet[key] / linux[key]:>15.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
