"""The tracer: tcpdump-style lines, relative sequence numbers, the -v line and -vv field dump with
checksum verdicts, hexdump, malformed frames, the bounded flow table."""

from __future__ import annotations

import io
import logging
import random
import re

from usernet.links import Switch, Tracer, pipe
from usernet.links.base import Link
from usernet.links.trace import MAX_FLOWS, FlowTable, TraceFormatter, describe, hexdump_lines
from usernet.wire import arp, ethernet, icmp, ipv4, tcp, udp

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A = ipv4.addr("10.0.0.1")
B = ipv4.addr("10.0.0.2")
OPTS = tcp.build_options(mss=1460, wscale=7, sack_permitted=True, ts=(1, 0))


def eth_ip(src: int, dst: int, proto: int, payload: bytes | bytearray, ident: int = 1,
           flags_frag: int = ipv4.FLAG_DF) -> bytes:
    smac, dmac = (MAC_A, MAC_B) if src == A else (MAC_B, MAC_A)
    return ethernet.build(dmac, smac, ethernet.ETHERTYPE_IPV4,
                          ipv4.build(src=src, dst=dst, proto=proto, payload=payload, ident=ident,
                                     flags_frag=flags_frag))


def seg(src: int, dst: int, seq: int, ack: int, flags: int, payload: bytes = b"", options: bytes = b"",
        window: int = 502, sport: int | None = None, dport: int | None = None, partial: bool = False) -> bytes:
    if sport is None:
        sport = 40000 if src == A else 7
    if dport is None:
        dport = 7 if src == A else 40000
    return eth_ip(src, dst, 6, tcp.build(src, dst, sport, dport, seq, ack, flags, window, options, payload,
                                         partial_checksum=partial))


def tracer(**kwargs) -> tuple[Tracer, io.StringIO]:
    out = io.StringIO()
    return Tracer(Switch().port(name="a"), out=out, **kwargs), out


def lines(out: io.StringIO) -> list[str]:
    """Output lines with the timestamp cut off summary lines (dump lines start with spaces)."""
    result = []
    for line in out.getvalue().splitlines():
        if re.match(r"\d\d:\d\d:\d\d\.\d{6} ", line):
            line = line.split(" ", 1)[1]
        result.append(line)
    return result


def summaries(out: io.StringIO) -> list[str]:
    return [line for line in lines(out) if not line.startswith(" ")]


SYN, ACK, FIN, PSH, RST = tcp.SYN, tcp.ACK, tcp.FIN, tcp.PSH, tcp.RST
CONVERSATION = [  # ISNs 1000 (alice) and 5000 (bob)
    seg(A, B, 1000, 0, SYN, options=OPTS),
    seg(B, A, 5000, 1001, SYN | ACK, options=OPTS),
    seg(A, B, 1001, 5001, ACK),
    seg(A, B, 1001, 5001, PSH | ACK, b"hello"),
    seg(B, A, 5001, 1006, PSH | ACK, b"hello"),
    seg(A, B, 1006, 5006, FIN | ACK),
    seg(B, A, 5006, 1007, FIN | ACK),
    seg(A, B, 1007, 5007, ACK),
]


# ----------------------------------------------------------------- sequence numbers

def test_relative_sequence_numbers_like_tcpdump() -> None:
    t, out = tracer()
    for frame in CONVERSATION:
        t.send(frame)
    assert summaries(out) == [
        "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [S], seq 0, win 502, "
        "options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0",
        "a > IP 10.0.0.2.7 > 10.0.0.1.40000: Flags [S.], seq 0, ack 1, win 502, "
        "options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0",
        "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [.], seq 1, ack 1, win 502, length 0",
        "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [P.], seq 1:6, ack 1, win 502, length 5",
        "a > IP 10.0.0.2.7 > 10.0.0.1.40000: Flags [P.], seq 1:6, ack 6, win 502, length 5",
        "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [F.], seq 6, ack 6, win 502, length 0",
        "a > IP 10.0.0.2.7 > 10.0.0.1.40000: Flags [F.], seq 6, ack 7, win 502, length 0",
        "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [.], seq 7, ack 7, win 502, length 0",
    ]


