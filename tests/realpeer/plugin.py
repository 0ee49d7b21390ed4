"""pytest side of tests/realpeer/netns.py: the `root` marker check, the fixtures, and the sweeps.

Loaded by tests/conftest.py for the whole suite; `pytest -p tests.realpeer.plugin` loads it anywhere else.

    @pytest.mark.root                      # skip without root, /dev/net/tun or `ip` (fail under CI=true)
    @pytest.mark.root("socat", "tshark")   # ... and these programs
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.realpeer import netns as nn


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "root(*programs): needs root, network namespaces, /dev/net/tun and the named programs "
                   "(skips without them; fails instead under CI=true)")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        nn._hold_run_lock()  # before any test, so fd-leak checks never see it appear
    try:
        removed = nn.sweep_stale()
    except Exception as err:  # never block a run over someone else's debris
        removed = [f"(stale sweep failed: {err})"]
    if removed:
        _say(session, f"usernet: removed leftovers of dead test runs: {' '.join(removed)}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: decide skip/fail before any fixture starts building namespaces.
    marker = item.get_closest_marker("root")
    if marker is not None:
        nn.need_root()
        nn.need_program(*marker.args)


def pytest_sessionfinish(session: pytest.Session) -> None:
    leftovers = nn.sweep()
    if leftovers:
        _say(session, f"usernet: a fixture leaked these, swept at session end: {' '.join(leftovers)}")
    nn.release_run_lock()


def _say(session: pytest.Session, line: str) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, yellow=True)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def netns() -> Iterator[Callable[..., nn.Netns]]:
    """Factory: `ns = netns()` creates a fresh namespace (loopback up), removed with its processes at teardown."""
    nn.need_root()
    made: list[nn.Netns] = []

    def make(role: str = "n") -> nn.Netns:
        ns = nn.Netns.create(role)
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in reversed(made):
            ns.close()


@pytest.fixture
def make_veth_pair() -> Iterator[Callable[..., nn.VethPair]]:
    """Factory: `make_veth_pair(peer_addr="10.77.0.1/24", addr="10.77.0.2/24", own_netns=True,
    kernel_addr=False, mtu=None)`; every pair is removed at teardown."""
    nn.need_root()
    made: list[tuple[nn.VethPair, list[nn.Netns]]] = []

    def make(**kw: Any) -> nn.VethPair:
        pair, owned = nn.create_veth_pair(**kw)
        made.append((pair, owned))
        return pair

    try:
        yield make
    finally:
        for pair, owned in reversed(made):
            nn.close_veth(owned, pair.ifname if pair.ns is None else None)


@pytest.fixture
def veth_pair(make_veth_pair: Callable[..., nn.VethPair]) -> nn.VethPair:
    """The Linux kernel at 10.77.0.1/24 in `pair.peer`; an empty, up end `pair.ifname` in namespace `pair.ns`
    for usernet (over AF_PACKET) at 10.77.0.2/24."""
    return make_veth_pair()


@pytest.fixture
def make_tap_device() -> Iterator[Callable[..., nn.TapDevice]]:
    """Factory: `make_tap_device(kernel_addr="10.78.0.1/24", addr="10.78.0.2/24", own_netns=True)`."""
    nn.need_root()
    made: list[nn.TapDevice] = []

    def make(**kw: Any) -> nn.TapDevice:
        tap = nn.create_tap(**kw)
        made.append(tap)
        return tap

    try:
        yield make
    finally:
        for tap in reversed(made):
            tap.close()


@pytest.fixture
def tap_device(make_tap_device: Callable[..., nn.TapDevice]) -> nn.TapDevice:
    """A TAP `tap.name` in its own namespace `tap.ns`, the kernel at 10.78.0.1/24 on it, up."""
    return make_tap_device()
