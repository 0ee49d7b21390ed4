"""DHCP against real peers over veth (root): usernet's client against dnsmasq, busybox udhcpc and
isc-dhcp-client's dhclient against usernet's server. dnsmasq runs inside the peer namespace only
(--interface, --bind-interfaces, --port=0: no DNS, --conf-file=/dev/null, a lease file in tmp) and is
killed in a finally (and by the namespace teardown)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.realpeer import netns as nn


class Lines:
    """A process's stdout, line by line, with timeouts."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait(self, prefix: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r} within {timeout} s; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"process ended before {prefix!r}; saw {self.seen}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line


@contextmanager
def dnsmasq(pair: nn.VethPair, tmp: Path, first: str, last: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    leases = tmp / f"dnsmasq-{first}.leases"
    leases.write_text("")
    proc = pair.peer.spawn("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
                           "--pid-file=", f"--interface={pair.peer_if}", "--bind-interfaces",
                           f"--dhcp-leasefile={leases}", f"--dhcp-range={first},{last},255.255.255.0,2m",
                           f"--dhcp-option=option:dns-server,{pair.peer_ip}", "--domain=peer.test",
                           "--dhcp-option=option:domain-name,peer.test", "--log-dhcp", *extra,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        nn.wait_for(lambda: pair.peer.listening(67, udp=True), 10, what="dnsmasq on port 67")
        yield proc
    finally:
        nn.kill(proc)


def _in_range(address: str, first: int, last: int) -> bool:
    return address.startswith("10.77.0.") and first <= int(address.rsplit(".", 1)[1]) <= last


@pytest.mark.root("dnsmasq")
def test_usernet_dhcp_gets_a_lease_from_dnsmasq(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    with dnsmasq(veth_pair, tmp_path, "10.77.0.50", "10.77.0.60"):
        result = subprocess.run(veth_pair.usernet_argv("dhcp", "--iface", veth_pair.ifname, "--timeout", "20"),
                                capture_output=True, text=True, timeout=60, env=nn.python_env())
    assert result.returncode == 0, result.stderr
    info = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    address, prefix = info["address"].split("/")
    assert _in_range(address, 50, 60) and prefix == "24"
    assert info["router"] == "10.77.0.1" and info["dns"] == "10.77.0.1" and info["domain"] == "peer.test"
    assert info["lease"] == "120 s" and info["server"] == "10.77.0.1"


@pytest.mark.root()
def test_usernet_dhcp_exits_1_when_no_server_answers(veth_pair: nn.VethPair) -> None:
    result = subprocess.run(veth_pair.usernet_argv("dhcp", "--iface", veth_pair.ifname, "--timeout", "2"),
                            capture_output=True, text=True, timeout=60, env=nn.python_env())
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"usernet: DHCP on {veth_pair.ifname}: no DHCP server answered within 2 s"]


@pytest.mark.root("dnsmasq")
def test_nak_from_authoritative_dnsmasq_ends_in_a_new_lease(make_veth_pair: Any, tmp_path: Path) -> None:
    """The client remembers 10.77.0.55 (INIT-REBOOT); dnsmasq's range no longer holds it: NAK, new lease."""
    import usernet
    from usernet import links

    pair = make_veth_pair(own_netns=False)  # in-process: links.Packet reads /sys of the root namespace
    with dnsmasq(pair, tmp_path, "10.77.0.100", "10.77.0.110", "--dhcp-authoritative"):
        with usernet.Host(links.Packet(pair.ifname), dhcp={"requested": "10.77.0.55", "timeout": 30}) as host:
            assert _in_range(host.address, 100, 110)
            counters = host.counters
            assert counters["dhcp.client_naks"] == 1 and counters["dhcp.client_leases"] == 1
            assert host.dns_servers == ["10.77.0.1"] and host.search_domains == ["peer.test"]
            rtts = host.ping("10.77.0.1", count=2, interval=0.1, timeout=2)
            assert all(r is not None for r in rtts)


_STREAM = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9), timeout=10)
end = time.monotonic() + float(sys.argv[2])
sent = 0
chunk = b"x" * 65536
while time.monotonic() < end:
    s.sendall(chunk)
    sent += len(chunk)
    time.sleep(0.01)
s.close()
print(sent)
"""


@pytest.mark.root("dnsmasq")
def test_renews_a_two_minute_dnsmasq_lease_at_t1_while_tcp_runs(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    with dnsmasq(veth_pair, tmp_path, "10.77.0.50", "10.77.0.60"):
        proc = veth_pair.spawn(*veth_pair.usernet_argv("up", "--iface", veth_pair.ifname, "--dhcp",
                                                        "--serve", "discard:9"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=nn.python_env())
        try:
            out = Lines(proc)
            ready = out.wait("ready ", 30)
            address = ready.split()[1]
            assert _in_range(address, 50, 60)
            leased_at = time.monotonic()
            # a TCP transfer from the kernel to usernet runs across T1 (60 s into the 120 s lease)
            stream = veth_pair.peer.spawn(sys.executable, "-c", _STREAM, address, "66", stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
            renewed = out.wait("dhcp renewed", 75)
            assert 55 < time.monotonic() - leased_at < 70
            assert renewed.split()[2] == f"{address}/24" and "lease 120s" in renewed
            stdout, stderr = stream.communicate(timeout=40)
            assert stream.returncode == 0, stderr
            assert int(stdout) > 1_000_000
        finally:
            nn.kill(proc)


_UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "bound ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain lease=$lease" >> "$OUT"
exit 0
"""

