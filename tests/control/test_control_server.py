"""The control socket (usernet.control) of a host on the in-memory network: every command, bad
requests, slow and vanishing clients, permissions, stale and live socket files."""

from __future__ import annotations

import argparse
import base64
import errno
import json
import os
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import usernet
from usernet import cli_control
from usernet.control import (
    MAX_REQUEST,
    ControlClient,
    ControlError,
    ControlServer,
    compile_filter,
    peer_allowed,
    peer_credentials,
)
from usernet.links.memory import Switch
from usernet.links.trace import TraceFormatter

A, B = "10.9.0.1", "10.9.0.2"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[usernet.Host, usernet.Host, ControlServer]]:
    switch = Switch()
    a = usernet.Host(switch.port(), addr=f"{A}/24", name="alpha")
    b = usernet.Host(switch.port(), addr=f"{B}/24", name="beta")
    with a, b:
        server = ControlServer(a, tmp_path / "alpha.sock")
        server.start()
        a.add_service(server.stop)
        yield a, b, server


def _echo(host: usernet.Host, port: int) -> None:
    listener = host.create_server((host.address, port))

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()


def _raw(server: ControlServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(server.path)
    return sock


def _lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
    buf = b""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)
        data = sock.recv(65536)
        if not data:
            return
        buf += data


def _ss_args(**flags: bool) -> argparse.Namespace:
    values = {"tcp": False, "udp": False, "listening": False, "all": False, "info": False}
    values.update(flags)
    return argparse.Namespace(**values)


# ----------------------------------------------------------------- commands

def test_ss_shows_a_connection_with_its_tcp_internals(net: tuple[usernet.Host, usernet.Host, ControlServer]) -> None:
    a, b, server = net
    _echo(b, 7007)
    listener = a.create_server((A, 8008))
    udp = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((A, 5353))
    with listener, udp, a.create_connection((B, 7007), timeout=5) as conn:
        conn.sendall(b"x" * 100_000)
        got = 0
        while got < 100_000:
            got += len(conn.recv(65536))
        with ControlClient(server.path) as client:
            rows = client.request("ss")
        local = f"{A}:{conn.getsockname()[1]}"
        [row] = [r for r in rows if r["local"] == local]
        assert row["netid"] == "tcp" and row["state"] == "ESTAB" and row["peer"] == f"{B}:7007"
        info = row["info"]
        assert info["cwnd"] >= 10 and info["mss"] == 1460 - 12  # timestamps take 12 bytes
        assert info["srtt_ms"] is not None and info["rto_ms"] >= 200 and info["sack"] and info["timestamps"]
        assert info["bytes_acked"] == 100_000 and info["bytes_received"] == 100_000
        assert {"ssthresh", "rttvar_ms", "retransmits", "total_retrans", "sack_acks", "dsack_dups",
                "snd_wscale", "rcv_wscale"} <= set(info)
        assert any(r["state"] == "LISTEN" and r["local"] == f"{A}:8008" for r in rows)
        assert any(r["netid"] == "udp" and r["state"] == "UNCONN" and r["local"] == f"{A}:5353" for r in rows)

        text = "\n".join(cli_control.format_ss(rows, _ss_args(tcp=True, info=True)))
        assert text.splitlines()[0].split()[:4] == ["Netid", "State", "Recv-Q", "Send-Q"]
        assert "ESTAB" in text and f"{B}:7007" in text and "cwnd:" in text and "rtt:" in text
        assert "LISTEN" not in text and "udp" not in text  # no -l/-a, no -u
        listening = "\n".join(cli_control.format_ss(rows, _ss_args(listening=True)))
        assert f"{A}:8008" in listening and f"{A}:5353" in listening and "ESTAB" not in listening


def test_neigh_route_addr_stats_info(net: tuple[usernet.Host, usernet.Host, ControlServer]) -> None:
    a, b, server = net
    assert a.ping(B, count=2, interval=0.05)[0] is not None
    with ControlClient(server.path) as client:  # several requests on one connection
        neigh = client.request("neigh")
        routes = client.request("route")
        addrs = client.request("addr")
        stats = client.request("stats")
        info = client.request("info")
    assert [row["address"] for row in neigh] == [B] and neigh[0]["mac"] == b.mac
    assert cli_control.format_neigh(neigh) == [f"{B} dev {a.stack.primary.name} lladdr {b.mac} REACHABLE"]
    assert f"10.9.0.0/24 dev {a.stack.primary.name} proto kernel scope link src {A}" in cli_control.format_route(routes)
    addr_text = "\n".join(cli_control.format_addr(addrs))
    assert "1: lo: <LOOPBACK,UP> mtu 65536" in addr_text and f"inet {A}/24 scope global" in addr_text
    assert stats["icmp.echo_replies_rx"] if "icmp.echo_replies_rx" in stats else stats["ipv4.rx"] >= 2
    assert stats["control.requests"] >= 4
    assert "ipv4:" in cli_control.format_stats(stats)
    assert info["name"] == "alpha" and info["pid"] == os.getpid() and info["addresses"] == [f"{A}/24"]


