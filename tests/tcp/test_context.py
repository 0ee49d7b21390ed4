"""A connection needs only its TcpContext: a test can drive one with a context of its own."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from usernet.tcp.config import TcpConfig
from usernet.tcp.connection import SYN_SENT, TcpConnection
from usernet.tcp.context import ChallengeLimiter, MemoryPool
from usernet.wire.tcp import SYN


class RecordingContext:
    """Everything TcpContext asks for, recording what the connection sends."""

    def __init__(self) -> None:
        self.config = TcpConfig()
        self.rng = random.Random(1)
        self.counters: defaultdict[str, int] = defaultdict(int)
        self.now = 0.0
        self.challenge = ChallengeLimiter(self.rng, self.config)
        self.memory = MemoryPool(self.config, lambda: 1)
        self.sent: list[tuple[int, int, int]] = []
        self.dirty: list[Any] = []

    def mark_dirty(self, conn: Any) -> None:
        self.dirty.append(conn)

    def transmit(self, conn: Any, seq: int, ack: int, flags: int, window: int, options: bytes, payload: Any) -> None:
        self.sent.append((seq, flags, len(payload)))

    def send_reset(self, *args: int) -> None:
        self.sent.append((args[4], args[6], 0))

    def established(self, conn: Any) -> None:
        pass

    def forget(self, conn: Any) -> None:
        pass

    def gso_for(self, dst: int) -> int:
        return 0

    def ts_offset(self, local: tuple[int, int], remote: tuple[int, int]) -> int:
        return 7


def test_a_connection_runs_on_any_context() -> None:
    ctx = RecordingContext()
    conn = TcpConnection(ctx, (1, 1000), (2, 80), 12345, ctx.config, 0.0, 1460)
    conn.start_active(0.0)
    assert conn.state == SYN_SENT
    assert ctx.sent and ctx.sent[0][1] == SYN and ctx.sent[0][0] == 12345
    assert conn.ts_offset == 7  # taken from the context


def test_challenge_limiter_budget_is_random_around_the_limit() -> None:
    config = TcpConfig()
    config.challenge_ack_limit = 100
    limiter = ChallengeLimiter(random.Random(3), config)
    budgets = []
    for second in range(50):
        allowed = 0
        while limiter.allow(second + 0.5):
            allowed += 1
        budgets.append(allowed)
    assert min(budgets) >= 50 and max(budgets) <= 149 and len(set(budgets)) > 10
