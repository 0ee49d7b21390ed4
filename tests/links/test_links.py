"""Links and middleware: the in-memory switch, fault injector, pcap writer, tracer, TAP and TUN."""

from __future__ import annotations

import io
import os
import random
import select
import shutil
import subprocess
import threading
import time
import uuid

import pytest

from tests.realpeer.support import need_programs, need_root
from usernet.links import Impair, PcapWriter, Switch, Tap, Tracer, Tun, parse_impair_spec, pipe
from usernet.wire import arp, ethernet, icmp, ipv4, udp

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
MAC_C = bytes.fromhex("020000000003")


def frame(dst: bytes, src: bytes, body: bytes = b"x" * 46) -> bytes:
    return ethernet.build(dst, src, 0x88B5, body)  # local experimental ethertype


def readable(link, timeout: float = 0.0) -> bool:
    return bool(select.select([link.fileno()], [], [], timeout)[0])


# ----------------------------------------------------------------- switch

def test_switch_floods_unknown_then_learns() -> None:
    switch = Switch()
    a, b, c = switch.port(), switch.port(), switch.port()
    a.send(frame(MAC_B, MAC_A))
    assert readable(b) and readable(c) and not readable(a)
    assert len(b.recv_batch()) == 1 and len(c.recv_batch()) == 1
    assert not readable(b)
    b.send(frame(MAC_A, MAC_B))  # b's MAC is learnt; a's is known already
    assert [f for f, _ in a.recv_batch()] == [frame(MAC_A, MAC_B)]
    assert c.recv_batch() == []
    a.send(frame(MAC_B, MAC_A))
    assert len(b.recv_batch()) == 1 and c.recv_batch() == []
    a.send(frame(ethernet.BROADCAST, MAC_A))
    assert len(b.recv_batch()) == 1 and len(c.recv_batch()) == 1
    for port in (a, b, c):
        port.close()


def test_switch_queue_is_bounded() -> None:
    a, b = pipe()
    b.max_queue = 10
    for _ in range(25):
        a.send(frame(MAC_B, MAC_A))
    assert len(b.recv_batch(100)) == 10 and b.rx_dropped == 15


def test_switch_batches_and_keeps_fd_readable_while_frames_wait() -> None:
    a, b = pipe()
    for i in range(100):
        a.send(frame(MAC_B, MAC_A, bytes([i]) * 46))
    first = b.recv_batch(64)
    assert len(first) == 64 and readable(b)
    rest = b.recv_batch(64)
    assert len(rest) == 36 and not readable(b)
    assert [f[14] for f, _ in first + rest] == list(range(100))


def test_switch_delay_and_rate() -> None:
    switch = Switch(delay=0.05, rate_mbps=8.0)  # 1,000-byte frame: 1 ms of wire time
    a, b = switch.port(), switch.port()
    start = time.monotonic()
    for _ in range(10):
        a.send(frame(MAC_B, MAC_A, bytes(986)))
    assert b.recv_batch() == []
    deadline = b.next_deadline()
    assert deadline is not None and 0.045 < deadline - start < 0.06
    got = []
    while len(got) < 10 and time.monotonic() - start < 2:
        select.select([b.fileno()], [], [], max(0.0, (b.next_deadline() or time.monotonic()) - time.monotonic()))
        got += b.recv_batch()
    elapsed = time.monotonic() - start
    assert len(got) == 10 and 0.059 <= elapsed < 0.5  # 50 ms delay + 10 ms of serialisation


