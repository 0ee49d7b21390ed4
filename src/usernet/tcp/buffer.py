"""A byte FIFO for a connection's receive buffer that keeps its storage between reads.

A ``bytearray`` used as a FIFO (``+=`` at the end, ``del b[:n]`` at the front) gives its memory
back whenever it shrinks below half, so a reader that drains it makes every later ``+=`` grow it
again: realloc and copy of all it holds, again and again (growing to 1 MB by 64 KB segments
copies about 8 MB). Here appends go into free room at the end of a storage kept across reads,
one copy each; a read that empties the buffer just rewinds it.
"""

from __future__ import annotations

from typing import Any

_MIN_STORAGE = 4096


class StreamBuffer:
    """Bytes in order: ``+=`` appends, :meth:`take` removes from the front. ``len``, truth and
    slicing (``buf[:n]`` gives bytes) as a bytearray's. The storage is at most twice the most
    the buffer has held at once (which the connection's window and memory accounting bound)."""

    __slots__ = ("_store", "_start", "_end")

    def __init__(self, data: Any = b"") -> None:
        self._store = bytearray(data)
        self._start = 0
        self._end = len(self._store)

    def __len__(self) -> int:
        return self._end - self._start

    def __bool__(self) -> bool:
        return self._end != self._start

    def __iadd__(self, data: Any) -> StreamBuffer:
        size = len(data)
        if size:
            end = self._end
            if end + size > len(self._store):
                self._make_room(size)
                end = self._end
            self._store[end:end + size] = data  # same length: a copy in place, no resize
            self._end = end + size
        return self

    def _make_room(self, size: int) -> None:
        start, end = self._start, self._end
        held = end - start
        store = self._store
        if held + size <= len(store) // 2:
            # Plenty of room once the held bytes move to the front (few of them, as a rule).
            store[:held] = bytes(memoryview(store)[start:end])
        else:
            grown = bytearray(max(_MIN_STORAGE, 2 * (held + size)))
            grown[:held] = memoryview(store)[start:end]
            self._store = grown
        self._start, self._end = 0, held

    def take(self, maximum: int) -> bytes:
        """Remove and return up to *maximum* bytes from the front (one copy)."""
        start, end = self._start, self._end
        stop = min(end, start + max(0, maximum))
        with memoryview(self._store) as view:
            data = bytes(view[start:stop])
        if stop == end:
            self._start = self._end = 0  # empty: the next append starts at the front again
        else:
            self._start = stop
        return data

    def shrink(self) -> int:
        """Give back storage beyond what the held bytes need (twice them, at least _MIN_STORAGE);
        returns the bytes released. For idle moments (api/memtrim.py before a trim): done on every
        read it would bring back the regrowth this class exists to avoid."""
        held = self._end - self._start
        keep = 0 if not held else max(_MIN_STORAGE, 2 * held)
        size = len(self._store)
        if size <= max(keep, _MIN_STORAGE):
            return 0
        store = bytearray(keep)
        if held:
            store[:held] = memoryview(self._store)[self._start:self._end]
        self._store = store
        self._start, self._end = 0, held
        return size - keep

    def clear(self) -> None:
        self._store = bytearray()
        self._start = self._end = 0

    def __getitem__(self, index: slice) -> bytes:
        if not isinstance(index, slice):
            raise TypeError("StreamBuffer indices must be slices")
        lo, hi, step = index.indices(self._end - self._start)
        base = self._start
        with memoryview(self._store) as view:
            return bytes(view[base + lo:base + hi:step]) if hi > lo or step < 0 else b""

    def __bytes__(self) -> bytes:
        with memoryview(self._store) as view:
            return bytes(view[self._start:self._end])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamBuffer):
            return bytes(self) == bytes(other)
        if isinstance(other, bytes | bytearray | memoryview):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as bytearray

    def __repr__(self) -> str:
        return f"StreamBuffer({bytes(self)!r})"
