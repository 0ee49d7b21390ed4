"""Counters that can be trusted (issue 9): every counter is defined once, in docs/architecture.md
("Counters"), and each layer's counters are checked against exchanges whose exact values are known.

The first test reads the source: every name the code can increment (a string subscript of a
``counters`` dict, a string passed to a counting helper such as ``Stack._drop``, a ``ParseError``
reason in ``wire/``) must be documented, and every documented name must still be in the code.
The others run known exchanges (on the in-memory switch, on the virtual-time segment of
tests/stack/netsim.py and through the faulty network of tests/tcp/sim.py) and compare counters
with ``==``, most often the whole set of counters that changed.
"""

from __future__ import annotations

import ast
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import usernet
from tests.stack.netsim import Segment
from tests.tcp.sim import A_IP as SIM_A_IP
from tests.tcp.sim import B_IP as SIM_B_IP
from tests.tcp.sim import Faults, LossyNet
from usernet.links import Switch
from usernet.links.impair import Impair
from usernet.stack.core import Stack
from usernet.wire import arp, ethernet, icmp, ipv4, udp
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import checksum, pseudo_header_sum
from usernet.wire.tcp import ACK, RST

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "usernet"
DOCS = ROOT / "docs" / "architecture.md"

# ===================================================================== defined once

# Subscripts of a counters dict that are not string literals, and why each is accounted for. A
# new one fails the scan below: teach the scan what it counts (or use a literal) rather than let a
# counter escape the documentation.
_DYNAMIC = {
    ("stack/core.py", "err.reason"),                  # ParseError reasons: scanned in wire/
    ("stack/ip.py", "err.reason"),
    ("tcp/layer.py", "err.reason.partition('.')[2]"),  # the tcp.* ParseError reasons, prefix stripped
    ("proto/dhcp_client.py", "err.reason"),           # the dhcp.* ParseError reasons, scanned in wire/
    ("proto/dhcp_server.py", "err.reason"),
    ("proto/dns_client.py", "err.reason"),            # the dns.* and ntp.* ParseError reasons, scanned in wire/
    ("proto/dns_server.py", "err.reason"),
    ("proto/ntp.py", "err.reason"),
}


def _is_counters(node: ast.expr) -> bool:
    """``counters``, ``self.counters``, ``self.layer.counters``, ``stack.counters``..."""
    if isinstance(node, ast.Name):
        return node.id == "counters"
    return isinstance(node, ast.Attribute) and node.attr == "counters"


def _literals(node: ast.expr) -> list[str] | None:
    """The names a subscript can take: a string, or a conditional between strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _literals(node.body), _literals(node.orelse)
        if body is not None and orelse is not None:
            return body + orelse
    return None


def _owner(rel: str) -> str:
    """Where a file's counters live: the stack's dict (names as they are), the TCP engine's
    (shown under ``tcp.`` in Host.counters) or the fault injector's."""
    if rel.startswith("tcp/"):
        return "tcp"
    if rel == "links/impair.py":
        return "impair"
    if rel.startswith(("stack/", "api/")) or rel in ("proto/dhcp_client.py", "proto/dhcp_server.py"):
        return "stack"  # the DHCP machines count in the stack's dict they are given
    if rel in ("proto/dns_client.py", "proto/dns_server.py", "proto/ntp.py", "apps/dns.py"):
        return "stack"  # so do the DNS and NTP machines (and the responder's driver)
    if rel == "apps/http.py":
        return "stack"  # HttpServer.counters: its own dict, names as they are (http.*)
    if rel == "control.py":
        return "stack"  # the control socket counts in its host's stack dict (control.*)
    raise AssertionError(f"{rel} increments counters: say in tests/test_counters.py which dict they are in")


