"""HTTPS serving: --serve https:PORT:DIR,cert=,key= and wsgi:...,cert=,key= over host.wrap_tls."""

from __future__ import annotations

import http.client
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

import usernet
from usernet.apps.http import parse_spec, start_spec
from usernet.links.memory import Switch

from .test_tls import A, B, client_context


class Client(http.client.HTTPSConnection):
    usernet_host: Any = None

    def connect(self) -> None:
        raw = self.usernet_host.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock = self.usernet_host.wrap_tls(raw, self._context, server_hostname="server.test")


def test_static_files_over_https_and_plain_text_is_refused(pki: Any, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hello over TLS\n")
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24") as a, usernet.Host(switch.port(), addr=f"{B}/24") as b:
        kind, port, rest = parse_spec(f"https:8443:{tmp_path},cert={pki.cert},key={pki.key}")
        server = start_spec(b, kind, port, rest)
        # A client speaking plain HTTP to the TLS port is dropped; the server goes on serving.
        with a.create_connection((B, 8443), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = plain.recv(100)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")  # no plain-text answer: a TLS alert at most
        time.sleep(0.1)
        Client.usernet_host = a
        conn = Client(B, 8443, context=client_context(pki), timeout=5)
        for _ in range(2):  # keep-alive over one TLS session
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"hello over TLS\n"
        conn.close()
        assert server.counters["http.tls_failed"] >= 1
        server.close()


def test_wsgi_over_https(pki: Any) -> None:
    import sys
    import types

    module = types.ModuleType("usernet_test_tls_app")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"scheme " + environ["wsgi.url_scheme"].encode()]

    module.app = app  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    switch = Switch()
    try:
        with usernet.Host(switch.port(), addr=f"{A}/24") as a, usernet.Host(switch.port(), addr=f"{B}/24") as b:
            kind, port, rest = parse_spec(f"wsgi:8444:{module.__name__}:app,cert={pki.cert},key={pki.key}")
            server = start_spec(b, kind, port, rest)
            Client.usernet_host = a
            conn = Client(B, 8444, context=client_context(pki), timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"scheme https"
            conn.close()
            server.close()
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize("spec, message", [
    ("https:8443:.", "TLS needs cert=PEM and key=PEM"),
    ("http:8080:.,cert=/nonexistent,key=/nonexistent", "/nonexistent: no such file"),
    ("https:8443:.,cert=a", "TLS needs cert=PEM and key=PEM"),
    ("https:8443:.,bogus=1", "unknown option"),
])
def test_bad_tls_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_ssl_module_is_used_for_the_context(pki: Any) -> None:
    from usernet.apps.http import server_context

    assert isinstance(server_context(str(pki.cert), str(pki.key)), ssl.SSLContext)
