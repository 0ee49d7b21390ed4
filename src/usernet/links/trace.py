"""A tracer: one tcpdump-style line per frame in each direction; with ``verbose`` (or the
``usernet.trace`` logger at DEBUG) a microps-style dump of every header field follows.

Decoding never raises: whatever it cannot parse is shown as malformed.
"""

from __future__ import annotations

import logging
import struct
import sys
import time
from typing import Any, TextIO

from usernet.links.base import Link
from usernet.links.middleware import LinkWrapper
from usernet.wire import arp, ethernet, icmp, ipv4, udp
from usernet.wire.errors import ParseError

log = logging.getLogger("usernet.trace")

_TCP_FLAGS = "FSRPAUEC"
_ICMP_NAMES = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded", 12: "parameter problem"}


def _tcp_summary(src: str, dst: str, seg: memoryview, fields: list[tuple[str, Any]]) -> str:
    if len(seg) < 20:
        return f"TCP {src} > {dst}: [malformed: {len(seg)} bytes]"
    sport, dport, seq, ack, off_flags, win = struct.unpack_from("!HHIIHH", seg, 0)
    offset = (off_flags >> 12) * 4
    flags = "".join(c for i, c in enumerate(_TCP_FLAGS) if off_flags & (1 << i)) or "."
    length = max(0, len(seg) - offset)
    fields += [("sport", sport), ("dport", dport), ("seq", seq), ("ack", ack), ("offset", offset),
               ("flags", flags), ("window", win)]
    text = f"TCP {src}.{sport} > {dst}.{dport}: [{flags}] seq {seq}"
    if off_flags & 0x10:
        text += f" ack {ack}"
    text += f" win {win}"
    if offset > 20 and offset <= len(seg):
        text += f" opts {_tcp_options(seg[20:offset])}"
    return text + f" len {length}"


def _tcp_options(raw: memoryview) -> str:
    parts = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            parts.append("eol")
            break
        if kind == 1:
            parts.append("nop")
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            parts.append("malformed")
            break
        size = raw[i + 1]
        body = bytes(raw[i + 2:i + size])
        if kind == 2 and len(body) == 2:
            parts.append(f"mss {int.from_bytes(body, 'big')}")
        elif kind == 3 and len(body) == 1:
            parts.append(f"wscale {body[0]}")
        elif kind == 4:
            parts.append("sackOK")
        elif kind == 5:
            blocks = [f"{int.from_bytes(body[j:j + 4], 'big')}:{int.from_bytes(body[j + 4:j + 8], 'big')}"
                      for j in range(0, len(body) - 7, 8)]
            parts.append("sack " + " ".join(blocks))
        elif kind == 8 and len(body) == 8:
            parts.append(f"TS val {int.from_bytes(body[:4], 'big')} ecr {int.from_bytes(body[4:], 'big')}")
        else:
            parts.append(f"opt-{kind}")
        i += size
    return "[" + ",".join(parts) + "]"


