"""Kernel socket filters (usernet.links.bpf): the programs' verdicts, interpreted here and on a real
AF_PACKET socket, and the overload policy that switches them."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest

from tests.realpeer import netns as nn
from usernet.api.shedding import LoadShedding
from usernet.links import bpf
from usernet.stack.core import Stack
from usernet.wire import ethernet, ipv4
from usernet.wire import tcp as tcpwire

OUR_MAC = bytes.fromhex("02000000aa02")
PEER_MAC = bytes.fromhex("02000000aa01")
OTHER_MAC = bytes.fromhex("02000000aa99")
OUR_IP, PEER_IP = ipv4.addr("10.0.0.2"), ipv4.addr("10.0.0.1")


def ip_frame(payload: bytes, proto: int = ipv4.PROTO_TCP, dst_mac: bytes = OUR_MAC, flags_frag: int = 0,
             first_byte: int | None = None) -> bytes:
    packet = bytearray(20 + len(payload))
    ipv4.write_header(packet, 0, src=PEER_IP, dst=OUR_IP, proto=proto, payload_len=len(payload), ident=7,
                      flags_frag=flags_frag)
    packet[20:] = payload
    if first_byte is not None:
        packet[0] = first_byte
    return ethernet.build(dst_mac, PEER_MAC, ethernet.ETHERTYPE_IPV4, bytes(packet))


def tcp_frame(flags: int, **kw: Any) -> bytes:
    return ip_frame(bytes(tcpwire.build(PEER_IP, OUR_IP, 40000, 80, 1, 0, flags, 1000)), **kw)


SYN = tcp_frame(tcpwire.SYN)
ARP = ethernet.build(ethernet.BROADCAST, PEER_MAC, ethernet.ETHERTYPE_ARP, bytes(28))


def kept(program: list[bpf.Insn], frame: bytes, random_value: int = 0) -> bool:
    return bpf.run(program, frame, random_value) == len(frame)


def test_base_filter_keeps_ours_and_group_frames_and_drops_the_rest() -> None:
    base = bpf.frame_filter(OUR_MAC)
    assert kept(base, SYN) and kept(base, ARP)
    assert kept(base, ethernet.build(ethernet.BROADCAST, PEER_MAC, ethernet.ETHERTYPE_IPV4, bytes(40)))
    assert kept(base, ethernet.build(bytes.fromhex("01005e000001"), PEER_MAC, ethernet.ETHERTYPE_IPV4, bytes(40)))
    assert not kept(base, tcp_frame(tcpwire.SYN, dst_mac=OTHER_MAC))  # another host's unicast MAC
    assert not kept(base, ethernet.build(OUR_MAC, PEER_MAC, 0x88B5, bytes(46)))  # an EtherType we do not speak
    assert not kept(base, ethernet.build(OUR_MAC, PEER_MAC, 0x86DD, bytes(46)))  # IPv6
    assert not kept(base, SYN[:10])  # shorter than an Ethernet header
    # Same last four bytes, different first two: both halves of the MAC are compared.
    assert not kept(base, tcp_frame(tcpwire.SYN, dst_mac=bytes.fromhex("04000000aa02")))
    # Promiscuous links keep every destination.
    assert kept(bpf.frame_filter(OUR_MAC, promisc=True), tcp_frame(tcpwire.SYN, dst_mac=OTHER_MAC))
    # The base filter passes malformed IPv4 on: the stack drops and counts it.
    assert kept(base, tcp_frame(tcpwire.SYN, first_byte=0x55))


def test_overload_filter_drops_unparseable_ipv4_and_sheds_pure_syns() -> None:
    shed_all = bpf.frame_filter(OUR_MAC, overload=True, syn_keep=0.0)
    assert not kept(shed_all, tcp_frame(tcpwire.SYN, first_byte=0x55))  # version 5
    assert not kept(shed_all, tcp_frame(tcpwire.SYN, first_byte=0x43))  # header length 12
    assert not kept(shed_all, SYN)
    truncated = bytearray(SYN)
    truncated[16:18] = (len(SYN) - 14 + 1).to_bytes(2, "big")  # one byte more than the frame holds
    assert not kept(shed_all, bytes(truncated))
    assert kept(shed_all, SYN + bytes(6), random_value=0) is False  # padding is fine (still a SYN: shed)
    assert kept(bpf.frame_filter(OUR_MAC, overload=True), SYN + bytes(6))
    assert not kept(shed_all, ARP[:30])
    for flags in (tcpwire.SYN | tcpwire.ACK, tcpwire.ACK, tcpwire.RST, tcpwire.FIN | tcpwire.ACK,
                  tcpwire.ACK | tcpwire.PSH, tcpwire.SYN | tcpwire.RST):
        assert kept(shed_all, tcp_frame(flags)), flags
    assert kept(shed_all, ARP)
    assert kept(shed_all, ip_frame(bytes(16), proto=ipv4.PROTO_ICMP))
    assert kept(shed_all, ip_frame(bytes(16), proto=ipv4.PROTO_UDP))
    # A later fragment carries no TCP header: its first bytes are data, never read as flags.
    assert kept(shed_all, ip_frame(bytes(tcpwire.build(PEER_IP, OUR_IP, 1, 2, 3, 0, tcpwire.SYN, 9)),
                                   flags_frag=185))
    # The SYN share: a SYN is kept when the kernel's random number is below the threshold.
    half = bpf.frame_filter(OUR_MAC, overload=True, syn_keep=0.5)
    assert kept(half, SYN, random_value=0x7FFFFFFF)
    assert not kept(half, SYN, random_value=0x80000000)
    everything = bpf.frame_filter(OUR_MAC, overload=True, syn_keep=1.0)
    assert kept(everything, SYN, random_value=0xFFFFFFFF)
    assert bpf.syn_threshold(0.25) == 0x40000000 and bpf.syn_threshold(2.0) == 0xFFFFFFFF


def test_tcp_header_found_after_ip_options() -> None:
    segment = bytes(tcpwire.build(PEER_IP, OUR_IP, 40000, 80, 1, 0, tcpwire.SYN | tcpwire.ACK, 1000))
    header = bytearray(20)
    ipv4.write_header(header, 0, src=PEER_IP, dst=OUR_IP, proto=ipv4.PROTO_TCP, payload_len=len(segment) + 4,
                      ident=1)
    header[0] = 0x46  # six words: four bytes of options (NOPs, EOL); the filter does not check sums
    packet = bytes(header) + b"\x01\x01\x01\x00" + segment
    frame = ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_IPV4, bytes(packet))
    # Byte 13 of an option-less header would be the sequence number's zero byte; with the IHL of
    # 6 words the filter reads the real flags (SYN|ACK) and keeps the segment.
    assert kept(bpf.frame_filter(OUR_MAC, overload=True, syn_keep=0.0), frame)


def test_overload_control_decreases_on_drops_and_recovers() -> None:
    control = bpf.OverloadControl()
    assert not control.update(kernel_drops=0, queue_fill=0.0, frames=100, syns=0)
    assert not control.engaged
    # Drops with SYNs the majority: engaged, the share cut multiplicatively each interval.
    assert control.update(kernel_drops=500, queue_fill=1.0, frames=1000, syns=900)
    assert control.engaged and control.syn_keep == pytest.approx(bpf.OverloadControl.DECREASE)
    for _ in range(100):
        control.update(0, 0.5, 1000, 900)  # a long queue alone is overload
    assert control.syn_keep == bpf.OverloadControl.MIN_KEEP  # bounded below: some SYNs always pass
    # Quiet intervals: additive increase back to a full share, then the base filter after the calm.
    steps = 0
    while control.engaged:
        control.update(0, 0.01, 1000, 900)
        steps += 1
    assert control.syn_keep == 1.0
    assert steps == round(1 / bpf.OverloadControl.INCREASE) + bpf.OverloadControl.CALM_INTERVALS - 1
    assert control.engagements == 1


def test_overload_without_a_syn_majority_keeps_every_syn() -> None:
    control = bpf.OverloadControl()
    assert control.update(kernel_drops=10, queue_fill=0.0, frames=1000, syns=100)  # a flood of something else
    assert control.engaged and control.syn_keep == 1.0


class FakeDevice:
    name = "fake0"

    def __init__(self) -> None:
        self.installed: list[tuple[bool, float]] = []
        self.drops = 0
        self.mac: bytes | None = None

    def install_filter(self, mac: bytes) -> None:
        self.mac = mac

    def kernel_drops(self) -> int:
        drops, self.drops = self.drops, 0
        return drops

    def queue_fill(self) -> float:
        return 0.0

    def set_overload(self, engaged: bool, syn_keep: float, admitted: Any = (), frag_keep: float = 1.0) -> None:
        self.installed.append((engaged, syn_keep))


class Wrapped:
    def __init__(self, inner: Any) -> None:
        self.inner = inner


def test_load_shedding_feeds_the_policy_and_counts() -> None:
    stack = Stack(mac=OUR_MAC, addr="10.0.0.2/24")
    device = FakeDevice()
    shedding = LoadShedding(stack)
    shedding.add(stack.primary, Wrapped(Wrapped(device)))  # found under the middleware
    assert device.mac == OUR_MAC
    stack.tcp.listen(0, 80, 1)
    for _ in range(50):
        stack.receive(SYN, 1.0)
    stack.primary.stats["rx_packets"] += 50
    device.drops = 70
    shedding.tick(1.0)
    assert device.installed == [(True, pytest.approx(bpf.OverloadControl.DECREASE))]
    counters = stack.all_counters()
    assert counters["link.kernel_dropped"] == 70 and counters["link.overload_engaged"] == 1
    shedding.tick(1.01)  # before the interval is over: nothing read, nothing changed
    assert len(device.installed) == 1


@pytest.mark.root
def test_the_kernel_runs_the_programs_as_interpreted() -> None:
    """Attach each program to an AF_PACKET socket on a veth end and send frames out of that end:
    a packet socket sees its interface's outgoing frames too, through the same filter."""
    nn.need_root()
    pair, owned = nn.create_veth_pair()
    try:
        def receive_side() -> dict[str, int]:
            rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            try:
                rx.bind((pair.ifname, 0))
                rx.setblocking(False)
                mac = bytes.fromhex(pair.mac.replace(":", ""))
                syn = tcp_frame(tcpwire.SYN, dst_mac=mac)
                cases = {
                    "base": (bpf.frame_filter(mac),
                             [syn, ARP, tcp_frame(tcpwire.SYN, dst_mac=mac, first_byte=0x55)],
                             [tcp_frame(tcpwire.SYN, dst_mac=OTHER_MAC), ethernet.build(mac, PEER_MAC, 0x88B5,
                                                                                         bytes(46))]),
                    "shed": (bpf.frame_filter(mac, overload=True, syn_keep=0.0),
                             [tcp_frame(tcpwire.ACK, dst_mac=mac), ARP],
                             [syn, tcp_frame(tcpwire.SYN, dst_mac=mac, first_byte=0x43)]),
                    "half": (bpf.frame_filter(mac, overload=True, syn_keep=0.5), [], [syn] * 400),
                }
                results: dict[str, int] = {}
                for name, (program, good, bad) in cases.items():
                    bpf.attach(rx, program)
                    _drain(rx)
                    for frame in [*bad, *good]:
                        tx.sendto(frame, (pair.ifname, 0))
                    marker = b"usernet-bpf-" + name.encode()
                    tx.sendto(tcp_frame(tcpwire.ACK, dst_mac=mac) + marker, (pair.ifname, 0))
                    results[name] = _count_until(rx, marker) - 1
                return results
            finally:
                rx.close()
                tx.close()

        assert pair.ns is not None
        results = pair.ns.call(receive_side)
    finally:
        nn.close_veth(owned, None)
    assert results["base"] == 3  # ours, ARP, and version 5 (the stack drops and counts that one)
    assert results["shed"] == 2
    assert 100 <= results["half"] <= 300


