"""Smoke test of the flood benchmark (bench/bench_flood.py) in --quick mode: the table has a row
with numbers for each flood asked and each target. Figures are never asserted (no timing assertions)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_flood.py"


def test_quick_flood_table() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--floods", "none,arp,idle"],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {}
    for line in run.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] in ("none", "arp", "idle"):
            rows[cells[0], cells[1]] = cells
    assert set(rows) == {(flood, target) for flood in ("none", "arp", "idle") for target in ("Linux", "usernet")}
    count, number = re.compile(r"^\d+/\d+$"), re.compile(r"^[\d,]+(\.\d+)?$")
    for (flood, _), cells in rows.items():
        assert count.match(cells[2]) and count.match(cells[4]), cells
        assert number.match(cells[6]) and number.match(cells[7]), cells  # RSS, frames/s
        median = number if flood == "none" else re.compile(r"^([\d,]+(\.\d+)?|-)$")  # "-": none succeeded
        assert median.match(cells[3]) and median.match(cells[5]), cells
    assert "opened" in rows["idle", "usernet"][8] and "after closing them" in rows["idle", "usernet"][8]
    assert "entry for the client after" in rows["arp", "usernet"][8]


def test_unknown_flood_is_a_usage_error() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--floods", "none,nosuch"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "unknown flood nosuch" in run.stderr
