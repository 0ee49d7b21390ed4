"""The DHCP client on a stack: binds the sans-IO :class:`~usernet.proto.dhcp_client.DhcpClient` to
one interface of a :class:`~usernet.stack.core.Stack`.

The agent is a timer participant of the stack, so it runs wherever the stack is driven: on a
:class:`~usernet.api.host.Host`'s runtime thread (``Host(link, dhcp=True)``, ``usernet up --dhcp``,
``usernet dhcp``) or in virtual time in tests. It owns a UDP endpoint bound to 0.0.0.0:68 and an
ARP watcher; every call is made with the host lock held (the stack's callers hold it).

Before the interface has an address, DHCP messages leave from 0.0.0.0 to 255.255.255.255 through
the ordinary UDP path (``Stack.udp_send``: an unbound source on an interface without addresses
is 0.0.0.0, and the limited broadcast leaves by the primary interface), and the stack accepts
unicast UDP to an interface that has no address yet (offers sent to the new lease's address).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from usernet.proto.dhcp_client import BROADCAST, Bind, ClientConfig, DhcpClient, Lease, Probe, Send, Unbind
from usernet.wire import dhcp
from usernet.wire.ipv4 import ntoa

if TYPE_CHECKING:
    from usernet.stack.core import Interface, Stack

log = logging.getLogger("usernet.dhcp")

#: on_change(lease or None, what): "bound", "renewed", "changed" and "expired"/"nak"/"released"/"conflict"
ChangeHook = Callable[[Lease | None, str], None]


class DhcpClientAgent:
    """The DHCP client of one interface (default: the primary one)."""

    def __init__(self, stack: Stack, iface: Interface | None = None, config: ClientConfig | None = None,
                 requested: int | None = None) -> None:
        self.stack = stack
        self.iface = iface or stack.primary
        if self.iface is not stack.primary:
            raise ValueError("the DHCP client runs on the primary interface")  # broadcasts from 0.0.0.0 leave there
        self.machine = DhcpClient(self.iface.mac, rng=stack.rng, config=config, counters=stack.counters,
                                  requested=requested)
        self.lease: Lease | None = None
        self.on_change: list[ChangeHook] = []
        self._base_mtu = self.iface.mtu
        self._gateway_set = 0
        self._started = False
        self.endpoint = stack.udp_open(0, dhcp.CLIENT_PORT)
        self.endpoint.broadcast = True
        stack.arp_watchers.append(self._arp)
        stack.add_timer(self)

    # ----------------------------------------------------------------- lifecycle

    def start(self, now: float) -> None:
        self._started = True
        self.machine.start(now)
        self.poll(now)

    def stop(self, now: float, release: bool = True) -> None:
        """RELEASE (when *release*) and remove the address; the agent is then finished."""
        if self._started:
            self.machine.stop(now, release=release)
            self._apply(now)
        self._started = False
        stack = self.stack
        stack.remove_timer(self)
        if self._arp in stack.arp_watchers:
            stack.arp_watchers.remove(self._arp)
        stack.udp_close(self.endpoint)

    @property
    def state(self) -> str:
        return self.machine.state

    # ----------------------------------------------------------------- timer participant

    def next_deadline(self) -> float | None:
        if self.endpoint.queue or self.machine.has_output:
            return self.stack._now
        return self.machine.next_deadline()

    def poll(self, now: float) -> None:
        machine = self.machine
        while True:
            item = self.endpoint.pop()
            if item is None:
                break
            data, _ = item
            machine.receive(data, now)
        self.endpoint.error = None  # EADDRNOTAVAIL and the like do not concern a 0.0.0.0 socket
        machine.poll(now)
        self._apply(now)

    def _arp(self, iface: Interface, sender_ip: int, sender_mac: bytes, target_ip: int, op: int) -> None:
        if iface is self.iface:
            self.machine.arp_seen(sender_ip, sender_mac, target_ip, op, self.stack._now)

    # ----------------------------------------------------------------- actions

    def _apply(self, now: float) -> None:
        stack, iface = self.stack, self.iface
        for action in self.machine.take():
            if isinstance(action, Send):
                try:
                    stack.udp_send(self.endpoint, action.payload, action.dst, dhcp.SERVER_PORT)
                except OSError as err:
                    log.debug("DHCP client: send to %s failed: %s", ntoa(action.dst), err)
            elif isinstance(action, Probe):
                stack.send_arp_probe(iface, action.address)
            elif isinstance(action, Bind):
                self._bind(action.lease, action.previous)
            elif isinstance(action, Unbind):
                self._unbind(action.lease, action.reason)

    def _bind(self, lease: Lease, previous: Lease | None) -> None:
        stack, iface = self.stack, self.iface
        if not any(a.addr == lease.address for a in iface.addresses):
            try:
                stack.add_address(iface, lease.cidr)
            except (OSError, ValueError) as err:
                log.warning("DHCP client: cannot add %s: %s", lease.cidr, err)
        router = lease.router
        if router and router != self._gateway_set:
            stack.set_gateway(router, iface)
            self._gateway_set = router
        if lease.mtu:
            iface.mtu = min(self._base_mtu, max(lease.mtu, 576))
        self.lease = lease
        what = "renewed" if previous is not None and previous.address == lease.address else "bound"
        self._notify(lease, what)

    def _unbind(self, lease: Lease, reason: str) -> None:
        stack, iface = self.stack, self.iface
        if self._gateway_set:
            if stack.gateway == self._gateway_set:
                stack.set_gateway(None)
            self._gateway_set = 0
        if any(a.addr == lease.address for a in iface.addresses):
            try:
                stack.remove_address(iface, lease.address)  # bound sockets get EADDRNOTAVAIL
            except OSError as err:
                if err.errno != errno.EADDRNOTAVAIL:
                    raise
        iface.mtu = self._base_mtu
        self.lease = None
        self._notify(None, reason)

    def _notify(self, lease: Lease | None, what: str) -> None:
        for hook in list(self.on_change):
            try:
                hook(lease, what)
            except Exception:  # a listener's bug must not break the client
                log.exception("DHCP lease change hook failed")


def describe(lease: Lease) -> list[str]:
    """``usernet dhcp``'s lines for a lease."""
    info = lease.describe()
    return [f"address {info['address']}",
            f"router {info['router'] or '-'}",
            f"dns {' '.join(info['dns']) or '-'}",
            f"domain {info['domain'] or '-'}",
            f"lease {info['lease']}" + (" s" if info["lease"] != "infinite" else ""),
            f"server {info['server']}"]


def summary(lease: Lease | None, what: str) -> str:
    """One line for a lease change (``usernet up --dhcp``)."""
    if lease is None:
        return f"dhcp lost ({what})"
    router = ntoa(lease.router) if lease.router else "-"
    dns = ",".join(ntoa(a) for a in lease.dns) or "-"
    time = "infinite" if lease.infinite else f"{lease.lease_time}s"
    return f"dhcp {what} {lease.cidr} router {router} dns {dns} lease {time} server {ntoa(lease.server_id)}"


__all__ = ["DhcpClientAgent", "ClientConfig", "Lease", "describe", "summary", "BROADCAST"]
