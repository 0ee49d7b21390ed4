"""host.wrap_tls against a real TLS peer: `openssl s_server -www` in a veth peer namespace."""

from __future__ import annotations

import ssl
import subprocess
from typing import Any

import pytest

import usernet
from tests.realpeer import netns as nn
from usernet.links import Packet

pytestmark = [pytest.mark.root("openssl"), pytest.mark.timeout(120)]


def test_handshake_and_www_page_from_openssl_s_server(veth_pair: nn.VethPair, pki: Any) -> None:
    pair = veth_pair
    server = pair.peer.spawn("openssl", "s_server", "-accept", "4433", "-cert", str(pki.cert), "-key",
                             str(pki.key), "-www", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pair.peer.wait_listening(4433)
        with pair.enter():
            link = Packet(pair.ifname)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(pki.ca)
        with usernet.Host(link, addr=pair.addr) as host:
            sock = host.create_connection((pair.peer_ip, 4433), timeout=20)
            with host.wrap_tls(sock, context, server_hostname="server.test") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
                assert dict(item for rdn in tls.getpeercert()["subject"] for item in rdn)["commonName"] \
                    == "server.test"
                tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
                page = b""
                while data := tls.recv(65536):
                    page += data
        assert page.startswith(b"HTTP/1.0 200 ok"), page[:200]
        assert tls.cipher() is None  # closed
        assert b"Ciphers supported in s_server binary" in page or b"New, " in page
    finally:
        nn.kill(server)
