"""NTP client and server machines (RFC 5905 8 and 9; SNTP, RFC 4330 5 and 6), sans-IO.

Wall-clock time comes in as a number (Unix seconds) on every call, like ``now``: a test can put
the client in 2036 and the server in the next era. All arithmetic on wire timestamps goes through
:func:`usernet.wire.ntp.diff` (differences modulo 2**64, signed), so nothing breaks at the era
rollover of 2036-02-07 06:28:16 UTC.

Client (one exchange per :class:`NtpClient`): ``payload = client.request(t1)``; for each datagram
from the server, ``client.response(payload, t4)`` gives a :class:`Sample`, None (not the answer to
our request: wrong mode, an origin timestamp other than the one we sent, a zero transmit timestamp;
ignored and counted), or raises :class:`NtpError` (kiss-o'-death RATE/DENY/RSTR, an unsynchronised
server: stratum 16 or leap 3). RFC 5905 8::

    offset = ((T2 - T1) + (T3 - T4)) / 2        delay = (T4 - T1) - (T3 - T2)

:func:`best` picks the minimum-delay sample of several (the clock filter's first rule, RFC 5905 10).

Server: :meth:`NtpServer.answer` turns a client-mode request into a server-mode reply with the
receive timestamp the driver took on arrival and a transmit timestamp taken by calling ``tx_clock``
as late as possible; per-client token buckets answer a client beyond its rate with a kiss-o'-death
RATE (itself at most one a second), and beyond that with silence.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass

from usernet.wire import ntp
from usernet.wire.errors import ParseError


@dataclass(frozen=True)
class Sample:
    offset: float           # seconds to add to our clock to match the server's
    delay: float            # round-trip delay, seconds
    stratum: int
    ref_id: str             # four ASCII characters at stratum 1 and the local clock; else a dotted quad
    leap: int
    root_delay: float
    root_dispersion: float
    version: int
    server_time: float      # the server's transmit timestamp as Unix time (in the era nearest T4)


class NtpError(Exception):
    """The server will not give the time: ``kind`` is "rate", "deny" or "unsynchronized"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def ref_id_text(packet: ntp.Packet) -> str:
    """The reference ID as chrony and ntpq show it: ASCII at stratum 0 and 1 (and for the local clock
    convention ``LOCL``), a dotted quad (the upstream's IPv4 address) above."""
    raw = packet.ref_id
    if packet.stratum <= 1 or (raw.isascii() and raw.rstrip(b"\0").isalpha()):
        return raw.decode("ascii", "replace").rstrip("\0")
    return ".".join(str(b) for b in raw)


class NtpClient:
    def __init__(self, rng: random.Random, counters: MutableMapping[str, int] | None = None,
                 version: int = 4) -> None:
        self.rng = rng
        self.counters: MutableMapping[str, int] = counters if counters is not None else _Counts()
        self.version = version
        self.sent: int | None = None  # the transmit timestamp of our request (raw, 64 bits)

    def request(self, t1: float) -> bytes:
        """A client-mode request stamped with *t1* (our wall clock). The low 16 bits of the fraction
        (15 microseconds) are random, so an off-path attacker cannot guess the origin timestamp the
        answer must carry (RFC 9109's concern; chrony randomises more)."""
        self.sent = (ntp.from_unix(t1) & ~0xFFFF) | self.rng.getrandbits(16)
        self.counters["ntp.tx_requests"] += 1
        return ntp.build(ntp.Packet(version=self.version, mode=ntp.MODE_CLIENT, tx_ts=self.sent))

    def response(self, payload: bytes, t4: float) -> Sample | None:
        counters = self.counters
        try:
            packet = ntp.parse(payload)
        except ParseError as err:
            counters[err.reason] += 1
            return None
        if self.sent is None or packet.mode != ntp.MODE_SERVER or packet.orig_ts != self.sent:
            counters["ntp.bogus"] += 1  # RFC 5905 8: not an answer to our request (or a replay)
            return None
        if packet.stratum == 0:
            code = packet.kiss_code or ""
            counters["ntp.rx_kod"] += 1
            if code == "RATE":
                raise NtpError("rate", "kiss-o'-death RATE: the server asks us to poll less often")
            if code in ("DENY", "RSTR"):
                raise NtpError("deny", f"kiss-o'-death {code}: the server refuses us")
            raise NtpError("unsynchronized", f"kiss-o'-death {code or '(empty)'}: no time from this server")
        if packet.leap == ntp.LEAP_UNSYNC or packet.stratum >= 16:
            counters["ntp.unsynchronized"] += 1
            raise NtpError("unsynchronized", f"the server is not synchronised (stratum {packet.stratum}, "
                                             f"leap {packet.leap})")
        if packet.tx_ts == 0 or packet.recv_ts == 0:
            counters["ntp.bogus"] += 1
            return None
        self.sent = None  # one answer per request: a duplicate is bogus from now on
        t1, t2, t3 = packet.orig_ts, packet.recv_ts, packet.tx_ts
        t4_raw = ntp.from_unix(t4)
        offset = (ntp.diff(t2, t1) + ntp.diff(t3, t4_raw)) / 2
        delay = ntp.diff(t4_raw, t1) - ntp.diff(t3, t2)
        counters["ntp.samples"] += 1
        return Sample(offset, max(0.0, delay), packet.stratum, ref_id_text(packet), packet.leap,
                      packet.root_delay_s, packet.root_dispersion_s, packet.version, ntp.to_unix(t3, t4))


