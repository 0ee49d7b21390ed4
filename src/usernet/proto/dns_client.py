"""The stub resolver as a sans-IO machine (RFC 1035 7, RFC 2308, RFC 5452, RFC 6891, RFC 7766).

:class:`DnsClient` holds what outlives one lookup: the servers, the search list, the hosts table and
a bounded cache (TTLs honoured, NXDOMAIN/NODATA cached from the SOA, RFC 2308 5). ``client.lookup(name,
qtype, now)`` gives a :class:`Lookup`, which a driver runs::

    lookup = client.lookup("www.example.com", dns.A, now)
    while not lookup.done:
        for action in lookup.actions():     # Send(...) a query, or Close(...) an attempt's socket
            ...                             # a fresh UDP socket (random port) per Send over UDP
        ... wait until lookup.deadline for an answer on one of the attempts' sockets ...
        lookup.receive(attempt, src_ip, src_port, payload, now)   # or tcp_result(...), or:
        lookup.on_timer(now)
    lookup.answer or lookup.error

What a lookup does, in order: local names (``localhost``, RFC 6761 6.3; then the hosts table); then
for each candidate name (single-label names get the search domains first) the cache, then the
servers in order, one attempt at a time: after each attempt's timeout the next server, after the
last one the first again with the timeout doubled, for ``rounds`` rounds (what glibc's resolver does
with ``rotate`` off). An answer counts only if it comes from the server and port asked, carries the
query's ID, is a response and repeats the question (RFC 5452 9.1); anything else is ignored and
counted, and the attempt keeps waiting. A late answer to an earlier attempt is still taken. SERVFAIL,
REFUSED and NOTIMP move on to the next server at once; FORMERR to a query with EDNS0 is retried
without it (RFC 6891 7); TC moves the query to TCP on the same server (RFC 7766 5). CNAME chains in
an answer are followed (bounded by ``max_cname``), and a chain that stops at a name the server gave
no data for is queried again from there.

Time and randomness are injected: ``now`` on every call, a ``random.Random`` for query IDs.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

from usernet.wire import dns
from usernet.wire.errors import ParseError

# Why a lookup failed; the API maps these onto getaddrinfo's EAI codes.
NXDOMAIN = "nxdomain"      # the name does not exist
NODATA = "nodata"          # the name exists, without records of the type asked
SERVFAIL = "servfail"      # every server failed (SERVFAIL) or timed out after one did
REFUSED = "refused"        # the servers refused or did not implement the query (REFUSED, NOTIMP, FORMERR)
TIMEOUT = "timeout"        # no server answered
NO_SERVERS = "no_servers"  # nothing to ask, and no local name matched
BAD_NAME = "bad_name"      # not a name that can be asked (empty label, over 255 bytes)

LOCALHOST_V4 = "127.0.0.1"
LOCALHOST_V6 = "::1"


@dataclass
class ResolverConfig:
    timeout: float = 1.0        # the first round's per-attempt timeout (seconds)
    backoff: float = 2.0        # each further round multiplies it
    max_timeout: float = 4.0
    rounds: int = 3             # times round the server list
    tcp_timeout: float = 5.0    # for one query over TCP (connect, send, answer)
    max_cname: int = 8          # CNAME links followed, across re-queries
    cache_size: int = 512       # entries, positive and negative; least recently used go first
    max_ttl: int = 86_400       # a cached answer lives at most a day (as unbound's cache-max-ttl)
    max_negative_ttl: int = 3_600  # RFC 2308 5: "a maximum of one to three hours"
    edns_size: int | None = dns.EDNS_UDP_SIZE
    port: int = dns.PORT
    max_search: int = 6         # search domains tried (glibc's MAXDNSRCH)


@dataclass(frozen=True)
class Answer:
    name: str              # the name asked (after the search list)
    canonical: str         # where the CNAME chain ended
    qtype: int
    addresses: list[str]   # the records' data of that type (the addresses, for A and AAAA)
    ttl: int
    source: str = "dns"    # "dns", "cache", "hosts" or "localhost"
    server: str | None = None
    transport: str = "udp"


class ResolveError(Exception):
    """A lookup that failed: ``kind`` is one of the module's constants."""

    def __init__(self, kind: str, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail or kind}")
        self.kind = kind
        self.name = name
        self.detail = detail