def _drain(sock: socket.socket) -> None:
    try:
        while True:
            sock.recv(65536)
    except BlockingIOError:
        pass


def _count_until(sock: socket.socket, marker: bytes, timeout: float = 3.0) -> int:
    count = 0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            frame = sock.recv(65536)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        count += 1
        if frame.endswith(marker):
            return count
    raise AssertionError(f"marker {marker!r} never arrived ({count} frames)")


def test_programs_encode_to_kernel_layout() -> None:
    program = bpf.frame_filter(OUR_MAC, overload=True, syn_keep=0.5)
    code = bpf.encode(program)
    assert len(code) == 8 * len(program)
    assert struct.unpack_from("HBBI", code, len(code) - 8) == (0x06, 0, 0, 0)  # ret #0 (drop) last


def test_syns_of_admitted_sources_are_never_shed() -> None:
    program = bpf.frame_filter(OUR_MAC, overload=True, syn_keep=0.0, admitted=[ipv4.addr("10.9.9.9"), PEER_IP])
    assert kept(program, SYN)  # from PEER_IP
    other = bytearray(SYN)
    other[26:30] = ipv4.addr("10.9.9.8").to_bytes(4, "big")
    assert not kept(program, bytes(other))
    # At most MAX_ADMITTED compared; the program stays within the kernel's jump range.
    many = bpf.frame_filter(OUR_MAC, overload=True, syn_keep=0.5, admitted=range(1, 1000))
    assert len(many) < 80


