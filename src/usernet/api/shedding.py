"""Load shedding in the kernel for the runtime's links (the policy is usernet.links.bpf's
OverloadControl; this is the glue that feeds it each link's counts and applies its verdicts)."""

from __future__ import annotations

import logging
from typing import Any

from usernet.links.bpf import MAX_ADMITTED, OverloadControl

log = logging.getLogger("usernet.host")


def innermost(link: Any) -> Any:
    """The device under a link's middleware (pcap, tracer, fault injector)."""
    while hasattr(link, "inner"):
        link = link.inner
    return link


class _Entry:
    def __init__(self, iface: Any, device: Any) -> None:
        self.iface = iface
        self.device = device
        self.control = OverloadControl()
        self.frames = int(iface.stats["rx_packets"])
        self.admitted: list[int] = []


VALIDATED_FOR = 60.0  # seconds a completed handshake keeps its peer's SYNs unshed


class LoadShedding:
    """One OverloadControl per link whose device takes kernel filters (AF_PACKET today)."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.entries: list[_Entry] = []
        self.syns = 0
        self.frags = 0
        self.next_update = 0.0

    def add(self, iface: Any, link: Any) -> None:
        device = innermost(link)
        if not hasattr(device, "install_filter") or not iface.mac:
            return
        try:
            device.install_filter(iface.mac)
        except OSError as err:  # no filter: the host runs as before, only without shedding
            log.warning("link %s: no kernel filter (%s)", getattr(device, "name", "?"), err)
            return
        device.kernel_drops()  # start the count from now
        self.entries.append(_Entry(iface, device))
        self.next_update = 0.0

    def tick(self, now: float) -> None:
        """About every OverloadControl.interval: read each link's kernel drops, adjust its filter."""
        if now < self.next_update:
            return
        if not self.entries:
            self.next_update = float("inf")  # nothing to watch until add() gives a link
            return
        self.next_update = now + OverloadControl.interval
        counters = self.stack.counters
        syns_total = self.stack.tcp.counters.get("syns_received", 0)  # tcp.syns_received
        syns = syns_total - self.syns
        self.syns = syns_total
        frags_total = counters.get("ipv4.fragments_rx", 0)
        frags = frags_total - self.frags
        self.frags = frags_total
        admitted: list[int] | None = None
        for entry in self.entries:
            drops = entry.device.kernel_drops()
            frames_total = int(entry.iface.stats["rx_packets"])
            frames = frames_total - entry.frames
            entry.frames = frames_total
            if drops:
                counters["link.kernel_dropped"] += drops
            control = entry.control
            was_engaged = control.engaged
            changed = control.update(drops, entry.device.queue_fill(), frames, min(syns, frames),
                                     min(frags, frames))
            if control.engaged and (control.syn_keep < 1.0 or control.frag_keep < 1.0):
                if admitted is None:
                    admitted = self._validated_peers(now)
                if admitted != entry.admitted:
                    entry.admitted = admitted
                    changed = True
            if not changed:
                continue
            if control.engaged and not was_engaged:
                counters["link.overload_engaged"] += 1
                log.info("link %s overloaded (%d frames dropped by the kernel): shedding in the kernel",
                         entry.device.name, drops)
            elif was_engaged and not control.engaged:
                log.info("link %s: overload over, base filter back", entry.device.name)
            try:
                entry.device.set_overload(control.engaged, control.syn_keep,
                                          entry.admitted if control.engaged else (), control.frag_keep)
            except OSError as err:
                log.debug("link %s: filter not replaced: %s", entry.device.name, err)

    def _validated_peers(self, now: float) -> list[int]:
        """The most recent peers that completed a handshake within VALIDATED_FOR (TcpLayer keeps
        the last 64, so this costs the same however many connections there are)."""
        out: list[int] = []
        for address, when in reversed(self.stack.tcp.validated_peers.items()):
            if now - when > VALIDATED_FOR or len(out) >= MAX_ADMITTED:
                break
            out.append(address)
        return sorted(out)
