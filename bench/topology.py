"""The benchmarks' shared topology: a kernel client with one veth pair to a kernel server and one
to usernet, so both targets are measured by the same client in the same run."""

from __future__ import annotations

import contextlib
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

    def start(self, ns: str, *command: str) -> subprocess.Popen[str]:
        """Start a process in *ns* and wait for its first line, which must begin with "ready"."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *command], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        return proc

    def start_usernet(self, *serve: str) -> subprocess.Popen[str]:
        return self.start(self.host, sys.executable, "-m", "usernet.cli", "up", "--iface", self.usernet_if,
                          "--addr", f"{USERNET}/24", *serve)


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    tag = uuid.uuid4().hex[:5]
    topo = Topology(f"un-b{tag}c", f"un-b{tag}s", f"un-b{tag}u", f"vn{tag}d", [])
    try:
        for ns in (topo.client, topo.server, topo.host):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"vn{tag}a", "netns", topo.client, "type", "veth", "peer", "name", f"vn{tag}b",
           "netns", topo.server)
        sh("ip", "link", "add", f"vn{tag}c", "netns", topo.client, "type", "veth", "peer", "name", topo.usernet_if,
           "netns", topo.host)
        sh("ip", "-n", topo.client, "addr", "add", "10.81.0.1/24", "dev", f"vn{tag}a")
        sh("ip", "-n", topo.server, "addr", "add", f"{LINUX_SERVER}/24", "dev", f"vn{tag}b")
        sh("ip", "-n", topo.client, "addr", "add", "10.82.0.1/24", "dev", f"vn{tag}c")
        for ns, dev in ((topo.client, f"vn{tag}a"), (topo.server, f"vn{tag}b"), (topo.client, f"vn{tag}c"),
                        (topo.host, topo.usernet_if)):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield topo
    finally:
        for proc in topo.procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (topo.client, topo.server, topo.host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