_DHCLIENT_SCRIPT = """#!/bin/sh
[ "$reason" = BOUND ] && echo "bound ip=$new_ip_address mask=$new_subnet_mask router=$new_routers \
dns=$new_domain_name_servers domain=$new_domain_name lease=$new_dhcp_lease_time" >> "OUTFILE"
exit 0
"""


def _script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:])


def _usernet_server(pair: nn.VethPair, lease_file: Path) -> tuple[subprocess.Popen[str], Lines]:
    spec = (f"dhcp-server:10.77.0.100-10.77.0.110,router=10.77.0.2,dns=10.77.0.2,domain=usernet.test,"
            f"lease=600,lease-file={lease_file}")
    proc = pair.spawn(*pair.usernet_argv("up", "--iface", pair.ifname, "--addr", "10.77.0.2/24", "--serve", spec),
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=nn.python_env())
    out = Lines(proc)
    out.wait("ready ", 20)
    return proc, out


def _udhcpc(pair: nn.VethPair, script: Path, out: Path) -> dict[str, str]:
    before = out.read_text().splitlines() if out.exists() else []
    result = pair.peer.run("env", f"OUT={out}", "udhcpc", "-i", pair.peer_if, "-n", "-q", "-f", "-t", "5",
                           "-T", "2", "-s", str(script), check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(before) + 1, lines
    return _fields(lines[-1])


@pytest.mark.root("udhcpc")
def test_udhcpc_gets_leases_two_macs_two_addresses_and_a_restart_keeps_them(veth_pair: nn.VethPair,
                                                                              tmp_path: Path) -> None:
    lease_file = tmp_path / "usernet.leases"
    script = _script(tmp_path, "udhcpc.sh", _UDHCPC_SCRIPT)
    out = tmp_path / "udhcpc.out"
    server, _ = _usernet_server(veth_pair, lease_file)
    first_mac = veth_pair.peer.mac(veth_pair.peer_if)
    try:
        one = _udhcpc(veth_pair, script, out)
        assert _in_range(one["ip"], 100, 110)
        assert (one["subnet"], one["router"], one["dns"], one["domain"], one["lease"]) == \
            ("255.255.255.0", "10.77.0.2", "10.77.0.2", "usernet.test", "600")
        veth_pair.peer.run("ip", "link", "set", veth_pair.peer_if, "address", "02:77:00:00:00:99")
        two = _udhcpc(veth_pair, script, out)
        assert _in_range(two["ip"], 100, 110) and two["ip"] != one["ip"]
    finally:
        nn.kill(server)
    assert '"leases"' in lease_file.read_text()
    server, _ = _usernet_server(veth_pair, lease_file)  # restarted with the same lease file
    try:
        veth_pair.peer.run("ip", "link", "set", veth_pair.peer_if, "address", first_mac)
        again = _udhcpc(veth_pair, script, out)
        assert again["ip"] == one["ip"]
        veth_pair.peer.run("ip", "link", "set", veth_pair.peer_if, "address", "02:77:00:00:00:99")
        assert _udhcpc(veth_pair, script, out)["ip"] == two["ip"]
    finally:
        nn.kill(server)


@pytest.mark.root("dhclient")
def test_dhclient_gets_a_lease_from_usernet(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    out = tmp_path / "dhclient.out"
    # dhclient runs its script with a clean environment: the output path is written into it
    script = _script(tmp_path, "dhclient.sh", _DHCLIENT_SCRIPT.replace("OUTFILE", str(out)))
    conf = tmp_path / "dhclient.conf"
    conf.write_text("")
    server, _ = _usernet_server(veth_pair, tmp_path / "usernet.leases")
    client = veth_pair.peer.spawn("dhclient", "-4", "-d", "-1", "-v", "-sf", str(script),
                                  "-cf", str(conf), "-lf", str(tmp_path / "dhclient.leases"),
                                  "-pf", str(tmp_path / "dhclient.pid"), veth_pair.peer_if,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nn.wait_for(lambda: out.exists() and out.read_text().strip(), 30, what="dhclient BOUND")
        fields = _fields(out.read_text().splitlines()[0])
        assert _in_range(fields["ip"], 100, 110)
        assert (fields["mask"], fields["router"], fields["dns"], fields["domain"], fields["lease"]) == \
            ("255.255.255.0", "10.77.0.2", "10.77.0.2", "usernet.test", "600")
    finally:
        nn.kill(client)
        nn.kill(server)


def test_versions_of_the_peers_are_recorded() -> None:
    """Not a check: prints what the peers are (for the closing note); skips quietly where missing."""
    for argv in (["dnsmasq", "--version"], ["busybox"], ["dhclient", "--version"]):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError:
            continue
        text = (result.stdout or result.stderr).splitlines()
        print(argv[0], text[0] if text else "?", file=sys.stderr)
    assert os.path.exists(sys.executable)
