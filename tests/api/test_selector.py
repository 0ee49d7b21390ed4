"""usernet.api.selector.Selector (no descriptors), and the services dispatched by the runtime
thread."""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time

import pytest

import usernet
from usernet.api.selector import Selector
from usernet.apps.services import serve_simple
from usernet.links.memory import Switch


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.41.0.1/24") as server, \
            usernet.Host(switch.port(), addr="10.41.0.2/24") as client:
        yield server, client


def _connected(server: usernet.Host, client: usernet.Host, port: int = 5000):  # type: ignore[no-untyped-def]
    listener = server.create_server(("", port))
    conn = client.create_connection(("10.41.0.1", port), timeout=5)
    accepted, _ = listener.accept()
    return listener, conn, accepted


def test_level_triggered_read_write_and_modify(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    listener, conn, accepted = _connected(server, client)
    with Selector() as sel:
        key = sel.register(accepted, selectors.EVENT_READ, "data")
        assert key.data == "data" and sel.get_key(accepted) is key
        assert sel.select(0) == []
        conn.sendall(b"hello")
        ready = sel.select(2.0)
        assert [(k.fileobj, mask) for k, mask in ready] == [(accepted, selectors.EVENT_READ)]
        assert sel.select(0), "level-triggered: still readable until read"
        assert accepted.recv(100) == b"hello"
        assert sel.select(0) == []
        sel.modify(accepted, selectors.EVENT_READ | selectors.EVENT_WRITE)
        assert sel.select(0)[0][1] == selectors.EVENT_WRITE
        sel.unregister(accepted)
        assert sel.select(0) == []
        with pytest.raises(KeyError):
            sel.unregister(accepted)
    for sock in (listener, conn, accepted):
        sock.close()


def test_blocking_select_wakes_on_data_and_times_out(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    listener, conn, accepted = _connected(server, client)
    with Selector() as sel:
        sel.register(accepted, selectors.EVENT_READ)
        start = time.monotonic()
        assert sel.select(0.1) == []
        assert time.monotonic() - start >= 0.09
        threading.Timer(0.05, conn.sendall, (b"x",)).start()
        assert sel.select(5.0), "woken by the data"
        # Closing a registered socket drops it from what is ready.
        accepted.close()
        assert sel.select(0) == []
    listener.close()
    conn.close()


def test_refuses_other_objects_and_other_hosts(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    kernel = socket.socket()
    a, b = server.socket(), client.socket()
    with Selector() as sel:
        with pytest.raises(ValueError, match="not a usernet socket"):
            sel.register(kernel, selectors.EVENT_READ)
        sel.register(a, selectors.EVENT_READ)
        with pytest.raises(ValueError, match="one host"):
            sel.register(b, selectors.EVENT_READ)
        with pytest.raises(KeyError):
            sel.register(a, selectors.EVENT_READ)
        with pytest.raises(ValueError):
            sel.modify(a, 0)
    for sock in (kernel, a, b):
        sock.close()


def test_service_reached_over_the_loopback_from_a_user_thread(pair) -> None:  # type: ignore[no-untyped-def]
    # The request arrives in the user's thread (loopback), not in a pass: the runtime thread must
    # be told to dispatch (Host.request_pass).
    server, _ = pair
    serve_simple(server, "echo", 7)
    with server.create_connection(("127.0.0.1", 7), timeout=5) as conn:
        for i in range(50):
            conn.sendall(b"%d" % i)
            assert conn.recv(100) == b"%d" % i


def test_blocked_recv_ends_when_the_host_closes(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    listener, conn, accepted = _connected(server, client)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            accepted.recv(10)
        except OSError as err:
            errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.05)
    server.close()
    thread.join(5)
    assert not thread.is_alive()
    # Closing the host closes its sockets: the blocked call fails as on a descriptor closed under it.
    assert len(errors) == 1 and errors[0].errno in (errno.EBADF, errno.ENETDOWN)
    conn.close()


def test_a_failing_handler_closes_its_socket_and_the_host_goes_on(pair) -> None:  # type: ignore[no-untyped-def]
    server, client = pair
    serve_simple(server, "echo", 7)
    from usernet.apps.services import service_loop

    loop = service_loop(server)

    class Broken:
        def interest(self) -> int:
            return selectors.EVENT_READ

        def on_ready(self, loop, events):  # type: ignore[no-untyped-def]
            raise RuntimeError("handler bug")

    listener, conn, accepted = _connected(server, client)
    loop.register(accepted, Broken())
    conn.sendall(b"boom")
    deadline = time.monotonic() + 5
    while not accepted._released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert accepted._released, "the failing handler's socket is closed"
    with client.create_connection(("10.41.0.1", 7), timeout=5) as other:  # the services go on
        other.sendall(b"still here")
        assert other.recv(100) == b"still here"
    listener.close()
    conn.close()


def test_a_removed_pass_hook_that_had_more_to_do_leaves_the_runtime_asleep(pair) -> None:  # type: ignore[no-untyped-def]
    server, _ = pair

    def busy() -> bool:
        return True  # always more to do: passes follow each other without sleeping

    server.add_pass_hook(busy)
    time.sleep(0.05)
    spinning = server._rx_passes  # type: ignore[attr-defined]
    server.remove_pass_hook(busy)
    time.sleep(0.05)
    before = server._rx_passes  # type: ignore[attr-defined]
    time.sleep(0.3)
    idle = server._rx_passes - before  # type: ignore[attr-defined]
    assert spinning > 100, "the busy hook did keep the runtime from sleeping"
    assert idle < 20, f"{idle} passes in 0.3 s with no hook and no traffic: the runtime spins"
