"""The DHCP client (RFC 2131 4.4, its figure 5), with address conflict detection (RFC 5227).

Sans-IO: the machine gets ``now`` on every call and randomness (transaction IDs, jitter) from an
injected ``random.Random``; it does no I/O. Its inputs are :meth:`DhcpClient.receive` (a UDP
payload that arrived on port 68), :meth:`DhcpClient.arp_seen` (every ARP packet heard on the
link, for RFC 5227) and :meth:`DhcpClient.poll` (timers); its outputs, drained with
:meth:`DhcpClient.take`, are actions for the driver: :class:`Send` (a message for port 67),
:class:`Probe` (an ARP probe), :class:`Bind` (configure the lease's address, route, DNS servers)
and :class:`Unbind` (remove them).

States, as in RFC 2131's figure 5: INIT, SELECTING, REQUESTING, BOUND, RENEWING, REBINDING,
INIT-REBOOT and REBOOTING, plus PROBING (the RFC 5227 check between DHCPACK and BOUND; RFC 2131
4.4.1 asks for a check there, and DHCPDECLINE on conflict) and STOPPED.

Choices the RFCs leave open:

* SELECTING collects offers for ``select_window`` after the first and picks deterministically:
  an offer of the address we asked for, then the longest lease, then the lowest server
  identifier and address.
* Retransmission (RFC 2131 4.1): 4 s, doubling up to 64 s, each randomised by +-1 s. In RENEWING
  and REBINDING, half the time left until T2 (resp. expiry), at least ``renew_min_interval``
  (60 s in RFC 2131 4.4.5) but never past T2 (resp. expiry).
* After a DHCPNAK the client restarts at INIT at once; repeated NAKs back off (1, 2, 4 ... 60 s)
  so a confused server cannot make it loop at line rate.
* RFC 5227's probe timings are parameters; the defaults are shorter than the RFC's (which take
  about 7 s per address): :data:`RFC5227_TIMING` gives the RFC's values.
* The random 1-10 s wait before the first DISCOVER (RFC 2131 4.4.1) is ``init_delay`` (default 0).
"""

from __future__ import annotations

import logging
import random
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from usernet.stack.counters import Counters
from usernet.wire import dhcp
from usernet.wire.errors import ParseError
from usernet.wire.ipv4 import ntoa

log = logging.getLogger("usernet.dhcp")

INIT = "INIT"
SELECTING = "SELECTING"
REQUESTING = "REQUESTING"
PROBING = "PROBING"
BOUND = "BOUND"
RENEWING = "RENEWING"
REBINDING = "REBINDING"
INIT_REBOOT = "INIT-REBOOT"
REBOOTING = "REBOOTING"
STOPPED = "STOPPED"

BROADCAST = 0xFFFFFFFF

#: RFC 5227 section 1.1's constants, for ClientConfig(**RFC5227_TIMING)
RFC5227_TIMING = {"probe_wait": 1.0, "probe_num": 3, "probe_min": 1.0, "probe_max": 2.0, "announce_wait": 2.0}

DEFAULT_PARAMS = (dhcp.OPT_SUBNET_MASK, dhcp.OPT_ROUTER, dhcp.OPT_DNS, dhcp.OPT_DOMAIN, dhcp.OPT_MTU,
                  dhcp.OPT_BROADCAST, dhcp.OPT_LEASE_TIME, dhcp.OPT_T1, dhcp.OPT_T2, dhcp.OPT_DOMAIN_SEARCH)


