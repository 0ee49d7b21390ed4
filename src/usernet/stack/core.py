"""The host: its interfaces (loopback included), addresses, routes and the protocols over them.

Sans-IO: frames come in through :meth:`Stack.receive` (naming the interface they arrived on),
frames to send wait in each interface's outbox (:meth:`Stack.poll` returns the primary
interface's, :meth:`Stack.take` any interface's), and :meth:`Stack.next_deadline` says when
``poll`` has timer work. Time is passed in; randomness comes from the injected
``random.Random``. Nothing here raises on bad input: malformed frames are dropped, counted in
:attr:`Stack.counters` and logged at debug level.

The protocols live in their own modules (:mod:`.arp`, :mod:`.ip`, :mod:`.icmp`, :mod:`.udp`,
and the TCP engine in :mod:`usernet.tcp`); this module assembles them and owns what they share:
the interface list, the address table, the routing table and the timer participants.
"""

from __future__ import annotations

import errno
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from usernet.errors import os_error
from usernet.stack.arp import ArpMixin
from usernet.stack.base import StackBase, StackConfig
from usernet.stack.counters import Counters
from usernet.stack.icmp import IcmpMixin
from usernet.stack.interface import BARE_IP, ETHERNET, LOOPBACK, LOOPBACK_MTU, IfAddress, Interface, mask, parse_cidr
from usernet.stack.ip import Ipv4Mixin
from usernet.stack.neighbour import NeighbourResolver
from usernet.stack.reassembly import Reassembler
from usernet.stack.route import CONNECTED, DEFAULT, STATIC, Route, RouteTable
from usernet.stack.udp import UdpMixin
from usernet.tcp.layer import TcpLayer
from usernet.wire import ethernet, icmp, ipv4
from usernet.wire.errors import ParseError

__all__ = ["Stack", "StackConfig", "Interface", "IfAddress", "Route", "TimerParticipant", "parse_cidr"]

log = logging.getLogger("usernet.stack")

_LOOPBACK_ROUNDS = 64  # loopback delivery rounds per poll (each may answer the last); the rest waits


class TimerParticipant(Protocol):
    """Anything with timers the stack drives: the neighbour resolvers, reassembly, TCP, and
    later DHCP or DNS retries. ``poll(now)`` does what is due; ``next_deadline()`` says when."""

    def next_deadline(self) -> float | None: ...

    def poll(self, now: float) -> None: ...


