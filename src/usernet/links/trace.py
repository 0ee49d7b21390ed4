"""A tracer: one tcpdump-style line per frame in each direction, and on request every header field.

Levels (``verbose``, an int; ``True`` means 2, as it meant "the full dump" before levels existed):

* 0: one line per frame, ``HH:MM:SS.ffffff NAME > SUMMARY`` (``<`` for received frames). TCP
  sequence and acknowledgement numbers are relative, as tcpdump and Wireshark print them: per
  connection and direction, the first sequence number seen (normally the SYN's ISN) is 0, and
  acknowledgement numbers (and SACK blocks) are relative to the other direction's. A connection
  first seen mid-stream takes the first sequence number seen in each direction (or, for the
  direction not seen yet, the number the other side acknowledges). ``absolute=True`` prints the
  raw numbers (tcpdump -S). The table behind this is bounded (:data:`MAX_FLOWS` connections,
  least recently used out).
* 1 (tcpdump -v): one more, indented line with the MACs, TTL, IP id, flags, length and whether each
  checksum verifies.
* 2 (tcpdump -vv, microps' logs): a dump of every header field, layer by layer (``  eth:``,
  ``  ip:``, ``  arp:``, ``  icmp:``, ``  udp:``, ``  tcp:``), with units: header lengths and
  the TCP data offset in 32-bit words *and* bytes, the fragment offset in 8-byte units *and*
  bytes, lengths in bytes; each checksum with its verdict: ``(ok)``, ``(bad, expected 0x....)``,
  or, when the link said the medium handles it (a received frame marked checksum-trusted, or a
  TSO super-segment sent through ``send_gso``), ``(partial)`` for a field holding just the
  pseudo-header sum (CHECKSUM_PARTIAL) and ``(offloaded)`` for anything else.

``hexdump=True`` (tcpdump -x/-X) adds an offset / hex / ASCII dump of each whole frame.

Each frame's text is written once. The ``usernet.trace`` logger keeps its old role: at DEBUG it
asks for the field dump; when ``verbose`` is below 2 the dump goes to that logger (one record per
frame, after the line on *out*), never to both.

Decoding never raises: whatever cannot be parsed is shown as ``[malformed: reason]``.
"""

from __future__ import annotations

import logging
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TextIO

from usernet.links.base import Link
from usernet.links.middleware import LinkWrapper
from usernet.wire import arp, ethernet, icmp, ipv4, udp
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import checksum, finish, pseudo_header_sum
from usernet.wire.errors import ParseError

log = logging.getLogger("usernet.trace")

#: Connections whose sequence bases the tracer remembers (least recently used out).
MAX_FLOWS = 1024

# tcpdump's flag letters, in its order; ACK prints as ".".
_TCP_FLAGS = ((tcpwire.FIN, "F"), (tcpwire.SYN, "S"), (tcpwire.RST, "R"), (tcpwire.PSH, "P"), (tcpwire.ACK, "."),
              (tcpwire.URG, "U"), (tcpwire.ECE, "E"), (tcpwire.CWR, "W"))
_ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88A8: "802.1ad", 0x88CC: "LLDP"}
_PROTOS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}
_ICMP_NAMES = {0: "echo reply", 3: "unreachable", 4: "source quench", 5: "redirect", 8: "echo request",
               11: "time exceeded", 12: "parameter problem", 13: "timestamp request", 14: "timestamp reply"}
_UNREACH = {0: "net", 1: "host", 2: "protocol", 3: "port", 4: "need to frag"}
_TCP_HEAD = struct.Struct("!HHIIBBHHH")
_UDP_HEAD = struct.Struct("!HHHH")
_MASK32 = 0xFFFFFFFF

#: What the link said about a frame's L4 checksum: None (nothing: it must verify), "trusted"
#: (a received frame the medium vouches for) or "gso" (a TSO super-segment being sent).
Offload = str | None


def _flag_text(flags: int) -> str:
    return "".join(letter for bit, letter in _TCP_FLAGS if flags & bit) or "none"


def _named(value: int, names: dict[int, str], fmt: str = "{}") -> str:
    name = names.get(value)
    return fmt.format(value) + (f" ({name})" if name else "")


