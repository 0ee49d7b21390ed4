"""DHCP on a host: the server driver (``usernet up --serve dhcp-server:...``), its lease file, and
the spec parser. The client's driver lives in :mod:`usernet.api.dhcp` (``Host(dhcp=True)`` needs it
and ``api`` never imports ``apps``).

The server agent binds a :class:`~usernet.proto.dhcp_server.DhcpServer` to an interface of a
stack: a UDP endpoint on port 67 bound to the server's address, an ARP watcher for the probes
made before offering, and the lease file. It is a timer participant of the stack, so it runs on
the host's runtime thread with the host lock held, or in virtual time in tests.

Replies without ARP (RFC 2131 4.1: broadcast bit clear, no ciaddr, no giaddr) go to the client's
hardware address: the agent enters yiaddr -> chaddr in the interface's neighbour cache and sends
normally, as dnsmasq does with its ARP-cache ioctl.

The lease file is JSON (:meth:`DhcpServer.export`), written after every change to a temporary
file in the same directory, fsynced, then renamed over the old one. A file that cannot be read or
parsed is reported (:class:`LeaseFileError`) and left untouched: the server does not start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from usernet.proto.dhcp_server import DhcpServer, ProbeAddress, Reply, ServerConfig
from usernet.wire import dhcp, ethernet, ipv4

if TYPE_CHECKING:
    from usernet.api.host import Host
    from usernet.stack.core import Interface, Stack

log = logging.getLogger("usernet.dhcp")


class LeaseFileError(OSError):
    """The lease file exists but cannot be read or is not a lease file: it is left as it is."""


# ----------------------------------------------------------------- the spec

def parse_server_spec(spec: str) -> dict[str, Any]:
    """``dhcp-server:FIRST-LAST[,lease-file=PATH,router=IP,dns=IP,domain=NAME,lease=SECONDS,reserve=MAC=IP]``
    (``dns`` and ``reserve`` repeatable) to keyword values; ValueError naming the bad part."""
    kind, _, rest = spec.partition(":")
    if kind != "dhcp-server" or not rest:
        raise ValueError("expected dhcp-server:FIRST-LAST[,key=value...]")
    parts = rest.split(",")
    first_text, dash, last_text = parts[0].partition("-")
    if not dash:
        raise ValueError(f"{parts[0]!r}: expected a range FIRST-LAST")
    try:
        first, last = ipv4.addr(first_text.strip()), ipv4.addr(last_text.strip())
    except ValueError:
        raise ValueError(f"{parts[0]!r}: FIRST and LAST must be IPv4 addresses") from None
    if first > last:
        raise ValueError(f"{parts[0]!r}: FIRST is after LAST")
    out: dict[str, Any] = {"first": first, "last": last, "lease_file": None, "router": None, "dns": [],
                           "domain": None, "lease": 3600, "reserve": {}}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not value:
            raise ValueError(f"{part!r}: expected key=value")
        try:
            if key == "lease-file":
                out["lease_file"] = value
            elif key == "router":
                out["router"] = ipv4.addr(value)
            elif key == "dns":
                out["dns"].append(ipv4.addr(value))
            elif key == "domain":
                if not all(label and len(label) < 64 and label.replace("-", "").isalnum() and label.isascii()
                           for label in value.strip(".").split(".")):
                    raise ValueError
                out["domain"] = value.strip(".")
            elif key == "lease":
                if not value.isdigit() or not 60 <= int(value) <= 0xFFFFFFFF:
                    raise ValueError
                out["lease"] = int(value)
            elif key == "reserve":
                mac_text, eq2, ip_text = value.partition("=")
                if not eq2:
                    raise ValueError
                mac = ethernet.parse_mac(mac_text)
                if mac[0] & 1 or mac in out["reserve"]:
                    raise ValueError
                out["reserve"][mac] = ipv4.addr(ip_text)
            else:
                raise ValueError(f"{part!r}: unknown key {key!r} (lease-file, router, dns, domain, lease, reserve)")
        except ValueError as err:
            if str(err):
                raise
            hints = {"router": "an IPv4 address", "dns": "an IPv4 address", "domain": "a domain name",
                     "lease": "seconds, at least 60", "reserve": "MAC=IP with a unicast MAC, once per MAC"}
            raise ValueError(f"{part!r}: {key} must be {hints.get(key, 'valid')}") from None
    return out


def server_config(stack: Stack, spec: dict[str, Any]) -> tuple[ServerConfig, Interface]:
    """The server's configuration for *spec* on the interface whose address covers the pool."""
    for iface in stack.interfaces:
        if iface.is_loopback:
            continue
        for address in iface.addresses:
            if address.contains(spec["first"]) and address.contains(spec["last"]):
                config = ServerConfig(server_ip=address.addr, prefix=address.prefix, pool_start=spec["first"],
                                      pool_end=spec["last"], router=spec["router"], dns=list(spec["dns"]),
                                      domain=spec["domain"], lease_time=spec["lease"],
                                      reservations=dict(spec["reserve"]))
                if config.pool_start <= address.addr <= config.pool_end:
                    log.info("DHCP server: the pool holds our own address %s; it is never offered",
                             ipv4.ntoa(address.addr))
                return config, iface
    raise ValueError(f"no address of this host is on the subnet of {ipv4.ntoa(spec['first'])}-"
                     f"{ipv4.ntoa(spec['last'])} (give the host an address there first)")