def test_completed_handshakes_validate_their_peer_bounded() -> None:
    from tests.stack.test_stack import pair  # two stacks on an in-memory wire

    a, b, net = pair()
    listener = b.tcp.listen(0, 80, 8)
    conn = a.tcp.connect(a.addr, 0, b.addr, 80, net.now)
    net.exchange()
    assert conn.state == "ESTABLISHED" and listener.accept_queue
    assert list(b.tcp.validated_peers) == [a.addr]
    assert not a.tcp.validated_peers  # active opens validate nobody: we sent the SYN
    for i in range(200):
        b.tcp.validated_peers[i] = 0.0
        b.tcp.validated_peers.move_to_end(i)
    b.tcp.established(listener.accept_queue[0])  # the bound is enforced on insertion
    assert len(b.tcp.validated_peers) == 64 and next(reversed(b.tcp.validated_peers)) == a.addr


def test_load_shedding_admits_validated_peers_once_shedding() -> None:
    stack = Stack(mac=OUR_MAC, addr="10.0.0.2/24")
    device = FakeDevice()
    shedding = LoadShedding(stack)
    shedding.add(stack.primary, device)
    stack.tcp.validated_peers[ipv4.addr("10.0.0.7")] = -100.0  # too long ago (oldest first, as recorded)
    stack.tcp.validated_peers[PEER_IP] = 0.5
    stack.tcp.counters["syns_received"] += 50
    stack.primary.stats["rx_packets"] += 50
    device.drops = 10
    shedding.tick(1.0)
    assert device.installed[-1][0] is True
    assert shedding.entries[0].admitted == [PEER_IP]


