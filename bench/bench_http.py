"""HTTP serving: requests per second with wrk, and allocations per request with tracemalloc.

Run as root: `python bench/bench_http.py [--seconds S] [--requests N] [--no-wrk]`. Over veth (bench/topology.py:
a kernel client namespace with one pair to a kernel server namespace and one to usernet's), wrk -t2 -c20
fetches a 1 KB file from `usernet up --serve http:8080:DIR`, a small WSGI app from `--serve wsgi:8081:...`, and
the same file from CPython's ThreadingHTTPServer (SimpleHTTPRequestHandler, HTTP/1.1 keep-alive) on kernel
sockets, in the same run.

Allocations are measured in this process with tracemalloc over N keep-alive requests on one connection, the
server's connection loop driven through a stand-in socket (no TCP stack in the figures): for the parse path
alone (ServerConnection) and for a whole request (parse, static-file handler, response head and body
written). "retained" is what is still allocated after N requests (snapshot before/after: per-connection
buffers reused means ~0); "peak" is the largest working set above the start while serving one request.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from usernet.apps.http import StaticFiles, WsgiHandler, _Connection  # noqa: E402
from usernet.proto.http import Limits, ServerConnection  # noqa: E402

REQUEST = (b"GET /one_k.bin HTTP/1.1\r\nHost: 10.82.0.2:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n"
           b"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n")

WSGI_APP = '''
BODY = b"x" * 1024

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "1024")])
    return [BODY]
'''

KERNEL_SERVER = '''
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.log_message = lambda *a: None
handler.func.protocol_version = "HTTP/1.1"
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer.request_queue_size = 128
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8090), handler)
print("ready", flush=True)
server.serve_forever()
'''


# ------------------------------------------------------------------ allocations

class _FeedSocket:
    """Hands out the same request ``n`` times in ``recv`` calls, then EOF; drops what is sent."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.sends = 0

    def recv(self, size: int) -> bytes:
        if self.left == 0:
            return b""
        self.left -= 1
        return REQUEST

    def sendall(self, data: Any) -> None:
        self.sends += 1

    def settimeout(self, t: float | None) -> None:
        pass

    def close(self) -> None:
        pass


def _measure(step: Any, n: int) -> tuple[float, float, float]:
    """(retained blocks per request, retained bytes per request, peak bytes per request) over n steps."""
    step(50)  # warm up caches (regex, date, mimetypes) outside the figures
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        start_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step(1)
        peak = tracemalloc.get_traced_memory()[1] - start_bytes
        step(n - 1)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        gc.enable()
    diff = after.compare_to(before, "filename")
    blocks = sum(s.count_diff for s in diff)
    size = sum(s.size_diff for s in diff)
    return blocks / n, size / n, float(peak)


def allocations(n: int) -> list[tuple[str, float, float, float]]:
    site = tempfile.mkdtemp(prefix="bench-http-")
    Path(site, "one_k.bin").write_bytes(os.urandom(1024))
    parser = ServerConnection(Limits())

    def parse(count: int) -> None:
        for _ in range(count):
            parser.receive_data(REQUEST)
            parser.next_event()  # the Request
            parser.next_event()  # its EndOfMessage

    def whole(handler: Any) -> Any:
        server = SimpleNamespace(limits=Limits(), idle_timeout=30.0, header_timeout=10.0, stopping=False,
                                 counters=collections.Counter(), handler=handler, tls=None)

        def step(count: int) -> None:
            # One connection per batch: per-connection buffers are reused across its requests.
            _Connection(server, _FeedSocket(count), ("10.0.0.9", 1)).run()  # type: ignore[arg-type]
        return step

    namespace: dict[str, Any] = {}
    exec(WSGI_APP, namespace)
    rows = [("parse path (ServerConnection)", *_measure(parse, n)),
            ("whole request, static 1 KB file", *_measure(whole(StaticFiles(site)), n)),
            ("whole request, WSGI app", *_measure(whole(WsgiHandler(namespace["app"])), n))]
    return rows


# ------------------------------------------------------------------ wrk over veth

def wrk(ns: str, url: str, seconds: float) -> tuple[float, str]:
    out = subprocess.run(["ip", "netns", "exec", ns, "wrk", "-t2", "-c20", f"-d{seconds:g}s", "--timeout", "10s",
                          url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = "socket errors" if "Socket errors" in out else ("non-2xx" if "Non-2xx" in out else "none")
    return (float(rate[1]) if rate else 0.0), errors


def requests_per_second(seconds: float) -> list[tuple[str, float, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from topology import LINUX_SERVER, USERNET, topology

    site = tempfile.mkdtemp(prefix="bench-http-site-")
    Path(site, "one_k.bin").write_bytes(os.urandom(1024))
    Path(site, "bench_http_app.py").write_text(WSGI_APP)
    os.environ["PYTHONPATH"] = os.pathsep.join([site, str(Path(__file__).resolve().parent.parent / "src"),
                                                os.environ.get("PYTHONPATH", "")])
    rows = []
    with topology() as topo:
        topo.start_usernet("--serve", f"http:8080:{site}", "--serve", "wsgi:8081:bench_http_app:app")
        topo.start(topo.server, sys.executable, "-c", KERNEL_SERVER, site)
        for name, url in (("usernet --serve http (1 KB file)", f"http://{USERNET}:8080/one_k.bin"),
                          ("usernet --serve wsgi (1 KB body)", f"http://{USERNET}:8081/"),
                          ("ThreadingHTTPServer, kernel sockets (1 KB file)",
                           f"http://{LINUX_SERVER}:8090/one_k.bin")):
            rate, errors = wrk(topo.client, url, seconds)
            rows.append((name, rate, errors))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per target")
    parser.add_argument("--requests", type=int, default=2000, help="requests for the allocation figures")
    parser.add_argument("--no-wrk", action="store_true", help="only the in-process allocation figures")
    args = parser.parse_args()
    if not args.no_wrk:
        print(f"| wrk -t2 -c20 -d{args.seconds:g}s over veth | requests/s | errors |")
        print("|---|---:|---|")
        for name, rate, errors in requests_per_second(args.seconds):
            print(f"| {name} | {rate:.0f} | {errors} |")
        print()
    print(f"| allocations per request (tracemalloc, {args.requests} requests) | retained blocks | "
          "retained bytes | peak bytes |")
    print("|---|---:|---:|---:|")
    for name, blocks, size, peak in allocations(args.requests):
        print(f"| {name} | {blocks:.2f} | {size:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