@dataclass(frozen=True)
class Send:
    attempt: int
    transport: str   # "udp" or "tcp" (the driver frames TCP with the 2-byte length, RFC 1035 4.2.2)
    server: str
    port: int
    payload: bytes


@dataclass(frozen=True)
class Close:
    attempt: int


Action = Send | Close


@dataclass
class _CacheEntry:
    expires: float
    answer: Answer | None  # None: negative
    kind: str = ""         # NXDOMAIN or NODATA for a negative entry
    canonical: str = ""


def parse_hosts(text: str) -> dict[str, list[str]]:
    """An ``/etc/hosts``-format text (``ADDRESS NAME [ALIAS...]``, ``#`` comments) to {name: [addresses]}
    with names in comparison form; lines that do not start with an IPv4 or IPv6 address are skipped."""
    import ipaddress

    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0].split("%", 1)[0]))
        except ValueError:
            continue
        for name in fields[1:]:
            addresses = table.setdefault(dns.canonical(name), [])
            if address not in addresses:
                addresses.append(address)
    return table


def hosts_table(mapping: Mapping[str, str | Iterable[str]] | None) -> dict[str, list[str]]:
    """``Host(hosts=...)``'s mapping (a name to one address or several) in comparison form."""
    import ipaddress

    table: dict[str, list[str]] = {}
    for name, value in (mapping or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        addresses = table.setdefault(dns.canonical(name), [])
        for address in values:
            text = str(ipaddress.ip_address(address))  # ValueError for a bad one: the caller's mistake
            if text not in addresses:
                addresses.append(text)
    return table


def _family_ok(qtype: int, address: str) -> bool:
    return (":" in address) == (qtype == dns.AAAA)


class DnsClient:
    """Servers, search list, hosts table and cache. ``servers`` and ``search`` may be callables (read
    on every lookup), so a DHCP client can change them under a running host."""

    def __init__(self, servers: Sequence[str] | Callable[[], Sequence[str]] = (), *, rng: random.Random,
                 search: Sequence[str] | Callable[[], Sequence[str]] = (),
                 hosts: Mapping[str, list[str]] | None = None, config: ResolverConfig | None = None,
                 counters: MutableMapping[str, int] | None = None) -> None:
        self._servers = servers
        self._search = search
        self.hosts: dict[str, list[str]] = dict(hosts or {})
        self.config = config or ResolverConfig()
        self.rng = rng
        self.counters: MutableMapping[str, int] = counters if counters is not None else _Counts()
        self.cache: OrderedDict[tuple[str, int], _CacheEntry] = OrderedDict()

    @property
    def servers(self) -> list[str]:
        servers = self._servers() if callable(self._servers) else self._servers
        return list(servers)

    @property
    def search(self) -> list[str]:
        search = self._search() if callable(self._search) else self._search
        return [dns.canonical(d) for d in search if d and d != "."][:self.config.max_search]

    def lookup(self, name: str, qtype: int, now: float) -> Lookup:
        return Lookup(self, name, qtype, now)

    def local(self, name: str, qtype: int) -> Answer | None:
        """``localhost`` (and names under it, RFC 6761 6.3) and the hosts table."""
        key = dns.canonical(name)
        if key == "localhost" or key.endswith(".localhost"):
            address = LOCALHOST_V6 if qtype == dns.AAAA else LOCALHOST_V4
            return Answer(key, key, qtype, [address], 0, source="localhost")
        addresses = [a for a in self.hosts.get(key, ()) if _family_ok(qtype, a)]
        if addresses:
            return Answer(key, key, qtype, addresses, 0, source="hosts")
        return None

    def candidates(self, name: str) -> list[str]:
        """The names to ask, in order: an absolute name (trailing dot) as it is; a single-label name
        with each search domain first, then alone; any other name alone."""
        if name.endswith(".") and not name.endswith("\\."):
            return [name[:-1]]
        if "." not in name.replace("\\.", ""):
            return [f"{name}.{domain}" for domain in self.search] + [name]
        return [name]

    # ------------------------------------------------------------- cache

    def cache_get(self, name: str, qtype: int, now: float) -> _CacheEntry | None:
        key = (dns.canonical(name), qtype)
        entry = self.cache.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self.cache[key]
            return None
        self.cache.move_to_end(key)
        return entry

    def cache_put(self, name: str, qtype: int, entry: _CacheEntry) -> None:
        key = (dns.canonical(name), qtype)
        self.cache[key] = entry
        self.cache.move_to_end(key)
        while len(self.cache) > self.config.cache_size:
            self.cache.popitem(last=False)
            self.counters["dns.cache_evictions"] += 1

    def flush(self) -> None:
        self.cache.clear()


class _Counts(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


@dataclass
class _Attempt:
    ident: int
    server: str
    transport: str
    edns: bool
    deadline: float


@dataclass
class Lookup:
    """One name and type through local names, cache and servers; see the module docstring."""

    client: DnsClient
    name: str
    qtype: int
    now: float
    answer: Answer | None = None
    error: ResolveError | None = None
    _pending: list[Action] = field(default_factory=list)
    _attempts: dict[int, _Attempt] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._next_attempt_id = 0
        self._negative: list[str] = []  # the kinds of the candidates that failed negatively
        self._cnames = 0
        self._servers: list[str] = []
        self._schedule = 0           # attempts used of the current query's server schedule
        self._failure = ""           # the worst server failure of the current query
        self._question = ""          # the name being asked now (a candidate or a CNAME target)
        self._asked = ""             # the candidate it started from (the cache key of the result)
        self._chain_ttl: int | None = None
        try:
            for candidate in self.client.candidates(self.name):
                dns.encode_name(candidate)
        except ValueError as err:
            self._fail(BAD_NAME, str(err))
            return
        local = self.client.local(self.name.rstrip("."), self.qtype)
        if local is not None:
            self.answer = local
            return
        self._candidates = self.client.candidates(self.name)
        self._next_candidate(self.now)

    @property
    def done(self) -> bool:
        return self.answer is not None or self.error is not None

    def actions(self) -> list[Action]:
        """What to do now (queries to send, sockets to close); each action is handed out once."""
        out, self._pending = self._pending, []
        return out

    @property
    def deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (None: nothing pending)."""
        if self.done or not self._attempts:
            return None
        return min(a.deadline for a in self._attempts.values())

    # ------------------------------------------------------------- driving

    def _next_candidate(self, now: float) -> None:
        while self._candidates:
            candidate = self._candidates.pop(0)
            self._asked = candidate
            self._cnames = 0
            self._chain_ttl = None
            if self._ask(candidate, now):
                return
            if self.done:
                return
        self._finish_negative()

    def _ask(self, name: str, now: float) -> bool:
        """Start asking *name* (the cache first). False when the cache answered negatively and the
        next candidate should be tried."""
        counters = self.client.counters
        entry = self.client.cache_get(name, self.qtype, now)
        if entry is not None:
            if entry.answer is not None:
                counters["dns.cache_hits"] += 1
                remaining = max(0, int(entry.expires - now))
                cached = entry.answer
                self.answer = Answer(self._asked, cached.canonical, self.qtype, list(cached.addresses), remaining,
                                     source="cache", server=cached.server, transport=cached.transport)
                return True
            counters["dns.negative_cache_hits"] += 1
            self._negative.append(entry.kind)
            return False
        self._servers = self.client.servers
        if not self._servers:
            self._fail(NO_SERVERS, "no DNS server configured")
            return True
        self._question = name
        self._schedule = 0
        self._failure = ""
        self._send_next(now)
        return True

    def _attempt_timeout(self, index: int) -> float:
        config = self.client.config
        round_ = index // len(self._servers)
        return min(config.max_timeout, config.timeout * config.backoff ** round_)

    def _send_next(self, now: float) -> None:
        """The next attempt of the schedule, or the end of the query when it is used up."""
        total = len(self._servers) * self.client.config.rounds
        if self._schedule >= total:
            self._close_all()
            failure = self._failure or TIMEOUT
            self._fail(failure, "no answer from " + ", ".join(self._servers) if failure == TIMEOUT
                       else f"{failure.upper()} from " + ", ".join(self._servers))
            return
        server = self._servers[self._schedule % len(self._servers)]
        timeout = self._attempt_timeout(self._schedule)
        if self._schedule:
            self.client.counters["dns.retransmits"] += 1
        self._schedule += 1
        self._send(server, "udp", self.client.config.edns_size is not None, now + timeout)

    def _send(self, server: str, transport: str, edns: bool, deadline: float) -> None:
        ident = self.client.rng.getrandbits(16)
        attempt = self._next_attempt_id
        self._next_attempt_id += 1
        self._attempts[attempt] = _Attempt(ident, server, transport, edns, deadline)
        payload = dns.query(ident, self._question, self.qtype, edns=self.client.config.edns_size if edns else None)
        self.client.counters["dns.queries"] += 1
        self._pending.append(Send(attempt, transport, server, self.client.config.port, payload))

    def _close(self, attempt: int) -> None:
        if self._attempts.pop(attempt, None) is not None:
            self._pending.append(Close(attempt))

    def _close_all(self) -> None:
        for attempt in list(self._attempts):
            self._close(attempt)

    def on_timer(self, now: float) -> None:
        if self.done:
            return
        expired = [n for n, a in self._attempts.items() if a.deadline <= now]
        if not expired:
            return
        for attempt in expired:
            # A timed-out UDP attempt's socket stays open: a late answer is still welcome. It is
            # only marked so that it no longer drives the schedule.
            info = self._attempts[attempt]
            if info.transport == "tcp":
                self._close(attempt)
                self._failure = self._failure or TIMEOUT
            else:
                info.deadline = float("inf")
        if all(a.deadline == float("inf") for a in self._attempts.values()):
            self._send_next(now)

    def tcp_result(self, attempt: int, payload: bytes | None, now: float) -> None:
        """The answer read over TCP for *attempt* (without the length prefix), or None when the
        connection failed or closed without one."""
        info = self._attempts.get(attempt)
        if info is None or info.transport != "tcp" or self.done:
            return
        if payload is None:
            self.client.counters["dns.tcp_failed"] += 1
            self.failed(attempt, now)
            return
        self._handle(attempt, info, payload, now)

    def failed(self, attempt: int, now: float) -> None:
        """*attempt* cannot succeed (ICMP port unreachable on its socket, no route, a TCP connection
        refused or broken): on to the next server without waiting for its timeout."""
        info = self._attempts.get(attempt)
        if info is None or self.done:
            return
        self._close(attempt)
        if not self._failure:
            self._failure = TIMEOUT
        if not any(a.deadline != float("inf") for a in self._attempts.values()):
            self._send_next(now)

    def receive(self, attempt: int, src: str, sport: int, payload: bytes, now: float) -> None:
        """A datagram arrived on *attempt*'s socket from *src*:*sport*."""
        info = self._attempts.get(attempt)
        counters = self.client.counters
        if info is None or info.transport != "udp" or self.done:
            counters["dns.late_ignored"] += 1
            return
        if src != info.server or sport != self.client.config.port:
            counters["dns.wrong_source"] += 1
            return
        self._handle(attempt, info, payload, now)

    # ------------------------------------------------------------- answers

    def _handle(self, attempt: int, info: _Attempt, payload: bytes, now: float) -> None:
        counters = self.client.counters
        try:
            message = dns.parse(payload)
        except ParseError as err:
            counters[err.reason] += 1
            return
        if not message.qr or message.id != info.ident:
            counters["dns.wrong_id"] += 1
            return
        question_ok = len(message.questions) == 1 and \
            dns.canonical(message.questions[0].name) == dns.canonical(self._question) and \
            message.questions[0].qtype == self.qtype and message.questions[0].qclass == dns.IN
        if not question_ok and not (not message.questions and message.rcode not in (dns.NOERROR, dns.NXDOMAIN)):
            counters["dns.wrong_question"] += 1
            return
        counters["dns.responses"] += 1
        rcode = message.rcode
        if message.tc and info.transport == "udp":
            # RFC 7766 5: ask the same server again over TCP; the other attempts are moot.
            counters["dns.tcp_fallbacks"] += 1
            self._close_all()
            self._send(info.server, "tcp", False, now + self.client.config.tcp_timeout)
            return
        if rcode == dns.FORMERR and info.edns:
            # RFC 6891 7: a server that does not know EDNS0; the same server without it.
            counters["dns.edns_fallbacks"] += 1
            self._close(attempt)
            self._send(info.server, info.transport, False, info.deadline if info.deadline != float("inf")
                       else now + self._attempt_timeout(max(0, self._schedule - 1)))
            return
        if rcode not in (dns.NOERROR, dns.NXDOMAIN):
            counters["dns.server_failures"] += 1
            self._close(attempt)
            failure = SERVFAIL if rcode == dns.SERVFAIL else REFUSED
            if self._failure != SERVFAIL:
                self._failure = failure
            if not any(a.deadline != float("inf") for a in self._attempts.values()):
                self._send_next(now)
            return
        self._close_all()
        self._accept(message, info, now)

    def _accept(self, message: dns.Message, info: _Attempt, now: float) -> None:
        config = self.client.config
        name = self._question
        ttl: int | None = self._chain_ttl
        found: list[dns.Record] = []
        seen = {dns.canonical(name)}
        while True:
            key = dns.canonical(name)
            found = [r for r in message.answers if r.rtype == self.qtype and r.rclass == dns.IN
                     and dns.canonical(r.name) == key]
            if found:
                break
            cname = next((r for r in message.answers if r.rtype == dns.CNAME and dns.canonical(r.name) == key), None)
            if cname is None:
                break
            self._cnames += 1
            if self._cnames > config.max_cname or dns.canonical(cname.data) in seen:
                self._fail(SERVFAIL, "CNAME chain too long or looping")
                return
            seen.add(dns.canonical(cname.data))
            ttl = cname.ttl if ttl is None else min(ttl, cname.ttl)
            name = cname.data
        soa = next((r for r in message.authority if r.rtype == dns.SOA), None)
        if found:
            ttl = min([r.ttl for r in found] + ([ttl] if ttl is not None else []))
            ttl = min(ttl, config.max_ttl)
            answer = Answer(self._asked, name, self.qtype, [str(r.data) for r in found], ttl, server=info.server,
                            transport=info.transport)
            if ttl > 0:
                self.client.cache_put(self._asked, self.qtype, _CacheEntry(now + ttl, answer, canonical=name))
            self.answer = answer
            return
        if message.rcode == dns.NOERROR and dns.canonical(name) != dns.canonical(self._question) and soa is None:
            # The chain stops at a name the server gave nothing for: ask for that name (RFC 1034 5.3.3).
            self._chain_ttl = ttl
            self._question = name
            self._schedule = 0
            self._failure = ""
            self._send_next(now)
            return
        kind = NXDOMAIN if message.rcode == dns.NXDOMAIN else NODATA
        self.client.counters["dns.nxdomain" if kind == NXDOMAIN else "dns.nodata"] += 1
        if soa is not None:
            # RFC 2308 5: the negative TTL is the SOA's MINIMUM, bounded by the SOA record's own TTL.
            negative_ttl = min(soa.ttl, soa.data[6], config.max_negative_ttl)
            if negative_ttl > 0:
                self.client.cache_put(self._asked, self.qtype, _CacheEntry(now + negative_ttl, None, kind,
                                                                           canonical=name))
        self._negative.append(kind)
        self._next_candidate(now)

    def _finish_negative(self) -> None:
        if self.done:
            return
        kind = NODATA if NODATA in self._negative else NXDOMAIN
        self._fail(kind, "no such name" if kind == NXDOMAIN else f"no {dns.type_name(self.qtype)} record")

    def _fail(self, kind: str, detail: str) -> None:
        if self.done:
            return
        self._close_all()
        if kind == TIMEOUT:
            self.client.counters["dns.timeouts"] += 1
        self.error = ResolveError(kind, self.name, detail)