@dataclass
class ClientConfig:
    hostname: str | None = None           # option 12, sent in DISCOVER and REQUEST
    client_id: bytes | None = None        # option 61; default: hardware type 1 and the MAC
    params: tuple[int, ...] = DEFAULT_PARAMS
    max_message_size: int = 1500          # option 57 (at least 576)
    broadcast_flag: bool = False          # ask servers to broadcast their replies
    init_delay: float = 0.0               # up to this long (random) before the first DISCOVER
    select_window: float = 0.5            # offers collected after the first one
    first_retransmit: float = 4.0         # RFC 2131 4.1
    max_retransmit: float = 64.0
    jitter: float = 1.0
    request_tries: int = 4                # REQUESTING: then back to INIT
    reboot_tries: int = 2                 # REBOOTING: then INIT (asking for the address again)
    renew_min_interval: float = 60.0      # RFC 2131 4.4.5
    decline_wait: float = 10.0            # RFC 2131 3.1.5: at least 10 s after a DECLINE
    probe: bool = True                    # RFC 5227 check before using an address
    probe_wait: float = 0.2
    probe_num: int = 3
    probe_min: float = 0.2
    probe_max: float = 0.4
    announce_wait: float = 0.4
    max_conflicts: int = 10               # RFC 5227 MAX_CONFLICTS ...
    rate_limit_interval: float = 60.0     # ... then one attempt a RATE_LIMIT_INTERVAL


@dataclass
class Lease:
    """What a DHCPACK gave: times are the machine's clock (``acquired`` is when the request went out)."""

    address: int
    prefix: int
    server_id: int
    lease_time: int
    t1: float
    t2: float
    acquired: float
    routers: list[int] = field(default_factory=list)
    dns: list[int] = field(default_factory=list)
    domain: str | None = None
    search: list[str] = field(default_factory=list)
    hostname: str | None = None
    mtu: int | None = None
    broadcast: int | None = None
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def infinite(self) -> bool:
        return self.lease_time == dhcp.INFINITE

    @property
    def expires(self) -> float:
        return float("inf") if self.infinite else self.acquired + self.lease_time

    @property
    def renew_at(self) -> float:
        return float("inf") if self.infinite else self.acquired + self.t1

    @property
    def rebind_at(self) -> float:
        return float("inf") if self.infinite else self.acquired + self.t2

    @property
    def cidr(self) -> str:
        return f"{ntoa(self.address)}/{self.prefix}"

    @property
    def router(self) -> int:
        """The first router on the lease's subnet (0: none)."""
        mask = (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF if self.prefix else 0
        for router in self.routers:
            if router & mask == self.address & mask and router != self.address:
                return router
        return 0

    def describe(self) -> dict[str, Any]:
        """Plain values, for printing."""
        return {"address": self.cidr, "router": ntoa(self.router) if self.router else None,
                "dns": [ntoa(a) for a in self.dns], "domain": self.domain, "search": list(self.search),
                "lease": "infinite" if self.infinite else self.lease_time, "server": ntoa(self.server_id),
                "mtu": self.mtu}


@dataclass(slots=True)
class Send:
    payload: bytes
    dst: int  # BROADCAST or the server's address (port 67)


@dataclass(slots=True)
class Probe:
    address: int


@dataclass(slots=True)
class Bind:
    lease: Lease
    previous: Lease | None  # a renewal of the same address has previous.address == lease.address


@dataclass(slots=True)
class Unbind:
    lease: Lease
    reason: str  # "expired", "nak", "released", "conflict", "changed"


Action = Send | Probe | Bind | Unbind


def _prefix_of(mask: int) -> int | None:
    prefix = bin(mask).count("1")
    return prefix if mask == ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0) else None


def _classful_prefix(address: int) -> int:
    first = address >> 24
    return 8 if first < 128 else 16 if first < 192 else 24


