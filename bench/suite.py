"""The benchmark suite of issue 17: every scenario beside its reference, measured in the same run.

Run as root: `./dev bench [--quick] [--only SCENARIOS] [--out DIR] [--idle N]` (or
`.venv/bin/python bench/suite.py ...`). It writes DIR/results.md (a table per scenario: figure,
reference, usernet, ratio, the issue's target, met or not) and DIR/results.png (usernet/reference
ratios with the targets, when matplotlib is installed). DIR defaults to bench/. Scenarios:

* bulk:    bulk TCP in and out over veth, sha256-checked: offloads on, every offload off, MTU 9000
           with offloads off; references Linux->Linux over the same kind of link and the bare Python
           AF_PACKET frame loop on that link; then over TAP beside the frame loop on the TAP
* local:   loopback TCP inside one host, usernet<->usernet on the in-memory switch (MB/s, CPU per segment)
* latency: ping and 1-byte TCP echo, median and p99
* conns:   short connections per second, then with N idle connections established (and echo latency)
* multi:   1, 10, 100, 1000 concurrent bulk connections: total MB/s and Jain's fairness index
* http:    wrk against `usernet up --serve http` and `--serve wsgi` beside CPython's ThreadingHTTPServer
* memory:  RSS of `usernet up` after start, after a 1 GB transfer, per idle established connection

Over veth the TCP servers on both sides are the same Python code (threaded, blocking sockets): the
kernel's sockets in one namespace, a `usernet.Host` on AF_PACKET in the other; the same kernel
client measures both. Each scenario removes its namespaces and processes, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_loopback  # noqa: E402
import bench_ping  # noqa: E402
from topology import LINUX_SERVER, USERNET, Topology, sh, stop, topology  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = ("bulk", "local", "latency", "conns", "multi", "http", "memory")


@dataclass
class Row:
    figure: str
    reference: float | None
    usernet: float | None
    target: str = ""
    met: bool | None = None
    target_ratio: float | None = None  # the target as usernet/reference, for the plot
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference and self.usernet is not None:
            return self.usernet / self.reference
        return None


@dataclass
class Scenario:
    name: str
    title: str
    reference: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


# --- topology -----------------------------------------------------------------------------------

def veth(mtu: int = 1500, offloads: bool = True) -> contextlib.AbstractContextManager[Topology]:
    """bench/topology.py's topology, named as the suite's."""
    return topology(mtu, offloads, kind="s")


def in_ns(ns: str, script: str, *args: object, timeout: float = 600) -> dict:
    """Run a Python *script* in namespace *ns*; its last stdout line is JSON."""
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script, *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"client in {ns} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# The TCP servers, the same code on both stacks. 9: sink (reads to EOF, answers the sha256 of what
# it read); 19: source (reads "N\n", sends N bytes of a fixed pattern); 7: echo (TCP_NODELAY);
# 5009: holds every connection it accepts open, idle, without a thread.
SERVER = r"""
import hashlib, resource, socket, sys, threading
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
kind = sys.argv[1]
if kind.startswith("usernet"):
    import usernet
    from usernet.links.packet import Packet
    from usernet.links.tuntap import Tap
    host = usernet.Host(Tap(sys.argv[2]) if kind == "usernet-tap" else Packet(sys.argv[2]), addr=sys.argv[3])
    host.__enter__()
    listen = lambda port: host.create_server(("", port), backlog=1024)
else:
    listen = lambda port: socket.create_server(("", port), backlog=1024)
BLOCK = hashlib.sha256(b"usernet").digest() * 2048  # 64 KB
def serve(port, handler):
    s = listen(port)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
def sink(c):
    with c:
        digest, total = hashlib.sha256(), 0
        while (d := c.recv(1 << 20)):
            digest.update(d); total += len(d)
        c.sendall(f"{total} {digest.hexdigest()}\n".encode())
def source(c):
    with c:
        line = b""
        while not line.endswith(b"\n"):
            d = c.recv(64)
            if not d: return
            line += d
        left = int(line)
        view = memoryview(BLOCK)
        try:
            while left > 0:
                n = min(left, len(BLOCK)); c.sendall(view[:n]); left -= n
        except OSError: pass
