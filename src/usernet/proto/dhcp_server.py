"""The DHCP server (RFC 2131 4.3), sans-IO: ``now`` on every call, no I/O.

Inputs: :meth:`DhcpServer.receive` (a UDP payload that came to port 67), :meth:`DhcpServer.arp_seen`
(ARP packets heard on the link) and :meth:`DhcpServer.poll`; outputs, drained with
:meth:`DhcpServer.take`: :class:`Reply` (a message and where RFC 2131 4.1 says it goes) and
:class:`ProbeAddress` (an ARP probe). Leases persist through :meth:`DhcpServer.export` and
:meth:`DhcpServer.load` (plain data; the driver writes the file).

Policy:

* One record per address, so two clients never hold one address. A client is known by its
  client identifier (option 61) or else its hardware address (RFC 2131 4.2).
* An address for DISCOVER (RFC 2131 4.3.1): the client's reservation (``reserve=MAC=IP``), its
  current or previous binding, the address it asks for, then the lowest address nobody ever had,
  then the one expired longest ago. An address is offered only after an ARP probe got no answer
  within ``probe_wait`` (as dnsmasq pings before offering); one that answers is skipped for
  ``conflict_hold``, as is an address a client DECLINEd. Offers are held ``offer_hold`` seconds.
* Bounds: pool exhaustion is answered with silence (``dhcp.server_exhausted``); clients never seen
  before get at most ``new_client_share`` of the pool a minute (``dhcp.server_rate_limited``), so a
  flood of DISCOVERs from ever new MACs cannot starve the pool quickly; at most
  ``max_pending_probes`` probes run at once.
* REQUEST in INIT-REBOOT, RENEWING or REBINDING for a free address in the pool that we have no
  record of (a server that lost its lease file) is acknowledged, as an authoritative dnsmasq
  does; a wrong address is NAKed (``authoritative``; otherwise silence, RFC 2131 4.3.2).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from usernet.stack.counters import Counters
from usernet.wire import dhcp
from usernet.wire.errors import ParseError
from usernet.wire.ipv4 import addr as parse_ip
from usernet.wire.ipv4 import ntoa

log = logging.getLogger("usernet.dhcp")

OFFERED = "offered"
BOUND = "bound"
RELEASED = "released"

BROADCAST = 0xFFFFFFFF
LEASE_FILE_FORMAT = "usernet-dhcp-leases"
MAX_POOL = 65536
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0


@dataclass
class ServerConfig:
    server_ip: int                      # our address on the served link: the server identifier
    prefix: int
    pool_start: int
    pool_end: int
    router: int | None = None
    dns: list[int] = field(default_factory=list)
    domain: str | None = None
    lease_time: int = 3600
    offer_hold: float = 30.0
    reservations: dict[bytes, int] = field(default_factory=dict)  # MAC -> address
    authoritative: bool = True
    probe: bool = True
    probe_wait: float = 0.5
    probe_tries: int = 3
    probe_cache: float = 60.0           # an address found free is not probed again this soon
    conflict_hold: float = 600.0
    new_client_share: float = 0.25      # of the pool, per minute, for clients never seen before
    max_pending_probes: int = 64
    mtu: int | None = None

    def __post_init__(self) -> None:
        mask = _mask(self.prefix)
        network = self.server_ip & mask
        if not 0 < self.prefix <= 30:
            raise ValueError(f"prefix /{self.prefix}: a DHCP subnet needs /1 to /30")
        if self.pool_start > self.pool_end:
            raise ValueError(f"pool {ntoa(self.pool_start)}-{ntoa(self.pool_end)}: the first is after the last")
        if self.pool_end - self.pool_start + 1 > MAX_POOL:
            raise ValueError(f"pool of {self.pool_end - self.pool_start + 1} addresses: at most {MAX_POOL}")
        broadcast = network | (~mask & 0xFFFFFFFF)
        for what, address in [("pool start", self.pool_start), ("pool end", self.pool_end),
                              *(("reservation", a) for a in self.reservations.values())]:
            if address & mask != network or address in (network, broadcast):
                raise ValueError(f"{what} {ntoa(address)} is not a host address of "
                                 f"{ntoa(network)}/{self.prefix}, the server's subnet")
        if not 0 < self.lease_time <= dhcp.INFINITE:
            raise ValueError("lease time must be 1 .. 2**32-1 seconds")

    @property
    def pool_size(self) -> int:
        return self.pool_end - self.pool_start + 1


@dataclass
class Binding:
    address: int
    key: bytes
    mac: bytes
    state: str
    expires: float
    hostname: str | None = None
    client_id: bytes | None = None
    ever_bound: bool = False


@dataclass(slots=True)
class Reply:
    payload: bytes
    dst: int           # address (BROADCAST for the limited broadcast)
    port: int          # 68 to a client, 67 to a relay
    mac: bytes | None  # send to this hardware address without ARP (RFC 2131 4.1), else None


@dataclass(slots=True)
class ProbeAddress:
    address: int


ServerAction = Reply | ProbeAddress


@dataclass
class _Probe:
    message: dhcp.DhcpMessage
    address: int
    deadline: float
    tries: int


class DhcpServer:
    def __init__(self, config: ServerConfig, counters: MutableMapping[str, int] | None = None,
                 now: float = 0.0) -> None:
        self.config = config
        self.counters: MutableMapping[str, int] = counters if counters is not None else Counters()
        self.by_addr: dict[int, Binding] = {}
        self.by_key: dict[bytes, int] = {}
        self.conflicts: dict[int, float] = {}       # address -> until
        self.checked: dict[int, float] = {}         # address -> when a probe found it free
        self.probing: dict[bytes, _Probe] = {}      # client key -> probe in progress
        self._new_clients: deque[float] = deque()   # when each never-seen client got an address
        self._reserved = set(config.reservations.values())
        self._actions: list[ServerAction] = []
        self._now = now
        self.dirty = False                          # leases changed since the last export

    # ----------------------------------------------------------------- driver side

    def take(self) -> list[ServerAction]:
        actions, self._actions = self._actions, []
        return actions

    @property
    def has_output(self) -> bool:
        return bool(self._actions)

    def next_deadline(self) -> float | None:
        if not self.probing:
            return None
        return min(p.deadline for p in self.probing.values())

    def poll(self, now: float) -> None:
        self._now = now
        for key, probe in list(self.probing.items()):
            if probe.deadline <= now:
                del self.probing[key]
                self.checked[probe.address] = now
                self._offer(probe.message, probe.address, now)

    def hostnames(self) -> dict[str, str]:
        """{hostname: address} for the bound leases whose clients sent a hostname (option 12)."""
        now = self._now
        return {b.hostname: ntoa(b.address) for b in self.by_addr.values()
                if b.hostname and b.state == BOUND and b.expires > now}

    def leases(self) -> list[dict[str, Any]]:
        """The active bindings, as plain values."""
        now = self._now
        return [{"address": ntoa(b.address), "mac": b.mac.hex(":"), "state": b.state, "hostname": b.hostname,
                 "remaining": round(b.expires - now, 1)} for b in sorted(self.by_addr.values(), key=lambda b: b.address)
                if self._active(b, now)]

    # ----------------------------------------------------------------- addresses

    def _active(self, binding: Binding, now: float) -> bool:
        return binding.state in (OFFERED, BOUND) and binding.expires > now

    def _in_pool(self, address: int) -> bool:
        return self.config.pool_start <= address <= self.config.pool_end

    def _usable(self, address: int, key: bytes, mac: bytes, now: float) -> bool:
        """Whether *address* may go to the client *key*."""
        cfg = self.config
        if address in (cfg.server_ip, cfg.router) or not (self._in_pool(address) or address in self._reserved):
            return False
        if address in self._reserved and cfg.reservations.get(mac) != address:
            return False
        until = self.conflicts.get(address)
        if until is not None:
            if until > now:
                return False
            del self.conflicts[address]
        binding = self.by_addr.get(address)
        return binding is None or binding.key == key or not self._active(binding, now)

    def _choose(self, key: bytes, mac: bytes, requested: int | None, now: float) -> int | None:
        reserved = self.config.reservations.get(mac)
        if reserved is not None:
            return reserved if self._usable(reserved, key, mac, now) else None
        current = self.by_key.get(key)
        if current is not None and self._usable(current, key, mac, now):
            return current
        if requested and self._in_pool(requested) and self._usable(requested, key, mac, now):
            return requested
        oldest: tuple[float, int] | None = None
        by_addr = self.by_addr
        for address in range(self.config.pool_start, self.config.pool_end + 1):
            binding = by_addr.get(address)
            if binding is None:
                if self._usable(address, key, mac, now):
                    return address
            elif not self._active(binding, now) and self._usable(address, key, mac, now):
                if oldest is None or binding.expires < oldest[0]:
                    oldest = (binding.expires, address)
        return oldest[1] if oldest is not None else None

    def _assign(self, address: int, key: bytes, mac: bytes, client_id: bytes | None, state: str,
                expires: float) -> Binding:
        previous = self.by_key.get(key)
        if previous is not None and previous != address:
            old = self.by_addr.get(previous)
            if old is not None and old.key == key and old.state == OFFERED:
                del self.by_addr[previous]  # an offer it will not take any more
        binding = self.by_addr.get(address)
        if binding is None or binding.key != key:
            if binding is not None:
                self.by_key.pop(binding.key, None)  # the old holder's lease had expired
            binding = Binding(address, key, mac, state, expires, client_id=client_id)
            self.by_addr[address] = binding
        else:
            binding.state, binding.expires, binding.mac = state, expires, mac
        self.by_key[key] = address
        return binding

    # ----------------------------------------------------------------- messages in

    def receive(self, payload: bytes | bytearray | memoryview, now: float) -> None:
        """A UDP payload that came to port 67."""
        self._now = now
        try:
            message = dhcp.parse(payload)
        except ParseError as err:
            self.counters[err.reason] += 1
            return
        if message.op != dhcp.BOOTREQUEST or message.htype != dhcp.HTYPE_ETHERNET or len(message.chaddr) != 6:
            self.counters["dhcp.server_ignored"] += 1
            return
        kind = message.message_type
        if kind == dhcp.DISCOVER:
            self.counters["dhcp.server_discovers"] += 1
            self._discover(message, now)
        elif kind == dhcp.REQUEST:
            self.counters["dhcp.server_requests"] += 1
            self._request(message, now)
        elif kind == dhcp.DECLINE:
            self.counters["dhcp.server_declines"] += 1
            self._decline(message, now)
        elif kind == dhcp.RELEASE:
            self.counters["dhcp.server_releases"] += 1
            self._release(message, now)
        elif kind == dhcp.INFORM:
            self.counters["dhcp.server_informs"] += 1
            self._inform(message, now)
        else:
            self.counters["dhcp.server_ignored"] += 1

    @staticmethod
    def _key(message: dhcp.DhcpMessage) -> bytes:
        client_id = message.options.get(dhcp.OPT_CLIENT_ID)
        return b"id:" + client_id if client_id else b"hw:" + message.chaddr

    def _discover(self, message: dhcp.DhcpMessage, now: float) -> None:
        cfg = self.config
        key = self._key(message)
        if key in self.probing:
            return  # a retransmission while we probe for it
        known = key in self.by_key or message.chaddr in cfg.reservations
        if not known:
            window = self._new_clients
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) >= max(1, int(cfg.pool_size * cfg.new_client_share)):
                self.counters["dhcp.server_rate_limited"] += 1
                return
        address = self._choose(key, message.chaddr, message.ip(dhcp.OPT_REQUESTED_IP), now)
        if address is None:
            self.counters["dhcp.server_exhausted"] += 1
            log.warning("DHCP server: no address free for %s", message.chaddr.hex(":"))
            return
        if not known:
            self._new_clients.append(now)
        self._hold_and_offer(message, key, address, now, tries=0)

    def _hold_and_offer(self, message: dhcp.DhcpMessage, key: bytes, address: int, now: float, tries: int) -> None:
        cfg = self.config
        binding = self.by_addr.get(address)
        if binding is not None and binding.key == key and self._active(binding, now) and binding.state == BOUND:
            self._offer(message, address, now)  # its own lease: no probe, no change
            return
        self._assign(address, key, message.chaddr, message.options.get(dhcp.OPT_CLIENT_ID), OFFERED,
                     now + cfg.offer_hold)
        checked = self.checked.get(address)
        if (not cfg.probe or (checked is not None and now - checked < cfg.probe_cache)
                or len(self.probing) >= cfg.max_pending_probes):
            self._offer(message, address, now)
            return
        self.probing[key] = _Probe(message, address, now + cfg.probe_wait, tries)
        self._actions.append(ProbeAddress(address))

    def arp_seen(self, sender_ip: int, sender_mac: bytes, target_ip: int, op: int, now: float) -> None:
        """An ARP packet heard on the link: an answer from an address being probed means it is in use."""
        self._now = now
        if not self.probing or sender_ip == 0:
            return
        for key, probe in list(self.probing.items()):
            if probe.address != sender_ip or sender_mac == probe.message.chaddr:
                continue
            del self.probing[key]
            self.counters["dhcp.server_probe_conflicts"] += 1
            log.warning("DHCP server: %s answers ARP from %s; not offering it", ntoa(sender_ip), sender_mac.hex(":"))
            self.conflicts[sender_ip] = now + self.config.conflict_hold
            binding = self.by_addr.get(sender_ip)
            if binding is not None and binding.key == key and binding.state == OFFERED:
                del self.by_addr[sender_ip]
                self.by_key.pop(key, None)
            if probe.tries + 1 >= self.config.probe_tries:
                continue  # silence: the client retransmits and we start again
            address = self._choose(key, probe.message.chaddr, None, now)
            if address is None:
                self.counters["dhcp.server_exhausted"] += 1
                continue
            self._hold_and_offer(probe.message, key, address, now, probe.tries + 1)

    def _request(self, message: dhcp.DhcpMessage, now: float) -> None:
        cfg = self.config
        key = self._key(message)
        server_id = message.ip(dhcp.OPT_SERVER_ID)
        requested = message.ip(dhcp.OPT_REQUESTED_IP)
        current = self.by_key.get(key)
        binding = self.by_addr.get(current) if current is not None else None
        if binding is not None and binding.key != key:
            binding = None
        if server_id is not None:
            # SELECTING (RFC 2131 4.3.2): the client names the server it chose.
            if server_id != cfg.server_ip:
                if binding is not None and binding.state == OFFERED:
                    del self.by_addr[binding.address]  # it chose another server: our offer is free again
                    self.by_key.pop(key, None)
                self.probing.pop(key, None)
                self.counters["dhcp.server_ignored"] += 1
                return
            wanted = requested or message.ciaddr
            if binding is not None and binding.address == wanted and self._active(binding, now):
                self._ack(message, binding.address, now)
            else:
                self._nak(message, "offer expired or not made" if binding is None else "wrong address", now)
            return
        if requested is not None and not message.ciaddr:
            wanted, how = requested, "INIT-REBOOT"
        elif message.ciaddr and requested is None:
            wanted, how = message.ciaddr, "RENEWING/REBINDING"
        else:
            self.counters["dhcp.server_ignored"] += 1
            return
        mask = _mask(cfg.prefix)
        if wanted & mask != cfg.server_ip & mask and not message.giaddr:
            self._nak(message, "wrong network", now)
            return
        if binding is not None and binding.address != wanted and self._active(binding, now) and \
                binding.state == BOUND:
            self._nak(message, "that is not your address", now)
            return
        if self._usable(wanted, key, message.chaddr, now):
            reserved = cfg.reservations.get(message.chaddr)
            if reserved is not None and reserved != wanted:
                self._nak(message, "that is not your address", now)
                return
            self._ack(message, wanted, now)
            return
        log.info("DHCP server: %s for %s from %s refused", how, ntoa(wanted), message.chaddr.hex(":"))
        if cfg.authoritative:
            self._nak(message, "address not available", now)

    def _decline(self, message: dhcp.DhcpMessage, now: float) -> None:
        if message.ip(dhcp.OPT_SERVER_ID) not in (None, self.config.server_ip):
            return
        address = message.ip(dhcp.OPT_REQUESTED_IP)
        key = self._key(message)
        binding = self.by_addr.get(address) if address is not None else None
        if binding is None or binding.key != key or address is None:
            self.counters["dhcp.server_ignored"] += 1
            return
        log.warning("DHCP server: %s declined %s (in use by someone else)", message.chaddr.hex(":"), ntoa(address))
        del self.by_addr[address]
        self.by_key.pop(key, None)
        self.conflicts[address] = now + self.config.conflict_hold
        self.dirty = True

    def _release(self, message: dhcp.DhcpMessage, now: float) -> None:
        if message.ip(dhcp.OPT_SERVER_ID) not in (None, self.config.server_ip):
            return
        binding = self.by_addr.get(message.ciaddr)
        if binding is None or binding.key != self._key(message):
            self.counters["dhcp.server_ignored"] += 1
            return
        binding.state = RELEASED
        binding.expires = now
        self.dirty = True

    def _inform(self, message: dhcp.DhcpMessage, now: float) -> None:
        if not message.ciaddr:
            self.counters["dhcp.server_ignored"] += 1
            return
        reply = self._reply(message, dhcp.ACK, 0, lease=False)
        self._send(message, reply, dhcp.ACK)
        self.counters["dhcp.server_acks"] += 1

    # ----------------------------------------------------------------- messages out

    def _lease_time(self, message: dhcp.DhcpMessage) -> int:
        asked = message.u32(dhcp.OPT_LEASE_TIME)
        lease = self.config.lease_time
        return min(lease, max(asked, 60)) if asked else lease

    def _reply(self, message: dhcp.DhcpMessage, kind: int, yiaddr: int, lease: bool) -> dhcp.DhcpMessage:
        cfg = self.config
        options: dict[int, bytes] = {dhcp.OPT_MESSAGE_TYPE: bytes((kind,)),
                                     dhcp.OPT_SERVER_ID: dhcp.ip_bytes(cfg.server_ip)}
        if kind != dhcp.NAK:
            if lease:
                seconds = self._lease_time(message)
                options[dhcp.OPT_LEASE_TIME] = dhcp.u32_bytes(seconds)
                if seconds != dhcp.INFINITE:
                    options[dhcp.OPT_T1] = dhcp.u32_bytes(seconds // 2)
                    options[dhcp.OPT_T2] = dhcp.u32_bytes(seconds * 7 // 8)
            mask = _mask(cfg.prefix)
            options[dhcp.OPT_SUBNET_MASK] = dhcp.ip_bytes(mask)
            options[dhcp.OPT_BROADCAST] = dhcp.ip_bytes((cfg.server_ip & mask) | (~mask & 0xFFFFFFFF))
            if cfg.router:
                options[dhcp.OPT_ROUTER] = dhcp.ip_bytes(cfg.router)
            if cfg.dns:
                options[dhcp.OPT_DNS] = dhcp.ip_bytes(*cfg.dns)
            if cfg.domain:
                options[dhcp.OPT_DOMAIN] = cfg.domain.encode("ascii")
                asked = message.options.get(dhcp.OPT_PARAMS, b"")
                if dhcp.OPT_DOMAIN_SEARCH in asked:
                    options[dhcp.OPT_DOMAIN_SEARCH] = dhcp.encode_domain_search([cfg.domain])
            if cfg.mtu:
                options[dhcp.OPT_MTU] = cfg.mtu.to_bytes(2, "big")
        return dhcp.DhcpMessage(op=dhcp.BOOTREPLY, xid=message.xid, chaddr=message.chaddr, options=options,
                                flags=message.flags, giaddr=message.giaddr, yiaddr=yiaddr,
                                ciaddr=message.ciaddr if kind in (dhcp.ACK,) else 0)

    def _send(self, request: dhcp.DhcpMessage, reply: dhcp.DhcpMessage, kind: int) -> None:
        """Where RFC 2131 4.1 sends a server's reply."""
        size = request.u16(dhcp.OPT_MAX_SIZE) or dhcp.DEFAULT_MAX_SIZE
        if request.giaddr:
            if kind == dhcp.NAK:
                reply.flags |= dhcp.FLAG_BROADCAST
            self._actions.append(Reply(dhcp.build(reply, size), request.giaddr, dhcp.SERVER_PORT, None))
        elif kind == dhcp.NAK:
            self._actions.append(Reply(dhcp.build(reply, size), BROADCAST, dhcp.CLIENT_PORT, None))
        elif request.ciaddr:
            self._actions.append(Reply(dhcp.build(reply, size), request.ciaddr, dhcp.CLIENT_PORT, None))
        elif request.broadcast:
            self._actions.append(Reply(dhcp.build(reply, size), BROADCAST, dhcp.CLIENT_PORT, None))
        else:
            self._actions.append(Reply(dhcp.build(reply, size), reply.yiaddr, dhcp.CLIENT_PORT, request.chaddr))

    def _offer(self, message: dhcp.DhcpMessage, address: int, now: float) -> None:
        self._send(message, self._reply(message, dhcp.OFFER, address, lease=True), dhcp.OFFER)
        self.counters["dhcp.server_offers"] += 1

    def _ack(self, message: dhcp.DhcpMessage, address: int, now: float) -> None:
        key = self._key(message)
        self.probing.pop(key, None)
        lease = self._lease_time(message)
        expires = float("inf") if lease == dhcp.INFINITE else now + lease
        binding = self._assign(address, key, message.chaddr, message.options.get(dhcp.OPT_CLIENT_ID), BOUND, expires)
        binding.ever_bound = True
        hostname = message.text(dhcp.OPT_HOSTNAME)
        if hostname:
            hostname = hostname.split(".")[0]
            binding.hostname = hostname if _HOSTNAME.match(hostname) else None
        self.dirty = True
        self._send(message, self._reply(message, dhcp.ACK, address, lease=True), dhcp.ACK)
        self.counters["dhcp.server_acks"] += 1

    def _nak(self, message: dhcp.DhcpMessage, why: str, now: float) -> None:
        reply = self._reply(message, dhcp.NAK, 0, lease=False)
        reply.options[dhcp.OPT_MESSAGE] = why.encode("ascii")
        self._send(message, reply, dhcp.NAK)
        self.counters["dhcp.server_naks"] += 1

    # ----------------------------------------------------------------- persistence

    def export(self, now: float, wall: float) -> dict[str, Any]:
        """The leases worth keeping (bound, or released/expired but remembered), expiry in wall-clock
        seconds (*wall* is the wall clock at *now*)."""
        self.dirty = False
        rows = []
        for binding in sorted(self.by_addr.values(), key=lambda b: b.address):
            if not binding.ever_bound:
                continue
            state = binding.state if binding.state != OFFERED else BOUND
            expires = None if binding.expires == float("inf") else round(wall + (binding.expires - now), 3)
            rows.append({"address": ntoa(binding.address), "mac": binding.mac.hex(":"),
                         "client_id": binding.client_id.hex() if binding.client_id else None,
                         "hostname": binding.hostname, "state": state, "expires": expires})
        return {"format": LEASE_FILE_FORMAT, "version": 1, "leases": rows}

    def load(self, data: Any, now: float, wall: float) -> int:
        """Records written by :meth:`export`; returns how many were taken. Raises ValueError naming
        what is wrong, leaving the server as it was."""
        if not isinstance(data, dict) or data.get("format") != LEASE_FILE_FORMAT or data.get("version") != 1:
            raise ValueError(f"not a usernet lease file (format {LEASE_FILE_FORMAT!r}, version 1)")
        rows = data.get("leases")
        if not isinstance(rows, list):
            raise ValueError("'leases' is not a list")
        loaded: dict[int, Binding] = {}
        for index, row in enumerate(rows):
            try:
                address = parse_ip(row["address"])
                mac = bytes.fromhex(row["mac"].replace(":", ""))
                client_id = bytes.fromhex(row["client_id"]) if row.get("client_id") else None
                state = row["state"]
                expires_wall = row["expires"]
                hostname = row.get("hostname")
                if len(mac) != 6 or state not in (BOUND, RELEASED) or \
                        not (expires_wall is None or isinstance(expires_wall, (int, float))) or \
                        not (hostname is None or isinstance(hostname, str)):
                    raise ValueError("bad field")
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise ValueError(f"lease {index + 1}: malformed record {row!r} ({err})") from None
            if address in loaded:
                raise ValueError(f"lease {index + 1}: {ntoa(address)} appears twice")
            if not (self._in_pool(address) or address in self._reserved):
                log.info("DHCP server: lease of %s is outside the pool now; forgotten", ntoa(address))
                continue
            key = b"id:" + client_id if client_id else b"hw:" + mac
            expires = float("inf") if expires_wall is None else now + (expires_wall - wall)
            loaded[address] = Binding(address, key, mac, state, expires, hostname=hostname, client_id=client_id,
                                      ever_bound=True)
        keys: dict[bytes, int] = {}
        for binding in loaded.values():
            if binding.key in keys:
                # Two records of one client: keep the one that lasts longer.
                other = loaded[keys[binding.key]]
                if other.expires >= binding.expires:
                    continue
            keys[binding.key] = binding.address
        self.by_addr = {a: loaded[a] for a in keys.values()}
        self.by_key = dict(keys)
        self.dirty = False
        return len(self.by_addr)
