"""DNS against real peers over veth (root): `usernet resolve` against dnsmasq in the peer namespace,
and Linux's own resolver (getent, dig, a Python client) against usernet's responder.

dnsmasq never touches the machine's interfaces: it runs in the peer namespace, in the foreground,
bound to the veth end only, with no configuration file, no DHCP and no upstream; every name comes
from explicit --host-record/--cname options and `--local=/test/` makes the rest NXDOMAIN.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.realpeer import netns as nn

pytestmark = pytest.mark.root

BIG = 120  # A records: ~2 KB, beyond dnsmasq's 1232-byte EDNS0 limit: the UDP answer is truncated


@contextlib.contextmanager
def dnsmasq(pair: nn.VethPair) -> Iterator[subprocess.Popen[str]]:
    records = [f"--host-record=multi.test,10.77.0.{20 + i}" for i in range(3)]
    records += [f"--host-record=big.test,10.88.{i // 200}.{i % 200 + 1}" for i in range(BIG)]
    proc = pair.peer.spawn(
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--interface={pair.peer_if}", "--bind-interfaces",
        "--except-interface=lo", "--no-resolv", "--no-hosts", "--no-poll", "--port=53", "--local=/test/",
        "--pid-file=", "--log-facility=-", "--user=root", "--group=root",
        "--host-record=plain.test,10.77.0.10", f"--host-record=peer.test,{pair.peer_ip}",
        "--host-record=v6.test,fd00:77::6",
        "--host-record=both.test,10.77.0.11,fd00:77::11", "--cname=alias.test,plain.test",
        "--txt-record=info.test,usernet", *records,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pair.peer.wait_listening(53, udp=True)
        pair.peer.wait_listening(53)
        yield proc
    finally:
        nn.kill(proc)


def resolve(pair: nn.VethPair, *args: str) -> subprocess.CompletedProcess[str]:
    argv = pair.usernet_argv("resolve", "--iface", pair.ifname, "--addr", pair.addr, "--server", pair.peer_ip,
                             *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.root("dnsmasq")
def test_usernet_resolve_against_dnsmasq(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    with dnsmasq(pair):
        result = resolve(pair, "plain.test")
        assert (result.returncode, result.stdout) == (0, "10.77.0.10\n"), result.stderr
        result = resolve(pair, "alias.test")  # a CNAME to plain.test
        assert (result.returncode, result.stdout) == (0, "10.77.0.10\n"), result.stderr
        result = resolve(pair, "multi.test")
        assert result.returncode == 0 and sorted(result.stdout.split()) == ["10.77.0.20", "10.77.0.21", "10.77.0.22"]
        result = resolve(pair, "--type", "AAAA", "v6.test")
        assert (result.returncode, result.stdout) == (0, "fd00:77::6\n"), result.stderr
        result = resolve(pair, "--type", "ANY", "both.test")
        assert (result.returncode, result.stdout) == (0, "10.77.0.11\nfd00:77::11\n"), result.stderr
        result = resolve(pair, "nothing.test")
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.strip().splitlines() == ["usernet resolve: nothing.test: no such name (NXDOMAIN)"]
        result = resolve(pair, "-v", "big.test")  # truncated over UDP: all of them through TCP
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.split()) == sorted(f"10.88.{i // 200}.{i % 200 + 1}" for i in range(BIG))
        assert "over tcp" in result.stderr
        # ping and nc take names once a resolver is given.
        ping = subprocess.run(pair.usernet_argv("ping", "--iface", pair.ifname, "--addr", pair.addr, "--dns",
                                                pair.peer_ip, "-c", "1", "peer.test"),
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert ping.returncode == 0 and f"PING peer.test ({pair.peer_ip})" in ping.stdout, ping.stderr
        ping = subprocess.run(pair.usernet_argv("ping", "--iface", pair.ifname, "--addr", pair.addr, "--dns",
                                                pair.peer_ip, "-c", "1", "nothing.test"),
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert ping.returncode == 2 and ping.stderr.strip() == \
            "usernet: error: nothing.test: Name or service not known"


@pytest.mark.root("dnsmasq")
def test_resolve_errors_are_one_line(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    # Nobody serves DNS at the peer: ICMP port unreachable from the kernel, so it fails fast: exit 2.
    result = resolve(pair, "--timeout", "5", "plain.test")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = subprocess.run(pair.usernet_argv("resolve", "--iface", pair.ifname, "--addr", pair.addr, "x.test"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "give --server" in result.stderr


def _usernet_up(pair: nn.VethPair, *serve: str) -> subprocess.Popen[str]:
    """`usernet up` on usernet's end (killed at teardown at the latest), once it says ready."""
    proc: subprocess.Popen[str] = nn.spawn(*pair.usernet_argv("up", "--iface", pair.ifname, "--addr", pair.addr,
                                                              *serve),
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


@pytest.fixture
def responder(veth_pair: nn.VethPair, tmp_path) -> Iterator[nn.VethPair]:  # type: ignore[no-untyped-def]
    pair = veth_pair
    hosts = tmp_path / "hosts"
    hosts.write_text("10.77.0.2 files.usernet.test\n")
    many = ",".join(f"record=many.usernet.test=10.99.{i // 200}.{i % 200 + 1}" for i in range(100))
    proc = _usernet_up(pair, "--serve", f"dns:53,record=www.usernet.test=10.77.0.2,record=www.usernet.test="
                                            f"10.77.0.3,record=v6.usernet.test=fd00::2,hosts={hosts},{many}")
    try:
        yield pair
    finally:
        nn.kill(proc)


@pytest.mark.root("dig")
def test_dig_against_usernet_responder(responder: nn.VethPair) -> None:
    pair = responder
    dig = ["dig", "@" + pair.ip, "+tries=2", "+time=3"]
    out = pair.peer.run(*dig, "+short", "www.usernet.test").stdout.split()
    assert sorted(out) == ["10.77.0.2", "10.77.0.3"]
    assert pair.peer.run(*dig, "+short", "AAAA", "v6.usernet.test").stdout.split() == ["fd00::2"]
    assert pair.peer.run(*dig, "+short", "files.usernet.test").stdout.split() == ["10.77.0.2"]
    assert pair.peer.run(*dig, "+short", "-x", "10.77.0.3").stdout.split() == ["www.usernet.test."]
    full = pair.peer.run(*dig, "nothing.usernet.test").stdout
    assert "status: NXDOMAIN" in full and "flags: qr aa rd" in full and "SOA" in full
    # 100 records do not fit 1232 bytes: dig sees TC and retries over TCP by itself.
    big = pair.peer.run(*dig, "many.usernet.test").stdout
    assert "Truncated, retrying in TCP mode" in big and big.count("\tA\t") == 100
    assert "flags: qr aa rd" in pair.peer.run(*dig, "+tcp", "www.usernet.test").stdout
    assert "ANSWER: 2" in pair.peer.run(*dig, "+notcp", "+noedns", "www.usernet.test").stdout


@pytest.mark.root("getent")
def test_linux_resolver_against_usernet_responder(responder: nn.VethPair) -> None:
    """getent and Python's socket.getaddrinfo in the peer namespace, with a resolv.conf that points at
    usernet (`ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf)."""
    pair = responder
    etc = f"/etc/netns/{pair.peer.name}"
    os.makedirs(etc, exist_ok=True)
    try:
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write(f"nameserver {pair.ip}\noptions timeout:2 attempts:2\n")
        out = pair.peer.run("getent", "ahostsv4", "www.usernet.test").stdout
        assert {line.split()[0] for line in out.splitlines()} == {"10.77.0.2", "10.77.0.3"}
        missing = pair.peer.run("getent", "hosts", "nothing.usernet.test", check=False)
        assert missing.returncode == 2  # getent: key not found
        code = ("import socket; print(sorted({i[4][0] for i in socket.getaddrinfo('www.usernet.test', 80, "
                "socket.AF_INET)}))")
        assert pair.peer.python(code).stdout.strip() == "['10.77.0.2', '10.77.0.3']"
    finally:
        shutil.rmtree(etc, ignore_errors=True)
