"""The HTTP server against Linux clients over veth: keep-alive latency (no Nagle/delayed-ACK stalls), a Flask
app via `--serve wsgi:`, wrk beside CPython's ThreadingHTTPServer on kernel sockets, and a slowloris client.

(Three requests on one connection with curl, num_connects 1, 0, 0, are in test_realpeer_http.py.)"""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.realpeer import netns as nn
from tests.test_cli_realpeer import Lines

pytestmark = [pytest.mark.root("curl", "wrk"), pytest.mark.timeout(180)]

FLASK_APP = '''
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return "hello from flask"


@app.post("/sum")
def total():
    data = request.get_json()
    return jsonify(sum=sum(data["numbers"]), n=len(data["numbers"]))


@app.get("/boom")
def boom():
    raise RuntimeError("deliberate")
'''

KEEPALIVE_CLIENT = '''
import http.client, sys, time
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=20)
conn.request("GET", "/one_k.bin")
resp = conn.getresponse(); assert resp.status == 200, resp.status; resp.read()
start = time.monotonic()
for _ in range(50):
    conn.request("GET", "/one_k.bin")
    resp = conn.getresponse()
    assert resp.status == 200 and len(resp.read()) == 1024
print(time.monotonic() - start)
'''

KERNEL_SERVER = '''
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.log_message = lambda *a: None
handler.func.protocol_version = "HTTP/1.1"  # keep-alive, as `python3 -m http.server --protocol HTTP/1.1`
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer.request_queue_size = 128
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8090), handler)
print("ready", flush=True)
server.serve_forever()
'''


@pytest.fixture
def served(veth_pair: nn.VethPair, tmp_path: Path) -> Iterator[tuple[nn.VethPair, Path]]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "one_k.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "flask_app_mod.py").write_text(FLASK_APP)
    pair = veth_pair
    up = pair.spawn(sys.executable, "-m", "usernet.cli", "up", "--iface", pair.ifname, "--addr", pair.addr,
                    "--serve", f"http:8080:{site}", "--serve", "wsgi:8082:flask_app_mod:app",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=nn.python_env())
    out = Lines(up.stdout)  # type: ignore[arg-type]
    out.expect(lambda line: line.startswith("ready "), timeout=30)
    try:
        yield pair, site
    finally:
        nn.kill(up)


def curl(pair: nn.VethPair, *args: str) -> subprocess.CompletedProcess[str]:
    return pair.peer.run("curl", "-sS", "--max-time", "30", *args, timeout=60)


def test_keepalive_requests_do_not_stall_on_delayed_acks(served: tuple[nn.VethPair, Path]) -> None:
    """A head and body leaving as two segments made each request wait for the Linux client's delayed ACK
    (~40 ms): 50 requests took > 2 s. Coalesced and with TCP_NODELAY they take a few ms each."""
    pair, _ = served
    elapsed = float(pair.peer.python(KEEPALIVE_CLIENT, pair.ip, "8080").stdout)
    print(f"50 keep-alive requests from http.client over veth: {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0


def test_flask_app_over_veth(served: tuple[nn.VethPair, Path]) -> None:
    pair, _ = served
    url = f"http://{pair.ip}:8082"
    assert curl(pair, url + "/").stdout == "hello from flask"
    posted = curl(pair, "-H", "Content-Type: application/json", "--data", json.dumps({"numbers": [1, 2, 39]}),
                  url + "/sum")
    assert json.loads(posted.stdout) == {"sum": 42, "n": 3}
    assert curl(pair, "-o", "/dev/null", "-w", "%{http_code}", url + "/nothing-here").stdout == "404"
    assert curl(pair, "-o", "/dev/null", "-w", "%{http_code}", url + "/boom").stdout == "500"
    assert curl(pair, url + "/").stdout == "hello from flask"  # the server goes on


def _wrk(run: Callable[..., subprocess.CompletedProcess[str]], url: str, strict: bool = True) -> tuple[float, str]:
    result = run("wrk", "-t2", "-c20", "-d5s", "--timeout", "10s", "--latency", url, timeout=60)
    out = result.stdout
    print(out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate is not None, out
    if not strict:
        return float(rate[1]), out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    count = re.search(r"(\d+) requests in", out)
    assert count is not None and int(count[1]) > 0, out
    return float(rate[1]), out


def test_wrk_against_usernet_and_threading_http_server(served: tuple[nn.VethPair, Path],
                                                       make_veth_pair: Callable[..., nn.VethPair]) -> None:
    pair, site = served
    usernet_rate, _ = _wrk(pair.peer.run, f"http://{pair.ip}:8080/one_k.bin")
    kernel = make_veth_pair(peer_addr="10.79.0.1/24", addr="10.79.0.2/24", kernel_addr=True)
    assert kernel.ns is not None
    server = kernel.ns.spawn(sys.executable, "-c", KERNEL_SERVER, str(site), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("ready")
        # only recorded: errors there are CPython's, not ours
        kernel_rate, _ = _wrk(kernel.peer.run, f"http://{kernel.ip}:8090/one_k.bin", strict=False)
    finally:
        nn.kill(server)
    print(f"wrk -t2 -c20 -d5s, 1 KB file: usernet --serve http {usernet_rate:.0f} req/s, "
          f"ThreadingHTTPServer on kernel sockets {kernel_rate:.0f} req/s")


def test_slowloris_closed_at_header_timeout_while_curl_is_served(served: tuple[nn.VethPair, Path]) -> None:
    pair, _ = served

    def slowloris() -> tuple[float, bytes]:
        sock = socket.create_connection((pair.ip, 8080), timeout=30)
        try:
            start = time.monotonic()
            for byte in b"GET /one_k.bin HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                if select.select([sock], [], [], 0.5)[0]:
                    break  # the server answered or closed
            got = b""
            sock.settimeout(30)
            while piece := sock.recv(4096):
                got += piece
            return time.monotonic() - start, got
        finally:
            sock.close()

    result: list[tuple[float, bytes]] = []
    thread = threading.Thread(target=lambda: result.append(pair.peer.call(slowloris, timeout=60)))
    thread.start()
    time.sleep(2.0)
    codes = [curl(pair, "-o", "/dev/null", "-w", "%{http_code}", f"http://{pair.ip}:8080/one_k.bin").stdout
             for _ in range(3)]
    thread.join(60)
    assert codes == ["200"] * 3
    assert result, "the slowloris client did not finish"
    elapsed, answer = result[0]
    print(f"slowloris closed after {elapsed:.1f} s: {answer[:40]!r}")
    assert answer.startswith(b"HTTP/1.1 408")
    assert 9.0 <= elapsed < 20.0  # the default header timeout is 10 s
