"""ARP (RFC 826) on the host's Ethernet interfaces: answering for our addresses, learning
neighbours, announcing and defending addresses (RFC 5227). The cache and the queue of packets
waiting for an answer are the interface's :class:`~usernet.stack.neighbour.NeighbourResolver`.
"""

from __future__ import annotations

import logging

from usernet.stack.base import StackBase
from usernet.stack.interface import Interface
from usernet.wire import arp, ethernet, ipv4

log = logging.getLogger("usernet.arp")

_ZERO_MAC = b"\0" * 6


class ArpMixin(StackBase):
    def _emit_l2(self, iface: Interface, dst_mac: bytes, ethertype: int, payload: bytes | bytearray) -> None:
        self._queue_frame(iface, b"".join((dst_mac, iface.mac, ethertype.to_bytes(2, "big"), payload)))

    def _arp_input(self, iface: Interface, frame: bytes | bytearray | memoryview, offset: int) -> None:
        counters = self.counters
        packet = arp.parse(frame, offset)
        counters["arp.rx"] += 1
        for watcher in self.arp_watchers:  # RFC 5227 conflict detection (DHCP client and server)
            watcher(iface, packet.sender_ip, packet.sender_mac, packet.target_ip, packet.op)
        target = packet.target_ip
        # Weak end-system (as Linux's arp_ignore=0): answer for any of our addresses, except
        # loopback ones, on any Ethernet interface.
        owner = self.local_addrs.get(target)
        for_us = owner is not None and not owner.is_loopback
        sender = packet.sender_ip
        if sender == 0 or ipv4.is_multicast(sender) or sender == 0xFFFFFFFF:
            # An ARP probe (RFC 5227: sender 0.0.0.0) teaches us nothing; a bogus sender is ignored.
            if packet.op == arp.OP_REQUEST and for_us:
                counters["arp.probe_for_us"] += 1
                counters["arp.tx_reply"] += 1
                self._send_arp_reply(iface, packet.sender_mac, sender, target)
            return
        if packet.sender_mac[0] & 1:
            counters["arp.bad_sender_mac"] += 1
            return
        resolver = iface.neighbours
        if sender in self.local_addrs:
            if packet.sender_mac == iface.mac:
                return  # our own announcement, looped back
            counters["arp.address_conflict"] += 1
            log.warning("ARP: %s claims our address %s on %s", ethernet.format_mac(packet.sender_mac),
                        ipv4.ntoa(sender), iface.name)
            if resolver is not None and not self.local_addrs[sender].is_loopback:
                # RFC 5227 2.4 (b): defend the address with one announcement of our own, unless we
                # already defended it within DEFEND_INTERVAL (then only record the conflict).
                last = resolver.defended_at.get(sender)
                if last is None or self._now - last >= resolver.config.defend_interval:
                    resolver.defended_at[sender] = self._now
                    counters["arp.defended"] += 1
                    self._emit_l2(iface, ethernet.BROADCAST, ethernet.ETHERTYPE_ARP,
                                  arp.build(arp.OP_REQUEST, iface.mac, sender, _ZERO_MAC, sender))
            return
        if resolver is None:
            return
        # RFC 826 merge: refresh an entry we have; create one only when the packet is for us.
        for ip_packet in resolver.confirm(sender, packet.sender_mac, self._now, create=for_us):
            self._emit_ip_frame(iface, packet.sender_mac, ip_packet)
        if sender == target:
            counters["arp.rx_gratuitous"] += 1  # an announcement: refreshed above, nothing to answer
        elif packet.op == arp.OP_REQUEST:
            if for_us:
                counters["arp.tx_reply"] += 1
                self._send_arp_reply(iface, packet.sender_mac, sender, target)
            else:
                counters["arp.request_not_for_us"] += 1

    def _send_arp_reply(self, iface: Interface, to_mac: bytes, to_ip: int, our_ip: int) -> None:
        self._emit_l2(iface, to_mac, ethernet.ETHERTYPE_ARP, arp.build(arp.OP_REPLY, iface.mac, our_ip, to_mac, to_ip))

    def _send_arp_request(self, iface: Interface, ip: int, unicast_to: bytes | None = None) -> None:
        self.counters["arp.tx_request"] += 1
        self._emit_l2(iface, unicast_to or ethernet.BROADCAST, ethernet.ETHERTYPE_ARP,
                      arp.build(arp.OP_REQUEST, iface.mac, iface.source_for(ip), _ZERO_MAC, ip))

    def send_arp_probe(self, iface: Interface, address: int) -> None:
        """An RFC 5227 probe for *address*: a broadcast request with sender IP 0.0.0.0, so nobody's
        cache learns anything; whoever holds the address answers (heard via ``arp_watchers``)."""
        self._emit_l2(iface, ethernet.BROADCAST, ethernet.ETHERTYPE_ARP,
                      arp.build(arp.OP_REQUEST, iface.mac, 0, _ZERO_MAC, address))
        self.counters["arp.tx_probe"] += 1

    def _announce(self, iface: Interface, address: int) -> None:
        """Gratuitous ARP (RFC 5227 2.3 announcement): neighbours refresh stale entries for us."""
        self._emit_l2(iface, ethernet.BROADCAST, ethernet.ETHERTYPE_ARP,
                      arp.build(arp.OP_REQUEST, iface.mac, address, _ZERO_MAC, address))
        self.counters["arp.tx_gratuitous"] += 1

    def _emit_ip_frame(self, iface: Interface, dst_mac: bytes, packet: bytes | bytearray) -> None:
        self._queue_frame(iface, b"".join((dst_mac, iface.mac, b"\x08\x00", packet)))
