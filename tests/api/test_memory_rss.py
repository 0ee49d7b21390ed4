"""`usernet up` gives a long transfer's heap back: RSS after 256 MB received over veth stays within
10% of the figure after start (bench/suite.py's memory scenario, smaller), and the runtime trimmed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.realpeer.support import USERNET_IP, Veth, make_veth, stop

pytestmark = pytest.mark.root

SEND = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 9), timeout=30)
block = bytes(1 << 20)
for _ in range(int(sys.argv[2])):
    s.sendall(block)
s.close()
"""


@pytest.fixture
def veth(tmp_path) -> Iterator[Veth]:
    yield from make_veth(tmp_path)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _settled(pid: int, seconds: float) -> int:
    """The lowest RSS over *seconds*: the trim comes in the pass the connection closes, or at the
    latest at the second pass (idle: a second apart) after the traffic stopped."""
    low, end = _rss_kb(pid), time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        low = min(low, _rss_kb(pid))
    return low


def test_rss_after_a_long_transfer_is_flat(veth: Veth) -> None:
    proc = veth.start_up("--serve", "discard:9")  # `ip netns exec` execs: proc.pid is usernet's
    time.sleep(0.5)
    start = _rss_kb(proc.pid)
    veth.peer("python3", "-c", SEND, USERNET_IP, "256", timeout=120)
    after = _settled(proc.pid, 2.5)
    code, output = stop(proc)
    assert code == 0
    trimmed = re.search(r"(\d+) memory trimmed", output)  # under "host:"
    assert trimmed and int(trimmed.group(1)) >= 1, output
    assert after <= start * 1.1, (start, after)