class FlowTable:
    """Sequence-number bases per TCP connection, for relative numbers.

    Keyed by the connection's 4-tuple in a canonical order; each entry holds the base of both
    directions. Bounded: beyond *max_flows* connections the least recently used one is forgotten
    (if it shows up again, its numbers restart from the next segment seen)."""

    def __init__(self, max_flows: int = MAX_FLOWS) -> None:
        self.max_flows = max(1, max_flows)
        self._table: OrderedDict[tuple[int, int, int, int], list[int | None]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, four: object) -> bool:
        if not isinstance(four, tuple) or len(four) != 4:
            return False
        src, sport, dst, dport = four
        return (src, sport, dst, dport) in self._table or (dst, dport, src, sport) in self._table

    def clear(self) -> None:
        self._table.clear()

    def bases(self, src: int, sport: int, dst: int, dport: int, seq: int, ack: int,
              flags: int) -> tuple[int, int | None]:
        """``(base of this direction, base of the other direction or None)`` for one segment,
        learning from it."""
        forward = (src, sport, dst, dport)
        reverse = (dst, dport, src, sport)
        key, side = (forward, 0) if forward <= reverse else (reverse, 1)
        table = self._table
        entry = table.get(key)
        syn_only = flags & (tcpwire.SYN | tcpwire.ACK) == tcpwire.SYN
        if entry is None or (syn_only and entry[side] != seq):
            entry = [None, None]  # a new connection (a SYN with a new ISN restarts a reused 4-tuple)
            table[key] = entry
        else:
            table.move_to_end(key)
        if entry[side] is None or flags & tcpwire.SYN:
            entry[side] = seq
        if flags & tcpwire.ACK and entry[1 - side] is None:
            entry[1 - side] = ack  # the other direction not seen yet: what it is acknowledged for is its 0
        while len(table) > self.max_flows:
            table.popitem(last=False)
            self.evicted += 1
        mine = entry[side]
        assert mine is not None
        return mine, entry[1 - side]


class _Frame:
    """What decoding one frame produced: the summary, the -v parts, the -vv dump lines."""

    __slots__ = ("summary", "brief", "dump", "csums")

    def __init__(self) -> None:
        self.summary = ""
        self.brief: list[str] = []
        self.dump: list[str] = []
        self.csums: list[str] = []  # "ip ok", "tcp partial", ... for the -v line


def hexdump_lines(data: bytes | bytearray | memoryview) -> list[str]:
    """``  0000  45 00 00 3c 00 01 40 00  40 06 26 b6 0a 00 00 01  |E..<..@.@.&.....|``: 16 bytes a
    line, offset in hex (as ``hexdump -C``; tcpdump -X groups the same bytes in pairs)."""
    view = bytes(data)
    if not view:
        return ["  (empty frame)"]
    lines = []
    for offset in range(0, len(view), 16):
        chunk = view[offset:offset + 16]
        left = " ".join(f"{b:02x}" for b in chunk[:8])
        right = " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"  {offset:04x}  {left:<23}  {right:<23}  |{text}|")
    return lines