def test_absolute_prints_raw_numbers() -> None:
    t, out = tracer(absolute=True)
    for frame in CONVERSATION[:5]:
        t.send(frame)
    got = summaries(out)
    assert "Flags [S], seq 1000, win 502" in got[0]
    assert "Flags [S.], seq 5000, ack 1001, win 502" in got[1]
    assert got[3] == "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [P.], seq 1001:1006, ack 5001, win 502, length 5"
    assert "seq 5001:5006, ack 1006" in got[4]


def test_flow_first_seen_mid_stream() -> None:
    """The first sequence number seen is 0; the other direction's base is what this side acknowledges."""
    t, out = tracer()
    t.send(seg(A, B, 70000, 90000, PSH | ACK, b"abc"))
    t.send(seg(B, A, 90000, 70003, PSH | ACK, b"de"))
    t.send(seg(A, B, 70003, 90002, ACK))
    assert [line.split(": ", 1)[1] for line in summaries(out)] == [
        "Flags [P.], seq 0:3, ack 0, win 502, length 3",
        "Flags [P.], seq 0:2, ack 3, win 502, length 2",
        "Flags [.], seq 3, ack 2, win 502, length 0",
    ]


def test_directions_and_connections_are_separate() -> None:
    t, out = tracer()
    t.send(seg(A, B, 1000, 0, SYN))
    t.send(seg(A, B, 8000, 0, SYN, sport=40001))  # another connection from the same host
    t.send(seg(A, B, 1001, 0, PSH, b"x"))
    t.send(seg(A, B, 8001, 0, PSH, b"yy", sport=40001))
    got = [line.split(": ", 1)[1] for line in summaries(out)]
    assert got[2].startswith("Flags [P], seq 1:2,") and got[3].startswith("Flags [P], seq 1:3,")
    assert len(t.flows) == 2


def test_new_syn_on_a_reused_four_tuple_restarts_numbering() -> None:
    t, out = tracer()
    for frame in CONVERSATION:
        t.send(frame)
    t.send(seg(A, B, 777777, 0, SYN))
    t.send(seg(B, A, 333, 777778, SYN | ACK))
    t.send(seg(A, B, 1000, 0, SYN))  # ... and the retransmitted SYN of an old ISN is a new start too
    got = summaries(out)
    assert "Flags [S], seq 0, win" in got[-3] and "Flags [S.], seq 0, ack 1, win" in got[-2]
    assert "Flags [S], seq 0, win" in got[-1]


def test_retransmitted_syn_keeps_the_base() -> None:
    t, out = tracer()
    t.send(seg(A, B, 1000, 0, SYN))
    t.send(seg(A, B, 1000, 0, SYN))
    t.send(seg(B, A, 5000, 1001, SYN | ACK))
    assert "seq 0, ack 1," in summaries(out)[-1]


def test_relative_numbers_wrap_around_2_32() -> None:
    t, out = tracer()
    isn = 2**32 - 3
    t.send(seg(A, B, isn, 0, SYN))
    t.send(seg(B, A, 10, (isn + 1) % 2**32, SYN | ACK))
    t.send(seg(A, B, (isn + 1) % 2**32, 11, PSH | ACK, b"0123456789"))
    t.send(seg(B, A, 11, (isn + 11) % 2**32, ACK))
    got = [line.split(": ", 1)[1] for line in summaries(out)]
    assert got[2].startswith("Flags [P.], seq 1:11, ack 1,")
    assert got[3].startswith("Flags [.], seq 1, ack 11,")


