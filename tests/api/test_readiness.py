"""The readiness fd makes select/selectors see a usernet socket's state."""

from __future__ import annotations

import select
import selectors

from usernet.api.readiness import ReadinessFd


def poll_state(fd: ReadinessFd) -> tuple[bool, bool]:
    r, w, _ = select.select([fd], [fd], [], 0)
    return bool(r), bool(w)


def test_transitions_are_seen_by_select() -> None:
    fd = ReadinessFd()
    try:
        assert poll_state(fd) == (False, True)
        fd.update(readable=True, writable=True)
        assert poll_state(fd) == (True, True)
        fd.update(readable=True, writable=False)
        assert poll_state(fd) == (True, False)
        fd.update(readable=False, writable=False)
        assert poll_state(fd) == (False, False)
        fd.update(readable=False, writable=True)
        assert poll_state(fd) == (False, True)
        for _ in range(3):  # repeated transitions stay exact
            fd.update(True, False)
            fd.update(False, True)
        assert poll_state(fd) == (False, True)
    finally:
        fd.close()


def test_selectors_register_it() -> None:
    fd = ReadinessFd()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        assert sel.select(0) == []
        fd.update(True, True)
        [(key, events)] = sel.select(0)
        assert key.fileobj is fd and events == selectors.EVENT_READ
    fd.close()