def echo(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while (d := c.recv(65536)): c.sendall(d)
        except OSError: pass
held = []
def hold(port):
    s = listen(port)
    while True:
        held.append(s.accept()[0])
for port, h in ((9, sink), (19, source), (7, echo)):
    threading.Thread(target=serve, args=(port, h), daemon=True).start()
threading.Thread(target=hold, args=(5009,), daemon=True).start()
print("ready", flush=True)
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
"""

CLIENT = r"""
import hashlib, json, os, resource, selectors, socket, sys, time
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
mode, host = sys.argv[1], sys.argv[2]
args = [int(a) for a in sys.argv[3:]]
BLOCK = hashlib.sha256(b"usernet").digest() * 2048
def pct(samples, q):
    samples = sorted(samples); return samples[min(len(samples) - 1, int(len(samples) * q))] * 1e6
def bulk_in(size):
    data = os.urandom(1 << 20); digest = hashlib.sha256(); sent = 0
    s = socket.create_connection((host, 9)); t = time.perf_counter()
    while sent < size:
        chunk = data[:min(len(data), size - sent)]; s.sendall(chunk); digest.update(chunk); sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while not reply.endswith(b"\n"):
        d = s.recv(256)
        if not d: break
        reply += d
    elapsed = time.perf_counter() - t; s.close()
    ok = reply.split() == [str(sent).encode(), digest.hexdigest().encode()]
    return sent / elapsed / 1e6, ok
def bulk_out(size):
    s = socket.create_connection((host, 19)); s.sendall(b"%d\n" % size); t = time.perf_counter()
    digest = hashlib.sha256(); got = 0
    while (d := s.recv(1 << 20)):
        digest.update(d); got += len(d)
    elapsed = time.perf_counter() - t; s.close()
    expect = hashlib.sha256()
    for _ in range(size // len(BLOCK)): expect.update(BLOCK)
    expect.update(BLOCK[:size % len(BLOCK)])
    return got / elapsed / 1e6, got == size and digest.digest() == expect.digest()
def echo(count):
    s = socket.create_connection((host, 7)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(count + 50):
        t = time.perf_counter(); s.sendall(b"x"); s.recv(1); samples.append(time.perf_counter() - t)
    s.close(); samples = samples[50:]
    return pct(samples, 0.5), pct(samples, 0.99)
def conns(count):
    payload = b"x" * 100; t = time.perf_counter()
    for _ in range(count):
        with socket.create_connection((host, 7)) as c:
            c.sendall(payload); got = b""
            while len(got) < 100:
                d = c.recv(100)
                if not d: raise OSError("echo closed early")
                got += d
    return count / (time.perf_counter() - t)
res = {}
if mode == "bulk":
    size = args[0]
    res["in"], res["in_ok"] = bulk_in(size)
    res["out"], res["out_ok"] = bulk_out(size)
elif mode == "latency":
    res["echo_median_us"], res["echo_p99_us"] = echo(args[0])
elif mode == "bulk_svc":
    # RFC 863/864 services: to discard, all sent and the server's close seen after our FIN (it read
    # everything); from chargen, SIZE bytes checked against RFC 864's rotating pattern.
    size = args[0]
    data = os.urandom(1 << 20); sent = 0
    s = socket.create_connection((host, 9)); t = time.perf_counter()
    while sent < size:
        chunk = data[:min(len(data), size - sent)]; s.sendall(chunk); sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536): pass
    res["in"] = sent / (time.perf_counter() - t) / 1e6; s.close()
    # Checked as it comes by comparison with the pattern (memcmp, not a hash: the client must not
    # be what limits a 2-core machine).
    rot = b"".join(bytes(32 + (i % 95 + j) % 95 for j in range(72)) + b"\r\n" for i in range(95))
    big = memoryview(rot * ((1 << 20) // len(rot) + 2))
    s = socket.create_connection((host, 19)); t = time.perf_counter()
    got = 0; ok = True; buf = bytearray(1 << 20); view = memoryview(buf)
    while got < size:
        n = s.recv_into(buf, min(len(buf), size - got))
        if not n: break
        off = got % len(rot)
        ok = ok and view[:n] == big[off:off + n]; got += n
    res["out"] = got / (time.perf_counter() - t) / 1e6; s.close()
    res["out_ok"] = ok and got == size
elif mode == "conns":
    count, idle, echoes, *rest = args
    idle_port = rest[0] if rest else 5009
    res["conn_per_s"] = conns(count)
    res["echo_median_us"], res["echo_p99_us"] = echo(echoes)
    held = []
    t = time.perf_counter()
    for i in range(idle):
        held.append(socket.create_connection((host, idle_port), timeout=30))
    res["idle_open_s"] = time.perf_counter() - t
    time.sleep(1)
    res["idle_conn_per_s"] = conns(count)
    res["idle_echo_median_us"], res["idle_echo_p99_us"] = echo(echoes)
    for s in held: s.close()
elif mode == "multi":
    count, seconds = args
    sel = selectors.DefaultSelector(); got = {}
    socks = [socket.create_connection((host, 19), timeout=30) for _ in range(count)]
    for s in socks:
        s.sendall(b"%d\n" % (1 << 50)); s.setblocking(False); sel.register(s, selectors.EVENT_READ); got[s] = 0
    t = time.perf_counter(); end = t + seconds
    while (now := time.perf_counter()) < end:
        for key, _ in sel.select(end - now):
            try:
                got[key.fileobj] += len(key.fileobj.recv(1 << 18))
            except BlockingIOError:
                pass
    elapsed = time.perf_counter() - t
    values = list(got.values())
    res["total"] = sum(values) / elapsed / 1e6
    res["jain"] = sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if any(values) else 0.0
    for s in socks: s.close()
elif mode == "hold":
    # open N idle connections, then print a line and wait for stdin to close
    held = [socket.create_connection((host, 5009), timeout=30) for _ in range(args[0])]
    print("held", flush=True); sys.stdin.read()
    res["held"] = len(held)
print(json.dumps(res))
"""

# A loop that only moves frames: the ceiling a Python program meets on this link.
FRAMES = r"""
import json, socket, sys, time
import fcntl, os, select, struct
mode, ifname, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
size = int(sys.argv[4])
if ifname.startswith("tap:"):  # the program's side of a TAP device: its file descriptor
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH22x", ifname[4:].encode(), 0x0002 | 0x1000))
    class s:
        send = staticmethod(lambda frame: os.write(fd, frame))
        @staticmethod
        def settimeout(t): s.timeout = t
        @staticmethod
        def recv_into(buf):
            if not select.select([fd], [], [], s.timeout)[0]: raise TimeoutError
            return os.readv(fd, [buf])
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((ifname, 0x88B5))
if mode == "tx":
    print("ready", flush=True); sys.stdin.readline()
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(size - 14)
    send, n, end = s.send, 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(256):
            try: send(frame)
            except OSError: pass
        n += 256
    print(json.dumps({"sent": n}))
else:
    buf = bytearray(size + 64); recv_into = s.recv_into; n = 0; s.settimeout(5)
    print("ready", flush=True)
    try:
        recv_into(buf); n = 1; s.settimeout(0.5); t = time.perf_counter(); last = t
        while True:
            recv_into(buf); n += 1
            if n & 255 == 0: last = time.perf_counter()
    except (socket.timeout, TimeoutError):
        pass
    print(json.dumps({"frames": n, "seconds": max(1e-9, last - t) if n > 1 else 0.0}))
"""


def frame_ceiling(tx_ns: str, tx_if: str, rx_ns: str, rx_if: str, seconds: float, size: int) -> float:
    """MB/s of *size*-byte frames a Python receive loop sees while a Python send loop sends."""
    rx = subprocess.Popen(["ip", "netns", "exec", rx_ns, sys.executable, "-c", FRAMES, "rx", rx_if, str(seconds),
                           str(size)], stdout=subprocess.PIPE, text=True)
    tx = subprocess.Popen(["ip", "netns", "exec", tx_ns, sys.executable, "-c", FRAMES, "tx", tx_if, str(seconds),
                           str(size)], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert rx.stdout and tx.stdout and tx.stdin
        rx.stdout.readline()
        tx.stdout.readline()
        tx.stdin.write("go\n")
        tx.stdin.flush()
        result = json.loads(rx.stdout.readline())
        tx.wait(timeout=seconds + 10)
        return result["frames"] * size / result["seconds"] / 1e6 if result["seconds"] else 0.0
    finally:
        for proc in (rx, tx):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def start_servers(topo: Topology) -> subprocess.Popen[str]:
    """The threaded servers on both stacks; returns usernet's (services() replaces it)."""
    topo.start(topo.server, sys.executable, "-c", SERVER, "kernel")
    return topo.start(topo.host, sys.executable, "-c", SERVER, "usernet", topo.usernet_if, f"{USERNET}/24")


def services(topo: Topology, threaded: subprocess.Popen[str]) -> None:
    """Swap usernet's threaded server program for `usernet up` with its built-in echo (7), discard
    (9) and chargen (19): RFC 862-864 served from the runtime thread (apps/services.py)."""
    stop(threaded)
    topo.procs.remove(threaded)
    topo.start(topo.host, sys.executable, "-m", "usernet.cli", "up", "--iface", topo.usernet_if, "--addr",
               f"{USERNET}/24", "--serve", "echo:7", "--serve", "discard:9", "--serve", "chargen:19", "--no-control")
    time.sleep(0.3)  # its first ARP exchange and listeners


SERVICES_NOTE = ("'built-in services' rows: `usernet up --serve echo:7 --serve discard:9 --serve chargen:19`, "
                 "usernet's own RFC 862-864 services, which run in its runtime thread, against Linux's threaded "
                 "Python servers (the issue's own set-up, so the latency, connection and concurrency targets are "
                 "judged on them); 'threaded' rows run the same threaded Python server program on usernet's "
                 "sockets, the path of user code with blocking sockets and a thread per connection.")


# --- scenarios ----------------------------------------------------------------------------------

def scenario_bulk(opts: argparse.Namespace) -> Scenario:
    sc = Scenario("bulk", "Bulk TCP over veth (sha256-checked)",
                  "Linux->Linux over the same kind of veth link, and the bare Python AF_PACKET frame loop on it")
    size = opts.mbytes * 1_000_000
    configs = (("offloads on, MTU 1500", 1500, True), ("offloads off, MTU 1500", 1500, False),
               ("offloads off, MTU 9000", 9000, False))
    for label, mtu, offloads in configs:
        with veth(mtu, offloads) as topo:
            threaded = start_servers(topo)
            linux = in_ns(topo.client, CLIENT, "bulk", LINUX_SERVER, size)
            ours = in_ns(topo.client, CLIENT, "bulk", USERNET, size)
            frame = mtu + 14
            ceiling_in = frame_ceiling(topo.client, topo.client_to_usernet_if, topo.host, topo.usernet_if,
                                       opts.frame_seconds, frame)
            ceiling_out = frame_ceiling(topo.host, topo.usernet_if, topo.client, topo.client_to_usernet_if,
                                        opts.frame_seconds, frame)
            builtin = None
            if mtu == 1500:
                services(topo, threaded)
                builtin = in_ns(topo.client, CLIENT, "bulk_svc", USERNET, size)
        checked = all((linux["in_ok"], linux["out_ok"], ours["in_ok"], ours["out_ok"]))
        if not checked:
            sc.notes.append(f"{label}: a sha256 check FAILED ({linux}, {ours})")
        for direction, ceiling in (("in", ceiling_in), ("out", ceiling_out)):
            name = f"bulk {direction}, {label} (MB/s)"
            value = ours[direction]
            if offloads:
                bound = 1000.0 if direction == "in" else 1500.0
                sc.rows.append(Row(name, linux[direction], value, f">= {bound:,.0f} MB/s", at_least(value, bound),
                                   bound / linux[direction]))
            elif mtu == 1500:
                sc.rows.append(Row(name, linux[direction], value, ">= 150 MB/s", at_least(value, 150.0),
                                   150.0 / linux[direction]))
            else:
                sc.rows.append(Row(name, linux[direction], value))
            if not offloads:
                target = ">= 0.40 of the frame loop" if mtu == 1500 else ""
                sc.rows.append(Row(f"  vs the Python frame loop {direction} ({frame}-byte frames, MB/s)", ceiling,
                                   value, target, at_least(value / ceiling if ceiling else None, 0.4)
                                   if mtu == 1500 else None, 0.4 if mtu == 1500 else None))
            if builtin is not None:
                what = "to discard" if direction == "in" else "from chargen"
                sc.rows.append(Row(f"  built-in services: bulk {direction}, {what} (MB/s)", linux[direction],
                                   builtin[direction]))
        if builtin is not None and not builtin["out_ok"]:
            sc.notes.append(f"{label}: the chargen pattern check FAILED ({builtin})")
    sc.notes.append("The sha256-checked rows (the targets) use the threaded sink and source on usernet's sockets; "
                    "the built-in services rows use `usernet up --serve discard:9 --serve chargen:19` (served in "
                    "its runtime thread): in, all sent and discard's close seen after the client's FIN; out, "
                    "checked against RFC 864's pattern.")
    sc.notes.append(f"{opts.mbytes} MB each way; 'offloads off' is `ethtool -K tso gso gro tx rx off` on every veth "
                    "end (usernet still hands the packet socket 64 KB super-segments, which the kernel then cuts "
                    "in software); the frame loop rows compare usernet with a Python loop that only sends "
                    "(or only receives) raw frames of the link's MTU on the same link, "
                    f"{opts.frame_seconds:g} s each direction (in: client->usernet's end).")
    reference = {r.figure: r.reference for r in sc.rows}
    tap_rows(sc, opts, reference["bulk in, offloads on, MTU 1500 (MB/s)"],
             reference["bulk out, offloads on, MTU 1500 (MB/s)"])
    return sc


@contextlib.contextmanager
def tap_namespace() -> Iterator[tuple[Topology, str]]:
    """One namespace with a persistent TAP device: the kernel's end is the interface (10.83.0.1),
    usernet (or the frame loop) holds the file descriptor."""
    tag = uuid.uuid4().hex[:5]
    ns, dev = f"un-s{tag}t", f"ts{tag}"
    topo = Topology(ns, ns, ns, dev, [])
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tap")
        sh("ip", "-n", ns, "addr", "add", "10.83.0.1/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        yield topo, dev
    finally:
        for proc in topo.procs:
            stop(proc)
        subprocess.run(["ip", "-n", ns, "tuntap", "del", "dev", dev, "mode", "tap"], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def tap_rows(sc: Scenario, opts: argparse.Namespace, linux_in: float, linux_out: float) -> None:
    with tap_namespace() as (topo, dev):
        topo.start(topo.host, sys.executable, "-c", SERVER, "usernet-tap", dev, "10.83.0.2/24")
        ours = in_ns(topo.client, CLIENT, "bulk", "10.83.0.2", opts.mbytes * 1_000_000)
        stop(topo.procs.pop())
        time.sleep(0.2)
        # in: the kernel's interface sends, the descriptor reads (as usernet does in bulk in); out: reversed
        ceiling_in = frame_ceiling(topo.client, dev, topo.client, f"tap:{dev}", opts.frame_seconds, 1514)
        ceiling_out = frame_ceiling(topo.client, f"tap:{dev}", topo.client, dev, opts.frame_seconds, 1514)
    if not (ours["in_ok"] and ours["out_ok"]):
        sc.notes.append(f"TAP: a sha256 check FAILED ({ours})")
    for direction, linux, bound, ceiling in (("in", linux_in, 1000.0, ceiling_in),
                                            ("out", linux_out, 1500.0, ceiling_out)):
        value = ours[direction]
        sc.rows.append(Row(f"bulk {direction}, TAP, MTU 1500 (MB/s; ref. Linux over veth)", linux, value,
                           f">= {bound:,.0f} MB/s", at_least(value, bound), bound / linux))
        sc.rows.append(Row(f"  vs the Python frame loop {direction} on the TAP (1514-byte frames, MB/s)", ceiling,
                           value))
    sc.notes.append("TAP: the kernel client uses the TAP interface in usernet's namespace; usernet opens it with "
                    "IFF_VNET_HDR and TUNSETOFFLOAD (TSO4, partial checksums), so TCP moves in super-frames, "
                    "while the frame loop moves plain 1514-byte frames (usernet can beat it). "
                    "No Linux->Linux TAP reference (it would need a forwarder program between two TAPs): the "
                    "reference is Linux over veth with offloads on, and the frame loop on this TAP.")


def scenario_local(opts: argparse.Namespace) -> Scenario:
    import usernet
    from usernet.links.memory import Switch

    sc = Scenario("local", "TCP inside one process", "the Linux kernel's loopback, same Python client and server")
    mbytes = opts.local_mbytes

    def kernel_server(address: tuple[str, int]) -> socket.socket:
        return socket.create_server(address)

    linux = bench_loopback.bulk(kernel_server, socket.create_connection, mbytes)
    with usernet.Host(Switch().port(), addr="10.99.0.1/24") as host:
        before, cpu = host.counters.get("tcp.segments_sent", 0), time.process_time()
        loop = bench_loopback.bulk(host.create_server, host.create_connection, mbytes)
        cpu, segments = time.process_time() - cpu, host.counters.get("tcp.segments_sent", 0) - before
    sc.rows.append(Row("loopback inside one host (MB/s)", linux, loop, ">= 1,000 MB/s", at_least(loop, 1000.0),
                       1000.0 / linux))
    sc.rows.append(Row("  CPU per segment, loopback (us)", None, cpu / max(1, segments) * 1e6,
                       note=f"{segments:,} segments"))
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.99.1.1/24") as a, usernet.Host(switch.port(), addr="10.99.1.2/24") as b:
        server = b.create_server(("10.99.1.2", 0))
        port = server.getsockname()[1]
        total = mbytes * 1024 * 1024
        got = [0]

        def sink() -> None:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(1 << 20):
                    got[0] += len(data)

        thread = threading.Thread(target=sink)
        before = a.counters.get("tcp.segments_sent", 0)
        cpu0, start = time.process_time(), time.perf_counter()
        thread.start()
        with a.create_connection(("10.99.1.2", port)) as conn:
            for _ in range(total // len(bench_loopback.CHUNK)):
                conn.sendall(bench_loopback.CHUNK)
        thread.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        segments = a.counters.get("tcp.segments_sent", 0) - before
        server.close()
    switched = got[0] / elapsed / 1e6
    sc.rows.append(Row("usernet<->usernet, in-memory switch (MB/s)", linux, switched))
    sc.rows.append(Row("  CPU per data segment, switch (us)", None, cpu / max(1, segments) * 1e6,
                       note=f"{segments:,} segments sent, both hosts' CPU"))
    sc.notes.append(f"{mbytes} MB one way; CPU is this process's (both stacks, sender and receiver) divided by "
                    "the sender's tcp.segments_sent.")
    return sc


def scenario_latency(opts: argparse.Namespace) -> Scenario:
    sc = Scenario("latency", "Latency over veth (MTU 1500, offloads on)", "Linux->Linux over veth, same run")
    with veth() as topo:
        threaded = start_servers(topo)
        bench_ping.rtts(topo.client, USERNET, 20)
        bench_ping.rtts(topo.client, LINUX_SERVER, 20)
        linux_ping = bench_ping.summary(bench_ping.rtts(topo.client, LINUX_SERVER, opts.pings))
        our_ping = bench_ping.summary(bench_ping.rtts(topo.client, USERNET, opts.pings))
        linux = in_ns(topo.client, CLIENT, "latency", LINUX_SERVER, opts.echoes)
        ours = in_ns(topo.client, CLIENT, "latency", USERNET, opts.echoes)
        services(topo, threaded)
        in_ns(topo.client, CLIENT, "latency", USERNET, 50)  # its first connection's ARP and warm-up
        builtin = in_ns(topo.client, CLIENT, "latency", USERNET, opts.echoes)
    sc.rows.append(Row("ping median (ms)", linux_ping[0], our_ping[0], "<= 0.03 ms", at_most(our_ping[0], 0.03),
                       0.03 / linux_ping[0]))
    sc.rows.append(Row("ping p99 (ms)", linux_ping[1], our_ping[1]))
    ratio = builtin["echo_median_us"] / linux["echo_median_us"]
    sc.rows.append(Row("1-byte echo median, built-in echo service (us)", linux["echo_median_us"],
                       builtin["echo_median_us"], "<= 1.5x Linux", at_most(ratio, 1.5), 1.5))
    sc.rows.append(Row("1-byte echo p99, built-in echo service (us)", linux["echo_p99_us"], builtin["echo_p99_us"]))
    sc.rows.append(Row("1-byte echo median, threaded server (us)", linux["echo_median_us"], ours["echo_median_us"]))
    sc.rows.append(Row("1-byte echo p99, threaded server (us)", linux["echo_p99_us"], ours["echo_p99_us"]))
    sc.notes.append(f"{opts.pings} pings at 1 ms intervals; {opts.echoes} echoes on one TCP_NODELAY connection.")
    sc.notes.append(SERVICES_NOTE)
    return sc


def scenario_conns(opts: argparse.Namespace) -> Scenario:
    sc = Scenario("conns", f"Short connections from a Linux client, then with {opts.idle:,} idle ones",
                  f"Linux->Linux over veth, same run, the same {opts.idle:,} idle connections")
    with veth() as topo:
        threaded = start_servers(topo)
        linux = in_ns(topo.client, CLIENT, "conns", LINUX_SERVER, opts.conns, opts.idle, opts.echoes)
        ours = in_ns(topo.client, CLIENT, "conns", USERNET, opts.conns, opts.idle, opts.echoes)
        services(topo, threaded)
        # The idle crowd on discard (9): connections that send nothing sit there, as on the hold port.
        builtin = in_ns(topo.client, CLIENT, "conns", USERNET, opts.conns, opts.idle, opts.echoes, 9)
    half = linux["conn_per_s"] / 2
    for label, res, targets in (("built-in echo service", builtin, True), ("threaded server", ours, False)):
        sc.rows.append(Row(f"connections/s (connect, 100 B echoed, close), {label}", linux["conn_per_s"],
                           res["conn_per_s"], ">= 0.5x Linux" if targets else "",
                           at_least(res["conn_per_s"], half) if targets else None, 0.5 if targets else None))
        sc.rows.append(Row(f"  with {opts.idle:,} idle", linux["idle_conn_per_s"], res["idle_conn_per_s"],
                           ">= 0.9x its rate without idle ones, >= 0.45x Linux" if targets else "",
                           at_least(res["idle_conn_per_s"], max(0.9 * res["conn_per_s"], 0.45 * linux["conn_per_s"]))
                           if targets else None,
                           0.45 * linux["conn_per_s"] / linux["idle_conn_per_s"] if targets else None))
        sc.rows.append(Row(f"  1-byte echo median (us), {label}", linux["echo_median_us"], res["echo_median_us"]))
        sc.rows.append(Row(f"  1-byte echo median with {opts.idle:,} idle (us)", linux["idle_echo_median_us"],
                           res["idle_echo_median_us"], "<= 1.1x without idle ones" if targets else "",
                           at_most(res["idle_echo_median_us"], 1.1 * res["echo_median_us"]) if targets else None))
        sc.rows.append(Row(f"  1-byte echo p99 with {opts.idle:,} idle (us)", linux["idle_echo_p99_us"],
                           res["idle_echo_p99_us"]))
        sc.rows.append(Row(f"  time to open {opts.idle:,} idle connections (s)", linux["idle_open_s"],
                           res["idle_open_s"]))
    sc.notes.append(f"{opts.conns:,} sequential connections per rate; --idle sets the idle count.")
    sc.notes.append(SERVICES_NOTE)
    return sc


def jain_row(count: int, linux: dict, ours: dict, targets: bool = True) -> Row:
    judged = targets and count == 1000
    return Row(f"  Jain's index, {count:,} connection{'s' if count > 1 else ''}", linux["jain"], ours["jain"], ">= 0.9"
               if judged else "", at_least(ours["jain"], 0.9) if judged else None,
               0.9 / linux["jain"] if judged and linux["jain"] else None)


def scenario_multi(opts: argparse.Namespace) -> Scenario:
    sc = Scenario("multi", "Concurrent bulk connections (server -> Linux client)", "Linux->Linux over veth, same run")
    results: dict[int, tuple[dict, dict]] = {}
    threaded_results: dict[int, dict] = {}
    with veth() as topo:
        threaded = start_servers(topo)
        for count in opts.concurrency:
            results[count] = (in_ns(topo.client, CLIENT, "multi", LINUX_SERVER, count, opts.multi_seconds), {})
            threaded_results[count] = in_ns(topo.client, CLIENT, "multi", USERNET, count, opts.multi_seconds)
        services(topo, threaded)  # chargen on 19 ignores the client's "N\n" and streams
        for count in opts.concurrency:
            results[count] = (results[count][0], in_ns(topo.client, CLIENT, "multi", USERNET, count,
                                                       opts.multi_seconds))
    for label, table, targets in (("built-in chargen", {c: r[1] for c, r in results.items()}, True),
                                  ("threaded source", threaded_results, False)):
        one = table[opts.concurrency[0]]["total"]
        for count, ours in table.items():
            linux = results[count][0]
            last = targets and count == opts.concurrency[-1] and count >= 1000
            plural = "s" if count > 1 else ""
            sc.rows.append(Row(f"total, {count:,} connection{plural}, {label} (MB/s)", linux["total"], ours["total"],
                               ">= 0.8x one connection's" if last else "", at_least(ours["total"], 0.8 * one)
                               if last else None))
            sc.rows.append(jain_row(count, linux, ours, targets))
    sc.notes.append(SERVICES_NOTE)
    sc.notes.append(f"Each count reads from the source service for {opts.multi_seconds} s; Jain's index over the "
                    "bytes each connection received.")
    return sc


WSGI_APP = """
import os
BODY = open(os.environ["USERNET_BENCH_FILE"], "rb").read()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""

KERNEL_HTTP = r"""
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
http.server.ThreadingHTTPServer.handle_error = lambda *a: None  # wrk's closes at the end: broken pipes
server = http.server.ThreadingHTTPServer(("", 80), handler)
print("ready", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
"""


def wrk(ns: str, url: str, seconds: int, conns: int) -> float:
    return wrk_run(ns, url, seconds, conns)[0]


def wrk_run(ns: str, url: str, seconds: int, conns: int) -> tuple[float, float | None]:
    """(requests/s, median latency in ms) of one wrk run."""
    out = sh("ip", "netns", "exec", ns, "wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{seconds}s", "--latency", url,
             check=False)
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no rate: {out.strip()[-200:]}")
    median = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return float(match.group(1)), float(median.group(1)) * scale[median.group(2)] if median else None


def scenario_http(opts: argparse.Namespace) -> Scenario:
    sc = Scenario("http", "HTTP requests/s with wrk", "CPython's ThreadingHTTPServer on kernel sockets, same file")
    with tempfile.TemporaryDirectory() as tmp, veth() as topo:
        os.chmod(tmp, 0o755)
        with open(os.path.join(tmp, "index.html"), "wb") as f:
            f.write(b"<html><body>" + b"usernet " * 120 + b"</body></html>\n")  # about 1 KB
        with open(os.path.join(tmp, "bench_wsgi_app.py"), "w") as f:
            f.write(WSGI_APP)
        os.environ["USERNET_BENCH_FILE"] = os.path.join(tmp, "index.html")
        topo.start(topo.server, sys.executable, "-c", KERNEL_HTTP, tmp)
        env_path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = tmp + (os.pathsep + env_path if env_path else "")
        try:
            topo.start_usernet("--serve", "http:80:" + tmp, "--serve", "wsgi:8080:bench_wsgi_app:app")
        finally:
            os.environ["PYTHONPATH"] = env_path
        wrk(topo.client, f"http://{LINUX_SERVER}/index.html", 1, 4)
        wrk(topo.client, f"http://{USERNET}/index.html", 1, 4)
        linux = wrk(topo.client, f"http://{LINUX_SERVER}/index.html", opts.wrk_seconds, opts.wrk_conns)
        static = wrk(topo.client, f"http://{USERNET}/index.html", opts.wrk_seconds, opts.wrk_conns)
        wsgi = wrk(topo.client, f"http://{USERNET}:8080/", opts.wrk_seconds, opts.wrk_conns)
        one_linux = wrk_run(topo.client, f"http://{LINUX_SERVER}/index.html", 2, 1)
        one_static = wrk_run(topo.client, f"http://{USERNET}/index.html", 2, 1)
    sc.rows.append(Row("--serve http, requests/s", linux, static, ">= 1.5x", at_least(static / linux, 1.5), 1.5))
    sc.rows.append(Row("--serve wsgi, requests/s", linux, wsgi, ">= 1.5x", at_least(wsgi / linux, 1.5), 1.5))
    sc.rows.append(Row("--serve http, one connection: requests/s", one_linux[0], one_static[0]))
    sc.rows.append(Row("  median request latency, one connection (ms)", one_linux[1],
                       one_static[1]))
    sc.notes.append(f"wrk -t2 -c{opts.wrk_conns} -d{opts.wrk_seconds}s from the client namespace, a 1 KB file; "
                    "ThreadingHTTPServer speaks HTTP/1.0 (a connection per request), usernet keeps connections alive.")
    return sc


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scenario_memory(opts: argparse.Namespace) -> Scenario:
    sc = Scenario("memory", "Memory of `usernet up`", "the Linux side's Python server process (start only)")
    # `usernet up`'s services hold no descriptor per connection (api/selector.py); the kernel client
    # holding them open needs one each.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    idle = min(opts.idle, hard - 256)
    if idle < opts.idle:
        sc.notes.append(f"Idle connections capped at {idle:,} (not {opts.idle:,}): the client holding them needs a "
                        f"descriptor each and RLIMIT_NOFILE's hard limit here is {hard:,}.")
    with veth() as topo:
        kernel = topo.start(topo.server, sys.executable, "-c", SERVER, "kernel")
        proc = topo.start_usernet("--serve", "discard:9", "--serve", "discard:5009")
        time.sleep(0.5)
        start, kernel_start = rss_kb(proc.pid), rss_kb(kernel.pid)
        size = opts.memory_mbytes * 1_000_000
        sh("ip", "netns", "exec", topo.client, sys.executable, "-c",
           "import socket,sys; s=socket.create_connection((sys.argv[1], 9)); b=bytes(1<<20)\n"
           "for _ in range(int(sys.argv[2])): s.sendall(b)\ns.close()", USERNET, str(size >> 20))
        time.sleep(0.5)
        after_bulk = rss_kb(proc.pid)
        holder = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-c", CLIENT, "hold", USERNET,
                                   str(idle)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdin is not None
            if not holder.stdout.readline().startswith("held"):
                raise RuntimeError("the idle connections did not open")
            time.sleep(1)
            with_idle = rss_kb(proc.pid)
            holder.stdin.close()
            holder.wait(timeout=60)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
    mb = 1024.0
    sc.rows.append(Row("RSS after start (MB)", kernel_start / mb, start / mb, "< 25 MB", at_most(start / mb, 25.0),
                       25.0 * mb / kernel_start))
    sc.rows.append(Row(f"RSS after {opts.memory_mbytes:,} MB received (MB)", None, after_bulk / mb,
                       "flat (within 10%)", at_most(after_bulk, start * 1.1)))
    per = (with_idle - after_bulk) / max(1, idle)
    sc.rows.append(Row(f"RSS per idle connection, {idle:,} open (KB)", None, per, "< 10 KB", at_most(per, 10.0)))
    sc.notes.append("VmRSS from /proc; the Linux reference keeps its per-connection state in the kernel, "
                    "so only the start figure has one.")
    return sc


RUNNERS: dict[str, Callable[[argparse.Namespace], Scenario]] = {
    "bulk": scenario_bulk, "local": scenario_local, "latency": scenario_latency, "conns": scenario_conns,
    "multi": scenario_multi, "http": scenario_http, "memory": scenario_memory}


# --- output -------------------------------------------------------------------------------------

def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def write_markdown(path: str, header: dict[str, str], scenarios: list[Scenario]) -> None:
    lines = ["# usernet benchmark suite", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    met = sum(1 for sc in scenarios for r in sc.rows if r.met is True)
    total = sum(1 for sc in scenarios for r in sc.rows if r.met is not None)
    lines += [f"- targets met: {met} of {total}", ""]
    for sc in scenarios:
        lines += [f"## {sc.name}: {sc.title}", "", f"Reference: {sc.reference}. ({sc.seconds:.0f} s)", ""]
        if sc.error:
            lines += [f"FAILED: `{sc.error}`", ""]
        if sc.rows:
            lines += ["| figure | reference | usernet | usernet / reference | target | met |",
                      "| --- | ---: | ---: | ---: | --- | --- |"]
            for r in sc.rows:
                verdict = {True: "met", False: "not met", None: ""}[r.met]
                name = r.figure.replace("  ", "&nbsp;&nbsp;", 1) if r.figure.startswith("  ") else r.figure
                note = f" ({r.note})" if r.note else ""
                lines.append(f"| {name}{note} | {fmt(r.reference)} | {fmt(r.usernet)} | "
                             f"{fmt(r.ratio) + 'x' if r.ratio is not None else '—'} | {r.target} | {verdict} |")
            lines.append("")
        lines += [note for n in sc.notes for note in (n, "")]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(path: str, scenarios: list[Scenario]) -> None:
    try:
        import matplotlib
    except ImportError:
        print("suite: matplotlib is not installed (pip install -e '.[bench]'): no plot, results.md only")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(sc, [r for r in sc.rows if r.ratio is not None]) for sc in scenarios]
    shown = [(sc, rows) for sc, rows in shown if rows]
    if not shown:
        return
    heights = [len(rows) + 1.5 for _, rows in shown]
    fig, axes = plt.subplots(len(shown), 1, figsize=(11, 0.3 * sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for ax, (sc, rows) in zip((a[0] for a in axes), shown, strict=True):
        ys = list(range(len(rows)))
        colours = ["tab:green" if r.met else "tab:red" if r.met is False else "tab:blue" for r in rows]
        ratios = [r.ratio or 0.0 for r in rows]
        ax.barh(ys, ratios, color=colours, height=0.7)
        for y, r in zip(ys, rows, strict=True):
            if r.target_ratio:
                ax.plot([r.target_ratio] * 2, [y - 0.45, y + 0.45], color="black", linewidth=2.5)
            ax.text(r.ratio or 0.0, y, f" {fmt(r.ratio)}x", va="center", fontsize=7)
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        span = [v for v in ratios if v > 0] + [r.target_ratio for r in rows if r.target_ratio] + [1.0]
        ax.set_xlim(min(span) / 1.6, max(span) * 2.2)
        ax.set_yticks(ys)
        ax.set_yticklabels([r.figure.strip() for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{sc.name}: {sc.title} (usernet / reference; black bar: target; green met, red not met)",
                     fontsize=8, loc="left")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def git_commit() -> str:
    out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{platform.node()}: {os.cpu_count()} x {cpu}, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def raise_nofile() -> None:
    """The idle-connection scenarios hold 10,000+ descriptors; children inherit the limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and counts: about 2 minutes")
    parser.add_argument("--only", metavar="SCENARIOS", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--out", metavar="DIR", default=HERE, help="where results.md and results.png go")
    parser.add_argument("--idle", type=int, help="idle connections for conns and memory (default 10,000)")
    opts = parser.parse_args(argv)
    only = opts.only.split(",") if opts.only else list(SCENARIOS)
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    opts.only = only
    quick = opts.quick
    opts.mbytes = 20 if quick else 200
    opts.frame_seconds = 0.5 if quick else 2.0
    opts.local_mbytes = 20 if quick else 200
    opts.pings = 200 if quick else 2000
    opts.echoes = 300 if quick else 2000
    opts.conns = 200 if quick else 1000
    opts.idle = opts.idle if opts.idle is not None else (1000 if quick else 10_000)
    opts.concurrency = (1, 10, 100) if quick else (1, 10, 100, 1000)
    opts.multi_seconds = 1 if quick else 3
    opts.wrk_seconds = 2 if quick else 5
    opts.wrk_conns = 16
    opts.memory_mbytes = 100 if quick else 1000
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    if os.geteuid() != 0 and any(name != "local" for name in opts.only):
        print("suite: needs root (network namespaces, AF_PACKET); --only local runs without", file=sys.stderr)
        return 2
    os.makedirs(opts.out, exist_ok=True)
    raise_nofile()
    command = "bench/suite.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    header = {"command": f"`{command.strip()}` (what `./dev bench` runs, as root)",
              "date": datetime.datetime.now().astimezone().isoformat("T", "seconds"),
              "git commit": git_commit(), "machine": machine(), "load average at start (uptime: 1, 5, 15 min)": load()}
    started = time.perf_counter()
    scenarios: list[Scenario] = []
    for name in opts.only:
        print(f"suite: {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            sc = RUNNERS[name](opts)
        except Exception as err:  # one scenario's failure is reported, the others still run
            traceback.print_exc()
            sc = Scenario(name, "failed", "—", error=f"{type(err).__name__}: {err}")
        sc.seconds = time.perf_counter() - t
        scenarios.append(sc)
        for r in sc.rows:
            print(f"  {r.figure.strip():<55} {fmt(r.reference):>10} {fmt(r.usernet):>10} "
                  f"{(fmt(r.ratio) + 'x') if r.ratio is not None else '':>8}", file=sys.stderr, flush=True)
    header["load average at end"] = load()
    header["duration"] = f"{time.perf_counter() - started:.0f} s"
    write_markdown(os.path.join(opts.out, "results.md"), header, scenarios)
    plot(os.path.join(opts.out, "results.png"), scenarios)
    print(f"suite: wrote {os.path.join(opts.out, 'results.md')}", file=sys.stderr)
    return 1 if any(sc.error for sc in scenarios) else 0


if __name__ == "__main__":
    sys.exit(main())
