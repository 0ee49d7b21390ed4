"""Links: the devices a host runs over, and middleware that wraps any of them."""

from usernet.links.base import Link
from usernet.links.impair import Impair, parse_impair_spec
from usernet.links.memory import MemoryPort, Switch, pipe
from usernet.links.packet import Packet
from usernet.links.pcap import PcapWriter
from usernet.links.trace import Tracer
from usernet.links.tuntap import Tap, Tun

__all__ = ["Impair", "Link", "MemoryPort", "Packet", "PcapWriter", "Switch", "Tap", "Tracer", "Tun",
           "parse_impair_spec", "pipe"]
