"""The `veth` fixture's topology and helpers used by the usernet-against-Linux tests.

Built on tests/realpeer/netns.py, which new tests should use directly (`veth_pair`, `netns`, ...); this
module keeps the interface the existing tests were written against.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from tests.realpeer.netns import RUN_TAG, close_veth, create_veth_pair, need_program, need_root, ping_summary
from tests.realpeer.netns import unavailable as _unavailable

__all__ = ["PEER_IP", "USERNET_IP", "Veth", "_unavailable", "make_veth", "need_programs", "need_root",
           "ping_summary", "sh", "stop"]

PEER_IP = "10.77.0.1"
USERNET_IP = "10.77.0.2"

need_programs = need_program


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
    pair, owned = create_veth_pair(f"{PEER_IP}/24", f"{USERNET_IP}/24")
    assert pair.ns is not None
    v = Veth(tag=RUN_TAG, peer_ns=pair.peer.name, usernet_ns=pair.ns.name, peer_if=pair.peer_if,
             usernet_if=pair.ifname, workdir=str(tmp_path), procs=[])
    try:
        yield v
    finally:
        for proc in v.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        close_veth(owned, None)