class TraceFormatter:
    """Turns frames into trace lines; the part of :class:`Tracer` that knows no link. Also usable
    on its own (the demo traces the in-memory switch with one)."""

    def __init__(self, verbose: bool | int = 0, absolute: bool = False, hexdump: bool = False,
                 max_flows: int = MAX_FLOWS) -> None:
        self.verbose = verbose
        self.absolute = absolute
        self.hexdump = hexdump
        self.flows = FlowTable(max_flows)
        self.lock = threading.Lock()

    @property
    def verbose(self) -> int:
        return self._verbose

    @verbose.setter
    def verbose(self, value: bool | int) -> None:
        # True meant "the field dump" before there were levels.
        self._verbose = 2 if value is True else max(0, int(value))

    # ------------------------------------------------------------------ output

    def lines(self, frame: bytes | bytearray | memoryview, layer: int = 2, offload: Offload = None,
              gso_mss: int | None = None) -> tuple[str, list[str]]:
        """``(summary, extra lines)`` for one frame: the -v line or the -vv dump as ``verbose``
        says, then the hexdump if asked. Never raises."""
        summary, brief, dump = self._render(frame, layer, offload, gso_mss, full=self._verbose >= 1)
        extra = brief if self._verbose == 1 else dump if self._verbose >= 2 else []
        if self.hexdump:
            extra = extra + hexdump_lines(frame)
        return summary, extra

    def _render(self, frame: bytes | bytearray | memoryview, layer: int, offload: Offload, gso_mss: int | None,
                full: bool) -> tuple[str, list[str], list[str]]:
        with self.lock:
            decoded = self._decode(frame, layer, offload, full)
        summary = decoded.summary + (f" (TSO, mss {gso_mss})" if gso_mss else "")
        parts = decoded.brief + ([f"csum {', '.join(decoded.csums)}"] if decoded.csums else [])
        brief = ["    " + ", ".join(parts)] if parts and full else []
        return summary, brief, decoded.dump if full else []

    def emit(self, out: TextIO, name: str, direction: str, frame: bytes | bytearray | memoryview, layer: int = 2,
             offload: Offload = None, gso_mss: int | None = None, now: float | None = None) -> None:
        """Write the frame's line and its extra lines to *out* in one write. Below ``verbose=2``,
        a ``usernet.trace`` logger enabled for DEBUG gets the field dump instead (one record)."""
        level = self._verbose
        to_log = level < 2 and log.isEnabledFor(logging.DEBUG)
        summary, brief, dump = self._render(frame, layer, offload, gso_mss, full=level >= 1 or to_log)
        extra = brief if level == 1 else dump if level >= 2 else []
        if self.hexdump:
            extra = extra + hexdump_lines(frame)
        stamp_at = time.time() if now is None else now
        stamp = time.strftime("%H:%M:%S", time.localtime(stamp_at)) + f".{int((stamp_at % 1) * 1e6):06d}"
        try:
            out.write("\n".join([f"{stamp} {name} {direction} {summary}", *extra]) + "\n")
            out.flush()
        except (OSError, ValueError):
            pass  # a closed or broken output must not stop the link
        if to_log:
            log.debug("%s %s %s\n%s", name, direction, summary, "\n".join(dump))

    # ------------------------------------------------------------------ decoding

    def _decode(self, frame: bytes | bytearray | memoryview, layer: int, offload: Offload, full: bool) -> _Frame:
        result = _Frame()
        try:
            view = memoryview(frame).cast("B") if isinstance(frame, memoryview) else memoryview(frame)
            self._decode_into(result, view, layer, offload, full)
        except ParseError as err:
            result.summary += f"[malformed: {err.reason}] {len(frame)} bytes {bytes(frame[:32]).hex()}"
            result.dump.append(f"  malformed: {err.reason} ({len(frame)} bytes)")
        except Exception as err:  # a tracer must never take the host down
            result.summary += f"[undecodable: {type(err).__name__}] {len(frame)} bytes {bytes(frame[:32]).hex()}"
            result.dump.append(f"  undecodable: {type(err).__name__}: {err}")
        return result

    def _decode_into(self, out: _Frame, view: memoryview, layer: int, offload: Offload, full: bool) -> None:
        offset = 0
        if layer == 2:
            dst, src, ethertype, offset = ethernet.parse(view)
            dst_text, src_text = ethernet.format_mac(dst), ethernet.format_mac(src)
            line = f"  eth: dst {dst_text} src {src_text}"
            at = ethernet.HEADER_LEN
            while at < offset:  # VLAN tags: TPID (before), TCI, then the next type
                tpid = int.from_bytes(view[at - 2:at], "big")
                tci = int.from_bytes(view[at:at + 2], "big")
                line += f" type {_named(tpid, _ETHERTYPES, '0x{:04x}')} vlan {tci & 0x0FFF} prio {tci >> 13}"
                at += 4
            out.dump.append(line + f" type {_named(ethertype, _ETHERTYPES, '0x{:04x}')} frame {len(view)} bytes")
            out.brief.append(f"{src_text} > {dst_text}")
            if ethertype == ethernet.ETHERTYPE_ARP:
                self._arp(out, view, offset)
                return
            if ethertype != ethernet.ETHERTYPE_IPV4:
                out.summary = (f"{src_text} > {dst_text} ethertype {_named(ethertype, _ETHERTYPES, '0x{:04x}')}, "
                               f"length {len(view)}")
                return
        self._ip(out, view, offset, offload, full)

    def _arp(self, out: _Frame, view: memoryview, offset: int) -> None:
        try:
            packet = arp.parse(view, offset)
        except ParseError as err:
            out.summary = f"ARP [malformed: {err.reason}] {len(view) - offset} bytes"
            out.dump.append(f"  arp: malformed ({err.reason}) {len(view) - offset} bytes")
            return
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", view, offset)
        spa, tpa = ipv4.ntoa(packet.sender_ip), ipv4.ntoa(packet.target_ip)
        sha, tha = ethernet.format_mac(packet.sender_mac), ethernet.format_mac(packet.target_mac)
        out.dump.append(f"  arp: htype {htype} (Ethernet) ptype 0x{ptype:04x} (IPv4) hlen {hlen} plen {plen} "
                        f"op {op} ({'request' if op == arp.OP_REQUEST else 'reply'})")
        out.dump.append(f"  arp: sender {sha} {spa} target {tha} {tpa}")
        if packet.op == arp.OP_REQUEST:
            out.summary = f"ARP who-has {tpa} tell {spa}" + (" (gratuitous)" if spa == tpa else "")
        else:
            out.summary = f"ARP reply {spa} is-at {sha}"

    def _ip(self, out: _Frame, view: memoryview, offset: int, offload: Offload, full: bool) -> None:
        try:
            header = ipv4.parse(view, offset, verify_checksum=False)
        except ParseError as err:
            out.summary = f"IP [malformed: {err.reason}] {len(view) - offset} bytes"
            out.dump.append(f"  ip: malformed ({err.reason}) {len(view) - offset} bytes")
            return
        src, dst = ipv4.ntoa(header.src), ipv4.ntoa(header.dst)
        raw_header = view[offset:offset + header.header_len]
        ver_ihl = raw_header[0]
        (field,) = struct.unpack_from("!H", raw_header, 10)
        flag_bits = header.flags_frag >> 13
        flag_names = ",".join(name for bit, name in ((2, "DF"), (1, "MF")) if flag_bits & bit) or "none"
        frag_units = header.flags_frag & ipv4.OFFSET_MASK
        if full:
            valid = checksum(raw_header) == 0
            zeroed = bytearray(raw_header)
            zeroed[10:12] = b"\0\0"
            expected = checksum(zeroed)
            verdict = f"0x{field:04x} (ok)" if valid else f"0x{field:04x} (bad, expected 0x{expected:04x})"
            out.csums.append("ip ok" if valid else "ip bad")
            out.dump.append(f"  ip: version {ver_ihl >> 4} ihl {ver_ihl & 0x0F} ({header.header_len} bytes) "
                            f"tos 0x{header.tos:02x} length {header.total_length} bytes id {header.ident} "
                            f"flags 0x{flag_bits:x} [{flag_names}] frag offset {frag_units} "
                            f"({header.fragment_offset} bytes)")
            out.dump.append(f"  ip: ttl {header.ttl} proto {_named(header.proto, _PROTOS)} csum {verdict} "
                            f"src {src} dst {dst}")
            if header.header_len > ipv4.HEADER_LEN:
                out.dump.append(f"  ip: options {bytes(header.options).hex(' ')}")
            out.brief.append(f"ttl {header.ttl}, id {header.ident}, flags [{flag_names}], "
                             f"length {header.total_length}")
        text = "IP "
        payload = header.payload
        if header.fragment_offset:
            out.summary = (f"{text}{src} > {dst}: fragment id {header.ident} offset {header.fragment_offset} "
                           f"len {len(payload)}{' +' if header.more_fragments else ''}")
            out.dump.append(f"  ip: fragment of {len(payload)} bytes (the transport header is in the first one)")
            return
        frag = f" (frag id {header.ident} +)" if header.more_fragments else ""
        # The transport checksum covers the whole datagram: a first fragment cannot be verified.
        context: Offload = "fragment" if header.more_fragments else offload
        if header.proto == ipv4.PROTO_ICMP:
            out.summary = text + self._icmp(out, payload, src, dst, context, full) + frag
        elif header.proto == ipv4.PROTO_UDP:
            out.summary = text + self._udp(out, payload, header, src, dst, context, full) + frag
        elif header.proto == ipv4.PROTO_TCP:
            out.summary = text + self._tcp(out, payload, header, src, dst, context, full) + frag
        else:
            out.summary = f"{text}{src} > {dst}: proto {_named(header.proto, _PROTOS)} length {len(payload)}{frag}"

    @staticmethod
    def _verdict(out: _Frame, proto: str, field: int, data: memoryview, pseudo: int, offload: Offload,
                 offset: int) -> str:
        """The checksum field's text; *offset* is where the field sits in *data*."""
        if offload == "fragment":
            out.csums.append(f"{proto} unverified (fragment)")
            return f"0x{field:04x} (not verified: fragment)"
        if proto == "udp" and field == 0:
            out.csums.append("udp none")
            return "0x0000 (none)"
        if checksum(data, pseudo) == 0:
            out.csums.append(f"{proto} ok")
            return f"0x{field:04x} (ok)"
        if offload is not None:
            partial = 0xFFFF - finish(pseudo) if pseudo else None  # the folded pseudo-header sum
            state = "partial" if field == partial else "offloaded"
            out.csums.append(f"{proto} {state}")
            return f"0x{field:04x} ({state})"
        zeroed = bytearray(data)
        zeroed[offset:offset + 2] = b"\0\0"
        expected = checksum(zeroed, pseudo)
        if proto == "udp" and expected == 0:
            expected = 0xFFFF
        out.csums.append(f"{proto} bad")
        return f"0x{field:04x} (bad, expected 0x{expected:04x})"

    def _icmp(self, out: _Frame, payload: memoryview, src: str, dst: str, context: Offload, full: bool) -> str:
        try:
            message = icmp.parse(payload, verify_checksum=False)
        except ParseError as err:
            out.dump.append(f"  icmp: malformed ({err.reason}) {len(payload)} bytes")
            return f"{src} > {dst}: ICMP [malformed: {err.reason}] {len(payload)} bytes"
        name = _ICMP_NAMES.get(message.type, f"type {message.type}")
        extra = ""
        detail = ""
        quote_line = None
        if message.type in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
            ident, seq = icmp.echo_fields(message)
            extra = f" id {ident} seq {seq}"
            detail = f" id {ident} seq {seq}"
        elif message.type in icmp.ERROR_TYPES:
            detail = f" rest 0x{message.rest:08x}"
            try:
                quoted = icmp.quoted_datagram(message)
                qsrc, qdst = ipv4.ntoa(quoted.src), ipv4.ntoa(quoted.dst)
                qsport, qdport = struct.unpack_from("!HH", quoted.transport, 0)
                ported = quoted.proto in (ipv4.PROTO_TCP, ipv4.PROTO_UDP)
                if message.type == icmp.DEST_UNREACHABLE:
                    if message.code == icmp.CODE_PORT_UNREACHABLE and ported:
                        proto_name = _PROTOS[quoted.proto].lower()
                        name = f"{qdst} {proto_name} port {qdport} unreachable"
                    elif message.code == icmp.CODE_FRAGMENTATION_NEEDED:
                        name = f"{qdst} unreachable - need to frag (mtu {icmp.next_hop_mtu(message)})"
                    else:
                        name = f"{qdst} {_UNREACH.get(message.code, f'code {message.code}')} unreachable"
                elif message.code:
                    extra = f" code {message.code}"
                ports = f" sport {qsport} dport {qdport}" if ported else ""
                quote_line = f"  icmp: quoted {qsrc} > {qdst} proto {_named(quoted.proto, _PROTOS)}{ports}"
            except ParseError as err:
                extra = f" code {message.code} [quote malformed: {err.reason}]"
                quote_line = f"  icmp: quoted datagram malformed ({err.reason})"
        elif message.code:
            extra = f" code {message.code}"
        if full:
            (field,) = struct.unpack_from("!H", payload, 2)
            verdict = self._verdict(out, "icmp", field, payload, 0, "fragment" if context == "fragment" else None, 2)
            out.dump.append(f"  icmp: type {_named(message.type, _ICMP_NAMES)} code {message.code} csum {verdict}"
                            f"{detail} payload {len(message.body)} bytes")
            if quote_line:
                out.dump.append(quote_line)
        return f"{src} > {dst}: ICMP {name}{extra}, length {len(payload)}"

    def _udp(self, out: _Frame, payload: memoryview, header: ipv4.IPv4Header, src: str, dst: str, context: Offload,
             full: bool) -> str:
        if context == "fragment":  # the length field covers the whole datagram, not this fragment
            if len(payload) < udp.HEADER_LEN:
                out.dump.append(f"  udp: malformed (udp.truncated) {len(payload)} bytes")
                return f"{src} > {dst}: UDP [malformed: udp.truncated] {len(payload)} bytes"
            sport, dport, length, field = _UDP_HEAD.unpack_from(payload, 0)
            out.dump.append(f"  udp: sport {sport} dport {dport} length {length} bytes csum 0x{field:04x} "
                            f"(not verified: fragment)")
            out.csums.append("udp unverified (fragment)")
            return f"{src}.{sport} > {dst}.{dport}: UDP length {max(0, length - udp.HEADER_LEN)}"
        try:
            sport, dport, data = udp.parse(payload, header.src, header.dst, verify_checksum=False)
        except ParseError as err:
            out.dump.append(f"  udp: malformed ({err.reason}) {len(payload)} bytes")
            return f"{src} > {dst}: UDP [malformed: {err.reason}] {len(payload)} bytes"
        if full:
            length = len(data) + udp.HEADER_LEN
            (field,) = struct.unpack_from("!H", payload, 6)
            pseudo = pseudo_header_sum(header.src, header.dst, udp.PROTO, length)
            verdict = self._verdict(out, "udp", field, payload[:length], pseudo, context, 6)
            out.dump.append(f"  udp: sport {sport} dport {dport} length {length} bytes csum {verdict} "
                            f"payload {len(data)} bytes")
        return f"{src}.{sport} > {dst}.{dport}: UDP length {len(data)}"

    def _tcp(self, out: _Frame, seg: memoryview, header: ipv4.IPv4Header, src: str, dst: str, context: Offload,
             full: bool) -> str:
        if len(seg) < tcpwire.HEADER_LEN:
            out.dump.append(f"  tcp: malformed (tcp.truncated) {len(seg)} bytes")
            return f"{src} > {dst}: TCP [malformed: tcp.truncated] {len(seg)} bytes"
        sport, dport, seq, ack, off_byte, flags, window, field, urgent = _TCP_HEAD.unpack_from(seg, 0)
        words = off_byte >> 4
        data_offset = words * 4
        where = f"{src}.{sport} > {dst}.{dport}"
        if data_offset < tcpwire.HEADER_LEN or data_offset > len(seg):
            out.dump.append(f"  tcp: sport {sport} dport {dport} offset {words} ({data_offset} bytes): "
                            f"malformed (tcp.bad_offset) {len(seg)} bytes")
            return f"{where}: TCP [malformed: tcp.bad_offset] {len(seg)} bytes"
        length = len(seg) - data_offset
        text_flags = _flag_text(flags)
        seq_base, ack_base = self.flows.bases(header.src, sport, header.dst, dport, seq, ack, flags)
        if self.absolute:
            seq_shown, ack_shown, peer_base = seq, ack, 0
        else:
            seq_shown = (seq - seq_base) & _MASK32
            peer_base = ack_base if ack_base is not None else 0
            ack_shown = (ack - peer_base) & _MASK32
        text = f"{where}: Flags [{text_flags}], seq {seq_shown}"
        if length:
            text += f":{(seq_shown + length) & _MASK32}"
        if flags & tcpwire.ACK:
            text += f", ack {ack_shown}"
        text += f", win {window}"
        if flags & tcpwire.URG:
            text += f", urg {urgent}"
        options = ""
        if data_offset > tcpwire.HEADER_LEN:
            options = _tcp_options(seg[tcpwire.HEADER_LEN:data_offset], peer_base)
            text += f", options [{options}]"
        text += f", length {length}"
        if full:
            pseudo = pseudo_header_sum(header.src, header.dst, tcpwire.PROTO, len(seg))
            verdict = self._verdict(out, "tcp", field, seg, pseudo, context, 16)
            relative_seq = "" if self.absolute else f" (relative {seq_shown})"
            relative_ack = "" if self.absolute or not flags & tcpwire.ACK else f" (relative {ack_shown})"
            out.dump.append(f"  tcp: sport {sport} dport {dport} seq {seq}{relative_seq} ack {ack}{relative_ack} "
                            f"offset {words} ({data_offset} bytes)")
            flag_field = ((off_byte & 0x0F) << 8) | flags
            out.dump.append(f"  tcp: flags 0x{flag_field:03x} [{text_flags}] window {window} csum {verdict} "
                            f"urgent {urgent} payload {length} bytes")
            if options:
                out.dump.append(f"  tcp: options [{options}]")
        return text


