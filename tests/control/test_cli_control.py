"""`usernet ss/neigh/route/addr/stats/tcpdump/ls` against a running `usernet up` on a veth pair, with
a Linux peer making traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.realpeer import netns as nn
from tests.test_cli_realpeer import Lines

pytestmark = pytest.mark.root

CLI = (sys.executable, "-m", "usernet.cli")

# A Linux client that holds one TCP connection to usernet's echo service open, having echoed once.
HOLD_OPEN = r"""
import socket, sys, time
conn = socket.create_connection((sys.argv[1], 7), timeout=10)
conn.sendall(b"x" * 50000)
got = 0
while got < 50000:
    got += len(conn.recv(65536))
print("echoed", flush=True)
time.sleep(60)
"""


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=nn.python_env(),
                          stdin=subprocess.DEVNULL)


def _start_up(pair: nn.VethPair, *extra: str) -> tuple[subprocess.Popen[str], Lines]:
    up = pair.spawn(*CLI, "up", "--iface", pair.ifname, "--addr", pair.addr, "--serve", "echo:7", *extra,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Lines(up.stdout)  # type: ignore[arg-type]
    out.expect(lambda line: line.startswith("ready "))
    return up, out


def test_inspection_commands_against_a_running_host(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    pair = veth_pair
    control = str(tmp_path / "h.sock")
    up, _ = _start_up(pair, "--control", control)
    try:
        assert os.stat(control).st_mode & 0o777 == 0o600
        # Frames read back by tshark: three pings from Linux are six frames. With the connection up the
        # peer knows our MAC, so the first frame is an echo request: a tap added while the runtime
        # waited in select must see the frames of that very pass (it once missed them).
        holder = pair.peer.spawn_python(HOLD_OPEN, pair.ip, stdout=subprocess.PIPE, text=True)
        Lines(holder.stdout).expect(lambda line: line == "echoed\n")  # type: ignore[arg-type]

        tcpdump = subprocess.Popen([*CLI, "tcpdump", "--control", control, "-w", "-", "-c", "6", "icmp"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=nn.python_env())
        tshark = subprocess.Popen(["tshark", "-r", "-"], stdin=tcpdump.stdout, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        tcpdump.stdout.close()  # type: ignore[union-attr]
        try:
            assert tcpdump.stderr.readline().startswith(b"listening on")  # type: ignore[union-attr]
            pair.peer.run("ping", "-c", "3", "-i", "0.2", "-W", "2", pair.ip)
            assert tcpdump.wait(timeout=20) == 0
            packets = tshark.communicate(timeout=30)[0].splitlines()
        finally:
            nn.kill(tcpdump)
            nn.kill(tshark)
        assert len(packets) == 6, packets
        assert sum("Echo (ping) request" in p for p in packets) == 3
        assert sum("Echo (ping) reply" in p for p in packets) == 3

        ss = _cli("ss", "-ti", "--control", control)
        assert ss.returncode == 0, ss.stderr
        lines = ss.stdout.splitlines()
        assert lines[0].split()[:2] == ["Netid", "State"]
        [conn] = [i for i, line in enumerate(lines) if line.startswith("tcp") and f"{pair.peer_ip}:" in line]
        assert lines[conn].split()[1] == "ESTAB" and f"{pair.ip}:7" in lines[conn]
        internals = lines[conn + 1]
        for field in ("cwnd:", "rtt:", "rto:", "mss:", "retrans:", "dsack_dups:", "bytes_received:50000"):
            assert field in internals, internals
        listening = _cli("ss", "-tl", "--control", control)
        assert "LISTEN" in listening.stdout and "0.0.0.0:7 " in listening.stdout

        neigh = _cli("neigh", "--control", control)
        assert neigh.returncode == 0 and f"{pair.peer_ip} dev {pair.ifname} lladdr" in neigh.stdout
        route = _cli("route", "--control", control)
        assert f"10.77.0.0/24 dev {pair.ifname} proto kernel scope link src {pair.ip}" in route.stdout
        addr = _cli("addr", "--control", control)
        assert f"inet {pair.addr} scope global {pair.ifname}" in addr.stdout and "lo:" in addr.stdout
        stats = _cli("stats", "--control", control)
        assert stats.returncode == 0 and "tcp:" in stats.stdout and "ipv4:" in stats.stdout

        watch = subprocess.Popen([*CLI, "stats", "--watch", "--control", control], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=nn.python_env())
        time.sleep(2.5)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
        assert watch.returncode == 0, err
        assert out.count("usernet stats") >= 2

    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=15) == 0
    assert not os.path.exists(control)  # removed at exit


def test_ls_and_host_names_in_the_default_directory(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    name = f"t{uuid.uuid4().hex[:10]}"
    path = f"/run/usernet/{name}.sock"
    up, _ = _start_up(pair, "--name", name)
    try:
        ls = _cli("ls")
        assert ls.returncode == 0
        [row] = [line for line in ls.stdout.splitlines() if line.split()[0] == name]
        assert row.split()[2:] == [pair.addr] and row.split()[1].isdigit()
        addr = _cli("addr", "--host", name)
        assert addr.returncode == 0 and f"inet {pair.addr}" in addr.stdout
        twice = pair.run(*CLI, "up", "--iface", pair.ifname, "--addr", pair.addr, "--name", name, check=False,
                         timeout=30)
        assert twice.returncode == 2 and "already served" in twice.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=15) == 0
    assert not os.path.exists(path)
    missing = _cli("ss", "--host", name)
    assert missing.returncode == 1 and missing.stderr.startswith(f"usernet: error: no host {name} is running")
    assert len(missing.stderr.splitlines()) == 1
