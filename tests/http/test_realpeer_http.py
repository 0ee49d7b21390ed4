"""`usernet up --serve http:... --serve wsgi:...` over veth, fetched by curl from the Linux namespace."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realpeer import netns as nn
from tests.test_cli_realpeer import Lines

pytestmark = [pytest.mark.root("curl"), pytest.mark.timeout(180)]

WSGI_APP = '''
import hashlib

def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [hashlib.sha256(body).hexdigest().encode(), b" %d" % len(body)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from wsgi at ", environ["PATH_INFO"].encode()]
'''


@pytest.fixture
def served(veth_pair: nn.VethPair, tmp_path: Path) -> Iterator[tuple[nn.VethPair, Path, Path]]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (site / "index.html").write_text("<p>hi</p>")
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "echo_app_mod.py").write_text(WSGI_APP)
    pair = veth_pair
    up = pair.spawn(sys.executable, "-m", "usernet.cli", "up", "--iface", pair.ifname, "--addr", pair.addr,
                    "--serve", f"http:8080:{site}", "--serve", "wsgi:8081:echo_app_mod:application",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=nn.python_env())
    out = Lines(up.stdout)  # type: ignore[arg-type]
    line = out.expect(lambda line: line.startswith("ready "), timeout=30)
    assert "http:8080:" in line and "wsgi:8081:" in line
    try:
        yield pair, site, tmp_path
    finally:
        nn.kill(up)


def curl(pair: nn.VethPair, *args: str) -> subprocess.CompletedProcess[str]:
    return pair.peer.run("curl", "-sS", "--max-time", "60", *args, timeout=90)


def test_curl_static_files(served: tuple[nn.VethPair, Path, Path]) -> None:
    pair, site, tmp = served
    url = f"http://{pair.ip}:8080"
    outs = [tmp / f"out{i}" for i in range(3)]
    result = curl(pair, "-w", "%{http_code} %{num_connects}\\n",
                  *(arg for out in outs for arg in ("-o", str(out), f"{url}/big.bin")))
    assert result.stdout.split("\n")[:3] == ["200 1", "200 0", "200 0"]
    data = (site / "big.bin").read_bytes()
    for out in outs:
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert curl(pair, "-o", "/dev/null", "-w", "%{http_code}", f"{url}/missing").stdout == "404"
    head = curl(pair, "-I", f"{url}/big.bin").stdout
    assert head.startswith("HTTP/1.1 200") and f"Content-Length: {len(data)}" in head
    ranged = curl(pair, "-r", "1000-1999", "-o", str(tmp / "part"), "-w", "%{http_code}", f"{url}/big.bin")
    assert ranged.stdout == "206" and (tmp / "part").read_bytes() == data[1000:2000]
    etag = next(line.split(": ", 1)[1].strip() for line in head.splitlines() if line.startswith("ETag"))
    assert curl(pair, "-o", "/dev/null", "-w", "%{http_code}", "-H", f"If-None-Match: {etag}",
                f"{url}/big.bin").stdout == "304"
    escaped = curl(pair, "--path-as-is", "-w", "%{http_code}", f"{url}/../secret.txt").stdout
    assert escaped.endswith("404") and "secret" not in escaped
    assert curl(pair, f"{url}/").stdout == "<p>hi</p>"


def test_curl_wsgi_get_and_100k_post(served: tuple[nn.VethPair, Path, Path]) -> None:
    pair, _, tmp = served
    url = f"http://{pair.ip}:8081"
    assert curl(pair, f"{url}/there").stdout == "hello from wsgi at /there"
    body = os.urandom(100_000)
    (tmp / "body").write_bytes(body)
    posted = curl(pair, "--data-binary", f"@{tmp / 'body'}", f"{url}/echo").stdout
    assert posted == f"{hashlib.sha256(body).hexdigest()} 100000"
    chunked = curl(pair, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{tmp / 'body'}", f"{url}/echo")
    assert chunked.stdout == f"{hashlib.sha256(body).hexdigest()} 100000"