def _tcp_options(raw: memoryview, peer_base: int) -> str:
    """Options in wire order, as tcpdump prints them; SACK edges relative to *peer_base*."""
    parts = []
    i = 0
    n = len(raw)
    while i < n:
        kind = raw[i]
        if kind == tcpwire.OPT_EOL:
            parts.append("eol")
            break
        if kind == tcpwire.OPT_NOP:
            parts.append("nop")
            i += 1
            continue
        if i + 1 >= n or raw[i + 1] < 2 or i + raw[i + 1] > n:
            parts.append(f"malformed opt-{kind}")
            break
        size = raw[i + 1]
        body = bytes(raw[i + 2:i + size])
        if kind == tcpwire.OPT_MSS and len(body) == 2:
            parts.append(f"mss {int.from_bytes(body, 'big')}")
        elif kind == tcpwire.OPT_WSCALE and len(body) == 1:
            parts.append(f"wscale {body[0]}")
        elif kind == tcpwire.OPT_SACK_PERMITTED and not body:
            parts.append("sackOK")
        elif kind == tcpwire.OPT_SACK and body and len(body) % 8 == 0:
            edges = struct.unpack(f"!{len(body) // 4}I", body)
            blocks = [f"{{{(edges[j] - peer_base) & _MASK32}:{(edges[j + 1] - peer_base) & _MASK32}}}"
                      for j in range(0, len(edges), 2)]
            parts.append(f"sack {len(blocks)} " + "".join(blocks))
        elif kind == tcpwire.OPT_TIMESTAMP and len(body) == 8:
            val, ecr = struct.unpack("!II", body)
            parts.append(f"TS val {val} ecr {ecr}")
        else:
            parts.append(f"opt-{kind} len {size}")
        i += size
    return ",".join(parts)


