"""Standard library code, unmodified but for where its socket comes from, over usernet against
Linux peers: http.client against http.server, socketserver serving curl, asyncio through socat.

Each usernet program runs in-process in its own namespace (`ip netns exec ... python -c`),
on the veth end over AF_PACKET.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.realpeer.support import PEER_IP, USERNET_IP, Veth, need_programs

pytestmark = pytest.mark.root

PRELUDE = """
import asyncio, json, os, sys, threading, time, http.client, http.server, socketserver, select
import usernet
from usernet.links import Packet
host = usernet.Host(Packet(sys.argv[1]), addr=sys.argv[2] + "/24")
host.start()
"""


def run_usernet(veth: Veth, body: str, timeout: float = 120, background: bool = False):  # type: ignore[no-untyped-def]
    args = ["ip", "netns", "exec", veth.usernet_ns, sys.executable, "-c", PRELUDE + body, veth.usernet_if,
            USERNET_IP]
    if background:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        veth.procs.append(proc)
        return proc
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_http_client_two_gets_from_linux_http_server(veth: Veth, tmp_path) -> None:
    (tmp_path / "index.html").write_text("hello over usernet\n" * 50)
    server = subprocess.Popen(["ip", "netns", "exec", veth.peer_ns, sys.executable, "-m", "http.server", "8000",
                               "--bind", PEER_IP, "--directory", str(tmp_path), "--protocol", "HTTP/1.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    veth.procs.append(server)  # type: ignore[arg-type]
    time.sleep(1.0)
    result = run_usernet(veth, f"""
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = host.create_connection((self.host, self.port), timeout=self.timeout)
c = Conn("{PEER_IP}", 8000, timeout=10)
bodies = []
for _ in range(2):
    c.request("GET", "/index.html")
    r = c.getresponse()
    bodies.append((r.status, r.read().decode()))
same_socket = c.sock is not None
c.close(); host.close()
print(json.dumps({{"bodies": bodies, "same_socket": same_socket}}))
""")
    assert result["bodies"] == [[200, "hello over usernet\n" * 50]] * 2 and result["same_socket"]


def test_socketserver_serves_curl_and_shuts_down(veth: Veth) -> None:
    need_programs("curl")
    proc = run_usernet(veth, """
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"served by socketserver on usernet\\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
srv = Server(("0.0.0.0", 8080), Handler, bind_and_activate=False)
srv.socket.close()
srv.socket = host.socket()
srv.server_bind(); srv.server_activate()
t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}); t.start()
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic(); srv.shutdown(); srv.server_close(); t.join(5)
host.close()
print(json.dumps({"stopped": not t.is_alive(), "seconds": time.monotonic() - start}), flush=True)
""", background=True)
    assert proc.stdout.readline().strip() == "ready"
    for _ in range(3):
        curl = subprocess.run(["ip", "netns", "exec", veth.peer_ns, "curl", "-sS", "--max-time", "10",
                               f"http://{USERNET_IP}:8080/x"], capture_output=True, text=True, timeout=30)
        assert curl.stdout == "served by socketserver on usernet\n", curl.stderr
    out, err = proc.communicate("stop\n", timeout=30)  # socketserver's shutdown() from the test
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stopped"] and result["seconds"] < 5


def test_asyncio_echo_300kb_through_socat(veth: Veth) -> None:
    need_programs("socat")
    socat = subprocess.Popen(["ip", "netns", "exec", veth.peer_ns, "socat", "TCP-LISTEN:7007,reuseaddr,fork",
                              "PIPE"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    veth.procs.append(socat)  # type: ignore[arg-type]
    time.sleep(0.5)
    result = run_usernet(veth, f"""
async def main():
    reader, writer = await host.open_connection("{PEER_IP}", 7007)
    payload = os.urandom(300_000)
    async def send():
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
    sender = asyncio.create_task(send())
    got = await reader.read()
    await sender
    writer.close(); await writer.wait_closed()
    return got == payload, len(got)
ok, n = asyncio.run(main())
host.close()
print(json.dumps({{"ok": ok, "bytes": n}}))
""")
    assert result == {"ok": True, "bytes": 300_000}


def test_selectors_50_nonblocking_sockets_against_linux(veth: Veth) -> None:
    need_programs("socat")
    socat = subprocess.Popen(["ip", "netns", "exec", veth.peer_ns, "socat", "TCP-LISTEN:7008,reuseaddr,fork",
                              "PIPE"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    veth.procs.append(socat)  # type: ignore[arg-type]
    time.sleep(0.5)
    result = run_usernet(veth, f"""
import selectors, errno
sel = selectors.DefaultSelector()
socks = {{}}
for i in range(50):
    s = host.socket(); s.setblocking(False)
    assert s.connect_ex(("{PEER_IP}", 7008)) == errno.EINPROGRESS
    sel.register(s, selectors.EVENT_WRITE, i); socks[i] = s
got = {{}}
sent = set()
deadline = time.monotonic() + 30
while len(got) < 50 and time.monotonic() < deadline:
    for key, ev in sel.select(1):
        s, i = key.fileobj, key.data
        if i not in sent:
            s.send(b"sock-%d" % i); sent.add(i); sel.modify(s, selectors.EVENT_READ, i)
        else:
            try:
                got[i] = got.get(i, b"") + s.recv(100)
            except BlockingIOError:
                continue
            if got[i] == b"sock-%d" % i:
                sel.unregister(s)
ok = sum(got.get(i) == b"sock-%d" % i for i in range(50))
for s in socks.values(): s.close()
host.close()
print(json.dumps({{"ok": ok}}))
""")
    assert result == {"ok": 50}
