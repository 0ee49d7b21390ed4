"""A small authoritative DNS responder as a sans-IO machine (RFC 1035 4.3, RFC 2308, RFC 6891, RFC 7766).

It answers A, AAAA, ANY and PTR for its static records (``record=NAME=IP``, hosts files) and for
the hostnames a DHCP server leased (a callable read on every query, as dnsmasq answers for its
leases), with AA set; NXDOMAIN (or NODATA) with a SOA for negative caching for the rest, unless a
forwarder is configured, in which case the query is handed to the driver to relay (:class:`Forward`).

Bounded: each client has a token bucket (``rate`` queries a second, ``burst`` at once; beyond it
queries are dropped and counted), the table of clients is bounded (least recently seen go first),
malformed queries and responses sent to us are dropped and counted, never answered. Over UDP an
answer larger than the client's limit (512 bytes, or its EDNS0 size, at most ``max_udp``) is
replaced by an empty one with TC set (RFC 2181 9), so the client comes back over TCP. A client
we do not know (not on a connected subnet, per ``trusted``, and not seen over TCP, which proves its
address) never gets a UDP answer larger than its query: no amplification for spoofed sources.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from usernet.wire import dns
from usernet.wire.errors import ParseError


@dataclass
class ResponderConfig:
    ttl: int = 60               # of our answers (dnsmasq's local-ttl is 0; a minute caches sensibly)
    negative_ttl: int = 60      # the SOA minimum of our negative answers
    rate: float = 100.0         # queries a second per client, sustained
    burst: int = 200            # ... and at once
    max_clients: int = 4096     # rate-limit buckets kept
    max_udp: int = dns.EDNS_UDP_SIZE  # our largest UDP answer whatever the client offers
    max_proven: int = 4096      # clients remembered as having used TCP


@dataclass(frozen=True)
class Forward:
    """Relay *query* to the upstream server; give the upstream's answer to :meth:`DnsResponder.relay`."""

    query: dns.Message
    payload: bytes      # the client's query as it came (its ID is the client's)
    client: str
    transport: str


