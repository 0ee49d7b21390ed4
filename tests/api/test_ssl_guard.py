"""Nothing outside usernet may close or adopt a socket's readiness descriptor (issue 9, item 1).

ssl's wrap_socket takes over ``sock.fileno()`` as its own kernel socket and ``detach()``es the
original; on a usernet socket that fd is the readiness socketpair end, so the SSLSocket would
later close it (and whatever file got the number meanwhile) and the host's own close would fail
with EBADF. These tests pin the guard: a clear error at once, and every descriptor untouched.
"""

from __future__ import annotations

import errno
import gc
import os
import select
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

import usernet
from usernet.api.readiness import ReadinessFd
from usernet.links import Switch

A, B = "10.9.0.1", "10.9.0.2"


def fd_table() -> dict[int, str]:
    """Every descriptor of the process and what it refers to."""
    table = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            table[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the directory listing's own descriptor, gone already
    return table


def echo_once(host: usernet.Host, port: int) -> threading.Thread:
    server = host.create_server(("", port))

    def serve() -> None:
        with server:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    while data := conn.recv(65536):
                        conn.sendall(data)
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    a = usernet.Host(switch.port(), addr=f"{A}/24", seed=1)
    b = usernet.Host(switch.port(), addr=f"{B}/24", seed=2)
    with a, b:
        yield a, b


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize("with_readiness_fd", [True, False])
def test_wrap_socket_is_refused_before_any_descriptor_is_touched(with_readiness_fd: bool) -> None:
    switch = Switch()
    a = usernet.Host(switch.port(), addr=f"{A}/24", seed=1)
    b = usernet.Host(switch.port(), addr=f"{B}/24", seed=2)
    a.start()
    b.start()
    try:
        echo_once(b, 443)
        conn = a.create_connection((B, 443), timeout=5)
        if with_readiness_fd:
            conn.fileno()  # as selectors or asyncio would have done already
        before = fd_table()
        with pytest.raises(OSError) as info:
            client_context().wrap_socket(conn, server_hostname="peer")
        assert info.value.errno == errno.EOPNOTSUPP
        message = str(info.value)
        assert "host.wrap_tls" in message and "MemoryBIO" in message and "wrap_bio" in message
        gc.collect()  # an SSLSocket left half-built would close its adopted fd here
        assert fd_table() == before
        # The socket is intact and still usable, select included.
        conn.sendall(b"still here")
        assert select.select([conn], [], [], 5)[0] == [conn]
        assert conn.recv(100) == b"still here"
        conn.close()
    finally:
        a.close()  # before the guard this raised EBADF from the readiness close
        b.close()


def test_the_module_level_wrap_and_a_server_context_are_refused_too(hosts) -> None:
    a, b = hosts
    echo_once(b, 443)
    with a.create_connection((B, 443), timeout=5) as conn:
        conn.fileno()
        before = fd_table()
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with pytest.raises(OSError, match="wrap_bio"):
            server_context.wrap_socket(conn, server_side=True)
        with pytest.raises(OSError, match="wrap_bio"):
            client_context().wrap_socket(conn, do_handshake_on_connect=False)
        gc.collect()
        assert fd_table() == before


def test_detach_refuses_and_hands_out_nothing(hosts) -> None:
    a, b = hosts
    echo_once(b, 7)
    with a.create_connection((B, 7), timeout=5) as conn:
        fd = conn.fileno()
        with pytest.raises(OSError) as info:
            conn.detach()
        assert info.value.errno == errno.EOPNOTSUPP and "dup()" in str(info.value)
        assert conn.fileno() == fd  # still ours, still live
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"


def test_memory_bio_is_the_way(hosts) -> None:
    """What the error message recommends works on a usernet socket (no certificate needed to
    see the handshake's first flight leave and the peer's bytes come back)."""
    a, b = hosts
    echo_once(b, 443)
    with a.create_connection((B, 443), timeout=5) as conn:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context().wrap_bio(incoming, outgoing, server_hostname="peer")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        assert hello[:1] == b"\x16"  # a TLS handshake record
        conn.sendall(hello)
        echoed = b""
        while len(echoed) < len(hello):
            echoed += conn.recv(65536)
        assert echoed == hello


def test_readiness_close_never_closes_a_number_it_no_longer_owns(tmp_path) -> None:
    """Defence in depth: if the readiness fd was closed behind usernet's back and the number
    reused, closing the ReadinessFd must leave the new file alone."""
    readiness = ReadinessFd()
    number = readiness.fileno()
    os.close(number)  # someone else closed it...
    fd = os.open(tmp_path / "other", os.O_CREAT | os.O_RDWR)  # ...and the number came back
    if fd != number:
        os.dup2(fd, number)
        os.close(fd)
        fd = number
    try:
        readiness.close()
        os.write(fd, b"mine")  # still open
        assert os.pread(fd, 4, 0) == b"mine"
    finally:
        os.close(fd)


def test_a_kernel_socket_still_wraps(hosts) -> None:
    """The guard looks at usernet sockets only: ssl on a kernel socket is untouched."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as plain:
        wrapped = client_context().wrap_socket(plain, server_hostname="peer", do_handshake_on_connect=False)
        assert isinstance(wrapped, ssl.SSLSocket)
        wrapped.close()



def anonymous_context(server_side: bool) -> ssl.SSLContext:
    """TLS 1.2 with anonymous ECDH: enough to see the wrapper work, no certificate needed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    if not server_side:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("aNULL:@SECLEVEL=0")
    return context


def tls_echo_once(host: usernet.Host, port: int) -> threading.Thread:
    listener = host.create_server(("", port))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
        try:
            with host.wrap_tls(conn, anonymous_context(True), server_side=True) as tls:
                while data := tls.recv(100):
                    tls.sendall(data)
        except OSError:
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_under_the_patch_wrap_socket_gives_the_tls_wrapper_and_no_descriptor_moves(hosts) -> None:
    """usernet.patched(host): wrap_socket on a usernet socket is host.wrap_tls (nothing adopted,
    nothing closed); after unpatch() the refusal is back."""
    from usernet.api.tls import TlsSocket

    a, b = hosts
    thread = tls_echo_once(b, 443)
    with usernet.patched(a):
        conn = a.create_connection((B, 443), timeout=5)
        fd = conn.fileno()
        before = fd_table()
        tls = anonymous_context(False).wrap_socket(conn, server_hostname="peer", suppress_ragged_eofs=False)
        assert isinstance(tls, TlsSocket) and tls.version() == "TLSv1.2"
        assert tls.suppress_ragged_eofs is False and tls.server_hostname == "peer"
        assert fd_table() == before and tls.fileno() == fd
        tls.sendall(b"through the wrapper")
        assert tls.recv(100) == b"through the wrapper"
        # TLS in TLS goes through the wrapper as well, never through ssl's adoption of fileno()
        inner = client_context().wrap_socket(tls, do_handshake_on_connect=False)
        assert isinstance(inner, TlsSocket) and fd_table() == before
        tls.close()
    thread.join(10)
    echo_once(b, 444)
    with a.create_connection((B, 444), timeout=5) as conn:
        conn.fileno()
        before = fd_table()
        with pytest.raises(OSError) as info:
            client_context().wrap_socket(conn, server_hostname="peer")
        assert info.value.errno == errno.EOPNOTSUPP and "usernet.patched" in str(info.value)
        gc.collect()
        assert fd_table() == before


def test_outside_the_patch_ssl_cannot_adopt_a_tls_wrapper_either(hosts) -> None:
    """ssl.wrap_socket on a TlsSocket (TLS in TLS) would adopt the readiness fd through it."""
    a, b = hosts
    thread = tls_echo_once(b, 443)
    conn = a.create_connection((B, 443), timeout=5)
    with a.wrap_tls(conn, anonymous_context(False)) as tls:
        tls.fileno()
        before = fd_table()
        with pytest.raises(OSError) as info:
            client_context().wrap_socket(tls, server_hostname="inner")
        assert info.value.errno == errno.EOPNOTSUPP
        gc.collect()
        assert fd_table() == before
        tls.sendall(b"intact")
        assert tls.recv(100) == b"intact"
    thread.join(10)
