"""Offloads on TAP and TUN (issue 17): IFF_VNET_HDR + TUNSETOFFLOAD, against the kernel as peer.

The kernel on the device's other side sends us TCP super-frames with partial checksums and takes
our super-segments; with ``offload=False`` every frame is plain. Bulk transfers are checked by
sha256 both ways, and the link's counters show which path the frames took."""

from __future__ import annotations

import errno
import hashlib
import json
import random
import sys
import threading
from collections.abc import Iterator

import pytest

import usernet
from tests.realpeer import netns as nn
from usernet.links import tuntap
from usernet.links.tuntap import Tap, Tun

pytestmark = pytest.mark.root

SIZE = 20_000_000
SEED = 17


def payload(size: int = SIZE) -> bytes:
    return random.Random(SEED).randbytes(size)


# The kernel's side: "in" sends SIZE bytes to usernet's sink (port 9), which answers their sha256;
# "out" reads to EOF from usernet's source (port 19); "echo" round-trips a few bytes (port 7).
PEER = r"""
import hashlib, json, random, socket, sys
ip, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(seed).randbytes(size)
res = {}
with socket.create_connection((ip, 9), timeout=30) as s:
    s.sendall(data); s.shutdown(socket.SHUT_WR)
    res["in"] = s.makefile("rb").read().decode().strip()
with socket.create_connection((ip, 19), timeout=30) as s:
    h, got = hashlib.sha256(), 0
    while (d := s.recv(1 << 20)):
        h.update(d); got += len(d)
    res["out"] = h.hexdigest(); res["out_bytes"] = got
with socket.create_connection((ip, 7), timeout=10) as s:
    s.sendall(b"hello over the tap"); s.shutdown(socket.SHUT_WR)
    res["echo"] = s.makefile("rb").read().decode()
print(json.dumps(res))
"""


def serve(host: usernet.Host, size: int) -> list[object]:
    """Sink on 9, source of *size* bytes on 19, echo on 7; each serves one connection, in a thread."""
    data = payload(size)

    def sink(c) -> None:
        h = hashlib.sha256()
        while d := c.recv(1 << 20):
            h.update(d)
        c.sendall(h.hexdigest().encode() + b"\n")

    def source(c) -> None:
        view = memoryview(data)
        for i in range(0, len(data), 1 << 16):
            c.sendall(view[i:i + (1 << 16)])

    def echo(c) -> None:
        while d := c.recv(4096):
            c.sendall(d)

    servers: list[object] = []
    for port, handler in ((9, sink), (19, source), (7, echo)):
        server = host.create_server(("", port))
        servers.append(server)

        def run(server=server, handler=handler) -> None:
            c, _ = server.accept()
            with c:
                handler(c)

        threading.Thread(target=run, daemon=True).start()
    return servers


def exchange(dev: nn.TapDevice, link: Tap | Tun, size: int = SIZE) -> dict:
    with usernet.Host(link, addr=dev.addr) as host:
        serve(host, size)
        ping = dev.run("ping", "-c", "3", "-i", "0.05", "-W", "2", dev.ip, check=False)
        assert ping.returncode == 0, ping.stdout
        out = dev.run(sys.executable, "-c", PEER, dev.ip, str(size), str(SEED), timeout=120)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    digest = hashlib.sha256(payload(size)).hexdigest()
    assert res["in"] == digest
    assert res["out"] == digest and res["out_bytes"] == size
    assert res["echo"] == "hello over the tap"
    return res


def open_in(dev: nn.TapDevice, cls: type[Tap] | type[Tun], **kw) -> Tap | Tun:
    with dev.enter():
        return cls(dev.name, **kw)


def test_offloaded_tap_moves_super_frames_both_ways(tap_device: nn.TapDevice) -> None:
    link = open_in(tap_device, Tap)
    assert link.offload and link.gso_max > 0
    exchange(tap_device, link)
    # The kernel handed us TSO super-frames (bigger than the MTU) with partial checksums, and
    # took our super-segments.
    assert link.rx_gso > 0 and link.rx_partial_csum > 0
    assert link.tx_gso > 0


def test_plain_tap_without_offloads(tap_device: nn.TapDevice) -> None:
    link = open_in(tap_device, Tap, offload=False)
    assert not link.offload and link.gso_max == 0
    exchange(tap_device, link)
    assert link.rx_gso == link.rx_partial_csum == link.tx_gso == 0


def test_offloads_are_cleared_for_the_next_plain_reader(tap_device: nn.TapDevice) -> None:
    """TUNSETOFFLOAD changes the (persistent) device: after close, a plain reader gets plain frames."""
    open_in(tap_device, Tap).close()
    features = tap_device.run("ethtool", "-k", tap_device.name, check=False).stdout
    if features:  # ethtool present: the kernel side no longer offers TSO to us
        assert "tcp-segmentation-offload: off" in features
    link = open_in(tap_device, Tap, offload=False)
    exchange(tap_device, link, 2_000_000)
    assert link.rx_gso == 0


@pytest.fixture
def tun_device(netns) -> Iterator[nn.TapDevice]:
    """A persistent TUN in its own namespace, the kernel at 10.79.0.1 and usernet at 10.79.0.2 (point to point)."""
    ns = netns("t")
    dev = nn.TapDevice(nn.new_name(nn.TAP_PREFIX, "t"), "10.79.0.1/24", "10.79.0.2/24", ns)
    ns.run("ip", "tuntap", "add", "dev", dev.name, "mode", "tun")
    ns.run("sysctl", "-qw", f"net.ipv6.conf.{dev.name}.disable_ipv6=1")
    ns.run("ip", "addr", "add", "10.79.0.1", "peer", "10.79.0.2", "dev", dev.name)
    ns.run("ip", "link", "set", dev.name, "up")
    yield dev  # the namespace fixture removes it, the TUN with it


def test_offloaded_tun_receives_super_packets(tun_device: nn.TapDevice) -> None:
    link = open_in(tun_device, Tun)
    assert link.offload and link.gso_max == 0  # the stack segments only on Ethernet interfaces
    exchange(tun_device, link)
    assert link.rx_gso > 0 and link.rx_partial_csum > 0
    assert link.tx_gso == 0


@pytest.mark.parametrize("failing", ["TUNSETIFF", "TUNSETOFFLOAD"])
def test_a_refused_ioctl_falls_back_to_plain_frames(tap_device: nn.TapDevice, monkeypatch, failing: str) -> None:
    """An older kernel (or a device that refuses a flag): the link reopens plain and still works."""
    real_open, real_ioctl = tuntap._open_tun_device, tuntap.fcntl.ioctl

    def open_device(name: str, flags: int):
        if failing == "TUNSETIFF" and flags & tuntap._IFF_VNET_HDR:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(name, flags)

    def ioctl(fd, request, arg=0, *rest):
        if failing == "TUNSETOFFLOAD" and request == tuntap._TUNSETOFFLOAD and arg:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_ioctl(fd, request, arg, *rest)

    monkeypatch.setattr(tuntap, "_open_tun_device", open_device)
    monkeypatch.setattr(tuntap.fcntl, "ioctl", ioctl)
    link = open_in(tap_device, Tap)
    assert not link.offload and link.gso_max == 0
    exchange(tap_device, link, 2_000_000)
    assert link.rx_gso == link.tx_gso == 0
