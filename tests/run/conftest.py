"""Certificates for the `usernet run` TLS tests: a throwaway CA, a server certificate it signs for the
names and addresses these tests use, and a self-signed one no test trusts (made with the openssl
command line, once per session)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.realpeer import netns as nn

# peer.test: the in-memory far end (10.7.0.2); linux.test: the kernel over veth (10.77.0.1)
SERVER_NAMES = "DNS:peer.test,DNS:linux.test,DNS:usernet.test,IP:10.7.0.1,IP:10.7.0.2,IP:10.77.0.1,IP:10.77.0.2"


class RunPki(NamedTuple):
    ca: Path           # trust this
    cert: Path         # signed by ca, for every name in SERVER_NAMES
    key: Path
    rogue_cert: Path   # self-signed, same names: verification must fail
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def run_pki(tmp_path_factory: pytest.TempPathFactory) -> RunPki:
    nn.need_program("openssl")
    d = tmp_path_factory.mktemp("runpki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    (d / "server.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  f"extendedKeyUsage=serverAuth\nsubjectAltName={SERVER_NAMES}\n"
                                  "authorityKeyIdentifier=keyid\n")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=usernet run CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=peer.test", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    _openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=peer.test",
             "-addext", f"subjectAltName={SERVER_NAMES}", cwd=d)
    return RunPki(d / "ca.pem", d / "server.pem", d / "server.key", d / "rogue.pem", d / "rogue.key")