def code_counters() -> tuple[set[str], set[str]]:
    """(names as in Host.counters, names in Impair.counters) that the source can increment."""
    host: set[str] = set()
    impair: set[str] = set()
    problems: list[str] = []
    trees = {path.relative_to(SRC).as_posix(): ast.parse(path.read_text(), filename=str(path))
             for path in sorted(SRC.rglob("*.py"))}
    # Counting helpers, anywhere in the package (Stack._drop lives in one module and is called
    # from the others): functions that do counters[<one of their parameters>].
    helpers: set[str] = set()
    helper_subscripts: set[int] = set()
    for tree in trees.values():
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            params = {a.arg for a in func.args.args + func.args.kwonlyargs}
            for node in ast.walk(func):
                if isinstance(node, ast.Subscript) and _is_counters(node.value) and \
                        isinstance(node.slice, ast.Name) and node.slice.id in params:
                    helpers.add(func.name)
                    helper_subscripts.add(id(node))
    for rel, tree in trees.items():
        found: set[str] = set()
        # A function of this module that shares a helper's name but counts nothing (the
        # reassembler's _drop(key) forgets a datagram) is not a counting call.
        shadowed = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in helpers
                    and not any(id(n) in helper_subscripts for n in ast.walk(f))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and _is_counters(node.value):
                names = _literals(node.slice)
                if names is not None:
                    found.update(names)
                elif id(node) not in helper_subscripts and (rel, ast.unparse(node.slice)) not in _DYNAMIC:
                    problems.append(f"{rel}:{node.lineno}: counters[{ast.unparse(node.slice)}]")
            elif isinstance(node, ast.Call):
                func_name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                    node.func.id if isinstance(node.func, ast.Name) else None
                if func_name in helpers and func_name not in shadowed and node.args:
                    names = _literals(node.args[0])
                    if names is None and (rel, ast.unparse(node.args[0])) in _DYNAMIC:
                        pass
                    elif names is None:
                        problems.append(f"{rel}:{node.lineno}: {func_name}({ast.unparse(node.args[0])})")
                    else:
                        found.update(names)
                elif func_name == "ParseError" and rel.startswith("wire/"):
                    names = _literals(node.args[0]) if node.args else None
                    if names is None:
                        problems.append(f"{rel}:{node.lineno}: ParseError without a literal reason")
                    else:
                        host.update(names)  # tcp.* reasons: the engine strips "tcp.", all_counters adds it
            elif isinstance(node, ast.Assign) and rel == "links/impair.py" and isinstance(node.value, ast.Dict) \
                    and any(isinstance(t, ast.Attribute) and t.attr == "counters" for t in node.targets):
                found.update(k.value for k in node.value.keys
                             if isinstance(k, ast.Constant) and isinstance(k.value, str))
        if not found:
            continue
        owner = _owner(rel)
        if owner == "tcp":
            host.update("tcp." + name for name in found)
        elif owner == "impair":
            impair.update(found)
        else:
            host.update(found)
    assert not problems, "counters the scan cannot name:\n" + "\n".join(problems)
    return host, impair


