"""`usernet run` against the Linux kernel over veth: an unmodified client and an unmodified server.

The kernel is at 10.77.0.1 in `pair.peer`; usernet runs the program on `pair.ifname` at 10.77.0.2.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.realpeer import netns as nn

pytestmark = pytest.mark.root

CLIENT = r"""
import http.client, sys, urllib.request
url = sys.argv[1]
with urllib.request.urlopen(url, timeout=10) as response:
    print("urllib", response.status, response.read().decode().strip())
conn = http.client.HTTPConnection(url.split("/")[2], timeout=10)
conn.request("GET", "/hello.txt")
print("http.client", conn.getresponse().read().decode().strip())
sys.exit(int(sys.argv[2]))
"""

WAIT_FOR_PORT = r"""
import socket, sys, time
deadline = time.monotonic() + 20
while True:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""


def run(pair: nn.VethPair, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pair.usernet_argv("run", "--iface", pair.ifname, "--addr", pair.addr, *args),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_run_client_against_linux_http_server(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    pair = veth_pair
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from linux\n")
    server = pair.peer.spawn(sys.executable, "-m", "http.server", "--bind", pair.peer_ip, "--directory", str(www),
                             "8000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pair.peer.python(WAIT_FOR_PORT, pair.peer_ip, "8000")
        prog = tmp_path / "prog.py"
        prog.write_text(CLIENT)
        result = run(pair, "--", str(prog), f"http://{pair.peer_ip}:8000/hello.txt", "3")
        assert result.returncode == 3, result.stderr
        assert result.stdout.splitlines() == ["urllib 200 hello from linux", "http.client hello from linux"]
    finally:
        _stop(server)


def test_run_uncaught_exception_exits_1_with_traceback(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    prog = tmp_path / "boom.py"
    prog.write_text("import socket, sys\nprint(sys.argv[1:])\nsocket.create_connection(('10.77.0.1', 9), 5)\n")
    result = run(veth_pair, "--", str(prog), "a", "-b")
    assert result.returncode == 1
    assert result.stdout == "['a', '-b']\n"
    assert "Traceback (most recent call last):" in result.stderr
    assert "ConnectionRefusedError" in result.stderr
    assert "runpy" not in result.stderr and "usernet/cli.py" not in result.stderr


def test_run_module_http_server_fetched_by_curl(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    nn.need_program("curl")
    pair = veth_pair
    (tmp_path / "served.txt").write_text("served by usernet\n")
    out = (tmp_path / "out").open("w")
    err = (tmp_path / "err").open("w")
    proc = pair.spawn(*pair.usernet_argv("run", "--iface", pair.ifname, "--addr", pair.addr,
                                         "-m", "http.server", "8000"), cwd=str(tmp_path), stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 30
        url = f"http://{pair.ip}:8000/served.txt"
        while True:
            fetched = pair.peer.run("curl", "-sf", "--max-time", "3", url, check=False)
            if fetched.returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "err").read_text()
            assert time.monotonic() < deadline, f"curl: {fetched.returncode} {fetched.stderr}"
            time.sleep(0.2)
        assert fetched.stdout == "served by usernet\n"
        listing = pair.peer.run("curl", "-sf", "--max-time", "3", f"http://{pair.ip}:8000/")
        assert "served.txt" in listing.stdout
    finally:
        _stop(proc)
        out.close()
        err.close()
    assert "Serving HTTP on 0.0.0.0 port 8000" in (tmp_path / "out").read_text()
    assert '"GET /served.txt HTTP/1.1" 200' in (tmp_path / "err").read_text()
