"""Legitimate service under floods: usernet beside the Linux kernel under the same flood, in one run.

Run as root: `.venv/bin/python bench/bench_flood.py [--seconds S]`. Topology (bench/topology.py):
a client namespace with one veth pair to a kernel server and one to `usernet up`; both targets run
a TCP echo on port 7. For each flood, a generator in the client namespace sends raw frames at the
highest rate one Python process reaches, at the target's MAC, while a legitimate client (same
namespace, ordinary kernel sockets) makes one TCP connection (3 s timeout, 100 bytes echoed) and
one ping every 0.25 s. Floods:

* syn:       TCP SYNs to port 7 from random sources (198.18.0.0/15, unroutable: SYN cookies engage)
* malformed: nine kinds of broken frames (bad IPv4 checksum, header length, total length, version,
             truncated TCP, bad TCP offset, bad UDP length, truncated ARP, unknown EtherType)
* frags:     first fragments of datagrams that never complete, from one source
* none:      the baseline

Printed per flood and target: legitimate connections and pings that succeeded, their median
latency, and the frames per second the generator sent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from topology import LINUX_SERVER, USERNET, sh, topology

KERNEL_ECHO = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 7)); s.listen(1024)
def echo(c):
    with c:
        while (d := c.recv(65536)): c.sendall(d)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""

GENERATOR = r"""
import os, random, socket, struct, sys, time
ifname, target, kind = sys.argv[1], sys.argv[4], sys.argv[5]
dst_mac, src_mac, seconds = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[6])
dst_ip = socket.inet_aton(target)
rng = random.Random(1)
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
def ip(src, proto, payload, flags_frag=0, ident=1, ihl=5, version=4, total=None, bad_csum=False):
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, ident, flags_frag, 64, proto, 0, src, dst_ip)
    c = csum(h) ^ (0x5555 if bad_csum else 0)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload
def tcp_syn(src, sport):
    seg = struct.pack("!HHIIBBHHH", sport, 7, rng.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst_ip + struct.pack("!BBH", 0, 6, len(seg))
    return seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
eth = dst_mac + src_mac
def frames():
    if kind == "syn":
        while True:
            src = bytes([198, 18 + rng.getrandbits(1), rng.getrandbits(8), rng.getrandbits(8)])
            yield eth + b"\x08\x00" + ip(src, 6, tcp_syn(src, rng.randrange(1024, 65535)))
    elif kind == "malformed":
        src = socket.inet_aton("10.82.0.1")
        good = tcp_syn(src, 40000)
        kinds = [
            eth + b"\x08\x00" + ip(src, 6, good, bad_csum=True),
            eth + b"\x08\x00" + ip(src, 6, good, ihl=3),
            eth + b"\x08\x00" + ip(src, 6, good, total=2000),
            eth + b"\x08\x00" + ip(src, 6, good, version=5),
            eth + b"\x08\x00" + ip(src, 6, good[:10]),
            eth + b"\x08\x00" + ip(src, 6, good[:12] + b"\x10" + good[13:]),
            eth + b"\x08\x00" + ip(src, 17, struct.pack("!HHHH", 1, 7, 3, 0)),
            eth + b"\x08\x06" + b"\x00\x01\x08\x00",
            eth + b"\x88\xb5" + bytes(46),
        ]
        while True:
            yield from kinds
    elif kind == "frags":
        src = socket.inet_aton("10.82.0.1")
        ident = 0
        while True:
            ident = (ident + 1) & 0xFFFF
            yield eth + b"\x08\x00" + ip(src, 17, bytes(1000), flags_frag=0x2000, ident=ident)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
sent, end = 0, time.monotonic() + seconds
gen = frames()
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.send(next(gen)); sent += 1
        except OSError:
            pass
print(sent / seconds, flush=True)
"""

CLIENT = r"""
import json, socket, subprocess, sys, threading, time
host, seconds = sys.argv[1], float(sys.argv[2])
conns, pings = [], []
def connect_loop():
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            with socket.create_connection((host, 7), timeout=3) as c:
                c.sendall(b"x" * 100); got = b""
                while len(got) < 100:
                    d = c.recv(100)
                    if not d: break
                    got += d
                conns.append(time.monotonic() - t if got == b"x" * 100 else None)
        except OSError:
            conns.append(None)
        time.sleep(max(0.0, 0.25 - (time.monotonic() - t)))
thread = threading.Thread(target=connect_loop); thread.start()
out = subprocess.run(["ping", "-c", str(int(seconds * 4)), "-i", "0.25", "-W", "1", host],
                     capture_output=True, text=True).stdout
thread.join()
import re
pings = [float(x) / 1000 for x in re.findall(r"time=([0-9.]+) ms", out)]
sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
print(json.dumps({"conns": conns, "pings": pings, "pings_sent": sent}))
"""


def neighbour_mac(ns: str, address: str) -> str:
    sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address, check=False)
    for line in sh("ip", "-n", ns, "neigh", "show", address).splitlines():
        parts = line.split()
        if "lladdr" in parts:
            return parts[parts.index("lladdr") + 1].replace(":", "")
    raise RuntimeError(f"no MAC for {address}")


def own_mac(ns: str, ifname: str) -> str:
    return sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{ifname}/address").strip().replace(":", "")


def run(topo, ifname: str, target: str, kind: str, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    generator = None
    if kind != "none":
        generator = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-c", GENERATOR, ifname,
                                      neighbour_mac(topo.client, target), own_mac(topo.client, ifname), target, kind,
                                      str(seconds + 1)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
    result = json.loads(sh("ip", "netns", "exec", topo.client, sys.executable, "-c", CLIENT, target, str(seconds)))
    rate = 0.0
    if generator is not None:
        rate = float(generator.communicate(timeout=60)[0].strip() or 0)
    ok = [c for c in result["conns"] if c is not None]
    return {"conns": f"{len(ok)}/{len(result['conns'])}",
            "conn_ms": statistics.median(ok) * 1000 if ok else float("nan"),
            "pings": f"{len(result['pings'])}/{result['pings_sent']}",
            "ping_ms": statistics.median(result["pings"]) * 1000 if result["pings"] else float("nan"),
            "rate": rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--floods", default="none,syn,malformed,frags")
    args = parser.parse_args()
    with topology() as topo:
        tag = topo.usernet_if[2:-1]
        topo.start(topo.server, sys.executable, "-c", KERNEL_ECHO)
        topo.start_usernet("--serve", "echo:7")
        print("| flood | target | connections ok | connect median (ms) | pings ok | ping median (ms) "
              "| flood frames/s |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for kind in args.floods.split(","):
            for name, ifname, target in (("Linux", f"vn{tag}a", LINUX_SERVER), ("usernet", f"vn{tag}c", USERNET)):
                r = run(topo, ifname, target, kind, args.seconds)
                print(f"| {kind} | {name} | {r['conns']} | {r['conn_ms']:.1f} | {r['pings']} | {r['ping_ms']:.2f} | "
                      f"{r['rate']:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