def test_fragments_shed_by_their_own_share() -> None:
    first = ip_frame(bytes(64), proto=ipv4.PROTO_UDP, flags_frag=ipv4.FLAG_MF)
    later = ip_frame(bytes(64), proto=ipv4.PROTO_UDP, flags_frag=185)
    whole = ip_frame(bytes(64), proto=ipv4.PROTO_UDP)
    program = bpf.frame_filter(OUR_MAC, overload=True, frag_keep=0.0)
    assert not kept(program, first) and not kept(program, later)
    assert kept(program, whole) and kept(program, SYN)  # SYNs keep their own (full) share
    # A validated peer's SYNs pass, its fragments do not: a fragment flood may well carry its address.
    admitted = bpf.frame_filter(OUR_MAC, overload=True, frag_keep=0.0, syn_keep=0.0, admitted=[PEER_IP])
    assert not kept(admitted, first) and kept(admitted, SYN)


def test_overload_control_cuts_only_the_majority_kind() -> None:
    control = bpf.OverloadControl()
    control.update(kernel_drops=100, queue_fill=1.0, frames=1000, syns=10, frags=900)
    assert control.frag_keep == pytest.approx(bpf.OverloadControl.DECREASE) and control.syn_keep == 1.0
    while control.engaged:
        control.update(0, 0.0, 1000, 0, 0)
    assert control.frag_keep == 1.0
