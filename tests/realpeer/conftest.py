"""Fixtures of the real-peer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realpeer.support import Veth, make_veth


@pytest.fixture
def veth(tmp_path) -> Iterator[Veth]:
    """Two fresh namespaces joined by veth: the kernel peer at 10.77.0.1, an empty end for usernet."""
    yield from make_veth(tmp_path)
