"""In-order bulk data through the sans-IO receive path: segments/s and us per segment.

Run: `.venv/bin/python bench/bench_rx_data.py [--segments N] [--batch B] [--profile]`.
One stack accepts a connection (handshake with MSS, window scale, SACK-permitted and
timestamps, as Linux offers), then is fed prebuilt, checksummed, in-order 1460-byte data
frames of that connection (not trusted: the link verified no checksum, as with the peer's
offloads off). After every *batch* frames it polls (sending the ACKs) and an application
drains the receive buffer as a socket's recv would. Only the stack is timed; the data read
is checked against what was sent, and the ACKs are counted.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import random
import time

from usernet.stack.core import Stack
from usernet.wire import arp, ethernet, ipv4
from usernet.wire import tcp as tcpwire

OUR_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
OUR_IP, PEER_IP = ipv4.addr("10.0.0.2"), ipv4.addr("10.0.0.1")
PORT, PEER_PORT = 5001, 40000
MSS = 1448  # 1460 less the timestamp option, as Linux sends


def _frame(segment: bytes | bytearray, ident: int) -> bytes:
    packet = bytearray(20 + len(segment))
    ipv4.write_header(packet, 0, src=PEER_IP, dst=OUR_IP, proto=6, payload_len=len(segment), ident=ident,
                      flags_frag=ipv4.FLAG_DF)
    packet[20:] = segment
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_IPV4, packet)


def _segment(seq: int, ack: int, flags: int, options: bytes, payload: bytes = b"", window: int = 502) -> bytearray:
    return tcpwire.build(PEER_IP, OUR_IP, PEER_PORT, PORT, seq, ack, flags, window, options, payload)


def setup(rng: random.Random) -> tuple[Stack, object, int, int, int]:
    """A stack with one established passive connection: (stack, conn, next peer seq, ack, our TS)."""
    stack = Stack(mac=OUR_MAC, addr="10.0.0.2/24", rng=random.Random(2))
    listener = stack.tcp.listen(0, PORT, 16)
    stack.receive(ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_ARP,
                                 arp.build(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 0.0)
    stack.poll(0.0)
    isn = rng.getrandbits(32)
    syn_opts = tcpwire.build_options(mss=1460, sack_permitted=True, ts=(1000, 0), wscale=7)
    stack.receive(_frame(_segment(isn, 0, tcpwire.SYN, syn_opts, window=64240), 1), 0.001)
    out = stack.poll(0.001)
    synack = tcpwire.parse(ipv4.parse(out[-1], 14).payload)
    assert synack.flags == tcpwire.SYN | tcpwire.ACK, synack
    our_ts = synack.options.ts_val or 0
    ack = (synack.seq + 1) & 0xFFFFFFFF
    seq = (isn + 1) & 0xFFFFFFFF
    stack.receive(_frame(_segment(seq, ack, tcpwire.ACK, tcpwire.build_options(ts=(1001, our_ts))), 2), 0.002)
    stack.poll(0.002)
    conn = listener.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    conn.on_event = lambda: None  # a socket's wake-up hook, at its cheapest
    return stack, conn, seq, ack, our_ts


def build_frames(count: int, seq: int, ack: int, our_ts: int, rng: random.Random) -> tuple[list[bytes], str]:
    data = rng.randbytes(MSS * 64)
    digest = hashlib.sha256()
    frames = []
    for i in range(count):
        payload = data[(i % 64) * MSS:(i % 64 + 1) * MSS]
        digest.update(payload)
        options = tcpwire.build_options(ts=(1002 + i // 8, our_ts))  # the peer's clock ticks slower
        flags = tcpwire.ACK | (tcpwire.PSH if i % 45 == 44 else 0)
        frames.append(_frame(_segment((seq + i * MSS) & 0xFFFFFFFF, ack, flags, options, payload), (3 + i) & 0xFFFF))
    return frames, digest.hexdigest()


def run(frames: list[bytes], stack: Stack, conn: object, batch: int) -> tuple[float, int, str]:
    """Feed the frames; return (seconds, ACKs sent, sha256 of the data read)."""
    digest = hashlib.sha256()
    receive = stack.receive
    poll = stack.poll
    recv = conn.recv  # type: ignore[attr-defined]
    acks = 0
    now = 1.0
    step = MSS / 373e6  # virtual time: the frame ceiling's pace
    start = time.perf_counter()
    for base in range(0, len(frames), batch):
        for frame in frames[base:base + batch]:
            receive(frame, now, False)
            now += step
        acks += len(poll(now))
        while True:
            data = recv(1 << 20)
            if not data:
                break
            digest.update(data)
    elapsed = time.perf_counter() - start
    return elapsed, acks, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64, help="frames per poll and drain (the runtime's batch)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run instead")
    args = parser.parse_args()
    best = None
    for _attempt in range(1 if args.profile else args.repeat):
        rng = random.Random(1)
        stack, conn, seq, ack, our_ts = setup(rng)
        frames, sent_digest = build_frames(args.segments, seq, ack, our_ts, rng)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
        elapsed, acks, got_digest = run(frames, stack, conn, args.batch)
        if args.profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        assert got_digest == sent_digest, "data read differs from data sent"
        assert not stack.counters["stack.internal_error"], stack.counters
        if best is None or elapsed < best[0]:
            best = (elapsed, acks)
    assert best is not None
    elapsed, acks = best
    n = args.segments
    print(f"{n:,} segments of {MSS} bytes, batch {args.batch}: {n / elapsed:,.0f} segments/s, "
          f"{elapsed / n * 1e6:.2f} us/segment, {n * MSS / elapsed / 1e6:.0f} MB/s of payload, "
          f"{acks:,} ACKs sent ({n / max(1, acks):.2f} segments per ACK)")


if __name__ == "__main__":
    main()
