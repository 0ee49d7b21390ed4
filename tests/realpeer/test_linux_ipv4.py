"""usernet against the Linux kernel: ARP, ICMP, UDP, fragmentation, pcap, bad frames.

usernet runs as a user would run it (`usernet up --iface ...` in a namespace, over AF_PACKET on a
veth end with the kernel's default offloads on); the kernel in a peer namespace is the other host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.realpeer.support import PEER_IP, USERNET_IP, Veth, need_programs, need_root, ping_summary, sh, stop

pytestmark = pytest.mark.root


def test_linux_pings_usernet_and_learns_its_mac(veth: Veth) -> None:
    proc = veth.start_up()
    result = veth.peer("ping", "-c", "20", "-i", "0.01", "-W", "2", USERNET_IP, check=False)
    assert ping_summary(result.stdout.decode()) == (20, 20), result.stdout.decode()
    big = veth.peer("ping", "-c", "5", "-i", "0.05", "-s", "4000", "-W", "2", USERNET_IP, check=False)
    assert ping_summary(big.stdout.decode()) == (5, 5), big.stdout.decode()
    neigh = veth.peer("ip", "neigh", "show", USERNET_IP).stdout.decode()
    usernet_mac = sh("ip", "netns", "exec", veth.usernet_ns, "cat",
                     f"/sys/class/net/{veth.usernet_if}/address").stdout.decode().strip()
    assert usernet_mac in neigh, neigh
    # usernet answers ARP only for its own address: a neighbour next to it stays unresolved.
    other = veth.peer("ping", "-c", "1", "-W", "1", "10.77.0.3", check=False)
    assert other.returncode != 0
    assert "lladdr" not in veth.peer("ip", "neigh", "show", "10.77.0.3").stdout.decode()
    code, summary = stop(proc)
    assert code == 0, summary
    assert "fragments rx" in summary and "reassembled" in summary


def test_usernet_pings_linux(veth: Veth) -> None:
    result = subprocess.run(veth.usernet_cmd("ping", "-c", "3", "-i", "0.05", "--iface", veth.usernet_if,
                                             "--addr", f"{USERNET_IP}/24", PEER_IP),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ping_summary(result.stdout) == (3, 3)
    assert result.stdout.count(f"bytes from {PEER_IP}") == 3
    big = subprocess.run(veth.usernet_cmd("ping", "-c", "2", "-i", "0.05", "-s", "4000", "--iface",
                                          veth.usernet_if, "--addr", f"{USERNET_IP}/24", PEER_IP),
                         capture_output=True, text=True, timeout=30)
    assert ping_summary(big.stdout) == (2, 2), big.stdout + big.stderr
    unreachable = subprocess.run(veth.usernet_cmd("ping", "-c", "1", "-W", "0.5", "--iface", veth.usernet_if,
                                                  "--addr", f"{USERNET_IP}/24", "10.77.0.99"),
                                 capture_output=True, text=True, timeout=30)
    assert unreachable.returncode == 1


def test_udp_services_against_socat(veth: Veth) -> None:
    proc = veth.start_up("--serve", "echo:7", "--serve", "discard:9", "--serve", "chargen:19")
    echo = veth.peer("socat", "-T", "2", "-", f"UDP:{USERNET_IP}:7", input=b"hello usernet\n")
    assert echo.stdout == b"hello usernet\n"
    chargen = veth.peer("socat", "-T", "2", "-", f"UDP:{USERNET_IP}:19", input=b"\n")
    lines = chargen.stdout.split(b"\r\n")
    assert lines[0] == bytes(range(32, 32 + 72)) and lines[1].startswith(bytes(range(33, 33 + 71)))
    discard = veth.peer("socat", "-T", "1", "-", f"UDP:{USERNET_IP}:9", input=b"into the void\n")
    assert discard.stdout == b""
    refused = veth.peer("socat", "-T", "2", "-", f"UDP:{USERNET_IP}:4444", input=b"x\n", check=False)
    assert b"Connection refused" in refused.stderr, refused.stderr
    code, summary = stop(proc)
    assert code == 0 and "no port" in summary


PEER_UDP_SCRIPT = r"""
import json, os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
payload = os.urandom(8000)
s.sendto(payload, (sys.argv[1], 7))
data, _ = s.recvfrom(65535)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(3)
c.connect((sys.argv[1], 4444))
c.send(b"closed?")
try:
    c.recv(100)
    refused = False
except ConnectionRefusedError:
    refused = True
