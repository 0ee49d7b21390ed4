"""The host: one interface, the neighbour cache, routes, IPv4 in and out, ICMP, UDP, TCP demux.

Sans-IO: frames come in through :meth:`Stack.receive`, frames to send come out of
:meth:`Stack.poll`, and :meth:`Stack.next_deadline` says when ``poll`` has timer work. Time is
passed in; randomness comes from the injected ``random.Random``. Nothing here raises on bad
input: malformed frames are dropped, counted in :attr:`Stack.counters` and logged at debug level.
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from usernet.errors import os_error
from usernet.stack.arp import ArpConfig, NeighbourCache, Pending
from usernet.stack.counters import Counters
from usernet.stack.reassembly import Reassembler, ReassemblyConfig
from usernet.stack.udp import EPHEMERAL_HIGH, EPHEMERAL_LOW, EchoEndpoint, UdpEndpoint
from usernet.wire import arp, ethernet, icmp, ipv4, udp
from usernet.wire.checksum import checksum, pseudo_header_sum
from usernet.wire.errors import ParseError

log = logging.getLogger("usernet.stack")

ETH_HLEN = ethernet.HEADER_LEN
IP_HLEN = ipv4.HEADER_LEN
_ETH_IPV4 = ethernet.ETHERTYPE_IPV4.to_bytes(2, "big")


@dataclass(slots=True)
class StackConfig:
    ttl: int = 64
    arp: ArpConfig = field(default_factory=ArpConfig)
    reassembly: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    # ICMP error rate limit (token bucket): Linux's icmp_ratelimit is 1 per second per peer with
    # a burst; a host-wide bucket is simpler and bounds our output just as well.
    icmp_error_rate: float = 100.0
    icmp_error_burst: int = 50
    echo_ignore_broadcasts: bool = True  # like Linux's net.ipv4.icmp_echo_ignore_broadcasts
    max_outbox: int = 4096               # frames waiting for poll(); beyond it new frames are dropped


def parse_cidr(text: str) -> tuple[int, int]:
    """``"10.0.0.2/24"`` -> (address, prefix length); a bare address means /32."""
    addr_text, _, prefix_text = text.partition("/")
    address = ipv4.addr(addr_text)
    prefix = int(prefix_text) if prefix_text else 32
    if not 0 <= prefix <= 32:
        raise ValueError(f"bad prefix length in {text!r}")
    return address, prefix


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0


class Stack:
    """One IPv4 host on one link (layer 2: Ethernet + ARP; layer 3: bare IP as on TUN)."""

    def __init__(self, *, mac: bytes | None = None, layer: int = 2, addr: str | None = None,
                 gateway: str | None = None, mtu: int = 1500, rng: random.Random | None = None,
                 config: StackConfig | None = None, now: float = 0.0) -> None:
        if layer not in (2, 3):
            raise ValueError("layer must be 2 (Ethernet) or 3 (bare IP)")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"MTU {mtu} out of range (68..65535)")
        self.rng = rng if rng is not None else random.Random()
        self.config = config or StackConfig()
        self.layer = layer
        self.mtu = mtu
        if mac is None and layer == 2:
            mac = bytes([0x02] + [self.rng.randrange(256) for _ in range(5)])
        self.mac: bytes = mac or b""
        self.counters = Counters()
        self.neighbours = NeighbourCache(self.config.arp)
        self.reassembler = Reassembler(self.config.reassembly)
        # Frames to send; a (frame, mss) pair is a TCP super-segment for a link that does TSO.
        self.outbox: list[Any] = []
        self.gso_max = 0  # set by the runtime when the link segments TCP for us
        self.udp_ports: dict[int, list[UdpEndpoint]] = {}
        self.echo_endpoints: dict[int, EchoEndpoint] = {}
        self.ip_ident = self.rng.randrange(0x10000)
        self._icmp_tokens = float(self.config.icmp_error_burst)
        self._icmp_tokens_at = now
        self._now = now
        self.addr = 0
        self.prefix = 0
        self.netmask = 0
        self.network = 0
        self.broadcast = 0xFFFFFFFF
        self.gateway = 0
        #: extra routes: (network, prefix, gateway); connected and default routes are implicit
        self.routes: list[tuple[int, int, int]] = []
        self.tcp = self._make_tcp()
        #: hooks for apps (DHCP client/server) that want UDP before an address is configured
        self.on_address_change: list[Callable[[], None]] = []
        if addr:
            self.set_address(addr, now=now)
        if gateway:
            self.gateway = ipv4.addr(gateway)

    # ----------------------------------------------------------------- configuration

    def _make_tcp(self):  # type: ignore[no-untyped-def]
        try:
            from usernet.tcp.layer import TcpLayer
        except ImportError:  # the TCP engine is optional while it is being built
            return None
        return TcpLayer(rng=self.rng, output=self._tcp_output, mtu_for=self.mtu_for, gso_for=self.gso_for)

    def set_address(self, cidr: str | None, now: float | None = None) -> None:
        """Configure (or with None, remove) the interface address; announces it with a gratuitous ARP."""
        if now is not None:
            self._now = now
        if cidr is None:
            self.addr = self.prefix = self.netmask = self.network = 0
            self.broadcast = 0xFFFFFFFF
        else:
            address, prefix = parse_cidr(cidr)
            self.addr, self.prefix = address, prefix
            self.netmask = _mask(prefix)
            self.network = address & self.netmask
            self.broadcast = self.network | (~self.netmask & 0xFFFFFFFF) if prefix < 31 else 0xFFFFFFFF
            if self.layer == 2:
                # Gratuitous ARP (RFC 5227 2.3 announcement): neighbours refresh stale entries for us.
                self._emit_l2(ethernet.BROADCAST, ethernet.ETHERTYPE_ARP,
                              arp.build(arp.OP_REQUEST, self.mac, address, b"\0" * 6, address))
                self.counters["arp.tx_gratuitous"] += 1
        for hook in self.on_address_change:
            hook()

    def set_gateway(self, gateway: str | int | None) -> None:
        self.gateway = ipv4.addr(gateway) if isinstance(gateway, str) else (gateway or 0)

    def add_route(self, cidr: str, via: str) -> None:
        network, prefix = parse_cidr(cidr)
        self.routes.append((network & _mask(prefix), prefix, ipv4.addr(via)))
        self.routes.sort(key=lambda r: -r[1])

    def mtu_for(self, dst: int) -> int:
        return self.mtu

    def next_hop(self, dst: int) -> int:
        """The neighbour a packet to *dst* goes to; raises EHOSTUNREACH/ENETUNREACH without a route."""
        if dst == 0xFFFFFFFF or (self.prefix and (dst & self.netmask) == self.network) or self.layer == 3:
            return dst
        for network, prefix, via in self.routes:
            if dst & _mask(prefix) == network:
                return via
        if self.gateway:
            return self.gateway
        raise os_error(errno.ENETUNREACH, "Network is unreachable")

    def is_local(self, address: int) -> bool:
        return address == self.addr and address != 0

    # ----------------------------------------------------------------- sans-IO driving

    def receive(self, frame: bytes | bytearray | memoryview, now: float, trusted: bool = False) -> None:
        """Take one frame from the link. Never raises for anything the network can send."""
        self._now = now
        counters = self.counters
        try:
            if self.layer == 2:
                counters["eth.rx"] += 1
                dst, src, ethertype, offset = ethernet.parse(frame)
                if dst != self.mac and dst != ethernet.BROADCAST:
                    self._drop("eth.not_for_us")
                    return
                if ethertype == ethernet.ETHERTYPE_IPV4:
                    self._ip_input(frame, offset, trusted, src)
                elif ethertype == ethernet.ETHERTYPE_ARP:
                    self._arp_input(frame, offset)
                else:
                    self._drop("eth.unknown_ethertype")
            else:
                self._ip_input(frame, 0, trusted, None)
        except ParseError as err:
            counters[err.reason] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dropped frame (%s): %s", err.reason, bytes(frame[:64]).hex())
        except Exception:  # a bug of ours must not take the host down: count it loudly
            counters["stack.internal_error"] += 1
            log.exception("internal error handling a frame: %s", bytes(frame[:64]).hex())

    def _drop(self, reason: str) -> None:
        """A datagram or frame not taken: counted under *reason* and logged at debug level, so
        a reader following ``--log-level debug`` sees why each was dropped."""
        self.counters[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropped: %s", reason)

    def poll(self, now: float) -> list[Any]:
        """Run due timers; return (and forget) every frame waiting to be sent."""
        self._now = now
        self._run_timers(now)
        if self.tcp is not None:
            self.tcp.poll(now)
        out = self.outbox
        self.outbox = []
        return out

    def all_counters(self) -> Counters:
        """Every counter of the host in one flat namespace: the stack's own and the TCP
        engine's (which keeps its own dict for speed), the latter under ``tcp.``."""
        merged = Counters()
        merged.update(self.counters)
        if self.tcp is not None:
            for name, value in self.tcp.counters.items():
                merged["tcp." + name] += value
        return merged

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.neighbours.next_deadline(), self.reassembler.next_deadline(),
                                 self.tcp.next_deadline() if self.tcp is not None else None) if d is not None]
        if self.outbox:
            deadlines.append(self._now)
        return min(deadlines) if deadlines else None

    def _run_timers(self, now: float) -> None:
        cache = self.neighbours
        if cache.pending:
            for ip, pending in list(cache.pending.items()):
                if pending.next_try > now:
                    continue
                if pending.attempts >= cache.config.retries:
                    del cache.pending[ip]
                    self.counters["arp.resolve_failed"] += 1
                    # RFC 1122 2.3.2.2: tell the senders their destination is unreachable.
                    for packet in pending.queue:
                        self._local_unreachable(packet, icmp.CODE_HOST_UNREACHABLE)
                    continue
                pending.attempts += 1
                pending.next_try = now + cache.config.retry_interval
                self._send_arp_request(ip)
        if self.reassembler.datagrams:
            for quote in self.reassembler.expire(now):
                self.counters["ipv4.frag_timeout"] += 1
                # RFC 792: time exceeded, code 1, only when fragment zero arrived.
                src = int.from_bytes(quote[12:16], "big")
                self._send_icmp_error(icmp.TIME_EXCEEDED, icmp.CODE_REASSEMBLY_TIMEOUT, quote, src, 0)

    # ----------------------------------------------------------------- link layer

    def _emit_l2(self, dst_mac: bytes, ethertype: int, payload: bytes | bytearray) -> None:
        self._queue_frame(b"".join((dst_mac, self.mac, ethertype.to_bytes(2, "big"), payload)))

    def _queue_frame(self, frame: Any) -> None:
        if len(self.outbox) >= self.config.max_outbox:
            self.counters["stack.outbox_full"] += 1
            return
        self.outbox.append(frame)

    def _arp_input(self, frame: bytes | bytearray | memoryview, offset: int) -> None:
        counters = self.counters
        packet = arp.parse(frame, offset)
        counters["arp.rx"] += 1
        if packet.sender_ip == 0 or ipv4.is_multicast(packet.sender_ip) or packet.sender_ip == 0xFFFFFFFF:
            # An ARP probe (RFC 5227: sender 0.0.0.0) teaches us nothing; a bogus sender is ignored.
            if packet.op == arp.OP_REQUEST and self.addr and packet.target_ip == self.addr:
                counters["arp.probe_for_us"] += 1
                counters["arp.tx_reply"] += 1
                self._send_arp_reply(packet.sender_mac, packet.sender_ip)
            return
        if packet.sender_mac[0] & 1:
            counters["arp.bad_sender_mac"] += 1
            return
        if self.addr and packet.sender_ip == self.addr:
            counters["arp.address_conflict"] += 1
            log.warning("ARP: %s claims our address %s", ethernet.format_mac(packet.sender_mac),
                        ipv4.ntoa(self.addr))
            return
        for_us = bool(self.addr) and packet.target_ip == self.addr
        # RFC 826 merge: refresh an entry we have; create one only when the packet is for us.
        pending = self.neighbours.update(packet.sender_ip, packet.sender_mac, self._now, create=for_us)
        if pending is not None:
            for ip_packet in pending.queue:
                self._emit_ip_frame(packet.sender_mac, ip_packet)
        if packet.sender_ip == packet.target_ip:
            counters["arp.rx_gratuitous"] += 1  # an announcement: refreshed above, nothing to answer
        elif packet.op == arp.OP_REQUEST:
            if for_us:
                counters["arp.tx_reply"] += 1
                self._send_arp_reply(packet.sender_mac, packet.sender_ip)
            else:
                counters["arp.request_not_for_us"] += 1

    def _send_arp_reply(self, to_mac: bytes, to_ip: int) -> None:
        self._emit_l2(to_mac, ethernet.ETHERTYPE_ARP, arp.build(arp.OP_REPLY, self.mac, self.addr, to_mac, to_ip))

    def _send_arp_request(self, ip: int, unicast_to: bytes | None = None) -> None:
        self.counters["arp.tx_request"] += 1
        self._emit_l2(unicast_to or ethernet.BROADCAST, ethernet.ETHERTYPE_ARP,
                      arp.build(arp.OP_REQUEST, self.mac, self.addr, b"\0" * 6, ip))

    def _emit_ip_frame(self, dst_mac: bytes, packet: bytes | bytearray) -> None:
        self._queue_frame(b"".join((dst_mac, self.mac, _ETH_IPV4, packet)))

    def _send_to_neighbour(self, next_hop: int, packet: bytes | bytearray) -> None:
        """Hand a whole IPv4 packet to the link, resolving the next hop first on Ethernet."""
        if self.layer == 3:
            self._queue_frame(packet)
            return
        now = self._now
        if next_hop == 0xFFFFFFFF or next_hop == self.broadcast:
            self._emit_ip_frame(ethernet.BROADCAST, packet)
            return
        if ipv4.is_multicast(next_hop):
            # RFC 1112 6.4: 01:00:5e + the low 23 bits of the group.
            mac = b"\x01\x00\x5e" + (next_hop & 0x7FFFFF).to_bytes(3, "big")
            self._emit_ip_frame(mac, packet)
            return
        cache = self.neighbours
        entry = cache.lookup(next_hop, now)
        if entry is not None:
            if cache.is_stale(entry, now) and now - entry.probed >= cache.config.retry_interval:
                entry.probed = now
                self._send_arp_request(next_hop, unicast_to=entry.mac)  # RFC 1122 2.3.2.1 unicast poll
            self._emit_ip_frame(entry.mac, packet)
            return
        pending = cache.pending.get(next_hop)
        if pending is None:
            if len(cache.pending) >= cache.config.max_pending_neighbours:
                self.counters["arp.pending_table_full"] += 1
                self._local_unreachable(packet, icmp.CODE_HOST_UNREACHABLE)
                return
            pending = cache.pending[next_hop] = Pending(now + cache.config.retry_interval)
            self._send_arp_request(next_hop)
        if len(pending.queue) >= cache.config.max_queue_per_neighbour:
            # RFC 1122 2.3.2.2 says keep at least one; we keep the oldest, drop the newest.
            self.counters["arp.queue_full"] += 1
            return
        pending.queue.append(packet)

    # ----------------------------------------------------------------- IPv4 input

    def _ip_input(self, frame: bytes | bytearray | memoryview, offset: int, trusted: bool,
                  src_mac: bytes | None) -> None:
        counters = self.counters
        header = ipv4.parse(frame, offset)
        counters["ipv4.rx"] += 1
        dst = header.dst
        if dst != self.addr or not dst:
            if dst == 0xFFFFFFFF or (dst == self.broadcast and self.prefix):
                broadcast = True
            elif not self.addr and header.proto == ipv4.PROTO_UDP:
                broadcast = True  # unconfigured (DHCP): accept unicast offers addressed to the new lease
            else:
                self._drop("ipv4.not_for_us")
                return
        else:
            broadcast = False
        src = header.src
        if ipv4.is_martian_source(src) or src == self.broadcast or (src == self.addr and self.addr):
            self._drop("ipv4.martian_source")
            return
        # RFC 1122 3.2.1.7: a host must not discard a datagram for a TTL below 2, so TTL is not checked.
        if header.is_fragment:
            counters["ipv4.fragments_rx"] += 1
            whole = self.reassembler.add(header, memoryview(frame)[offset:], self._now, counters)
            if whole is None:
                return
            payload: memoryview = memoryview(whole)
            trusted = False  # offload status described the fragment, not the datagram
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
            if self.tcp is None:
                self._drop("tcp.no_engine")
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

    # ----------------------------------------------------------------- IPv4 output

    def _next_ident(self) -> int:
        self.ip_ident = (self.ip_ident + 1) & 0xFFFF
        return self.ip_ident

    def send_ip(self, src: int, dst: int, proto: int, payload: bytes | bytearray | memoryview,
                dont_fragment: bool = False, ttl: int | None = None, tos: int = 0) -> None:
        """Route, fragment if needed (RFC 791 3.2) and send one datagram. Raises OSError (ENETUNREACH,
        EMSGSIZE) for the local sender; everything else is silent like a real network."""
        next_hop = self.next_hop(dst)
        if not src:
            src = self.addr
        ttl = self.config.ttl if ttl is None else ttl
        mtu = self.mtu
        length = len(payload)
        if IP_HLEN + length <= mtu:
            packet = bytearray(IP_HLEN + length)
            ipv4.write_header(packet, 0, src=src, dst=dst, proto=proto, payload_len=length,
                              ident=self._next_ident(), ttl=ttl, tos=tos,
                              flags_frag=ipv4.FLAG_DF if dont_fragment else 0)
            packet[IP_HLEN:] = payload
            self.counters["ipv4.tx"] += 1
            self._send_to_neighbour(next_hop, packet)
            return
        if dont_fragment:
            raise os_error(errno.EMSGSIZE, "Message too long")
        if IP_HLEN + length > ipv4.MAX_PACKET:
            raise os_error(errno.EMSGSIZE, "Message too long")
        chunk = (mtu - IP_HLEN) & ~7
        ident = self._next_ident()
        view = memoryview(payload)
        for start in range(0, length, chunk):
            piece = view[start:start + chunk]
            more = start + chunk < length
            packet = bytearray(IP_HLEN + len(piece))
            ipv4.write_header(packet, 0, src=src, dst=dst, proto=proto, payload_len=len(piece), ident=ident,
                              ttl=ttl, tos=tos, flags_frag=(ipv4.FLAG_MF if more else 0) | (start >> 3))
            packet[IP_HLEN:] = piece
            self.counters["ipv4.fragments_tx"] += 1
            self._send_to_neighbour(next_hop, packet)
        self.counters["ipv4.tx"] += 1

    def gso_for(self, dst: int) -> int:
        """TCP payload bytes per super-segment the link will segment for us (0: none). Only once
        the next hop is resolved, so a super-segment never waits in an ARP queue."""
        if not self.gso_max or self.layer != 2:
            return 0
        try:
            hop = self.next_hop(dst)
        except OSError:
            return 0
        entry = self.neighbours.entries.get(hop)
        if entry is None or self.neighbours.is_stale(entry, self._now):
            return 0
        return self.gso_max

    def _tcp_output(self, src: int, dst: int, segment: bytes | bytearray, gso_size: int = 0,
                    ttl: int | None = None, tos: int = 0) -> None:
        if gso_size:
            entry = self.neighbours.entries.get(self.next_hop(dst))
            if entry is not None:
                packet = bytearray(IP_HLEN + len(segment))
                ipv4.write_header(packet, 0, src=src, dst=dst, proto=ipv4.PROTO_TCP, payload_len=len(segment),
                                  ident=self._next_ident(), ttl=self.config.ttl if ttl is None else ttl,
                                  tos=tos, flags_frag=ipv4.FLAG_DF)
                packet[IP_HLEN:] = segment
                self.counters["ipv4.tx"] += 1
                self.counters["tcp.tso_segments"] += 1
                self._queue_frame((b"".join((entry.mac, self.mac, _ETH_IPV4, packet)), gso_size))
                return
        try:
            self.send_ip(src, dst, ipv4.PROTO_TCP, segment, dont_fragment=True, ttl=ttl, tos=tos)
        except OSError as err:
            self.counters["tcp.tx_unroutable"] += 1
            log.debug("TCP segment to %s not sent: %s", ipv4.ntoa(dst), err)

    def _local_unreachable(self, packet: bytes | bytearray, code: int) -> None:
        """A packet we originated could not be delivered (ARP failed): report it to its sender as if
        the ICMP error had come back, which is what Linux's sockets see (EHOSTUNREACH)."""
        try:
            header = ipv4.parse(packet, verify_checksum=False)
        except ParseError:
            return
        self._deliver_icmp_error(icmp.DEST_UNREACHABLE, code, 0, memoryview(packet), header.dst)

    # ----------------------------------------------------------------- ICMP

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
            reply = icmp.build(icmp.ECHO_REPLY, 0, message.rest, message.body)
            try:
                self.send_ip(self.addr, header.src, ipv4.PROTO_ICMP, reply, tos=header.tos)
                counters["icmp.tx_echo_reply"] += 1
            except OSError:
                self._drop("icmp.reply_unroutable")
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
            if quoted_dst == 0xFFFFFFFF or quoted_dst == self.broadcast or ipv4.is_multicast(quoted_dst):
                return
            if offending[9] == ipv4.PROTO_ICMP and len(offending) > ihl and offending[ihl] not in (
                    icmp.ECHO_REQUEST, icmp.ECHO_REPLY, 13, 14, 15, 16):
                return
        if not dst or ipv4.is_martian_source(dst) or dst == self.broadcast:
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
            self.send_ip(self.addr, dst, ipv4.PROTO_ICMP, icmp.build_error(kind, code, offending, rest))
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
        self.send_ip(self.addr, dst, ipv4.PROTO_ICMP, icmp.build_echo(False, endpoint.ident, seq, data))
        self.counters["icmp.tx_echo_request"] += 1

    # ----------------------------------------------------------------- UDP

    def _udp_input(self, header: ipv4.IPv4Header, payload: memoryview, broadcast: bool, trusted: bool,
                   frame: bytes | bytearray | memoryview, offset: int) -> None:
        counters = self.counters
        sport, dport, data = udp.parse(payload, header.src, header.dst, verify_checksum=not trusted)
        counters["udp.rx"] += 1
        endpoints = self.udp_ports.get(dport)
        delivered = matched = False
        if endpoints:
            src_pair = (header.src, sport)
            body: bytes | None = None
            for endpoint in endpoints:
                if endpoint.local_addr and endpoint.local_addr != header.dst and not broadcast:
                    continue
                if endpoint.connected and (endpoint.remote_addr != header.src or endpoint.remote_port != sport):
                    continue
                matched = True
                if body is None:
                    body = bytes(data)
                if endpoint.deliver(body, src_pair):
                    delivered = True
                else:
                    self._drop("udp.rcvbuf_errors")
                if not broadcast:
                    break  # unicast goes to one socket (the first bound); broadcast to all
        if delivered or matched:
            return
        self._drop("udp.no_port")
        if not broadcast:
            # RFC 1122 4.1.3.1: port unreachable for a closed port. (For a reassembled datagram this
            # quotes its last fragment, which _send_icmp_error then declines to answer: acceptable.)
            original = memoryview(frame)[offset:offset + header.total_length]
            self._send_icmp_error(icmp.DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE, original, header.src, 0)

    def udp_open(self, local_addr: int = 0, local_port: int = 0, reuse: bool = False) -> UdpEndpoint:
        """Bind a UDP endpoint; port 0 picks an ephemeral port from the RNG."""
        if local_addr and local_addr != self.addr and local_addr != 0xFFFFFFFF:
            raise os_error(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if local_port == 0:
            local_port = self._ephemeral_port(self.udp_ports)
        elif not 0 < local_port < 0x10000:
            raise OverflowError("port must be 0-65535.")
        existing = self.udp_ports.get(local_port)
        # SO_REUSEADDR on UDP (Linux): several sockets may share a port if every one of them asked.
        if existing and not (reuse and all(e.reuse for e in existing)):
            raise os_error(errno.EADDRINUSE, "Address already in use")
        endpoint = UdpEndpoint(local_addr, local_port)
        endpoint.reuse = reuse
        self.udp_ports.setdefault(local_port, []).append(endpoint)
        return endpoint

    def udp_close(self, endpoint: UdpEndpoint) -> None:
        endpoint.closed = True
        endpoints = self.udp_ports.get(endpoint.local_port)
        if endpoints and endpoint in endpoints:
            endpoints.remove(endpoint)
            if not endpoints:
                del self.udp_ports[endpoint.local_port]

    def udp_send(self, endpoint: UdpEndpoint, data: bytes | bytearray | memoryview, dst: int, dport: int) -> None:
        if not 0 < dport < 0x10000:
            raise os_error(errno.EINVAL, "Invalid argument")
        if len(data) > 65507:
            raise os_error(errno.EMSGSIZE, "Message too long")
        if (dst == 0xFFFFFFFF or (dst == self.broadcast and self.prefix)) and not endpoint.broadcast:
            raise PermissionError(errno.EACCES, "Permission denied")
        src = endpoint.local_addr if endpoint.local_addr and endpoint.local_addr != 0xFFFFFFFF else self.addr
        ip = endpoint.ip_options  # the socket's IP_TTL/IP_TOS
        self.send_ip(src, dst, ipv4.PROTO_UDP, udp.build(src, dst, endpoint.local_port, dport, data),
                     ttl=ip.get("ttl"), tos=ip.get("tos", 0))
        self.counters["udp.tx"] += 1

    def _ephemeral_port(self, table: Mapping[int, object]) -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            if port not in table:
                return port
        raise os_error(errno.EADDRINUSE, "Address already in use")


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

