"""The benchmarks' shared topology: a kernel client with one veth pair to a kernel server and one
to usernet, so both targets are measured by the same client in the same run."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

LINUX_SERVER = "10.81.0.2"
USERNET = "10.82.0.2"


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


@dataclass
class Topology:
    client: str   # namespace of the kernel client
    server: str   # namespace of the kernel server (10.81.0.2)
    host: str     # namespace of usernet (10.82.0.2)
    usernet_if: str
    procs: list[subprocess.Popen[str]]

    @property
    def client_to_server_if(self) -> str:
        """The client's end of the veth pair to the kernel server."""
        return self.usernet_if[:-1] + "a"

    @property
    def client_to_usernet_if(self) -> str:
        """The client's end of the veth pair to usernet."""
        return self.usernet_if[:-1] + "c"

    def start(self, ns: str, *command: str) -> subprocess.Popen[str]:
        """Start a process in *ns* and wait for its first line, which must begin with "ready"."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *command], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        return proc

    def start_usernet(self, *serve: str) -> subprocess.Popen[str]:
        return self.start(self.host, sys.executable, "-m", "usernet.cli", "up", "--iface", self.usernet_if,
                          "--addr", f"{USERNET}/24", *serve)


def ethtool_off(ns: str, dev: str) -> None:
    """Every offload the kernel has on a veth end off: frames of at most the MTU, full checksums."""
    sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
       "rx", "off", check=False)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM first (usernet up ends cleanly on it), then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def topology(mtu: int = 1500, offloads: bool = True, kind: str = "b") -> Iterator[Topology]:
    """The three namespaces and two veth pairs, names unique to the run (*kind* tells the tools'
    apart: "b" the single benchmarks, "s" the suite), with an MTU and optionally every offload off
    (on usernet's end too: its 64 KB super-segments are then cut by the kernel's software GSO)."""
    tag = uuid.uuid4().hex[:5]
    topo = Topology(f"un-{kind}{tag}c", f"un-{kind}{tag}s", f"un-{kind}{tag}u", f"v{kind}{tag}d", [])
    ends = ((topo.client, f"v{kind}{tag}a"), (topo.server, f"v{kind}{tag}b"), (topo.client, f"v{kind}{tag}c"),
            (topo.host, topo.usernet_if))
    try:
        for ns in (topo.client, topo.server, topo.host):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", ends[0][1], "netns", topo.client, "type", "veth", "peer", "name", ends[1][1],
           "netns", topo.server)
        sh("ip", "link", "add", ends[2][1], "netns", topo.client, "type", "veth", "peer", "name", topo.usernet_if,
           "netns", topo.host)
        sh("ip", "-n", topo.client, "addr", "add", "10.81.0.1/24", "dev", ends[0][1])
        sh("ip", "-n", topo.server, "addr", "add", f"{LINUX_SERVER}/24", "dev", ends[1][1])
        sh("ip", "-n", topo.client, "addr", "add", "10.82.0.1/24", "dev", ends[2][1])
        for ns, dev in ends:
            sh("ip", "-n", ns, "link", "set", dev, "mtu", str(mtu))
            if not offloads:
                ethtool_off(ns, dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for ns in (topo.client, topo.server, topo.host):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield topo
    finally:
        for proc in topo.procs:
            stop(proc)
        for ns in (topo.client, topo.server, topo.host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
