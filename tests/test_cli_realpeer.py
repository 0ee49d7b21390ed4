"""The CLI against the Linux kernel over veth: signals, stdin handling, link checks, ping's output.

Each test gets its own run-tagged veth pair (the kernel at 10.77.0.1 in `pair.peer`, usernet's end
`pair.ifname` in `pair.ns`); processes started with `pair.spawn` are killed at teardown.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from tests.realpeer import netns as nn

pytestmark = pytest.mark.root

PYTHON_CLI = (sys.executable, "-m", "usernet.cli")


def usernet(pair: nn.VethPair, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pair.usernet_argv(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)


def link_args(pair: nn.VethPair) -> list[str]:
    return ["--iface", pair.ifname, "--addr", pair.addr]


class Lines:
    """Lines of a child's stream, read by a thread, so a test can wait for one with a timeout."""

    def __init__(self, stream: IO[Any]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[Any]) -> None:
        for line in stream:
            self._queue.put(line if isinstance(line, str) else line.decode(errors="replace"))
        self._queue.put(None)

    def expect(self, predicate: Callable[[str], bool], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout} s; got {self.seen}") from None
            if line is None:
                raise AssertionError(f"stream ended; got {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, timeout: float = 15.0) -> str:
        """Everything up to the end of the stream."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                return "".join(self.seen)
            self.seen.append(line)


# --------------------------------------------------------------------------- nc

PEER_WRITES_AND_CLOSES = r"""
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
conn, _ = server.accept()
conn.sendall(b"hello from linux\n")
conn.close()
"""


def test_nc_exits_0_when_the_peer_closes_first_while_stdin_stays_open(veth_pair: nn.VethPair) -> None:
    """`(sleep 3) | usernet nc HOST PORT`: used to abort (SIGABRT, `_enter_buffered_busy`) at exit."""
    pair = veth_pair
    pair.peer.spawn_python(PEER_WRITES_AND_CLOSES, pair.peer_ip, "5005")
    pair.peer.wait_listening(5005)
    nc = pair.spawn(*PYTHON_CLI, "nc", *link_args(pair), pair.peer_ip, "5005",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        code = nc.wait(timeout=20)  # stdin is still open: we never wrote or closed it
        out, err = nc.stdout.read(), nc.stderr.read()  # type: ignore[union-attr]
    finally:
        nn.kill(nc)
    assert b"Fatal Python error" not in err and b"Traceback" not in err, err
    assert code == 0, err
    assert out == b"hello from linux\n"


def test_nc_into_a_closed_pipe_exits_quietly(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    pair.peer.spawn_python(PEER_WRITES_AND_CLOSES, pair.peer_ip, "5006")
    pair.peer.wait_listening(5006)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(pair.usernet_argv("nc", *link_args(pair), pair.peer_ip, "5006"), stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=30, stdin=subprocess.DEVNULL)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


def _listening_nc(pair: nn.VethPair, *extra: str) -> tuple[subprocess.Popen[bytes], Lines]:
    nc = pair.spawn(*PYTHON_CLI, "nc", "-l", "-u", "--log-level", "info", *link_args(pair), *extra, "9000",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = Lines(nc.stderr)  # type: ignore[arg-type]
    err.expect(lambda line: "listening on 10.77.0.2:9000/udp" in line)
    return nc, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_nc_terminates_on_sigterm_with_one_line(veth_pair: nn.VethPair, signum: int) -> None:
    nc, err = _listening_nc(veth_pair)
    nc.send_signal(signum)
    assert nc.wait(timeout=10) == 0
    rest = err.rest()
    assert "Traceback" not in rest
    assert [line for line in rest.splitlines() if " INFO " not in line] == ["usernet nc: terminated"]


def test_nc_listen_udp_ends_after_the_idle_timeout(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    nc, err = _listening_nc(pair, "-i", "1.5")
    out = Lines(nc.stdout)  # type: ignore[arg-type]
    pair.peer.python("import socket, sys\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'datagram\\n', "
                     "(sys.argv[1], 9000))", pair.ip)
    assert out.expect(lambda line: True) == "datagram\n"
    started = time.monotonic()
    assert nc.wait(timeout=15) == 0
    assert 1.0 < time.monotonic() - started < 10
    assert "Traceback" not in err.rest()


def test_nc_to_unreachable_destinations_is_one_line_and_exit_1(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    for destination, reason in (("192.168.77.1", "Network is unreachable"), ("10.77.0.99", "No route to host")):
        result = usernet(pair, "nc", *link_args(pair), destination, "80")
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == f"usernet nc: connect to {destination}:80: {reason}"


# --------------------------------------------------------------------------- ping

def test_ping_marks_duplicates_by_sequence_and_numbers_from_one(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    # Every frame duplicated both ways: each request is answered twice and each answer arrives twice,
    # the copies of one answer at the same instant (equal RTTs, so only icmp_seq tells them apart).
    result = usernet(pair, "ping", *link_args(pair), "-c", "3", "-i", "0.3", "--impair", "dup=1", "--seed", "1",
                     pair.peer_ip)
    assert result.returncode == 0, result.stdout + result.stderr
    replies = [line for line in result.stdout.splitlines() if " bytes from " in line]
    assert replies[0].startswith(f"64 bytes from {pair.peer_ip}: icmp_seq=1 ")
    for seq in (1, 2):  # the last request's duplicates may come after ping stopped waiting
        copies = [line for line in replies if f"icmp_seq={seq} " in line]
        assert len(copies) >= 2 and "(DUP!)" not in copies[0], replies
        assert all(line.endswith("(DUP!)") for line in copies[1:]), replies
    dups = sum(line.endswith("(DUP!)") for line in replies)
    assert f"3 packets transmitted, 3 received, +{dups} duplicates, 0% packet loss" in result.stdout


@pytest.mark.parametrize("target", ["localhost", "127.0.0.1", "own address"])
def test_ping_the_host_itself_over_its_loopback(veth_pair: nn.VethPair, target: str) -> None:
    pair = veth_pair
    if target == "own address":
        target = pair.addr.partition("/")[0]
    result = usernet(pair, "ping", *link_args(pair), "-c", "2", "-i", "0.05", target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 packets transmitted, 2 received, 0% packet loss" in result.stdout


def test_ping_with_no_route_is_one_line_and_exit_1(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    result = usernet(pair, "ping", *link_args(pair), "-c", "2", "192.168.77.1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("usernet ping: 192.168.77.1: Network is unreachable "
                                     "(not in 10.77.0.0/24 and no --gateway)")


def test_ping_into_a_closed_pipe_exits_quietly(veth_pair: nn.VethPair) -> None:
    """`usernet ping ... | head -1`, with the reader gone before the first line."""
    pair = veth_pair
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(pair.usernet_argv("ping", *link_args(pair), "-i", "0.05", pair.peer_ip),
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


# --------------------------------------------------------------------------- start-up, up's signals

def _blocked_in_fifo_open(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read() in ("wait_for_partner", "fifo_open")
    except OSError:
        return False


@pytest.mark.parametrize("command", [["up"], ["ping", "10.77.0.1"], ["nc", "10.77.0.1", "80"], ["nc", "-l", "80"]])
def test_ctrl_c_during_start_up_is_one_line_and_130(veth_pair: nn.VethPair, tmp_path: Path,
                                                    command: list[str]) -> None:
    """A FIFO as --pcap holds start-up (opening it blocks until a reader comes) at a known point."""
    pair = veth_pair
    fifo = tmp_path / "pcap.fifo"
    os.mkfifo(fifo)
    proc = pair.spawn(*PYTHON_CLI, command[0], *link_args(pair), "--pcap", str(fifo), *command[1:],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    nn.wait_for(lambda: _blocked_in_fifo_open(proc.pid), timeout=20, what="start-up blocked on the FIFO")
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        nn.kill(proc)
    assert err == "usernet: interrupted\n" and out == ""
    assert proc.returncode == 130


def test_up_dumps_counters_on_sigusr1_and_ends_on_sighup(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    up = pair.spawn(*PYTHON_CLI, "up", *link_args(pair), "--serve", "echo:7",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Lines(up.stdout)  # type: ignore[arg-type]
    out.expect(lambda line: line.startswith("ready "))
    pair.peer.run("ping", "-c", "2", "-i", "0.2", "-W", "2", pair.ip)
    up.send_signal(signal.SIGUSR1)
    out.expect(lambda line: line == "counters:\n")
    out.expect(lambda line: "echo request" in line.lower() or "icmp" in line.lower())
    time.sleep(0.5)
    assert up.poll() is None  # still running
    up.send_signal(signal.SIGHUP)
    assert up.wait(timeout=15) == 0
    assert out.rest().count("counters:\n") == 2
    assert "Traceback" not in up.stderr.read()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- link checks

def test_mtu_above_the_interfaces_is_refused(veth_pair: nn.VethPair) -> None:
    result = usernet(veth_pair, "up", *link_args(veth_pair), "--mtu", "9000", timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"usernet: error: --mtu 9000: larger than {veth_pair.ifname}'s MTU 1500 "
                                     f"(raise it first: ip link set {veth_pair.ifname} mtu 9000)")


def test_tap_given_a_veth_or_a_tun_device_is_refused(veth_pair: nn.VethPair) -> None:
    pair = veth_pair
    result = usernet(pair, "up", "--tap", pair.ifname, "--addr", pair.addr, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"usernet: error: --tap {pair.ifname}: {pair.ifname} exists and is not a TAP "
                                     f"device (use --iface {pair.ifname} for an existing interface)")
    tun = nn.new_name(nn.TAP_PREFIX, "t")
    pair.run("ip", "tuntap", "add", "dev", tun, "mode", "tun")  # inside pair.ns: removed with it
    result = usernet(pair, "up", "--tap", tun, "--addr", pair.addr, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"usernet: error: --tap {tun}: {tun} is a TUN device; use --tun {tun}"


def test_kernel_already_holding_the_address_is_a_warning(make_veth_pair: Callable[..., nn.VethPair]) -> None:
    pair = make_veth_pair(kernel_addr=True)
    result = usernet(pair, "ping", *link_args(pair), "-c", "1", "-W", "1", pair.peer_ip, timeout=30)
    assert result.returncode in (0, 1) and "PING" in result.stdout  # it kept going
    assert result.stderr.strip() == (f"usernet: warning: the kernel also holds {pair.ip} on {pair.ifname} and will "
                                     f"answer for it too (ip addr del {pair.addr} dev {pair.ifname})")