def test_switch_is_thread_safe() -> None:
    switch = Switch()
    ports = [switch.port() for _ in range(4)]
    sink = switch.port(mac=MAC_C)
    ports[0].send(frame(MAC_A, MAC_C))  # nothing learnt for MAC_C yet; now teach the switch:
    sink.send(frame(MAC_A, MAC_C))
    for port in [*ports, sink]:
        port.recv_batch(1000)

    def blast(port) -> None:
        for _ in range(500):
            port.send(frame(MAC_C, bytes([2, 0, 0, 0, 1, ports.index(port)])))

    threads = [threading.Thread(target=blast, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    got = 0
    while any(t.is_alive() for t in threads) or readable(sink):
        got += len(sink.recv_batch(1000))
    for t in threads:
        t.join()
    got += len(sink.recv_batch(5000))
    assert got == 2000


# ----------------------------------------------------------------- impair

def test_impair_spec_parser() -> None:
    assert parse_impair_spec("loss=0.05,dup=0.02,reorder=0.05,corrupt=0.01,delay=50,rate=10") == {
        "loss": 0.05, "dup": 0.02, "reorder": 0.05, "corrupt": 0.01, "delay_ms": 50.0, "rate_mbps": 10.0}
    for bad in ["", "loss", "loss=2", "drop=0.1", "delay=-1", "loss=abc", "rate=0"]:
        with pytest.raises(ValueError):
            parse_impair_spec(bad)


def run_impaired(seed: int, n: int = 4000, **kw) -> tuple[list[bytes], Impair]:
    a, b = pipe()
    lossy = Impair(a, seed=seed, **kw)
    for i in range(n):
        lossy.send(frame(MAC_B, MAC_A, i.to_bytes(4, "big") + bytes(42)))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and lossy.next_deadline() is not None:
        time.sleep(0.003)
        lossy.recv_batch()  # flushes due outbound frames
    return [f for f, _ in b.recv_batch(10 * n)], lossy


def test_impair_statistics_and_determinism() -> None:
    got, lossy = run_impaired(7, loss=0.1, dup=0.05, corrupt=0.02)
    assert 0.07 < lossy.counters["lost"] / 4000 < 0.13
    assert 0.03 < lossy.counters["duplicated"] / 4000 < 0.07
    assert 0.01 < lossy.counters["corrupted"] / 4000 < 0.03
    assert len(got) == 4000 - lossy.counters["lost"] + lossy.counters["duplicated"]
    again, lossy2 = run_impaired(7, loss=0.1, dup=0.05, corrupt=0.02)
    assert again == got and lossy2.counters == lossy.counters


def test_impair_reorders() -> None:
    got, lossy = run_impaired(3, n=500, reorder=0.2)
    order = [int.from_bytes(f[14:18], "big") for f in got]
    assert sorted(order) == list(range(500)) and order != list(range(500))
    assert lossy.counters["reordered"] > 50


def test_impair_delays_inbound_frames() -> None:
    a, b = pipe()
    slow = Impair(b, delay_ms=30, seed=1)
    start = time.monotonic()
    a.send(frame(MAC_B, MAC_A))
    assert slow.recv_batch() == []
    assert slow.next_deadline() is not None and slow.next_deadline() - start >= 0.029
    time.sleep(0.035)
    assert len(slow.recv_batch()) == 1


# ----------------------------------------------------------------- pcap and tracer

def sample_frames() -> list[bytes]:
    src, dst = ipv4.addr("10.0.0.1"), ipv4.addr("10.0.0.2")
    return [
        ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, arp.build(1, MAC_A, src, bytes(6), dst)),
        ethernet.build(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4,
                       ipv4.build(src=src, dst=dst, proto=1, payload=icmp.build_echo(False, 1, 2, b"abc"), ident=1)),
        ethernet.build(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4,
                       ipv4.build(src=src, dst=dst, proto=17, payload=udp.build(src, dst, 5000, 6000, b"hi"), ident=2)),
    ]


def test_pcap_read_back_by_scapy_and_tshark(tmp_path) -> None:
    from scapy.all import rdpcap

    path = str(tmp_path / "cap.pcap")
    a, b = pipe()
    writer = PcapWriter(a, path)
    for f in sample_frames():
        writer.send(f)
    b.send(sample_frames()[1])
    writer.recv_batch()
    writer.close()
    packets = rdpcap(path)
    assert [bytes(p) for p in packets] == sample_frames() + [sample_frames()[1]]
    if shutil.which("tshark") is None:
        need_programs("tshark")
    out = subprocess.run(["tshark", "-n", "-r", path], capture_output=True, text=True, timeout=60).stdout
    assert len(out.strip().splitlines()) == 4 and "Malformed" not in out
    assert "ARP" in out and "Echo (ping) request" in out and "UDP" in out


def test_tracer_lines() -> None:
    out = io.StringIO()
    a, _ = pipe()
    tracer = Tracer(a, out=out)
    for f in sample_frames():
        tracer.send(f)
    lines = out.getvalue().splitlines()
    assert "ARP who-has 10.0.0.2 tell 10.0.0.1" in lines[0]
    assert "IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 1 seq 2, length 11" in lines[1]
    assert "IP 10.0.0.1.5000 > 10.0.0.2.6000: UDP length 2" in lines[2]
    assert all(line.split(" ")[2] == ">" for line in lines)


def test_tracer_verbose_and_garbage() -> None:
    out = io.StringIO()
    a, _ = pipe()
    tracer = Tracer(a, out=out, verbose=True)
    tracer.send(sample_frames()[2])
    assert "  ip: ttl 64" in out.getvalue() and "  udp: sport 5000 dport 6000" in out.getvalue()
    rng = random.Random(1)
    for _ in range(2000):
        tracer.send(rng.randbytes(rng.randrange(0, 80)))  # must never raise


# ----------------------------------------------------------------- TAP and TUN (root)

@pytest.fixture
def netns():
    need_root()
    need_programs("ip")
    name = f"un-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in_netns(name: str, fn):
    """Run fn in a thread that has entered the namespace (setns affects only the calling thread)."""
    import ctypes

    result: dict = {}

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            result["value"] = fn()
        except BaseException as err:  # re-raised in the caller
            result["error"] = err

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.root
def test_tap_exchanges_arp_with_the_kernel(netns) -> None:
    def body() -> bytes:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        with Tap("uttap0") as tap:
            subprocess.run(["ip", "addr", "add", "10.99.0.1/24", "dev", "uttap0"], check=True)
            request = arp.build(arp.OP_REQUEST, tap.mac, ipv4.addr("10.99.0.2"), bytes(6), ipv4.addr("10.99.0.1"))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                tap.send(ethernet.build(ethernet.BROADCAST, tap.mac, ethernet.ETHERTYPE_ARP, request))
                select.select([tap], [], [], 0.2)
                for f, _ in tap.recv_batch():
                    _, _, etype, off = ethernet.parse(f)
                    if etype == ethernet.ETHERTYPE_ARP and arp.parse(f, off).op == arp.OP_REPLY:
                        return arp.parse(f, off).sender_mac
            raise AssertionError("no ARP reply from the kernel")

    kernel_mac = _in_netns(netns, body)
    assert len(kernel_mac) == 6


@pytest.mark.root
def test_tun_exchanges_ping_with_the_kernel(netns) -> None:
    def body() -> tuple[int, bytes]:
        with Tun("uttun0") as tun:
            assert tun.layer == 3 and tun.mac is None
            subprocess.run(["ip", "addr", "add", "10.98.0.1/24", "dev", "uttun0"], check=True)
            request = ipv4.build(src=ipv4.addr("10.98.0.2"), dst=ipv4.addr("10.98.0.1"), proto=1,
                                 payload=icmp.build_echo(False, 9, 1, b"over tun"), ident=5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                tun.send(request)
                select.select([tun], [], [], 0.2)
                for packet, _ in tun.recv_batch():
                    header = ipv4.parse(packet)
                    if header.proto == 1:
                        message = icmp.parse(header.payload)
                        return message.type, bytes(message.body)
            raise AssertionError("no echo reply from the kernel")

    assert _in_netns(netns, body) == (icmp.ECHO_REPLY, b"over tun")


def test_tap_error_is_clear_without_privileges(monkeypatch) -> None:
    if os.geteuid() == 0 and os.path.exists("/dev/net/tun"):
        with pytest.raises(OSError) as info:
            Tap("x" * 20)
        assert "longer than 15" in str(info.value)
    else:
        with pytest.raises(OSError):
            Tap("uttap9")
