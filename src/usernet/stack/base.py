"""What every part of the host shares: its interfaces, address table, routes, counters, clock.

The host is one object (:class:`usernet.stack.core.Stack`) assembled from one class per protocol
(ARP, IPv4, ICMP, UDP, in their own modules). They all derive from :class:`StackBase`, which
declares the state they share, so each module reads like the protocol it implements and
attribute access stays as cheap as on one class (this is the per-packet path).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from usernet.stack.counters import Counters
from usernet.stack.interface import Interface
from usernet.stack.neighbour import ArpConfig
from usernet.stack.reassembly import Reassembler, ReassemblyConfig
from usernet.stack.route import RouteTable

if TYPE_CHECKING:
    from usernet.stack.udp import EchoEndpoint, UdpEndpoint
    from usernet.tcp.layer import TcpLayer

log = logging.getLogger("usernet.stack")


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
    max_outbox: int = 4096               # frames waiting per interface; beyond it new frames are dropped
    max_loopback: int = 4096             # packets waiting on the loopback; beyond it they are dropped
    forward: bool = False                # route between interfaces (RFC 1812), off as on Linux


class StackBase:
    """Shared state; see the module docstring."""

    rng: random.Random
    config: StackConfig
    counters: Counters
    interfaces: list[Interface]
    loopback: Interface
    primary: Interface
    #: every local address -> the interface holding it (the weak end-system model of RFC 1122
    #: 3.3.4.2: an address is ours whichever interface the packet came in on, as on Linux)
    local_addrs: dict[int, Interface]
    #: directed broadcast addresses of every interface address
    broadcasts: set[int]
    routes: RouteTable
    reassembler: Reassembler
    tcp: TcpLayer
    udp_ports: dict[int, list[UdpEndpoint]]
    echo_endpoints: dict[int, EchoEndpoint]
    ip_ident: int
    _loopback_queue: deque[Any]
    _now: float
    #: called as ``watcher(iface, sender_ip, sender_mac, target_ip, op)`` for every ARP packet that
    #: parsed, before any other check (RFC 5227 conflict detection by the DHCP client and server)
    arp_watchers: list[Callable[[Interface, int, bytes, int, int], None]]

    def _drop(self, reason: str) -> None:
        """A datagram or frame not taken: counted under *reason* and logged at debug level, so
        a reader following ``--log-level debug`` sees why each was dropped."""
        self.counters[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropped: %s", reason)

    def _queue_frame(self, iface: Interface, frame: Any) -> None:
        outbox = iface.outbox
        if len(outbox) >= iface.max_outbox:
            self.counters["stack.outbox_full"] += 1
            return
        outbox.append(frame)

    def is_local(self, address: int) -> bool:
        """One of this host's addresses (any interface), or anywhere in 127/8 (RFC 1122 3.2.1.3)."""
        return address in self.local_addrs or (address >> 24) == 127

    def is_broadcast(self, address: int) -> bool:
        return address == 0xFFFFFFFF or address in self.broadcasts

    # Implemented by the protocol classes (the last base in the method order, so these are
    # overridden); declared here so each protocol module can call the others.
    def _udp_input(self, header: Any, payload: memoryview, broadcast: bool, trusted: bool,
                   frame: bytes | bytearray | memoryview, offset: int) -> None:
        raise NotImplementedError

    def _icmp_input(self, header: Any, payload: memoryview, broadcast: bool) -> None:
        raise NotImplementedError

    def _send_icmp_error(self, kind: int, code: int, offending: bytes | bytearray | memoryview, dst: int,
                         rest: int) -> None:
        raise NotImplementedError

    def _deliver_icmp_error(self, kind: int, code: int, next_hop_mtu: int, quoted: memoryview,
                            reporter: int) -> None:
        raise NotImplementedError

    def source_for(self, dst: int) -> int:
        raise NotImplementedError

    def send_ip(self, src: int, dst: int, proto: int, payload: bytes | bytearray | memoryview,
                dont_fragment: bool = False, ttl: int | None = None, tos: int = 0) -> None:
        raise NotImplementedError

    def _arp_input(self, iface: Interface, frame: bytes | bytearray | memoryview, offset: int) -> None:
        raise NotImplementedError

    def _emit_ip_frame(self, iface: Interface, dst_mac: bytes, packet: bytes | bytearray) -> None:
        raise NotImplementedError

    def _send_arp_request(self, iface: Interface, ip: int, unicast_to: bytes | None = None) -> None:
        raise NotImplementedError