# ----------------------------------------------------------------- bad requests

def test_malformed_unknown_and_oversized_requests_get_errors(
        net: tuple[usernet.Host, usernet.Host, ControlServer]) -> None:
    a, _, server = net
    with _raw(server) as sock:
        replies = _lines(sock)
        for bad in (b"this is not json\n", b"[1, 2]\n", b'{"cmd": 3}\n', b"\xff\xfe\n", b'{"cmd": "reboot"}\n'):
            sock.sendall(bad)
            reply = next(replies)
            assert reply["ok"] is False and reply["error"], bad
        assert "unknown command" in reply["error"] and "ss" in reply["error"]
        sock.sendall(b'{"cmd": "info"}\n')  # the connection still serves
        assert next(replies)["result"]["name"] == "alpha"
    with _raw(server) as sock:
        sock.sendall(b"{" + b" " * (MAX_REQUEST + 100))
        replies = _lines(sock)
        assert "longer than" in next(replies)["error"]
        try:  # and the server closed the connection (a reset: our unread excess was discarded)
            assert list(replies) == []
        except ConnectionResetError:
            pass
    with ControlClient(server.path) as client:
        assert client.request("info")["name"] == "alpha"
        with pytest.raises(ControlError, match="unknown command"):
            client.request("nope")
    assert a.counters["control.bad_requests"] == 7


def test_clients_vanishing_mid_reply_are_harmless(net: tuple[usernet.Host, usernet.Host, ControlServer]) -> None:
    a, b, server = net
    for _ in range(20):
        sock = _raw(server)
        sock.sendall(b'{"cmd": "ss"}\n{"cmd": "stats"}\n{"cmd": "addr"}\n')
        sock.close()  # before reading a byte
    streams = []
    for _ in range(3):
        sock = _raw(server)
        sock.sendall(b'{"cmd": "tcpdump"}\n')
        assert next(_lines(sock))["ok"]
        streams.append(sock)
    assert a.ping(B, count=3, interval=0.02)[-1] is not None
    for sock in streams:
        sock.close()  # mid-stream
    assert a.ping(B, count=2, interval=0.02)[-1] is not None
    with ControlClient(server.path) as client:
        assert client.request("info")["name"] == "alpha"
    deadline = time.monotonic() + 5
    while (server._subscribers or a._taps) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server._subscribers and not a._taps  # unsubscribed: the links are bare again
    assert all(type(link).__name__ != "TapLink" for _, link in a._links)


# ----------------------------------------------------------------- tcpdump

def test_tcpdump_streams_every_frame_through_a_filter(net: tuple[usernet.Host, usernet.Host, ControlServer]) -> None:
    a, b, server = net
    client = ControlClient(server.path)
    start = client.request("tcpdump", filter=["icmp", "and", "host", B])
    assert start["layer"] == 2 and start["interface"] == a.stack.primary.name
    assert a.ping(B, count=3, interval=0.02)[-1] is not None
    stream = client.stream()
    frames = [next(stream) for _ in range(6)]
    client.close()
    formatter = TraceFormatter()
    summaries = [(f["dir"], formatter.lines(base64.b64decode(f["frame"]), f["layer"])[0]) for f in frames]
    assert [d for d, _ in summaries] == [">", "<"] * 3
    assert all("ICMP echo" in s for _, s in summaries), summaries  # no ARP: the filter held it back


def test_a_slow_tcpdump_reader_loses_frames_and_is_told(tmp_path: Path) -> None:
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24") as a, usernet.Host(switch.port(), addr=f"{B}/24") as b:
        sink = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind((B, 9))
        with ControlServer(a, tmp_path / "a.sock", tap_queue=8, stream_high_water=4096) as server:
            sock = _raw(server)
            sock.sendall(b'{"cmd": "tcpdump", "filter": ["udp"]}\n')
            sender = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
            payload = b"z" * 1400
            deadline = time.monotonic() + 20
            while not a.counters.get("control.tap_dropped", 0) and time.monotonic() < deadline:
                for _ in range(200):
                    sender.sendto(payload, (B, 9))  # nobody reads the stream meanwhile
            dropped = a.counters.get("control.tap_dropped", 0)
            assert dropped > 0
            frames = 0
            for message in _lines(sock):
                if "dropped" in message:
                    assert message["dropped"] > 0
                    break
                if "frame" in message:
                    frames += 1
            else:
                raise AssertionError("no dropped report")
            sock.close()
            sender.close()
            assert frames > 0
        sink.close()


