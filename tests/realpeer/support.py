"""Preconditions of real-peer tests: skip with a clear reason, or fail under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: real-peer tests must run in CI", pytrace=False)
    pytest.skip(reason)


def need_root() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root (network namespaces, veth, AF_PACKET)")
    if not os.path.exists("/dev/net/tun"):
        _unavailable("needs /dev/net/tun")


def need_programs(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        _unavailable(f"needs {', '.join(missing)} on PATH")
