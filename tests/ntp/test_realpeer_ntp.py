"""NTP against chrony over veth (root). chronyd never touches the clock here: as a server it runs with
-x (no clock control) and `local stratum 8` in the peer namespace; as a client it runs with -Q
(measure, print, exit: "System clock wrong by ... seconds (ignored)")."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.realpeer import netns as nn

pytestmark = pytest.mark.root("chronyd")


def usernet_ntp(pair: nn.VethPair, *args: str) -> subprocess.CompletedProcess[str]:
    argv = pair.usernet_argv("ntp", "--iface", pair.ifname, "--addr", pair.addr, *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_usernet_ntp_against_chronyd(veth_pair: nn.VethPair, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pair = veth_pair
    conf = tmp_path / "chrony.conf"
    conf.write_text(f"allow all\nlocal stratum 8\nport 123\nbindaddress {pair.peer_ip}\ncmdport 0\n"
                    f"pidfile {tmp_path}/chronyd.pid\n")
    chronyd = pair.peer.spawn("chronyd", "-x", "-d", "-u", "root", "-f", str(conf),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pair.peer.wait_listening(123, udp=True)
        result = usernet_ntp(pair, "-n", "3", pair.peer_ip)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 4 and all(line.startswith("sample offset ") for line in lines[:3])
        match = re.fullmatch(rf"server {re.escape(pair.peer_ip)} stratum 8 refid (\S+) offset ([-+]\d+\.\d+) s "
                             r"delay (\d+\.\d+) s", lines[3])
        assert match, lines[3]
        # chrony's local reference ID is 127.127.1.1; the same clock on both sides: a small offset.
        assert match.group(1) == "127.127.1.1" and abs(float(match.group(2))) < 0.05
        assert float(match.group(3)) < 0.5
    finally:
        nn.kill(chronyd)


def test_usernet_ntp_without_a_server_is_one_line_and_exit_1(veth_pair: nn.VethPair) -> None:
    result = usernet_ntp(veth_pair, "-n", "1", "--timeout", "1", veth_pair.peer_ip)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"usernet ntp: {veth_pair.peer_ip}: no answer"


def test_chronyd_measures_usernet_ntp_server(veth_pair: nn.VethPair, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pair = veth_pair
    up = nn.spawn(*pair.usernet_argv("up", "--iface", pair.ifname, "--addr", pair.addr, "--serve", "ntp:123,stratum=9"),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        assert up.stdout.readline().startswith("ready")
        result = pair.peer.run("timeout", "30", "chronyd", "-Q", "-u", "root", "-t", "20",
                               f"server {pair.ip} iburst maxsamples 4", f"pidfile {tmp_path}/q.pid", "cmdport 0",
                               timeout=40)
        out = result.stdout + result.stderr
        match = re.search(r"System clock wrong by (-?\d+\.\d+) seconds \(ignored\)", out)
        assert match, out
        assert abs(float(match.group(1))) < 0.05
    finally:
        code = nn.kill(up)
    assert code == 0
