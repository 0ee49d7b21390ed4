"""Smoke test of the benchmark suite (bench/suite.py): two cheap scenarios in --quick mode write
results.md with their tables and numbers. Figures are never asserted (no timing assertions)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SUITE = Path(__file__).resolve().parent.parent / "bench" / "suite.py"


def test_quick_suite_writes_tables(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(SUITE), "--quick", "--only", "local,latency", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    text = (tmp_path / "results.md").read_text()
    for heading in ("## local:", "## latency:"):
        assert heading in text
    for key in ("command", "date", "git commit", "machine", "load average at start (uptime", "load average at end"):
        assert f"- {key}" in text
    assert "--quick --only local,latency" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    figures = {line.split(" | ")[0].lstrip("| ") for line in rows}
    assert {"loopback inside one host (MB/s)", "ping median (ms)", "1-byte echo median, built-in echo service (us)",
            "1-byte echo median, threaded server (us)"} <= figures
    number = re.compile(r"^[\d,]+(\.\d+)?x?$")
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == "---":
            continue
        assert number.match(cells[2]), line  # usernet's figure is always measured
    assert "ping median (ms)" in text and "<= 0.03 ms" in text
    assert "- scenarios failed" not in text


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(SUITE), "--only", "nosuch", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown scenario nosuch" in run.stderr
    assert not (tmp_path / "results.md").exists()