print(json.dumps({"echo_ok": data == payload, "length": len(data), "refused": refused}))
"""


def test_udp_8000_bytes_fragmented_both_ways_and_econnrefused(veth: Veth) -> None:
    proc = veth.start_up("--serve", "echo:7")
    result = veth.peer(sys.executable, "-c", PEER_UDP_SCRIPT, USERNET_IP)
    assert json.loads(result.stdout) == {"echo_ok": True, "length": 8000, "refused": True}
    code, summary = stop(proc)
    assert code == 0 and "reassembled" in summary and "fragments tx" in summary


def test_pcap_is_read_back_by_tshark(veth: Veth) -> None:
    need_programs("tshark")
    pcap = os.path.join(veth.workdir, "capture.pcap")
    proc = veth.start_up("--pcap", pcap)
    veth.peer("ping", "-c", "5", "-i", "0.05", USERNET_IP)
    code, _ = stop(proc)
    assert code == 0
    read = sh("tshark", "-n", "-r", pcap)
    lines = read.stdout.decode().strip().splitlines()
    # 5 requests + 5 replies + ARP who-has/reply (either direction) + the gratuitous announcement
    assert sum("Echo (ping) request" in line for line in lines) == 5
    assert sum("Echo (ping) reply" in line for line in lines) == 5
    assert any("ARP" in line for line in lines)
    assert "Malformed" not in read.stdout.decode()


BAD_FRAMES_SCRIPT = r"""
import os, random, socket, struct, sys
ifname, dst_mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src_mac = open(f"/sys/class/net/{ifname}/address").read().strip()
src = bytes.fromhex(src_mac.replace(":", ""))
rng = random.Random(1)
def ip_header(total, csum_ok=True, ver=4, ihl=5):
    h = bytearray(struct.pack("!BBHHHBBH4s4s", (ver << 4) | ihl, 0, total, 1, 0, 64, 17, 0,
                              socket.inet_aton("10.77.0.1"), socket.inet_aton("10.77.0.2")))
    s_ = sum(struct.unpack("!10H", h)); s_ = (s_ & 0xFFFF) + (s_ >> 16); s_ = (s_ & 0xFFFF) + (s_ >> 16)
    c = (~s_) & 0xFFFF if csum_ok else 0x1234
    h[10:12] = struct.pack("!H", c)
    return bytes(h)
frames = []
eth = dst_mac + src + b"\x08\x00"
frames.append(eth + ip_header(28)[:12])                         # truncated IP
frames.append(eth + ip_header(28, csum_ok=False) + bytes(8))    # bad IP checksum
frames.append(eth + ip_header(28, ver=6) + bytes(8))            # bad version
frames.append(eth + ip_header(9000) + bytes(8))                 # bogus total length
frames.append(eth + ip_header(28) + struct.pack("!HHHH", 1, 7, 8, 0xBEEF))  # bad UDP checksum
for _ in range(200):
    frames.append(dst_mac + src + rng.randbytes(rng.randrange(2, 200)))  # random bytes
sent = 0
for f in frames:
    s.send(f)  # (a frame shorter than an Ethernet header cannot be sent: the kernel refuses it)
    sent += 1
print(sent)
"""


def test_bad_frames_are_counted_and_ping_keeps_working(veth: Veth) -> None:
    proc = veth.start_up()
    usernet_mac = sh("ip", "netns", "exec", veth.usernet_ns, "cat",
                     f"/sys/class/net/{veth.usernet_if}/address").stdout.decode().strip()
    before = veth.peer("ping", "-c", "3", "-i", "0.05", USERNET_IP, check=False)
    assert ping_summary(before.stdout.decode()) == (3, 3)
    sent = veth.peer(sys.executable, "-c", BAD_FRAMES_SCRIPT, veth.peer_if, usernet_mac)
    assert int(sent.stdout) > 200
    time.sleep(0.3)
    after = veth.peer("ping", "-c", "10", "-i", "0.02", USERNET_IP, check=False)
    assert ping_summary(after.stdout.decode()) == (10, 10)
    code, summary = stop(proc)
    assert code == 0, summary
    for counter in ("bad checksum", "truncated", "bad version", "bad total length"):
        assert counter in summary, summary
    assert "internal error" not in summary


def test_usernet_on_tap(tmp_path) -> None:
    need_root()
    need_programs("ip", "ping")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun")
    tag = uuid.uuid4().hex[:6]
    ns, tap = f"un-{tag}-tap", f"ut{tag}"
    proc = None
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.78.0.1/24", "dev", tap)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", tap, "up")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "usernet.cli", "up", "--tap", tap,
                                 "--addr", "10.78.0.2/24", "--serve", "echo:7"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        result = sh("ip", "netns", "exec", ns, "ping", "-c", "10", "-i", "0.02", "-W", "2", "10.78.0.2", check=False)
        assert ping_summary(result.stdout.decode()) == (10, 10)
        big = sh("ip", "netns", "exec", ns, "ping", "-c", "3", "-s", "4000", "-W", "2", "10.78.0.2", check=False)
        assert ping_summary(big.stdout.decode()) == (3, 3)
        echo = sh("ip", "netns", "exec", ns, "socat", "-T", "2", "-", "UDP:10.78.0.2:7", input=b"via tap\n")
        assert echo.stdout == b"via tap\n"
        code, summary = stop(proc)
        assert code == 0, summary
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        sh("ip", "netns", "del", ns, check=False)