class DhcpClient:
    """One interface's DHCP client. ``requested`` (an address remembered from an earlier lease)
    starts in INIT-REBOOT instead of INIT."""

    def __init__(self, mac: bytes, rng: random.Random, config: ClientConfig | None = None,
                 counters: MutableMapping[str, int] | None = None, requested: int | None = None) -> None:
        self.mac = bytes(mac)
        self.rng = rng
        self.config = config or ClientConfig()
        self.counters: MutableMapping[str, int] = counters if counters is not None else Counters()
        self.requested = requested or 0
        self.client_id = self.config.client_id or bytes((dhcp.HTYPE_ETHERNET,)) + self.mac
        self.state = STOPPED
        self.lease: Lease | None = None      # bound (also while RENEWING and REBINDING)
        self._pending: Lease | None = None   # acknowledged, being probed
        self._actions: list[Action] = []
        self._deadline: float | None = None
        self.xid = 0
        self._attempt = 0
        self._started = 0.0                  # for secs: when this acquisition or renewal began
        self._request_sent = 0.0             # when the current REQUEST first went out
        self._offers: list[dhcp.DhcpMessage] = []
        self._select_end: float | None = None
        self._chosen: dhcp.DhcpMessage | None = None
        self._probes_sent = 0
        self._naks = 0
        self._conflicts = 0
        self.history: list[tuple[float, str]] = []  # (time, state) of every transition

    # ----------------------------------------------------------------- the driver's side

    def start(self, now: float) -> None:
        """Begin: INIT-REBOOT with a remembered address, else INIT (after ``init_delay``)."""
        if self.requested:
            self._set_state(INIT_REBOOT, now)
            self._deadline = now
        else:
            self._set_state(INIT, now)
            self._deadline = now + self.rng.uniform(0, self.config.init_delay) if self.config.init_delay else now

    def stop(self, now: float, release: bool = True) -> None:
        """A clean shutdown: DHCPRELEASE to the server (RFC 2131 4.4.6) when *release*, then
        the address goes."""
        lease = self.lease
        if lease is not None and release and self.state in (BOUND, RENEWING, REBINDING):
            self._send(self._message(dhcp.RELEASE, now, ciaddr=lease.address, xid=self._new_xid(),
                                     options={dhcp.OPT_SERVER_ID: dhcp.ip_bytes(lease.server_id)}),
                       lease.server_id)
            self.counters["dhcp.client_releases"] += 1
        if lease is not None:
            self._actions.append(Unbind(lease, "released"))
        self.lease = self._pending = None
        self._set_state(STOPPED, now)
        self._deadline = None

    def take(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    @property
    def has_output(self) -> bool:
        """Actions wait for :meth:`take` (an input produced some): drive me now."""
        return bool(self._actions)

    def next_deadline(self) -> float | None:
        return self._deadline

    # ----------------------------------------------------------------- timers

    def poll(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        state = self.state
        if state == INIT:
            self._discover(now, first=True)
        elif state == SELECTING:
            if self._offers and self._select_end is not None and now >= self._select_end:
                self._select(now)
            else:
                self._discover(now, first=False)
        elif state == REQUESTING:
            if self._attempt + 1 >= self.config.request_tries:
                log.info("DHCP: no answer to REQUEST from %s; starting again", ntoa(self._chosen_server()))
                self._restart(now, 0.0)
            else:
                self._attempt += 1
                self._send_request(now, retransmit=True)
        elif state == INIT_REBOOT:
            self._started = now
            self._attempt = 0
            self.xid = self._new_xid()
            self._set_state(REBOOTING, now)
            self._send_request(now, retransmit=False)
        elif state == REBOOTING:
            if self._attempt + 1 >= self.config.reboot_tries:
                self._restart(now, 0.0)  # keep self.requested: DISCOVER asks for it (option 50)
            else:
                self._attempt += 1
                self._send_request(now, retransmit=True)
        elif state == PROBING:
            self._probe_step(now)
        elif state == BOUND:
            self._renew(now)
        elif state in (RENEWING, REBINDING):
            lease = self.lease
            assert lease is not None
            if now >= lease.expires:
                log.warning("DHCP: lease of %s expired", lease.cidr)
                self.counters["dhcp.client_expired"] += 1
                self._actions.append(Unbind(lease, "expired"))
                self.lease = None
                self.requested = 0
                self._restart(now, 0.0)
            elif state == RENEWING and now >= lease.rebind_at:
                self._set_state(REBINDING, now)
                self.xid = self._new_xid()
                self._send_request(now, retransmit=False)
            else:
                self._send_request(now, retransmit=True)

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        delay = min(cfg.first_retransmit * (2 ** attempt), cfg.max_retransmit)
        return max(0.0, delay + self.rng.uniform(-cfg.jitter, cfg.jitter))

    def _restart(self, now: float, delay: float) -> None:
        self._set_state(INIT, now)
        self._offers = []
        self._chosen = None
        self._pending = None
        self._deadline = now + delay

    # ----------------------------------------------------------------- messages out

    def _new_xid(self) -> int:
        return self.rng.getrandbits(32)

    def _message(self, kind: int, now: float, *, ciaddr: int = 0, xid: int | None = None,
                 options: dict[int, bytes] | None = None, with_params: bool = False) -> dhcp.DhcpMessage:
        opts: dict[int, bytes] = {dhcp.OPT_MESSAGE_TYPE: bytes((kind,))}
        opts[dhcp.OPT_CLIENT_ID] = self.client_id
        opts.update(options or {})
        if with_params:
            opts[dhcp.OPT_MAX_SIZE] = max(576, self.config.max_message_size).to_bytes(2, "big")
            if self.config.hostname:
                opts[dhcp.OPT_HOSTNAME] = self.config.hostname.encode("ascii", "replace")
            opts[dhcp.OPT_PARAMS] = bytes(self.config.params)
        secs = min(int(max(0.0, now - self._started)), 0xFFFF)
        return dhcp.DhcpMessage(op=dhcp.BOOTREQUEST, xid=self.xid if xid is None else xid, chaddr=self.mac,
                                options=opts, secs=secs, ciaddr=ciaddr,
                                flags=dhcp.FLAG_BROADCAST if self.config.broadcast_flag and not ciaddr else 0)

    def _send(self, message: dhcp.DhcpMessage, dst: int) -> None:
        self._actions.append(Send(dhcp.build(message), dst))

    def _discover(self, now: float, first: bool) -> None:
        if first:
            self._set_state(SELECTING, now)
            self._started = now
            self._attempt = 0
            self._offers = []
            self._select_end = None
            self.xid = self._new_xid()
        else:
            self._attempt += 1
        options = {}
        if self.requested:
            options[dhcp.OPT_REQUESTED_IP] = dhcp.ip_bytes(self.requested)  # RFC 2131 4.4.1: MAY suggest
        self._send(self._message(dhcp.DISCOVER, now, options=options, with_params=True), BROADCAST)
        self.counters["dhcp.client_discovers"] += 1
        self._deadline = now + self._backoff(self._attempt)

    def _chosen_server(self) -> int:
        return (self._chosen.ip(dhcp.OPT_SERVER_ID) or 0) if self._chosen is not None else 0

    def _select(self, now: float) -> None:
        requested = self.requested

        def rank(offer: dhcp.DhcpMessage) -> tuple[bool, int, int, int]:
            lease_time = offer.u32(dhcp.OPT_LEASE_TIME) or 0
            return (offer.yiaddr != requested, -lease_time, offer.ip(dhcp.OPT_SERVER_ID) or 0, offer.yiaddr)

        self._chosen = min(self._offers, key=rank)
        self._offers = []
        self._attempt = 0
        self._set_state(REQUESTING, now)
        self.xid = self._chosen.xid
        self._send_request(now, retransmit=False)

    def _send_request(self, now: float, retransmit: bool) -> None:
        """DHCPREQUEST as RFC 2131 4.3.2 and table 5 want it in each state."""
        state = self.state
        if not retransmit:
            self._request_sent = now
        if state == REQUESTING:
            chosen = self._chosen
            assert chosen is not None
            options = {dhcp.OPT_REQUESTED_IP: dhcp.ip_bytes(chosen.yiaddr),
                       dhcp.OPT_SERVER_ID: dhcp.ip_bytes(chosen.ip(dhcp.OPT_SERVER_ID) or 0)}
            self._send(self._message(dhcp.REQUEST, now, options=options, with_params=True), BROADCAST)
            self._deadline = now + self._backoff(self._attempt)
        elif state == REBOOTING:
            options = {dhcp.OPT_REQUESTED_IP: dhcp.ip_bytes(self.requested)}
            self._send(self._message(dhcp.REQUEST, now, options=options, with_params=True), BROADCAST)
            self._deadline = now + self._backoff(self._attempt)
        else:  # RENEWING (unicast to the server) or REBINDING (broadcast)
            lease = self.lease
            assert lease is not None
            dst = lease.server_id if state == RENEWING and lease.server_id else BROADCAST
            self._send(self._message(dhcp.REQUEST, now, ciaddr=lease.address, with_params=True), dst)
            limit = lease.rebind_at if state == RENEWING else lease.expires
            wait = max((limit - now) / 2, self.config.renew_min_interval)
            self._deadline = min(now + wait, limit)
        self.counters["dhcp.client_requests"] += 1

    def _renew(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        self._started = now
        self.xid = self._new_xid()
        self._set_state(RENEWING, now)
        self._send_request(now, retransmit=False)

    # ----------------------------------------------------------------- messages in

    def receive(self, payload: bytes | bytearray | memoryview, now: float) -> None:
        """A UDP payload that arrived on port 68 (any source)."""
        try:
            message = dhcp.parse(payload)
        except ParseError as err:
            self.counters[err.reason] += 1
            return
        kind = message.message_type
        if (message.op != dhcp.BOOTREPLY or message.xid != self.xid or message.chaddr != self.mac
                or kind not in (dhcp.OFFER, dhcp.ACK, dhcp.NAK)):
            self.counters["dhcp.client_ignored"] += 1
            return
        state = self.state
        if kind == dhcp.OFFER:
            if state != SELECTING or not message.yiaddr or message.ip(dhcp.OPT_SERVER_ID) is None:
                self.counters["dhcp.client_ignored"] += 1
                return
            self.counters["dhcp.client_offers"] += 1
            self._offers.append(message)
            if self._select_end is None:
                self._select_end = now + self.config.select_window
                self._deadline = min(self._deadline or self._select_end, self._select_end)
            return
        if state not in (REQUESTING, REBOOTING, RENEWING, REBINDING):
            self.counters["dhcp.client_ignored"] += 1
            return
        server = message.ip(dhcp.OPT_SERVER_ID)
        if state == REQUESTING and server is not None and server != self._chosen_server():
            self.counters["dhcp.client_ignored"] += 1  # another server's answer to our broadcast
            return
        if kind == dhcp.NAK:
            self._nak(message, now)
        else:
            self._ack(message, now)

    def _nak(self, message: dhcp.DhcpMessage, now: float) -> None:
        self.counters["dhcp.client_naks"] += 1
        log.info("DHCP: NAK from %s in %s (%s)", ntoa(message.ip(dhcp.OPT_SERVER_ID) or 0), self.state,
                 message.text(dhcp.OPT_MESSAGE) or "no reason given")
        if self.lease is not None:
            self._actions.append(Unbind(self.lease, "nak"))
            self.lease = None
        self.requested = 0
        delay = 0.0 if self._naks == 0 else min(2.0 ** (self._naks - 1), 60.0)
        self._naks += 1
        self._restart(now, delay)

    def _lease_from(self, message: dhcp.DhcpMessage, now: float) -> Lease | None:
        lease_time = message.u32(dhcp.OPT_LEASE_TIME)
        if not message.yiaddr or lease_time is None:
            return None
        mask = message.ip(dhcp.OPT_SUBNET_MASK)
        prefix = _prefix_of(mask) if mask is not None else None
        if prefix is None or prefix > 30 and prefix != 32:
            prefix = _classful_prefix(message.yiaddr)
        server = message.ip(dhcp.OPT_SERVER_ID) or self._chosen_server() or (self.lease.server_id if self.lease else 0)
        t1_option = message.u32(dhcp.OPT_T1)
        t2_option = message.u32(dhcp.OPT_T2)
        if t1_option is None or t2_option is None or not 0 < t1_option < t2_option < lease_time:
            t1, t2 = lease_time * 0.5, lease_time * 0.875  # RFC 2131 4.4.5's defaults
        else:
            t1, t2 = float(t1_option), float(t2_option)
        mtu = message.u16(dhcp.OPT_MTU)
        search = dhcp.decode_domain_search(message.options.get(dhcp.OPT_DOMAIN_SEARCH, b""))
        return Lease(address=message.yiaddr, prefix=prefix, server_id=server, lease_time=lease_time, t1=t1, t2=t2,
                     acquired=self._request_sent, routers=message.ips(dhcp.OPT_ROUTER),
                     dns=message.ips(dhcp.OPT_DNS), domain=message.text(dhcp.OPT_DOMAIN), search=search,
                     hostname=message.text(dhcp.OPT_HOSTNAME), mtu=mtu if mtu is not None and mtu >= 68 else None,
                     broadcast=message.ip(dhcp.OPT_BROADCAST), options=dict(message.options))

    def _ack(self, message: dhcp.DhcpMessage, now: float) -> None:
        lease = self._lease_from(message, now)
        if lease is None:
            self.counters["dhcp.client_ignored"] += 1
            return
        self.counters["dhcp.client_acks"] += 1
        self._naks = 0
        current = self.lease
        if current is not None and current.address == lease.address:
            self.counters["dhcp.client_renewals"] += 1
            self.lease = lease
            self._actions.append(Bind(lease, current))
            self._bound(now)
            return
        if current is not None:
            self._actions.append(Unbind(current, "changed"))
            self.lease = None
        self._pending = lease
        if self.config.probe:
            self._set_state(PROBING, now)
            self._probes_sent = 0
            self._deadline = now + self.rng.uniform(0, self.config.probe_wait)
        else:
            self._commit(now)

    # ----------------------------------------------------------------- RFC 5227

    def _probe_step(self, now: float) -> None:
        pending = self._pending
        assert pending is not None
        cfg = self.config
        if self._probes_sent < cfg.probe_num:
            self._actions.append(Probe(pending.address))
            self._probes_sent += 1
            if self._probes_sent < cfg.probe_num:
                self._deadline = now + self.rng.uniform(cfg.probe_min, cfg.probe_max)
            else:
                self._deadline = now + cfg.announce_wait
            return
        self._commit(now)

    def arp_seen(self, sender_ip: int, sender_mac: bytes, target_ip: int, op: int, now: float) -> None:
        """An ARP packet heard on the link. While probing (RFC 5227 2.1.1), a packet from anyone
        else whose sender is the address, or another host's probe for it, is a conflict."""
        if self.state != PROBING or self._pending is None or sender_mac == self.mac:
            return
        address = self._pending.address
        if sender_ip == address or (sender_ip == 0 and target_ip == address and op == 1):
            self._conflict(now, sender_mac)

    def _conflict(self, now: float, sender_mac: bytes) -> None:
        pending = self._pending
        assert pending is not None
        log.warning("DHCP: %s is in use by %s; declining it", ntoa(pending.address), sender_mac.hex(":"))
        self.counters["dhcp.client_conflicts"] += 1
        self.counters["dhcp.client_declines"] += 1
        # RFC 2131 4.4.1 and table 5: option 50 and the server identifier; ciaddr 0; no parameters.
        options = {dhcp.OPT_REQUESTED_IP: dhcp.ip_bytes(pending.address),
                   dhcp.OPT_SERVER_ID: dhcp.ip_bytes(pending.server_id)}
        self._send(self._message(dhcp.DECLINE, now, options=options), BROADCAST)
        self._conflicts += 1
        self.requested = 0
        wait = self.config.decline_wait
        if self._conflicts >= self.config.max_conflicts:
            wait = max(wait, self.config.rate_limit_interval)
        self._restart(now, wait)

    def _commit(self, now: float) -> None:
        lease = self._pending
        assert lease is not None
        self._pending = None
        self.lease = lease
        self.requested = lease.address
        self._conflicts = 0
        self.counters["dhcp.client_leases"] += 1
        log.info("DHCP: bound to %s from %s, lease %s", lease.cidr, ntoa(lease.server_id),
                 "infinite" if lease.infinite else f"{lease.lease_time} s")
        self._actions.append(Bind(lease, None))
        self._bound(now)

    def _bound(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        self._set_state(BOUND, now)
        self._deadline = None if lease.infinite else max(lease.renew_at, now)

    def _set_state(self, state: str, now: float) -> None:
        if state != self.state:
            log.debug("DHCP client: %s -> %s", self.state, state)
            self.state = state
            self.history.append((now, state))
            if len(self.history) > 256:
                del self.history[:128]