def documented_counters() -> tuple[set[str], set[str]]:
    """(names in the Host.counters tables, names in the fault injector's table) of the docs'
    "Counters" section."""
    text = DOCS.read_text()
    match = re.search(r"^## Counters\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "docs/architecture.md has no '## Counters' section"
    host: set[str] = set()
    impair: set[str] = set()
    target = host
    for line in match.group(1).splitlines():
        if line.startswith("### "):
            target = impair if "fault injector" in line.lower() else host
        row = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if row:
            name = row.group(1)
            assert name not in target, f"{name} is documented twice"
            target.add(name)
    return host, impair


def test_every_counter_is_documented_once_and_every_documented_counter_exists() -> None:
    code_host, code_impair = code_counters()
    docs_host, docs_impair = documented_counters()
    # The scan sees every kind of increment (a broken scan must not pass vacuously): a literal
    # subscript, a counting helper (Stack._drop), a wire ParseError, the engine's names, impair's.
    assert {"ipv4.rx", "udp.no_port", "eth.truncated", "tcp.bad_option", "tcp.bytes_received"} <= code_host
    assert {"lost", "overflow"} <= code_impair and len(code_host) > 100
    assert sorted(code_host - docs_host) == [], "counted in the code, missing from docs/architecture.md"
    assert sorted(docs_host - code_host) == [], "in docs/architecture.md, no longer in the code"
    assert sorted(code_impair ^ docs_impair) == [], "fault injector counters and their docs differ"


def test_counter_names_are_dotted_by_layer() -> None:
    code_host, _ = code_counters()
    layers = {"eth", "arp", "ipv4", "icmp", "udp", "tcp", "stack", "link", "host", "dhcp", "dns", "ntp", "http",
              "control"}
    assert sorted(n for n in code_host if n.partition(".")[0] not in layers or not n.partition(".")[2]) == []


# ===================================================================== helpers

A_MAC = bytes.fromhex("020000000001")
B_MAC = bytes.fromhex("020000000002")
A_IP = ipv4.addr("10.0.0.1")
B_IP = ipv4.addr("10.0.0.2")


def nonzero(counters: dict[str, int]) -> dict[str, int]:
    return {name: value for name, value in counters.items() if value}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


def pair() -> tuple[Stack, Stack, Segment]:
    a = Stack(mac=A_MAC, addr="10.0.0.1/24", rng=random.Random(1))
    b = Stack(mac=B_MAC, addr="10.0.0.2/24", rng=random.Random(2))
    net = Segment(a, b)
    net.exchange()  # the gratuitous ARPs
    return a, b, net


def ip_frame(payload: bytes, proto: int, src: int = A_IP, dst: int = B_IP, flags_frag: int = 0,
             dst_mac: bytes = B_MAC) -> bytes:
    packet = ipv4.build(src=src, dst=dst, proto=proto, payload=payload, ident=77, flags_frag=flags_frag)
    return ethernet.build(dst_mac, A_MAC, ethernet.ETHERTYPE_IPV4, packet)


def tcp_with_checksum(raw: bytes, src: int = A_IP, dst: int = B_IP) -> bytes:
    """*raw* (at least 18 bytes) with a correct TCP checksum in bytes 16-17, however malformed the rest."""
    seg = bytearray(raw)
    seg[16:18] = b"\0\0"
    seg[16:18] = checksum(seg, pseudo_header_sum(src, dst, 6, len(seg))).to_bytes(2, "big")
    assert checksum(seg, pseudo_header_sum(src, dst, 6, len(seg))) == 0
    return bytes(seg)


# ===================================================================== hosts on the in-memory switch

@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    port_a, port_b = switch.port(), switch.port()  # both plugged in before either announces itself
    with usernet.Host(port_a, addr="10.0.0.1/24", seed=1) as a, usernet.Host(port_b, addr="10.0.0.2/24",
                                                                             seed=2) as b:
        yield a, b


def settle(*hosts: usernet.Host) -> None:
    """Wait until no counter of any host changed for a while (frames in flight have landed)."""
    last = [h.counters for h in hosts]
    quiet_since = time.monotonic()
    deadline = quiet_since + 5
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = [h.counters for h in hosts]
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > 0.2:
            return


def test_three_pings_and_one_arp_resolution(hosts) -> None:
    a, b = hosts
    rtts = a.ping("10.0.0.2", count=3, interval=0.02, timeout=2)
    assert len(rtts) == 3 and all(rtt is not None for rtt in rtts)
    settle(a, b)
    # a: announced itself, heard b's announcement, resolved b with one request and its reply,
    # sent three requests and got three replies.
    assert nonzero(a.counters) == {
        "arp.tx_gratuitous": 1, "arp.rx": 2, "arp.rx_gratuitous": 1, "arp.tx_request": 1,
        "eth.rx": 5, "ipv4.tx": 3, "ipv4.rx": 3,
        "icmp.tx_echo_request": 3, "icmp.rx": 3, "icmp.rx_echo_reply": 3,
    }
    # b: learnt a from a's request (it was for b), so it needed no request of its own.
    assert nonzero(b.counters) == {
        "arp.tx_gratuitous": 1, "arp.rx": 2, "arp.rx_gratuitous": 1, "arp.tx_reply": 1,
        "eth.rx": 5, "ipv4.rx": 3, "ipv4.tx": 3,
        "icmp.rx": 3, "icmp.rx_echo_request": 3, "icmp.tx_echo_reply": 3,
    }
    assert "icmp:\n    3 rx\n" in b.format_counters()


def test_udp_to_a_closed_port(hosts) -> None:
    a, b = hosts
    sock = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.connect(("10.0.0.2", 9999))
    sock.send(b"anyone there?")
    with pytest.raises(ConnectionRefusedError):
        sock.recv(100)
    sock.close()
    settle(a, b)
    assert nonzero(b.counters) == {
        "arp.tx_gratuitous": 1, "arp.rx": 2, "arp.rx_gratuitous": 1, "arp.tx_reply": 1,
        "eth.rx": 3, "ipv4.rx": 1, "udp.rx": 1, "udp.no_port": 1, "icmp.tx_error": 1, "ipv4.tx": 1,
    }
    assert nonzero(a.counters) == {
        "arp.tx_gratuitous": 1, "arp.rx": 2, "arp.rx_gratuitous": 1, "arp.tx_request": 1,
        "eth.rx": 3, "udp.tx": 1, "ipv4.tx": 1, "ipv4.rx": 1,
        "icmp.rx": 1, "icmp.rx_error": 1, "udp.icmp_error_delivered": 1,
    }


# ===================================================================== sans-IO stacks, frame by frame

_GOOD_UDP = udp.build(A_IP, B_IP, 1000, 7, b"payload")
_GOOD_ICMP = bytes(icmp.build_echo(False, 1, 1, b"ping"))
_GOOD_ARP = arp.build(arp.OP_REQUEST, A_MAC, A_IP, b"\0" * 6, B_IP)
_SEG_HEADER = tcpwire.build(A_IP, B_IP, 1000, 80, 1, 0, ACK, 1000)


def _ip_mutated(index: int, value: int) -> bytes:
    frame = bytearray(ip_frame(_GOOD_UDP, ipv4.PROTO_UDP))
    frame[14 + index] = value
    return bytes(frame)


def _arp_frame(body: bytes) -> bytes:
    return ethernet.build(ethernet.BROADCAST, A_MAC, ethernet.ETHERTYPE_ARP, body)


_ETH_RX = {"eth.rx": 1}
_IP_RX = {"eth.rx": 1, "ipv4.rx": 1}
_ARP_RX = {"eth.rx": 1, "arp.rx": 1}

MALFORMED = {
    # Ethernet
    "eth.truncated": (ip_frame(_GOOD_UDP, ipv4.PROTO_UDP)[:10], _ETH_RX),
    "eth.too_many_tags": (B_MAC + A_MAC + b"\x81\x00\x00\x01" * 3 + b"\x08\x00" + bytes(40), _ETH_RX),
    "eth.not_ethernet_ii": (B_MAC + A_MAC + b"\x00\x40" + bytes(46), _ETH_RX),
    "eth.not_for_us": (ip_frame(_GOOD_UDP, ipv4.PROTO_UDP, dst_mac=bytes.fromhex("02000000000f")), _ETH_RX),
    "eth.unknown_ethertype": (B_MAC + A_MAC + b"\x86\xdd" + bytes(46), _ETH_RX),
    # ARP
    "arp.truncated": (_arp_frame(_GOOD_ARP[:20]), _ETH_RX),
    "arp.unsupported_hardware": (_arp_frame(b"\x00\x06" + _GOOD_ARP[2:]), _ETH_RX),
    "arp.unsupported_protocol": (_arp_frame(_GOOD_ARP[:2] + b"\x86\xdd" + _GOOD_ARP[4:]), _ETH_RX),
    "arp.bad_op": (_arp_frame(_GOOD_ARP[:6] + b"\x00\x03" + _GOOD_ARP[8:]), _ETH_RX),
    "arp.bad_sender_mac": (_arp_frame(arp.build(arp.OP_REQUEST, b"\x03" + A_MAC[1:], A_IP, bytes(6), B_IP)),
                           _ARP_RX),
    # RFC 5227 2.4 (b): the first conflict is also answered with one defending announcement.
    "arp.address_conflict": (_arp_frame(arp.build(arp.OP_REQUEST, A_MAC, B_IP, bytes(6), A_IP)),
                             {**_ARP_RX, "arp.defended": 1}),
    "arp.request_not_for_us": (_arp_frame(arp.build(arp.OP_REQUEST, A_MAC, A_IP, bytes(6), ipv4.addr("10.0.0.9"))),
                               _ARP_RX),
    # IPv4
    "ipv4.truncated": (ethernet.build(B_MAC, A_MAC, ethernet.ETHERTYPE_IPV4, bytes(10)), _ETH_RX),
    "ipv4.bad_version": (_ip_mutated(0, 0x65), _ETH_RX),
    "ipv4.bad_header_length": (_ip_mutated(0, 0x44), _ETH_RX),
    "ipv4.bad_total_length": (_ip_mutated(2, 0xFF), _ETH_RX),
    "ipv4.reserved_flag": (_ip_mutated(6, 0x80), _ETH_RX),
    "ipv4.bad_checksum": (_ip_mutated(8, 1), _ETH_RX),  # TTL changed, checksum not
    "ipv4.not_for_us": (ip_frame(_GOOD_UDP, ipv4.PROTO_UDP, dst=ipv4.addr("10.0.0.9")), _IP_RX),
    "ipv4.martian_source": (ip_frame(_GOOD_UDP, ipv4.PROTO_UDP, src=ipv4.addr("127.0.0.1")), _IP_RX),
    # ICMP
    "icmp.truncated": (ip_frame(_GOOD_ICMP[:4], ipv4.PROTO_ICMP), _IP_RX),
    "icmp.bad_checksum": (ip_frame(_GOOD_ICMP[:-1] + b"X", ipv4.PROTO_ICMP), _IP_RX),
    # UDP
    "udp.truncated": (ip_frame(_GOOD_UDP[:6], ipv4.PROTO_UDP), _IP_RX),
    "udp.bad_length": (ip_frame(_GOOD_UDP[:4] + b"\x00\x40" + _GOOD_UDP[6:], ipv4.PROTO_UDP), _IP_RX),
    "udp.bad_checksum": (ip_frame(_GOOD_UDP[:-1] + b"X", ipv4.PROTO_UDP), _IP_RX),
    # TCP: the stack checks the checksum, the engine parses
    "tcp.bad_checksum": (ip_frame(_SEG_HEADER[:-1] + bytes([_SEG_HEADER[-1] ^ 1]), ipv4.PROTO_TCP), _IP_RX),
    "tcp.truncated": (ip_frame(tcp_with_checksum(_SEG_HEADER[:18]), ipv4.PROTO_TCP), _IP_RX),
    "tcp.bad_offset": (ip_frame(tcp_with_checksum(_SEG_HEADER[:12] + b"\x40" + _SEG_HEADER[13:]), ipv4.PROTO_TCP),
                       _IP_RX),
    "tcp.bad_option": (ip_frame(tcp_with_checksum(_SEG_HEADER[:12] + b"\x60" + _SEG_HEADER[13:] + b"\x02\x01\0\0"),
                                ipv4.PROTO_TCP), _IP_RX),
    "tcp.broadcast_dropped": (ip_frame(tcpwire.build(A_IP, ipv4.addr("10.0.0.255"), 1000, 80, 1, 0, ACK, 1000),
                                       ipv4.PROTO_TCP, dst=ipv4.addr("10.0.0.255")), _IP_RX),
}


@pytest.mark.parametrize("reason", sorted(MALFORMED))
def test_each_malformed_frame_counts_its_reason_once(reason: str) -> None:
    frame, lower = MALFORMED[reason]
    a, b, net = pair()
    b.udp_open(0, 7)
    before = dict(b.all_counters())
    b.receive(frame, net.now)
    b.poll(net.now)
    assert delta(before, b.all_counters()) == {**lower, reason: 1}
    assert b.all_counters()["stack.internal_error"] == 0


def test_arp_probe_is_answered_and_counted_as_a_reply() -> None:
    a, b, net = pair()
    before = dict(b.counters)
    probe = arp.build(arp.OP_REQUEST, A_MAC, 0, bytes(6), B_IP)  # RFC 5227: sender 0.0.0.0
    net.inject(b, _arp_frame(probe))
    (reply,) = b.poll(net.now)
    assert arp.parse(reply, 14).op == arp.OP_REPLY
    assert delta(before, b.counters) == {"eth.rx": 1, "arp.rx": 1, "arp.probe_for_us": 1, "arp.tx_reply": 1}


def test_fragmented_udp_datagram() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 7)
    before_a, before_b = dict(a.counters), dict(b.counters)
    a.udp_send(a.udp_open(), bytes(3000), B_IP, 7)  # 3008 bytes of UDP: fragments of 1480, 1480, 48
    net.exchange()
    assert server.pop()[0] == bytes(3000)
    assert delta(before_a, a.counters) == {"udp.tx": 1, "ipv4.tx": 1, "ipv4.fragments_tx": 3,
                                           "arp.tx_request": 1, "eth.rx": 1, "arp.rx": 1}
    assert delta(before_b, b.counters) == {"eth.rx": 4, "arp.rx": 1, "arp.tx_reply": 1, "ipv4.rx": 3,
                                           "ipv4.fragments_rx": 3, "ipv4.reassembled": 1, "udp.rx": 1}