class _ReassemblyTimer:
    """Expiry of incomplete datagrams: RFC 792 time exceeded (code 1) once fragment zero came."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def next_deadline(self) -> float | None:
        return self.stack.reassembler.next_deadline()

    def poll(self, now: float) -> None:
        stack = self.stack
        if stack.reassembler.datagrams:
            for quote in stack.reassembler.expire(now):
                stack.counters["ipv4.frag_timeout"] += 1
                src = int.from_bytes(quote[12:16], "big")
                stack._send_icmp_error(icmp.TIME_EXCEEDED, icmp.CODE_REASSEMBLY_TIMEOUT, quote, src, 0)


class Stack(ArpMixin, Ipv4Mixin, IcmpMixin, UdpMixin, StackBase):
    """An IPv4 host: a loopback and any number of interfaces (Ethernet with ARP, or bare IP as
    on TUN). ``Stack(mac=..., layer=..., addr=..., mtu=...)`` builds the common case: the
    loopback plus one primary interface, ``eth0``."""

    def __init__(self, *, mac: bytes | None = None, layer: int = 2, addr: str | None = None,
                 gateway: str | None = None, mtu: int = 1500, rng: random.Random | None = None,
                 config: StackConfig | None = None, now: float = 0.0, name: str = "eth0") -> None:
        self.rng = rng if rng is not None else random.Random()
        self.config = config or StackConfig()
        self.counters = Counters()
        self.interfaces = []
        self.local_addrs = {}
        self.broadcasts = set()
        self.routes = RouteTable()
        self.reassembler = Reassembler(self.config.reassembly)
        self.udp_ports = {}
        self.echo_endpoints = {}
        self.ip_ident = self.rng.randrange(0x10000)
        self._icmp_tokens = float(self.config.icmp_error_burst)
        self._icmp_tokens_at = now
        self._now = now
        self._loopback_queue = deque()
        self.timers: list[TimerParticipant] = [_ReassemblyTimer(self)]
        #: hooks for apps (DHCP client/server) that want to hear of address changes
        self.on_address_change: list[Callable[[], None]] = []
        self.arp_watchers = []
        self.loopback = self._new_interface("lo", LOOPBACK, b"", LOOPBACK_MTU)
        self._add_address(self.loopback, IfAddress(0x7F000001, 8), announce=False)
        if name == self.loopback.name:
            name += "1"  # a link named like our loopback (AF_PACKET on the kernel's lo)
        self.primary = self.add_interface(name, layer=layer, mac=mac, mtu=mtu)
        self.tcp = TcpLayer(rng=self.rng, output=self._tcp_output, mtu_for=self.mtu_for, gso_for=self.gso_for,
                            is_local=self.is_local, loopback_output=self.loopback_output,
                            output_parts=self._tcp_output_parts)
        self.timers.append(self.tcp)
        if addr:
            self.set_address(addr, now=now)
        if gateway:
            self.set_gateway(gateway)
        elif layer == BARE_IP:
            # A TUN link is point-to-point: without a gateway, everything goes out on it.
            self.routes.add(0, 0, 0, self.primary, metric=1024, kind=STATIC)

    # ----------------------------------------------------------------- interfaces and addresses

    def _new_interface(self, name: str, layer: int, mac: bytes, mtu: int) -> Interface:
        if any(i.name == name for i in self.interfaces):
            raise ValueError(f"interface {name!r} exists")
        iface = Interface(name, len(self.interfaces) + 1, layer, mac, mtu, self.config.max_outbox)
        self.interfaces.append(iface)
        return iface

    def add_interface(self, name: str | None = None, *, layer: int = ETHERNET, mac: bytes | None = None,
                      mtu: int = 1500, addresses: Iterable[str] = ()) -> Interface:
        """A new interface (Ethernet: layer 2, or bare IP: layer 3) with optional addresses."""
        if layer not in (ETHERNET, BARE_IP):
            raise ValueError("layer must be 2 (Ethernet) or 3 (bare IP)")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"MTU {mtu} out of range (68..65535)")
        if layer == ETHERNET:
            if mac is None:
                mac = bytes([0x02] + [self.rng.randrange(256) for _ in range(5)])
            if len(mac) != 6 or mac[0] & 1:
                raise ValueError("an interface MAC must be 6 bytes and unicast")
        iface = self._new_interface(name or f"eth{len(self.interfaces) - 1}", layer, mac or b"", mtu)
        if layer == ETHERNET:
            iface.neighbours = resolver = NeighbourResolver(
                self.config.arp, self.counters,
                solicit=lambda ip, unicast_to: self._send_arp_request(iface, ip, unicast_to),
                unreachable=self._local_unreachable)
            self.timers.append(resolver)
        for cidr in addresses:
            self.add_address(iface, cidr)
        return iface

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(name)

    def add_address(self, iface: Interface, cidr: str) -> IfAddress:
        """Add an address (the first is the primary, later ones secondary); adds its connected
        route and announces it on Ethernet (RFC 5227 2.3)."""
        address, prefix = parse_cidr(cidr)
        if not address or address == 0xFFFFFFFF or ipv4.is_multicast(address):
            raise ValueError(f"{cidr}: not a host address")
        if address in self.local_addrs:
            raise os_error(errno.EEXIST, f"{ipv4.ntoa(address)} is already an address of this host")
        return self._add_address(iface, IfAddress(address, prefix), announce=True)

    def _add_address(self, iface: Interface, entry: IfAddress, announce: bool) -> IfAddress:
        iface.addresses.append(entry)
        self.local_addrs[entry.addr] = iface
        if entry.prefix < 31:
            self.broadcasts.add(entry.broadcast)
        if not iface.is_loopback and not any(
                r.kind == CONNECTED and r.iface is iface and (r.network, r.prefix) == (entry.network, entry.prefix)
                for r in self.routes.routes):
            self.routes.add(entry.network, entry.prefix, 0, iface, metric=0, kind=CONNECTED, source=entry.addr)
        if announce and iface.layer == ETHERNET:
            self._announce(iface, entry.addr)
        for hook in self.on_address_change:
            hook()
        return entry

    def remove_address(self, iface: Interface, address: str | int) -> None:
        """Remove an address: its connected route goes, routes through gateways no longer on a
        connected subnet go, and every socket bound to it gets EADDRNOTAVAIL."""
        addr = parse_cidr(address)[0] if isinstance(address, str) else address
        entry = next((a for a in iface.addresses if a.addr == addr), None)
        if entry is None:
            raise os_error(errno.EADDRNOTAVAIL, f"{ipv4.ntoa(addr)} is not an address of {iface.name}")
        iface.addresses.remove(entry)
        del self.local_addrs[addr]
        self.broadcasts = {a.broadcast for i in self.interfaces for a in i.addresses if a.prefix < 31}
        self.routes.remove(lambda r: r.kind == CONNECTED and r.iface is iface and r.source == addr)
        remaining = [a for a in iface.addresses if a.network == entry.network and a.prefix == entry.prefix]
        if remaining:  # a secondary on the same subnet keeps the subnet connected
            self.routes.add(entry.network, entry.prefix, 0, iface, kind=CONNECTED, source=remaining[0].addr)
        self.routes.remove(lambda r: r.gateway and self._unreachable_gateway(r))
        for endpoints in self.udp_ports.values():
            for endpoint in endpoints:
                if endpoint.local_addr == addr:
                    endpoint.set_error(errno.EADDRNOTAVAIL)
        self.tcp.address_removed(addr)
        for hook in self.on_address_change:
            hook()

    def _unreachable_gateway(self, route: Route) -> bool:
        on_link = self.routes.lookup(route.gateway)
        return on_link is None or bool(on_link.gateway) or on_link is route

    # ----------------------------------------------------------------- the one-interface view

    def set_address(self, cidr: str | None, now: float | None = None) -> None:
        """Replace the primary interface's addresses with *cidr* (None: none), as DHCP does."""
        if now is not None:
            self._now = now
        iface = self.primary
        for entry in list(iface.addresses):
            self.remove_address(iface, entry.addr)
        if cidr is not None:
            self.add_address(iface, cidr)

    def set_gateway(self, gateway: str | int | None, iface: Interface | None = None) -> None:
        """Replace the default route (None: remove it)."""
        self.routes.remove(lambda r: r.kind == DEFAULT)
        if gateway:
            address = ipv4.addr(gateway) if isinstance(gateway, str) else gateway
            self.routes.add(0, 0, address, iface, metric=0, kind=DEFAULT)

    def add_route(self, cidr: str, via: str | None = None, iface: Interface | None = None, metric: int = 0) -> Route:
        """A static route to *cidr* through the gateway *via* (or directly on *iface*)."""
        network, prefix = parse_cidr(cidr)
        if network & ~mask(prefix) & 0xFFFFFFFF:
            raise ValueError(f"{cidr}: host bits set (the network is {ipv4.ntoa(network & mask(prefix))}/{prefix})")
        return self.routes.add(network, prefix, ipv4.addr(via) if via else 0, iface, metric=metric, kind=STATIC)

    @property
    def addr(self) -> int:
        """The primary interface's primary address (0 when it has none)."""
        primary = self.primary.primary
        return primary.addr if primary is not None else 0

    @property
    def prefix(self) -> int:
        primary = self.primary.primary
        return primary.prefix if primary is not None else 0

    @property
    def netmask(self) -> int:
        primary = self.primary.primary
        return primary.netmask if primary is not None else 0

    @property
    def network(self) -> int:
        primary = self.primary.primary
        return primary.network if primary is not None else 0

    @property
    def broadcast(self) -> int:
        primary = self.primary.primary
        return primary.broadcast if primary is not None else 0xFFFFFFFF

    @property
    def gateway(self) -> int:
        return self.routes.default_gateway()

    @property
    def mac(self) -> bytes:
        return self.primary.mac

    @property
    def mtu(self) -> int:
        return self.primary.mtu

    @property
    def layer(self) -> int:
        return self.primary.layer

    @property
    def gso_max(self) -> int:
        return self.primary.gso_max

    @gso_max.setter
    def gso_max(self, value: int) -> None:
        self.primary.gso_max = value

    @property
    def outbox(self) -> list[Any]:
        return self.primary.outbox

    @property
    def neighbours(self) -> Any:
        resolver = self.primary.neighbours
        return resolver.cache if resolver is not None else None

    # ----------------------------------------------------------------- sans-IO driving

    def receive(self, frame: bytes | bytearray | memoryview, now: float, trusted: bool = False,
                iface: Interface | None = None) -> None:
        """Take one frame from *iface*'s link (default: the primary interface). Never raises for
        anything the network can send."""
        self._now = now
        if iface is None:
            iface = self.primary
        counters = self.counters
        try:
            if iface.layer == ETHERNET:
                counters["eth.rx"] += 1
                if len(frame) >= 34 and frame[12] == 8 and frame[13] == 0 and frame[:6] == iface.mac:
                    # Untagged IPv4 unicast to us (nearly every frame): ethernet.parse's checks hold
                    # without a call, and the destination check below with them.
                    self._ip_input(iface, frame, 14, trusted)
                    return
                dst, _, ethertype, offset = ethernet.parse(frame)
                if dst != iface.mac and dst != ethernet.BROADCAST:
                    self._drop("eth.not_for_us")
                    return
                if ethertype == ethernet.ETHERTYPE_IPV4:
                    self._ip_input(iface, frame, offset, trusted)
                elif ethertype == ethernet.ETHERTYPE_ARP:
                    self._arp_input(iface, frame, offset)
                else:
                    self._drop("eth.unknown_ethertype")
            else:
                self._ip_input(iface, frame, 0, trusted)
        except ParseError as err:
            counters[err.reason] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dropped frame on %s (%s): %s", iface.name, err.reason, bytes(frame[:64]).hex())
        except Exception:  # a bug of ours must not take the host down: count it loudly
            counters["stack.internal_error"] += 1
            log.exception("internal error handling a frame: %s", bytes(frame[:64]).hex())

    def poll(self, now: float) -> list[Any]:
        """Run due timers and deliver what waits on the loopback; return (and forget) the frames
        waiting on the primary interface. Other interfaces' frames: :meth:`take`."""
        self._now = now
        try:
            for _ in range(_LOOPBACK_ROUNDS):
                for participant in self.timers:  # TCP among them: due timers, then pending output
                    deadline = participant.next_deadline()
                    if deadline is not None and deadline <= now:
                        participant.poll(now)
                if not self._loopback_queue or not self._deliver_loopback(self.config.max_loopback):
                    break
        except Exception:  # as in receive: a bug of ours is counted, the host keeps running
            self.counters["stack.internal_error"] += 1
            log.exception("internal error in poll")
        return self.take(self.primary)

    def take(self, iface: Interface) -> list[Any]:
        """The frames waiting on *iface* (the runtime sends them on its link)."""
        out = iface.outbox
        if out:
            iface.outbox = []
        return out

    def next_deadline(self) -> float | None:
        if self._loopback_queue or any(i.outbox for i in self.interfaces):
            return self._now
        best = None
        for participant in self.timers:
            deadline = participant.next_deadline()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def add_timer(self, participant: TimerParticipant) -> None:
        self.timers.append(participant)

    def remove_timer(self, participant: TimerParticipant) -> None:
        if participant in self.timers:
            self.timers.remove(participant)

    def all_counters(self) -> Counters:
        """Every counter of the host in one flat namespace: the stack's own and the TCP
        engine's (which keeps its own dict for speed), the latter under ``tcp.``."""
        merged = Counters()
        merged.update(self.counters)
        for name, value in self.tcp.counters.items():
            merged["tcp." + name] += value
        return merged

    # ----------------------------------------------------------------- introspection

    def interfaces_info(self) -> list[dict[str, Any]]:
        return [iface.info() for iface in self.interfaces]

    def routes_info(self) -> list[dict[str, Any]]:
        return [route.info() for route in self.routes.routes]

    def neighbours_info(self) -> list[dict[str, Any]]:
        rows = []
        for iface in self.interfaces:
            if iface.neighbours is not None:
                for row in iface.neighbours.entries(self._now):
                    rows.append({"dev": iface.name, **row})
        return rows
