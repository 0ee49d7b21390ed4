"""usernet's TCP against the Linux kernel over veth (AF_PACKET, offloads on).

usernet runs as users run it (`usernet up --serve ...`, `usernet nc`); the kernel side is Python's
own socket module inside the peer namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from tests.realpeer.support import PEER_IP, USERNET_IP, Veth, need_programs, stop

pytestmark = pytest.mark.root

PEER_TCP = r"""
import hashlib, json, os, socket, sys, threading, time
mode, host = sys.argv[1], sys.argv[2]
arg = int(sys.argv[3]) if len(sys.argv) > 3 else 0
out = {}
def connect(port):
    s = socket.create_connection((host, port), timeout=20)
    return s
if mode == "discard":
    data = os.urandom(arg)
    s = connect(9); t = time.perf_counter()
    s.sendall(data); s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b""
    out = {"seconds": time.perf_counter() - t, "bytes": arg}
elif mode == "chargen":
    s = connect(19); t = time.perf_counter(); h = hashlib.sha256(); got = 0
    while got < arg:
        d = s.recv(min(1 << 20, arg - got))
        if not d: break
        h.update(d); got += len(d)
    out = {"seconds": time.perf_counter() - t, "bytes": got, "sha256": h.hexdigest()}
    s.close()
elif mode == "echo":
    data = os.urandom(arg)
    s = connect(7)
    t = time.perf_counter()
    th = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR))); th.start()
    h = hashlib.sha256(); got = 0
    while True:
        d = s.recv(1 << 20)
        if not d: break
        h.update(d); got += len(d)
    th.join()
    out = {"seconds": time.perf_counter() - t, "bytes": got, "ok": h.digest() == hashlib.sha256(data).digest()}
elif mode == "concurrent":
    results = [None] * arg
    def one(i):
        payload = os.urandom(1000 + i)
        with connect(7) as c:
            c.sendall(payload); c.shutdown(socket.SHUT_WR)
            buf = b""
            while (d := c.recv(65536)): buf += d
        results[i] = buf == payload
    threads = [threading.Thread(target=one, args=(i,)) for i in range(arg)]
    t = time.perf_counter()
    for th in threads: th.start()
    for th in threads: th.join()
    out = {"ok": sum(bool(r) for r in results), "seconds": time.perf_counter() - t}
elif mode == "sequential":
    t = time.perf_counter(); ok = 0
    for i in range(arg):
        with connect(7) as c:
            c.sendall(b"x%d" % i); c.shutdown(socket.SHUT_WR)
            ok += c.recv(100) == b"x%d" % i
    out = {"ok": ok, "seconds": time.perf_counter() - t}