def test_icmp_kinds() -> None:
    a, b, net = pair()
    before = dict(b.counters)
    # An echo request to the broadcast address (ignored), a timestamp request (neither echo nor
    # error), an unreachable whose quote is short, one whose quote is not IPv4, and an unknown
    # protocol (answered with protocol unreachable).
    broadcast = ipv4.addr("10.0.0.255")
    net.inject(b, ip_frame(_GOOD_ICMP, ipv4.PROTO_ICMP, dst=broadcast, dst_mac=ethernet.BROADCAST))
    net.inject(b, ip_frame(bytes(icmp.build(icmp.TIMESTAMP, 0, 0, bytes(12))), ipv4.PROTO_ICMP))
    net.inject(b, ip_frame(bytes(icmp.build(icmp.DEST_UNREACHABLE, 3, 0, bytes(20))), ipv4.PROTO_ICMP))
    net.inject(b, ip_frame(bytes(icmp.build(icmp.DEST_UNREACHABLE, 3, 0, b"\x65" + bytes(27))), ipv4.PROTO_ICMP))
    net.inject(b, ip_frame(b"whatever", 99))
    net.exchange()
    assert delta(before, b.counters) == {
        "eth.rx": 6, "ipv4.rx": 5, "icmp.rx": 4,
        "icmp.rx_echo_request": 1, "icmp.echo_broadcast_ignored": 1, "icmp.rx_other": 1,
        "icmp.rx_error": 2, "icmp.error_quote_short": 1, "icmp.error_quote_bad": 1,
        "ipv4.unknown_protocol": 1, "icmp.tx_error": 1, "ipv4.tx": 1,
        "arp.rx": 1, "arp.tx_request": 1,  # b resolved a to send the error; a's reply is eth.rx 6
    }


