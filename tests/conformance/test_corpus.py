"""Every script of the corpus passes; every deliberately broken script fails (the runner must
not be able to pass a wrong stack)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from usernet.drill import parse_script, run_script

HERE = os.path.dirname(__file__)
CORPUS = sorted(glob.glob(os.path.join(HERE, "*.pkt")))
BROKEN = sorted(glob.glob(os.path.join(HERE, "broken", "*.pkt")))


def run(path: str, **kw):  # type: ignore[no-untyped-def]
    with open(path) as f:
        return run_script(parse_script(f.read(), path), **kw)


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_corpus_script_passes(path: str) -> None:
    result = run(path)
    assert result.passed, f"{os.path.basename(path)}:{result.line}: {result.message}"


@pytest.mark.parametrize("path", BROKEN, ids=[os.path.basename(p) for p in BROKEN])
def test_broken_script_fails(path: str) -> None:
    result = run(path)
    assert not result.passed, f"{os.path.basename(path)} passed but is wrong on purpose"
    with open(path) as f:
        first = f.readline()
    # The first line names the line that must be reported: "// FAIL AT LINE N"
    if first.startswith("// FAIL AT LINE"):
        assert result.line == int(first.split()[-1]), result.message


def test_cli_prints_one_line_per_script_and_a_summary() -> None:
    scripts = CORPUS[:2] + BROKEN[:1]
    result = subprocess.run([sys.executable, "-m", "usernet.cli", "drill", *scripts], capture_output=True, text=True,
                            timeout=120)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1
    assert [line.split()[0] for line in lines[:-1]] == ["PASS"] * (len(scripts) - 1) + ["FAIL"]
    assert lines[-2].startswith(f"FAIL {BROKEN[0]}:")
    assert lines[-1] == f"{len(scripts) - 1} passed, 1 failed"


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60 and len(BROKEN) >= 5


RELAXED = sorted(glob.glob(os.path.join(HERE, "relaxed", "*.pkt")))


@pytest.mark.parametrize("path", RELAXED, ids=[os.path.basename(p) for p in RELAXED])
def test_linux_style_script_passes_only_relaxed(path: str) -> None:
    strict = run(path)
    assert not strict.passed
    relaxed = run(path, relaxed=True)
    assert relaxed.passed, f"{relaxed.line}: {relaxed.message}"
    assert any("shell command skipped" in note for note in relaxed.notes)
