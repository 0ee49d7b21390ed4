"""usernet as a router between two Linux namespaces: A - veth - usernet - veth - B.

`usernet up --iface A-side --link iface=B-side,addr=... --forward`; B's link has a smaller MTU
(1280), so path MTU discovery has something to discover.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.realpeer import netns as nn

pytestmark = pytest.mark.root

A_IP, A_SIDE = "10.81.1.1", "10.81.1.2"
B_IP, B_SIDE = "10.81.2.1", "10.81.2.2"
B_MTU = 1280


class Router:
    def __init__(self, a: nn.VethPair, b: nn.VethPair, proc: subprocess.Popen[str]) -> None:
        self.a, self.b, self.proc = a, b, proc


@pytest.fixture
def router(make_veth_pair: Callable[..., nn.VethPair]) -> Iterator[Router]:
    nn.need_program("ping", "ip")
    a = make_veth_pair(peer_addr=f"{A_IP}/24", addr=f"{A_SIDE}/24", own_netns=False)
    b = make_veth_pair(peer_addr=f"{B_IP}/24", addr=f"{B_SIDE}/24", own_netns=False, mtu=B_MTU)
    a.peer.run("ip", "route", "add", "10.81.2.0/24", "via", A_SIDE)
    b.peer.run("ip", "route", "add", "10.81.1.0/24", "via", B_SIDE)
    proc = a.spawn(*a.usernet_argv("up", "--iface", a.ifname, "--addr", a.addr,
                                   "--link", f"iface={b.ifname},addr={b.addr},mtu={B_MTU}", "--forward"),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("ready"), line + (proc.stderr.read() if proc.stderr else "")
        yield Router(a, b, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_ping_both_ways_with_the_ttl_decremented(router: Router) -> None:
    out = router.a.peer.run("ping", "-c", "3", "-i", "0.2", "-W", "2", B_IP, check=False).stdout
    assert " 0% packet loss" in out, out
    # B answers with TTL 64; usernet forwarded the reply once.
    assert re.findall(r"ttl=(\d+)", out) == ["63"] * 3, out
    out = router.b.peer.run("ping", "-c", "2", "-i", "0.2", "-W", "2", A_IP, check=False).stdout
    assert " 0% packet loss" in out and "ttl=63" in out, out
    # The router itself answers on both sides.
    assert " 0% packet loss" in router.a.peer.run("ping", "-c", "1", "-W", "2", B_SIDE, check=False).stdout


def test_fifty_megabytes_through_the_router(router: Router) -> None:
    size = 50 * 1024 * 1024
    sink = router.b.peer.spawn_python(f"""
import hashlib, json, socket
server = socket.create_server(("{B_IP}", 9050))
conn, _ = server.accept()
digest, total = hashlib.sha256(), 0
while data := conn.recv(1 << 20):
    digest.update(data)
    total += len(data)
print(json.dumps({{"bytes": total, "sha256": digest.hexdigest()}}), flush=True)
""", stdout=subprocess.PIPE, text=True)
    router.b.peer.wait_listening(9050)
    started = time.monotonic()
    sent = router.a.peer.python(f"""
import hashlib, json, socket
block = hashlib.sha256(b"router").digest() * 32768
digest = hashlib.sha256()
with socket.create_connection(("{B_IP}", 9050), timeout=60) as conn:
    for _ in range({size} // len(block)):
        conn.sendall(block)
        digest.update(block)
print(json.dumps({{"sha256": digest.hexdigest()}}))
""", timeout=180)
    out, _ = sink.communicate(timeout=120)
    elapsed = time.monotonic() - started
    received = json.loads(out.strip().splitlines()[-1])
    assert received["bytes"] == size
    assert received["sha256"] == json.loads(str(sent.stdout).strip().splitlines()[-1])["sha256"]
    print(f"forwarded {size / elapsed / 1e6:.1f} MB/s")


def test_udp_with_ttl_one_gets_time_exceeded_from_usernet(router: Router) -> None:
    result = router.a.peer.python(f"""
import json, socket, struct
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
icmp.settimeout(3)
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
probe.sendto(b"traceroute", ("{B_IP}", 33434))
while True:
    packet, (source, _) = icmp.recvfrom(2048)
    ihl = (packet[0] & 15) * 4
    kind, code = packet[ihl], packet[ihl + 1]
    if kind == 11:
        inner = packet[ihl + 8:]
        dport = struct.unpack("!H", inner[(inner[0] & 15) * 4 + 2:][:2])[0]
        print(json.dumps({{"source": source, "code": code, "dport": dport}}))
        break
""", timeout=20)
    assert json.loads(str(result.stdout).strip()) == {"source": A_SIDE, "code": 0, "dport": 33434}


def test_df_larger_than_the_smaller_link_gets_fragmentation_needed(router: Router) -> None:
    first = router.a.peer.run("ping", "-M", "do", "-s", "1400", "-c", "1", "-W", "2", B_IP, check=False).stdout
    assert f"From {A_SIDE}" in first and f"mtu = {B_MTU}" in first, first
    # Linux learned the path MTU: it now refuses locally, and 1252-byte pings fit.
    second = router.a.peer.run("ping", "-M", "do", "-s", "1400", "-c", "1", "-W", "2", B_IP, check=False)
    assert f"mtu={B_MTU}" in second.stdout + second.stderr, second
    fits = router.a.peer.run("ping", "-M", "do", "-s", str(B_MTU - 28), "-c", "1", "-W", "2", B_IP,
                             check=False).stdout
    assert " 0% packet loss" in fits, fits


def test_without_forward_nothing_crosses(make_veth_pair: Callable[..., nn.VethPair]) -> None:
    a = make_veth_pair(peer_addr=f"{A_IP}/24", addr=f"{A_SIDE}/24", own_netns=False)
    b = make_veth_pair(peer_addr=f"{B_IP}/24", addr=f"{B_SIDE}/24", own_netns=False)
    a.peer.run("ip", "route", "add", "10.81.2.0/24", "via", A_SIDE)
    proc = a.spawn(*a.usernet_argv("up", "--iface", a.ifname, "--addr", a.addr,
                                   "--link", f"iface={b.ifname},addr={b.addr}"),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        out = a.peer.run("ping", "-c", "1", "-W", "1", B_IP, check=False).stdout
        assert " 100% packet loss" in out, out
        proc.send_signal(signal.SIGUSR1)  # the state dump lists both interfaces and their routes
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert f"inet {B_SIDE}/24" in out and "10.81.2.0/24 dev" in out and "not for us" in out, out