def best(samples: Sequence[Sample]) -> Sample:
    """The sample with the smallest delay: its offset has the smallest error bound (delay / 2)."""
    return min(samples, key=lambda s: s.delay)


class NtpServer:
    def __init__(self, stratum: int = 10, ref_id: bytes = b"LOCL", precision: int = -20,
                 root_delay: float = 0.0, root_dispersion: float = 0.0001, ref_time: float = 0.0,
                 rate: float = 2.0, burst: int = 16, max_clients: int = 4096,
                 counters: MutableMapping[str, int] | None = None) -> None:
        if not 1 <= stratum <= 16:
            raise ValueError(f"stratum {stratum}: must be 1..16 (16: unsynchronised)")
        self.stratum = stratum
        self.ref_id = ref_id
        self.precision = precision
        self.root_delay = root_delay
        self.root_dispersion = root_dispersion
        self.ref_time = ref_time
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.counters: MutableMapping[str, int] = counters if counters is not None else _Counts()
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # [tokens, last, last KoD]

    def _bucket(self, client: str, now: float) -> list[float]:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = [float(self.burst), now, -1e18]
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        return bucket

    def answer(self, payload: bytes, client: str, recv_wall: float, now: float,
               tx_clock: Callable[[], float]) -> bytes | None:
        """The reply to one request (None: dropped). *now* is monotonic time for the rate limit."""
        counters = self.counters
        try:
            request = ntp.parse(payload)
        except ParseError as err:
            counters[err.reason] += 1
            return None
        if request.mode != ntp.MODE_CLIENT:
            counters["ntp.not_client"] += 1  # symmetric, broadcast, control: not served
            return None
        counters["ntp.rx_requests"] += 1
        reply = ntp.Packet(leap=ntp.LEAP_UNSYNC if self.stratum >= 16 else ntp.LEAP_NONE,
                           version=request.version, mode=ntp.MODE_SERVER, stratum=self.stratum,
                           poll=max(4, min(17, request.poll)), precision=self.precision,
                           root_delay=ntp.short(self.root_delay), root_dispersion=ntp.short(self.root_dispersion),
                           ref_id=self.ref_id, ref_ts=ntp.from_unix(self.ref_time or recv_wall),
                           orig_ts=request.tx_ts, recv_ts=ntp.from_unix(recv_wall))
        bucket = self._bucket(client, now)
        if bucket[0] < 1.0:
            if now - bucket[2] < 1.0:
                counters["ntp.rate_limited"] += 1
                return None
            bucket[2] = now
            counters["ntp.tx_kod"] += 1
            # RFC 5905 7.4: stratum 0, the code in the reference ID; timestamps echoed, no time given.
            reply.stratum, reply.leap, reply.ref_id = 0, ntp.LEAP_UNSYNC, b"RATE"
            reply.ref_ts = reply.recv_ts = 0
            reply.tx_ts = request.tx_ts
            return ntp.build(reply)
        bucket[0] -= 1.0
        counters["ntp.tx_replies"] += 1
        reply.tx_ts = ntp.from_unix(tx_clock())
        return ntp.build(reply)


class _Counts(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0