def test_sack_blocks_are_relative_to_the_peer() -> None:
    t, out = tracer()
    t.send(seg(A, B, 1000, 0, SYN))
    t.send(seg(B, A, 5000, 1001, SYN | ACK))
    t.send(seg(B, A, 5001, 1001, ACK, options=tcp.build_options(sack_blocks=[(2001, 3001)])))
    assert "options [nop,nop,sack 1 {1001:2001}]" in summaries(out)[-1]
    t2, out2 = tracer(absolute=True)
    t2.send(seg(B, A, 5001, 1001, ACK, options=tcp.build_options(sack_blocks=[(2001, 3001)])))
    assert "sack 1 {2001:3001}" in summaries(out2)[-1]


def test_flow_table_is_bounded_least_recently_used_out() -> None:
    t, out = tracer()
    t.flows.max_flows = 3
    for port in range(1, 5):  # four connections: the first is evicted
        t.send(seg(A, B, port * 1000, 0, SYN, sport=port))
    assert len(t.flows) == 3
    assert (A, 1, B, 7) not in t.flows and (A, 4, B, 7) in t.flows
    t.send(seg(A, B, 2001, 0, PSH, b"ab", sport=2))  # touch connection 2: now 3 is the oldest
    t.send(seg(A, B, 5000, 0, SYN, sport=5))
    assert (A, 2, B, 7) in t.flows and (A, 3, B, 7) not in t.flows and t.flows.evicted == 2
    # a forgotten connection starts again from the next segment seen
    t.send(seg(A, B, 1001, 0, PSH, b"abc", sport=1))
    assert summaries(out)[-1].split(": ", 1)[1].startswith("Flags [P], seq 0:3,")


def test_default_flow_bound() -> None:
    assert MAX_FLOWS == 1024
    t, _ = tracer()
    for n in range(MAX_FLOWS + 100):
        t.send(seg(A, B, n, 0, SYN, sport=1024 + n))
    assert len(t.flows) == MAX_FLOWS
    table = FlowTable(max_flows=2)
    table.bases(A, 1, B, 2, 10, 0, SYN)
    table.bases(B, 2, A, 1, 20, 11, SYN | ACK)  # the same connection, other direction: one entry
    assert len(table) == 1


# ----------------------------------------------------------------- -v and -vv

def test_vv_field_dump_with_units_and_layer_prefixes() -> None:
    t, out = tracer(verbose=2)
    t.send(CONVERSATION[0])
    t.send(CONVERSATION[1])
    got = lines(out)
    assert got[:7] == [
        "a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [S], seq 0, win 502, "
        "options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0",
        "  eth: dst 02:00:00:00:00:02 src 02:00:00:00:00:01 type 0x0800 (IPv4) frame 74 bytes",
        "  ip: version 4 ihl 5 (20 bytes) tos 0x00 length 60 bytes id 1 flags 0x2 [DF] frag offset 0 (0 bytes)",
        f"  ip: ttl 64 proto 6 (TCP) csum 0x{_scapy_csum(CONVERSATION[0], 'IP'):04x} (ok) src 10.0.0.1 dst 10.0.0.2",
        "  tcp: sport 40000 dport 7 seq 1000 (relative 0) ack 0 offset 10 (40 bytes)",
        f"  tcp: flags 0x002 [S] window 502 csum 0x{_scapy_csum(CONVERSATION[0], 'TCP'):04x} (ok) urgent 0 "
        "payload 0 bytes",
        "  tcp: options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7]",
    ]
    assert got[11] == "  tcp: sport 7 dport 40000 seq 5000 (relative 0) ack 1001 (relative 1) offset 10 (40 bytes)"
    assert got[12].startswith("  tcp: flags 0x012 [S.] window 502 csum ")