# ----------------------------------------------------------------- the lease file

def read_lease_file(path: str) -> Any | None:
    """The lease file's data; None when it does not exist. LeaseFileError when unreadable or corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise LeaseFileError(f"lease file {path} cannot be read: {getattr(err, 'strerror', None) or err}") from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise LeaseFileError(f"lease file {path} is corrupt ({err}); left as it is: move it away to start "
                             "with no leases") from None


def write_lease_file(path: str, data: Any) -> None:
    """Atomically: a temporary file in the same directory, fsync, rename (then fsync the directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".leases-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


# ----------------------------------------------------------------- the agent

class DhcpServerAgent:
    """A DHCP server on one interface of *stack* (driven as a timer participant)."""

    def __init__(self, stack: Stack, config: ServerConfig, iface: Interface, lease_file: str | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.stack = stack
        self.iface = iface
        self.lease_file = lease_file
        self.wall_clock = wall_clock
        now = stack._now
        self.server = DhcpServer(config, counters=stack.counters, now=now)
        if lease_file is not None:
            data = read_lease_file(lease_file)
            if data is not None:
                try:
                    count = self.server.load(data, now, wall_clock())
                except ValueError as err:
                    raise LeaseFileError(f"lease file {lease_file} is not valid ({err}); left as it is: move it "
                                         "away to start with no leases") from None
                log.info("DHCP server: %d leases from %s", count, lease_file)
        self.endpoint = stack.udp_open(config.server_ip, dhcp.SERVER_PORT)
        self.endpoint.broadcast = True
        stack.arp_watchers.append(self._arp)
        stack.add_timer(self)

    def stop(self) -> None:
        stack = self.stack
        stack.remove_timer(self)
        if self._arp in stack.arp_watchers:
            stack.arp_watchers.remove(self._arp)
        stack.udp_close(self.endpoint)
        self._save(stack._now, force=True)

    def hostnames(self) -> dict[str, str]:
        return self.server.hostnames()

    def next_deadline(self) -> float | None:
        if self.endpoint.queue or self.server.has_output:
            return self.stack._now
        return self.server.next_deadline()

    def poll(self, now: float) -> None:
        server = self.server
        while True:
            item = self.endpoint.pop()
            if item is None:
                break
            server.receive(item[0], now)
        self.endpoint.error = None
        server.poll(now)
        self._apply(now)
        self._save(now)

    def _arp(self, iface: Interface, sender_ip: int, sender_mac: bytes, target_ip: int, op: int) -> None:
        if iface is self.iface:
            self.server.arp_seen(sender_ip, sender_mac, target_ip, op, self.stack._now)

    def _apply(self, now: float) -> None:
        stack, iface = self.stack, self.iface
        for action in self.server.take():
            if isinstance(action, Reply):
                if action.mac is not None and iface.neighbours is not None:
                    # RFC 2131 4.1: to chaddr and yiaddr without ARP (the client cannot answer yet).
                    iface.neighbours.confirm(action.dst, action.mac, now, create=True)
                try:
                    stack.udp_send(self.endpoint, action.payload, action.dst, action.port)
                except OSError as err:
                    log.debug("DHCP server: reply to %s failed: %s", ipv4.ntoa(action.dst), err)
            elif isinstance(action, ProbeAddress):
                stack.send_arp_probe(iface, action.address)

    def _save(self, now: float, force: bool = False) -> None:
        if self.lease_file is None or not (self.server.dirty or force):
            return
        try:
            write_lease_file(self.lease_file, self.server.export(now, self.wall_clock()))
        except OSError as err:
            log.error("DHCP server: cannot write %s: %s", self.lease_file, err)


def serve_dhcp(host: Host, spec: str | dict[str, Any]) -> DhcpServerAgent:
    """Start a DHCP server on *host* (``spec`` as for ``--serve``); stopped when the host closes."""
    options = parse_server_spec(spec) if isinstance(spec, str) else spec
    with host.lock:
        config, iface = server_config(host.stack, options)
        agent = DhcpServerAgent(host.stack, config, iface, lease_file=options.get("lease_file"))
        host.kick()

    def stop() -> None:
        with host.lock:
            agent.stop()

    host.add_service(stop)
    host.dhcp_server = agent.server
    return agent


__all__ = ["DhcpServerAgent", "LeaseFileError", "parse_server_spec", "read_lease_file", "serve_dhcp",
           "server_config", "write_lease_file"]