def describe(frame: bytes | bytearray | memoryview, layer: int = 2) -> tuple[str, list[tuple[str, Any]]]:
    """A one-line summary and the list of header fields (for the verbose dump)."""
    fields: list[tuple[str, Any]] = []
    try:
        offset = 0
        prefix = ""
        if layer == 2:
            dst, src, ethertype, offset = ethernet.parse(frame)
            fields += [("eth.dst", ethernet.format_mac(dst)), ("eth.src", ethernet.format_mac(src)),
                       ("eth.type", f"0x{ethertype:04x}")]
            prefix = f"{ethernet.format_mac(src)} > {ethernet.format_mac(dst)} "
            if ethertype == ethernet.ETHERTYPE_ARP:
                packet = arp.parse(frame, offset)
                fields += list(zip(("arp.op", "arp.sha", "arp.spa", "arp.tha", "arp.tpa"),
                                   (packet.op, ethernet.format_mac(packet.sender_mac), ipv4.ntoa(packet.sender_ip),
                                    ethernet.format_mac(packet.target_mac), ipv4.ntoa(packet.target_ip)),
                                   strict=True))
                if packet.op == arp.OP_REQUEST:
                    return (f"{prefix}ARP who-has {ipv4.ntoa(packet.target_ip)} tell {ipv4.ntoa(packet.sender_ip)}",
                            fields)
                return (f"{prefix}ARP reply {ipv4.ntoa(packet.sender_ip)} is-at "
                        f"{ethernet.format_mac(packet.sender_mac)}", fields)
            if ethertype != ethernet.ETHERTYPE_IPV4:
                return f"{prefix}ethertype 0x{ethertype:04x} length {len(frame)}", fields
        header = ipv4.parse(frame, offset, verify_checksum=False)
        src_ip, dst_ip = ipv4.ntoa(header.src), ipv4.ntoa(header.dst)
        fields += [("ip.ihl", header.header_len), ("ip.tos", header.tos), ("ip.len", header.total_length),
                   ("ip.id", header.ident), ("ip.flags_frag", f"0x{header.flags_frag:04x}"), ("ip.ttl", header.ttl),
                   ("ip.proto", header.proto), ("ip.src", src_ip), ("ip.dst", dst_ip)]
        text = f"{prefix}IP "
        if header.fragment_offset:
            return (text + f"{src_ip} > {dst_ip}: fragment id {header.ident} offset {header.fragment_offset} "
                    f"len {len(header.payload)}{' +' if header.more_fragments else ''}", fields)
        frag = f" (frag id {header.ident} +)" if header.more_fragments else ""
        payload = header.payload
        if header.proto == ipv4.PROTO_ICMP:
            message = icmp.parse(payload, verify_checksum=False)
            name = _ICMP_NAMES.get(message.type, f"type {message.type}")
            fields += [("icmp.type", message.type), ("icmp.code", message.code)]
            extra = ""
            if message.type in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
                ident, seq = icmp.echo_fields(message)
                extra = f" id {ident} seq {seq}"
            elif message.code:
                extra = f" code {message.code}"
            return text + f"{src_ip} > {dst_ip}: ICMP {name}{extra}, length {len(payload)}{frag}", fields
        if header.proto == ipv4.PROTO_UDP and not header.more_fragments:
            sport, dport, data = udp.parse(payload, header.src, header.dst, verify_checksum=False)
            fields += [("udp.sport", sport), ("udp.dport", dport), ("udp.len", len(data))]
            return text + f"{src_ip}.{sport} > {dst_ip}.{dport}: UDP length {len(data)}{frag}", fields
        if header.proto == ipv4.PROTO_TCP and not header.more_fragments:
            return text + _tcp_summary(src_ip, dst_ip, payload, fields) + frag, fields
        return text + f"{src_ip} > {dst_ip}: proto {header.proto} length {len(payload)}{frag}", fields
    except ParseError as err:
        return f"[malformed: {err.reason}] {bytes(frame[:32]).hex()}", fields
    except Exception as err:  # a tracer must never take the host down
        return f"[undecodable: {type(err).__name__}] {bytes(frame[:32]).hex()}", fields


class Tracer(LinkWrapper):
    """Prints ``HH:MM:SS.ffffff name > summary`` (``<`` for received) to *out* for every frame."""

    def __init__(self, inner: Link, out: TextIO | None = None, verbose: bool = False) -> None:
        super().__init__(inner)
        self.out = out if out is not None else sys.stderr
        self.verbose = verbose

    def _trace(self, direction: str, frame: bytes | bytearray | memoryview) -> None:
        summary, fields = describe(frame, self.layer)
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int((now % 1) * 1e6):06d}"
        try:
            print(f"{stamp} {self.name} {direction} {summary}", file=self.out, flush=True)
            if self.verbose:
                for name, value in fields:
                    print(f"        {name:<16} {value}", file=self.out)
        except (OSError, ValueError):
            pass  # a closed or broken output must not stop the link
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s\n%s", self.name, direction, summary,
                      "\n".join(f"        {n:<16} {v}" for n, v in fields))

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames = self.inner.recv_batch(max_frames)
        for frame, _ in frames:
            self._trace("<", frame)
        return frames

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self._trace(">", frame)
        self.inner.send(frame)