def _scapy_csum(frame: bytes, layer: str) -> int:
    """The checksum scapy computes for *layer* of *frame* (an independent reference)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    packet = Ether(frame)
    cls = {"IP": IP, "TCP": TCP, "UDP": UDP}[layer]
    del packet[cls].chksum
    return Ether(bytes(packet))[cls].chksum


def test_verbose_true_means_2_and_dump_printed_once(caplog) -> None:
    t, out = tracer(verbose=True)
    assert t.verbose == 2
    caplog.set_level(logging.DEBUG, logger="usernet.trace")
    for frame in CONVERSATION:
        t.send(frame)
    got = lines(out)
    assert sum(line.startswith("  eth:") for line in got) == len(CONVERSATION)
    assert sum(line.startswith("  ip: ttl") for line in got) == len(CONVERSATION)
    assert sum("tcp: sport" in line for line in got) == len(CONVERSATION)
    assert not [r for r in caplog.records if r.name == "usernet.trace"]  # not a second time through logging


def test_logger_at_debug_gets_the_dump_below_vv(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="usernet.trace")
    t, out = tracer()
    t.send(CONVERSATION[0])
    assert len(lines(out)) == 1  # only the summary on out
    records = [r for r in caplog.records if r.name == "usernet.trace"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "  ip: version 4 ihl 5 (20 bytes)" in message and "  tcp: sport 40000" in message


def test_verbose_1_line() -> None:
    t, out = tracer(verbose=1)
    t.send(CONVERSATION[3])
    assert lines(out)[1] == ("    02:00:00:00:00:01 > 02:00:00:00:00:02, ttl 64, id 1, flags [DF], length 45, "
                             "csum ip ok, tcp ok")


def test_tcp_data_offset_and_ip_options_units() -> None:
    options = tcp.build_options(ts=(5, 6))  # 12 bytes: offset 8 words
    t, out = tracer(verbose=2)
    t.send(seg(A, B, 1, 2, ACK, b"data", options=options))
    got = lines(out)
    assert any(line.endswith("offset 8 (32 bytes)") for line in got)
    assert any("payload 4 bytes" in line for line in got)
    packet = bytearray(ipv4.build(src=A, dst=B, proto=17, payload=udp.build(A, B, 1, 2, b"x"), ident=9))
    packet[0] = 0x46  # one word of options: NOP NOP NOP EOL
    packet[20:20] = b"\x01\x01\x01\x00"
    packet[2:4] = len(packet).to_bytes(2, "big")
    t.send(ethernet.build(MAC_B, MAC_A, 0x0800, bytes(packet)))
    dump = lines(out)
    assert any(line.startswith("  ip: version 4 ihl 6 (24 bytes) tos 0x00 length 33 bytes") for line in dump)
    assert "  ip: options 01 01 01 00" in dump


def test_fragment_offset_in_units_and_bytes() -> None:
    body = bytes(1480)
    first = eth_ip(A, B, 1, icmp.build_echo(False, 1, 1, body)[:1480], ident=7, flags_frag=ipv4.FLAG_MF)
    later = eth_ip(A, B, 1, body, ident=7, flags_frag=185)
    t, out = tracer(verbose=2)
    t.send(first)
    t.send(later)
    got = lines(out)
    assert got[0] == "a > IP 10.0.0.1 > 10.0.0.2: ICMP echo request id 1 seq 1, length 1480 (frag id 7 +)"
    assert "flags 0x1 [MF] frag offset 0 (0 bytes)" in got[2]
    assert any(line.startswith("  icmp: type 8 (echo request) code 0 csum ") and "(not verified: fragment)" in line
               for line in got)
    summary = [line for line in got if not line.startswith(" ")][1]
    assert summary == "a > IP 10.0.0.1 > 10.0.0.2: fragment id 7 offset 1480 len 1480"
    assert any("flags 0x0 [none] frag offset 185 (1480 bytes)" in line for line in got)


def test_udp_icmp_arp_dumps() -> None:
    t, out = tracer(verbose=2)
    frame = eth_ip(A, B, 17, udp.build(A, B, 5000, 6000, b"hi"))
    t.send(frame)
    t.send(eth_ip(A, B, 1, icmp.build_echo(False, 1, 2, b"abc")))
    t.send(ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, arp.build(1, MAC_A, A, bytes(6), B)))
    got = lines(out)
    assert (f"  udp: sport 5000 dport 6000 length 10 bytes csum 0x{_scapy_csum(frame, 'UDP'):04x} (ok) "
            "payload 2 bytes") in got
    assert any(re.fullmatch(r"  icmp: type 8 \(echo request\) code 0 csum 0x[0-9a-f]{4} \(ok\) id 1 seq 2 "
                            r"payload 3 bytes", line) for line in got)
    assert "a > ARP who-has 10.0.0.2 tell 10.0.0.1" in got
    assert "  arp: htype 1 (Ethernet) ptype 0x0800 (IPv4) hlen 6 plen 4 op 1 (request)" in got
    assert "  arp: sender 02:00:00:00:00:01 10.0.0.1 target 00:00:00:00:00:00 10.0.0.2" in got


def test_udp_without_checksum_and_icmp_port_unreachable() -> None:
    dgram = bytearray(udp.build(A, B, 5000, 9999, b"anyone?"))
    dgram[6:8] = b"\0\0"
    original = eth_ip(A, B, 17, dgram)
    unreachable = eth_ip(B, A, 1, icmp.build_error(icmp.DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE, original[14:]))
    t, out = tracer(verbose=2)
    t.send(original)
    t.send(unreachable)
    got = lines(out)
    assert "  udp: sport 5000 dport 9999 length 15 bytes csum 0x0000 (none) payload 7 bytes" in got
    assert "a > IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 9999 unreachable, length 43" in got
    assert "  icmp: quoted 10.0.0.1 > 10.0.0.2 proto 17 (UDP) sport 5000 dport 9999" in got


# ----------------------------------------------------------------- checksum verdicts

def _csums(out: io.StringIO, layer: str) -> list[str]:
    """Every checksum text (``0x1234 (ok)``) on the dump lines of *layer*, in order."""
    found = [re.search(r"csum (0x[0-9a-f]{4} \([^)]*\))", line) for line in lines(out)
             if line.startswith(f"  {layer}:")]
    return [match.group(1) for match in found if match]


def _dump_csum(out: io.StringIO, layer: str) -> str:
    return _csums(out, layer)[0]


def test_bad_checksums_show_the_expected_value() -> None:
    good = CONVERSATION[3]
    tcp_csum = int.from_bytes(good[14 + 20 + 16:14 + 20 + 18], "big")
    ip_csum = int.from_bytes(good[14 + 10:14 + 12], "big")
    broken = bytearray(good)
    broken[14 + 20 + 16:14 + 20 + 18] = b"\x12\x34"
    broken[14 + 10:14 + 12] = b"\xab\xcd"
    t, out = tracer(verbose=2)
    t.send(bytes(broken))
    assert _dump_csum(out, "tcp") == f"0x1234 (bad, expected 0x{tcp_csum:04x})"
    assert _dump_csum(out, "ip") == f"0xabcd (bad, expected 0x{ip_csum:04x})"
    t1, out1 = tracer(verbose=1)
    t1.send(bytes(broken))
    assert lines(out1)[1].endswith("csum ip bad, tcp bad")


def test_bad_udp_checksum() -> None:
    frame = bytearray(eth_ip(A, B, 17, udp.build(A, B, 1, 2, b"hello")))
    right = int.from_bytes(frame[40:42], "big")
    frame[40:42] = ((right + 1) & 0xFFFF or 1).to_bytes(2, "big")
    t, out = tracer(verbose=2)
    t.send(bytes(frame))
    assert _dump_csum(out, "udp").endswith(f"(bad, expected 0x{right:04x})")


class OffloadLink(Link):
    """A link that hands out queued frames marked checksum-trusted, and takes TSO super-segments."""

    def __init__(self, trusted: bool = True) -> None:
        self.queue: list[bytes] = []
        self.trusted = trusted
        self.gso: list[tuple[bytes, int]] = []
        self.sent: list[bytes] = []
        self.name = "veth0"

    def fileno(self) -> int:
        return -1

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames, self.queue = self.queue, []
        return [(f, self.trusted) for f in frames]

    def send(self, frame) -> None:
        self.sent.append(bytes(frame))

    def send_gso(self, frame, mss: int) -> None:
        self.gso.append((bytes(frame), mss))


def test_partial_and_offloaded_checksums_on_trusted_frames() -> None:
    partial = seg(B, A, 5001, 1006, PSH | ACK, b"kernel data", partial=True)
    garbage = bytearray(seg(B, A, 5012, 1006, ACK))
    garbage[14 + 20 + 16:14 + 20 + 18] = b"\x00\x01"
    link = OffloadLink(trusted=True)
    link.queue += [partial, bytes(garbage), CONVERSATION[4]]
    out = io.StringIO()
    t = Tracer(link, out=out, verbose=2)
    t.recv_batch()
    verdicts = _csums(out, "tcp")
    field = int.from_bytes(partial[14 + 20 + 16:14 + 20 + 18], "big")
    assert verdicts[0] == f"0x{field:04x} (partial)"
    assert verdicts[1] == "0x0001 (offloaded)"
    assert verdicts[2].endswith("(ok)")  # a trusted frame whose checksum is complete still says so
    assert all(line.split(" ")[2] == "<" for line in out.getvalue().splitlines() if line[0].isdigit())
    # the same partial frame received untrusted is bad: the stack drops it
    untrusted = OffloadLink(trusted=False)
    untrusted.queue.append(partial)
    out2 = io.StringIO()
    Tracer(untrusted, out=out2, verbose=2).recv_batch()
    assert "(bad, expected 0x" in _dump_csum(out2, "tcp")


def test_tso_super_segment_through_send_gso() -> None:
    link = OffloadLink()
    out = io.StringIO()
    t = Tracer(link, out=out, verbose=2)
    t.send(seg(A, B, 1000, 0, SYN))
    t.send(seg(B, A, 5000, 1001, SYN | ACK))
    big = seg(A, B, 1001, 5001, ACK, bytes(4 * 1448), partial=True)
    t.send_gso(big, 1448)
    assert link.gso == [(big, 1448)]
    summary = summaries(out)[-1]
    assert summary.endswith("Flags [.], seq 1:5793, ack 1, win 502, length 5792 (TSO, mss 1448)")
    assert _csums(out, "tcp")[-1].endswith("(partial)")


# ----------------------------------------------------------------- hexdump, layer 3, malformed

def test_hexdump_format() -> None:
    frame = ethernet.build(MAC_B, MAC_A, 0x88B5, b"Hello, world!\x00\x7f\x80" + b"x" * 3)
    t, out = tracer(hexdump=True)
    t.send(frame)
    assert lines(out) == [
        "a > 02:00:00:00:00:01 > 02:00:00:00:00:02 ethertype 0x88b5, length 33",
        "  0000  02 00 00 00 00 02 02 00  00 00 00 01 88 b5 48 65  |..............He|",
        "  0010  6c 6c 6f 2c 20 77 6f 72  6c 64 21 00 7f 80 78 78  |llo, world!...xx|",
        "  0020  78                                                |x|",
    ]
    assert hexdump_lines(b"") == ["  (empty frame)"]


def test_hexdump_follows_the_dump() -> None:
    t, out = tracer(verbose=2, hexdump=True)
    t.send(CONVERSATION[2])
    got = lines(out)
    assert got[1].startswith("  eth:") and got[-1].startswith("  0030  ")
    assert [line[:6] for line in got if re.match(r"  [0-9a-f]{4}  ", line)] == ["  0000", "  0010", "  0020",
                                                                                "  0030"]


def test_layer3_link_has_no_ethernet() -> None:
    out = io.StringIO()
    t = Tracer(Switch(layer=3).port(name="a"), out=out, verbose=2)
    t.send(CONVERSATION[0][14:])
    got = lines(out)
    assert got[0].startswith("a > IP 10.0.0.1.40000 > 10.0.0.2.7: Flags [S], seq 0,")
    assert got[1].startswith("  ip: version 4 ihl 5 (20 bytes)")


def test_malformed_frames_are_shown_as_malformed() -> None:
    t, out = tracer(verbose=2)
    bad_ip = bytearray(CONVERSATION[2])
    bad_ip[14 + 2:14 + 4] = (1000).to_bytes(2, "big")  # total length past the frame
    short_tcp = eth_ip(A, B, 6, b"\x9c\x40\x00\x07 too short")
    bad_offset = bytearray(CONVERSATION[2])
    bad_offset[14 + 20 + 12] = 0xF0  # 60-byte header in a 20-byte segment
    bad_options = bytearray(seg(A, B, 1, 2, ACK, options=b"\x02\x09\x05\xb4"))  # MSS length 9
    bad_arp = ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, b"\x00\x06" + bytes(26))
    for frame in (b"\x01\x02\x03", bytes(bad_ip), short_tcp, bytes(bad_offset), bytes(bad_options),
                  bad_arp):
        t.send(frame)
    got = lines(out)
    assert "a > [malformed: eth.truncated] 3 bytes 010203" in got
    assert "  malformed: eth.truncated (3 bytes)" in got
    assert "a > IP [malformed: ipv4.bad_total_length] 40 bytes" in got
    assert "  ip: malformed (ipv4.bad_total_length) 40 bytes" in got
    assert "a > IP 10.0.0.1 > 10.0.0.2: TCP [malformed: tcp.truncated] 14 bytes" in got
    assert "a > IP 10.0.0.1.40000 > 10.0.0.2.7: TCP [malformed: tcp.bad_offset] 20 bytes" in got
    assert any("options [malformed opt-2]" in line for line in got)
    assert "a > ARP [malformed: arp.unsupported_hardware] 28 bytes" in got


def test_decoding_never_raises() -> None:
    rng = random.Random(9)
    formatter = TraceFormatter(verbose=2, hexdump=True)
    valid = CONVERSATION + [eth_ip(A, B, 17, udp.build(A, B, 1, 2, b"x" * 30)),
                            eth_ip(A, B, 1, icmp.build_error(3, 3, CONVERSATION[0][14:]))]
    for n in range(3000):
        if n % 2:
            frame = rng.randbytes(rng.randrange(0, 120))
        else:  # a valid frame with a few bytes changed or cut: reaches the deeper decoders
            frame = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame[:rng.randrange(1, len(frame) + 1)])
        for offload in (None, "trusted", "gso"):
            summary, extra = formatter.lines(frame, layer=rng.choice((2, 3)), offload=offload)
            assert summary and isinstance(extra, list)
    # a broken output stream does not stop the link either
    closed = io.StringIO()
    closed.close()
    link, _ = pipe()
    Tracer(link, out=closed).send(CONVERSATION[0])


def test_describe_is_stateless() -> None:
    assert describe(CONVERSATION[3])[0].endswith("Flags [P.], seq 1001:1006, ack 5001, win 502, length 5")
    assert describe(CONVERSATION[3], verbose=2)[1].startswith("  eth:")


def test_gratuitous_arp_is_named() -> None:
    t, out = tracer()
    t.send(ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, arp.build(1, MAC_A, A, bytes(6), A)))
    assert summaries(out) == ["a > ARP who-has 10.0.0.1 tell 10.0.0.1 (gratuitous)"]


def test_received_frames_are_traced_with_less_than() -> None:
    out = io.StringIO()
    switch = Switch()
    left, right = switch.port(name="a"), switch.port(name="b")
    t = Tracer(left, out=out)
    right.send(CONVERSATION[1])
    assert t.recv_batch() == [(CONVERSATION[1], False)]
    assert summaries(out)[0].startswith("a < IP 10.0.0.2.7 > 10.0.0.1.40000: Flags [S.], seq 0, ack ")