def _established(net: Segment, a: Stack, b: Stack, port: int = 80):  # type: ignore[no-untyped-def]
    listener = b.tcp.listen(0, port, 8)
    client = a.tcp.connect(A_IP, 0, B_IP, port, net.now)
    net.run(0.5)
    server = listener.accept()
    assert server is not None and server.state == "ESTABLISHED" and client.state == "ESTABLISHED"
    return client, server


def _rst(sport: int, dport: int, seq: int) -> bytes:
    return ip_frame(tcpwire.build(A_IP, B_IP, sport, dport, seq & 0xFFFFFFFF, 0, RST, 0), ipv4.PROTO_TCP)


def test_every_reset_that_arrives_is_counted_once() -> None:
    a, b, net = pair()
    client, server = _established(net, a, b)
    nxt = server.rcv_nxt
    assert server.rcv_adv - nxt > 200
    sport = client.local_port
    resets = [
        _rst(sport, 80, nxt + 100),      # in window, not at RCV.NXT: challenged
        _rst(sport, 80, nxt + 1),        # the same, but within invalid_ratelimit: not answered
        _rst(sport, 80, nxt + (1 << 30)),  # out of window: dropped
        _rst(sport, 80, nxt - 5000),     # below the window: dropped
        _rst(sport, 81, 12345),          # a closed port
        _rst(40000, 82, 12345),          # another
        _rst(40001, 80, 12345),          # the listener's port, no connection: ignored
        _rst(sport, 80, nxt),            # exactly RCV.NXT: resets the connection
        _rst(sport, 80, nxt),            # again: the connection is gone, the listener ignores it
    ]
    before_a, before_b = dict(a.all_counters()), dict(b.all_counters())
    for frame in resets:
        net.inject(b, frame)
        net.exchange()
    assert server.state == "CLOSED"
    assert delta(before_b, b.all_counters()) == {
        "eth.rx": 9, "ipv4.rx": 9, "tcp.segments_received": 9, "tcp.resets_received": 9,
        "tcp.rst_challenged": 2, "tcp.challenge_acks": 1, "tcp.challenge_ack_ratelimited": 1,
        "tcp.segments_sent": 1, "ipv4.tx": 1, "tcp.closed_port": 2, "tcp.connections_reset": 1,
    }
    # a got the one challenge ACK and nothing else; it saw no reset.
    assert delta(before_a, a.all_counters()) == {"eth.rx": 1, "ipv4.rx": 1, "tcp.segments_received": 1}


