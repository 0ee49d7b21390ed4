"""Legitimate service under floods: usernet beside the Linux kernel under the same flood, in one run.

Run as root: `.venv/bin/python bench/bench_flood.py [--seconds S] [--floods LIST] [--quick]`.
Topology (bench/topology.py): a client namespace with one veth pair to a kernel server and one to
`usernet up`; both targets run a TCP echo on port 7 on one event loop (usernet's `--serve echo:7`;
for Linux a selectors loop in Python that, like usernet's, stops reading a connection once 256 KB
of its echo wait to be sent). For each flood, a load runs in the client namespace while a
legitimate client (same namespace, ordinary kernel sockets) makes one TCP connection (3 s
timeout, 100 bytes echoed) and one ping every 0.25 s. Floods:

* none:      the baseline
* syn:       TCP SYNs to port 7 from random sources (198.18.0.0/15, unroutable: SYN cookies engage),
             raw frames at the highest rate one Python process reaches
* malformed: nine kinds of broken frames (bad IPv4 checksum, header length, total length, version,
             truncated TCP, bad TCP offset, bad UDP length, truncated ARP, unknown EtherType)
* frags:     first fragments of datagrams that never complete, from one source
* arp:       spoofed ARP replies to the target claiming the legitimate client's address for a MAC
             nobody has: the client first asks for the target afresh (so the target's entry for it
             is confirmed at a known time), then a burst of 5 (20 ms apart) 0.5 s later, within the
             1 s lock time, and another at half the period (3 s), after it
* idle:      5,000 established connections to the echo port, opened before the measurement by 8
             threads and left idle during it; then all closed at once, and the outage measured: the
             time from the close until a new connection (echoing 1 byte) and a ping first succeed
* slow:      50 clients that connect to the echo port and send continuously but never read, so
             the target's send buffers (and its echo backlog) fill: usernet's host-wide socket
             memory bound (TcpConfig.mem_limit, like Linux tcp_mem) is what holds

Printed per flood and target: legitimate connections and pings that succeeded and their median
latency; the target process's peak RSS during the run (for Linux the echo server's, which holds
no socket buffers: the kernel's are in the notes for slow); frames/s the client interface sent
during the measurement (flood and legitimate traffic); and notes: for usernet the deltas of the
counters that show shedding (read with SIGUSR1 before and after each run), for Linux the
corresponding /proc/net/netstat and snmp deltas of the server namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from topology import LINUX_SERVER, USERNET, Topology, sh, topology

ALL_FLOODS = "none,syn,malformed,frags,arp,idle,slow"

KERNEL_ECHO = r"""
import resource, selectors, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
MAX_PENDING = 256 * 1024
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
sel = selectors.DefaultSelector()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 7)); s.listen(4096); s.setblocking(False)
sel.register(s, R)
pending = {}
print("ready", flush=True)
while True:
    for key, events in sel.select():
        c = key.fileobj
        if c is s:
            try:
                conn, _ = s.accept()
            except OSError:
                continue
            conn.setblocking(False); conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending[conn] = b""; sel.register(conn, R)
            continue
        try:
            if events & R and len(pending[c]) < MAX_PENDING:
                d = c.recv(65536)
                if not d:
                    raise ConnectionError
                pending[c] += d
            if pending[c]:
                n = c.send(pending[c]); pending[c] = pending[c][n:]
        except BlockingIOError:
            pass
        except OSError:
            sel.unregister(c); c.close(); del pending[c]; continue
        want = W if len(pending[c]) >= MAX_PENDING else R | (W if pending[c] else 0)
        if want != key.events:
            sel.modify(c, want)
"""

GENERATOR = r"""
import os, random, socket, struct, sys, time
ifname, target, kind = sys.argv[1], sys.argv[4], sys.argv[5]
dst_mac, src_mac, seconds = bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[6])
victim = socket.inet_aton(sys.argv[7])
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
if kind == "arp":
    # RFC 826 reply: "victim is at <a MAC nobody has>", unicast to the target as a real reply is.
    liar = bytes.fromhex("02deadbeef01")
    reply = dst_mac + liar + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, liar, victim,
                                                          dst_mac, dst_ip)
    start = time.monotonic()
    for when in (0.5, max(1.5, seconds / 2)):  # within the lock time of a fresh entry, then after it
        time.sleep(max(0.0, start + when - time.monotonic()))
        for _ in range(5):
            s.send(reply); time.sleep(0.02)
    print(10, flush=True)
    sys.exit(0)
sent, end = 0, time.monotonic() + seconds
gen = frames()
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.send(next(gen)); sent += 1
        except OSError:
            pass
