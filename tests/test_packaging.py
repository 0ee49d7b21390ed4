"""The package as installed by `./dev`: it imports, its public names resolve, the console script runs.

ruff and mypy are not run from here: `./dev test` runs them before pytest.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import usernet

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_package_imports_from_this_checkout() -> None:
    assert Path(usernet.__file__).resolve().is_relative_to(REPO / "src")


def test_public_names_resolve() -> None:
    for name in getattr(usernet, "__all__", []):
        assert hasattr(usernet, name), name
    for name in ("AF_INET", "SOCK_STREAM", "SOCK_DGRAM", "SOL_SOCKET", "SO_REUSEADDR", "IPPROTO_TCP", "TCP_NODELAY"):
        if hasattr(usernet, name):
            assert getattr(usernet, name) == getattr(socket, name), name


def test_no_runtime_dependencies() -> None:
    assert PYPROJECT["project"].get("dependencies", []) == []


def test_version_matches_pyproject() -> None:
    if hasattr(usernet, "__version__"):
        assert usernet.__version__ == PYPROJECT["project"]["version"]


def console_script() -> str:
    if importlib.util.find_spec("usernet.cli") is None:
        pytest.skip("usernet.cli does not exist yet")
    # The script sits next to the interpreter in a virtual environment; elsewhere look on PATH.
    script = Path(sys.executable).with_name("usernet")
    if script.exists():
        return str(script)
    found = shutil.which("usernet")
    if found is None:
        pytest.skip("the usernet console script is not installed (pip install -e .)")
    return found


def test_console_script_help() -> None:
    script = console_script()
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() and "Traceback" not in result.stderr
    for command in ("demo", "up", "ping"):
        assert command in result.stdout


def test_cli_main_is_the_entry_point() -> None:
    if importlib.util.find_spec("usernet.cli") is None:
        pytest.skip("usernet.cli does not exist yet")
    target = PYPROJECT["project"]["scripts"]["usernet"]
    module, _, attr = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_dev_script_is_the_ci_entry_point() -> None:
    dev = REPO / "dev"
    assert dev.exists() and os.access(dev, os.X_OK)
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert "set -euo pipefail" in commands and commands[-1] == "./dev test"
