"""ICMP echo from a host: the engine of ``usernet ping``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from usernet.wire import ipv4

if TYPE_CHECKING:
    from usernet.api.host import Host

MAX_SIZE = 65535 - 20 - 8  # the payload of one IPv4 datagram: IP header, ICMP header, data
_REMEMBERED = 4096  # requests an endless ping keeps track of


def _payload(size: int, stamp: float) -> bytes:
    # iputils puts a timestamp in the first 8 bytes and a byte ramp after it; we do the same shape
    # so replies can be checked for corruption.
    ramp = bytes(i & 0xFF for i in range(8, max(size, 8)))
    head = int(stamp * 1e6).to_bytes(8, "big")
    return (head + ramp)[:size]


def ping(host: Host, dst: str, *, count: int = 1, interval: float = 1.0, size: int = 56, timeout: float = 1.0,
         on_reply: Callable[[dict[str, Any]], None] | None = None,
         should_stop: Callable[[], bool] | None = None) -> list[float | None]:
    """Send *count* echo requests *interval* apart; wait up to *timeout* after the last one.

    Returns one entry per request sent (fewer than *count* when *should_stop* ended it early): its
    round-trip time in seconds, or None if no (valid) reply came.
    *on_reply* gets a dict per reply as it arrives: seq (the request's index, from 0), icmp_seq (the
    number on the wire, from 1 as iputils does), rtt, src, ttl, size, ok (the data came back intact)
    and duplicate (a reply for that sequence number came before, as iputils' "DUP!"); and one per
    ICMP error (error_type, code, src) or failed send (seq, error).
    """
    if not 0 <= size <= MAX_SIZE:
        raise ValueError(f"packet size {size} out of range 0..{MAX_SIZE}")
    target = ipv4.addr(dst)
    stack = host.stack
    with host.lock:
        endpoint = stack.echo_open()
        endpoint.on_event = host.notify
    sent_at: dict[int, float] = {}
    payloads: dict[int, bytes] = {}
    answered: set[int] = set()  # requests with a reply so far: a second one is a duplicate
    rtts: list[float | None] = []  # one entry per request actually sent
    try:
        next_send = time.monotonic()
        seq = 0
        last_deadline = None
        while True:
            now = time.monotonic()
            if should_stop is not None and should_stop():
                break
            if seq < count and now >= next_send:
                data = _payload(size, now)
                with host.lock:
                    sent_at[seq] = time.monotonic()
                    payloads[seq] = data
                    rtts.append(None)
                    if seq >= _REMEMBERED:  # bounded memory for an endless ping: forget long-gone requests
                        sent_at.pop(seq - _REMEMBERED, None)
                        payloads.pop(seq - _REMEMBERED, None)
                        answered.discard(seq - _REMEMBERED)
                    try:
                        stack.echo_send(endpoint, target, _wire_seq(seq), data)
                    except OSError as err:
                        if on_reply is not None:
                            on_reply({"seq": seq, "icmp_seq": _wire_seq(seq), "error": str(err)})
                    host.kick()
                seq += 1
                next_send += interval
                if seq == count:
                    last_deadline = time.monotonic() + timeout
            if last_deadline is not None and time.monotonic() >= last_deadline:
                break
            if seq == count and all(r is not None for r in rtts):
                break
            wake_at = last_deadline if last_deadline is not None else next_send
            with host.cond:
                if not endpoint.queue and not endpoint.errors:
                    host.cond.wait(max(0.0, min(wake_at - time.monotonic(), 0.5)))
                replies = list(endpoint.queue)
                endpoint.queue.clear()
                errors = list(endpoint.errors)
                endpoint.errors.clear()
            for src, rseq, data, ttl, arrived in replies:
                index = _match(rseq, seq)
                if index is None or index not in sent_at:
                    continue
                ok = data == payloads.get(index)
                rtt = arrived - sent_at[index]
                # By sequence number, as iputils: two copies can carry the same arrival time.
                duplicate = index in answered
                answered.add(index)
                if ok and rtts[index] is None:
                    rtts[index] = rtt
                if on_reply is not None:
                    on_reply({"seq": index, "icmp_seq": rseq, "rtt": rtt, "src": ipv4.ntoa(src), "ttl": ttl,
                              "size": len(data), "ok": ok, "duplicate": duplicate})
            for kind, code, reporter in errors:
                if on_reply is not None:
                    on_reply({"error_type": kind, "code": code, "src": ipv4.ntoa(reporter)})
    finally:
        with host.lock:
            stack.echo_close(endpoint)
    return rtts


def _wire_seq(index: int) -> int:
    """Request *index* (from 0) goes out as icmp_seq index + 1, as iputils numbers them."""
    return (index + 1) & 0xFFFF


def _match(wire_seq: int, sent: int) -> int | None:
    """Map a 16-bit wire sequence back to our request index (the most recent one it can be)."""
    if sent == 0:
        return None
    index = sent - 1 - ((sent - wire_seq) & 0xFFFF)
    return index if index >= 0 else None