print(sent, flush=True)
"""

CLIENT = r"""
import json, re, socket, subprocess, sys, threading, time
host, seconds = sys.argv[1], float(sys.argv[2])
conns = []
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
pings = [float(x) / 1000 for x in re.findall(r"time=([0-9.]+) ms", out)]
sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
print(json.dumps({"conns": conns, "pings": pings, "pings_sent": sent}))
"""

# Opens COUNT idle connections with 8 threads, says so, waits for a line on stdin, closes them all
# at once and measures how long a new connection and a ping take to succeed again.
IDLE = r"""
import json, resource, socket, subprocess, sys, threading, time
host, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks, failed, lock = [], [0], threading.Lock()
def opener(n):
    for _ in range(n):
        try:
            c = socket.create_connection((host, 7), timeout=10)
        except OSError:
            with lock: failed[0] += 1
            continue
        with lock: socks.append(c)
t0 = time.monotonic()
threads = [threading.Thread(target=opener, args=(count // 8 + (i < count % 8),)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"opened": len(socks), "failed": failed[0], "open_s": time.monotonic() - t0}), flush=True)
sys.stdin.readline()
LIMIT = 60.0
outage = {}
def probe_conn(start):
    while time.monotonic() - start < LIMIT:
        try:
            with socket.create_connection((host, 7), timeout=1) as c:
                c.sendall(b"x")
                if c.recv(1) == b"x":
                    outage["conn_s"] = time.monotonic() - start; return
        except OSError:
            pass
        time.sleep(0.05)
def probe_ping(start):
    while time.monotonic() - start < LIMIT:
        if subprocess.run(["ping", "-c", "1", "-W", "1", host], capture_output=True).returncode == 0:
            outage["ping_s"] = time.monotonic() - start; return
        time.sleep(0.05)
start = time.monotonic()
for c in socks: c.close()
closed = time.monotonic() - start
probes = [threading.Thread(target=p, args=(start,)) for p in (probe_conn, probe_ping)]
for t in probes: t.start()
for t in probes: t.join()
print(json.dumps({"close_s": closed, **outage}), flush=True)
"""

# COUNT clients that connect to the echo port and send 64 KB chunks whenever their socket takes
# them, never reading: the target's echo backlog and send buffers fill. Closes at a line on stdin.
SLOW = r"""
import json, socket, sys, threading, time
host, count = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(count):
    try:
        socks.append(socket.create_connection((host, 7), timeout=10))
    except OSError:
        pass
for s in socks: s.setblocking(False)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
print(json.dumps({"connected": len(socks)}), flush=True)
chunk, sent = b"s" * 65536, 0
while not stop.is_set():
    progress = False
    for s in socks:
        try:
            sent += s.send(chunk); progress = True
        except OSError:
            pass
    if not progress:
        time.sleep(0.01)
for s in socks: s.close()
print(json.dumps({"sent": sent}), flush=True)
"""

USERNET_COUNTERS = ("link.kernel_dropped", "link.overload_engaged", "tcp.syncookies_sent", "stack.outbox_full",
                    "host.rx_budget_exhausted", "arp.locktime_ignored", "arp.mac_changed", "ipv4.frag_source_share",
                    "ipv4.frag_table_full", "ipv4.frag_memory_full", "tcp.send_mem_limited", "tcp.rcv_mem_dropped")
# The server namespace's kernel counters that answer to the ones above.
LINUX_COUNTERS = ("TcpExt.SyncookiesSent", "TcpExt.ListenDrops", "TcpExt.TCPMemoryPressures", "TcpExt.TCPRcvQDrop",
                  "TcpExt.TCPBacklogDrop", "Ip.InHdrErrors", "Ip.ReasmFails", "Ip.ReasmTimeout")


def neighbour_mac(ns: str, address: str) -> str:
    sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address, check=False)
    for line in sh("ip", "-n", ns, "neigh", "show", address).splitlines():
        parts = line.split()
        if "lladdr" in parts:
            return parts[parts.index("lladdr") + 1].replace(":", "")
    raise RuntimeError(f"no MAC for {address}")


def own_mac(ns: str, ifname: str) -> str:
    return sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{ifname}/address").strip().replace(":", "")


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Target:
    """One side of the comparison: its address, the client's interface to it, and its counters."""

    def __init__(self, name: str, ifname: str, address: str, proc: subprocess.Popen[str], topo: Topology) -> None:
        self.name, self.ifname, self.address, self.proc, self.topo = name, ifname, address, proc, topo
        self.lines: list[str] = []
        if name == "usernet":  # its stdout carries the counters SIGUSR1 prints
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def counters(self) -> dict[str, int]:
        return self._usernet_counters() if self.name == "usernet" else self._linux_counters()

    def _usernet_counters(self) -> dict[str, int]:
        """`usernet up` prints its state and counters on SIGUSR1: layer lines, then "    N words" lines."""
        mark = len(self.lines)
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "counters:" not in self.lines[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the block is one write after the header; let the reader take it all
        lines = self.lines[mark:]
        if "counters:" not in lines:
            return {}
        out: dict[str, int] = {}
        layer = ""
        for line in lines[lines.index("counters:") + 1:]:
            if re.fullmatch(r"[a-z0-9_]+:", line):
                layer = line[:-1]
            elif (m := re.fullmatch(r"    (\d+) (.+)", line)) and layer:
                out[f"{layer}.{m.group(2).replace(' ', '_')}"] = int(m.group(1))
            else:
                break
        return out

    def _linux_counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for path in ("/proc/net/netstat", "/proc/net/snmp"):
            rows = sh("ip", "netns", "exec", self.topo.server, "cat", path).splitlines()
            for names, values in zip(rows[::2], rows[1::2], strict=True):
                prefix, *keys = names.split()
                for key, value in zip(keys, values.split()[1:], strict=True):
                    out[f"{prefix.rstrip(':')}.{key}"] = int(value)
        return out

    def neighbour(self, address: str) -> str:
        """The target's ARP cache entry for *address*: its MAC, or "-"."""
        if self.name == "Linux":
            parts = sh("ip", "-n", self.topo.server, "neigh", "show", address).split()
            return parts[parts.index("lladdr") + 1] if "lladdr" in parts else "-"
        mark = len(self.lines)
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "counters:" not in self.lines[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        for line in self.lines[mark:]:
            parts = line.split()
            if parts[:1] == [address] and "lladdr" in parts:
                return parts[parts.index("lladdr") + 1]
        return "-"

    def tx_packets(self) -> int:
        return int(sh("ip", "netns", "exec", self.topo.client, "cat",
                      f"/sys/class/net/{self.ifname}/statistics/tx_packets"))


def start_in_client(topo: Topology, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-c", script, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def first_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"load process exited ({proc.wait()}) before reporting")
    return dict(json.loads(line))


def run(topo: Topology, target: Target, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    notes: list[str] = []
    before = target.counters()
    rss_before = rss_mb(target.proc.pid)
    generator = load = None
    if kind in ("syn", "malformed", "frags", "arp"):
        victim = target.address.rsplit(".", 1)[0] + ".1"  # the legitimate client's address
        mac = neighbour_mac(topo.client, target.address)
        if kind == "arp":  # the client asks afresh: the target's entry for it is confirmed now
            sh("ip", "-n", topo.client, "neigh", "flush", "dev", target.ifname)
            sh("ip", "netns", "exec", topo.client, "ping", "-c", "1", "-W", "1", target.address, check=False)
        generator_start = time.monotonic()
        generator = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-c", GENERATOR,
                                      target.ifname, mac, own_mac(topo.client, target.ifname), target.address, kind,
                                      str(args.seconds if kind == "arp" else args.seconds + 1), victim],
                                     stdout=subprocess.PIPE, text=True)
        if kind != "arp":  # arp's burst comes 1 s into the measurement instead
            time.sleep(0.5)
    elif kind == "idle":
        load = start_in_client(topo, IDLE, target.address, str(args.idle))
        opened = first_json(load)
        notes.append(f"{opened['opened']:,} opened in {opened['open_s']:.1f} s"
                     + (f" ({opened['failed']} failed)" if opened["failed"] else ""))
    elif kind == "slow":
        load = start_in_client(topo, SLOW, target.address, str(args.slow))
        notes.append(f"{first_json(load)['connected']} slow clients")
        time.sleep(1.0)  # let their buffers fill before measuring
    peak = [rss_before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            peak[0] = max(peak[0], rss_mb(target.proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    tx0, t0 = target.tx_packets(), time.monotonic()
    try:
        result = json.loads(sh("ip", "netns", "exec", topo.client, sys.executable, "-c", CLIENT, target.address,
                               str(args.seconds)))
    finally:
        rate = (target.tx_packets() - tx0) / (time.monotonic() - t0)
        sampling.set()
        sampler.join()
    peak[0] = max(peak[0], rss_mb(target.proc.pid))
    if generator is not None:
        generator.communicate(timeout=60)
    spoofed = False
    if kind == "arp":
        victim = target.address.rsplit(".", 1)[0] + ".1"
        mac = target.neighbour(victim)
        spoofed = mac.replace(":", "") == "02deadbeef01"
        notes.append(f"target's entry for the client after: {mac}" + (" (spoofed)" if spoofed else ""))
        if spoofed and not args.quick:  # how long the poisoning lasts with nobody repairing it
            second_burst = generator_start + max(1.5, args.seconds / 2)
            while time.monotonic() - second_burst < 60:
                if subprocess.run(["ip", "netns", "exec", topo.client, "ping", "-c", "1", "-W", "1",
                                   target.address], capture_output=True).returncode == 0:
                    notes.append(f"pings answered again {time.monotonic() - second_burst:.0f} s after the "
                                 "second burst")
                    break
                time.sleep(0.25)
            else:
                notes.append("no ping answered within 60 s of the second burst")
    if load is not None:
        assert load.stdin is not None
        if kind == "slow" and target.name == "Linux":
            mem = re.search(r"TCP:.* mem (\d+)", sh("ip", "netns", "exec", topo.server, "cat", "/proc/net/sockstat"))
            if mem:  # pages; the count is host-wide (the client's buffers are in it too)
                notes.append(f"kernel TCP memory {int(mem.group(1)) * 4096 / 2**20:.0f} MB (all namespaces)")
        load.stdin.write("close\n")
        load.stdin.flush()
        done = first_json(load)
        load.wait(timeout=60)
        if kind == "idle":
            notes.append(f"after closing them: connection in {done.get('conn_s', float('nan')):.2f} s, "
                         f"ping in {done.get('ping_s', float('nan')):.2f} s")
        else:
            notes.append(f"{done['sent'] / 2**20:,.0f} MB sent")
        time.sleep(2.0)  # time to free the memory
        notes.append(f"RSS before {rss_before:.0f} MB, after close {rss_mb(target.proc.pid):.0f} MB")
    after = target.counters()
    if spoofed:
        # Repair for the floods after this one: the client asks again, so the target learns the
        # truth (after the lock time, which now protects the spoofed entry).
        time.sleep(1.0)
        sh("ip", "-n", topo.client, "neigh", "flush", "dev", target.ifname)
        sh("ip", "netns", "exec", topo.client, "ping", "-c", "1", "-W", "1", target.address, check=False)
    watched = USERNET_COUNTERS if target.name == "usernet" else LINUX_COUNTERS
    deltas = [f"{name} {after.get(name, 0) - before.get(name, 0):,}" for name in watched
              if after.get(name, 0) != before.get(name, 0)]
    ok = [c for c in result["conns"] if c is not None]
    return {"conns": f"{len(ok)}/{len(result['conns'])}",
            "conn_ms": f"{statistics.median(ok) * 1000:.1f}" if ok else "-",
            "pings": f"{len(result['pings'])}/{result['pings_sent']}",
            "ping_ms": f"{statistics.median(result['pings']) * 1000:.2f}" if result["pings"] else "-",
            "rss": peak[0], "rate": rate, "notes": "; ".join(notes + deltas)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="measurement per flood and target (default 6)")
    parser.add_argument("--floods", default=ALL_FLOODS, help=f"comma-separated, from {ALL_FLOODS}")
    parser.add_argument("--idle", type=int, default=None, help="idle connections (default 5000)")
    parser.add_argument("--slow", type=int, default=None, help="slow clients (default 50)")
    parser.add_argument("--quick", action="store_true", help="seconds 2, idle 200, slow 10 (the smoke test)")
    args = parser.parse_args()
    defaults = (2.0, 200, 10) if args.quick else (6.0, 5000, 50)
    for name, default in zip(("seconds", "idle", "slow"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    floods = args.floods.split(",")
    unknown = [kind for kind in floods if kind not in ALL_FLOODS.split(",")]
    if unknown:
        parser.error(f"unknown flood {unknown[0]} (choose from {ALL_FLOODS})")
    with topology() as topo:
        linux = topo.start(topo.server, sys.executable, "-c", KERNEL_ECHO)
        usernet = topo.start_usernet("--serve", "echo:7")
        targets = (Target("Linux", topo.client_to_server_if, LINUX_SERVER, linux, topo),
                   Target("usernet", topo.client_to_usernet_if, USERNET, usernet, topo))
        print("| flood | target | connections ok | connect median (ms) | pings ok | ping median (ms) "
              "| peak RSS (MB) | frames/s sent | notes |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |", flush=True)
        for kind in floods:
            for target in targets:
                r = run(topo, target, kind, args)
                print(f"| {kind} | {target.name} | {r['conns']} | {r['conn_ms']} | {r['pings']} | {r['ping_ms']} | "
                      f"{r['rss']:.0f} | {r['rate']:,.0f} | {r['notes']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
