"""IPv4 in and out (RFC 791, RFC 1122 3.2/3.3): validation, local delivery over the loopback,
routing and source selection, fragmentation and reassembly, forwarding (RFC 1812) when enabled.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from usernet.errors import os_error
from usernet.stack.base import StackBase
from usernet.stack.interface import BARE_IP, ETHERNET, LOOPBACK, Interface
from usernet.wire import ethernet, icmp, ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import checksum, le_mod, pseudo_header_sum, update16
from usernet.wire.errors import ParseError

log = logging.getLogger("usernet.stack")

IP_HLEN = ipv4.HEADER_LEN
_MAX_DATAGRAM = ipv4.MAX_PACKET  # 65,535: also what the loopback's 65,536-byte MTU allows
_unpack_ip = ipv4._unpack_from
_ip_header = ipv4.header_bytes
_from_bytes = int.from_bytes
_is_martian = ipv4.is_martian_source
_IPV4_TYPE = b"\x08\x00"
# Flags/offset bits other than DF: reserved, MF or a fragment offset (not the fast path's case).
_NOT_DF = ipv4.FLAG_RESERVED | ipv4.FLAG_MF | ipv4.OFFSET_MASK


def _is_link_local(address: int) -> bool:
    return (address >> 16) == 0xA9FE  # 169.254/16 (RFC 3927: never forwarded)


def _complete_l4_checksum(packet: bytearray, header: ipv4.IPv4Header) -> None:
    """A frame the link vouched for may carry a partial checksum (CHECKSUM_PARTIAL: only the
    pseudo-header sum, the kernel was to finish it). Forwarded to another link, it must be
    complete; recomputing is right for a valid one too."""
    start = header.header_len
    length = len(packet) - start
    if header.proto == ipv4.PROTO_TCP and length >= 20:
        at = start + 16
    elif header.proto == ipv4.PROTO_UDP and length >= 8 and packet[start + 6:start + 8] != b"\0\0":
        at = start + 6  # a zero UDP checksum means none was sent (RFC 768): keep it so
    else:
        return
    packet[at:at + 2] = b"\0\0"
    csum = checksum(memoryview(packet)[start:], pseudo_header_sum(header.src, header.dst, header.proto, length))
    if header.proto == ipv4.PROTO_UDP and csum == 0:
        csum = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    packet[at:at + 2] = csum.to_bytes(2, "big")


class Ipv4Mixin(StackBase):
    # ----------------------------------------------------------------- input

    def _ip_input(self, iface: Interface, frame: bytes | bytearray | memoryview, offset: int, trusted: bool) -> None:
        counters = self.counters
        view = memoryview(frame)
        if len(view) - offset >= IP_HLEN:
            # The bulk of all input: an unfragmented TCP segment without IP options for one of our
            # addresses. Handled here without building an IPv4Header; the checks are ipv4.parse's
            # and the general path's below, in the same order, with the same counters.
            ver_ihl, _, total_length, _, flags_frag, _, proto, _, src, dst = _unpack_ip(view, offset)
            local_addrs = self.local_addrs
            if (ver_ihl == 0x45 and proto == 6 and not flags_frag & _NOT_DF and dst in local_addrs
                    and IP_HLEN <= total_length <= len(view) - offset):
                end = offset + total_length
                if iface.layer != LOOPBACK:
                    if _from_bytes(view[offset:offset + IP_HLEN], "little") % 0xFFFF:
                        raise ParseError("ipv4.bad_checksum")  # RFC 1071: see ipv4.parse
                    counters["ipv4.rx"] += 1
                    first = src >> 24  # ipv4.is_martian_source, inline
                    if (first == 0 and src) or first == 127 or first >= 224 or src in self.broadcasts \
                            or src in local_addrs:
                        self._drop("ipv4.martian_source")
                        return
                else:
                    counters["ipv4.rx"] += 1
                segment = view[offset + IP_HLEN:end]
                # The pseudo-header's sum (pseudo_header_sum) added in network order: a valid
                # segment's total is a multiple of 0xFFFF (checksum() returns 0 exactly then).
                if not trusted and (le_mod(segment) + ((src + dst + 6 + total_length - IP_HLEN) << 8)) % 0xFFFF:
                    self._drop("tcp.bad_checksum")
                    return
                self.tcp.receive(src, dst, segment, self._now)
                return
        header = ipv4.parse(view, offset, verify_checksum=not iface.is_loopback)
        counters["ipv4.rx"] += 1
        dst = header.dst
        src = header.src
        broadcast = False
        if dst not in self.local_addrs:
            if dst == 0xFFFFFFFF or dst in self.broadcasts:
                broadcast = True
            elif (dst >> 24) == 127 and iface.is_loopback:
                pass  # all of 127/8 is the loopback's (RFC 1122 3.2.1.3)
            elif not iface.addresses and header.proto == ipv4.PROTO_UDP and not iface.is_loopback:
                broadcast = True  # unconfigured (DHCP): accept unicast offers addressed to the new lease
            elif self.config.forward and not iface.is_loopback:
                self._forward(iface, header, frame, offset, trusted)
                return
            else:
                self._drop("ipv4.not_for_us")
                return
        if not iface.is_loopback and (ipv4.is_martian_source(src) or src in self.broadcasts
                                      or src in self.local_addrs):
            # Our own address coming from a link is a loop or a spoof; 127/8 never arrives from outside.
            self._drop("ipv4.martian_source")
            return
        # RFC 1122 3.2.1.7: a host must not discard a datagram for a TTL below 2, so TTL is not checked.
        if header.is_fragment:
            counters["ipv4.fragments_rx"] += 1
            whole = self.reassembler.add(header, memoryview(frame)[offset:], self._now, counters)
            if whole is None:
                return
            payload: memoryview = memoryview(whole)
            trusted = iface.is_loopback  # offload status described the fragment, not the datagram
        else:
            payload = header.payload
        proto = header.proto
        if proto == ipv4.PROTO_TCP:
            if broadcast:
                self._drop("tcp.broadcast_dropped")
                return
            if not trusted and checksum(payload, pseudo_header_sum(src, dst, 6, len(payload))) != 0:
                self._drop("tcp.bad_checksum")
                return
            self.tcp.receive(src, dst, payload, self._now)
        elif proto == ipv4.PROTO_UDP:
            self._udp_input(header, payload, broadcast, trusted, frame, offset)
        elif proto == ipv4.PROTO_ICMP:
            self._icmp_input(header, payload, broadcast)
        else:
            self._drop("ipv4.unknown_protocol")
            if not broadcast:
                self._send_icmp_error(icmp.DEST_UNREACHABLE, icmp.CODE_PROTOCOL_UNREACHABLE,
                                      memoryview(frame)[offset:offset + header.total_length], src, 0)

    # ----------------------------------------------------------------- routing

    def route_for(self, dst: int, src: int = 0) -> tuple[Interface, int]:
        """(interface, next hop) for a datagram to *dst*; raises ENETUNREACH without a route.

        Local destinations (our addresses, 127/8) go through the loopback, as on Linux. The
        limited broadcast leaves by the interface of *src*, else the primary one."""
        if dst in self.local_addrs or (dst >> 24) == 127:
            return self.loopback, dst
        if dst == 0xFFFFFFFF:
            owner = self.local_addrs.get(src)
            return (owner if owner is not None and not owner.is_loopback else self.primary), dst
        route = self.routes.lookup(dst)
        if route is None:
            raise os_error(errno.ENETUNREACH, "Network is unreachable")
        return route.iface, route.gateway or dst

    def next_hop(self, dst: int) -> int:
        """The neighbour a packet to *dst* goes to; raises ENETUNREACH without a route."""
        return self.route_for(dst)[1]

    def source_for(self, dst: int) -> int:
        """The source address for an unbound socket talking to *dst* (RFC 1122 3.3.4.3): the
        destination itself when it is ours, 127.0.0.1 for the rest of 127/8, else the address
        of the outgoing interface on the next hop's subnet, else that interface's primary."""
        if dst in self.local_addrs:
            return dst
        if (dst >> 24) == 127:
            return 0x7F000001
        iface, hop = self.route_for(dst)
        route = self.routes.lookup(dst)
        if route is not None and route.source and route.iface is iface:
            return route.source
        return iface.source_for(hop)

    def mtu_for(self, dst: int) -> int:
        try:
            iface = self.route_for(dst)[0]
        except OSError:
            return self.primary.mtu
        return min(iface.mtu, _MAX_DATAGRAM)

    # ----------------------------------------------------------------- output

    def _next_ident(self) -> int:
        self.ip_ident = (self.ip_ident + 1) & 0xFFFF
        return self.ip_ident

    def send_ip(self, src: int, dst: int, proto: int, payload: bytes | bytearray | memoryview,
                dont_fragment: bool = False, ttl: int | None = None, tos: int = 0) -> None:
        """Route, fragment if needed (RFC 791 3.2) and send one datagram. Raises OSError (ENETUNREACH,
        EMSGSIZE) for the local sender; everything else is silent like a real network."""
        iface, next_hop = self.route_for(dst, src)
        if not src:
            src = self.source_for(dst) if not iface.is_loopback or dst != 0xFFFFFFFF else 0x7F000001
        ttl = self.config.ttl if ttl is None else ttl
        mtu = min(iface.mtu, _MAX_DATAGRAM)
        length = len(payload)
        if IP_HLEN + length <= mtu:
            ident = self.ip_ident = (self.ip_ident + 1) & 0xFFFF
            header = _ip_header(src, dst, proto, length, ident, ttl, tos, ipv4.FLAG_DF if dont_fragment else 0)
            self.counters["ipv4.tx"] += 1
            if iface.layer == ETHERNET:
                mac = self._fresh_neighbour(iface, next_hop)
                if mac is not None:
                    # One copy: Ethernet header, IPv4 header and payload joined into the frame.
                    self._queue_frame(iface, b"".join((mac, iface.mac, _IPV4_TYPE, header, payload)))
                    return
            self._send_on(iface, next_hop, header + payload)
            return
        if dont_fragment or IP_HLEN + length > _MAX_DATAGRAM:
            raise os_error(errno.EMSGSIZE, "Message too long")
        self._send_fragments(iface, next_hop, src=src, dst=dst, proto=proto, payload=memoryview(payload),
                             ident=self._next_ident(), ttl=ttl, tos=tos, first_offset=0, more_after=False)
        self.counters["ipv4.tx"] += 1

    def _send_fragments(self, iface: Interface, next_hop: int, *, src: int, dst: int, proto: int,
                        payload: memoryview, ident: int, ttl: int, tos: int, first_offset: int,
                        more_after: bool) -> None:
        """RFC 791 3.2: cut *payload* into fragments of eight-byte multiples for *iface*'s MTU.
        *first_offset* and *more_after* place a fragment being fragmented again (forwarding)."""
        chunk = (min(iface.mtu, _MAX_DATAGRAM) - IP_HLEN) & ~7
        length = len(payload)
        for start in range(0, length, chunk):
            piece = payload[start:start + chunk]
            more = start + chunk < length or more_after
            packet = bytearray(IP_HLEN + len(piece))
            ipv4.write_header(packet, 0, src=src, dst=dst, proto=proto, payload_len=len(piece), ident=ident,
                              ttl=ttl, tos=tos,
                              flags_frag=(ipv4.FLAG_MF if more else 0) | ((first_offset + start) >> 3))
            packet[IP_HLEN:] = piece
            self.counters["ipv4.fragments_tx"] += 1
            self._send_on(iface, next_hop, packet)

    def _send_on(self, iface: Interface, next_hop: int, packet: bytes | bytearray) -> None:
        """Hand a whole IPv4 packet to *iface*: the loopback queue, a bare-IP link, or Ethernet
        once the next hop's MAC is known."""
        layer = iface.layer
        if layer == LOOPBACK:
            queue = self._loopback_queue
            if len(queue) >= self.config.max_loopback:
                self._drop("ipv4.loopback_full")
                return
            queue.append(packet)
            return
        if layer == BARE_IP:
            self._queue_frame(iface, packet)
            return
        if next_hop == 0xFFFFFFFF or next_hop in self.broadcasts:
            self._emit_ip_frame(iface, ethernet.BROADCAST, packet)
            return
        if ipv4.is_multicast(next_hop):
            # RFC 1112 6.4: 01:00:5e + the low 23 bits of the group.
            self._emit_ip_frame(iface, b"\x01\x00\x5e" + (next_hop & 0x7FFFFF).to_bytes(3, "big"), packet)
            return
        resolver = iface.neighbours
        assert resolver is not None
        mac = resolver.resolve(next_hop, packet, self._now)
        if mac is not None:
            self._emit_ip_frame(iface, mac, packet)

    def _fresh_neighbour(self, iface: Interface, next_hop: int) -> bytes | None:
        """The MAC of a unicast *next_hop* whose entry is fresh, touched as the resolver's lookup
        would (LRU order); None for broadcasts, multicast and anything the resolver must handle
        (unknown, pending, stale: probes), which then goes the general way through `_send_on`."""
        resolver = iface.neighbours
        if resolver is None or next_hop == 0xFFFFFFFF or next_hop in self.broadcasts or ipv4.is_multicast(next_hop):
            return None
        mac = resolver.known(next_hop, self._now)
        if mac is not None:
            resolver.cache.entries.move_to_end(next_hop)
        return mac

    def _local_unreachable(self, packet: Any) -> None:
        """A packet we originated could not be delivered (ARP failed): report it to its sender as if
        the ICMP error had come back, which is what Linux's sockets see (EHOSTUNREACH)."""
        try:
            header = ipv4.parse(packet, verify_checksum=False)
        except ParseError:
            return
        self._deliver_icmp_error(icmp.DEST_UNREACHABLE, icmp.CODE_HOST_UNREACHABLE, 0, memoryview(packet),
                                 header.dst)

    def is_local(self, dst: int) -> bool:
        """Whether a datagram to *dst* goes over the loopback (as :meth:`route_for` decides)."""
        return dst in self.local_addrs or (dst >> 24) == 127

    def loopback_output(self, src: int, dst: int, packet: bytearray, ttl: int | None = None, tos: int = 0) -> None:
        """Queue a TCP segment for one of our addresses, built behind 20 bytes of room for its
        IPv4 header (TcpLayer's loopback path): the header is written in place, no copy."""
        length = len(packet) - IP_HLEN
        if length + IP_HLEN > _MAX_DATAGRAM:
            self._drop("tcp.tx_unroutable")  # cannot happen: the loopback MSS keeps it within a datagram
            return
        ipv4.write_header(packet, 0, src=src, dst=dst, proto=ipv4.PROTO_TCP, payload_len=length,
                          ident=self._next_ident(), ttl=self.config.ttl if ttl is None else ttl, tos=tos,
                          flags_frag=ipv4.FLAG_DF)
        self.counters["ipv4.tx"] += 1
        self._send_on(self.loopback, dst, packet)

    def _deliver_loopback(self, budget: int) -> int:
        """Deliver up to *budget* packets waiting on the loopback; returns how many."""
        queue = self._loopback_queue
        done = 0
        lo = self.loopback
        while queue and done < budget:
            packet = queue.popleft()
            done += 1
            try:
                self._ip_input(lo, packet, 0, True)
            except ParseError as err:
                self._drop(err.reason)
        lo.stats["rx_packets"] += done
        lo.stats["tx_packets"] += done
        return done

    # ----------------------------------------------------------------- TCP's way out

    def gso_for(self, dst: int) -> int:
        """TCP payload bytes per super-segment the link will segment for us (0: none). Only once
        the next hop is resolved, so a super-segment never waits in an ARP queue."""
        try:
            iface, hop = self.route_for(dst)
        except OSError:
            return 0
        if not iface.gso_max or iface.neighbours is None or iface.neighbours.known(hop, self._now) is None:
            return 0
        return iface.gso_max

    def _tcp_output(self, src: int, dst: int, segment: bytes | bytearray, gso_size: int = 0,
                    ttl: int | None = None, tos: int = 0) -> None:
        """TcpLayer's way out for a whole segment (a SYN-ACK, a reset): _tcp_output_parts's."""
        self._tcp_output_parts(src, dst, segment, b"", ttl=ttl, tos=tos, gso_size=gso_size)

    def _tcp_output_parts(self, src: int, dst: int, header: bytes | bytearray, payload: bytes | bytearray | memoryview,
                          ttl: int | None = None, tos: int = 0, gso_size: int = 0) -> None:
        """TcpLayer's way out for a segment in two pieces, its header (checksum complete, or
        partial for a super-segment the link cuts into *gso_size* pieces) and its payload: one
        route lookup, and for a fresh neighbour on Ethernet (every ACK and data segment of an
        established connection) the frame is the one join of the link header, the IPv4 header,
        the TCP header and the payload (the payload's only copy); the rest goes through send_ip."""
        try:
            iface, hop = self.route_for(dst)
            length = len(header) + len(payload)
            if iface.layer == ETHERNET and (gso_size or IP_HLEN + length <= min(iface.mtu, _MAX_DATAGRAM)):
                mac = self._fresh_neighbour(iface, hop)
                if mac is not None:
                    ident = self.ip_ident = (self.ip_ident + 1) & 0xFFFF
                    ip_header = _ip_header(src, dst, ipv4.PROTO_TCP, length, ident,
                                           self.config.ttl if ttl is None else ttl, tos, ipv4.FLAG_DF)
                    self.counters["ipv4.tx"] += 1
                    frame = b"".join((mac, iface.mac, _IPV4_TYPE, ip_header, header, payload))
                    if gso_size:
                        self.counters["tcp.tso_segments"] += 1
                        self._queue_frame(iface, (frame, gso_size))
                    else:
                        self._queue_frame(iface, frame)
                    return
            self.send_ip(src, dst, ipv4.PROTO_TCP, header + payload, dont_fragment=True, ttl=ttl, tos=tos)
        except OSError as err:
            self._drop("tcp.tx_unroutable")
            log.debug("TCP segment to %s not sent: %s", ipv4.ntoa(dst), err)

    # ----------------------------------------------------------------- forwarding (RFC 1812)

    def _forward(self, iface: Interface, header: ipv4.IPv4Header, frame: bytes | bytearray | memoryview,
                 offset: int, trusted: bool) -> None:
        src, dst = header.src, header.dst
        original = memoryview(frame)[offset:offset + header.total_length]
        # RFC 1812 5.3.7 and 4.2.2.11: no martian sources or destinations, nothing link-local
        # (RFC 3927 7), no multicast (we do not route it), nothing to or from the loopback.
        if (ipv4.is_martian_source(src) or ipv4.is_martian_source(dst) or dst == 0 or src == 0
                or _is_link_local(src) or _is_link_local(dst) or src in self.broadcasts):
            self._drop("ipv4.not_forwardable")
            return
        if header.ttl <= 1:
            # RFC 1812 5.3.1: time exceeded in transit, to the source.
            self._drop("ipv4.ttl_exceeded")
            self._send_icmp_error(icmp.TIME_EXCEEDED, icmp.CODE_TTL_EXCEEDED, original, src, 0)
            return
        route = self.routes.lookup(dst)
        if route is None:
            self._drop("ipv4.no_route")
            self._send_icmp_error(icmp.DEST_UNREACHABLE, icmp.CODE_NET_UNREACHABLE, original, src, 0)
            return
        out = route.iface
        next_hop = route.gateway or dst
        mtu = min(out.mtu, _MAX_DATAGRAM)
        ttl = header.ttl - 1
        if header.total_length <= mtu:
            packet = bytearray(original)
            packet[8] = ttl
            # RFC 1624: the header checksum updated for the TTL byte alone (RFC 1812 5.3.1).
            old_word = (header.ttl << 8) | header.proto
            new_word = (ttl << 8) | header.proto
            field = int.from_bytes(packet[10:12], "big")
            packet[10:12] = update16(field, old_word, new_word).to_bytes(2, "big")
            if trusted and not header.is_fragment:
                _complete_l4_checksum(packet, header)
            self.counters["ipv4.forwarded"] += 1
            self._send_on(out, next_hop, packet)
            return
        if (trusted and header.proto == ipv4.PROTO_TCP and not header.is_fragment
                and len(header.options) == 0):
            # A receive-offload super-frame (GRO): the sender's segments, merged by the kernel.
            # Cut it back into segments that fit the next link, with complete checksums.
            self._forward_resegment(out, next_hop, header, ttl, mtu)
            return
        if header.dont_fragment:
            # RFC 1191: fragmentation needed, with the next hop's MTU.
            self._drop("ipv4.frag_needed")
            self._send_icmp_error(icmp.DEST_UNREACHABLE, icmp.CODE_FRAGMENTATION_NEEDED, original, src, mtu)
            return
        # RFC 791 3.2 / RFC 1812 5.2.6: fragment again; options are not copied (we send none).
        self.counters["ipv4.forwarded"] += 1
        self._send_fragments(out, next_hop, src=src, dst=dst, proto=header.proto, payload=header.payload,
                             ident=header.ident, ttl=ttl, tos=header.tos, first_offset=header.fragment_offset,
                             more_after=header.more_fragments)

    def _forward_resegment(self, out: Interface, next_hop: int, header: ipv4.IPv4Header, ttl: int, mtu: int) -> None:
        seg_view = header.payload
        try:
            seg = tcpwire.parse(seg_view)
        except ParseError as err:
            self._drop(err.reason)
            return
        tcp_hlen = len(seg_view) - len(seg.payload)
        chunk = mtu - IP_HLEN - tcp_hlen
        data = seg.payload
        tcp_header = bytearray(seg_view[:tcp_hlen])
        last_flags = tcp_header[13]
        src, dst = header.src, header.dst
        for start in range(0, len(data), chunk):
            piece = data[start:start + chunk]
            final = start + chunk >= len(data)
            segment = bytearray(tcp_header)
            segment += piece
            segment[4:8] = ((seg.seq + start) & 0xFFFFFFFF).to_bytes(4, "big")
            # FIN and PSH belong to the last piece only, as TSO would have sent them.
            segment[13] = last_flags if final else last_flags & ~(tcpwire.FIN | tcpwire.PSH)
            segment[16:18] = b"\0\0"
            csum = checksum(segment, pseudo_header_sum(src, dst, ipv4.PROTO_TCP, len(segment)))
            segment[16:18] = csum.to_bytes(2, "big")
            packet = bytearray(IP_HLEN + len(segment))
            ipv4.write_header(packet, 0, src=src, dst=dst, proto=ipv4.PROTO_TCP, payload_len=len(segment),
                              ident=(header.ident + start // chunk) & 0xFFFF, ttl=ttl, tos=header.tos,
                              flags_frag=header.flags_frag & ipv4.FLAG_DF)
            packet[IP_HLEN:] = segment
            self.counters["ipv4.forwarded"] += 1
            self._send_on(out, next_hop, packet)
