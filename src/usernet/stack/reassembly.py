"""IPv4 fragment reassembly (RFC 791 3.2, RFC 815), bounded in memory, share and time.

Overlapping fragments make the whole datagram suspect, so it is dropped (RFC 5722's rule for
IPv6, applied to IPv4 as Linux and the BSDs do for security); an exact duplicate of a fragment
already held (same offset, same length) is ignored, because links really do duplicate frames.

Hostile senders (issue 12): the table is bounded in datagrams and bytes, and when it is full the
oldest incomplete datagram is evicted rather than new ones refused (FreeBSD's ip_reass reuses
the oldest queue entry, ipq_reuse), so fragments that never complete cannot deny reassembly to
everyone for a whole timeout. No single source may hold more than `max_source_share` of either
bound: a source over its share loses its own oldest datagram. Each datagram holds at most
`max_fragments` fragments (FreeBSD net.inet.ip.maxfragsperpacket), kept as sorted, disjoint
ranges: finding a fragment's neighbours is a bisection, so the overlap check costs O(log n) per
fragment instead of a scan of every piece held (FragmentSmack, CVE-2018-5391).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass

from usernet.wire import ipv4

# Charged per fragment beside its payload, as Linux charges an skb's truesize rather than its
# length: 8-byte fragments must not hold far more memory than the table counts.
FRAGMENT_OVERHEAD = 64


@dataclass(slots=True)
class ReassemblyConfig:
    timeout: float = 30.0          # RFC 1122 3.3.2 recommends 60 to 120 s as an upper bound; Linux uses 30 s
    max_datagrams: int = 64        # datagrams in progress at once
    max_bytes: int = 4 << 20       # held in total (payload + FRAGMENT_OVERHEAD each): Linux ipfrag_high_thresh
    max_source_share: float = 0.25  # the most of max_datagrams and of max_bytes one source address may hold
    # Fragments per datagram. FreeBSD's maxfragsperpacket defaults to 16, which refuses UDP datagrams
    # over ~23 KB at MTU 1500; 64 admits the largest datagram (65,535 bytes: 45 fragments at 1500).
    max_fragments: int = 64


class _Datagram:
    __slots__ = ("src", "starts", "ends", "payloads", "total_length", "received", "charge", "deadline",
                 "first_header")

    def __init__(self, src: int, deadline: float) -> None:
        self.src = src
        self.starts: list[int] = []          # sorted offsets of the pieces held (disjoint ranges)
        self.ends: list[int] = []            # their ends, in the same order (so sorted too)
        self.payloads: list[bytes] = []
        self.total_length = -1               # known once the last fragment (MF=0) arrives
        self.received = 0                    # payload bytes held
        self.charge = 0                      # what the table counts for it (payload + overhead)
        self.deadline = deadline
        self.first_header: bytes | None = None  # header + 8 bytes of the offset-0 fragment, for ICMP


# key: (src, dst, proto, ident), RFC 791's reassembly identity
Key = tuple[int, int, int, int]


class _Source:
    __slots__ = ("datagrams", "charge")

    def __init__(self) -> None:
        self.datagrams: OrderedDict[Key, None] = OrderedDict()  # oldest first
        self.charge = 0


class Reassembler:
    def __init__(self, config: ReassemblyConfig | None = None) -> None:
        self.config = config or ReassemblyConfig()
        # Oldest first: the timeout is the same for all, so this is also deadline order.
        self.datagrams: OrderedDict[Key, _Datagram] = OrderedDict()
        self.sources: dict[int, _Source] = {}
        self.held_bytes = 0

    def add(self, header: ipv4.IPv4Header, raw_packet: memoryview, now: float,
            counters: dict[str, int]) -> bytes | None:
        """Take one fragment; return the whole payload once complete, else None."""
        config = self.config
        src = header.src
        key = (src, header.dst, header.proto, header.ident)
        offset = header.fragment_offset
        data = header.payload
        length = len(data)
        more = header.more_fragments
        end = offset + length
        if end + header.header_len > ipv4.MAX_PACKET or (more and (length == 0 or length & 7)):
            # RFC 791: every fragment but the last carries a multiple of 8 bytes.
            counters["ipv4.frag_invalid"] += 1
            return None
        dgram = self.datagrams.get(key)
        if dgram is None:
            dgram = self._new_datagram(key, src, now, counters)
        if not more:
            if dgram.total_length not in (-1, end) or (dgram.ends and dgram.ends[-1] > end):
                counters["ipv4.frag_overlap"] += 1  # contradicts the total length, or data beyond it
                self._drop(key)
                return None
            dgram.total_length = end
        elif dgram.total_length != -1 and end > dgram.total_length:
            counters["ipv4.frag_overlap"] += 1
            self._drop(key)
            return None
        starts, ends = dgram.starts, dgram.ends
        i = bisect_right(starts, offset)
        # The pieces are disjoint and sorted, so only the two neighbours can overlap.
        if i and ends[i - 1] > offset:
            if starts[i - 1] == offset and ends[i - 1] == end:
                counters["ipv4.frag_duplicate"] += 1
                return None
            counters["ipv4.frag_overlap"] += 1
            self._drop(key)
            return None
        if i < len(starts) and starts[i] < end:
            counters["ipv4.frag_overlap"] += 1
            self._drop(key)
            return None
        if len(starts) >= config.max_fragments:
            counters["ipv4.frag_too_many"] += 1
            self._drop(key)
            return None
        charge = length + FRAGMENT_OVERHEAD
        if not self._make_room(key, dgram, charge, counters):
            return None
        starts.insert(i, offset)
        ends.insert(i, end)
        dgram.payloads.insert(i, bytes(data))
        dgram.received += length
        dgram.charge += charge
        self.held_bytes += charge
        self.sources[src].charge += charge
        if offset == 0:
            dgram.first_header = bytes(raw_packet[:header.header_len + 8])
        if dgram.received != dgram.total_length:
            return None
        # Complete: disjoint pieces within [0, total) whose sizes add up to total tile it exactly.
        self._drop(key)
        counters["ipv4.reassembled"] += 1
        return b"".join(dgram.payloads)

    def _new_datagram(self, key: Key, src: int, now: float, counters: dict[str, int]) -> _Datagram:
        config = self.config
        source = self.sources.get(src)
        if source is None:
            source = self.sources[src] = _Source()
        share = max(1, int(config.max_datagrams * config.max_source_share))
        while len(source.datagrams) >= share:
            counters["ipv4.frag_source_share"] += 1
            self._drop(next(iter(source.datagrams)))
        while len(self.datagrams) >= config.max_datagrams:
            counters["ipv4.frag_table_full"] += 1
            self._drop(next(iter(self.datagrams)))
        dgram = self.datagrams[key] = _Datagram(src, now + config.timeout)
        source.datagrams[key] = None
        return dgram

    def _make_room(self, key: Key, dgram: _Datagram, charge: int, counters: dict[str, int]) -> bool:
        """Evict the oldest datagrams (the source's own first, when it is over its share) until
        *charge* more bytes fit. False when *dgram* itself had to go."""
        config = self.config
        source = self.sources[dgram.src]
        share = config.max_bytes * config.max_source_share
        while source.charge + charge > share:
            counters["ipv4.frag_source_share"] += 1
            oldest = next(iter(source.datagrams))
            self._drop(oldest)
            if oldest == key:
                return False
        while self.held_bytes + charge > config.max_bytes:
            counters["ipv4.frag_memory_full"] += 1
            oldest = next(iter(self.datagrams))
            self._drop(oldest)
            if oldest == key:
                return False
        return True

    def _drop(self, key: Key) -> None:
        dgram = self.datagrams.pop(key, None)
        if dgram is None:
            return
        self.held_bytes -= dgram.charge
        source = self.sources[dgram.src]
        del source.datagrams[key]
        source.charge -= dgram.charge
        if not source.datagrams:
            del self.sources[dgram.src]

    def expire(self, now: float) -> list[bytes]:
        """Drop timed-out datagrams; return the quoted first fragments of those whose offset-0
        fragment arrived, for ICMP time exceeded (RFC 792; RFC 1122 3.3.2)."""
        quotes = []
        datagrams = self.datagrams
        while datagrams:
            key, dgram = next(iter(datagrams.items()))
            if dgram.deadline > now:
                break
            if dgram.first_header is not None:
                quotes.append(dgram.first_header)
            self._drop(key)
        return quotes

    def next_deadline(self) -> float | None:
        if not self.datagrams:
            return None
        return next(iter(self.datagrams.values())).deadline
