"""ICMP (RFC 792, RFC 1122 3.2.2): echo, errors delivered to the sockets whose datagrams they
quote, errors sent under the RFC 1122 rules and a rate limit, ping endpoints."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from usernet.errors import os_error
from usernet.stack.base import StackBase
from usernet.stack.interface import ETHERNET, Interface
from usernet.stack.udp import EchoEndpoint
from usernet.wire import icmp, ipv4
from usernet.wire.checksum import update16

IP_HLEN = ipv4.HEADER_LEN
ICMP_HLEN = icmp.HEADER_LEN
_ECHO_HEADER = struct.Struct("!BBHI")  # type, code, checksum, identifier and sequence (RFC 792)
_ip_header = ipv4.header_bytes
_IPV4_TYPE = b"\x08\x00"


class IcmpMixin(StackBase):
    _icmp_tokens: float
    _icmp_tokens_at: float

    if TYPE_CHECKING:  # Ipv4Mixin's (before this class in Stack's method order)
        def route_for(self, dst: int, src: int = 0) -> tuple[Interface, int]: ...

        def _fresh_neighbour(self, iface: Interface, next_hop: int) -> bytes | None: ...

    def _icmp_input(self, header: ipv4.IPv4Header, payload: memoryview, broadcast: bool) -> None:
        counters = self.counters
        message = icmp.parse(payload)
        counters["icmp.rx"] += 1
        kind = message.type
        if kind == icmp.ECHO_REQUEST:
            counters["icmp.rx_echo_request"] += 1
            if broadcast and self.config.echo_ignore_broadcasts:
                self._drop("icmp.echo_broadcast_ignored")
                return
            self._echo_reply(header, message, payload)
        elif kind == icmp.ECHO_REPLY:
            counters["icmp.rx_echo_reply"] += 1
            ident, seq = icmp.echo_fields(message)
            endpoint = self.echo_endpoints.get(ident)
            if endpoint is not None:
                endpoint.deliver((header.src, seq, bytes(message.body), header.ttl, self._now))
        elif kind in icmp.ERROR_TYPES:
            counters["icmp.rx_error"] += 1
            self._deliver_icmp_error(kind, message.code, message.rest & 0xFFFF, message.body, header.src)
        else:
            counters["icmp.rx_other"] += 1

    def _echo_reply(self, header: ipv4.IPv4Header, message: icmp.IcmpMessage, request: memoryview) -> None:
        """RFC 792: the request's data, identifier and sequence sent back with type 0. Its checksum
        is the verified request's updated for the type (RFC 1624), as icmp.build_echo_reply, and
        to a fresh neighbour on Ethernet the frame is joined in one go from the request's body."""
        rest, body = message.rest, message.body
        # The reply's first word is type 0, code 0 (RFC 792), whatever code the request had.
        csum = update16((request[2] << 8) | request[3], (icmp.ECHO_REQUEST << 8) | message.code, 0)
        if csum == 0 and not rest and not any(body):
            csum = 0xFFFF  # an all-zero reply sums to +0, which the incremental update cannot tell
        icmp_header = _ECHO_HEADER.pack(icmp.ECHO_REPLY, 0, csum, rest)
        dst = header.dst
        # From the address the request was sent to (a broadcast request: the outgoing interface's).
        src = dst if self.is_local(dst) else 0
        dst = header.src
        try:
            if src:
                iface, hop = self.route_for(dst, src)
                length = ICMP_HLEN + len(body)
                if iface.layer == ETHERNET and IP_HLEN + length <= min(iface.mtu, ipv4.MAX_PACKET):
                    mac = self._fresh_neighbour(iface, hop)
                    if mac is not None:
                        # What send_ip builds for it (no DF, the configured TTL, the request's TOS).
                        ident = self.ip_ident = (self.ip_ident + 1) & 0xFFFF
                        ip_header = _ip_header(src, dst, ipv4.PROTO_ICMP, length, ident, self.config.ttl,
                                               header.tos, 0)
                        self.counters["ipv4.tx"] += 1
                        self._queue_frame(iface, b"".join((mac, iface.mac, _IPV4_TYPE, ip_header, icmp_header,
                                                           body)))
                        self.counters["icmp.tx_echo_reply"] += 1
                        return
            self.send_ip(src, dst, ipv4.PROTO_ICMP, icmp_header + body, tos=header.tos)
            self.counters["icmp.tx_echo_reply"] += 1
        except OSError:
            self._drop("icmp.reply_unroutable")

    def _deliver_icmp_error(self, kind: int, code: int, next_hop_mtu: int, quoted: memoryview,
                            reporter: int) -> None:
        """Give an ICMP error to the socket whose datagram it quotes (RFC 1122 3.2.2.1)."""
        counters = self.counters
        if len(quoted) < IP_HLEN + 8:
            self._drop("icmp.error_quote_short")
            return
        ihl = (quoted[0] & 0x0F) * 4
        if quoted[0] >> 4 != 4 or ihl < IP_HLEN or len(quoted) < ihl + 8:
            self._drop("icmp.error_quote_bad")
            return
        proto = quoted[9]
        qsrc = int.from_bytes(quoted[12:16], "big")
        qdst = int.from_bytes(quoted[16:20], "big")
        inner = quoted[ihl:]
        if proto == ipv4.PROTO_UDP:
            sport = int.from_bytes(inner[0:2], "big")
            dport = int.from_bytes(inner[2:4], "big")
            for endpoint in self.udp_ports.get(sport, ()):
                # Like Linux: only connected sockets hear about errors (RFC 1122 4.1.3.3 leaves it to us).
                if endpoint.connected and endpoint.remote_addr == qdst and endpoint.remote_port == dport:
                    endpoint.set_error(_udp_errno(kind, code))
                    counters["udp.icmp_error_delivered"] += 1
        elif proto == ipv4.PROTO_TCP:
            if self.tcp is not None:
                self.tcp.icmp_error(qsrc, qdst, inner, kind, code, next_hop_mtu, self._now)
        elif proto == ipv4.PROTO_ICMP and inner[0] == icmp.ECHO_REQUEST:
            echo = self.echo_endpoints.get(int.from_bytes(inner[4:6], "big"))
            if echo is not None:
                echo.deliver_error(kind, code, reporter)

    def _send_icmp_error(self, kind: int, code: int, offending: bytes | bytearray | memoryview, dst: int,
                         rest: int) -> None:
        """RFC 1122 3.2.2: never about an ICMP error, a broadcast, a non-initial fragment or a
        martian source; rate-limited (RFC 1812 4.3.2.8)."""
        counters = self.counters
        if len(offending) >= IP_HLEN:
            quoted_dst = int.from_bytes(offending[16:20], "big")
            flags_frag = int.from_bytes(offending[6:8], "big")
            ihl = (offending[0] & 0x0F) * 4
            if flags_frag & ipv4.OFFSET_MASK:
                return
            if quoted_dst == 0xFFFFFFFF or quoted_dst in self.broadcasts or ipv4.is_multicast(quoted_dst):
                return
            if offending[9] == ipv4.PROTO_ICMP and len(offending) > ihl and offending[ihl] not in (
                    icmp.ECHO_REQUEST, icmp.ECHO_REPLY, 13, 14, 15, 16):
                return
        if not dst or ipv4.is_martian_source(dst) or dst in self.broadcasts:
            return
        now = self._now
        cfg = self.config
        self._icmp_tokens = min(float(cfg.icmp_error_burst),
                                self._icmp_tokens + (now - self._icmp_tokens_at) * cfg.icmp_error_rate)
        self._icmp_tokens_at = now
        if self._icmp_tokens < 1.0:
            self._drop("icmp.error_rate_limited")
            return
        self._icmp_tokens -= 1.0
        try:
            self.send_ip(0, dst, ipv4.PROTO_ICMP, icmp.build_error(kind, code, offending, rest))
            counters["icmp.tx_error"] += 1
        except OSError:
            self._drop("icmp.error_unroutable")

    def echo_open(self) -> EchoEndpoint:
        """An ICMP echo endpoint with a fresh identifier, for ping."""
        for _ in range(100):
            ident = self.rng.randrange(1, 0x10000)
            if ident not in self.echo_endpoints:
                endpoint = self.echo_endpoints[ident] = EchoEndpoint(ident)
                return endpoint
        raise os_error(errno.EAGAIN, "no free ICMP identifier")

    def echo_close(self, endpoint: EchoEndpoint) -> None:
        endpoint.closed = True
        self.echo_endpoints.pop(endpoint.ident, None)

    def echo_send(self, endpoint: EchoEndpoint, dst: int, seq: int, data: bytes) -> None:
        self.send_ip(0, dst, ipv4.PROTO_ICMP, icmp.build_echo(False, endpoint.ident, seq, data))
        self.counters["icmp.tx_echo_request"] += 1


def _udp_errno(kind: int, code: int) -> int:
    if kind == icmp.DEST_UNREACHABLE:
        if code == icmp.CODE_PORT_UNREACHABLE or code == icmp.CODE_PROTOCOL_UNREACHABLE:
            return errno.ECONNREFUSED
        if code == icmp.CODE_NET_UNREACHABLE:
            return errno.ENETUNREACH
        if code == icmp.CODE_FRAGMENTATION_NEEDED:
            return errno.EMSGSIZE
        return errno.EHOSTUNREACH
    return errno.EHOSTUNREACH