def test_reset_sent_by_abort_and_by_a_closed_port() -> None:
    a, b, net = pair()
    client, server = _established(net, a, b)
    before_a, before_b = dict(a.all_counters()), dict(b.all_counters())
    server.abort()  # RST from a connection
    net.exchange()
    assert client.state == "CLOSED"
    net.inject(b, ip_frame(tcpwire.build(A_IP, B_IP, 40000, 81, 5, 0, tcpwire.SYN, 1000), ipv4.PROTO_TCP))
    net.exchange()  # RST|ACK from the closed port; a has no such connection and stays silent
    assert delta(before_b, b.all_counters()) == {
        "tcp.segments_sent": 2, "tcp.resets_sent": 2, "ipv4.tx": 2,
        "eth.rx": 1, "ipv4.rx": 1, "tcp.segments_received": 1, "tcp.closed_port": 1, "tcp.syns_received": 1,
    }
    assert delta(before_a, a.all_counters()) == {
        "eth.rx": 2, "ipv4.rx": 2, "tcp.segments_received": 2, "tcp.resets_received": 2,
        "tcp.connections_reset": 1, "tcp.closed_port": 1,
    }


# ===================================================================== TCP through the faulty network

def _transfer(net: LossyNet, size: int) -> None:
    data = random.Random(5).randbytes(size)
    listener = net.b.tcp.listen(0, 80, 16)
    client = net.a.tcp.connect(SIM_A_IP, 0, SIM_B_IP, 80, net.now)
    net.run_until(lambda: bool(listener.accept_queue), limit=120)
    server = listener.accept()
    sent = 0
    got = bytearray()

    def pump() -> bool:
        nonlocal sent
        if sent < size:
            sent += client.send(memoryview(data)[sent:sent + (1 << 20)])
        elif not client.fin_queued:
            client.shutdown_write()
        while chunk := server.recv(1 << 20):
            got.extend(chunk)
        return server.eof and client.snd_una == client.snd_max

    net.run_until(pump, limit=3600)
    assert bytes(got) == data


