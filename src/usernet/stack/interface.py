"""Interfaces and their addresses: what the host is on each link.

An :class:`Interface` is one attachment of the host: a link (Ethernet, bare IP as on TUN, or
the in-process loopback), its MAC and MTU, its IPv4 addresses (the first is the primary, the
others secondary, as ``ip addr`` shows them), its own neighbour resolver and the frames waiting
to go out on it. The stack owns the interfaces; the runtime moves each one's frames to its link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from usernet.stack.counters import Counters
from usernet.wire import ipv4

if TYPE_CHECKING:
    from usernet.stack.neighbour import NeighbourResolver

LOOPBACK = 0  # Interface.layer of the loopback: no link, no framing, no checksums
ETHERNET = 2
BARE_IP = 3
LOOPBACK_MTU = 65536  # as Linux's lo; an IPv4 datagram still stops at 65,535 bytes


def parse_cidr(text: str) -> tuple[int, int]:
    """``"10.0.0.2/24"`` -> (address, prefix length); a bare address means /32."""
    addr_text, _, prefix_text = text.partition("/")
    address = ipv4.addr(addr_text)
    try:
        prefix = int(prefix_text) if prefix_text else 32
    except ValueError:
        raise ValueError(f"bad prefix length in {text!r}") from None
    if not 0 <= prefix <= 32:
        raise ValueError(f"bad prefix length in {text!r}")
    return address, prefix


def mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0


class IfAddress:
    """One IPv4 address on an interface, with the subnet it implies."""

    __slots__ = ("addr", "prefix", "netmask", "network", "broadcast")

    def __init__(self, addr: int, prefix: int) -> None:
        self.addr = addr
        self.prefix = prefix
        self.netmask = mask(prefix)
        self.network = addr & self.netmask
        # /31 and /32 have no broadcast address (RFC 3021).
        self.broadcast = self.network | (~self.netmask & 0xFFFFFFFF) if prefix < 31 else 0xFFFFFFFF

    def contains(self, address: int) -> bool:
        return address & self.netmask == self.network

    def __str__(self) -> str:
        return f"{ipv4.ntoa(self.addr)}/{self.prefix}"

    def __repr__(self) -> str:
        return f"IfAddress({self})"


class Interface:
    """One of the host's interfaces (``lo``, ``eth0``, ...)."""

    __slots__ = ("name", "index", "layer", "mac", "mtu", "addresses", "outbox", "stats", "neighbours",
                 "gso_max", "max_outbox")

    def __init__(self, name: str, index: int, layer: int, mac: bytes, mtu: int, max_outbox: int) -> None:
        self.name = name
        self.index = index
        self.layer = layer
        self.mac = mac
        self.mtu = mtu
        self.addresses: list[IfAddress] = []
        # Frames to transmit on this interface's link; a (frame, mss) pair is a TCP
        # super-segment for a link that segments for us (TSO).
        self.outbox: list[Any] = []
        self.max_outbox = max_outbox
        self.stats = Counters()  # per interface, as `ip -s link`: rx/tx frames and bytes
        self.neighbours: NeighbourResolver | None = None  # Ethernet only
        self.gso_max = 0  # TCP payload bytes per super-segment the link segments (0: none)

    @property
    def is_loopback(self) -> bool:
        return self.layer == LOOPBACK

    @property
    def primary(self) -> IfAddress | None:
        return self.addresses[0] if self.addresses else None

    def source_for(self, next_hop: int) -> int:
        """RFC 1122 3.3.4.3: the address on the subnet of the next hop, else the primary (0 when
        the interface has no address, as while DHCP runs)."""
        for address in self.addresses:
            if address.contains(next_hop):
                return address.addr
        return self.addresses[0].addr if self.addresses else 0

    def info(self) -> dict[str, Any]:
        """What ``ip addr`` shows, as plain values."""
        return {"index": self.index, "name": self.name,
                "kind": {LOOPBACK: "loopback", ETHERNET: "ether", BARE_IP: "ip"}[self.layer],
                "mac": self.mac.hex(":") if self.mac else "", "mtu": self.mtu,
                "addresses": [str(a) for a in self.addresses], "stats": dict(self.stats)}

    def __repr__(self) -> str:
        return f"<Interface {self.index}: {self.name} {' '.join(map(str, self.addresses)) or '-'}>"
