"""A `selectors` selector over usernet sockets that needs no file descriptors.

`fileno()` gives every usernet socket a readiness descriptor (``api/readiness.py``) so the
kernel's poll can watch it; that costs a socketpair per socket and system calls on each change of
its state. Code that waits only on usernet sockets of one host can use :class:`Selector` instead:
each registration puts a watch on the socket that its state changes update in memory (under the
host's lock, where they happen), and ``select()`` waits on a condition of the host's lock.

It is level-triggered, as ``selectors.DefaultSelector``: a socket that stays ready is returned by
every ``select()`` until it is not. The host's built-in services (``apps/services.py``) run on it,
dispatched by the runtime thread itself (``Host.add_pass_hook``), so an echo is answered in the
pass that received the request, without waking another thread.
"""

from __future__ import annotations

import selectors
import threading
import time
from collections.abc import Mapping
from typing import Any

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


class _Watch:
    """One registration: its key and the socket's last known readiness."""

    __slots__ = ("selector", "key", "mask")

    def __init__(self, selector: Selector, key: selectors.SelectorKey) -> None:
        self.selector = selector
        self.key = key
        self.mask = 0

    def update(self, readable: bool, writable: bool) -> None:
        """The socket's state changed (host lock held): queue the key while it is ready for what
        was asked, drop it when not."""
        self.mask = mask = (EVENT_READ if readable else 0) | (EVENT_WRITE if writable else 0)
        selector = self.selector
        if mask & self.key.events:
            if self not in selector._ready:
                selector._ready[self] = None
                selector._signal()
        else:
            selector._ready.pop(self, None)

    def close(self) -> None:
        self.selector._ready.pop(self, None)


class _Map(Mapping[Any, selectors.SelectorKey]):
    def __init__(self, keys: dict[Any, _Watch]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys[fileobj].key

    def __iter__(self) -> Any:
        return iter(self._keys)


class Selector(selectors.BaseSelector):
    """Waits on usernet sockets of one runtime (a :class:`usernet.Host`), without descriptors.

    ``wakeup`` (optional) is called, host lock held, whenever a key becomes ready: the host's
    service loop uses it to wake the runtime thread when a socket turns ready from another
    thread. Keys' ``fd`` fields are numbers unique within this selector, not descriptors."""

    def __init__(self, wakeup: Any = None) -> None:
        self._keys: dict[Any, _Watch] = {}
        self._ready: dict[_Watch, None] = {}  # ordered: keys come back in the order they turned ready
        self._runtime: Any = None
        self._cond: threading.Condition | None = None
        self._waiting = 0
        self._next_id = 1
        self._wakeup = wakeup
        self._closed = False

    def _bind(self, sock: Any) -> None:
        runtime = getattr(sock, "_host", None)
        if runtime is None or not hasattr(sock, "_s"):
            raise ValueError(f"{sock!r} is not a usernet socket: usernet.api.selector.Selector "
                             "watches only usernet sockets (use selectors.DefaultSelector for others)")
        if self._runtime is None:
            self._runtime = runtime
            self._cond = threading.Condition(runtime.lock)
        elif runtime is not self._runtime:
            raise ValueError("a usernet Selector watches the sockets of one host only")

    def _signal(self) -> None:
        if self._waiting:
            assert self._cond is not None
            self._cond.notify()
        if self._wakeup is not None:
            self._wakeup()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if self._closed:
            raise RuntimeError("selector is closed")
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        self._bind(fileobj)
        with self._runtime.lock:
            if fileobj in self._keys:
                raise KeyError(f"{fileobj!r} is already registered")
            if fileobj._released:
                raise ValueError(f"{fileobj!r} is closed")
            key = selectors.SelectorKey(fileobj, self._next_id, events, data)
            self._next_id += 1
            watch = self._keys[fileobj] = _Watch(self, key)
            fileobj._add_watch(watch)
            return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        runtime = self._runtime
        if runtime is None:
            raise KeyError(f"{fileobj!r} is not registered")
        with runtime.lock:
            watch = self._keys.pop(fileobj, None)
            if watch is None:
                raise KeyError(f"{fileobj!r} is not registered")
            watch.close()
            fileobj._remove_watch(watch)
            return watch.key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        runtime = self._runtime
        if runtime is None:
            raise KeyError(f"{fileobj!r} is not registered")
        with runtime.lock:
            watch = self._keys.get(fileobj)
            if watch is None:
                raise KeyError(f"{fileobj!r} is not registered")
            old = watch.key
            if old.events != events or old.data is not data:
                watch.key = selectors.SelectorKey(fileobj, old.fd, events, data)
                if watch.mask & events:
                    if watch not in self._ready:
                        self._ready[watch] = None
                        self._signal()
                else:
                    self._ready.pop(watch, None)
            return watch.key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        runtime = self._runtime
        if runtime is None:  # nothing registered yet: only the wait
            if timeout is None or timeout > 0:
                time.sleep(1.0 if timeout is None else timeout)
            return []
        with runtime.lock:
            if not self._ready and (timeout is None or timeout > 0):
                assert self._cond is not None
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
            return [(watch.key, watch.mask & watch.key.events) for watch in self._ready]

    def has_ready(self) -> bool:
        """Whether a select(0) would return anything (host lock held or not: a hint)."""
        return bool(self._ready)

    def wake(self) -> None:
        """End a select() another thread is blocked in (it returns what is ready, maybe nothing)."""
        if self._runtime is not None:
            with self._runtime.lock:
                assert self._cond is not None
                self._cond.notify_all()

    def close(self) -> None:
        runtime = self._runtime
        if runtime is not None:
            with runtime.lock:
                for sock, watch in list(self._keys.items()):
                    watch.close()
                    sock._remove_watch(watch)
                self._keys.clear()
                self._ready.clear()
        self._closed = True

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _Map(self._keys)