def test_bytes_received_is_exact_under_reordering_duplication_and_loss() -> None:
    size = 3_000_000
    net = LossyNet(Faults(loss=0.01, dup=0.03, reorder=0.08, delay=0.002), seed=4)
    _transfer(net, size)
    sender, receiver = net.a.all_counters(), net.b.all_counters()
    assert receiver["tcp.out_of_order"] > 0 and sender["tcp.retransmitted_segments"] > 0  # the faults bit
    assert receiver["tcp.bytes_received"] == size
    assert sender["tcp.bytes_acked"] == size  # data only: the FIN is no byte
    assert sender["tcp.bytes_received"] == 0 and receiver["tcp.bytes_acked"] == 0
    for counters in (sender, receiver):
        assert counters["stack.internal_error"] == 0 and counters["tcp.illegal_transition"] == 0
        assert counters["tcp.resets_received"] == 0 and counters["tcp.resets_sent"] == 0


def test_what_one_side_sends_the_other_receives_on_a_clean_network() -> None:
    net = LossyNet(Faults(delay=0.001), seed=2)
    _transfer(net, 500_000)
    a, b = net.a.all_counters(), net.b.all_counters()
    for sender, receiver in ((a, b), (b, a)):
        assert sender["tcp.segments_sent"] == receiver["tcp.segments_received"] > 0
        assert sender["ipv4.tx"] == receiver["ipv4.rx"]
    assert a["tcp.active_opens"] == a["tcp.active_opens_established"] == 1
    assert b["tcp.passive_opens"] == b["tcp.passive_opens_established"] == 1
    assert a["tcp.retransmitted_segments"] == b["tcp.retransmitted_segments"] == 0
    assert b["tcp.bytes_received"] == a["tcp.bytes_acked"] == 500_000 and b["tcp.out_of_order"] == 0


