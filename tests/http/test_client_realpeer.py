"""`usernet get` over veth against real servers in the Linux namespace: Python's http.server, and
`openssl s_server -WWW` over HTTPS with the test CA (and refused without it)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.realpeer import netns as nn

from ..tls.conftest import pki  # noqa: F401 - the session fixture: a test CA and server.test's certificate

pytestmark = [pytest.mark.root("openssl"), pytest.mark.timeout(180)]


def usernet_get(pair: nn.VethPair, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = pair.usernet_argv("get", "--iface", pair.ifname, "--addr", pair.addr, "--timeout", "20", *args)
    return subprocess.run(argv, capture_output=True, timeout=90, env=nn.python_env())


def test_get_from_python_http_server(veth_pair: nn.VethPair, tmp_path: Path) -> None:
    pair = veth_pair
    data = os.urandom(1_500_000)
    (tmp_path / "file.bin").write_bytes(data)
    server = pair.peer.spawn("python3", "-m", "http.server", "8000", "--bind", pair.peer_ip, "--directory",
                             str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pair.peer.wait_listening(8000)
        out = tmp_path / "got.bin"
        result = usernet_get(pair, "-o", str(out), f"http://{pair.peer_ip}:8000/file.bin")
        assert result.returncode == 0, result.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert result.stderr == b""  # no progress bar: stderr is not a terminal
        missing = usernet_get(pair, f"http://{pair.peer_ip}:8000/missing")
        assert missing.returncode == 22 and b"HTTP 404" in missing.stderr
    finally:
        nn.kill(server)


def test_get_over_https_from_openssl_s_server(veth_pair: nn.VethPair, pki: Any, tmp_path: Path) -> None:  # noqa: F811
    pair = veth_pair
    site = tmp_path / "site"
    site.mkdir()
    page = os.urandom(200_000)
    (site / "page.bin").write_bytes(page)
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{pair.peer_ip} server.test\n")
    server = pair.peer.spawn("openssl", "s_server", "-accept", "4433", "-cert", str(pki.cert), "-key",
                             str(pki.key), "-WWW", cwd=str(site), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        pair.peer.wait_listening(4433)
        url = "https://server.test:4433/page.bin"
        out = tmp_path / "got.bin"
        result = usernet_get(pair, "--hosts", str(hosts), "--cacert", str(pki.ca), "-o", str(out), url)
        assert result.returncode == 0, result.stderr
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(page).digest()
        untrusted = usernet_get(pair, "--hosts", str(hosts), url)  # the system store lacks the test CA
        assert untrusted.returncode == 60, untrusted.stderr
        assert b"certificate not trusted" in untrusted.stderr and untrusted.stderr.count(b"\n") == 1
        assert usernet_get(pair, "--hosts", str(hosts), "--insecure", "-o", str(out), url).returncode == 0
    finally:
        nn.kill(server)
