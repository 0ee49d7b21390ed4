"""Under CI=true a real-peer precondition that is missing fails the test instead of skipping it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_probe(tmp_path, ci: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(textwrap.dedent("""
        from tests.realpeer.support import need_programs

        def test_needs_a_missing_program():
            need_programs("usernet-no-such-program")
    """))
    env = dict(os.environ, CI=ci, PYTHONPATH=os.getcwd())
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
                          capture_output=True, text=True, env=env, cwd=os.getcwd(), timeout=120)


def test_missing_peer_skips_normally(tmp_path) -> None:
    result = run_probe(tmp_path, "false")
    assert result.returncode == 0 and "1 skipped" in result.stdout


def test_missing_peer_fails_under_ci(tmp_path) -> None:
    result = run_probe(tmp_path, "true")
    assert result.returncode == 1 and "1 failed" in result.stdout
    assert "usernet-no-such-program" in result.stdout