def test_simultaneous_open_counts_active_opens_on_both_sides() -> None:
    a, b, net = pair()
    conns = (a.tcp.connect(A_IP, 5000, B_IP, 6000, net.now), b.tcp.connect(B_IP, 6000, A_IP, 5000, net.now))
    net.run(2.0)
    for stack, conn in zip((a, b), conns, strict=True):
        counters = stack.all_counters()
        assert conn.state == "ESTABLISHED"
        assert counters["tcp.active_opens"] == counters["tcp.active_opens_established"] == 1
        assert counters["tcp.passive_opens_established"] == 0


# ===================================================================== the fault injector

def _impair_counts(**faults: float) -> tuple[dict[str, int], int]:
    switch = Switch()
    port_a, port_b = switch.port(), switch.port()
    link = Impair(port_a, seed=1, directions="tx", **faults)
    frame = ethernet.build(ethernet.BROADCAST, A_MAC, 0x88B5, bytes(50))
    for _ in range(10):
        link.send(frame)
    time.sleep(0.01)
    link.recv_batch()  # releases frames held past their time
    arrived = len(port_b.recv_batch(100))
    return dict(link.counters), arrived


@pytest.mark.parametrize("faults, expected, arrived", [
    ({"loss": 1.0}, {"lost": 10}, 0),
    ({"dup": 1.0}, {"duplicated": 10}, 20),
    ({"corrupt": 1.0}, {"corrupted": 10}, 10),
    ({"reorder": 1.0}, {"reordered": 10}, 10),
    ({"delay_ms": 1.0}, {"delayed": 10}, 10),
])
def test_fault_injector_counts_each_fault(faults, expected, arrived) -> None:
    counters, got = _impair_counts(**faults)
    assert nonzero(counters) == expected and got == arrived