def describe(frame: bytes | bytearray | memoryview, layer: int = 2, verbose: int = 0) -> list[str]:
    """The trace text of one frame on its own (absolute sequence numbers, no flow state)."""
    summary, extra = TraceFormatter(verbose=verbose, absolute=True, max_flows=1).lines(frame, layer)
    return [summary, *extra]


class Tracer(LinkWrapper):
    """Prints ``HH:MM:SS.ffffff name > summary`` (``<`` for received) to *out* (default stderr)
    for every frame; see the module docstring for *verbose*, *absolute* and *hexdump*."""

    def __init__(self, inner: Link, out: TextIO | None = None, verbose: bool | int = False, absolute: bool = False,
                 hexdump: bool = False) -> None:
        super().__init__(inner)
        self.out = out if out is not None else sys.stderr
        self.formatter = TraceFormatter(verbose=verbose, absolute=absolute, hexdump=hexdump)

    @property
    def verbose(self) -> int:
        return self.formatter.verbose

    @verbose.setter
    def verbose(self, value: bool | int) -> None:
        self.formatter.verbose = value

    @property
    def flows(self) -> FlowTable:
        return self.formatter.flows

    def _trace(self, direction: str, frame: bytes | bytearray | memoryview, offload: Offload = None,
               gso_mss: int | None = None) -> None:
        self.formatter.emit(self.out, self.name, direction, frame, self.layer, offload, gso_mss)

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames = self.inner.recv_batch(max_frames)
        for frame, trusted in frames:
            self._trace("<", frame, "trusted" if trusted else None)
        return frames

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self._trace(">", frame)
        self.inner.send(frame)

    def send_gso(self, frame: bytes | bytearray, mss: int) -> None:
        """A TSO super-segment (only reached if a runtime hands one to this wrapper: wrappers do not
        advertise ``gso_max``): traced as one frame with its partial checksum, then passed on."""
        self._trace(">", frame, "gso", mss)
        self.inner.send_gso(frame, mss)  # type: ignore[attr-defined]


__all__: Sequence[str] = ["MAX_FLOWS", "FlowTable", "TraceFormatter", "Tracer", "describe", "hexdump_lines"]
