"""Out-of-order data (RFC 9293 3.10.7.4 "segment text"): kept, merged, and reported as SACK blocks."""

from __future__ import annotations


class OutOfOrder:
    """Pieces of data beyond rcv_nxt, keyed by absolute sequence number; never overlapping.

    Memory is bounded by the caller (only in-window data is offered) and by *max_pieces*.
    """

    __slots__ = ("pieces", "bytes", "max_pieces", "recent", "duplicate")

    def __init__(self, max_pieces: int) -> None:
        self.pieces: dict[int, bytes] = {}
        self.bytes = 0
        self.max_pieces = max_pieces
        self.recent: list[int] = []  # starts of the most recently changed blocks first (RFC 2018 4)
        self.duplicate: tuple[int, int] | None = None  # the first range the last add() already held

    def __bool__(self) -> bool:
        return bool(self.pieces)

    def add(self, seq: int, data: bytes) -> bool:
        """Store *data* at *seq*, trimming what is already held. False when nothing new was kept.
        Sets :attr:`duplicate` to the first range of *data* that was already held (RFC 2883 D-SACK)."""
        end = seq + len(data)
        added = False
        self.duplicate = None
        for start in sorted(self.pieces):
            piece = self.pieces[start]
            piece_end = start + len(piece)
            if piece_end <= seq or start >= end:
                continue
            # Keep the part before this piece, continue with the part after it.
            if seq < start:
                added |= self._put(seq, data[:start - seq])
            held = (max(seq, start), min(end, piece_end))
            if self.duplicate is None:
                self.duplicate = held
            elif self.duplicate[1] == held[0]:  # adjacent pieces: one contiguous duplicate
                self.duplicate = (self.duplicate[0], held[1])
            if end <= piece_end:
                seq = end
                data = b""
                break
            data = data[piece_end - seq:]
            seq = piece_end
        if data:
            added |= self._put(seq, data)
        return added

    def _put(self, seq: int, data: bytes) -> bool:
        if len(self.pieces) >= self.max_pieces:
            return False
        self.pieces[seq] = data
        self.bytes += len(data)
        if seq in self.recent:
            self.recent.remove(seq)
        self.recent.insert(0, seq)
        del self.recent[8:]
        return True

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Data now contiguous with *rcv_nxt* (pieces below it are dropped)."""
        out = []
        while self.pieces:
            start = min(self.pieces)
            if start > rcv_nxt:
                break
            piece = self.pieces.pop(start)
            self.bytes -= len(piece)
            end = start + len(piece)
            if end > rcv_nxt:
                out.append(piece[rcv_nxt - start:])
                rcv_nxt = end
        return b"".join(out)

    def blocks(self, limit: int) -> list[tuple[int, int]]:
        """Merged (start, end) ranges, the most recently changed first (RFC 2018 4)."""
        merged: list[list[int]] = []
        for start in sorted(self.pieces):
            end = start + len(self.pieces[start])
            if merged and merged[-1][1] >= start:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        order = []
        for seq in self.recent:
            for block in merged:
                if block[0] <= seq < block[1] and tuple(block) not in order:
                    order.append((block[0], block[1]))
        for block in merged:
            if (block[0], block[1]) not in order:
                order.append((block[0], block[1]))
        return order[:limit]