elif mode == "rtt":
    with connect(7) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for i in range(arg):
            t = time.perf_counter(); c.sendall(b"!"); assert c.recv(1) == b"!"; samples.append(time.perf_counter() - t)
    samples.sort()
    out = {"median": samples[len(samples) // 2], "p99": samples[int(len(samples) * 0.99)]}
print(json.dumps(out))
"""


def peer(veth: Veth, *args: object, timeout: float = 180) -> dict:
    result = subprocess.run(["ip", "netns", "exec", veth.peer_ns, sys.executable, "-c", PEER_TCP,
                             *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def chargen_sha(size: int) -> str:
    from usernet.apps.services import CHARGEN_BLOCK

    block = CHARGEN_BLOCK * (size // len(CHARGEN_BLOCK) + 1)
    return hashlib.sha256(block[:size]).hexdigest()


def test_bulk_both_ways_echo_and_option_negotiation(veth: Veth) -> None:
    need_programs("tshark")
    pcap = os.path.join(veth.workdir, "handshake.pcap")
    handshake = veth.start_up("--serve", "echo:7", "--pcap", pcap)
    assert peer(veth, "echo", USERNET_IP, 1000)["ok"]
    stop(handshake)
    fields = subprocess.run(["tshark", "-n", "-r", pcap, "-Y", "tcp", "-T", "fields", "-e", "ip.src", "-e",
                             "tcp.flags.syn", "-e", "tcp.options.sack_perm", "-e", "tcp.options.timestamp.tsval",
                             "-e", "tcp.options.wscale.shift", "-E", "separator=;"],
                            capture_output=True, text=True, timeout=60).stdout.splitlines()
    rows = [line.split(";") for line in fields]
    syn = next(r for r in rows if r[0] == PEER_IP and r[1] in ("1", "True"))
    synack = next(r for r in rows if r[0] == USERNET_IP and r[1] in ("1", "True"))
    assert syn[2] and syn[3] and syn[4]  # Linux offers SACK, timestamps and window scaling...
    assert synack[2] and synack[3] and synack[4] == "5"  # ...and usernet accepts all three
    later = [r for r in rows if r[0] == PEER_IP and r[1] in ("0", "False")]
    assert later and all(r[3] for r in later)  # Linux keeps sending timestamps: negotiated

    proc = veth.start_up("--serve", "echo:7", "--serve", "discard:9", "--serve", "chargen:19")
    into = peer(veth, "discard", USERNET_IP, 50_000_000)
    assert into["bytes"] == 50_000_000
    out = peer(veth, "chargen", USERNET_IP, 50_000_000)
    assert out["bytes"] == 50_000_000 and out["sha256"] == chargen_sha(50_000_000)
    echo = peer(veth, "echo", USERNET_IP, 20_000_000)
    assert echo["ok"] and echo["bytes"] == 20_000_000
    code, summary = stop(proc)
    assert code == 0 and "internal error" not in summary


def test_many_connections(veth: Veth) -> None:
    proc = veth.start_up("--serve", "echo:7")
    concurrent = peer(veth, "concurrent", USERNET_IP, 200)
    assert concurrent["ok"] == 200
    sequential = peer(veth, "sequential", USERNET_IP, 1000)
    assert sequential["ok"] == 1000
    code, summary = stop(proc)
    assert code == 0 and "internal error" not in summary


def test_usernet_nc_sends_and_half_closes_to_linux(veth: Veth) -> None:
    need_programs("socat")
    payload = bytes(range(256)) * 32768  # 8 MiB
    server = subprocess.Popen(["ip", "netns", "exec", veth.peer_ns, "socat", "-u", "TCP-LISTEN:5001,reuseaddr",
                               "SYSTEM:sha256sum"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        nc = subprocess.run(veth.usernet_cmd("nc", "--iface", veth.usernet_if, "--addr", f"{USERNET_IP}/24",
                                             PEER_IP, "5001"), input=payload, capture_output=True, timeout=120)
        assert nc.returncode == 0, nc.stderr
        digest = server.communicate(timeout=30)[0].split()[0]
        assert digest == hashlib.sha256(payload).hexdigest()
    finally:
        server.kill()
        server.wait()


def test_usernet_nc_listens_and_receives_from_linux(veth: Veth) -> None:
    need_programs("socat")
    payload = bytes(range(251)) * 20000
    received = os.path.join(veth.workdir, "received")
    with open(received, "wb") as sink:
        nc = subprocess.Popen(veth.usernet_cmd("nc", "-l", "--iface", veth.usernet_if, "--addr",
                                               f"{USERNET_IP}/24", "6000"), stdin=subprocess.DEVNULL, stdout=sink)
        veth.procs.append(nc)  # type: ignore[arg-type]
        time.sleep(1.0)
        subprocess.run(["ip", "netns", "exec", veth.peer_ns, "socat", "-u", "-", f"TCP:{USERNET_IP}:6000"],
                       input=payload, check=True, timeout=60)
        assert nc.wait(timeout=60) == 0
    with open(received, "rb") as f:
        assert f.read() == payload


def test_connect_to_closed_linux_port_is_refused(veth: Veth) -> None:
    nc = subprocess.run(veth.usernet_cmd("nc", "--iface", veth.usernet_if, "--addr", f"{USERNET_IP}/24",
                                         PEER_IP, "5999"), input=b"", capture_output=True, timeout=60)
    assert nc.returncode == 1 and b"Connection refused" in nc.stderr


def test_echo_under_impairment(veth: Veth) -> None:
    proc = veth.start_up("--serve", "echo:7", "--impair", "loss=0.05,dup=0.02,reorder=0.05", "--seed", "3")
    echo = peer(veth, "echo", USERNET_IP, 5_000_000, timeout=300)
    assert echo["ok"] and echo["bytes"] == 5_000_000
    code, summary = stop(proc)
    assert code == 0 and "retransmitted segments" in summary


def test_usernet_nc_udp_against_linux(veth: Veth) -> None:
    echo = subprocess.Popen(["ip", "netns", "exec", veth.peer_ns, sys.executable, "-c",
                             "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                             f"s.bind(('{PEER_IP}', 7007))\n"
                             "while True:\n    d, a = s.recvfrom(65535)\n    s.sendto(d.upper(), a)\n"])
    veth.procs.append(echo)  # type: ignore[arg-type]
    time.sleep(0.5)
    nc = subprocess.Popen(veth.usernet_cmd("nc", "-u", "--iface", veth.usernet_if, "--addr", f"{USERNET_IP}/24",
                                           PEER_IP, "7007"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    veth.procs.append(nc)  # type: ignore[arg-type]
    assert nc.stdin is not None and nc.stdout is not None
    nc.stdin.write(b"datagram over usernet\n")
    nc.stdin.flush()
    assert nc.stdout.read(len(b"DATAGRAM OVER USERNET\n")) == b"DATAGRAM OVER USERNET\n"
    nc.terminate()
    nc.wait(timeout=10)