# ----------------------------------------------------------------- permissions

def test_the_credential_check() -> None:
    assert peer_allowed(1000, own_uid=1000) and peer_allowed(0, own_uid=1000)
    assert not peer_allowed(65534, own_uid=1000) and not peer_allowed(1001, own_uid=0)
    left, right = socket.socketpair()
    with left, right:
        assert peer_credentials(left) == (os.getpid(), os.geteuid(), os.getegid())


def _as_nobody(path: str) -> tuple[str, str]:
    """Connect to *path* from a child that dropped to uid/gid 65534; ("ok", reply) or ("error", errno name)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: syscalls only, then _exit
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(path)
                reply = sock.recv(4096)  # the refusal comes unasked, at accept
                rest = sock.recv(4096)  # then the end of the connection
                result = "ok " + (reply + rest).decode()
            except OSError as err:
                result = "error " + errno.errorcode.get(err.errno or 0, str(err))
            os.write(write_end, result.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    kind, _, detail = text.partition(" ")
    return kind, detail


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_another_user_is_refused() -> None:
    directory = tempfile.mkdtemp(prefix="usernet-control-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "h.sock")
    try:
        with usernet.Host(Switch().port(), addr=f"{A}/24") as host, ControlServer(host, path) as server:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert _as_nobody(path) == ("error", "EACCES")  # the file mode stops it first
            os.chmod(path, 0o666)  # past the file mode: the credential check must stop it
            kind, detail = _as_nobody(path)
            assert kind == "ok"
            [line] = detail.strip().splitlines()
            reply = json.loads(line)
            assert reply["ok"] is False and "permission denied: uid 65534" in reply["error"]
            assert host.counters["control.refused"] == 1
            with ControlClient(server.path) as client:  # root still gets in
                assert client.request("info")["uid"] == 0
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


# ----------------------------------------------------------------- the socket file

def test_a_stale_socket_is_replaced_a_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    with usernet.Host(Switch().port(), addr=f"{A}/24") as host:
        with ControlServer(host, path) as server:
            assert ControlClient(path).request("info")["path"] == path
            second = ControlServer(host, path)
            with pytest.raises(ControlError) as caught:
                second.start()
            assert caught.value.errno == errno.EADDRINUSE
            assert ControlClient(path).request("info")["name"] == host.name  # the first still serves
            server.stop()
            server.stop()  # idempotent
            assert not os.path.exists(path)  # removed on stop
        Path(path).write_text("not a socket")
        with pytest.raises(ControlError) as caught:
            ControlServer(host, path).start()
        assert caught.value.errno == errno.EEXIST
        with pytest.raises(ControlError) as caught:
            ControlServer(host, tmp_path / "missing" / "h.sock").start()
        assert caught.value.errno == errno.ENOENT


# ----------------------------------------------------------------- filters

def _frame(proto: int, src: str, dst: str, sport: int = 0, dport: int = 0) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x02" * 12 + b"\x08\x00" + ip + struct.pack("!HHHH", sport, dport, 8, 0)


def test_filters() -> None:
    udp = _frame(17, A, B, 5000, 53)
    tcp = _frame(6, B, A, 80, 40000)
    icmp = _frame(1, A, B)
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, b"\x02" * 6,
                                                                 socket.inet_aton(A), bytes(6), socket.inet_aton(B))
    cases = {"udp": [udp], "tcp port 80": [tcp], "port 53 or icmp": [udp, icmp], "not ip": [arp],
             f"host {B}": [udp, tcp, icmp, arp], f"src host {A} and not arp": [udp, icmp],
             "dst port 40000": [tcp], "(tcp || udp) && ! port 53": [tcp], "arp": [arp], "": [udp, tcp, icmp, arp]}
    for text, expected in cases.items():
        predicate = compile_filter(text.split())
        matched = [f for f in (udp, tcp, icmp, arp) if predicate is None or predicate(f, 2)]
        assert matched == expected, text
    assert compile_filter(["udp"])(udp[14:], 3)  # type: ignore[misc]  # a TUN packet
    for bad in ("host", "port x", "host 1.2.3", "frobnicate", "( tcp", "tcp )", "src tcp"):
        with pytest.raises(ValueError):
            compile_filter(bad.split())
