"""Preconditions of real-peer tests: skip with a clear reason, or fail under CI=true."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PEER_IP = "10.77.0.1"
USERNET_IP = "10.77.0.2"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: real-peer tests must run in CI", pytrace=False)
    pytest.skip(reason)


def need_root() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root (network namespaces, veth, AF_PACKET)")
    if not os.path.exists("/dev/net/tun"):
        _unavailable("needs /dev/net/tun")


def need_programs(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        _unavailable(f"needs {', '.join(missing)} on PATH")


def sh(*args: str, check: bool = True, timeout: float = 60, input: bytes | None = None,
       ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, check=check, timeout=timeout, input=input)


@dataclass
class Veth:
    tag: str
    peer_ns: str
    usernet_ns: str
    peer_if: str
    usernet_if: str
    workdir: str

    def peer(self, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        return sh("ip", "netns", "exec", self.peer_ns, *args, **kw)  # type: ignore[arg-type]

    def usernet_cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.usernet_ns, sys.executable, "-m", "usernet.cli", *args]

    def start_up(self, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.usernet_cmd("up", "--iface", self.usernet_if, "--addr", f"{USERNET_IP}/24",
                                                 *extra),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("ready"):
            proc.kill()
            error = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"usernet up did not become ready: {line!r} {error}")
        return proc

    procs: list[subprocess.Popen[str]]


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out + err


def make_veth(tmp_path) -> Iterator[Veth]:
    need_root()
    need_programs("ip", "ping", "socat")
    tag = uuid.uuid4().hex[:6]
    v = Veth(tag=tag, peer_ns=f"un-{tag}-peer", usernet_ns=f"un-{tag}-host", peer_if=f"vn{tag}p",
             usernet_if=f"vn{tag}u", workdir=str(tmp_path), procs=[])
    try:
        sh("ip", "netns", "add", v.peer_ns)
        sh("ip", "netns", "add", v.usernet_ns)
        sh("ip", "link", "add", v.peer_if, "netns", v.peer_ns, "type", "veth", "peer", "name", v.usernet_if,
           "netns", v.usernet_ns)
        v.peer("ip", "addr", "add", f"{PEER_IP}/24", "dev", v.peer_if)
        v.peer("ip", "link", "set", v.peer_if, "up")
        v.peer("ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", v.usernet_ns, "ip", "link", "set", v.usernet_if, "up")
        # No kernel address on usernet's end: the kernel there must stay silent (no ARP answers, no RSTs).
        sh("ip", "netns", "exec", v.usernet_ns, "sysctl", "-qw", f"net.ipv6.conf.{v.usernet_if}.disable_ipv6=1")
        yield v
    finally:
        for proc in v.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        sh("ip", "netns", "del", v.peer_ns, check=False)
        sh("ip", "netns", "del", v.usernet_ns, check=False)


def ping_summary(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