class DnsResponder:
    def __init__(self, records: Mapping[str, str | Iterable[str]] | None = None, *,
                 dynamic: Callable[[], Mapping[str, str]] | None = None, domain: str | None = None,
                 forward: bool = False, config: ResponderConfig | None = None,
                 counters: MutableMapping[str, int] | None = None,
                 trusted: Callable[[str], bool] | None = None) -> None:
        self.config = config or ResponderConfig()
        self.records: dict[str, list[str]] = {}
        for name, value in (records or {}).items():
            for address in [value] if isinstance(value, str) else value:
                self.add(name, address)
        self.dynamic = dynamic
        self.domain = dns.canonical(domain) if domain else None
        self.forward = forward
        self.counters: MutableMapping[str, int] = counters if counters is not None else _Counts()
        self.trusted = trusted or (lambda address: False)
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # client -> [tokens, last]
        self._proven: OrderedDict[str, None] = OrderedDict()

    def add(self, name: str, address: str) -> None:
        dns.encode_name(name)  # ValueError for a name that cannot be on the wire
        text = str(ipaddress.ip_address(address))
        addresses = self.records.setdefault(dns.canonical(name), [])
        if text not in addresses:
            addresses.append(text)

    # ------------------------------------------------------------- the data

    def _table(self) -> dict[str, list[str]]:
        table = {name: list(addresses) for name, addresses in self.records.items()}
        if self.dynamic is not None:
            for name, address in self.dynamic().items():
                names = [dns.canonical(name)]
                if self.domain and "." not in names[0]:
                    names.append(f"{names[0]}.{self.domain}")
                for key in names:
                    addresses = table.setdefault(key, [])
                    if address not in addresses:
                        addresses.append(address)
        return table

    def _soa(self, name: str) -> dns.Record:
        key = dns.canonical(name)
        if self.domain and (key == self.domain or key.endswith("." + self.domain)):
            zone = self.domain
        else:
            zone = key.rsplit(".", 1)[-1] if key else ""
        minimum = self.config.negative_ttl
        return dns.Record(zone, dns.SOA, minimum, ("ns.usernet.invalid", "hostmaster.usernet.invalid", 1, 3600,
                                                   600, 86400, minimum))

    def answer_for(self, question: dns.Question) -> tuple[int, list[dns.Record]] | None:
        """(rcode, answer records) from local data, or None when the name is not ours."""
        table = self._table()
        key = dns.canonical(question.name)
        ttl = self.config.ttl
        if key.endswith((".in-addr.arpa", ".ip6.arpa")):
            names = [name for name, addresses in table.items()
                     if any(dns.reverse_name(a) == key for a in addresses)]
            if not names:
                return None
            if question.qtype not in (dns.PTR, dns.ANY):
                return dns.NOERROR, []
            return dns.NOERROR, [dns.Record(question.name, dns.PTR, ttl, name) for name in sorted(names)]
        addresses = table.get(key)
        if addresses is None:
            return None
        records = []
        for address in addresses:
            rtype = dns.AAAA if ":" in address else dns.A
            if question.qtype in (rtype, dns.ANY):
                records.append(dns.Record(question.name, rtype, ttl, address))
        return dns.NOERROR, records

    # ------------------------------------------------------------- queries

    def _allow(self, client: str, now: float) -> bool:
        config = self.config
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = [float(config.burst), now]
            self._buckets[client] = bucket
            while len(self._buckets) > config.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket[0] = min(float(config.burst), bucket[0] + (now - bucket[1]) * config.rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True

    def handle(self, payload: bytes, client: str, now: float, transport: str = "udp") -> bytes | Forward | None:
        """One query from *client*: the answer to send back, a :class:`Forward`, or None (dropped)."""
        counters = self.counters
        if transport == "tcp" and client not in self._proven:
            self._proven[client] = None
            while len(self._proven) > self.config.max_proven:
                self._proven.popitem(last=False)
        if not self._allow(client, now):
            counters["dns.rate_limited"] += 1
            return None
        try:
            query = dns.parse(payload)
        except ParseError as err:
            counters[err.reason] += 1
            return None
        if query.qr:
            counters["dns.rx_not_query"] += 1  # a response sent to a server: never answered (no loops)
            return None
        counters["dns.rx_queries"] += 1
        response = dns.Message(query.id, dns.QR | (query.flags & (dns.RD | 0x7800)), list(query.questions[:1]))
        if self.forward:
            response.flags |= dns.RA
        if query.edns is not None:
            response.additional.append(dns.opt_record(self.config.max_udp))
        if query.opcode != 0:
            return self._finish(response, query, payload, client, transport, dns.NOTIMP)
        if len(query.questions) != 1:
            return self._finish(response, query, payload, client, transport, dns.FORMERR)
        question = query.questions[0]
        if question.qclass not in (dns.IN, dns.ANY):
            return self._finish(response, query, payload, client, transport, dns.REFUSED)
        try:
            local = self.answer_for(question)
        except ValueError:
            local = None
        if local is None and self.forward:
            counters["dns.forwarded"] += 1
            return Forward(query, payload, client, transport)
        response.flags |= dns.AA
        if local is None:
            response.authority.append(self._soa(question.name))
            counters["dns.tx_nxdomain"] += 1
            return self._finish(response, query, payload, client, transport, dns.NXDOMAIN)
        rcode, records = local
        response.answers.extend(records)
        if not records:
            response.authority.append(self._soa(question.name))
        return self._finish(response, query, payload, client, transport, rcode)

    def relay(self, forward: Forward, upstream: bytes | None) -> bytes | None:
        """The answer for a forwarded query from the upstream's reply (None: it failed: SERVFAIL)."""
        query = forward.query
        response = dns.Message(query.id, dns.QR | dns.RA | (query.flags & (dns.RD | 0x7800)),
                               list(query.questions[:1]))
        if query.edns is not None:
            response.additional.append(dns.opt_record(self.config.max_udp))
        rcode = dns.SERVFAIL
        if upstream is not None:
            try:
                reply = dns.parse(upstream)
            except ParseError as err:
                self.counters[err.reason] += 1
                reply = None
            if reply is not None and reply.qr and _same_question(reply, query):
                rcode = reply.rcode
                response.flags |= reply.flags & dns.AA
                response.answers = reply.answers
                response.authority = reply.authority
                response.additional = [r for r in reply.additional if r.rtype != dns.OPT] + \
                    [r for r in response.additional if r.rtype == dns.OPT]
        if rcode == dns.SERVFAIL and upstream is None:
            self.counters["dns.forward_failed"] += 1
        return self._finish(response, query, forward.payload, forward.client, forward.transport, rcode)

    def _finish(self, response: dns.Message, query: dns.Message, payload: bytes, client: str, transport: str,
                rcode: int) -> bytes:
        response.flags = (response.flags & ~0xF) | rcode
        out = dns.build(response)
        if transport == "udp":
            limit = min(query.udp_size, self.config.max_udp)
            if not (self.trusted(client) or client in self._proven):
                limit = min(limit, len(payload))
            if len(out) > limit:
                self.counters["dns.tx_truncated"] += 1
                response.flags |= dns.TC
                response.answers, response.authority = [], []
                response.additional = [r for r in response.additional if r.rtype == dns.OPT]
                out = dns.build(response)
                if len(out) > limit:  # even the question does not fit: drop the OPT, then give up
                    response.additional = []
                    out = dns.build(response)
        self.counters["dns.tx_responses"] += 1
        return out


def _same_question(a: dns.Message, b: dns.Message) -> bool:
    return len(a.questions) == len(b.questions) == 1 and a.questions[0].qtype == b.questions[0].qtype and \
        dns.canonical(a.questions[0].name) == dns.canonical(b.questions[0].name)


class _Counts(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0
