"""`usernet run` with real libraries, each program unmodified, against the Linux kernel over veth.

The kernel is at 10.77.0.1 (`linux.test`, through `--hosts`) in `pair.peer`, serving HTTP on 8080,
HTTPS on 8443 (a certificate of the test CA) and HTTPS on 8444 (a self-signed certificate nobody
trusts) from one small Python server that counts the TCP connections it accepts per port. usernet
runs each program on `pair.ifname` at 10.77.0.2.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.realpeer import netns as nn
from tests.run.conftest import RunPki

pytestmark = pytest.mark.root

SERVER = r"""
import http.server, json, ssl, sys, threading
cert, key, rogue_cert, rogue_key, counts_file = sys.argv[1:6]
counts = {}
lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self):
        super().setup()
        with lock:  # one setup() per accepted connection
            port = str(self.server.server_address[1])
            counts[port] = counts.get(port, 0) + 1
            with open(counts_file, "w") as f:
                json.dump(counts, f)

    def _answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(f"hello {self.headers['Host']} {self.path}".encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(b"posted " + data)

    def log_message(self, *args):
        pass

def serve(port, tls=None):
    server = http.server.ThreadingHTTPServer(("10.77.0.1", port), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        # a failed handshake in accept() must not stop the server
        server.handle_error = lambda request, address: None
    threading.Thread(target=server.serve_forever, daemon=True).start()

serve(8080)
serve(8443, (cert, key))
serve(8444, (rogue_cert, rogue_key))
print("ready", flush=True)
threading.Event().wait()
"""

STDLIB = r"""
import http.client, ssl, sys, urllib.request
ca = sys.argv[1]
context = ssl.create_default_context(cafile=ca)
for url in ("http://linux.test:8080/a", "https://linux.test:8443/b"):
    with urllib.request.urlopen(url, timeout=10, context=context if url.startswith("https") else None) as r:
        print("urlopen GET", r.status, r.read().decode())
    with urllib.request.urlopen(urllib.request.Request(url, data=b"form=1"), timeout=10,
                                context=context if url.startswith("https") else None) as r:
        print("urlopen POST", r.read().decode())
for conn in (http.client.HTTPConnection("linux.test", 8080, timeout=10),
             http.client.HTTPSConnection("linux.test", 8443, timeout=10, context=context)):
    conn.request("GET", "/c")
    print("http.client GET", conn.getresponse().read().decode())
    conn.request("POST", "/d", body=b"xyz")  # the same connection again (keep-alive)
    print("http.client POST", conn.getresponse().read().decode())
    conn.close()
"""

REQUESTS = r"""
import sys, requests
with requests.Session() as session:
    for n in range(3):
        r = session.get(f"https://linux.test:8443/r{n}", verify=sys.argv[1], timeout=10)
        print(r.status_code, r.text)
    print(session.post("https://linux.test:8443/p", data=b"by requests", verify=sys.argv[1], timeout=10).text)
"""

URLLIB3 = r"""
import sys, urllib3
pool = urllib3.PoolManager(ca_certs=sys.argv[1], cert_reqs="CERT_REQUIRED", retries=False, timeout=10)
r = pool.request("GET", "https://linux.test:8443/u3")
print("verified", r.status, r.data.decode())
r = pool.request("GET", "http://linux.test:8080/plain")
print("plain", r.status, r.data.decode())
try:
    pool.request("GET", "https://linux.test:8444/rogue")
except urllib3.exceptions.SSLError as err:
    print("untrusted refused:", "CERTIFICATE_VERIFY_FAILED" in str(err))
else:
    print("untrusted accepted!")
"""

AIOHTTP = r"""
import asyncio, ssl, sys, aiohttp
async def main():
    context = ssl.create_default_context(cafile=sys.argv[1])
    async with aiohttp.ClientSession() as session:
        for url in ("http://linux.test:8080/aio", "https://linux.test:8443/aio"):
            async with session.get(url, ssl=context) as r:
                print(url.split(":")[0], r.status, await r.text())
        async with session.post("https://linux.test:8443/aio", data=b"async", ssl=context) as r:
            print("post", await r.text())
asyncio.run(main())
"""

LOCAL_SOCKETS = r"""
import os, socket, sys
# the program's own AF_UNIX socket and socketpair stay the kernel's
left, right = socket.socketpair()
left.sendall(b"pair")
print("socketpair", right.recv(4).decode(), type(left).__module__, type(right).__module__)
path = os.path.join(sys.argv[1], "unix.sock")
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
    listener.bind(path)
    listener.listen()
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
        conn, _ = listener.accept()
        client.sendall(b"unix")
        print("af_unix", conn.recv(4).decode(), type(listener).__module__, type(conn).__module__)
        conn.close()
# and the network goes through usernet meanwhile
with socket.create_connection(("linux.test", 8080), timeout=10) as tcp:
    tcp.sendall(b"GET /mixed HTTP/1.0\r\nHost: linux.test\r\n\r\n")
    print("tcp", type(tcp).__module__, tcp.recv(100).split(b"\r\n")[0].decode())
"""


@pytest.fixture
def linux_servers(veth_pair: nn.VethPair, run_pki: RunPki, tmp_path: Path) -> Any:
    pair = veth_pair
    counts = tmp_path / "counts.json"
    server = pair.peer.spawn_python(SERVER, str(run_pki.cert), str(run_pki.key), str(run_pki.rogue_cert),
                                    str(run_pki.rogue_key), str(counts), stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        hosts = tmp_path / "hosts"
        hosts.write_text(f"{pair.peer_ip} linux.test\n")
        yield pair, hosts, counts
    finally:
        nn.kill(server)


def _run(pair: nn.VethPair, hosts: Path, code: str, tmp_path: Path, *args: str) -> list[str]:
    prog = tmp_path / "prog.py"
    prog.write_text(code)
    env = {name: value for name, value in nn.python_env().items()
           if not name.lower().endswith("_proxy") and name not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                                                     "SSL_CERT_FILE", "SSL_CERT_DIR")}
    result = subprocess.run(pair.usernet_argv("run", "--iface", pair.ifname, "--addr", pair.addr, "--hosts",
                                              str(hosts), "--", str(prog), *args),
                            capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _connections(counts: Path) -> dict[str, int]:
    return {port: int(n) for port, n in json.loads(counts.read_text()).items()} if counts.exists() else {}


def test_urllib_and_http_client_by_name_over_http_and_https(linux_servers: Any, run_pki: RunPki,
                                                            tmp_path: Path) -> None:
    pair, hosts, counts = linux_servers
    lines = _run(pair, hosts, STDLIB, tmp_path, str(run_pki.ca))
    assert lines == [
        "urlopen GET 200 hello linux.test:8080 /a", "urlopen POST posted form=1",
        "urlopen GET 200 hello linux.test:8443 /b", "urlopen POST posted form=1",
        "http.client GET hello linux.test:8080 /c", "http.client POST posted xyz",
        "http.client GET hello linux.test:8443 /c", "http.client POST posted xyz",
    ]
    # urlopen closes after each request; each HTTPConnection kept one connection for two
    assert _connections(counts) == {"8080": 3, "8443": 3}


def test_requests_session_keeps_one_tls_connection(linux_servers: Any, run_pki: RunPki, tmp_path: Path) -> None:
    pair, hosts, counts = linux_servers
    lines = _run(pair, hosts, REQUESTS, tmp_path, str(run_pki.ca))
    assert lines == [f"200 hello linux.test:8443 /r{n}" for n in range(3)] + ["posted by requests"]
    assert _connections(counts) == {"8443": 1}  # keep-alive: four requests, one TCP connection


def test_urllib3_verifies_against_the_test_ca(linux_servers: Any, run_pki: RunPki, tmp_path: Path) -> None:
    pair, hosts, counts = linux_servers
    lines = _run(pair, hosts, URLLIB3, tmp_path, str(run_pki.ca))
    assert lines == ["verified 200 hello linux.test:8443 /u3", "plain 200 hello linux.test:8080 /plain",
                     "untrusted refused: True"]


def test_aiohttp_client_over_http_and_https(linux_servers: Any, run_pki: RunPki, tmp_path: Path) -> None:
    pair, hosts, counts = linux_servers
    lines = _run(pair, hosts, AIOHTTP, tmp_path, str(run_pki.ca))
    assert lines == ["http 200 hello linux.test:8080 /aio", "https 200 hello linux.test:8443 /aio", "post posted async"]
    assert _connections(counts) == {"8080": 1, "8443": 1}  # aiohttp's pool reused the TLS connection


def test_own_af_unix_socket_and_socketpair_still_work(linux_servers: Any, tmp_path: Path) -> None:
    pair, hosts, _ = linux_servers
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    os.chmod(sockets, 0o700)
    lines = _run(pair, hosts, LOCAL_SOCKETS, tmp_path, str(sockets))
    assert lines == ["socketpair pair socket socket", "af_unix unix socket socket",
                     "tcp usernet.api.socket HTTP/1.1 200 OK"]


HTTPS_SERVER = r"""
import http.server, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server = http.server.HTTPServer(("0.0.0.0", 8443), http.server.SimpleHTTPRequestHandler)
server.socket = context.wrap_socket(server.socket, server_side=True)  # the documented recipe
print("serving", type(server.socket).__name__, flush=True)
for _ in range(2):
    server.handle_request()
"""


def test_https_server_recipe_served_from_usernet_fetched_by_curl(veth_pair: nn.VethPair, run_pki: RunPki,
                                                                 tmp_path: Path) -> None:
    """Server side: SSLContext.wrap_socket on a listening socket, http.server on top, curl from
    Linux verifying the certificate against the test CA by name."""
    nn.need_program("curl")
    pair = veth_pair
    (tmp_path / "index.txt").write_text("tls from usernet\n")
    prog = tmp_path / "server.py"
    prog.write_text(HTTPS_SERVER)
    out = (tmp_path / "out").open("w+")
    err = (tmp_path / "err").open("w+")
    proc = pair.spawn(*pair.usernet_argv("run", "--iface", pair.ifname, "--addr", pair.addr, "--", str(prog),
                                         str(run_pki.cert), str(run_pki.key)),
                      cwd=str(tmp_path), stdout=out, stderr=err, env=nn.python_env())
    curl = ("curl", "-sf", "--max-time", "5", "--cacert", str(run_pki.ca), "--resolve",
            f"usernet.test:8443:{pair.ip}", "https://usernet.test:8443/index.txt")
    try:
        nn.wait_for(lambda: "serving" in (tmp_path / "out").read_text() or proc.poll() is not None, 30,
                    what="the https server to start")
        fetched = [pair.peer.run(*curl, check=False) for _ in range(2)]
        assert proc.wait(30) == 0, (tmp_path / "err").read_text()
    finally:
        if proc.poll() is None:
            nn.kill(proc)
        out.close()
        err.close()
    assert [(f.returncode, f.stdout) for f in fetched] == [(0, "tls from usernet\n")] * 2
    assert (tmp_path / "out").read_text() == "serving TlsSocket\n"
    assert (tmp_path / "err").read_text().count('"GET /index.txt HTTP/1.1" 200') == 2
